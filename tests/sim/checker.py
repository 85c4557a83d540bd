"""The cluster-wide safety properties the simulation checks after every step, with the
memory they need across steps and restarts."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from sim.state_machine import KV
from trioraft.core.messages import (
    Entry,
    EntryKind,
    NodeId,
)
from trioraft.core.raft import Raft


class Checker:
    """The cluster-wide safety properties, with the memory they need across steps."""

    def __init__(self, fail: Callable[[str, str], NoReturn]) -> None:
        self.fail = fail
        #: term -> the one node that led in it
        self.leaders: dict[int, NodeId] = {}
        #: (index, term) -> (predecessor term, kind, data), over every log ever checked
        self.entries: dict[tuple[int, int], tuple[int, EntryKind, bytes]] = {}
        #: per node, the log as last verified: its snapshot index and a copy of its entries
        self.views: dict[NodeId, tuple[int, list[Entry]]] = {}
        #: committed[i]: the term of the entry committed at i (None: known only via a
        #: snapshot); committed_seen[i]: the lowest term of a node that saw it committed
        self.committed: list[int | None] = [0]
        self.committed_seen: list[int] = [0]
        #: per node, the commit index already recorded
        self.seen_commit: dict[NodeId, int] = {}
        #: index -> the entry applied there, and the state machine right after it
        self.applied: dict[int, Entry] = {}
        self.state_at: dict[int, KV] = {0: {}}

    def check_node(self, node_id: NodeId, core: Raft, fresh: list[int]) -> None:
        """Check one node's log and commit index; adds newly committed indexes to fresh."""
        self._check_log(node_id, core)
        self._observe_commit(node_id, core, fresh)

    def check_leader(self, node_id: NodeId, core: Raft, fresh: list[int]) -> None:
        term = core.term
        known = self.leaders.get(term)
        if known is None:
            self.leaders[term] = node_id
            self._check_complete(
                node_id, core, range(core.log.snapshot_index + 1, len(self.committed))
            )
        elif known != node_id:
            self.fail("election safety", f"{known} and {node_id} both lead term {term}")
        else:
            self._check_complete(node_id, core, fresh)

    def check_following(self, node_id: NodeId, core: Raft) -> None:
        """A node knows only the leader of its own term as its leader (it learns of it from
        that leader's messages); following a deposed one would send it clients' work."""
        followed = core.leader_id
        if followed is not None and followed != self.leaders.get(core.term):
            self.fail(
                "leader knowledge",
                f"{node_id} in term {core.term} follows {followed}, but "
                f"{self.leaders.get(core.term)} leads that term",
            )

    def restarted(self, node_id: NodeId, core: Raft) -> None:
        self.seen_commit[node_id] = core.commit

    def _check_log(self, node_id: NodeId, core: Raft) -> None:
        log = core.log
        entries, base = log.entries, log.snapshot_index
        view = self.views.get(node_id)
        start = 0
        if view is not None:
            old_base, old = view
            if old_base == base and old == entries:
                return
            shift = base - old_base
            overlap = min(len(old) - shift, len(entries))
            if shift >= 0 and overlap > 0 and entries[:overlap] == old[shift : shift + overlap]:
                start = overlap  # the prefix was verified, and has not changed since
        known = self.entries
        for pos in range(start, len(entries)):
            entry = entries[pos]
            if entry.index != base + pos + 1:
                self.fail("log matching", f"{node_id}'s log is not contiguous at {entry}")
            prev = entries[pos - 1].term if pos else log.snapshot_term
            fact = (prev, entry.kind, entry.data)
            first = known.setdefault((entry.index, entry.term), fact)
            if first != fact:
                self.fail(
                    "log matching",
                    f"{node_id} holds ({entry.index}, {entry.term}) after term {prev} with "
                    f"{entry.kind.name} {entry.data!r}; another log had it after term "
                    f"{first[0]} with {first[1].name} {first[2]!r}",
                )
        self.views[node_id] = (base, list(entries))

    def _observe_commit(self, node_id: NodeId, core: Raft, fresh: list[int]) -> None:
        commit, seen = core.commit, self.seen_commit.get(node_id, 0)
        if commit < seen:
            self.fail("commit", f"{node_id}'s commit index went back from {seen} to {commit}")
        if commit == seen:
            return
        log = core.log
        committed, committed_seen = self.committed, self.committed_seen
        if commit >= len(committed):
            grow = commit + 1 - len(committed)
            committed.extend([None] * grow)
            committed_seen.extend([core.term] * grow)
        for index in range(seen + 1, commit + 1):
            term = log.term(index)
            if term is None:
                if index > log.snapshot_index:
                    self.fail("commit", f"{node_id} commits {commit} beyond its log")
                continue
            first = committed[index]
            if first is None:
                committed[index] = term
            elif first != term:
                self.fail(
                    "state machine safety",
                    f"{node_id} committed term {term} at {index}; term {first} was committed "
                    f"there before",
                )
            if core.term <= committed_seen[index]:
                committed_seen[index] = core.term
                fresh.append(index)
        self.seen_commit[node_id] = commit

    def _check_complete(self, node_id: NodeId, core: Raft, indexes: range | list[int]) -> None:
        log, term = core.log, core.term
        for index in indexes:
            committed = self.committed[index]
            if (
                committed is not None
                and self.committed_seen[index] < term
                and index > log.snapshot_index
                and log.term(index) != committed
            ):
                self.fail(
                    "leader completeness",
                    f"{node_id} leads term {term} without the entry ({index}, {committed}) "
                    f"committed in term {self.committed_seen[index]} or before "
                    f"(its log holds term {log.term(index)} there)",
                )

    def check_apply(self, node_id: NodeId, entry: Entry, kv: KV) -> None:
        first = self.applied.setdefault(entry.index, entry)
        if first is not entry and (first.term, first.kind, first.data) != (
            entry.term,
            entry.kind,
            entry.data,
        ):
            self.fail(
                "state machine safety",
                f"{node_id} applies {entry} at {entry.index}; {first} was applied there before",
            )
        self.check_state(node_id, entry.index, kv)

    def check_state(self, node_id: NodeId, index: int, kv: KV) -> None:
        state = self.state_at.setdefault(index, dict(kv))
        if state != kv:
            self.fail(
                "state machine safety",
                f"{node_id}'s state at {index} is {kv!r}; another node's was {state!r}",
            )
