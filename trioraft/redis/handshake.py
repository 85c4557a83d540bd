"""What clients send on connect, as Redis 7 answers it: HELLO's arguments and reply, client
names, and the parameters of CONFIG GET.

Sans-I/O: the server keeps the connection's state and applies what these functions decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from trioraft.kvstore import arguments, glob
from trioraft.redis.info import REDIS_VERSION
from trioraft.redis.replies import ErrorReply, Map, Reply

if TYPE_CHECKING:
    from trioraft.redis.limits import ClientLimits

__all__ = ["Hello", "check_client_name", "config_get", "config_parameters", "hello_reply"]

NOAUTH_HELLO: Final = ErrorReply(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)
_BAD_NAME: Final = ErrorReply(
    "ERR Client names cannot contain spaces, newlines or special characters."
)


@attrs.frozen
class Hello:
    """The arguments of one `HELLO [protover [AUTH username password] [SETNAME name]]`."""

    #: 2 or 3; None keeps the connection's protocol
    protocol: int | None = None
    #: (username, password) to authenticate with
    auth: tuple[bytes, bytes] | None = None
    #: the connection's new name (empty: no name)
    name: bytes | None = None

    @classmethod
    def parse(cls, args: list[bytes]) -> Hello | ErrorReply:
        """`args` is the whole request, HELLO first. Errors in Redis's words and order."""
        if len(args) < 2:
            return cls()
        protocol = arguments.parse_int(args[1])
        if protocol is None:
            return ErrorReply("ERR Protocol version is not an integer or out of range")
        if protocol not in (2, 3):
            return ErrorReply("NOPROTO unsupported protocol version")
        auth = name = None
        k = 2
        while k < len(args):
            option = args[k].upper()
            more = len(args) - 1 - k
            if option == b"AUTH" and more >= 2:
                auth = (args[k + 1], args[k + 2])
                k += 3
            elif option == b"SETNAME" and more >= 1:
                name = args[k + 1]
                bad_name = check_client_name(name)
                if bad_name is not None:
                    return bad_name
                k += 2
            else:
                text = args[k].decode(errors="replace")
                return ErrorReply(f"ERR Syntax error in HELLO option '{text}'")
        return cls(protocol, auth, name)


def check_client_name(name: bytes) -> ErrorReply | None:
    """Redis's rule: a client name is printable ASCII without spaces (or empty: no name)."""
    if all(0x21 <= byte <= 0x7E for byte in name):
        return None
    return _BAD_NAME


def hello_reply(*, protocol: int, client_id: int, leader: bool) -> Map:
    """HELLO's answer, the fields Redis 7 gives. `server` and `version` name the Redis
    release whose commands trioraft follows (INFO has trioraft's own version); `role` is
    `master` on the Raft leader and `replica` on every other node."""
    fields: tuple[tuple[str, Reply], ...] = (
        ("server", b"redis"),
        ("version", REDIS_VERSION.encode()),
        ("proto", protocol),
        ("id", client_id),
        ("mode", b"standalone"),
        ("role", b"master" if leader else b"replica"),
        ("modules", []),
    )
    return Map(tuple((name.encode(), value) for name, value in fields))


def config_parameters(limits: ClientLimits, fsync: bool) -> dict[bytes, bytes]:
    """The Redis configuration parameters trioraft has an honest value for."""
    return {
        # every write is in the log before it is acknowledged; fsynced unless fsync is off
        b"appendonly": b"yes",
        b"appendfsync": b"always" if fsync else b"no",
        # snapshots follow the log's size, never Redis's timed schedule
        b"save": b"",
        b"databases": b"1",
        b"maxclients": b"%d" % limits.max_clients,
        b"maxmemory": b"0",
        b"maxmemory-policy": b"noeviction",
        b"proto-max-bulk-len": b"%d" % limits.max_value_bytes,
        b"timeout": b"%d" % limits.idle_timeout,
    }


def config_get(patterns: list[bytes], parameters: dict[bytes, bytes]) -> Map:
    """CONFIG GET: every parameter that matches any of the glob `patterns`, each once, in
    `parameters`' order. Names match regardless of case, as in Redis."""
    matchers = [glob.compile_pattern(pattern.lower()) for pattern in patterns]
    return Map(
        tuple(
            (name, value)
            for name, value in parameters.items()
            if any(matches(name) for matches in matchers)
        )
    )
