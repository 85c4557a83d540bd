"""The data commands as the node meets them before they run (trioraft.kvstore.data_commands):
the table's names, arities and write flags, validation with Redis's error texts (the
argument checks of arguments.py among them), and a command's log entry form."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import pytest
from harness.kv_store import NOT_INT, SYNTAX, arity, cmd
from hypothesis import given
from hypothesis import strategies as st

from trioraft.kvstore import arguments, data_commands
from trioraft.kvstore.store import COMMANDS, KVStore
from trioraft.redis.replies import ErrorReply

# -- the command table


def test_table_names_arity_and_write_flags() -> None:
    expected = {
        "get": (2, False),
        "set": (-3, True),
        "del": (-2, True),
        "delex": (-2, True),
        "digest": (2, False),
        "exists": (-2, False),
        "incr": (2, True),
        "decr": (2, True),
        "incrby": (3, True),
        "decrby": (3, True),
        "incrbyfloat": (3, True),
        "append": (3, True),
        "strlen": (2, False),
        "mget": (-2, False),
        "mset": (-3, True),
        "keys": (2, False),
        "scan": (-2, False),
        "dbsize": (1, False),
        "type": (2, False),
        "raft.revision": (2, False),
        "setex": (4, True),
        "psetex": (4, True),
        "setnx": (3, True),
        "getset": (3, True),
        "getdel": (2, True),
        "getex": (-2, True),
        "expire": (-3, True),
        "pexpire": (-3, True),
        "expireat": (-3, True),
        "pexpireat": (-3, True),
        "persist": (2, True),
        "ttl": (2, False),
        "pttl": (2, False),
        "expiretime": (2, False),
        "pexpiretime": (2, False),
        "msetnx": (-3, True),
        "getrange": (4, False),
        "setrange": (4, True),
        "rename": (3, True),
        "renamenx": (3, True),
        "copy": (-3, True),
        "unlink": (-2, True),
        "touch": (-2, False),
        "randomkey": (1, False),
        "flushall": (-1, True),
        "flushdb": (-1, True),
    }
    actual = {spec.name: (spec.arity, spec.write) for spec in COMMANDS.values()}
    assert actual == expected
    assert all(name == spec.name.encode() for name, spec in COMMANDS.items())


def test_command_names_are_case_insensitive() -> None:
    assert data_commands.is_data_command(b"gEt")
    assert data_commands.is_data_command(b"MSet")
    assert not data_commands.is_data_command(b"PING")
    assert not data_commands.is_data_command(b"info")
    assert data_commands.is_write(cmd("SeT k v"))
    assert not data_commands.is_write(cmd("mget a b"))
    with pytest.raises(KeyError):
        data_commands.is_write(cmd("ping"))


# -- validate


def test_unknown_command_text() -> None:
    assert data_commands.validate(cmd("FOO a b")) == ErrorReply(
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
    )
    assert data_commands.validate([b"foo"]) == ErrorReply(
        "ERR unknown command 'foo', with args beginning with: "
    )
    assert data_commands.validate([]) == ErrorReply(
        "ERR unknown command '', with args beginning with: "
    )


def test_unknown_command_truncates_like_redis() -> None:
    # each argument gets what is left of a 128-byte budget; none starts past it
    error = data_commands.validate([b"x", b"a" * 100, b"b" * 100, b"c"])
    shown = "'" + "a" * 100 + "' '" + "b" * 25 + "' "
    assert error == ErrorReply("ERR unknown command 'x', with args beginning with: " + shown)
    error = data_commands.validate([b"n" * 200, b"a" * 300])
    assert error == ErrorReply(
        "ERR unknown command '" + "n" * 128 + "', with args beginning with: '" + "a" * 128 + "' "
    )


def test_unknown_command_sanitizes_bytes() -> None:
    # CR and LF become spaces; C strings stop at NUL; other bytes survive as escapes
    error = data_commands.validate([b"fo\r\no", b"a\x00b", b"\xff"])
    assert isinstance(error, ErrorReply)
    assert error.text == "ERR unknown command 'fo  o', with args beginning with: 'a' '\udcff' "
    assert error.text.encode("utf-8", "surrogateescape").endswith(b"'\xff' ")


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("GET", "get"),
        ("get a b", "get"),
        ("SET k", "set"),
        ("del", "del"),
        ("exists", "exists"),
        ("incr", "incr"),
        ("incr a b", "incr"),
        ("Decr", "decr"),
        ("incrby k", "incrby"),
        ("decrby k 1 2", "decrby"),
        ("append k", "append"),
        ("strlen", "strlen"),
        ("mget", "mget"),
        ("mset k", "mset"),
        ("MSET a 1 b", "mset"),
        ("keys", "keys"),
        ("keys a b", "keys"),
        ("scan", "scan"),
        ("dbsize x", "dbsize"),
        ("type", "type"),
    ],
)
def test_wrong_number_of_arguments(line: str, name: str) -> None:
    assert data_commands.validate(cmd(line)) == arity(name)
    assert KVStore().apply(cmd(line)) == arity(name)


@pytest.mark.parametrize(
    "line",
    [
        "SET k v NX XX",
        "SET k v XX NX",
        "SET k v EX 10 PX 10",
        "SET k v EX 10 KEEPTTL",
        "SET k v KEEPTTL PXAT 10",
        "SET k v EX",
        "SET k v BOGUS",
        "SET k v IFEQ",
        "SET k v NX IFEQ x",
        "SET k v IFEQ x XX",
        "SET k v IFEQ x IFEQ y",
        "SCAN 0 COUNT",
        "SCAN 0 MATCH",
        "SCAN 0 COUNT 0",
        "SCAN 0 COUNT -3",
        "SCAN 0 TYPE string",
        "FLUSHALL NOW",
        "FLUSHDB ASYNC SYNC",
    ],
)
def test_syntax_errors(line: str) -> None:
    assert data_commands.validate(cmd(line)) == SYNTAX
    assert KVStore().apply(cmd(line)) == SYNTAX


@pytest.mark.parametrize(
    "line",
    [
        "SET k v NX NX GET GET",
        "SET k v get nx",
        "SET k v xx GET keepttl",
        "SET k v IFEQ old GET",
        "SET k v GET ifeq NX",
        "FLUSHALL async",
        "FLUSHDB SYNC",
        "SCAN 0 MATCH a* COUNT 5 MATCH b*",
        "SCAN 18446744073709551615",
        "SCAN +5",
        "SCAN -007",
        "INCRBY k -9223372036854775808",
        "DECRBY k 9223372036854775807",
    ],
)
def test_accepted_commands(line: str) -> None:
    assert data_commands.validate(cmd(line)) is None


@pytest.mark.parametrize(
    "line",
    [
        "INCRBY k x",
        "INCRBY k 1.5",
        "INCRBY k 01",
        "INCRBY k +1",
        "INCRBY k -0",
        "INCRBY k 9223372036854775808",
        "DECRBY k -9223372036854775809",
        "SCAN 0 COUNT ten",
    ],
)
def test_integer_errors(line: str) -> None:
    assert data_commands.validate(cmd(line)) == NOT_INT


def test_integer_argument_with_blank() -> None:
    assert data_commands.validate([b"INCRBY", b"k", b" 1"]) == NOT_INT
    assert data_commands.validate([b"INCRBY", b"k", b""]) == NOT_INT


def test_decrby_of_the_smallest_integer() -> None:
    line = "DECRBY k -9223372036854775808"
    assert data_commands.validate(cmd(line)) == ErrorReply("ERR decrement would overflow")


def test_cursor_spellings() -> None:
    assert data_commands.validate([b"SCAN", b"0" * 5000 + b"7"]) is None
    assert data_commands.validate([b"SCAN", b" \t+7"]) is None
    assert data_commands.validate([b"SCAN", b"1" * 5000]) == ErrorReply("ERR invalid cursor")


@pytest.mark.parametrize(
    "cursor", [b"x", b"-1", b"18446744073709551616", b"1.0", b"", b"0x10", b"7 ", b"+"]
)
def test_invalid_cursor(cursor: bytes) -> None:
    assert data_commands.validate([b"SCAN", cursor]) == ErrorReply("ERR invalid cursor")


def test_cursor_error_comes_before_option_errors() -> None:
    assert data_commands.validate(cmd("SCAN x BOGUS")) == ErrorReply("ERR invalid cursor")


def test_parse_int_bounds() -> None:
    assert arguments.parse_int(b"-9223372036854775808") == -(2**63)
    assert arguments.parse_int(b"9223372036854775807") == 2**63 - 1
    assert arguments.parse_int(b"0") == 0
    assert arguments.parse_int(b"-0") is None
    assert arguments.parse_int(b"00") is None
    assert arguments.parse_int(b"1\n") is None


# -- log entries


@given(st.lists(st.binary(), min_size=1, max_size=20))
def test_command_encoding_round_trip(args: list[bytes]) -> None:
    assert data_commands.decode_command(data_commands.encode_command(args)) == args


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb("SET", use_bin_type=True),
        msgpack.packb(["SET", "k"], use_bin_type=True),
        msgpack.packb([b"SET", 1], use_bin_type=True),
        msgpack.packb([b"GET", b"k"], use_bin_type=True) + b"\x00",
        msgpack.packb([b"GET", b"k"], use_bin_type=True)[:-1],
    ],
)
def test_decode_rejects_what_is_not_a_command(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an encoded command"):
        data_commands.decode_command(data)
