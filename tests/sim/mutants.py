"""Named mutants of the Raft core: classic Raft and runtime bugs, one small change each.

Theory of operation. A mutant is the real core with one behaviour broken, built inside the
test process and handed to the simulation as its core factory. The core is never copied by
hand: a mutant either overrides one small method of `Raft` (or of its `Leader`) in a
subclass (where the core has a seam of that size), or substitutes one fragment of source in
an in-memory copy of the module that holds the behaviour (where the bug is one expression
inside a larger method). A substitution must match exactly once; when a refactor of the
core moves the fragment, building the mutant fails and says which fragment to update,
rather than silently testing the unbroken core. A copied class takes every other module-level name
(Role, Ready, the messages) from the real module, so the simulation sees the real types.

The simulation must catch every mutant with its seeded random runs: by a safety property,
the persistence promises, liveness after healing, or the linearizability of the client
history. `tests/sim/test_mutants.py` checks that it does, and `nox -s mutants` (or
`PYTHONPATH=tests python -m sim.mutants`) prints how many seeds each mutant takes (the
table in docs/testing.md).
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import attrs

import trioraft.core.leader
import trioraft.core.log
import trioraft.core.raft
from sim.plans import Plan
from sim.simulation import CoreFactory, Simulation, SimulationFailure
from trioraft.core.leader import Leader
from trioraft.core.messages import (
    AppendEntriesResponse,
    Message,
    RequestVoteResponse,
)
from trioraft.core.raft import Raft, Role
from trioraft.runtime.node import Node


class SeamLost(AssertionError):
    """The source fragment a mutant changes is no longer in the core (or is ambiguous)."""


def mutated_class(module: ModuleType, name: str, old: str, new: str) -> Any:
    """Class `name` of `module`, compiled from a copy of the module's source in which the
    fragment `old` (which must occur exactly once) is replaced by `new`."""
    source = inspect.getsource(module)
    count = source.count(old)
    if count != 1:
        raise SeamLost(f"{module.__name__}: {old!r} occurs {count} times, not once")
    namespace: dict[str, Any] = {"__name__": module.__name__}
    exec(compile(source.replace(old, new), inspect.getfile(module), "exec"), namespace)
    cls = namespace[name]
    # every other global the copied class uses is the real module's object
    namespace.update((k, v) for k, v in vars(module).items() if k != name)
    return cls


def raft_with(old: str, new: str) -> CoreFactory:
    """The core with one fragment of trioraft/core/raft.py substituted."""
    cls: CoreFactory = mutated_class(trioraft.core.raft, "Raft", old, new)
    return cls


def raft_with_log(old: str, new: str) -> CoreFactory:
    """The core whose log has one fragment of trioraft/core/log.py substituted."""
    log_class = mutated_class(trioraft.core.log, "RaftLog", old, new)

    class MutatedLog(Raft):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.log.__class__ = log_class

    return MutatedLog


def raft_with_leader(leader_class: type[Leader]) -> CoreFactory:
    """The core whose leader behaviour is `leader_class` (a Leader it breaks)."""

    class MutatedLeader(Raft):
        def _become_leader(self) -> None:
            super()._become_leader()
            # swapped once it has started leading: no mutant breaks the start
            if self._leader is not None:
                self._leader.__class__ = leader_class

    return MutatedLeader


def leader_with(old: str, new: str) -> CoreFactory:
    """The core with one fragment of trioraft/core/leader.py substituted."""
    return raft_with_leader(mutated_class(trioraft.core.leader, "Leader", old, new))


# --- overrides at the core's small seams ----------------------------------------------------


class VoteBeforeDisk(Raft):
    def _send(self, m: Message) -> None:
        if isinstance(m, RequestVoteResponse):
            self._out.messages.append(m)  # out at once, before the vote is durable
        else:
            super()._send(m)


class AckBeforeFsync(Raft):
    def _send(self, m: Message) -> None:
        if isinstance(m, AppendEntriesResponse):
            self._out.messages.append(m)  # out at once, before the entries are durable
        else:
            super()._send(m)


class ReadWithoutQuorum(Leader):
    def _release_reads(self) -> None:
        # every read whose round has gone out, answered or not
        self.out.reads.extend(self.state.release_reads(confirmed=self.state.read_seq))


class PreVoteBumpsTerm(Raft):
    def _become_pre_candidate(self) -> None:
        self.term += 1  # as a candidate would; a PreVote must change nobody's term
        self.vote = None
        super()._become_pre_candidate()


class PersistedLostOnFollowers(Raft):
    def persisted(self, index: int, term: int) -> None:
        if self.role is Role.LEADER:  # the callback is dropped unless this node leads
            super().persisted(index, term)


# --- the catalogue --------------------------------------------------------------------------


@attrs.frozen
class Mutant:
    name: str
    #: the bug, in one sentence
    bug: str
    build: Callable[[], CoreFactory]


MUTANTS = (
    Mutant(
        "figure-8",
        "a leader commits an entry of an earlier term by counting its replicas",
        lambda: leader_with(
            "candidate <= core.commit or core.log.term(candidate) != core.term",
            "candidate <= core.commit",
        ),
    ),
    Mutant(
        "vote-before-disk",
        "a vote is granted before the vote is durable",
        lambda: VoteBeforeDisk,
    ),
    Mutant(
        "vote-not-persisted",
        "the hard state is written only when the term changes, so a vote cast in a term "
        "already on disk is lost at a crash",
        lambda: raft_with(
            "hard_state = hs if hs != self._emitted_hard_state else None",
            "hard_state = hs if hs.term != self._emitted_hard_state.term else None",
        ),
    ),
    Mutant(
        "term-not-persisted",
        "a term learned from another node's message is written only when the vote changes "
        "too, so the node answers in a term that a crash forgets",
        lambda: raft_with(
            "hard_state = hs if hs != self._emitted_hard_state else None",
            "hard_state = hs if hs.vote != self._emitted_hard_state.vote else None",
        ),
    ),
    Mutant(
        "ack-before-fsync",
        "a follower acknowledges entries before they are durable",
        lambda: AckBeforeFsync,
    ),
    Mutant(
        "apply-before-commit",
        "entries are applied once durable, without waiting for the commit index",
        lambda: raft_with(
            "apply_to = min(self.commit, self.persisted_index)", "apply_to = self.persisted_index"
        ),
    ),
    Mutant(
        "truncate-matching",
        "a follower cuts its log at the first entry an AppendEntries carries even when it "
        "matches, dropping acknowledged (and committed) entries after it",
        lambda: raft_with_log("if self.term(index) != entry.term:", "if True:"),
    ),
    Mutant(
        "stale-term-followed",
        "a message from an older term is taken like one from a newer term: the node goes "
        "back to that term and acts on it (follows a deposed leader's AppendEntries)",
        lambda: raft_with("if m.term > self.term:", "if m.term != self.term:"),
    ),
    Mutant(
        "stale-append-accepted",
        "an AppendEntries from an older term is taken without a term change: the node "
        "follows the deposed leader that sent it and merges its entries",
        lambda: raft_with(
            "elif m.term < self.term:",
            "elif m.term < self.term and not isinstance(m, AppendEntries):",
        ),
    ),
    Mutant(
        "read-without-quorum",
        "ReadIndex releases a read as soon as its heartbeat round is sent, without waiting "
        "for a majority to answer it",
        lambda: raft_with_leader(ReadWithoutQuorum),
    ),
    Mutant(
        "read-before-own-commit",
        "ReadIndex registers reads before the leader has committed an entry of its term",
        lambda: leader_with(
            "if self.core.committed_in_term():\n            self.state.register_read",
            "if True:\n            self.state.register_read",
        ),
    ),
    Mutant(
        "snapshot-backwards",
        "a follower installs a snapshot older than what it has committed",
        lambda: raft_with("if meta.index <= self.commit:", "if False:"),
    ),
    Mutant(
        "prevote-bumps-term",
        "a pre-candidate moves to the next term before it has won the PreVote",
        lambda: PreVoteBumpsTerm,
    ),
    Mutant(
        "persisted-lost",
        "the persisted() confirmation is lost on followers, which never apply",
        lambda: PersistedLostOnFollowers,
    ),
    Mutant(
        "vote-without-log-check",
        "a vote is granted without the up-to-date check on the candidate's log",
        lambda: raft_with(
            "and self.log.is_up_to_date(m.last_log_index, m.last_log_term)", "and True"
        ),
    ),
    Mutant(
        "commit-past-new-entries",
        "a follower takes the leader's commit index from an AppendEntries without capping it "
        "at the last entry the message carried",
        lambda: raft_with("self._commit_to(min(m.commit, last_new))", "self._commit_to(m.commit)"),
    ),
    Mutant(
        "heartbeat-commit-uncapped",
        "a heartbeat carries the leader's commit index, not capped at what the follower matches",
        lambda: leader_with("commit=min(pr.match, core.commit),", "commit=core.commit,"),
    ),
    # the single-server membership trap (thesis 4.1 and its erratum); the named scenario
    # `test_change_before_own_commit_is_the_single_server_trap` builds it step by step
    Mutant(
        "change-before-own-commit",
        "a new leader takes a membership change before it has committed an entry of its "
        "term, so an earlier leader's uncommitted change and its own can each find a majority",
        lambda: leader_with(
            "if not core.committed_in_term():\n            # an uncommitted change",
            "if False:\n            # an uncommitted change",
        ),
    ),
)

BY_NAME = {mutant.name: mutant for mutant in MUTANTS}
CHANGE_BEFORE_OWN_COMMIT = BY_NAME["change-before-own-commit"]


# --- the runtime: the Trio node with one behaviour broken -----------------------------------


class FollowerReadsBeforeApplying(Node):
    async def _follower_read_index(self, deadline: float) -> tuple[int, int]:
        _, time_ms = await super()._follower_read_index(deadline)
        return self.applied, time_ms  # the leader's read index is dropped: no wait to apply


@attrs.frozen
class RuntimeMutant:
    name: str
    bug: str
    node: type[Node]


#: the runtime's own bugs, below the core: `test_mutants.py` runs the runtime test under
#: random faults with each (tests/runtime/test_node.py), which must fail
RUNTIME_MUTANTS = (
    RuntimeMutant(
        "follower-read-before-apply",
        "a follower serves a linearizable read without waiting to apply the leader's read index",
        FollowerReadsBeforeApplying,
    ),
)


def seams_of(cls: type) -> list[str]:
    """The methods a mutant subclass overrides; each must exist in the class it breaks,
    or the mutant would add a method nobody calls (SeamLost)."""
    base = cls.__mro__[1]
    names = [name for name in vars(cls) if callable(vars(cls)[name]) and name != "__init__"]
    for name in names:
        if not hasattr(base, name):
            raise SeamLost(f"{cls.__name__} overrides {name}, which {base.__name__} lacks")
    return names


@attrs.frozen
class Catch:
    """The first seed whose run fails with a mutant, and how."""

    seed: int
    prop: str
    #: the failure's whole message: the property, the events before it, how to replay it
    message: str
    #: seconds spent on the seeds up to and including this one
    seconds: float


def first_catch(core: CoreFactory, seeds: range, **options: Any) -> Catch | None:
    """Run the seeded simulation with `core` seed by seed; the first failure, if any."""
    start = time.perf_counter()
    for seed in seeds:
        try:
            Simulation(Plan.from_seed(seed), core_factory=core, **options).run()
        except SimulationFailure as failure:
            message = str(failure)
            prop = message.split(" violated", 1)[0]
            return Catch(seed, prop, message, time.perf_counter() - start)
    return None


def main(argv: list[str]) -> int:
    """`PYTHONPATH=tests python -m sim.mutants [--end-to-end] [SEEDS] [NAME...]`: the first
    catching seed per mutant (with --end-to-end, the direct checks of the persistence
    promises are off)."""
    options = {"check_promises": "--end-to-end" not in argv}
    args = [a for a in argv if a != "--end-to-end"]
    seeds = int(args[0]) if args else 500
    names = args[1:] or list(BY_NAME)
    print("| mutant | caught by | first seed | seconds |")
    print("|---|---|---|---|")
    for name in names:
        catch = first_catch(BY_NAME[name].build(), range(seeds), **options)
        if catch is None:
            print(f"| {name} | not caught in {seeds} seeds | | |", flush=True)
        else:
            print(f"| {name} | {catch.prop} | {catch.seed} | {catch.seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
