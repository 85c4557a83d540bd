"""Real Redis clients against a follower of a running cluster: redis-py (sync and asyncio),
and the redis-cli and redis-benchmark binaries where they are installed (Debian's
redis-tools).

redis-py is used with its defaults: from 8.0 on it sends HELLO 3 on connect and speaks
RESP3 (it would fall back to RESP2, with a logged warning, if HELLO failed); one test
asks for RESP2 explicitly."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from harness.process_cluster import running_cluster
from harness.process_node import Node

pytestmark = pytest.mark.processes


@pytest.fixture
def r(follower: Node, caplog: pytest.LogCaptureFixture) -> Iterator[redis.Redis]:
    """redis-py with its default protocol; the test fails if redis-py logs a warning."""
    client = redis.Redis(port=follower.client_port, socket_timeout=10)
    try:
        with caplog.at_level(logging.WARNING):
            yield client
        assert [record.getMessage() for record in caplog.records] == []
    finally:
        client.close()


# ---- redis-py -----------------------------------------------------------------------


def test_redis_py_set_and_get(r: redis.Redis) -> None:
    assert r.set("py:k", "v") is True
    assert r.get("py:k") == b"v"
    assert r.get("py:missing") is None
    assert r.set("py:k", "w", nx=True) is None


def test_redis_py_incr(r: redis.Redis) -> None:
    assert r.incr("py:n") == 1
    assert r.incr("py:n", 10) == 11
    assert r.decr("py:n", 2) == 9


def test_redis_py_incr_of_text_raises_the_redis_error(r: redis.Redis) -> None:
    r.set("py:text", "x")
    with pytest.raises(redis.ResponseError, match=r"^value is not an integer or out of range$"):
        r.incr("py:text")


def test_redis_py_mset_and_mget(r: redis.Redis) -> None:
    assert r.mset({"py:m1": "1", "py:m2": "2"}) is True
    assert r.mget("py:m1", "py:none", "py:m2") == [b"1", None, b"2"]


def test_redis_py_delete_and_exists(r: redis.Redis) -> None:
    r.mset({"py:d1": "1", "py:d2": "2"})
    assert r.exists("py:d1", "py:d2", "py:d3") == 2
    assert r.delete("py:d1", "py:d2", "py:d3") == 2
    assert r.exists("py:d1") == 0


def test_redis_py_string_commands(r: redis.Redis) -> None:
    assert r.msetnx({"py:s:a": "Hello-World", "py:s:b": "1"}) is True
    assert r.msetnx({"py:s:a": "x", "py:s:c": "1"}) is False
    assert r.getrange("py:s:a", -5, -1) == b"World"
    assert r.setrange("py:s:a", 6, "Redis") == 11
    assert r.rename("py:s:a", "py:s:r") is True
    assert r.renamenx("py:s:r", "py:s:b") is False
    assert r.copy("py:s:r", "py:s:b", replace=True) is True
    assert r.get("py:s:b") == b"Hello-Redis"
    assert r.touch("py:s:r", "py:s:b", "py:s:none") == 2
    assert r.unlink("py:s:r") == 1
    assert r.randomkey() is not None
    assert r.incrbyfloat("py:s:f", 10.5) == 10.5
    assert r.incrbyfloat("py:s:f", 0.1) == 10.6
    assert r.get("py:s:f") == b"10.6"


@pytest.mark.filterwarnings("ignore:Call to .*experimental:UserWarning")
def test_redis_py_compare_and_set_and_delete(r: redis.Redis) -> None:
    """redis-py warns that these are experimental in it: not a failure here."""
    r.set("py:cas", "old")
    digest = r.digest("py:cas")
    assert digest == b"0f3ca07a8cc8bf40"
    assert r.set("py:cas", "new", ifeq="other") is None
    assert r.set("py:cas", "new", ifdeq=digest.decode().upper()) is True
    assert r.set("py:cas", "newer", ifne="new") is None
    assert r.delex("py:cas", ifeq="old") == 0
    assert r.delex("py:cas", ifeq="new") == 1
    assert r.exists("py:cas") == 0


def test_redis_py_scan_iter_and_keys(r: redis.Redis) -> None:
    wanted = {f"py:scan:{i}".encode() for i in range(50)}
    r.mset(dict.fromkeys(wanted, b"v"))
    assert set(r.scan_iter(match="py:scan:*", count=8)) == wanted
    assert set(r.keys("py:scan:*")) == wanted


def test_redis_py_pipeline_without_transaction(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"py:pipe:{i}", i)
        pipe.get(f"py:pipe:{i}")
    results = pipe.execute()
    assert results == [item for i in range(100) for item in (True, str(i).encode())]


def test_redis_py_info(r: redis.Redis, follower: Node) -> None:
    raft = r.info("raft")
    assert raft["node_id"] == follower.id
    assert raft["role"] == "follower"
    assert raft["members"] == ["n1", "n2", "n3"]
    everything = r.info()
    assert everything["cluster_enabled"] == 0
    assert "redis_version" in everything


REDIS_PY_MAJOR = int(redis.__version__.split(".")[0])


def test_redis_py_speaks_resp3_by_default(r: redis.Redis, follower: Node) -> None:
    hello = r.execute_command("HELLO")
    assert hello[b"proto"] == (3 if REDIS_PY_MAJOR >= 8 else 2)
    assert hello[b"role"] == b"replica"


def test_redis_py_config_get_and_client_name(r: redis.Redis) -> None:
    assert r.config_get("save") == {"save": ""}
    assert r.config_get("append*") == {"appendonly": "yes", "appendfsync": "always"}
    assert r.client_setname("py-tester") is True
    assert r.client_getname() == "py-tester"
    assert isinstance(r.client_id(), int)


def test_redis_py_with_resp2_asked_for(follower: Node) -> None:
    with redis.Redis(port=follower.client_port, socket_timeout=10, protocol=2) as client:
        assert client.set("py2:k", "v") is True
        assert client.get("py2:k") == b"v"
        assert client.get("py2:missing") is None
        assert client.mget("py2:k", "py2:missing") == [b"v", None]
        assert client.config_get("save") == {"save": ""}
        assert client.info("raft")["role"] == "follower"
        assert client.execute_command("HELLO")[5] == 2  # a flat array: ..., "proto", 2


def test_redis_py_asyncio_with_its_default_protocol(
    follower: Node, caplog: pytest.LogCaptureFixture
) -> None:
    async def session() -> list[object]:
        client = redis.asyncio.Redis(port=follower.client_port, socket_timeout=10)
        try:
            await client.set("pyaio:k", "v")
            hello = await client.execute_command("HELLO")
            return [await client.get("pyaio:k"), await client.get("pyaio:missing"), hello]
        finally:
            await client.aclose()

    with caplog.at_level(logging.WARNING):
        value, missing, hello = asyncio.run(session())
    assert [record.getMessage() for record in caplog.records] == []
    assert (value, missing) == (b"v", None)
    assert isinstance(hello, dict)
    assert hello[b"proto"] == (3 if REDIS_PY_MAJOR >= 8 else 2)


@pytest.fixture(scope="module")
def password_node() -> Iterator[Node]:
    with running_cluster(1, password="s3cret") as cluster:
        yield cluster.nodes[0]


@pytest.mark.parametrize("protocol", [None, 2])
def test_redis_py_with_a_password(password_node: Node, protocol: int | None) -> None:
    # RESP3 authenticates inside HELLO (HELLO 3 AUTH default s3cret), RESP2 with AUTH
    port = password_node.client_port
    with redis.Redis(port=port, password="s3cret", protocol=protocol) as client:
        assert client.set("pw:k", "v") is True
        assert client.get("pw:k") == b"v"
    with (
        redis.Redis(port=port, password="wrong", protocol=protocol) as client,
        pytest.raises(redis.AuthenticationError, match="invalid username-password pair"),
    ):
        client.ping()
    without_auth = "Authentication required" if protocol == 2 else "HELLO must be called"
    with (
        redis.Redis(port=port, protocol=protocol) as client,
        pytest.raises(redis.AuthenticationError, match=without_auth),
    ):
        client.ping()


def test_redis_py_in_a_fresh_interpreter_prints_only_the_value(follower: Node) -> None:
    script = (
        "import redis; r = redis.Redis(port=%d); r.set('fresh:a', '1'); print(r.get('fresh:a'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script % follower.client_port],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "b'1'\n", "")


# ---- redis-cli and redis-benchmark --------------------------------------------------

REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCHMARK = shutil.which("redis-benchmark")


def cli(port: int, *args: str) -> str:
    assert REDIS_CLI is not None
    result = subprocess.run(
        [REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed (apt redis-tools)")
def test_redis_cli_set_get_info_ping(follower: Node) -> None:
    port = follower.client_port
    assert cli(port, "SET", "cli:k", "hello world") == "OK\n"
    assert cli(port, "GET", "cli:k") == "hello world\n"
    assert cli(port, "GET", "cli:missing") == "\n"
    info = cli(port, "INFO", "raft")
    assert "# Raft" in info
    assert f"node_id:{follower.id}" in info.splitlines()
    assert "role:follower" in info.splitlines()
    assert cli(port, "PING") == "PONG\n"


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed (apt redis-tools)")
def test_redis_cli_with_resp3(follower: Node) -> None:
    port = follower.client_port
    hello = cli(port, "-3", "HELLO").splitlines()
    assert hello[:3] == ["server redis", "version 7.2.0", "proto 3"]
    assert hello[4:] == ["mode standalone", "role replica", "modules "]
    assert cli(port, "-3", "SET", "cli3:k", "v") == "OK\n"
    assert cli(port, "-3", "MGET", "cli3:k", "cli3:missing") == "v\n\n"
    assert cli(port, "-3", "GET", "cli3:missing") == "\n"
    assert cli(port, "-3", "CONFIG", "GET", "save") == "save \n"
    assert cli(port, "-3", "INFO", "cluster") == "# Cluster\ncluster_enabled:0\n"


def benchmark(port: int, tests: str, *options: str) -> subprocess.CompletedProcess[str]:
    assert REDIS_BENCHMARK is not None
    return subprocess.run(
        [REDIS_BENCHMARK, "-p", str(port), "-t", tests, "-n", "200", "-q", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )


def benchmarked(output: str) -> list[str]:
    """The tests redis-benchmark -q reports a result for."""
    return re.findall(r"^(.+?): [0-9.]+ requests per second", output, re.MULTILINE)


needs_benchmark = pytest.mark.skipif(
    REDIS_BENCHMARK is None, reason="redis-benchmark is not installed (apt redis-tools)"
)


@needs_benchmark
def test_redis_benchmark_runs_until_lpush_is_refused(follower: Node) -> None:
    # redis-benchmark runs its tests in a fixed order (LPUSH before MSET) and exits 1 at
    # the first error reply: what matters is that it gets one instead of hanging
    result = benchmark(follower.client_port, "set,get,incr,mset,lpush")
    assert result.returncode == 1
    assert benchmarked(result.stdout) == ["SET", "GET", "INCR"]
    assert "Error from server: ERR unknown command 'LPUSH'" in result.stderr


@needs_benchmark
def test_redis_benchmark_mset(follower: Node) -> None:
    result = benchmark(follower.client_port, "mset")
    assert result.returncode == 0, result.stderr
    assert benchmarked(result.stdout) == ["MSET (10 keys)"]
    assert result.stderr == ""  # no "WARNING: Could not fetch server CONFIG"


@needs_benchmark
def test_redis_benchmark_with_resp3(follower: Node) -> None:
    result = benchmark(follower.client_port, "set,get,mset", "-3")
    assert result.returncode == 0, result.stderr
    assert benchmarked(result.stdout) == ["SET", "GET", "MSET (10 keys)"]
    assert result.stderr == ""
