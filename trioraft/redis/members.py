"""RAFT.MEMBER and RAFT.TRANSFER: membership changes and leadership transfer on demand.

    RAFT.MEMBER LIST
    RAFT.MEMBER ADD id peer_addr client_addr    (joins as a learner; promoted once caught up)
    RAFT.MEMBER PROMOTE id
    RAFT.MEMBER REMOVE id
    RAFT.TRANSFER [id]

Any node takes them; a follower passes them to the leader, as it does writes. A change is
answered +OK once committed; a refused one with -ERR saying why (nothing changed).
"""

from __future__ import annotations

from typing import Any

from trioraft.core.membership import ChangeKind, MemberChange
from trioraft.core.messages import MemberAddress
from trioraft.kvstore import arguments
from trioraft.redis.replies import ErrorReply, Map, Reply
from trioraft.transport.addresses import parse_address

#: RAFT.MEMBER subcommand -> (the change, the number of arguments after the subcommand)
_CHANGES = {
    b"ADD": (ChangeKind.ADD, 3),
    b"PROMOTE": (ChangeKind.PROMOTE, 1),
    b"REMOVE": (ChangeKind.REMOVE, 1),
}

#: stands for RAFT.MEMBER LIST among the parsed commands
LIST = "list"


def parse_member_command(args: list[bytes]) -> MemberChange | ErrorReply | str:
    """The change RAFT.MEMBER asks for, LIST, or the error to answer."""
    if len(args) < 2:
        return arguments.arity_error("raft.member")
    sub = args[1].upper()
    if sub == b"LIST":
        return LIST if len(args) == 2 else arguments.arity_error("raft.member|list")
    if sub not in _CHANGES:
        text = args[1].decode(errors="replace")
        return ErrorReply(f"ERR unknown subcommand '{text}'. Try LIST, ADD, PROMOTE or REMOVE.")
    kind, count = _CHANGES[sub]
    if len(args) != 2 + count:
        return arguments.arity_error(f"raft.member|{sub.decode().lower()}")
    node = args[2].decode(errors="replace")
    if not node or not node.isprintable() or " " in node:
        return ErrorReply(f"ERR invalid member id {node!r}")
    if kind is not ChangeKind.ADD:
        return MemberChange(kind, node)
    addresses = []
    for name, raw in (("peer_addr", args[3]), ("client_addr", args[4])):
        try:
            addresses.append(str(parse_address(raw.decode(errors="replace"))))
        except ValueError as exc:
            return ErrorReply(f"ERR {name}: {exc}")
    return MemberChange(kind, node, MemberAddress(*addresses))


def parse_transfer(args: list[bytes]) -> str | ErrorReply | None:
    """The node RAFT.TRANSFER names (None: the most caught-up voter), or the error."""
    if len(args) > 2:
        return arguments.arity_error("raft.transfer")
    return args[1].decode(errors="replace") if len(args) == 2 else None


def member_rows_reply(rows: list[dict[str, Any]]) -> Reply:
    return [
        Map(tuple((key.encode(), str(value).encode()) for key, value in row.items()))
        for row in rows
    ]
