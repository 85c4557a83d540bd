"""Entry time stamps (trioraft.runtime.stamps): the leader's clock travels in the log, never goes
backwards, and is the only time the state machine knows."""

from __future__ import annotations

from pathlib import Path

from harness.node_cluster import (
    ELECTION_TIMEOUT_MAX,
    OK,
    WALL_CLOCK_EPOCH_MS,
    NodeCluster,
    open_cluster,
    write,
)
from trio.testing import MockClock

from trioraft.core.messages import EntryKind
from trioraft.runtime.node import Node
from trioraft.runtime.stamps import Stamper, stamp, time_of, unstamp


def test_a_stamped_payload_gives_back_its_time_and_command() -> None:
    assert unstamp(stamp(b"\x93\xa3SET", 1_700_000_000_123)) == (1_700_000_000_123, b"\x93\xa3SET")
    assert time_of(stamp(b"", 5)) == 5


def test_a_payload_from_before_stamps_reads_as_unstamped() -> None:
    # command payloads are msgpack arrays, which never start with the mark
    assert unstamp(b"\x93\xc4\x03SET") == (None, b"\x93\xc4\x03SET")
    assert unstamp(b"") == (None, b"")
    assert time_of(b"\xc1\x00") is None


def test_stamps_never_go_below_the_latest_seen() -> None:
    stamper = Stamper(latest=1000)
    assert stamper.next(900) == 1000  # a clock behind the log repeats the last stamp
    assert stamper.next(1200) == 1200
    stamper.observe(1500)  # an entry from another leader
    stamper.observe(None)
    stamper.observe(1400)
    assert stamper.next(1300) == 1500


def log_stamps(node: Node) -> list[int]:
    """The stamps of the commands in `node`'s log, in log order; each has one."""
    log = node.core.log
    entries = log.slice(log.first_index, log.last_index + 1)
    stamps = [time_of(entry.data) for entry in entries if entry.kind is EntryKind.COMMAND]
    assert None not in stamps
    return [time_ms for time_ms in stamps if time_ms is not None]


async def test_stamps_are_the_leaders_clock_and_never_go_back_across_leaders(
    clock: MockClock, tmp_path: Path
) -> None:
    async with open_cluster(tmp_path) as cluster:
        first = await cluster.wait_for_leader()
        # the leader's clock is an hour ahead: its stamps say so
        cluster.clock_offsets_ms[first.id] = 3_600_000
        assert await write(first, b"a", b"1") == OK
        stamped = log_stamps(first)[-1]
        assert stamped is not None and stamped >= WALL_CLOCK_EPOCH_MS + 3_600_000
        # a follower's write is stamped by the leader, not by the follower's clock
        follower = next(node for node in cluster.nodes if node is not first)
        cluster.clock_offsets_ms[follower.id] = -7_200_000
        assert await write(follower, b"b", b"2") == OK
        assert log_stamps(first)[-1] >= stamped
        # the fast leader goes; the next one's clock is behind: it repeats the last stamp
        await cluster.crash(first.id)
        second = await cluster.wait_for_leader(timeout=10 * ELECTION_TIMEOUT_MAX)
        assert await write(second, b"c", b"3") == OK
        stamps = log_stamps(second)
        assert stamps == sorted(stamps)
        assert stamps[-1] >= stamped
        await agree_on_time(cluster)


async def agree_on_time(cluster: NodeCluster) -> None:
    """Every running node applies the whole log and ends at the same state-machine time."""
    await cluster.wait_converged()
    times = {node.state.time for node in cluster.nodes}
    assert len(times) == 1, times
