"""The values that cross the core's boundary: log entries, peer messages and hard state.

Every message carries the sender, the receiver and the sender's term. Messages are plain
immutable values so that the transport can encode them and the simulation can copy,
drop, duplicate and reorder them freely.
"""

from __future__ import annotations

import enum

import attrs

NodeId = str


class EntryKind(enum.IntEnum):
    #: a client command for the state machine
    COMMAND = 0
    #: appended by a new leader so it can commit an entry of its own term (thesis 3.6.2)
    NOOP = 1
    #: a membership change: `data` is the encoded new member set (see core/membership.py)
    CONFIG = 2


@attrs.frozen(slots=True)
class Entry:
    #: the term of the leader that created the entry
    term: int
    #: the entry's position in the log, from 1
    index: int
    kind: EntryKind = EntryKind.COMMAND
    #: opaque to the core: the state machine's command bytes
    data: bytes = b""


@attrs.frozen(slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves the node."""

    #: the latest term this node has seen
    term: int = 0
    #: whom this node voted for in `term`, or None
    vote: NodeId | None = None


@attrs.frozen(slots=True)
class MemberAddress:
    """Where a member is reached, each as "host:port"."""

    #: the peer (Raft) address
    peer: str
    #: the client (Redis protocol) address
    client: str


@attrs.frozen(slots=True)
class Members:
    """A cluster configuration: the voters decide elections and commitment; learners only
    receive the log. `addresses` (sorted by id) says where members are reached; it is
    empty for a cluster bootstrapped before members carried their addresses."""

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = frozenset()
    addresses: tuple[tuple[NodeId, MemberAddress], ...] = ()

    @property
    def all(self) -> frozenset[NodeId]:
        return self.voters | self.learners

    def address(self, node_id: NodeId) -> MemberAddress | None:
        return next((a for i, a in self.addresses if i == node_id), None)

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1


@attrs.frozen(slots=True)
class SnapshotMeta:
    #: the last log index the snapshot covers
    index: int
    #: the term of the entry at `index`
    term: int
    #: the member set as of `index`
    members: Members


@attrs.frozen(slots=True, kw_only=True)
class Message:
    src: NodeId
    dst: NodeId
    term: int


@attrs.frozen(slots=True, kw_only=True)
class RequestVote(Message):
    last_log_index: int
    last_log_term: int
    #: a PreVote probe: `term` is the term the sender would campaign in; nobody changes
    #: state on account of it
    pre_vote: bool = False
    #: sent on the leader's request (leadership transfer): overrides the "a leader is
    #: alive" check
    transfer: bool = False


@attrs.frozen(slots=True, kw_only=True)
class RequestVoteResponse(Message):
    granted: bool
    pre_vote: bool = False


@attrs.frozen(slots=True, kw_only=True)
class AppendEntries(Message):
    #: index and term of the entry just before `entries`
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    #: the leader's commit index
    commit: int


@attrs.frozen(slots=True, kw_only=True)
class AppendEntriesResponse(Message):
    success: bool
    #: on success: the last index known to match the leader's log (prev_index +
    #: len(entries)); on failure: the rejected prev_index
    index: int
    #: on failure, the fast back-off hint: the first index the leader should try next
    #: and the follower's term at the conflicting position (0 when its log is shorter)
    hint_index: int = 0
    hint_term: int = 0


@attrs.frozen(slots=True, kw_only=True)
class Heartbeat(Message):
    #: min(leader commit, the receiver's match index): never beyond what it holds
    commit: int
    #: the leader's heartbeat round, echoed back; ReadIndex counts the echoes
    seq: int


@attrs.frozen(slots=True, kw_only=True)
class HeartbeatResponse(Message):
    seq: int
    #: the follower's last log index, so the leader notices one that fell behind
    last_index: int


@attrs.frozen(slots=True, kw_only=True)
class InstallSnapshot(Message):
    """A snapshot is transferred by the runtime; the core only learns it is there."""

    meta: SnapshotMeta


@attrs.frozen(slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leadership transfer: the receiver campaigns at once, skipping PreVote."""


MESSAGE_TYPES: tuple[type[Message], ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
)


def describe(m: Message) -> str:
    """`m` in one line, as a transcript reads: sender, receiver, term, then what it says,
    e.g. `n1->n2 t3 AppendEntries after 5/3 entries 6..7 commit 4`."""
    return f"{m.src}->{m.dst} t{m.term} {type(m).__name__}{_details(m)}"


def _details(m: Message) -> str:
    if isinstance(m, RequestVote):
        flags = (" pre-vote" if m.pre_vote else "") + (" transfer" if m.transfer else "")
        return f" last {m.last_log_index}/{m.last_log_term}{flags}"
    if isinstance(m, RequestVoteResponse):
        return (" granted" if m.granted else " refused") + (" pre-vote" if m.pre_vote else "")
    if isinstance(m, AppendEntries):
        first, last = m.prev_index + 1, m.prev_index + len(m.entries)
        entries = f"entries {first}..{last}" if m.entries else "no entries"
        return f" after {m.prev_index}/{m.prev_term} {entries} commit {m.commit}"
    if isinstance(m, AppendEntriesResponse):
        if m.success:
            return f" matches {m.index}"
        return f" rejects {m.index} hint {m.hint_index}/{m.hint_term}"
    if isinstance(m, Heartbeat):
        return f" seq {m.seq} commit {m.commit}"
    if isinstance(m, HeartbeatResponse):
        return f" seq {m.seq} last {m.last_index}"
    if isinstance(m, InstallSnapshot):
        return f" snapshot {m.meta.index}/{m.meta.term}"
    return ""
