"""MULTI, EXEC, DISCARD, WATCH and UNWATCH through a real socket to a follower: each rule
with the bytes redis-server 7.0 sends for the same requests; redis-py's pipelines and
`Redis.transaction()` with WATCH retry loops from several threads.

The tests share the session's 3-node cluster and use keys under a prefix of their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from harness.polling import wait_until
from harness.process_cluster import ProcessCluster
from harness.process_node import Node
from harness.resp_client import RespClient

pytestmark = pytest.mark.processes


def exchange(client: RespClient, *lines: str) -> bytes:
    """Send inline request lines at once and return the reply bytes, read until the
    server has sent nothing more for a moment after the last one (every test ends its
    lines with a PING, whose +PONG is the last reply)."""
    client.send_raw(b"".join(line.encode() + b"\r\n" for line in [*lines, "PING"]))
    data = b""
    while not data.endswith(b"+PONG\r\n"):
        chunk = client.sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data.removesuffix(b"+PONG\r\n")


# Each case: the requests, and what redis-server 7.0.15 answers to them, byte for byte.
REDIS_CASES = {
    "queued and run in order": (
        ["MULTI", "SET tx1:a 1", "INCR tx1:a", "GET tx1:a", "EXEC"],
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n",
    ),
    "nested MULTI is refused and fails nothing": (
        ["MULTI", "MULTI", "SET tx2:a 1", "EXEC"],
        b"+OK\r\n-ERR MULTI calls can not be nested\r\n+QUEUED\r\n*1\r\n+OK\r\n",
    ),
    "WATCH inside MULTI is refused and fails nothing": (
        ["MULTI", "WATCH tx3:a", "SET tx3:a 1", "EXEC"],
        b"+OK\r\n-ERR WATCH inside MULTI is not allowed\r\n+QUEUED\r\n*1\r\n+OK\r\n",
    ),
    "without MULTI": (
        ["EXEC", "DISCARD", "UNWATCH", "WATCH", "MULTI", "EXEC"],
        b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n"
        b"-ERR wrong number of arguments for 'watch' command\r\n+OK\r\n*0\r\n",
    ),
    "an unknown command or a wrong arity aborts EXEC": (
        ["MULTI", "FOO", "SET tx5:a", "SET tx5:b 1", "EXEC", "EXISTS tx5:b"],
        b"+OK\r\n-ERR unknown command 'FOO', with args beginning with: \r\n"
        b"-ERR wrong number of arguments for 'set' command\r\n+QUEUED\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n:0\r\n",
    ),
    "errors at run time take their place in the array": (
        ["MULTI", "SET tx6:a 1 BAD", "INCR tx6:a", "GET tx6:a", "EXEC"],
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n-ERR syntax error\r\n:1\r\n$1\r\n1\r\n",
    ),
    "connection commands are queued too": (
        ["MULTI", "PING", "ECHO x", "SELECT 0", "CLIENT SETNAME tx7", "CLIENT GETNAME", "EXEC"],
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"
        b"*5\r\n+PONG\r\n$1\r\nx\r\n+OK\r\n+OK\r\n$3\r\ntx7\r\n",
    ),
    "a malformed EXEC ends the transaction": (
        ["MULTI", "EXEC x", "SET tx8:a 1", "EXEC"],
        b"+OK\r\n-EXECABORT Transaction discarded because of: wrong number of arguments "
        b"for 'exec' command\r\n+OK\r\n-ERR EXEC without MULTI\r\n",
    ),
    "a malformed MULTI, DISCARD, WATCH or UNWATCH inside fails it": (
        ["MULTI", "MULTI x", "DISCARD x", "WATCH", "UNWATCH x", "EXEC"],
        b"+OK\r\n-ERR wrong number of arguments for 'multi' command\r\n"
        b"-ERR wrong number of arguments for 'discard' command\r\n"
        b"-ERR wrong number of arguments for 'watch' command\r\n"
        b"-ERR wrong number of arguments for 'unwatch' command\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    ),
    "DISCARD drops the queue": (
        ["MULTI", "SET tx10:a 1", "DISCARD", "DISCARD", "EXISTS tx10:a"],
        b"+OK\r\n+QUEUED\r\n+OK\r\n-ERR DISCARD without MULTI\r\n:0\r\n",
    ),
    "UNWATCH inside is queued": (
        ["WATCH tx11:a", "MULTI", "UNWATCH", "EXEC"],
        b"+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n",
    ),
    "a watched key written since WATCH, also by this connection": (
        ["WATCH tx12:a", "SET tx12:a 9", "MULTI", "SET tx12:a 10", "EXEC", "GET tx12:a"],
        b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n$1\r\n9\r\n",
    ),
    "EXEC forgets the watched keys": (
        ["WATCH tx13:a", "SET tx13:a 1", "MULTI", "EXEC", "MULTI", "EXEC"],
        b"+OK\r\n+OK\r\n+OK\r\n*-1\r\n+OK\r\n*0\r\n",
    ),
}


@pytest.mark.parametrize("case", REDIS_CASES)
def test_the_same_bytes_as_redis(client: RespClient, case: str) -> None:
    requests, wanted = REDIS_CASES[case]
    assert exchange(client, *requests) == wanted


def test_resp3_nulls(client: RespClient) -> None:
    assert exchange(client, "HELLO 3").startswith(b"%7\r\n")  # its map
    got = exchange(
        client, "WATCH tx14:a", "MULTI", "GET tx14:a", "MGET tx14:a tx14:a", "EXEC", "SET tx14:a 1"
    )
    assert got == b"+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n_\r\n*2\r\n_\r\n_\r\n+OK\r\n"
    got = exchange(client, "WATCH tx14:a", "SET tx14:a 2", "MULTI", "GET tx14:a", "EXEC")
    assert got == b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n_\r\n"


def test_commands_refused_inside(client: RespClient) -> None:
    # KEYS would read the whole keyspace in one step of every replica: SCAN pages it
    got = exchange(client, "MULTI", "KEYS *", "RAFT.STATUS", "RAFT.BACKUP", "SET tx15:a 1", "EXEC")
    refused = b"-ERR Command not allowed inside a transaction\r\n"
    execabort = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    assert got == b"+OK\r\n" + refused * 3 + b"+QUEUED\r\n" + execabort


def test_a_watched_key_written_by_another_connection(follower: Node, leader_port: int) -> None:
    with follower.client() as watcher, RespClient(leader_port) as other:
        for other_write in ["SET tx16:a 2", "DEL tx16:a", "SET tx16:new 1", "EXPIRE tx16:a 100"]:
            watcher.call("SET", "tx16:a", "1")
            watcher.call("DEL", "tx16:new")
            assert exchange(watcher, "WATCH tx16:a tx16:new", "GET tx16:a") == b"+OK\r\n$1\r\n1\r\n"
            assert other.inline(other_write) in ("OK", 0, 1)
            got = exchange(watcher, "MULTI", "SET tx16:a 3", "EXEC")
            assert got == b"+OK\r\n+QUEUED\r\n*-1\r\n", other_write
        # unwatched, or watched and untouched: it runs
        assert exchange(watcher, "WATCH tx16:a", "UNWATCH", "MULTI", "SET tx16:a 4", "EXEC") == (
            b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n"
        )


def test_a_watched_key_that_expires_before_exec(client: RespClient) -> None:
    client.call("SET", "tx17:a", "1", "PX", "300")
    assert exchange(client, "WATCH tx17:a") == b"+OK\r\n"
    wait_until(lambda: client.call("EXISTS", "tx17:a") == 0, 10, "the key to expire")
    assert exchange(client, "MULTI", "SET tx17:b 1", "EXEC") == b"+OK\r\n+QUEUED\r\n*-1\r\n"


@pytest.fixture
def leader_port(shared_cluster: ProcessCluster) -> int:
    return shared_cluster.wait_for_leader().client_port


# ---- redis-py -----------------------------------------------------------------------


@pytest.fixture
def r(follower: Node) -> Iterator[redis.Redis]:
    with redis.Redis(port=follower.client_port, socket_timeout=10) as client:
        yield client


@pytest.mark.parametrize("transaction", [True, False])
def test_redis_py_pipeline(r: redis.Redis, transaction: bool) -> None:
    key = f"tx18:{transaction}"
    with r.pipeline(transaction=transaction) as pipe:
        pipe.set(key, 1).incr(key).incr(key).get(key).get(f"{key}:missing")
        assert pipe.execute() == [True, 2, 3, b"3", None]
    # the one-liner: no error, and both increments applied exactly once
    pipe = r.pipeline(transaction=transaction)
    pipe.incr(f"{key}:n")
    pipe.incr(f"{key}:n")
    assert pipe.execute() == [1, 2]
    assert r.get(f"{key}:n") == b"2"


def test_redis_py_pipeline_with_an_unknown_command_raises_and_applies_nothing(
    r: redis.Redis,
) -> None:
    with r.pipeline() as pipe:
        pipe.set("tx19:a", 1).execute_command("NOSUCHCOMMAND")
        # redis-py raises the queueing error (EXEC answered EXECABORT), as with Redis
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            pipe.execute()
    assert r.exists("tx19:a") == 0


def test_redis_py_transaction_retries_until_its_watched_keys_hold(follower: Node) -> None:
    """Threads each move units between two accounts with `Redis.transaction()` (WATCH,
    read, MULTI, write, EXEC; again on WatchError): the total stays, every move counts."""
    accounts, threads, moves = ["tx20:a", "tx20:b"], 3, 6
    with redis.Redis(port=follower.client_port, socket_timeout=10) as r:
        r.mset({accounts[0]: 1000, accounts[1]: 0})
    retries = [0] * threads

    def mover(n: int) -> None:
        with redis.Redis(port=follower.client_port, socket_timeout=10) as r:

            def move(pipe: redis.client.Pipeline) -> None:
                source = int(pipe.get(accounts[0]) or 0)
                pipe.multi()
                pipe.set(accounts[0], source - 1)
                pipe.incr(accounts[1])
                retries[n] += 1

            for _ in range(moves):
                r.transaction(move, *accounts)

    workers = [threading.Thread(target=mover, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    with redis.Redis(port=follower.client_port, socket_timeout=10) as r:
        values = [int(v) for v in r.mget(accounts)]
    assert values == [1000 - threads * moves, threads * moves]
    assert sum(retries) >= threads * moves
