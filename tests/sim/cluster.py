"""What every part of a simulated run shares: the `Cluster` (the plan and the profile in
force, the nodes, the step counter, the safety checker, the nodes' wall clocks), what the
run did (`Report`, and the trace of recent events and arrivals), and how a property fails
(`SimulationFailure`, with the transcript that makes a failing seed readable)."""

from __future__ import annotations

from collections import deque
from typing import NoReturn

import attrs

from sim.checker import Checker
from sim.nodes import SimNode
from sim.plans import Plan
from trioraft.core.messages import Message, NodeId, describe
from trioraft.core.raft import Raft
from trioraft.runtime.stamps import stamp

REPLAY = "python -m pytest tests/sim/test_simulation.py --seeds 1 --first-seed {seed}"
#: expiry runs: wall-clock milliseconds per step at a node's nominal clock rate, and the
#: Unix time at step 0
STEP_MS = 10
EPOCH_MS = 1_800_000_000_000


class SimulationFailure(AssertionError):
    """A safety or liveness property failed; the message says which, and how to replay."""


@attrs.define
class Report:
    """What a run did, for scenario assertions and for the curious."""

    steps: int = 0
    ops_ok: int = 0
    ops_failed: int = 0
    ops_unknown: int = 0
    crashes: int = 0
    partitions: int = 0
    transfers: int = 0
    member_changes: int = 0
    snapshots_installed: int = 0
    max_term: int = 0
    max_commit: int = 0
    #: expiry runs: keys deleted past their deadline (counted at every node), reads that
    #: met one and went through the log, clock jumps
    expired: int = 0
    expired_reads: int = 0
    clock_jumps: int = 0


class Cluster:
    def __init__(self, plan: Plan, *, check_promises: bool) -> None:
        self.plan = plan
        #: the profile in force: healing makes the network reliable
        self.profile = plan.profile
        #: check what each message, write and application promises about the node's disk
        #: as it happens (off: only the end-to-end properties judge, to show what they catch
        #: on their own)
        self.check_promises = check_promises
        #: nodes have wall clocks, and values TTLs
        self.expiry = plan.profile.ttl > 0
        self.nodes: list[SimNode] = []
        self.by_id: dict[NodeId, SimNode] = {}
        self.now = 0
        #: faults are injected (until everything heals)
        self.faults = True
        self.checker = Checker(self.fail)
        self.report = Report()
        self.trace: deque[str] = deque(maxlen=40)
        #: the last messages that arrived (step, message, whether it was lost), for the
        #: transcript a failure prints; formatted only then
        self.arrivals: deque[tuple[int, Message, bool]] = deque(maxlen=30)

    def add(self, node: SimNode) -> None:
        self.nodes.append(node)
        self.by_id[node.id] = node

    def event(self, text: str) -> None:
        """Record what happened at this step, for the transcript of a failure."""
        self.trace.append(f"{self.now}: {text}")

    def leader(self) -> NodeId | None:
        """The up node that leads the highest term, if any."""
        leaders = [(n.core.term, n.id) for n in self.nodes if n.core and n.core.is_leader]
        return max(leaders)[1] if leaders else None

    def clock_ms(self, node: SimNode) -> int:
        """What the node's wall clock reads now (Unix ms)."""
        return EPOCH_MS + int(self.now * STEP_MS * node.clock_rate) + node.clock_offset_ms

    def time_ms(self, node: SimNode) -> int:
        """The node's time: its clock, never below the latest stamp in its log."""
        return max(self.clock_ms(node), node.stamper.latest)

    def propose(self, node: SimNode, core: Raft, commands: list[bytes]) -> list[tuple[int, int]]:
        """Propose on `node`, each command stamped with its time in expiry runs."""
        if self.expiry:
            commands = [stamp(c, node.stamper.next(self.clock_ms(node))) for c in commands]
        return core.propose(commands)

    def fail(self, prop: str, detail: str) -> NoReturn:
        trace = "\n".join(f"  {line}" for line in self.trace)
        transcript = "\n".join(
            f"  {step}: {describe(m)}{' (lost)' if lost else ''}" for step, m, lost in self.arrivals
        )
        raise SimulationFailure(
            f"{prop} violated at step {self.now} ({self.plan.describe()}):\n{detail}\n"
            f"recent events:\n{trace}\n"
            f"last messages to arrive:\n{transcript}\n"
            f"replay: {self.plan.replay or REPLAY.format(seed=self.plan.seed)}"
        )
