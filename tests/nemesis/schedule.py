"""The fault schedule: which faults, in what order, against which nodes, for how long,
all drawn from one seed.

A schedule is an endless sequence of `FaultPlan`s, made in rounds: each round is every
chosen kind once, in an order shuffled by the seeded generator, so a run of any length
spreads its faults evenly over the kinds. A plan fixes everything that can be fixed
before the run: the kind, whether it aims at the leader or at any node, a number in
[0, 1) that picks one of the candidate nodes at run time (so the same seed picks the
same position among the same candidates), a permutation of the nodes for partitions,
the fault's duration, the calm period before it, and the moments, counted from the
fault's start, at which a snapshot is forced when `snapshot` is among the kinds.

What the seed cannot fix is which node is the leader when a fault starts, nor how the
clients' requests interleave with the faults: those depend on timing. The same seed
therefore replays the same faults, not the same history.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Iterator

import attrs


class FaultKind(enum.Enum):
    #: kill -9 of a random node, restart after a while
    KILL = "kill"
    #: kill -9 of the leader, restart after a while
    KILL_LEADER = "kill-leader"
    #: kill -9 of every node, then restart them all
    KILL_ALL = "kill-all"
    #: SIGSTOP of a node (the leader or any) for longer than the election timeout, SIGCONT
    PAUSE = "pause"
    #: one node (the leader or any) cut off from every other node
    ISOLATE = "isolate"
    #: a majority and a minority that cannot reach each other
    SPLIT = "split"
    #: two halves that cannot reach each other, and one node that reaches both
    BRIDGE = "bridge"
    #: a follower killed until every other node's snapshot covers its whole log, then
    #: restarted while the writes go on, so it must be sent a snapshot
    SNAPSHOT_INSTALL = "snapshot-install"
    #: a follower killed, its data dir deleted, restarted: it must refuse to start (exit
    #: 1); then its data dir is put back as it was at the kill and it is restarted
    WIPE = "wipe"
    #: snapshots forced on random nodes (also during every other fault)
    SNAPSHOT = "snapshot"
    #: a member (the leader or any) removed, killed, its data dir deleted; then added
    #: again under its own id and address, started on an empty data dir and promoted
    REPLACE = "replace"
    #: a node that is no member (removed by an earlier fault, or else by this one first)
    #: added, started on an empty data dir and promoted
    GROW = "grow"
    #: a member (the leader or any) removed, killed, its data dir deleted; at the
    #: smallest size the run allows, a node is first added as in `grow`
    SHRINK = "shrink"


NETWORK_KINDS = frozenset({FaultKind.ISOLATE, FaultKind.SPLIT, FaultKind.BRIDGE})
#: names that stand for several kinds on the command line
ALIASES: dict[str, tuple[FaultKind, ...]] = {
    "all": tuple(FaultKind),
    "partition": (FaultKind.ISOLATE, FaultKind.SPLIT, FaultKind.BRIDGE),
    "membership": (FaultKind.REPLACE, FaultKind.GROW, FaultKind.SHRINK),
}

#: (shortest, longest) seconds each kind of fault lasts; the condition-driven ones
#: (snapshot-install, wipe, the membership changes) last as long as their steps take
DURATIONS: dict[FaultKind, tuple[float, float]] = {
    FaultKind.KILL: (1.0, 5.0),
    FaultKind.KILL_LEADER: (1.0, 5.0),
    FaultKind.KILL_ALL: (0.5, 3.0),
    FaultKind.PAUSE: (1.5, 4.0),
    FaultKind.ISOLATE: (2.0, 8.0),
    FaultKind.SPLIT: (2.0, 8.0),
    FaultKind.BRIDGE: (2.0, 8.0),
    FaultKind.SNAPSHOT_INSTALL: (0.0, 0.0),
    FaultKind.WIPE: (0.0, 0.0),
    FaultKind.SNAPSHOT: (2.0, 5.0),
    FaultKind.REPLACE: (0.0, 0.0),
    FaultKind.GROW: (0.0, 0.0),
    FaultKind.SHRINK: (0.0, 0.0),
}
#: the kinds that may aim at the leader instead of any node, half of the time
LEADER_OR_ANY = frozenset(
    {
        FaultKind.PAUSE,
        FaultKind.ISOLATE,
        FaultKind.SPLIT,
        FaultKind.BRIDGE,
        FaultKind.SNAPSHOT,
        FaultKind.REPLACE,
        FaultKind.SHRINK,
    }
)
#: seconds of calm before each fault: (shortest, longest)
QUIET = (0.5, 2.0)
#: average seconds between forced snapshots during a fault
SNAPSHOT_EVERY = 1.5


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """The kinds named in a comma-separated list (aliases expanded, duplicates dropped,
    in the order of `FaultKind`); ValueError naming any unknown word."""
    chosen: set[FaultKind] = set()
    for word in (part.strip() for part in text.split(",")):
        if not word:
            continue
        if word in ALIASES:
            chosen.update(ALIASES[word])
            continue
        try:
            chosen.add(FaultKind(word))
        except ValueError:
            names = ", ".join([*(kind.value for kind in FaultKind), *ALIASES])
            raise ValueError(f"unknown fault {word!r}; the faults are: {names}") from None
    if not chosen:
        raise ValueError("no fault chosen")
    return tuple(kind for kind in FaultKind if kind in chosen)


@attrs.frozen
class FaultPlan:
    """One fault as the schedule fixed it."""

    #: counts the faults of a run from 1
    number: int
    kind: FaultKind
    #: aim at whichever node leads when the fault starts, rather than at `pick`'s node
    at_leader: bool
    #: in [0, 1): picks one of the candidate nodes at run time (`choose`)
    pick: float
    #: a permutation of range(node count): the order in which partitions fill their sides
    order: tuple[int, ...]
    #: seconds the fault lasts (0 for the condition-driven kinds)
    duration: float
    #: seconds of calm before the fault starts
    quiet: float
    #: seconds after the fault's start at which to force a snapshot, ascending
    snapshots: tuple[float, ...]

    def choose(self, candidates: Iterable[str]) -> str:
        """The candidate at `pick`'s position among them, sorted."""
        ordered = sorted(candidates)
        if not ordered:
            raise ValueError("no candidate node")
        return ordered[min(int(self.pick * len(ordered)), len(ordered) - 1)]

    def arrange(self, node_ids: Iterable[str], first: str) -> list[str]:
        """Every node, `first` first, the others in `order` (whose positions past the
        nodes there are now, after a shrink, are skipped)."""
        ordered = sorted(node_ids)
        rest = [ordered[k] for k in self.order if k < len(ordered) and ordered[k] != first]
        return [first, *rest]


def schedule(seed: int, kinds: tuple[FaultKind, ...], nodes: int) -> Iterator[FaultPlan]:
    """The endless fault plans of `seed` for a cluster of `nodes`."""
    rng = random.Random(seed)
    number = 0
    forced_snapshots = FaultKind.SNAPSHOT in kinds
    while True:
        round_ = list(kinds)
        rng.shuffle(round_)
        for kind in round_:
            number += 1
            shortest, longest = DURATIONS[kind]
            duration = round(rng.uniform(shortest, longest), 2)
            order = list(range(nodes))
            rng.shuffle(order)
            at_leader = kind is FaultKind.KILL_LEADER or (
                kind in LEADER_OR_ANY and rng.random() < 0.5
            )
            yield FaultPlan(
                number=number,
                kind=kind,
                at_leader=at_leader,
                pick=rng.random(),
                order=tuple(order),
                duration=duration,
                quiet=round(rng.uniform(*QUIET), 2),
                snapshots=_snapshot_moments(rng, kind, duration) if forced_snapshots else (),
            )


def _snapshot_moments(rng: random.Random, kind: FaultKind, duration: float) -> tuple[float, ...]:
    """Moments to force snapshots at: a Poisson process over the fault (over the first
    few seconds of a condition-driven one), three times as dense in a `snapshot` fault."""
    span = duration if duration > 0 else 5.0
    mean = SNAPSHOT_EVERY / 3 if kind is FaultKind.SNAPSHOT else SNAPSHOT_EVERY
    moments = []
    at = rng.expovariate(1 / mean)
    while at < span:
        moments.append(round(at, 2))
        at += rng.expovariate(1 / mean)
    return tuple(moments)
