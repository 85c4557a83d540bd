"""The runtime's peer RPCs: each request, and the answers it may get.

Values only, as core/messages.py is for Raft messages; codec.py says how each travels
(`RPCS`: the method naming each request, and the answers it allows) and checks every
field of what arrives.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

import attrs

from trioraft.core.membership import MemberChange
from trioraft.core.messages import MemberAddress, Members, NodeId, SnapshotMeta

A = TypeVar("A")


class PeerRequest(Generic[A]):
    """A request whose answer is an `A`."""

    __slots__ = ()


# --- answers shared by several requests -------------------------------------------------


@attrs.frozen(slots=True)
class Done:
    """The request was carried out; nothing to report."""


@attrs.frozen(slots=True)
class NotLeaderAnswer:
    """The peer does not lead (any longer): ask the leader it names, if any."""

    leader: NodeId | None


class FailureKind(enum.IntEnum):
    """Why a request run on the leader has no result (see node.py, Outcomes of a write)."""

    #: definitely not applied: no leader, or the entry was replaced
    UNAVAILABLE = 1
    #: unknown: it may or may not be applied
    INDETERMINATE = 2
    #: definitely not applied: the leader holds too many uncommitted writes
    OVERLOADED = 3


@attrs.frozen(slots=True)
class Failed:
    kind: FailureKind
    reason: str


@attrs.frozen(slots=True)
class Refused:
    """A membership change or transfer refused as asked: nothing changed."""

    reason: str


# --- writes, reads and changes through the leader ---------------------------------------


@attrs.frozen(slots=True)
class Proposed:
    #: per command, in order: its result as the state machine encoded it, or why none
    outcomes: tuple[bytes | Failed, ...]


@attrs.frozen(slots=True)
class Propose(PeerRequest[Proposed | NotLeaderAnswer]):
    """Run a follower's commands on the leader, in one batch, and wait until they apply."""

    commands: tuple[bytes, ...]


@attrs.frozen(slots=True)
class ReadPoint:
    """A linearizable read may be served once `index` is applied, at the leader's time."""

    index: int
    time_ms: int


@attrs.frozen(slots=True)
class ReadIndex(PeerRequest[ReadPoint | NotLeaderAnswer]):
    """Confirm leadership with a heartbeat round; answer the commit index."""


#: how a membership change or a transfer ended on the leader
ChangeAnswer = Done | Refused | Failed | NotLeaderAnswer


@attrs.frozen(slots=True)
class ChangeMembers(PeerRequest[ChangeAnswer]):
    """Make a membership change; answered once it is committed."""

    change: MemberChange


@attrs.frozen(slots=True)
class Transfer(PeerRequest[ChangeAnswer]):
    """Hand leadership to `target` (None: the most caught-up voter)."""

    target: NodeId | None


@attrs.frozen(slots=True)
class Admitted:
    """The node asking to join was added: the configuration that has it."""

    members: Members


JoinAnswer = Admitted | Refused | Failed


@attrs.frozen(slots=True)
class Join(PeerRequest[JoinAnswer]):
    """Add `joiner`, reached at `address`, as a learner; sent by a node that is not a
    member yet (a guest of the transport), to any member, which asks the leader."""

    joiner: NodeId
    address: MemberAddress


@attrs.frozen(slots=True)
class MemberRows:
    #: one row per member, as the leader sees it (see Node.member_rows)
    rows: tuple[Mapping[str, str | int], ...]


@attrs.frozen(slots=True)
class MemberList(PeerRequest[MemberRows | NotLeaderAnswer]):
    pass


# --- the cluster's status ---------------------------------------------------------------


@attrs.frozen(slots=True)
class StatusRow:
    #: the fields of `trioraft status` / RAFT.STATUS for the answering node
    fields: Mapping[str, str | int]


@attrs.frozen(slots=True)
class StatusQuery(PeerRequest[StatusRow]):
    pass


# --- the incarnation guard (incarnation.py) ---------------------------------------------


@attrs.frozen(slots=True)
class Configuration:
    """The newest committed configuration a node knows of, and the index of the entry
    that made it (the snapshot's index for the log's first one)."""

    index: int
    members: Members


@attrs.frozen(slots=True)
class ConfigurationQuery(PeerRequest[Configuration]):
    """Asked by a node that may have been removed while away (also as a guest)."""


@attrs.frozen(slots=True)
class IncarnationAnswer:
    #: the incarnation the peer records for the asking member (None: none)
    incarnation: str | None
    #: whether the peer has never seen the cluster run (term 0, an empty log)
    blank: bool
    #: the peer's committed configuration (meaningful unless blank)
    configuration: Configuration


@attrs.frozen(slots=True)
class IncarnationQuery(PeerRequest[IncarnationAnswer]):
    """What incarnation does the peer record for `member`?"""

    member: NodeId


# --- snapshot transfer (snapshotter.py) -------------------------------------------------


@attrs.frozen(slots=True)
class SnapshotOffset:
    #: how much of the snapshot the follower already holds
    received: int


@attrs.frozen(slots=True)
class SnapshotBegin(PeerRequest[SnapshotOffset]):
    meta: SnapshotMeta
    #: the snapshot file's size and checksum
    size: int
    crc: int


@attrs.frozen(slots=True)
class SnapshotChunk(PeerRequest[Done]):
    """Bytes of the snapshot (`index`, `term`) from `offset` on."""

    index: int
    term: int
    offset: int
    data: bytes


@attrs.frozen(slots=True)
class SnapshotInstall(PeerRequest[Done]):
    """The whole snapshot (`index`, `term`) was sent: install it; the leader's term."""

    index: int
    term: int
    leader_term: int
