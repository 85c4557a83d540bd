"""`trioraft bench`: its histograms and reply scanner, its run against stand-in servers
that fail in chosen ways, a short run against a real cluster (the JSON's shape), and its
one-line errors for bad arguments. No test here judges a speed."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from harness.ports import free_ports
from harness.process_cluster import ProcessCluster
from harness.process_node import Node, run_cli

from trioraft.ops.bench import (
    PLOT_MISSING,
    BenchError,
    BenchResult,
    BenchSpec,
    Histogram,
    ReplyScanner,
    run_bench,
    write_plot,
)
from trioraft.ops.cli import main

# ---- histograms and the reply scanner ------------------------------------------------


def test_histogram_is_exact_below_two_milliseconds() -> None:
    histogram = Histogram()
    for micros in range(1, 2001):
        histogram.record(micros)
    assert histogram.percentile(0.5) == 1000
    assert histogram.percentile(0.99) == 1980
    assert histogram.percentile(1.0) == histogram.max == 2000
    assert histogram.summary()["p50"] == 1.0


@pytest.mark.parametrize("micros", [2048, 3001, 123_457, 9_876_543, 600_000_000])
def test_histogram_is_within_a_thousandth_above(micros: int) -> None:
    histogram = Histogram()
    histogram.record(micros, times=10)
    histogram.record(1)
    found = histogram.percentile(0.9)
    assert micros * (1 - 1 / 1024) <= found <= micros
    assert histogram.count == 11
    assert histogram.percentile(0.01) == 1


def test_empty_histogram_reports_zeros() -> None:
    assert Histogram().summary() == {"p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "max": 0}


def test_scanner_finds_replies_split_anywhere() -> None:
    stream = b"+OK\r\n$3\r\nabc\r\n$-1\r\n_\r\n-TRYAGAIN wait\r\n:12\r\n$0\r\n\r\n"
    for cut in range(len(stream) + 1):
        scanner = ReplyScanner()
        first, first_errors = scanner.feed(stream[:cut])
        second, second_errors = scanner.feed(stream[cut:])
        assert first + second == 7
        assert first_errors + second_errors == ["TRYAGAIN wait"]


def test_scanner_refuses_what_a_benchmark_never_gets() -> None:
    with pytest.raises(BenchError, match=r"unexpected reply starting b'\*2"):
        ReplyScanner().feed(b"*2\r\n")


# ---- runs against stand-in servers ------------------------------------------------------

Handler = Callable[[trio.SocketStream, int], Awaitable[None]]


async def _serve(handler: Handler, nursery: trio.Nursery) -> int:
    """Serve `handler(stream, connection number)` on a loopback port; return the port."""
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, _numbered(handler), 0, host="127.0.0.1")
    )
    port: int = listeners[0].socket.getsockname()[1]
    return port


def _numbered(handler: Handler) -> Callable[[trio.SocketStream], Awaitable[None]]:
    count = 0

    async def numbered(stream: trio.SocketStream) -> None:
        nonlocal count
        count += 1
        async with stream:
            await handler(stream, count)

    return numbered


async def _answer(stream: trio.SocketStream, reply: Callable[[int], bytes], stop: int) -> None:
    """Answer each request (one per `*` header: the bench's requests hold no other `*`)
    with `reply(n)`, n counting from 1, until `stop` requests were answered."""
    answered = 0
    while answered < stop:
        data = await stream.receive_some(65536)
        if not data:
            return
        replies = bytearray()
        for _ in range(data.count(b"*")):
            answered += 1
            replies += reply(answered)
        await stream.send_all(replies)


async def _bench_against(handler: Handler, **options: Any) -> BenchResult:
    """A run of `options` (a request count) against a stand-in server."""
    async with trio.open_nursery() as nursery:
        port = await _serve(handler, nursery)
        spec = BenchSpec(host="127.0.0.1", port=port, duration=None, **options)
        result = await run_bench(spec)
        nursery.cancel_scope.cancel()
    return result


async def test_error_replies_are_counted_by_kind() -> None:
    async def every_third_refused(stream: trio.SocketStream, _: int) -> None:
        await _answer(stream, lambda n: b"-TRYAGAIN busy\r\n" if n % 3 == 0 else b"+OK\r\n", 99)

    result = await _bench_against(every_third_refused, connections=2, pipeline=3, requests=30)
    assert result.recorder.completed == 30
    assert dict(result.recorder.errors) == {"TRYAGAIN": 10}
    assert result.as_json()["error_kinds"] == {"TRYAGAIN": 10}


async def test_a_dropped_connection_costs_its_batch_and_is_opened_again() -> None:
    async def first_drops_after_one_batch(stream: trio.SocketStream, number: int) -> None:
        await _answer(stream, lambda n: b"+OK\r\n", 4 if number == 1 else 10**9)

    result = await _bench_against(
        first_drops_after_one_batch, connections=1, pipeline=4, requests=40
    )
    assert dict(result.recorder.errors) == {"disconnected": 4}
    assert result.recorder.completed == 36


async def test_a_batch_without_replies_times_out(autojump_clock: trio.abc.Clock) -> None:
    async def silent(stream: trio.SocketStream, _: int) -> None:
        await trio.sleep_forever()

    result = await _bench_against(silent, connections=2, requests=2, timeout=1)
    assert dict(result.recorder.errors) == {"timeout": 2}
    assert result.recorder.completed == 0


# ---- the command line against a real cluster -----------------------------------------


@pytest.fixture
def node(shared_cluster: ProcessCluster) -> Node:
    return shared_cluster.followers()[0]


@pytest.mark.processes
def test_short_bench_against_a_follower_as_json(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-n", "400", "-c", "4", "-P", "4", "--reads", "0.5", "-r", "50", "--json"]
    assert main(["bench", f"127.0.0.1:{node.client_port}", *args]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {
        "target",
        "connections",
        "pipeline",
        "reads",
        "keyspace",
        "value_size",
        "elapsed_s",
        "requests",
        "errors",
        "error_kinds",
        "throughput",
        "latency_ms",
        "commands",
        "timeline",
    }
    assert (figures["requests"], figures["errors"], figures["pipeline"]) == (400, 0, 4)
    assert set(figures["commands"]) == {"SET", "GET"}
    assert sum(command["requests"] for command in figures["commands"].values()) == 400
    latencies = [figures["latency_ms"][label] for label in ("p50", "p90", "p99", "p99.9", "max")]
    assert latencies == sorted(latencies) and latencies[0] > 0
    assert sum(point["requests"] for point in figures["timeline"]) == 400
    assert set(figures["timeline"][0]) == {"t", "seconds", "requests", "errors", "p50_ms", "p99_ms"}
    assert node.call("GET", "key:000000000007") in (None, b"x" * 100)


@pytest.mark.processes
def test_table_names_every_command_and_the_total(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", f"127.0.0.1:{node.client_port}", "-n", "20", "-c", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"127.0.0.1:{node.client_port}: 2 connections, pipeline 1")
    assert lines[1].split() == ["requests", "req/s", "errors", "p50", "p90", "p99", "p99.9", "max"]
    assert [line.split()[0] for line in lines[2:4]] == ["SET", "all"]
    assert lines[3].split()[1:2] == ["20"]


@pytest.mark.processes
def test_a_refused_password_is_one_line(node: Node) -> None:
    done = run_cli("bench", f"127.0.0.1:{node.client_port}", "-n", "5", "--password", "pw")
    assert done.returncode == 1
    assert done.stderr.startswith(f"trioraft bench: 127.0.0.1:{node.client_port} refused the")
    assert len(done.stderr.splitlines()) == 1


# ---- bad arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reads", "1.5"], "argument --reads: expected a fraction from 0 to 1, got '1.5'"),
        (["--reads", "nan"], "argument --reads: expected a fraction from 0 to 1, got 'nan'"),
        (["-c", "0"], "argument -c/--connections: expected a positive number, got '0'"),
        (["-P", "x"], "argument -P/--pipeline: expected a positive number, got 'x'"),
        (["--duration", "-1"], "argument --duration: expected a positive number of seconds"),
        (["-d", "-5"], "argument -d/--value-size: expected a number of bytes, got '-5'"),
        (["-n", "5", "--duration", "2"], "argument --duration: not allowed with argument -n"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "127.0.0.1:7001", *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"trioraft bench: {message}")
    assert len(error.splitlines()) == 1


def test_bad_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "localhost"]) == 2
    assert capsys.readouterr().err == 'trioraft bench: expected "host:port", got "localhost"\n'


def test_unreachable_target_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)
    assert main(["bench", f"127.0.0.1:{port}", "-n", "1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"trioraft bench: cannot connect to 127.0.0.1:{port}: ")
    assert len(error.splitlines()) == 1


def test_plot_without_matplotlib_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "127.0.0.1:7001", "--plot", str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().err == f"trioraft bench: {PLOT_MISSING}\n"
    assert not (tmp_path / "x.png").exists()


def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    timeline = [
        {"t": 1.0, "seconds": 1.0, "requests": 500, "errors": 0, "p50_ms": 1.0, "p99_ms": 3.0}
    ]
    write_plot([("leader", {"timeline": timeline})], tmp_path / "run.png")
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
