"""A node's Prometheus metrics (docs/metrics.md lists them all).

Two kinds:

- Events, counted where they happen (`NodeMetrics`): leader changes, proposals by
  outcome, WAL fsync durations, client request durations per command, forwarded
  writes, ReadIndex rounds, snapshots, client rejections by reason, peer round trips.
  They are plain numbers of the event loop's (no lock), each labelled child bound once
  (a command's request duration the first time the command is seen), so the hot path
  is one addition, or a bisection and one addition for a histogram: about ten times
  cheaper than prometheus_client's own locked instruments. They become Prometheus
  metric families only when scraped.
- Levels, read from the node when Prometheus scrapes (`NodeCollector`, in
  ops/collector.py): role, term, the commit, applied, last log and snapshot indexes, peer
  links, client connections. They cost nothing between scrapes.

Each node has its own `CollectorRegistry` (several nodes may run in one process, in
tests), exposed in the text format by prometheus_client's `generate_latest` (ops/health.py
serves it). A node counts whether or not anyone scrapes it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from trioraft.core.raft import Raft

#: durations from half a millisecond (an fsync on a good SSD) to 10 s (a stalled disk)
SECONDS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: snapshot durations: a small keyspace in milliseconds, millions of keys in minutes
SNAPSHOT_BUCKETS: Final = (0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)

#: the outcomes of a proposal on the leader (`trioraft_proposals_total{outcome}`)
PROPOSAL_OUTCOMES: Final = ("applied", "lost", "timeout", "overloaded", "not_leader")
#: why a client request or connection was refused (`trioraft_client_rejections_total`)
REJECTIONS: Final = ("max_clients", "protocol_error", "noauth", "overloaded", "too_slow")
#: snapshot stages (`trioraft_snapshot_*{stage}`)
SNAPSHOT_STAGES: Final = ("taken", "sent", "installed")
#: the command label of every command the node does not know
UNKNOWN_COMMAND: Final = "unknown"


class Count:
    """A counter: only ever goes up."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class Level:
    """A gauge: set to what was last measured."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value


class Timings:
    """A histogram: how many observations fell at or below each bound, and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: per bound, the observations above the previous bound; the last one past them all
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus's cumulative buckets, `+Inf` last."""
        running = list(itertools.accumulate(self.counts))
        bounds = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        return list(zip(bounds, map(float, running), strict=True))


_I = TypeVar("_I", Count, Level, Timings)


@attrs.define
class _Family(Generic[_I]):
    """One metric and its children, one per value of its label (or one, unlabelled)."""

    name: str
    doc: str
    make: Callable[[], _I]
    label: str | None = None
    children: dict[str, _I] = attrs.Factory(dict)

    def child(self, value: str = "") -> _I:
        instrument = self.children.get(value)
        if instrument is None:
            instrument = self.children[value] = self.make()
        return instrument

    def metric(self) -> Metric:
        """The family with a sample per child; it must have at least one child."""
        labels = [self.label] if self.label else None
        histogram = HistogramMetricFamily(self.name, self.doc, labels=labels)
        gauge = GaugeMetricFamily(self.name, self.doc, labels=labels)
        counter = CounterMetricFamily(self.name, self.doc, labels=labels)
        for value, instrument in sorted(self.children.items()):
            label_values = [value] if self.label else []
            if isinstance(instrument, Timings):
                histogram.add_metric(label_values, instrument.buckets(), instrument.total)
            elif isinstance(instrument, Level):
                gauge.add_metric(label_values, instrument.value)
            else:
                counter.add_metric(label_values, instrument.value)
        return next(family for family in (histogram, gauge, counter) if family.samples)


class LeaderWatched(Protocol):
    """What `NodeMetrics.watch` needs of a node: its core, and the callbacks it calls after
    the role, the leader or the term changed."""

    @property
    def core(self) -> Raft: ...

    @property
    def role_watchers(self) -> list[Callable[[], None]]: ...


class NodeMetrics:
    """The event counters of one node: plain numbers, counted in the event loop (no lock,
    no label lookup) and turned into Prometheus metrics only when scraped."""

    def __init__(self) -> None:
        self._families: list[_Family[Any]] = []
        self.leader_changes: Count = self._count(
            "trioraft_leader_changes", "Times this node saw the leader change"
        )
        proposals = self._counts(
            "trioraft_proposals",
            "Commands proposed on this node as leader, by outcome",
            "outcome",
            PROPOSAL_OUTCOMES,
        )
        self.proposals_applied = proposals["applied"]
        self.proposals_lost = proposals["lost"]
        self.proposals_timeout = proposals["timeout"]
        self.proposals_overloaded = proposals["overloaded"]
        self.proposals_not_leader = proposals["not_leader"]
        self.wal_fsync: Timings = self._family(
            "trioraft_wal_fsync_duration_seconds",
            "Time the write-ahead log took to write and fsync one group of entries",
            lambda: Timings(SECONDS_BUCKETS),
        ).child()
        self.forwarded = self._count(
            "trioraft_forwarded_requests",
            "Client writes this node forwarded to the leader as a follower",
        )
        rounds = self._counts(
            "trioraft_read_index_rounds",
            "ReadIndex rounds for linearizable reads, by who answered: this node as "
            "leader, or the leader asked by this follower",
            "answered_by",
            ("self", "leader"),
        )
        self.read_rounds_self = rounds["self"]
        self.read_rounds_leader = rounds["leader"]
        durations = self._family(
            "trioraft_snapshot_duration_seconds",
            "Time to take a snapshot, send one to a follower, or install one from the leader",
            lambda: Timings(SNAPSHOT_BUCKETS),
            "stage",
        )
        self.snapshot_durations: dict[str, Timings] = {
            stage: durations.child(stage) for stage in SNAPSHOT_STAGES
        }
        self.snapshot_bytes = self._counts(
            "trioraft_snapshot_bytes",
            "Bytes of snapshots taken, sent and installed",
            "stage",
            SNAPSHOT_STAGES,
        )
        self.snapshot_send_failures = self._count(
            "trioraft_snapshot_send_failures", "Snapshot transfers to a follower that failed"
        )
        rejections = self._counts(
            "trioraft_client_rejections",
            "Client connections and requests refused, by reason",
            "reason",
            REJECTIONS,
        )
        self.rejected_max_clients = rejections["max_clients"]
        self.rejected_protocol = rejections["protocol_error"]
        self.rejected_noauth = rejections["noauth"]
        self.rejected_overloaded = rejections["overloaded"]
        self.rejected_too_slow = rejections["too_slow"]
        self._request_durations = self._family(
            "trioraft_client_request_duration_seconds",
            "Time from reading a client request to having its reply, by command",
            lambda: Timings(SECONDS_BUCKETS),
            "command",
        )
        self._peer_rtt = self._family(
            "trioraft_peer_rtt_seconds",
            "Round-trip time of the last status RPC to a peer that answered",
            Level,
            "peer",
        )
        self._peer_reachable = self._family(
            "trioraft_peer_reachable",
            "1 when the peer answered the last status RPC in time, else 0",
            Level,
            "peer",
        )

    def _family(
        self, name: str, doc: str, make: Callable[[], _I], label: str | None = None
    ) -> _Family[_I]:
        family = _Family(name, doc, make, label)
        self._families.append(family)
        return family

    def _count(self, name: str, doc: str) -> Count:
        return self._family(name, doc, Count).child()

    def _counts(self, name: str, doc: str, label: str, values: Iterable[str]) -> dict[str, Count]:
        family = self._family(name, doc, Count, label)
        return {value: family.child(value) for value in values}

    def command_timing(self, command: str) -> Timings:
        """The request duration histogram of `command` (lower case); commands the node
        does not know should share one, UNKNOWN_COMMAND, so that clients cannot make up
        label values. Bind it once, not per request."""
        return self._request_durations.child(command)

    def peer_answered(self, peer: str, seconds: float | None) -> None:
        """A probe of `peer` took `seconds`, or got no answer in time (None)."""
        self._peer_reachable.child(peer).set(0 if seconds is None else 1)
        if seconds is not None:
            self._peer_rtt.child(peer).set(seconds)

    def collect(self) -> Iterator[Metric]:
        """The counters as Prometheus metric families."""
        for family in self._families:
            if family.children:
                yield family.metric()

    def watch(self, node: LeaderWatched) -> None:
        """Count the node's leader changes (a change to "no leader" included)."""
        last = [node.core.leader_id]

        def leader_maybe_changed() -> None:
            leader = node.core.leader_id
            if leader != last[0]:
                last[0] = leader
                self.leader_changes.inc()

        node.role_watchers.append(leader_maybe_changed)
