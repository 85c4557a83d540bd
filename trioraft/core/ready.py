"""What the core hands the runtime: one `Ready` after a batch of inputs (the contract is
in raft.py's notes), gathered meanwhile in an `Outbox` that every role's code adds to."""

from __future__ import annotations

from collections.abc import Hashable

import attrs

from trioraft.core.leadership import ReadState
from trioraft.core.messages import Entry, HardState, Members, Message, NodeId, SnapshotMeta


@attrs.frozen
class FollowerLostEntries:
    """A follower no longer holds an entry it acknowledged: its disk lost writes it had
    fsynced (a failing disk, or fsync turned off). Entries committed with its help may be
    on fewer nodes than a quorum now. The leader replicates to it again from scratch."""

    #: the follower
    peer: NodeId
    #: the index the leader knew to match on the follower
    match: int
    #: the index the follower rejected: its log does not hold our entry there
    rejected: int


@attrs.define
class Ready:
    #: a snapshot received from the leader replaces the state machine and the log;
    #: install it before anything else in this Ready
    snapshot: SnapshotMeta | None
    hard_state: HardState | None
    entries: list[Entry]
    messages: list[Message]
    messages_after_persist: list[Message]
    committed: list[Entry]
    reads: list[ReadState]
    dropped_reads: list[Hashable]
    #: leader only: followers found to have lost entries they acknowledged (to report)
    lost_entries: list[FollowerLostEntries] = attrs.Factory(list)
    #: the configuration in force, when it changed since the last Ready (an entry was
    #: appended or cut, or a snapshot installed)
    members: Members | None = None

    @property
    def must_sync(self) -> bool:
        return self.snapshot is not None or self.hard_state is not None or bool(self.entries)

    @property
    def empty(self) -> bool:
        return not (
            self.snapshot
            or self.must_sync
            or self.messages
            or self.messages_after_persist
            or self.committed
            or self.reads
            or self.dropped_reads
            or self.lost_entries
            or self.members
        )


@attrs.define
class Outbox:
    """What the core has to tell the runtime since the last Ready, in the order it arose."""

    #: to send at once
    messages: list[Message] = attrs.Factory(list)
    #: to send once the Ready's writes are durable
    messages_after_persist: list[Message] = attrs.Factory(list)
    reads: list[ReadState] = attrs.Factory(list)
    dropped_reads: list[Hashable] = attrs.Factory(list)
    lost_entries: list[FollowerLostEntries] = attrs.Factory(list)

    def ready(
        self,
        *,
        snapshot: SnapshotMeta | None,
        hard_state: HardState | None,
        entries: list[Entry],
        committed: list[Entry],
        members: Members | None,
    ) -> Ready:
        """The Ready carrying what was gathered here (and is forgotten here now) besides
        what the core gives."""
        rd = Ready(
            snapshot=snapshot,
            hard_state=hard_state,
            entries=entries,
            messages=self.messages,
            messages_after_persist=self.messages_after_persist,
            committed=committed,
            reads=self.reads,
            dropped_reads=self.dropped_reads,
            lost_entries=self.lost_entries,
            members=members,
        )
        self.messages, self.messages_after_persist = [], []
        self.reads, self.dropped_reads = [], []
        self.lost_entries = []
        return rd
