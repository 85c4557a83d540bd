"""Membership changes one server at a time (Raft thesis chapter 4), with no I/O.

A configuration is a `Members` value. A change adds one learner, promotes one learner to
voter, or removes one member; any two majorities of configurations one such step apart
overlap, so no joint consensus is needed as long as the rules below hold:

- a configuration entry (`EntryKind.CONFIG`) takes effect on a node as soon as it is in
  its log, committed or not, and the previous configuration is back if the entry is cut
  off by a conflicting leader (`Configurations` keeps the history this needs);
- a leader appends a change only once it has committed an entry of its own term, so that
  an uncommitted change from an earlier leader can no longer win over its own;
- only one change is uncommitted at a time;
- a node grants votes without consulting its own configuration (thesis 4.1): when two
  uncommitted changes disagree, a candidate may need the vote of a node whose
  configuration leaves it out, and without it no one could ever win.

Learners are never counted: only voters elect, commit and confirm reads.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]

from trioraft.core.errors import InvalidChange
from trioraft.core.messages import (
    Entry,
    EntryKind,
    MemberAddress,
    Members,
    NodeId,
    SnapshotMeta,
)


class ChangeKind(enum.Enum):
    #: a new member, as a learner: it receives the log but is counted nowhere
    ADD = "add"
    #: a learner becomes a voter
    PROMOTE = "promote"
    #: a voter or learner leaves
    REMOVE = "remove"


@attrs.frozen
class MemberChange:
    kind: ChangeKind
    node: NodeId
    #: ADD only: where the new member is reached
    address: MemberAddress | None = None


def apply_change(members: Members, change: MemberChange) -> Members:
    """The configuration after `change`; raises InvalidChange (saying why) when the change
    does not fit `members`."""
    node = change.node
    if change.kind is ChangeKind.ADD:
        return _add(members, node, change.address)
    if node not in members.all:
        raise InvalidChange(f"{node} is not a member")
    if change.kind is ChangeKind.PROMOTE:
        if node in members.voters:
            raise InvalidChange(f"{node} is a voter already")
        return _with(members, members.voters | {node}, members.learners - {node})
    if members.voters == {node}:
        raise InvalidChange(f"{node} is the only voter; add and promote another one first")
    return attrs.evolve(
        _with(members, members.voters - {node}, members.learners - {node}),
        addresses=tuple((i, a) for i, a in members.addresses if i != node),
    )


def _add(members: Members, node: NodeId, address: MemberAddress | None) -> Members:
    if address is None:
        raise InvalidChange(f"adding {node} needs its peer and client addresses")
    if node in members.all:
        raise InvalidChange(f"{node} is a member already")
    for other, known in members.addresses:
        if address.peer == known.peer or address.client == known.client:
            raise InvalidChange(f"{other} uses the address {known.peer} / {known.client}")
    added = _with(members, members.voters, members.learners | {node})
    return attrs.evolve(added, addresses=tuple(sorted((*members.addresses, (node, address)))))


def _with(members: Members, voters: frozenset[NodeId], learners: frozenset[NodeId]) -> Members:
    return attrs.evolve(members, voters=voters, learners=learners)


def encode_members(members: Members) -> bytes:
    """The data of a configuration entry."""
    data: bytes = msgpack.packb(members_to_wire(members), use_bin_type=True)
    return data


def decode_members(data: bytes) -> Members:
    return members_from_wire(msgpack.unpackb(data, raw=False))


# The one form a configuration travels and is stored in (a configuration entry, a
# snapshot's metadata in the peer protocol and in the snapshot file): an array of the
# sorted voters, the sorted learners, and [id, peer address, client address] per member.


def members_to_wire(members: Members) -> list[Any]:
    addresses = [[node, a.peer, a.client] for node, a in members.addresses]
    return [sorted(members.voters), sorted(members.learners), addresses]


def members_from_wire(value: object) -> Members:
    """The configuration `value` holds; ValueError saying what is wrong with it."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"a configuration is [voters, learners, addresses], not {value!r:.60}")
    voters, learners, addresses = value
    return Members(
        frozenset(_node_ids("voters", voters)),
        frozenset(_node_ids("learners", learners)),
        tuple(_address(item) for item in _array("addresses", addresses)),
    )


def meta_to_wire(meta: SnapshotMeta) -> list[Any]:
    """A snapshot's metadata: [index, term, configuration]."""
    return [meta.index, meta.term, members_to_wire(meta.members)]


def meta_from_wire(value: object) -> SnapshotMeta:
    """The snapshot metadata `value` holds; ValueError saying what is wrong with it."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(
            f"a snapshot's metadata is [index, term, configuration], not {value!r:.60}"
        )
    index, term, members = value
    if type(index) is not int or type(term) is not int or index < 0 or term < 0:
        raise ValueError(f"a snapshot's index and term are counts, not {index!r}, {term!r}")
    return SnapshotMeta(index, term, members_from_wire(members))


def _array(what: str, value: object) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"a configuration's {what} is not an array: {value!r:.60}")
    return value


def _node_ids(what: str, value: object) -> list[NodeId]:
    ids = _array(what, value)
    for node in ids:
        if type(node) is not str:
            raise ValueError(f"a configuration's {what} holds {node!r:.40}, not a node id")
    return list(ids)


def _address(item: object) -> tuple[NodeId, MemberAddress]:
    if (
        not isinstance(item, list | tuple)
        or len(item) != 3
        or not all(type(field) is str for field in item)
    ):
        raise ValueError(
            f"a configuration's address is [id, peer address, client address], not {item!r:.60}"
        )
    node, peer, client = item
    return node, MemberAddress(peer, client)


class Configurations:
    """The configurations a node's log holds: the one in force at the log's start (the
    snapshot's, or the bootstrap one) and one per configuration entry after it. The
    newest is in force, committed or not."""

    def __init__(self, base: Members) -> None:
        #: the configuration as of the log's snapshot index
        self.base = base
        #: (index, configuration) of each configuration entry in the log, in order
        self.changes: list[tuple[int, Members]] = []

    @property
    def current(self) -> Members:
        return self.changes[-1][1] if self.changes else self.base

    @property
    def last_index(self) -> int:
        """The index of the newest configuration entry in the log (0 for none)."""
        return self.changes[-1][0] if self.changes else 0

    def at(self, index: int) -> Members:
        """The configuration in force once the log up to `index` is applied (index at or
        past the snapshot index)."""
        chosen = self.base
        for at, members in self.changes:
            if at > index:
                break
            chosen = members
        return chosen

    def appended(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if entry.kind is EntryKind.CONFIG:
                self.changes.append((entry.index, decode_members(entry.data)))

    def truncated(self, index: int) -> None:
        """The log lost its entries from `index` on: their configurations are undone."""
        while self.changes and self.changes[-1][0] >= index:
            self.changes.pop()

    def compacted(self, index: int) -> None:
        """The log now starts after `index`: fold the configurations up to it into the base."""
        self.base = self.at(index)
        self.changes = [(at, members) for at, members in self.changes if at > index]

    def reset(self, members: Members) -> None:
        """The log was replaced by a snapshot holding `members`."""
        self.base, self.changes = members, []
