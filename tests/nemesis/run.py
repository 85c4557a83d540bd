"""One fault run from start to verdict, and the command line around it.

A run:

1. makes the hosts (network namespaces where the machine allows, else loopback, which
   allows no partitions), writes the configs (low `snapshot_entries`, so snapshots and
   compaction happen all the time) and starts the cluster;
2. starts the workload and, beside it, the nemesis, which injects the seeded schedule's
   faults one at a time until the run's time is up;
3. heals everything, waits for a leader every node knows, stops the clients, waits until
   no write whose client gave up can still take effect (`SETTLE_SECONDS` after its call),
   and reads every key through every node (these reads join the history);
4. checks the whole history for linearizability, counts lost acknowledged writes,
   measures each fault's unavailability, and writes the run folder:
   `history.jsonl`, `summary.json`, `summary.txt`, `nemesis.log` (the faults as they
   happened) and `logs/<node>.log`.

The verdict is `pass` only when the checker says linearizable, no acknowledged write
was lost, the final reads succeeded and agree, every reply was one the contract allows
and the nemesis saw nothing the contract forbids (see `faults`). A violation, a lost
write or any such finding is `fail`; a checker that ran out of time on some key with
nothing else wrong is `unknown`, which is never a pass. A run that does not pass prints
how to repeat it.

The command line (`python -m nemesis` with `tests` on the path, or `nox -s nemesis`):
`--time SECONDS --seed N --faults kill,pause,partition,...`, see `--help`;
`--check RUN_DIR` checks a run's history file again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from harness.process_node import Node
from sim.linearizability import CheckResult, Kind, Status, Verdict, check

from trioraft.ops.config import RaftSection

from .analysis import (
    acknowledged_writes,
    count_faults,
    disagreements,
    fault_row,
    load_history,
    lost_writes,
    worst_per_kind,
    write_history,
)
from .faults import Nemesis
from .hosts import Hosts, LoopbackHosts, NetnsHosts, build_cluster, netns_problem
from .locks import LockClients, check_locks, lock_summary
from .schedule import NETWORK_KINDS, FaultKind, parse_kinds, schedule
from .workload import Recorder, Workload, targets_of, unbalanced_banks

#: the default place of run folders
RESULTS = Path(tempfile.gettempdir()) / "trioraft-nemesis"
#: lost writes and violations shown in the text summary
SHOWN = 10


class Unsupported(Exception):
    """The chosen faults need something this machine lacks."""


@attrs.frozen
class Options:
    seed: int
    kinds: tuple[FaultKind, ...]
    #: seconds of faults (the run takes longer: setup, healing, final reads, the check)
    time: float
    #: the folder this run writes to (made if missing)
    out: Path
    #: stop after this many faults even if time is left
    max_faults: int | None = None
    nodes: int = 5
    clients: int = 8
    #: clients competing for locks (docs/locks.md), and the locks
    lock_clients: int = 3
    locks: int = 2
    #: seconds one client request may take
    timeout: float = 2.0
    #: keys in use at once, and operations per key before it is retired
    keys: int = 5
    key_ops: int = 1000
    #: seconds the checker may spend on one key, and on the whole history
    key_budget: float = 60.0
    check_budget: float = 900.0
    #: run on loopback even where namespaces work (no partition faults then)
    loopback: bool = False
    snapshot_entries: int = 200

    def repeat_command(self) -> str:
        words = [
            "nox -s nemesis --",
            f"--time {self.time:g}",
            f"--seed {self.seed}",
            f"--faults {','.join(kind.value for kind in self.kinds)}",
            f"--nodes {self.nodes}",
            f"--clients {self.clients}",
            f"--timeout {self.timeout:g}",
            f"--keys {self.keys}",
            f"--key-ops {self.key_ops}",
        ]
        if self.max_faults is not None:
            words.append(f"--max-faults {self.max_faults}")
        if self.loopback:
            words.append("--loopback")
        return " ".join(words)


@attrs.frozen
class Result:
    #: "pass", "fail" or "unknown"
    verdict: str
    summary: dict[str, Any]
    text: str
    folder: Path

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def hosts_problem(options: Options) -> str | None:
    """Why namespaces are out of the question here (None: they can be used)."""
    return "loopback chosen" if options.loopback else netns_problem()


def run(options: Options) -> Result:
    """One run; see the module docstring. Raises Unsupported when partition faults are
    chosen and namespaces cannot be used."""
    problem = hosts_problem(options)
    if problem is not None and NETWORK_KINDS & set(options.kinds):
        raise Unsupported(f"partition faults need network namespaces: {problem}")
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "logs").mkdir(exist_ok=True)
    progress = (options.out / "nemesis.log").open("a")

    def say(line: str) -> None:
        progress.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        progress.flush()

    ids = [f"n{k}" for k in range(1, options.nodes + 1)]
    raft = RaftSection(snapshot_entries=options.snapshot_entries)
    recorder = Recorder()
    with contextlib.ExitStack() as stack:
        stack.callback(progress.close)
        hosts: Hosts = LoopbackHosts(ids) if problem else NetnsHosts(ids)
        stack.callback(hosts.close)
        cluster = stack.enter_context(build_cluster(hosts, options.out / "logs", raft))
        say(f"{options.nodes} nodes {'on loopback' if problem else 'in network namespaces'}")
        cluster.start_all()
        cluster.wait_for_leader()
        targets = targets_of(cluster.nodes)
        workload = Workload(
            targets,
            recorder,
            seed=options.seed,
            clients=options.clients,
            timeout=options.timeout,
            keys=options.keys,
            uses=options.key_ops,
        )
        lockers = LockClients(
            targets,
            seed=options.seed,
            clients=options.lock_clients,
            locks=options.locks,
            timeout=options.timeout,
        )
        nemesis = Nemesis(
            cluster, hosts, options.seed, say, lambda members: _retarget(members, workload, lockers)
        )
        t0 = time.monotonic()
        try:
            final, read_problems = trio.run(_drive, options, workload, lockers, nemesis)
        finally:
            write_history(options.out / "history.jsonl", recorder, t0)
        end = time.monotonic()
    summary = summarize(
        options,
        mode="loopback" if problem else "netns",
        recorder=recorder,
        workload=workload,
        lockers=lockers,
        nemesis=nemesis,
        final=final,
        read_problems=read_problems,
        t0=t0,
        end=end,
    )
    text = render_text(summary)
    (options.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (options.out / "summary.txt").write_text(text)
    return Result(summary["verdict"], summary, text, options.out)


async def _drive(
    options: Options,
    workload: Workload,
    lockers: LockClients,
    nemesis: Nemesis,
) -> tuple[dict[str, dict[str, bytes | None]], list[str]]:
    plans = schedule(options.seed, options.kinds, options.nodes)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(workload.run)
        nursery.start_soon(lockers.run)
        try:
            await nemesis.run(plans, time.monotonic() + options.time, options.max_faults)
            await nemesis.heal_all()
        finally:
            workload.stop()
            lockers.stop()
    await workload.settle()
    nemesis.say("healed; clients stopped; reading every key through every member")
    return await workload.read_back(workload.targets)


def _retarget(members: Sequence[Node], workload: Workload, lockers: LockClients) -> None:
    """Clients (and the final reads) go only to the members from now on."""
    workload.targets = lockers.targets = targets_of(members)


def summarize(
    options: Options,
    *,
    mode: str,
    recorder: Recorder,
    workload: Workload,
    lockers: LockClients,
    nemesis: Nemesis,
    final: dict[str, dict[str, bytes | None]],
    read_problems: list[str],
    t0: float,
    end: float,
) -> dict[str, Any]:
    """Check the history and gather every figure of the run (the summary.json)."""
    operations = recorder.operations()
    # the checker's explanations then give the times of history.jsonl and the fault log
    since_start = [attrs.evolve(op, call=op.call - t0, ret=op.ret - t0) for op in operations]
    started = time.monotonic()
    result = check(since_start, key_budget=options.key_budget, total_budget=options.check_budget)
    check_seconds = time.monotonic() - started
    lost = lost_writes(since_start, final)
    acks = acknowledged_writes(op for op in operations if not str(op.client).startswith("final"))
    rows = [fault_row(record, acks, t0, end) for record in nemesis.records]
    disagree = disagreements(final)
    lock_problems = check_locks(lockers.grants, lockers.resource)
    unbalanced = unbalanced_banks(final, workload.banks.all_keys)
    failures = []
    if result.verdict is Verdict.VIOLATION:
        failures.append("the history is not linearizable")
    if lost:
        failures.append(f"{len(lost)} acknowledged write(s) lost")
    if disagree:
        failures.append(f"the final reads disagree on {len(disagree)} key(s)")
    if read_problems:
        failures.append("some final reads failed")
    if workload.stats.unexpected_count:
        failures.append(f"{workload.stats.unexpected_count} reply(ies) the contract does not allow")
    if nemesis.findings:
        failures.append(f"{len(nemesis.findings)} finding(s) of the nemesis")
    if lock_problems:
        failures.append(f"{len(lock_problems)} lock problem(s)")
    if unbalanced:
        failures.append(f"{len(unbalanced)} bank(s) whose accounts do not sum to zero")
    if failures:
        verdict = "fail"
    elif result.verdict is Verdict.UNKNOWN:
        verdict = "unknown"
        failures.append("the checker ran out of time on some key(s): not a pass")
    else:
        verdict = "pass"
    return {
        "verdict": verdict,
        "reasons": failures,
        "repeat": options.repeat_command(),
        "seed": options.seed,
        "faults": [kind.value for kind in options.kinds],
        "time_s": options.time,
        "elapsed_s": round(end - t0, 1),
        "hosts": mode,
        "nodes": options.nodes,
        "clients": options.clients,
        "request_timeout_s": options.timeout,
        "operations": _operation_counts(operations),
        "keys": len(workload.keys.all_keys) + len(workload.ttl_keys.all_keys),
        "locks": lock_summary(lockers, lock_problems),
        "checker": _checker_summary(result, check_seconds),
        "lost_writes": {
            "count": len(lost),
            "examples": [op.describe() for op in lost[:SHOWN]],
        },
        "final_reads": {"disagreements": disagree[:SHOWN], "problems": read_problems},
        "unbalanced_banks": unbalanced[:SHOWN],
        "unexpected_replies": {
            "count": workload.stats.unexpected_count,
            "examples": [list(example) for example in workload.stats.unexpected],
        },
        "connect_failures": workload.stats.connect_failures,
        "faults_injected": count_faults(nemesis.records),
        "snapshots_forced": sum(record.snapshots_forced for record in nemesis.records),
        "worst_unavailable_s": worst_per_kind(rows, "unavailable_s"),
        "worst_recovery_s": worst_per_kind(rows, "recovery_s"),
        "findings": nemesis.findings,
        "fault_log": rows,
    }


def _operation_counts(operations: Sequence[Any]) -> dict[str, Any]:
    statuses = Counter(op.status.value for op in operations)
    kinds = Counter(op.kind.value for op in operations)
    return {
        "total": len(operations),
        "ok": statuses[Status.OK.value],
        "failed": statuses[Status.FAIL.value],
        "indeterminate": statuses[Status.INFO.value],
        "by_kind": {kind.value: kinds[kind.value] for kind in Kind},
    }


def _checker_summary(result: CheckResult, seconds: float) -> dict[str, Any]:
    verdicts = Counter(key_result.verdict.value for key_result in result.keys.values())
    return {
        "verdict": result.verdict.value,
        "seconds": round(seconds, 1),
        "keys": dict(verdicts),
        "explanations": [
            key_result.explanation
            for key_result in result.keys.values()
            if key_result.verdict is not Verdict.OK
        ][:SHOWN],
    }


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def render_text(summary: dict[str, Any]) -> str:
    """The readable summary.txt."""
    ops = summary["operations"]
    checker = summary["checker"]
    lines = [
        f"trioraft fault run: {summary['verdict'].upper()}",
        *(f"  - {reason}" for reason in summary["reasons"]),
        f"seed {summary['seed']}; faults {','.join(summary['faults'])}; "
        f"{summary['time_s']:g} s of faults ({summary['elapsed_s']} s in all); "
        f"{summary['nodes']} nodes ({summary['hosts']}); {summary['clients']} clients",
        f"operations: {ops['total']} (ok {ops['ok']}, failed {ops['failed']}, "
        f"indeterminate {ops['indeterminate']}) on {summary['keys']} keys; "
        + ", ".join(f"{kind} {count}" for kind, count in ops["by_kind"].items()),
        f"checker: {checker['verdict']} in {checker['seconds']} s; keys {checker['keys']}",
        f"lost acknowledged writes: {summary['lost_writes']['count']}",
        f"locks: {summary['locks']['grants']} granted, "
        f"{summary['locks']['resource_refusals']} stale holder(s) refused by the resource",
        *(f"  {problem}" for problem in summary["locks"]["problems"]),
        *(f"  {example}" for example in summary["lost_writes"]["examples"]),
        f"faults injected: {', '.join(f'{k} {n}' for k, n in summary['faults_injected'].items())}"
        f"; snapshots forced: {summary['snapshots_forced']}",
        "worst per kind: unavailable (no write acknowledged) / served again after healing",
    ]
    for kind, worst in summary["worst_unavailable_s"].items():
        recovery = summary["worst_recovery_s"][kind]
        lines.append(f"  {kind:<17} {_seconds(worst):>10} / {_seconds(recovery)}")
    lines.append("faults:")
    for row in summary["fault_log"]:
        lines.append(
            f"  #{row['number']:<3} at {row['start_s']:8.1f} s  {row['kind']}: "
            f"{row['description']} -> unavailable {_seconds(row['unavailable_s'])}, "
            f"served again {_seconds(row['recovery_s'])} after healing"
        )
        if row["notes"]:
            lines.append(f"        notes: {row['notes']}")
    if summary["unexpected_replies"]["count"]:
        lines.append(f"unexpected replies: {summary['unexpected_replies']['count']}")
        lines.extend(f"  {example}" for example in summary["unexpected_replies"]["examples"])
    for title, items in (
        ("final reads that disagree", summary["final_reads"]["disagreements"]),
        ("final read problems", summary["final_reads"]["problems"]),
        ("findings", summary["findings"]),
        ("checker explanations", checker["explanations"]),
    ):
        if items:
            lines.append(f"{title}:")
            lines.extend(f"  {item}" for item in items)
    if summary["verdict"] != "pass":
        lines.append(f"repeat with: {summary['repeat']}")
    return "\n".join(lines) + "\n"


# --- the command line -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nemesis",
        description="Jepsen-style fault runs of a real trioraft cluster, judged by the "
        "linearizability checker.",
    )
    parser.add_argument("--time", type=float, default=120.0, help="seconds of faults (120)")
    parser.add_argument("--seed", type=int, help="the schedule's seed (random if left out)")
    names = ", ".join([*(kind.value for kind in FaultKind), "partition", "all"])
    parser.add_argument("--faults", default="all", help=f"comma-separated, of: {names} (all)")
    parser.add_argument("--max-faults", type=int, help="stop after this many faults")
    parser.add_argument("--nodes", type=int, default=5, help="cluster size (5)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request (2)")
    parser.add_argument("--keys", type=int, default=5, help="keys in use at once (5)")
    parser.add_argument(
        "--key-ops", type=int, default=1000, help="operations per key before it retires (1000)"
    )
    parser.add_argument(
        "--out", type=Path, help=f"the run folder (default: a new one under {RESULTS})"
    )
    parser.add_argument(
        "--loopback", action="store_true", help="no namespaces, so no partition faults"
    )
    parser.add_argument(
        "--check", type=Path, metavar="RUN_DIR", help="only check RUN_DIR/history.jsonl again"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check is not None:
        return _recheck(args.check)
    try:
        kinds = parse_kinds(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    if args.nodes < 3 or args.nodes > 9:
        parser.error("--nodes must be between 3 and 9")
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    out = args.out or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    options = Options(
        seed=seed,
        kinds=kinds,
        time=args.time,
        out=out,
        max_faults=args.max_faults,
        nodes=args.nodes,
        clients=args.clients,
        timeout=args.timeout,
        keys=args.keys,
        key_ops=args.key_ops,
        loopback=args.loopback,
    )
    print(f"fault run, seed {seed}, results in {out}", flush=True)
    # SIGTERM stops a run the way Ctrl-C does (KeyboardInterrupt, which Trio delivers
    # safely), so the nodes and namespaces are removed; SIGINT is ignored in a shell's
    # background job, hence its handler is set too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        result = run(options)
    except Unsupported as exc:
        print(f"nemesis: {exc}; choose other faults (--faults) or run as root", file=sys.stderr)
        return 2
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        print(f"nemesis: interrupted; the history so far is in {out}", file=sys.stderr)
        return 130
    print(result.text, end="")
    print(f"results in {result.folder}")
    return 0 if result.passed else 1


def _interrupted(exc: BaseException) -> bool:
    """Whether `exc` is a KeyboardInterrupt, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[1] is None
    return isinstance(exc, KeyboardInterrupt)


def _recheck(folder: Path) -> int:
    operations = load_history(folder / "history.jsonl")
    result = check(operations, key_budget=None)
    print(result.explain())
    print(f"verdict: {result.verdict.value} ({shlex.quote(str(folder))})")
    return 0 if result.ok else 1
