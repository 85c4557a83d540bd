"""Injecting the faults of a schedule into a running cluster, one at a time.

`Nemesis.inject(plan)` carries out one `FaultPlan`: after the plan's calm period it
resolves the plan's target against the cluster as it is now (who leads), applies the
fault, holds it for the plan's duration (or, for the condition-driven kinds, until their
condition holds, within a bound), removes it, then waits until the cluster acknowledges
a write of its own probe key again. Each fault leaves a `FaultRecord` with its moments on
the history's clock (`time.monotonic`): `start` (the fault applied), `healed` (the fault
removed: the process started again, SIGCONT sent, the iptables tables emptied) and
`recovered` (the probe's first acknowledged write after healing). The sleeps here are
the faults' durations, chosen by the schedule; everything else is polled.

When the schedule holds snapshot moments, a task forces a snapshot (RAFT.SNAPSHOT) on a
random running node at each of them while the fault lasts.

The two condition-driven faults:

- snapshot-install: a follower is killed; filler writes (pipelined SETs of a key outside
  the checked ones) and forced snapshots push every other node's snapshot past the
  follower's log by more than trioraft's catch-up margin (the entries a node keeps
  before its snapshot for followers slightly behind), so the log it needs is gone
  everywhere. It is restarted while the clients keep writing and must be sent a
  snapshot; whether it was ("installed a snapshot from the leader" in its log) goes into
  the record's notes.
- wipe: a follower is killed, its data dir copied aside and deleted, and the node
  started: it must refuse to run, exiting with status 1 (docs/operations.md). Then its
  data dir is put back exactly as it was at the kill and the node restarted: for the
  cluster this is one more kill and restart, and it keeps all its members for the
  faults that follow. (Restoring an older copy would be unsafe: the node would have
  forgotten votes and acknowledged entries, the very thing the refusal guards against.)

The membership faults (replace, grow, shrink) drive each change to its condition in the
leader's member list (`harness.membership`): a node leaving is first taken out of the
clients' nodes (`on_members`), then removed, killed and its data dir deleted; a node
joining is added, started on an empty data dir, and must be promoted to voter within
`harness.membership.CHANGE_SECONDS`, then the clients use it again. Nodes removed stay
down and out of every other fault until a `grow` (or a `shrink` at the smallest size)
adds one back; at least `min(3, nodes - 1)` members stay. A change that does not take effect, or a
newcomer never promoted, is a finding.

A partition must be seen to take effect before it heals: a node of the minority side (of
an isolation or a split) must not acknowledge a write of the probe key, and a leader cut
off in it must step down; both go into the record's notes, and a failure is a finding.

Findings are what the nemesis sees that the contract forbids, independently of the
history: a node that exits without being killed, or does not serve again after a
restart; a partition that did not take effect; a wiped node that is not refused, or is
refused with another status; a cluster that acknowledges no write within
`RECOVERY_SECONDS` of healing. After a failure to
recover, `run` stops injecting.
"""

from __future__ import annotations

import itertools
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import trio
from harness.membership import add_member, remove_member, wait_voter
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster
from harness.process_node import Node
from harness.resp_client import Arg, ConnectionClosed, Error, Reply

from trioraft.runtime.snapshotter import SnapshotPolicy

from .client import Connection
from .hosts import Hosts
from .schedule import FaultKind, FaultPlan

#: how long after healing the cluster may take to acknowledge a write
RECOVERY_SECONDS = 60.0
#: one probe write, one forced snapshot, one INFO
CALL_SECONDS = 3.0
#: how long the cluster may take to agree on a leader before a fault aimed at it
LEADER_SECONDS = 20.0
#: how long a wiped node may take to refuse to start
REFUSAL_SECONDS = 30.0
#: snapshot-install: how long pushing the snapshots past the follower, and its catching
#: up after the restart, may each take
CATCHUP_SECONDS = 90.0
#: filler SETs per pipeline
FILL_BATCH = 500
#: the pause between two looks at a condition, and after a failed probe
POLL_SECONDS = 0.1
PROBE_KEY = "nemesis:probe"
FILL_KEY = "nemesis:fill"
INSTALLED_LINE = "installed a snapshot from the leader"

_BROKEN = (
    OSError,
    ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ValueError,
)


@attrs.define
class FaultRecord:
    """One fault as it happened."""

    number: int
    kind: FaultKind
    #: the nodes it hit, and what was done, in words
    nodes: list[str] = attrs.Factory(list)
    description: str = ""
    #: when it was applied, removed, and when the cluster served a write again (None:
    #: not yet, or never)
    start: float = 0.0
    healed: float | None = None
    recovered: float | None = None
    #: what else was seen (the refusal's exit status, whether a snapshot was installed)
    notes: dict[str, object] = attrs.Factory(dict)
    snapshots_forced: int = 0
    snapshots_refused: int = 0


class Nemesis:
    """Applies fault plans to `cluster` on `hosts`; see the module docstring."""

    def __init__(
        self,
        cluster: ProcessCluster,
        hosts: Hosts,
        seed: int,
        say: Callable[[str], None],
        on_members: Callable[[list[Node]], None] = lambda members: None,
    ) -> None:
        self.cluster = cluster
        self.hosts = hosts
        self.say = say
        #: told the members whenever they change (the clients go only to these)
        self.on_members = on_members
        #: nodes the nemesis killed and has not restarted
        self.down: set[str] = set()
        #: nodes removed from the cluster (killed, their data dirs deleted)
        self.removed: set[str] = set()
        #: the fewest members the membership faults leave
        self.fewest = min(3, len(cluster.nodes) - 1)
        self.findings: list[str] = []
        self.records: list[FaultRecord] = []
        self._probes = itertools.count()
        self._fills = itertools.count()
        self._spare = cluster.root / "spare"
        #: picks the nodes that take filler writes
        self._rng = random.Random(seed)

    # --- the schedule --------------------------------------------------------------

    async def run(self, plans: Iterator[FaultPlan], until: float, max_faults: int | None) -> None:
        """Inject plans until `until` (time.monotonic) or `max_faults`, or until the
        cluster fails to recover."""
        for plan in plans:
            if time.monotonic() >= until or (
                max_faults is not None and len(self.records) >= max_faults
            ):
                return
            record = await self.inject(plan)
            if record.recovered is None:
                return

    async def inject(self, plan: FaultPlan) -> FaultRecord:
        await self.check_processes()
        await trio.sleep(plan.quiet)
        record = FaultRecord(plan.number, plan.kind, start=time.monotonic())
        self.records.append(record)
        async with trio.open_nursery() as nursery:
            if plan.snapshots:
                nursery.start_soon(self._force_snapshots, plan, record)
            await _FAULTS[plan.kind](self, plan, record)
            nursery.cancel_scope.cancel()
        if record.healed is None:
            record.healed = time.monotonic()
        await self._wait_recovered(record)
        served = (
            f"a probe write acknowledged {record.recovered - record.healed:.2f} s after healing"
            if record.recovered is not None
            else "NO WRITE ACKNOWLEDGED AFTER HEALING"
        )
        self.say(f"fault #{record.number} {record.kind.value}: {record.description}; {served}")
        return record

    async def heal_all(self) -> None:
        """Undo whatever is left of the faults: tables emptied, paused nodes resumed,
        killed nodes started; then wait for a leader every node knows."""
        await trio.to_thread.run_sync(self.hosts.heal)
        for node in self.cluster.nodes:
            node.resume()
        for node_id in sorted(self.down):
            await self._restart(node_id, None)
        await self.check_processes()
        if await self._leader() is None:
            self.findings.append(
                f"no leader every node knows within {LEADER_SECONDS} s of the final healing"
            )

    async def check_processes(self) -> None:
        """A node that is not running though the nemesis did not kill it is a finding;
        it is started again so the run can go on."""
        for node in self.cluster.nodes:
            if node.id in self.down | self.removed or node.running or node.process is None:
                continue
            self.findings.append(
                f"{node.id} exited on its own with status {node.returncode}\n{node.log_tail()}"
            )
            await self._restart(node.id, None)

    # --- the faults ------------------------------------------------------------------

    async def _kill(self, plan: FaultPlan, record: FaultRecord) -> None:
        node_id = await self._target(plan, record)
        record.nodes = [node_id]
        record.description = f"kill -9 {self._named(node_id, record)}, down {plan.duration} s"
        record.start = time.monotonic()
        await self._kill_node(node_id)
        await trio.sleep(plan.duration)
        await self._restart(node_id, record)

    async def _kill_all(self, plan: FaultPlan, record: FaultRecord) -> None:
        order = plan.arrange(self._ids(), plan.choose(self._ids()))
        record.nodes = order
        record.description = f"kill -9 of every node ({', '.join(order)}), down {plan.duration} s"
        record.start = time.monotonic()
        for node_id in order:
            await self._kill_node(node_id)
        await trio.sleep(plan.duration)
        for node_id in order:
            self.cluster[node_id].start()
            self.down.discard(node_id)
        record.healed = time.monotonic()
        for node_id in order:
            await self._wait_serving(node_id)

    async def _pause(self, plan: FaultPlan, record: FaultRecord) -> None:
        node_id = await self._target(plan, record)
        record.nodes = [node_id]
        record.description = f"SIGSTOP {self._named(node_id, record)} for {plan.duration} s"
        record.start = time.monotonic()
        self.cluster[node_id].pause()
        await trio.sleep(plan.duration)
        self.cluster[node_id].resume()
        record.healed = time.monotonic()

    async def _isolate(self, plan: FaultPlan, record: FaultRecord) -> None:
        node_id = await self._target(plan, record)
        others = [other for other in self._ids() if other != node_id]
        await self._partition(
            plan, record, [[node_id], others], f"{self._named(node_id, record)} isolated"
        )

    async def _split(self, plan: FaultPlan, record: FaultRecord) -> None:
        first = await self._target(plan, record)
        order = plan.arrange(self._ids(), first)
        minority, majority = order[: (len(order) - 1) // 2], order[(len(order) - 1) // 2 :]
        what = f"minority {minority} (with {self._named(first, record)}) | majority {majority}"
        await self._partition(plan, record, [minority, majority], what)

    async def _bridge(self, plan: FaultPlan, record: FaultRecord) -> None:
        middle = await self._target(plan, record)
        rest = plan.arrange(self._ids(), middle)[1:]
        left, right = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        what = f"{left} | {right}, bridged by {self._named(middle, record)}"
        await self._partition(plan, record, [left, right], what, bridge=middle)

    async def _partition(
        self,
        plan: FaultPlan,
        record: FaultRecord,
        sides: list[list[str]],
        what: str,
        bridge: str | None = None,
    ) -> None:
        pairs = {
            frozenset({a, b})
            for one, other in itertools.combinations(sides, 2)
            for a in one
            for b in other
        }
        record.nodes = sorted(
            {*itertools.chain.from_iterable(sides), *([bridge] if bridge else [])}
        )
        record.description = f"{what}, for {plan.duration} s"
        leader = record.notes.get("leader", None) if plan.at_leader else await self._leader()
        record.start = time.monotonic()
        end = trio.current_time() + plan.duration
        await trio.to_thread.run_sync(self.hosts.cut, pairs)
        try:
            minority = min(sides, key=len)
            if bridge is None and 2 * len(minority) < len(self._ids()):
                await self._prove_cut_off(record, minority, leader, end)
            await trio.sleep_until(end)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.hosts.heal)
        record.healed = time.monotonic()

    async def _prove_cut_off(
        self, record: FaultRecord, minority: list[str], leader: object, end: float
    ) -> None:
        """Show that a partition took effect before it heals: a node of the minority does
        not acknowledge a write, and a leader cut off in it steps down (CheckQuorum)."""
        probe = self.cluster[minority[0]]

        async def write_to_minority() -> None:
            wait = end - trio.current_time() - POLL_SECONDS
            reply = await self.call(probe, "SET", PROBE_KEY, "minority", timeout=wait)
            record.notes["minority_acknowledged"] = reply == "OK"

        async def leader_steps_down() -> None:
            node = self.cluster[str(leader)]
            while trio.current_time() < end:
                info = await self._info_or_none(node)
                if info is not None and info.get("role") != "leader":
                    record.notes["isolated_leader_stepped_down"] = True
                    return
                await trio.sleep(POLL_SECONDS)
            record.notes["isolated_leader_stepped_down"] = False

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_to_minority)
            if leader in minority:
                nursery.start_soon(leader_steps_down)
        if record.notes["minority_acknowledged"]:
            self.findings.append(
                f"fault #{record.number}: {probe.id}, cut off in a minority, acknowledged a write"
            )
        if record.notes.get("isolated_leader_stepped_down") is False:
            self.findings.append(
                f"fault #{record.number}: the leader {leader}, cut off in a minority, still "
                f"led when the partition healed"
            )

    async def _snapshots(self, plan: FaultPlan, record: FaultRecord) -> None:
        record.nodes = self._ids()
        record.description = (
            f"{len(plan.snapshots)} snapshot(s) forced on random nodes over {plan.duration} s"
        )
        record.start = time.monotonic()
        await trio.sleep(plan.duration)

    async def _snapshot_install(self, plan: FaultPlan, record: FaultRecord) -> None:
        follower = plan.choose(await self._followers())
        node = self.cluster[follower]
        last = int((await self._info(node))["last_log_index"])
        margin = SnapshotPolicy().catchup_entries
        record.nodes = [follower]
        record.description = (
            f"follower {follower} killed (log ends at {last}) until every snapshot is more "
            f"than {margin} entries past it, then restarted"
        )
        record.start = time.monotonic()
        await self._kill_node(follower)
        record.notes["passed"] = await self._push_snapshots_past(last + margin + 1)
        log_size = _size(node.log_path)
        await self._restart(follower, record)
        record.notes["caught_up"] = await self._catch_up(node)
        record.notes["snapshot_installed"] = INSTALLED_LINE in _text_from(node.log_path, log_size)

    async def _wipe(self, plan: FaultPlan, record: FaultRecord) -> None:
        follower = plan.choose(await self._followers())
        node = self.cluster[follower]
        record.nodes = [follower]
        record.description = f"follower {follower} killed, its data dir deleted, started"
        record.start = time.monotonic()
        await self._kill_node(follower)
        backup = self._spare / f"wipe-{plan.number}-{follower}"
        await trio.to_thread.run_sync(shutil.copytree, node.data_dir, backup)
        await trio.to_thread.run_sync(shutil.rmtree, node.data_dir)
        log_size = _size(node.log_path)
        node.start()
        status = await self._wait_exit(node, REFUSAL_SECONDS)
        record.notes["refusal_status"] = status
        record.notes["refusal_message"] = _last_line(_text_from(node.log_path, log_size))
        if status is None:
            self.findings.append(
                f"fault #{plan.number} (wipe): {follower}, started on an empty data dir, was "
                f"still running after {REFUSAL_SECONDS} s instead of refusing\n{node.log_tail()}"
            )
            await trio.to_thread.run_sync(node.kill)
        elif status != 1:
            self.findings.append(
                f"fault #{plan.number} (wipe): {follower}, started on an empty data dir, "
                f"exited with status {status}, not 1\n{node.log_tail()}"
            )
        await trio.to_thread.run_sync(lambda: shutil.rmtree(node.data_dir, ignore_errors=True))
        await trio.to_thread.run_sync(shutil.copytree, backup, node.data_dir)
        await trio.to_thread.run_sync(shutil.rmtree, backup)
        record.description += (
            f": {'refused' if status is not None else 'NOT refused'} (status {status}), "
            "its data dir put back, restarted"
        )
        await self._restart(follower, record)

    async def _replace(self, plan: FaultPlan, record: FaultRecord) -> None:
        node_id = await self._target(plan, record)
        record.description = f"{self._named(node_id, record)} removed, wiped, added again"
        record.start = time.monotonic()
        if await self._remove(node_id, record):
            await self._add(node_id, record)

    async def _grow(self, plan: FaultPlan, record: FaultRecord) -> None:
        record.start = time.monotonic()
        if not self.removed:
            first = plan.choose(self._ids())
            record.description = f"{first} removed first (no node to add), then "
            if not await self._remove(first, record):
                return
        node_id = plan.choose(self.removed)
        record.description += f"{node_id} added"
        await self._add(node_id, record)

    async def _shrink(self, plan: FaultPlan, record: FaultRecord) -> None:
        record.start = time.monotonic()
        if len(self._ids()) <= self.fewest:
            first = plan.choose(self.removed)
            record.description = f"{first} added first (at the fewest members), then "
            if not await self._add(first, record):
                return
        node_id = await self._target(plan, record)
        record.description += f"{self._named(node_id, record)} removed"
        await self._remove(node_id, record)

    async def _remove(self, node_id: str, record: FaultRecord) -> bool:
        """Take `node_id` out of the clients' nodes, remove it from the cluster, kill it
        and delete its data dir; False (and a finding) if the removal never took effect."""
        record.nodes.append(node_id)
        node = self.cluster[node_id]
        self.removed.add(node_id)
        self.on_members(self._members())
        others = [other for other in self._up() if other is not node]
        try:
            await trio.to_thread.run_sync(remove_member, others, node_id)
        except (AssertionError, TimeoutError) as exc:
            self.findings.append(f"fault #{record.number}: removing {node_id} failed: {exc}")
            self.removed.discard(node_id)
            self.on_members(self._members())
            return False
        await trio.to_thread.run_sync(node.kill)
        await trio.to_thread.run_sync(lambda: shutil.rmtree(node.data_dir, ignore_errors=True))
        record.healed = time.monotonic()
        return True

    async def _add(self, node_id: str, record: FaultRecord) -> bool:
        """Add the removed `node_id`, start it on an empty data dir and wait until it is a
        voter; then the clients use it again. False (and a finding) if it never is."""
        record.nodes.append(node_id)
        node = self.cluster[node_id]
        members = self._up()
        asked = time.monotonic()
        try:
            await trio.to_thread.run_sync(add_member, members, node)
            node.start()
            self.removed.discard(node_id)
            await trio.to_thread.run_sync(wait_voter, members, node_id)
        except (AssertionError, TimeoutError) as exc:
            self.findings.append(
                f"fault #{record.number}: adding {node_id} failed: {exc}\n{node.log_tail()}"
            )
            return False
        finally:
            record.healed = time.monotonic()
        record.notes[f"{node_id}_promoted_s"] = round(record.healed - asked, 2)
        self.on_members(self._members())
        return True

    # --- pieces ------------------------------------------------------------------------

    def _ids(self) -> list[str]:
        """The members, sorted (faults aim only at them)."""
        return sorted(node.id for node in self._members())

    def _members(self) -> list[Node]:
        return [node for node in self.cluster.nodes if node.id not in self.removed]

    def _up(self) -> list[Node]:
        return [node for node in self._members() if node.running and not node.paused]

    def _named(self, node_id: str, record: FaultRecord) -> str:
        return f"{node_id} (the leader)" if record.notes.get("leader") == node_id else node_id

    async def _target(self, plan: FaultPlan, record: FaultRecord) -> str:
        """The leader when the plan aims at it (and one is agreed on), else the plan's pick."""
        if plan.at_leader:
            leader = await self._leader()
            if leader is not None:
                record.notes["leader"] = leader
                return leader
            record.notes["leader"] = None
        return plan.choose(self._ids())

    async def _leader(self) -> str | None:
        try:
            leader = await trio.to_thread.run_sync(self.cluster.wait_for_leader, LEADER_SECONDS)
        except TimeoutError:
            return None
        return leader.id

    async def _followers(self) -> list[str]:
        leader = await self._leader()
        return [node.id for node in self._up() if node.id != leader]

    async def _info(self, node: Node) -> dict[str, str]:
        """INFO raft of a node that is up, asked again while it does not answer in time."""
        return await trio.to_thread.run_sync(
            lambda: wait_until(node.info, CALL_SECONDS * 3, f"INFO raft of {node.id}")
        )

    async def _kill_node(self, node_id: str) -> None:
        self.down.add(node_id)
        await trio.to_thread.run_sync(self.cluster[node_id].kill)

    async def _restart(self, node_id: str, record: FaultRecord | None) -> None:
        node = self.cluster[node_id]
        if node.running:
            await trio.to_thread.run_sync(node.kill)
        node.start()
        self.down.discard(node_id)
        if record is not None:
            record.healed = time.monotonic()
        await self._wait_serving(node_id)

    async def _wait_serving(self, node_id: str) -> None:
        node = self.cluster[node_id]
        try:
            await trio.to_thread.run_sync(node.wait_serving)
        except (RuntimeError, TimeoutError) as exc:
            self.findings.append(f"{node_id} did not serve after a restart: {exc}")

    async def _wait_exit(self, node: Node, timeout: float) -> int | None:
        with trio.move_on_after(timeout):
            while node.running:
                await trio.sleep(POLL_SECONDS)
            return node.returncode
        return None

    async def call(self, node: Node, *args: Arg, timeout: float = CALL_SECONDS) -> Reply:
        """One request on a new connection; a harness-side problem comes back as an
        `Error` whose text starts with "harness:"."""
        with trio.move_on_after(timeout):
            try:
                connection = await Connection.open(node.host, node.client_port)
                try:
                    return await connection.call(*args)
                finally:
                    await connection.aclose()
            except _BROKEN as exc:
                return Error(f"harness: {exc}")
        return Error("harness: timeout")

    async def _wait_recovered(self, record: FaultRecord) -> None:
        rng = random.Random(record.number)
        with trio.move_on_after(RECOVERY_SECONDS):
            while True:
                up = self._up()
                if up:
                    node = rng.choice(up)
                    reply = await self.call(node, "SET", PROBE_KEY, next(self._probes))
                    if reply == "OK":
                        record.recovered = time.monotonic()
                        return
                await trio.sleep(POLL_SECONDS)
        self.findings.append(
            f"fault #{record.number} ({record.kind.value}): no write acknowledged within "
            f"{RECOVERY_SECONDS} s of healing"
        )

    async def _force_snapshots(self, plan: FaultPlan, record: FaultRecord) -> None:
        rng = random.Random(plan.pick)
        began = trio.current_time()
        for moment in plan.snapshots:
            await trio.sleep_until(began + moment)
            up = sorted(self._up(), key=lambda node: node.id)
            if not up:
                continue
            reply = await self.call(rng.choice(up), "RAFT.SNAPSHOT")
            if isinstance(reply, str) and reply.startswith("OK"):
                record.snapshots_forced += 1
            else:
                record.snapshots_refused += 1

    async def _push_snapshots_past(self, index: int) -> bool:
        """Write filler entries and force snapshots until every running node's snapshot
        is at `index` or later; False if that takes more than CATCHUP_SECONDS."""
        with trio.move_on_after(CATCHUP_SECONDS):
            while True:
                lagging = []
                for node in self._up():
                    info = await self._info_or_none(node)
                    if info is None or int(info["snapshot_index"]) < index:
                        lagging.append((node, info))
                if not lagging:
                    return True
                ready = [n for n, info in lagging if info and int(info["last_applied"]) >= index]
                if ready:
                    for node in ready:
                        await self.call(node, "RAFT.SNAPSHOT")
                    await trio.sleep(POLL_SECONDS)
                else:
                    await self._fill()
        return False

    async def _info_or_none(self, node: Node) -> dict[str, str] | None:
        try:
            return await trio.to_thread.run_sync(node.info)
        except (OSError, ValueError):
            return None

    async def _fill(self) -> None:
        """One pipeline of filler SETs through a random running node."""
        up = self._up()
        if not up:
            await trio.sleep(POLL_SECONDS)
            return
        node = self._rng.choice(up)
        requests: list[tuple[Arg, ...]] = [
            ("SET", FILL_KEY, next(self._fills)) for _ in range(FILL_BATCH)
        ]
        with trio.move_on_after(CALL_SECONDS * 3):
            try:
                connection = await Connection.open(node.host, node.client_port)
                try:
                    await connection.pipeline(requests)
                finally:
                    await connection.aclose()
            except _BROKEN:
                await trio.sleep(POLL_SECONDS)

    async def _catch_up(self, node: Node) -> bool:
        """Wait until `node` has applied what the leader had committed at the call."""
        leader = await self._leader()
        if leader is None:
            return False
        commit = int((await self._info(self.cluster[leader]))["commit_index"])
        with trio.move_on_after(CATCHUP_SECONDS):
            while True:
                info = await self._info_or_none(node)
                if info is not None and int(info["last_applied"]) >= commit:
                    return True
                await trio.sleep(POLL_SECONDS)
        return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _text_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


_FAULTS = {
    FaultKind.KILL: Nemesis._kill,
    FaultKind.KILL_LEADER: Nemesis._kill,
    FaultKind.KILL_ALL: Nemesis._kill_all,
    FaultKind.PAUSE: Nemesis._pause,
    FaultKind.ISOLATE: Nemesis._isolate,
    FaultKind.SPLIT: Nemesis._split,
    FaultKind.BRIDGE: Nemesis._bridge,
    FaultKind.SNAPSHOT_INSTALL: Nemesis._snapshot_install,
    FaultKind.WIPE: Nemesis._wipe,
    FaultKind.SNAPSHOT: Nemesis._snapshots,
    FaultKind.REPLACE: Nemesis._replace,
    FaultKind.GROW: Nemesis._grow,
    FaultKind.SHRINK: Nemesis._shrink,
}
