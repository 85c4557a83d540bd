"""Every command of CONTRACT section 3 through a real socket, sent to a follower, with
Redis's replies and error texts; pipelining; linearizable and READONLY reads.

Most tests share the session's 3-node cluster and use keys under a prefix of their own;
FLUSHALL and password tests get clusters of their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from procs import Cluster, Error, Node, Reply, RespClient, parse_info, running_cluster

pytestmark = pytest.mark.processes

INT64_MAX = 2**63 - 1
NOT_AN_INTEGER = Error("ERR value is not an integer or out of range")
SYNTAX_ERROR = Error("ERR syntax error")


def arity(name: str) -> Error:
    return Error(f"ERR wrong number of arguments for '{name}' command")


@pytest.fixture
def follower(shared_cluster: Cluster) -> Node:
    return shared_cluster.followers()[0]


@pytest.fixture
def client(follower: Node) -> Iterator[RespClient]:
    """A connection to a follower of the shared cluster."""
    with follower.client() as connection:
        yield connection


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


@pytest.mark.parametrize(
    "options",
    [("NX", "XX"), ("IFEQ", "x", "NX"), ("XX", "IFEQ", "x"), ("IFEQ",), ("EX", "10"), ("BOGUS",)],
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


def test_mset_is_atomic_for_readers_on_another_node(shared_cluster: Cluster) -> None:
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
def flush_cluster() -> Iterator[Cluster]:
    with running_cluster(3) as cluster:
        yield cluster


@pytest.mark.parametrize("command", [("FLUSHALL",), ("FLUSHDB",), ("FLUSHALL", "ASYNC")])
def test_flush_empties_every_node(flush_cluster: Cluster, command: tuple[str, ...]) -> None:
    follower = flush_cluster.followers()[0]
    with follower.client() as client:
        assert client.call("MSET", "a", "1", "b", "2") == "OK"
        assert client.call(*command) == "OK"
    for node in flush_cluster.nodes:
        assert node.call("DBSIZE") == 0, node.id
        assert node.call("GET", "a") is None, node.id


def test_flush_with_a_bad_option_is_a_syntax_error(flush_cluster: Cluster) -> None:
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
    shared_cluster: Cluster, follower: Node, client: RespClient
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


def test_client_setinfo_and_setname_answer_ok(client: RespClient) -> None:
    assert client.call("CLIENT", "SETINFO", "lib-name", "redis-py") == "OK"
    assert client.call("CLIENT", "SETINFO", "lib-ver", "5.0.0") == "OK"
    assert client.call("CLIENT", "SETNAME", "tester") == "OK"


def test_command_and_command_docs_answer_an_empty_array(client: RespClient) -> None:
    assert client.call("COMMAND") == []
    assert client.call("COMMAND", "DOCS") == []


def test_config_get_answers_an_empty_array(client: RespClient) -> None:
    assert client.call("CONFIG", "GET", "maxmemory") == []


def test_hello_is_an_error_so_clients_stay_on_resp2(client: RespClient) -> None:
    reply = client.call("HELLO", "3")
    assert isinstance(reply, Error)
    assert reply.text.startswith("ERR ")
    assert client.call("PING") == "PONG"


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


def test_a_write_is_seen_at_once_by_a_read_on_every_other_node(shared_cluster: Cluster) -> None:
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


def test_readonly_reads_only_values_that_were_written(shared_cluster: Cluster) -> None:
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
    assert len(reads) > 10
    impossible = [
        (value, latest)
        for value, latest in reads
        if not (value is None or (isinstance(value, bytes) and 0 <= int(value) <= latest))
    ]
    assert impossible == []
