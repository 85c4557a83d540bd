"""The fault runs' workload beside a synchronous test: clients in a thread of their own,
judged at the end as a fault run is.

    with BackgroundWorkload(targets_of(cluster.running), seed=1) as clients:
        clients.wait_acknowledged(50)
        ...                                    # change the members, cut nodes off
        clients.retarget(targets_of(members))  # clients go only where told from now on
        judgement = clients.finish(targets_of(members))
    assert judgement.passed, judgement.explain()

`finish` stops the clients, waits until nothing still in flight can take effect
(`Workload.settle`), reads every key through each of the given nodes and judges the
history: linearizable, no acknowledged write lost, the final reads agree, every reply
one the contract allows, every bank summing to zero. `Judgement.longest_write_gap`
measures the longest time between two acknowledged writes (of any client) in a window.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Self

import attrs
import trio
from harness.polling import wait_until
from harness.writers import ACK_SECONDS
from sim.linearizability import CheckResult, Operation, Verdict, check

from trioraft.closing import ClosedOnExit

from .analysis import acknowledged_writes, disagreements, lost_writes
from .workload import Recorder, Target, Workload, unbalanced_banks

#: how long the clients may take to stop, settle and read everything back
FINISH_SECONDS = 120.0


@attrs.frozen
class Judgement:
    """What the history of a `BackgroundWorkload` shows."""

    operations: list[Operation]
    result: CheckResult
    lost: list[Operation]
    disagreements: list[str]
    read_problems: list[str]
    unexpected: list[tuple[str, str, str]]
    unbalanced: list[str]

    @property
    def problems(self) -> list[str]:
        found = []
        if self.result.verdict is not Verdict.OK:
            found.append(f"the checker says {self.result.verdict.value}:\n{self.result.explain()}")
        found += [f"acknowledged write lost: {op.describe()}" for op in self.lost]
        found += [f"final reads disagree: {line}" for line in self.disagreements]
        found += self.read_problems
        found += [
            f"unexpected reply from {node} to {cmd}: {reply}"
            for node, cmd, reply in self.unexpected
        ]
        found += [f"bank does not sum to zero: {line}" for line in self.unbalanced]
        return found

    @property
    def passed(self) -> bool:
        return not self.problems

    def explain(self) -> str:
        return "\n".join(self.problems) or self.result.explain()

    def longest_write_gap(self, start: float, end: float) -> float:
        """The longest time within [start, end] (time.monotonic) in which no client had a
        write acknowledged."""
        acks = acknowledged_writes(self.operations)
        inside = acks[bisect.bisect_right(acks, start) : bisect.bisect_left(acks, end)]
        return max(b - a for a, b in itertools.pairwise([start, *inside, end]))


class BackgroundWorkload(ClosedOnExit):
    """`Workload` clients (see its module) in a thread running its own Trio loop."""

    def __init__(
        self, targets: Sequence[Target], *, seed: int, clients: int = 4, timeout: float = 2.0
    ) -> None:
        self.recorder = Recorder()
        self.workload = Workload(
            targets,
            self.recorder,
            seed=seed,
            clients=clients,
            timeout=timeout,
            keys=5,
            uses=1000,
        )
        self._token: trio.lowlevel.TrioToken | None = None
        self._started = threading.Event()
        self._final_targets: list[Target] = []
        self._final: tuple[dict[str, dict[str, bytes | None]], list[str]] | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        self._started.wait(10.0)
        return self

    def close(self) -> None:
        """Stop the clients if `finish` did not (a test that failed on the way)."""
        if self._thread.is_alive() and self._final is None:
            self._final_targets = []
            self._in_loop(self.workload.stop)
            self._thread.join(FINISH_SECONDS)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by `finish` and `wait_acknowledged`
            self._failure = exc
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._started.set()
        await self.workload.run()
        if not self._final_targets:
            return
        await self.workload.settle()
        self._final = await self.workload.read_back(self._final_targets)

    def _in_loop(self, action: Callable[[], object]) -> None:
        assert self._token is not None, "the clients' loop never started"
        trio.from_thread.run_sync(action, trio_token=self._token)

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise AssertionError(f"the clients failed: {self._failure!r}") from self._failure

    def acknowledged(self) -> int:
        """How many writes were acknowledged so far."""
        return len(acknowledged_writes(self.recorder.operations()))

    def wait_acknowledged(self, count: int, timeout: float = ACK_SECONDS) -> None:
        """Wait until `count` writes in all were acknowledged."""

        def enough() -> bool:
            self._check_alive()
            return self.acknowledged() >= count

        wait_until(enough, timeout, f"{count} writes acknowledged", interval=0.05)

    def wait_more(self, count: int, timeout: float = ACK_SECONDS) -> None:
        """Wait until `count` more writes than now were acknowledged."""
        self.wait_acknowledged(self.acknowledged() + count, timeout)

    def retarget(self, targets: Sequence[Target]) -> None:
        """Clients pick their next node among `targets` only."""
        chosen = list(targets)

        def swap() -> None:
            self.workload.targets = chosen

        self._in_loop(swap)

    def finish(self, targets: Sequence[Target]) -> Judgement:
        """Stop the clients, read every key through `targets` and judge the history."""
        self._check_alive()
        self._final_targets = list(targets)
        self._in_loop(self.workload.stop)
        self._thread.join(FINISH_SECONDS)
        self._check_alive()
        if self._final is None:
            raise AssertionError(f"the clients did not finish within {FINISH_SECONDS} s")
        final, read_problems = self._final
        return judge(
            self.recorder.operations(),
            final,
            read_problems=read_problems,
            unexpected=self.workload.stats.unexpected,
            banks=self.workload.banks.all_keys,
        )


def judge(
    operations: list[Operation],
    final: dict[str, dict[str, bytes | None]],
    *,
    read_problems: Sequence[str] = (),
    unexpected: Sequence[tuple[str, str, str]] = (),
    banks: Sequence[str] = (),
) -> Judgement:
    """The judgement of a history whose keys were read back as `final` (per node)."""
    return Judgement(
        operations=operations,
        result=check(operations, key_budget=60.0),
        lost=lost_writes(operations, final),
        disagreements=disagreements(final),
        read_problems=list(read_problems),
        unexpected=list(unexpected),
        unbalanced=unbalanced_banks(final, banks),
    )
