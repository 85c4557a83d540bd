"""The standard benchmark matrix, as `nox -s bench` runs it: a 3-node cluster with fsync
on and, where it is installed, redis-server with `appendfsync always`, each measured with
`trioraft bench` at P1/P16, c1/c50, SET/GET, on the leader and on a follower, in one run.
Where a Python with the `pysyncobj` package is at hand (this one, or the one
`--pysyncobj-python` names), a 3-node PySyncObj key-value store (pysyncobj_kv.py) is
measured too, on its leader, by the same client at the same settings.

The machine is shared and noisy, so every setting measures its targets back to back
(redis-server, PySyncObj's leader, then the leader, then a follower, then the same on
the `--baseline` cluster if given) and the table reports ratios beside the figures.
redis-benchmark, where installed, measures the c50 P1 SET cell of redis-server and of
the leader again, as a check on the client.

    PYTHONPATH=tests python tests/perf/matrix.py --out DIR [--duration S] [--baseline DIR]
        [--pysyncobj-python PYTHON]

writes DIR/bench.md, DIR/bench.json and, with matplotlib, DIR/bench.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import trio
from harness.polling import wait_until
from harness.ports import free_ports
from harness.process_cluster import ProcessCluster
from harness.redis_server import answers, ask
from harness.redis_server import redis_server as start_redis_server

from trioraft.ops.bench import BenchError, BenchSpec, run_bench, write_plot

#: the matrix: (command, connections, pipeline)
SETTINGS = [
    (command, connections, pipeline)
    for pipeline in (1, 16)
    for connections in (50, 1)
    for command in ("SET", "GET")
]
KEYSPACE = 100_000
#: how long a node may take to start serving, or a cluster to elect a leader: generous,
#: since a benchmark machine may be loaded
START_SECONDS = 120.0
VALUE_SIZE = 100
#: a node of the PySyncObj reference
PYSYNCOBJ_NODE = Path(__file__).with_name("pysyncobj_kv.py")


@attrs.frozen
class Target:
    name: str
    port: int


@contextlib.contextmanager
def redis_server() -> Iterator[Target | None]:
    """redis-server with the AOF fsynced before every reply, or None if not installed."""
    options = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")
    with start_redis_server(*options) as started:
        yield None if started is None else Target("redis-server", started.port)


def has_pysyncobj(python: str) -> bool:
    """Whether `python` can import pysyncobj."""
    with contextlib.suppress(OSError):
        found = subprocess.run([python, "-c", "import pysyncobj"], capture_output=True)
        return found.returncode == 0
    return False


@contextlib.contextmanager
def pysyncobj_cluster(python: str) -> Iterator[Target | None]:
    """The leader of a 3-node PySyncObj key-value store run by `python`, or None when
    that Python has no pysyncobj."""
    if not has_pysyncobj(python):
        yield None
        return
    ports = free_ports(6)
    clients, peers = ports[:3], [f"127.0.0.1:{port}" for port in ports[3:]]
    with contextlib.ExitStack() as stack:
        for client, peer in zip(clients, peers, strict=True):
            partners = [arg for other in peers if other != peer for arg in ("--partner", other)]
            process = subprocess.Popen(
                [python, str(PYSYNCOBJ_NODE), "--port", str(client), "--node", peer, *partners],
                stdout=subprocess.DEVNULL,
            )
            stack.callback(process.wait)
            stack.callback(process.kill)
        wait_until(lambda: all(map(answers, clients)), START_SECONDS, "PySyncObj answers")
        leader = wait_until(
            lambda: next((port for port in clients if ask(port, "ROLE") == "leader"), None),
            START_SECONDS,
            "PySyncObj elects a leader",
        )
        yield Target("pysyncobj leader", leader)


@contextlib.contextmanager
def cluster(label: str, checkout: Path | None) -> Iterator[list[Target]]:
    """A 3-node cluster with fsync on, run from this checkout or from `checkout`: its
    leader and a follower, as targets named `label leader` and `label follower`."""
    with ProcessCluster.create(3, fsync=True) as nodes:
        if checkout is not None:
            for node in nodes.nodes:
                # `python -m` imports from the working directory first
                node.launcher = ("sh", "-c", 'cd "$0" && exec "$@"', str(checkout))
        for node in nodes.nodes:
            node.start()
        for node in nodes.nodes:
            node.wait_serving(timeout=START_SECONDS)
        leader = nodes.wait_for_leader(timeout=START_SECONDS)
        follower = nodes.followers()[0]
        yield [
            Target(f"{label} leader", leader.client_port),
            Target(f"{label} follower", follower.client_port),
        ]


def measure(target: Target, setting: tuple[str, int, int], duration: float) -> dict[str, Any]:
    command, connections, pipeline = setting
    spec = BenchSpec(
        host="127.0.0.1",
        port=target.port,
        connections=connections,
        pipeline=pipeline,
        reads=1.0 if command == "GET" else 0.0,
        keyspace=KEYSPACE,
        value_size=VALUE_SIZE,
        duration=duration,
    )
    figures = trio.run(run_bench, spec).as_json()
    print(
        f"{_label(setting):<14} {target.name:<22} {figures['throughput']:>10,.0f}/s  "
        f"p50 {figures['latency_ms']['p50']:.3f} ms  errors {figures['errors']}",
        flush=True,
    )
    return figures


def redis_benchmark(target: Target, requests: int) -> float | None:
    """redis-benchmark's SET/s at c50 P1 against `target`, or None if not installed."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    done = subprocess.run(
        [
            *(binary, "-p", str(target.port), "-t", "set", "-n", str(requests), "-c", "50"),
            *("-d", str(VALUE_SIZE), "-r", str(KEYSPACE), "--csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1].split(",")[1].strip('"'))


def _label(setting: tuple[str, int, int]) -> str:
    command, connections, pipeline = setting
    return f"{command} c{connections} P{pipeline}"


def _cell(figures: dict[str, Any] | None) -> str:
    if figures is None:
        return ""
    errors = f", {figures['errors']:,} errors" if figures["errors"] else ""
    return f"{figures['throughput']:,.0f} ({figures['latency_ms']['p50']:.2f} ms{errors})"


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> str:
    if numerator is None or denominator is None or not denominator["throughput"]:
        return ""
    return f"{numerator['throughput'] / denominator['throughput']:.2f}x"


def report(
    settings: list[tuple[str, int, int]],
    results: dict[str, dict[str, dict[str, Any]]],
    names: list[str],
    checks: list[tuple[str, float | None, float]],
    context: list[str],
) -> str:
    """The markdown page: context, then one row per setting."""
    baseline = any(name.startswith("baseline") for name in names)
    columns = [name for name in names if not name.startswith("baseline")]
    pysyncobj = "pysyncobj leader" in names
    header = [*columns, "leader / redis", "follower / leader"]
    if pysyncobj:
        header.append("leader / PySyncObj")
    if baseline:
        header += ["baseline leader", "baseline follower", "leader / baseline", "follower / b."]
    lines = [
        "# trioraft benchmark matrix",
        "",
        *context,
        "",
        "Each cell: requests/s answered (p50 latency). Ratios are of requests/s, measured "
        "back to back in this run.",
        "",
        "| workload | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]
    for setting in settings:
        row = results[_label(setting)]
        cells = [_cell(row.get(name)) for name in columns]
        cells += [
            _ratio(row.get("trioraft leader"), row.get("redis-server")),
            _ratio(row.get("trioraft follower"), row.get("trioraft leader")),
        ]
        if pysyncobj:
            cells.append(_ratio(row.get("trioraft leader"), row.get("pysyncobj leader")))
        if baseline:
            cells += [_cell(row.get("baseline leader")), _cell(row.get("baseline follower"))]
            cells += [
                _ratio(row.get("trioraft leader"), row.get("baseline leader")),
                _ratio(row.get("trioraft follower"), row.get("baseline follower")),
            ]
        lines.append(f"| {_label(setting)} | " + " | ".join(cells) + " |")
    if checks:
        lines += [
            "",
            "The client checked: SET c50 P1, redis-benchmark then trioraft bench, back to back.",
            "",
            "| target | redis-benchmark | trioraft bench |",
            "|---|---:|---:|",
        ]
        for name, theirs, ours in checks:
            lines.append(f"| {name} | {theirs or 0:,.0f} | {ours:,.0f} |")
    return "\n".join(lines) + "\n"


def run(
    out: Path,
    duration: float,
    baseline: Path | None,
    only: list[str],
    rounds: int,
    pysyncobj_python: str,
) -> None:
    settings = [s for s in SETTINGS if not only or _label(s) in only]
    unknown = set(only) - {_label(s) for s in SETTINGS}
    if unknown:
        raise SystemExit(f"--only: no such setting: {', '.join(sorted(unknown))}")
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {_label(s): {} for s in settings}
    checks: list[tuple[str, float | None, float]] = []
    with contextlib.ExitStack() as stack:
        references = [redis_server(), pysyncobj_cluster(pysyncobj_python)]
        targets = [t for t in map(stack.enter_context, references) if t is not None]
        targets += stack.enter_context(cluster("trioraft", None))
        if baseline is not None:
            targets += stack.enter_context(cluster("baseline", baseline))
        for _ in range(rounds):
            for setting in settings:
                for target in targets:
                    cell = measured[_label(setting)].setdefault(target.name, [])
                    cell.append(measure(target, setting, duration))
        for target in targets[:2] if not only else []:
            ours = measure(target, SETTINGS[0], duration)
            rate = ours["throughput"]
            theirs = redis_benchmark(target, max(1000, int(rate * duration)))
            checks.append((target.name, theirs, rate))
    results = {
        label: {name: _median_run(runs) for name, runs in row.items()}
        for label, row in measured.items()
    }
    load_after = os.getloadavg()
    context = [
        f"{started:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {_load(load_before)} before, "
        f"{_load(load_after)} after.",
        f"3 local nodes with fsync on; {VALUE_SIZE}-byte values, {KEYSPACE:,} random keys; "
        f"{duration:g} s per cell, {rounds} round(s) of every cell, the median round "
        "shown; the client is `trioraft bench` (one process).",
    ]
    if not any(t.name == "redis-server" for t in targets):
        context.append("redis-server is not installed: no reference column.")
    if any(t.name == "pysyncobj leader" for t in targets):
        context.append(
            "PySyncObj: 3 nodes of pysyncobj_kv.py (a replicated dict behind a RESP front), "
            "log in memory, never fsyncs; its GET is a local read, without a read barrier."
        )
    names = [t.name for t in targets]
    (out / "bench.md").write_text(report(settings, results, names, checks, context))
    (out / "bench.json").write_text(json.dumps(measured, indent=1))
    with contextlib.suppress(BenchError):
        first = _label(settings[0])
        cells = results[first]
        write_plot([(f"{name}, {first}", cells[name]) for name in names], out / "bench.png")
    print(f"wrote {out / 'bench.md'}", flush=True)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput among a cell's rounds."""
    return sorted(runs, key=lambda run: run["throughput"])[len(runs) // 2]


def _load(figures: tuple[float, float, float]) -> str:
    return "/".join(f"{figure:.1f}" for figure in figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of trioraft to measure beside this one",
    )
    parser.add_argument(
        "--only",
        type=lambda text: [label.strip() for label in text.split(",")],
        default=[],
        help='the settings to run, e.g. "SET c1 P1,SET c50 P1" (default: all)',
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every cell this many times, in turn"
    )
    parser.add_argument(
        "--pysyncobj-python",
        default=sys.executable,
        help="a Python with pysyncobj, to measure the PySyncObj reference (default: this one)",
    )
    args = parser.parse_args()
    run(args.out, args.duration, args.baseline, args.only, args.rounds, args.pysyncobj_python)


if __name__ == "__main__":
    main()
