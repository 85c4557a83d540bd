"""Every command of docs/protocol.md through a real socket, sent to a follower, with
Redis's replies and error texts; pipelining; linearizable and READONLY reads.

Most tests share the session's 3-node cluster and use keys under a prefix of their own;
FLUSHALL and password tests get clusters of their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster, running_cluster
from harness.process_node import Node
from harness.resp_client import Error, Reply, RespClient, encode_request, parse_info

pytestmark = pytest.mark.processes

INT64_MAX = 2**63 - 1
NOT_AN_INTEGER = Error("ERR value is not an integer or out of range")
SYNTAX_ERROR = Error("ERR syntax error")
WRONGPASS = Error("WRONGPASS invalid username-password pair or user is disabled.")
BAD_CLIENT_NAME = Error("ERR Client names cannot contain spaces, newlines or special characters.")
NOAUTH_HELLO = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)


def arity(name: str) -> Error:
    return Error(f"ERR wrong number of arguments for '{name}' command")


# ---- strings ------------------------------------------------------------------------


def test_get_returns_the_value_or_nil(client: RespClient) -> None:
    assert client.call("SET", "get:k", b"binary\x00\xff\r\nvalue") == "OK"
    assert client.call("GET", "get:k") == b"binary\x00\xff\r\nvalue"
    assert client.call("GET", "get:missing") is None
    assert client.call("GET") == arity("get")
    assert client.call("GET", "a", "b") == arity("get")


def test_set_nx_sets_only_a_missing_key(client: RespClient) -> None:
    assert client.call("SET", "setnx:k", "1", "NX") == "OK"
    assert client.call("SET", "setnx:k", "2", "nx") is None
    assert client.call("GET", "setnx:k") == b"1"


def test_set_xx_sets_only_an_existing_key(client: RespClient) -> None:
    assert client.call("SET", "setxx:k", "1", "XX") is None
    assert client.call("GET", "setxx:k") is None
    assert client.call("SET", "setxx:k", "1") == "OK"
    assert client.call("SET", "setxx:k", "2", "XX") == "OK"
    assert client.call("GET", "setxx:k") == b"2"


def test_set_get_returns_the_old_value(client: RespClient) -> None:
    assert client.call("SET", "setget:k", "1", "GET") is None
    assert client.call("SET", "setget:k", "2", "GET") == b"1"
    assert client.call("SET", "setget:k", "3", "NX", "GET") == b"2"
    assert client.call("GET", "setget:k") == b"2"
    assert client.call("SET", "setget:new", "1", "XX", "GET") is None
    assert client.call("GET", "setget:new") is None


def test_set_ifeq_sets_only_when_the_value_matches(client: RespClient) -> None:
    assert client.call("SET", "ifeq:k", "old") == "OK"
    assert client.call("SET", "ifeq:k", "new", "IFEQ", "other") is None
    assert client.call("GET", "ifeq:k") == b"old"
    assert client.call("SET", "ifeq:k", "new", "IFEQ", "old") == "OK"
    assert client.call("SET", "ifeq:k", "newer", "IFEQ", "new", "GET") == b"new"
    assert client.call("GET", "ifeq:k") == b"newer"
    assert client.call("SET", "ifeq:missing", "v", "IFEQ", "x") is None
    assert client.call("GET", "ifeq:missing") is None


def test_a_key_with_a_ttl_goes_at_its_deadline_on_every_node(
    shared_cluster: ProcessCluster, client: RespClient
) -> None:
    assert client.call("SET", "ttl:k", "v", "PX", "300") == "OK"
    assert 0 < client.call("PTTL", "ttl:k") <= 300
    assert client.call("RAFT.REVISION", "ttl:k") > 0
    wait_until(lambda: client.call("GET", "ttl:k") is None, 10.0, "ttl:k expired")
    assert client.call("TTL", "ttl:k") == -2
    assert client.call("RAFT.REVISION", "ttl:k") is None
    for node in shared_cluster.nodes:
        with node.client() as local:
            assert local.call("READONLY") == "OK"
            wait_until(lambda: local.call("EXISTS", "ttl:k") == 0, 10.0, "deleted everywhere")


@pytest.mark.parametrize(
    "options",
    [
        ("NX", "XX"),
        ("IFEQ", "x", "NX"),
        ("XX", "IFEQ", "x"),
        ("IFEQ",),
        ("EX", "10", "PX", "10"),
        ("BOGUS",),
    ],
)
def test_set_with_conflicting_or_unknown_options_is_a_syntax_error(
    client: RespClient, options: tuple[str, ...]
) -> None:
    assert client.call("SET", "setbad:k", "v", *options) == SYNTAX_ERROR
    assert client.call("GET", "setbad:k") is None


def test_set_arity(client: RespClient) -> None:
    assert client.call("SET", "setarity:k") == arity("set")


def test_del_counts_the_keys_it_removed(client: RespClient) -> None:
    assert client.call("MSET", "del:a", "1", "del:b", "2") == "OK"
    assert client.call("DEL", "del:a", "del:b", "del:c", "del:a") == 2
    assert client.call("EXISTS", "del:a", "del:b") == 0
    assert client.call("DEL") == arity("del")


def test_exists_counts_every_named_key_that_exists(client: RespClient) -> None:
    assert client.call("SET", "exists:a", "1") == "OK"
    assert client.call("EXISTS", "exists:a", "exists:a", "exists:none") == 2
    assert client.call("EXISTS", "exists:none") == 0
    assert client.call("EXISTS") == arity("exists")


def test_incr_and_decr_count_from_zero(client: RespClient) -> None:
    assert client.call("INCR", "incr:k") == 1
    assert client.call("INCR", "incr:k") == 2
    assert client.call("DECR", "incr:k") == 1
    assert client.call("DECR", "incr:fresh") == -1
    assert client.call("GET", "incr:k") == b"1"


def test_incrby_and_decrby_add_the_amount(client: RespClient) -> None:
    assert client.call("INCRBY", "incrby:k", "10") == 10
    assert client.call("INCRBY", "incrby:k", "-3") == 7
    assert client.call("DECRBY", "incrby:k", "10") == -3
    assert client.call("GET", "incrby:k") == b"-3"


@pytest.mark.parametrize("value", ["abc", "1.5", " 1", "01", "", "99999999999999999999"])
def test_incr_of_a_non_integer_value_is_an_error(client: RespClient, value: str) -> None:
    key = f"incrbad:{value!r}"
    assert client.call("SET", key, value) == "OK"
    for command in (("INCR", key), ("DECR", key), ("INCRBY", key, "1"), ("DECRBY", key, "1")):
        assert client.call(*command) == NOT_AN_INTEGER
    assert client.call("GET", key) == value.encode()


@pytest.mark.parametrize("amount", ["x", "1.0", "9223372036854775808", "+1"])
def test_incrby_with_a_non_integer_amount_is_an_error(client: RespClient, amount: str) -> None:
    assert client.call("INCRBY", "incrbyamount:k", amount) == NOT_AN_INTEGER
    assert client.call("DECRBY", "incrbyamount:k", amount) == NOT_AN_INTEGER
    assert client.call("EXISTS", "incrbyamount:k") == 0


def test_incr_past_int64_is_an_overflow_error(client: RespClient) -> None:
    overflow = Error("ERR increment or decrement would overflow")
    assert client.call("SET", "overflow:max", INT64_MAX) == "OK"
    assert client.call("INCR", "overflow:max") == overflow
    assert client.call("INCRBY", "overflow:max", "1") == overflow
    assert client.call("SET", "overflow:min", -INT64_MAX - 1) == "OK"
    assert client.call("DECR", "overflow:min") == overflow
    assert client.call("DECRBY", "overflow:zero", str(-INT64_MAX - 1)) == Error(
        "ERR decrement would overflow"
    )
    assert client.call("GET", "overflow:max") == str(INT64_MAX).encode()


def test_incr_arity(client: RespClient) -> None:
    assert client.call("INCR") == arity("incr")
    assert client.call("INCRBY", "incrarity:k") == arity("incrby")
    assert client.call("DECR", "a", "b") == arity("decr")
    assert client.call("DECRBY", "incrarity:k") == arity("decrby")


def test_append_returns_the_new_length(client: RespClient) -> None:
    assert client.call("APPEND", "append:k", "Hello") == 5
    assert client.call("APPEND", "append:k", b" \x00World") == 12
    assert client.call("GET", "append:k") == b"Hello \x00World"
    assert client.call("APPEND", "append:k") == arity("append")


def test_append_past_the_value_limit_is_refused_as_it_applies(client: RespClient) -> None:
    limit = 1024 * 1024  # the default max_value_bytes
    assert client.call("SET", "appendlimit:k", b"a" * (limit - 10)) == "OK"
    # both arrive in one read and are proposed together: each fits the value as it was
    # before either applied, together they pass the limit
    assert client.pipeline(
        ("APPEND", "appendlimit:k", "12345678"), ("APPEND", "appendlimit:k", "12345678")
    ) == [limit - 2, Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    assert client.call("STRLEN", "appendlimit:k") == limit - 2


def test_strlen_counts_bytes(client: RespClient) -> None:
    assert client.call("SET", "strlen:k", "héllo") == "OK"
    assert client.call("STRLEN", "strlen:k") == 6
    assert client.call("STRLEN", "strlen:missing") == 0
    assert client.call("STRLEN") == arity("strlen")


def test_mget_answers_nil_for_missing_keys(client: RespClient) -> None:
    assert client.call("MSET", "mget:a", "1", "mget:b", "2") == "OK"
    assert client.call("MGET", "mget:a", "mget:none", "mget:b", "mget:a") == [
        b"1",
        None,
        b"2",
        b"1",
    ]
    assert client.call("MGET") == arity("mget")


def test_mset_sets_every_pair(client: RespClient) -> None:
    assert client.call("MSET", "mset:a", "1", "mset:b", "2", "mset:a", "3") == "OK"
    assert client.call("MGET", "mset:a", "mset:b") == [b"3", b"2"]


def test_mset_with_an_odd_argument_count_is_an_arity_error(client: RespClient) -> None:
    assert client.call("MSET", "msetodd:a", "1", "msetodd:b") == arity("mset")
    assert client.call("MSET", "msetodd:a") == arity("mset")
    assert client.call("EXISTS", "msetodd:a", "msetodd:b") == 0


def test_mset_is_atomic_for_readers_on_another_node(shared_cluster: ProcessCluster) -> None:
    writer_node, reader_node = shared_cluster.followers()[0], shared_cluster.wait_for_leader()
    done = threading.Event()
    write_replies: list[Reply] = []

    def write() -> None:
        try:
            with writer_node.client() as writer:
                for i in range(150):
                    write_replies.append(writer.call("MSET", "atomic:a", i, "atomic:b", i))
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen: list[Reply] = []
    try:
        with reader_node.client() as reader:
            while not done.is_set():
                seen.append(reader.call("MGET", "atomic:a", "atomic:b"))
    finally:
        thread.join()
    assert write_replies == ["OK"] * 150
    assert len(seen) > 10
    torn = [pair for pair in seen if not (isinstance(pair, list) and pair[0] == pair[1])]
    assert torn == []


def test_keys_matches_glob_patterns(client: RespClient) -> None:
    words = ["hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "Hello"]
    assert client.call("MSET", *[item for w in words for item in (f"keys:{w}", "1")]) == "OK"

    def keys(pattern: str) -> list[str]:
        reply = client.call("KEYS", f"keys:{pattern}")
        assert isinstance(reply, list)
        return sorted(key.decode()[len("keys:") :] for key in reply if isinstance(key, bytes))

    assert keys("h?llo") == ["h*llo", "hallo", "hello", "hxllo"]
    assert keys("h*llo") == ["h*llo", "hallo", "heeeello", "hello", "hllo", "hxllo"]
    assert keys("h[ae]llo") == ["hallo", "hello"]
    assert keys("h[^e]llo") == ["h*llo", "hallo", "hxllo"]
    assert keys("h[a-b]llo") == ["hallo"]
    assert keys("h\\*llo") == ["h*llo"]
    assert keys("hello") == ["hello"]
    assert keys("nothing*") == []
    assert client.call("KEYS") == arity("keys")


def test_scan_with_match_and_count_visits_every_key_until_cursor_0(client: RespClient) -> None:
    wanted = {f"scan:{i}".encode() for i in range(120)}
    assert client.call("MSET", *[item for key in wanted for item in (key, b"v")]) == "OK"
    assert client.call("SET", "scanother:1", "v") == "OK"
    found: list[bytes] = []
    cursor = b"0"
    for _ in range(10_000):
        reply = client.call("SCAN", cursor, "MATCH", "scan:*", "COUNT", "7")
        assert isinstance(reply, list)
        cursor_reply, keys = reply
        assert isinstance(cursor_reply, bytes)
        assert isinstance(keys, list)
        found += [key for key in keys if isinstance(key, bytes)]
        cursor = cursor_reply
        if cursor == b"0":
            break
    assert cursor == b"0"
    assert set(found) == wanted


def test_scan_errors(client: RespClient) -> None:
    assert client.call("SCAN", "x") == Error("ERR invalid cursor")
    assert client.call("SCAN", "0", "COUNT", "x") == NOT_AN_INTEGER
    assert client.call("SCAN", "0", "COUNT", "0") == SYNTAX_ERROR
    assert client.call("SCAN", "0", "BOGUS", "1") == SYNTAX_ERROR
    assert client.call("SCAN") == arity("scan")


def test_dbsize_counts_the_keys(client: RespClient) -> None:
    before = client.call("DBSIZE")
    assert isinstance(before, int)
    assert client.call("MSET", "dbsize:a", "1", "dbsize:b", "2", "dbsize:c", "3") == "OK"
    assert client.call("DBSIZE") == before + 3
    assert client.call("DBSIZE", "x") == arity("dbsize")


def test_type_is_string_or_none(client: RespClient) -> None:
    assert client.call("SET", "type:k", "v") == "OK"
    assert client.call("TYPE", "type:k") == "string"
    assert client.call("TYPE", "type:missing") == "none"
    assert client.call("TYPE") == arity("type")


# ---- FLUSHALL and FLUSHDB: a cluster of their own -----------------------------------


@pytest.fixture(scope="module")
def flush_cluster() -> Iterator[ProcessCluster]:
    with running_cluster(3) as cluster:
        yield cluster


@pytest.mark.parametrize("command", [("FLUSHALL",), ("FLUSHDB",), ("FLUSHALL", "ASYNC")])
def test_flush_empties_every_node(flush_cluster: ProcessCluster, command: tuple[str, ...]) -> None:
    follower = flush_cluster.followers()[0]
    with follower.client() as client:
        assert client.call("MSET", "a", "1", "b", "2") == "OK"
        assert client.call(*command) == "OK"
    for node in flush_cluster.nodes:
        assert node.call("DBSIZE") == 0, node.id
        assert node.call("GET", "a") is None, node.id


def test_flush_with_a_bad_option_is_a_syntax_error(flush_cluster: ProcessCluster) -> None:
    follower = flush_cluster.followers()[0]
    with follower.client() as client:
        assert client.call("SET", "kept", "1") == "OK"
        assert client.call("FLUSHALL", "NOW") == SYNTAX_ERROR
        assert client.call("FLUSHDB", "SYNC", "ASYNC") == SYNTAX_ERROR
        assert client.call("GET", "kept") == b"1"


# ---- connection commands ------------------------------------------------------------


def test_ping_answers_pong_or_its_message(client: RespClient) -> None:
    assert client.call("PING") == "PONG"
    assert client.call("PING", b"hi\x00there") == b"hi\x00there"
    assert client.call("PING", "a", "b") == arity("ping")


def test_echo_answers_its_message(client: RespClient) -> None:
    assert client.call("ECHO", "hello world") == b"hello world"
    assert client.call("ECHO") == arity("echo")


def test_quit_answers_ok_and_closes(client: RespClient) -> None:
    client.send("QUIT")
    client.send("PING")
    assert client.read() == "OK"
    assert client.read_until_closed() == b""


def test_auth_without_a_configured_password_is_an_error(client: RespClient) -> None:
    assert client.call("AUTH", "secret") == Error(
        "ERR AUTH <password> called without any password configured for the default user. "
        "Are you sure your configuration is correct?"
    )
    assert client.call("PING") == "PONG"


def test_auth_as_default_needs_no_password_when_the_node_has_none(client: RespClient) -> None:
    # Redis's default user without a password accepts any
    assert client.call("AUTH", "default", "anything") == "OK"
    assert client.call("AUTH", "bob", "anything") == WRONGPASS


def test_select_0_is_the_only_database(client: RespClient) -> None:
    assert client.call("SELECT", "0") == "OK"
    assert client.call("SELECT", "1") == Error("ERR DB index is out of range")
    assert client.call("SELECT") == arity("select")


def test_readonly_and_readwrite_answer_ok(client: RespClient) -> None:
    assert client.call("READONLY") == "OK"
    assert client.call("SET", "readonly:k", "v") == "OK"
    assert client.call("READWRITE") == "OK"
    assert client.call("GET", "readonly:k") == b"v"


def info(client: RespClient, *section: str) -> dict[str, str]:
    reply = client.call("INFO", *section)
    assert isinstance(reply, bytes)
    return parse_info(reply)


def test_info_raft_has_the_contract_fields(
    shared_cluster: ProcessCluster, follower: Node, client: RespClient
) -> None:
    reply = client.call("INFO", "raft")
    assert isinstance(reply, bytes)
    assert reply.startswith(b"# Raft\r\n")
    fields = parse_info(reply)
    leader = shared_cluster.wait_for_leader()
    assert fields["node_id"] == follower.id
    assert fields["role"] == "follower"
    assert fields["leader_id"] == leader.id
    assert fields["members"] == "n1,n2,n3"
    numbers = ["term", "commit_index", "last_applied", "last_log_index", "snapshot_index"]
    assert all(fields[name].isdigit() for name in numbers), fields
    assert int(fields["term"]) >= 1
    assert int(fields["last_applied"]) <= int(fields["commit_index"])
    assert int(fields["commit_index"]) <= int(fields["last_log_index"])


def test_plain_info_has_server_raft_and_cluster_sections(client: RespClient) -> None:
    reply = client.call("INFO")
    assert isinstance(reply, bytes)
    headers = [line for line in reply.decode().splitlines() if line.startswith("#")]
    assert {"# Server", "# Raft", "# Cluster"} <= set(headers)
    fields = parse_info(reply)
    assert fields["trioraft_version"]
    assert fields["redis_version"].count(".") == 2
    assert fields["arch_bits"] in ("32", "64")
    assert fields["cluster_enabled"] == "0"
    assert fields["role"] in ("leader", "follower")


def test_info_server_has_only_the_server_section(client: RespClient) -> None:
    fields = info(client, "server")
    assert {"trioraft_version", "redis_version", "arch_bits"} <= set(fields)
    assert "role" not in fields


def test_client_setinfo_answers_ok(client: RespClient) -> None:
    assert client.call("CLIENT", "SETINFO", "lib-name", "redis-py") == "OK"
    assert client.call("CLIENT", "SETINFO", "lib-ver", "5.0.0") == "OK"


def test_client_setname_names_the_connection(client: RespClient) -> None:
    assert client.call("CLIENT", "GETNAME") is None
    assert client.call("CLIENT", "SETNAME", "tester") == "OK"
    assert client.call("CLIENT", "GETNAME") == b"tester"
    assert client.call("CLIENT", "SETNAME", "a b") == BAD_CLIENT_NAME
    assert client.call("CLIENT", "SETNAME", "a\nb") == BAD_CLIENT_NAME
    assert client.call("CLIENT", "GETNAME") == b"tester"
    assert client.call("CLIENT", "SETNAME", "") == "OK"
    assert client.call("CLIENT", "GETNAME") is None
    assert client.call("CLIENT", "SETNAME") == arity("client|setname")


def test_client_id_differs_between_connections(follower: Node) -> None:
    with follower.client() as one, follower.client() as two:
        ids = [one.call("CLIENT", "ID"), two.call("CLIENT", "ID")]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids[0] != ids[1]


def test_command_answers_an_empty_array_and_command_docs_an_empty_map(
    client: RespClient,
) -> None:
    assert client.call("COMMAND") == []
    assert client.call("COMMAND", "DOCS") == []
    exchange(client, ("HELLO", "3"))
    assert exchange(client, ("COMMAND",), ("COMMAND", "DOCS")) == b"*0\r\n%0\r\n"


# ---- CONFIG GET -----------------------------------------------------------------------


def config(client: RespClient, *patterns: str) -> dict[str, str]:
    reply = client.call("CONFIG", "GET", *patterns)
    assert isinstance(reply, list), reply
    names = [name.decode() for name in reply[::2] if isinstance(name, bytes)]
    values = [value.decode() for value in reply[1::2] if isinstance(value, bytes)]
    assert len(names) == len(values) == len(reply) // 2, reply
    return dict(zip(names, values, strict=True))


def test_config_get_answers_what_redis_benchmark_asks(client: RespClient) -> None:
    # the shared cluster fsyncs: every write is logged and fsynced before its reply
    assert config(client, "save") == {"save": ""}
    assert config(client, "appendonly") == {"appendonly": "yes"}
    assert config(client, "appendfsync") == {"appendfsync": "always"}


def test_config_get_reports_the_limits(client: RespClient) -> None:
    assert config(client, "maxclients", "timeout", "proto-max-bulk-len", "databases") == {
        "maxclients": "10000",
        "timeout": "0",
        "proto-max-bulk-len": str(1024 * 1024),
        "databases": "1",
    }
    assert config(client, "maxmemory*") == {"maxmemory": "0", "maxmemory-policy": "noeviction"}


def test_config_get_takes_glob_patterns_in_any_case(client: RespClient) -> None:
    assert config(client, "SAVE") == {"save": ""}
    assert set(config(client, "*max*")) == {
        "maxclients",
        "maxmemory",
        "maxmemory-policy",
        "proto-max-bulk-len",
    }
    assert config(client, "app?ndonly", "[s]ave", "save") == {"appendonly": "yes", "save": ""}
    assert set(config(client, "*")) >= {"save", "appendonly", "maxclients"}
    assert config(client, "nothing*") == {}


def test_config_errors_are_redis_errors(client: RespClient) -> None:
    assert client.call("CONFIG") == arity("config")
    assert client.call("CONFIG", "GET") == arity("config|get")
    assert client.call("CONFIG", "SET", "save", "") == Error(
        "ERR unknown subcommand 'SET'. Try CONFIG HELP."
    )


def test_config_get_is_a_map_under_resp3(client: RespClient) -> None:
    exchange(client, ("HELLO", "3"))
    assert exchange(client, ("CONFIG", "GET", "save")) == b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"


# ---- HELLO and RESP3 ------------------------------------------------------------------


def exchange(client: RespClient, *requests: tuple[str, ...]) -> bytes:
    """Send `requests` at once and read back their replies' bytes unparsed (RESP3 too)."""
    client.send_raw(b"".join(encode_request(*request) for request in requests))
    data = bytearray()
    while (parsed := raw_reply_end(data, 0, len(requests))) is None:
        chunk = client.sock.recv(65536)
        assert chunk, f"closed after {bytes(data)!r}"
        data += chunk
    assert parsed == len(data), f"more than the replies: {bytes(data)!r}"
    return bytes(data)


def raw_reply_end(data: bytes | bytearray, pos: int, count: int) -> int | None:
    """The end of `count` RESP2 or RESP3 replies from `pos`, or None if incomplete."""
    for _ in range(count):
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        kind, size = data[pos : pos + 1], data[pos + 1 : end]
        pos = end + 2
        if kind in (b"$", b"=") and size != b"-1":
            pos += int(size) + 2
            if pos > len(data):
                return None
        elif kind in (b"*", b"%") and size != b"-1":
            items = int(size) * (2 if kind == b"%" else 1)
            found = raw_reply_end(data, pos, items)
            if found is None:
                return None
            pos = found
    return pos


def hello_map(proto: int, client_id: int, role: str = "replica") -> bytes:
    """HELLO's reply, the fields and order Redis 7 sends, under RESP3."""
    fields = [b"redis", b"7.2.0", proto, client_id, b"standalone", role.encode()]
    names = [b"server", b"version", b"proto", b"id", b"mode", b"role"]
    out = bytearray(b"%7\r\n")
    for name, value in zip(names, fields, strict=True):
        out += b"$%d\r\n%s\r\n" % (len(name), name)
        out += (
            b":%d\r\n" % value if isinstance(value, int) else b"$%d\r\n%s\r\n" % (len(value), value)
        )
    return bytes(out + b"$7\r\nmodules\r\n*0\r\n")


def test_hello_3_answers_the_server_map_and_switches_to_resp3(client: RespClient) -> None:
    client_id = client.call("CLIENT", "ID")
    assert isinstance(client_id, int)
    assert exchange(client, ("HELLO", "3")) == hello_map(3, client_id)


def test_hello_role_is_master_on_the_leader(shared_cluster: ProcessCluster) -> None:
    with shared_cluster.wait_for_leader().client() as client:
        reply = client.call("HELLO")
    assert isinstance(reply, list)
    assert dict(zip(reply[::2], reply[1::2], strict=True))[b"role"] == b"master"


def test_hello_2_and_plain_hello_answer_a_flat_array(client: RespClient) -> None:
    client_id = client.call("CLIENT", "ID")
    reply = client.call("HELLO", "2")
    assert reply == [
        *(b"server", b"redis", b"version", b"7.2.0", b"proto", 2, b"id", client_id),
        *(b"mode", b"standalone", b"role", b"replica", b"modules", []),
    ]
    assert client.call("HELLO") == reply


def resp3_cases(prefix: str) -> list[tuple[tuple[str, ...], bytes]]:
    """Requests and their RESP3 replies, with `prefix + "k"` set to v beforehand."""
    k, new, missing, n = (prefix + name for name in ("k", "new", "missing", "n"))
    return [
        (("GET", missing), b"_\r\n"),
        (("GET", k), b"$1\r\nv\r\n"),
        (("MGET", k, missing), b"*2\r\n$1\r\nv\r\n_\r\n"),
        (("SET", k, "w", "NX"), b"_\r\n"),
        (("SET", new, "w", "GET"), b"_\r\n"),
        (("SET", k, "w", "GET"), b"$1\r\nv\r\n"),
        (("SET", k, "x"), b"+OK\r\n"),
        (("EXISTS", k, missing), b":1\r\n"),
        (("DEL", new, missing), b":1\r\n"),
        (("INCR", n), b":1\r\n"),
        (("TYPE", k), b"+string\r\n"),
        (("KEYS", k), b"*1\r\n$%d\r\n%s\r\n" % (len(k), k.encode())),
        (("CLIENT", "GETNAME"), b"_\r\n"),
        (("PING",), b"+PONG\r\n"),
        (("INCR", k), b"-ERR value is not an integer or out of range\r\n"),
        (("INFO", "cluster"), b"=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n"),
    ]


def test_resp3_replies_as_redis_7_sends_them(client: RespClient) -> None:
    client.call("MSET", "resp3:k", "v", "resp3pipe:k", "v")
    exchange(client, ("HELLO", "3"))
    for request, expected in resp3_cases("resp3:"):
        assert exchange(client, request) == expected, request
    pipelined = resp3_cases("resp3pipe:")
    requests = [request for request, _ in pipelined]
    assert exchange(client, *requests) == b"".join(reply for _, reply in pipelined)


def test_hello_2_switches_back_to_resp2(client: RespClient) -> None:
    exchange(client, ("HELLO", "3"))
    assert exchange(client, ("GET", "resp2again:missing")) == b"_\r\n"
    assert isinstance(client.call("HELLO", "2"), list)
    assert exchange(client, ("GET", "resp2again:missing")) == b"$-1\r\n"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("4",), "NOPROTO unsupported protocol version"),
        (("1",), "NOPROTO unsupported protocol version"),
        (("three",), "ERR Protocol version is not an integer or out of range"),
        (("3", "foo"), "ERR Syntax error in HELLO option 'foo'"),
        (("3", "AUTH", "default"), "ERR Syntax error in HELLO option 'AUTH'"),
        (("3", "SETNAME"), "ERR Syntax error in HELLO option 'SETNAME'"),
        (("3", "SETNAME", "a b"), BAD_CLIENT_NAME.text),
        (("3", "AUTH", "bob", "x"), WRONGPASS.text),
    ],
)
def test_a_bad_hello_is_an_error_and_changes_nothing(
    client: RespClient, args: tuple[str, ...], error: str
) -> None:
    assert client.call("HELLO", *args) == Error(error)
    assert exchange(client, ("GET", "badhello:missing")) == b"$-1\r\n"
    assert client.call("CLIENT", "GETNAME") is None


def test_hello_setname_and_auth_as_default(client: RespClient) -> None:
    reply = client.call("HELLO", "2", "SETNAME", "me", "AUTH", "default", "any")
    assert isinstance(reply, list)
    assert client.call("CLIENT", "GETNAME") == b"me"


def test_an_unknown_command_names_itself_and_its_first_args(client: RespClient) -> None:
    assert client.call("FOO", "a", "b c") == Error(
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b c' "
    )
    assert client.call("LPUSH", "list", "x") == Error(
        "ERR unknown command 'LPUSH', with args beginning with: 'list' 'x' "
    )


# ---- authentication: a single-node cluster with a password --------------------------


@pytest.fixture(scope="module")
def password_node() -> Iterator[Node]:
    with running_cluster(1, password="s3cret") as cluster:
        yield cluster.nodes[0]


@pytest.mark.parametrize(
    "command",
    [("GET", "k"), ("SET", "k", "v"), ("PING",), ("INFO",), ("SELECT", "0"), ("DBSIZE",)],
)
def test_every_command_before_auth_gets_noauth(
    password_node: Node, command: tuple[str, ...]
) -> None:
    with password_node.client(auth=False) as client:
        assert client.call(*command) == Error("NOAUTH Authentication required.")


def test_hello_before_auth_gets_noauth_and_stays_resp2(password_node: Node) -> None:
    with password_node.client(auth=False) as client:
        assert client.call("HELLO", "3") == Error(NOAUTH_HELLO)
        assert client.call("HELLO") == Error(NOAUTH_HELLO)
        assert client.call("HELLO", "3", "AUTH", "default", "wrong") == WRONGPASS
        assert client.call("HELLO", "3", "AUTH", "bob", "s3cret") == WRONGPASS
        assert client.call("HELLO", "3", "SETNAME", "me") == Error(NOAUTH_HELLO)
        assert client.call("GET", "k") == Error("NOAUTH Authentication required.")


def test_hello_with_auth_authenticates_names_and_switches(password_node: Node) -> None:
    with password_node.client(auth=False) as client:
        reply = exchange(client, ("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "me"))
        assert reply.startswith(b"%7\r\n")
        assert b"$4\r\nrole\r\n$6\r\nmaster\r\n" in reply
        assert exchange(client, ("GET", "hello:missing"), ("CLIENT", "GETNAME")) == (
            b"_\r\n$2\r\nme\r\n"
        )


def test_a_wrong_password_gets_wrongpass(password_node: Node) -> None:
    with password_node.client(auth=False) as client:
        assert client.call("AUTH", "wrong") == Error(
            "WRONGPASS invalid username-password pair or user is disabled."
        )
        assert client.call("GET", "k") == Error("NOAUTH Authentication required.")


def test_the_right_password_opens_the_connection(password_node: Node) -> None:
    with password_node.client(auth=False) as client:
        assert client.call("AUTH", "s3cret") == "OK"
        assert client.call("SET", "k", "v") == "OK"
        assert client.call("GET", "k") == b"v"
    with password_node.client(auth=False) as other:
        assert other.call("AUTH", "default", "s3cret") == "OK"
        assert other.call("GET", "k") == b"v"


# ---- pipelining and consistency -----------------------------------------------------


def test_1000_pipelined_requests_are_answered_in_order(client: RespClient) -> None:
    requests: list[tuple[str | int, ...]] = []
    requests += [("SET", f"pipe:{i}", i) for i in range(300)]
    requests += [("INCR", "pipe:n")] * 300
    requests += [("GET", f"pipe:{i}") for i in range(300)]
    requests += [("ECHO", i) for i in range(100)]
    expected: list[Reply] = ["OK"] * 300
    expected += list(range(1, 301))
    expected += [str(i).encode() for i in range(300)]
    expected += [str(i).encode() for i in range(100)]
    assert client.pipeline(*requests) == expected


def test_a_pipelined_read_sees_the_writes_sent_before_it(client: RespClient) -> None:
    requests: list[tuple[str | int, ...]] = []
    expected: list[Reply] = []
    for i in range(10):
        requests += [("SET", "pipeorder:k", i), ("GET", "pipeorder:k"), ("PING",)]
        expected += ["OK", str(i).encode(), "PONG"]
    assert client.pipeline(*requests) == expected


def test_a_write_is_seen_at_once_by_a_read_on_every_other_node(
    shared_cluster: ProcessCluster,
) -> None:
    nodes = shared_cluster.nodes
    clients = [node.client() for node in nodes]
    try:
        for i in range(60):
            writer = i % len(nodes)
            assert clients[writer].call("SET", "linear:k", i) == "OK"
            for reader, client in enumerate(clients):
                if reader != writer:
                    assert client.call("GET", "linear:k") == str(i).encode(), nodes[reader].id
    finally:
        for client in clients:
            client.close()


def test_readonly_reads_only_values_that_were_written(shared_cluster: ProcessCluster) -> None:
    follower = shared_cluster.followers()[0]
    issued = -1
    done = threading.Event()
    write_replies: list[Reply] = []

    def write() -> None:
        nonlocal issued
        try:
            with shared_cluster.wait_for_leader().client() as writer:
                for i in range(60):
                    issued = i
                    write_replies.append(writer.call("SET", "stale:k", i))
        finally:
            done.set()

    thread = threading.Thread(target=write)
    with follower.client() as reader:
        assert reader.call("READONLY") == "OK"
        thread.start()
        try:
            reads: list[tuple[Reply, int]] = []
            while not done.is_set():
                value = reader.call("GET", "stale:k")
                reads.append((value, issued))
        finally:
            thread.join()
        assert write_replies == ["OK"] * 60
        # stale, but never from the future, never going back, and catching up in the end
        wait_until(lambda: reader.call("GET", "stale:k") == b"59", 10.0, "the follower")
    assert len(reads) > 10
    impossible = [
        (value, latest)
        for value, latest in reads
        if not (value is None or (isinstance(value, bytes) and 0 <= int(value) <= latest))
    ]
    assert impossible == []
    seen = [int(value) if isinstance(value, bytes) else -1 for value, _ in reads]
    assert seen == sorted(seen), "a follower's reads never go back"
