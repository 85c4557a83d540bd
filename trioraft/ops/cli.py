"""The `trioraft` command line.

Rules:

- Each subcommand is a `Command`: a function adding its arguments to its parser and a
  function running it, returning the exit status. `COMMANDS` registers them all.
- Exit status: see `EXIT_STATUSES`, also shown by `trioraft --help`.
- Every failure prints one line on stderr, starting `trioraft <command>:`, saying what and
  where; never a traceback. A usage error prints one line, not argparse's usage text. A
  ConfigError prints its problems, one line each.
- A command reports a failure by raising `CliError(status, message)`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import ssl
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import attrs

from trioraft import __version__
from trioraft.logs import setup_logging
from trioraft.ops.config import (
    Config,
    ConfigError,
    Member,
    cluster_configs,
    load_config,
    new_token,
    one_per_host_members,
    render_config,
    same_host_members,
    validate_config,
)
from trioraft.transport.addresses import HostPort, parse_address

#: exit status for bad usage or bad configuration
EXIT_USAGE = 2
#: exit status for any other failure
EXIT_FAILURE = 1
#: the exit status the systemd unit asks `serve --refusal-status` for, and does not restart
EXIT_REFUSED = 3

#: every exit status and its meaning, for `--help` and docs/operations.md
EXIT_STATUSES = (
    (0, "clean stop, or the command succeeded"),
    (
        EXIT_FAILURE,
        "any other failure: a port in use, the data dir locked by another process, a lost "
        "quorum at shutdown, damaged data (`check`), and `serve` refusing to start",
    ),
    (EXIT_USAGE, "bad usage or bad configuration"),
    (
        EXIT_REFUSED,
        "with `serve --refusal-status 3`, as the systemd unit runs it: `serve` refused to "
        "start for a reason a restart cannot fix (a wiped or foreign data dir, damaged "
        "data, unusable TLS files); the unit does not restart it",
    ),
)


#: the environment variable `backup` takes a node's client password from
PASSWORD_VARIABLE = "TRIORAFT_PASSWORD"


class CliError(Exception):
    """A failure to report in one line and exit with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as a CliError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise CliError(EXIT_USAGE, f"{message} (see {self.prog} --help)")


@attrs.frozen
class Command:
    #: the subcommand's name on the command line
    name: str
    #: one line for `trioraft --help`
    help: str
    #: adds the subcommand's options and arguments to its parser
    add_arguments: Callable[[argparse.ArgumentParser], None]
    #: runs the subcommand with the parsed arguments; returns the exit status
    run: Callable[[argparse.Namespace], int]


# ---- init ---------------------------------------------------------------------------


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return int(text)


def _hosts(text: str) -> list[str]:
    hosts = [h.strip() for h in text.split(",")]
    seen: set[str] = set()
    for host in hosts:
        _check_host(host)
        if host.lower() in seen:
            raise argparse.ArgumentTypeError(f"{host} is named twice")
        seen.add(host.lower())
    return hosts


def _host(text: str) -> str:
    _check_host(text)
    return text


def _address(text: str) -> HostPort:
    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _check_host(host: str) -> None:
    """A host the other nodes can reach: a name or IP address, not a wildcard."""
    bracketed = f"[{host}]" if ":" in host else host
    try:
        address = parse_address(f"{bracketed}:1")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if address.is_wildcard:
        raise argparse.ArgumentTypeError(f"{host} is not an address other nodes can reach")


#: the defaults of init's options; the quick start leaves them unset, to tell which were given
_INIT_DEFAULTS = {"nodes": 3, "client_port": 7001, "peer_port": 8001, "data_root": Path("data")}


def _init_arguments(
    p: argparse.ArgumentParser, quick_start: bool = False, token: bool = True, join: bool = False
) -> None:
    """init's options; the quick start's defaults are unset, `token=False` leaves
    `--token` out (a restored cluster always gets a new one), and `join=True` adds the
    options of a node that joins a running cluster."""
    if quick_start:
        p.add_argument(
            "--out",
            metavar="DIR",
            type=Path,
            default=Path("cluster"),
            help="where the config files are, or are written when DIR/n1.toml is missing "
            "(default cluster)",
        )
    else:
        p.add_argument(
            "--out",
            metavar="DIR",
            type=Path,
            required=True,
            help="write DIR/n1.toml ... DIR/nN.toml",
        )
    shape = p.add_mutually_exclusive_group(required=not (quick_start or join))
    if join:
        shape.add_argument(
            "--join",
            metavar="ADDR",
            action="append",
            type=_address,
            help="one node joining a running cluster: the client or peer address of a member "
            "to ask (repeat for more); needs --id and --token",
        )
        p.add_argument("--id", metavar="ID", help="with --join: the new node's id")
    shape.add_argument(
        "--nodes",
        metavar="N",
        type=_count,
        help="N nodes on one host, on consecutive ports" + (" (default 3)" if quick_start else ""),
    )
    shape.add_argument(
        "--hosts",
        metavar="H1,H2,...",
        type=_hosts,
        help="one node per host, every node on the same two ports",
    )
    p.add_argument(
        "--host", metavar="H", type=_host, help="the host of the --nodes (default 127.0.0.1)"
    )
    p.add_argument(
        "--client-port",
        metavar="P",
        type=_port,
        default=None if quick_start else _INIT_DEFAULTS["client_port"],
        help="the (first) client port (default 7001)",
    )
    p.add_argument(
        "--peer-port",
        metavar="Q",
        type=_port,
        default=None if quick_start else _INIT_DEFAULTS["peer_port"],
        help="the (first) peer port (default 8001)",
    )
    p.add_argument(
        "--data-root",
        metavar="D",
        type=Path,
        default=None if quick_start else _INIT_DEFAULTS["data_root"],
        help="node nK keeps its data in D/nK; a relative D is relative to DIR (default data)",
    )
    if token:
        p.add_argument("--token", metavar="T", help="the cluster token (default: a random one)")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing config files"
        + (" (refused while their data dirs hold data)" if quick_start else ""),
    )


def _init(args: argparse.Namespace) -> int:
    if args.token == "":
        raise CliError(EXIT_USAGE, "--token must not be empty")
    if getattr(args, "join", None):
        _write_configs([_joining_config(args)], args)
        return 0
    if getattr(args, "id", None) is not None:
        raise CliError(EXIT_USAGE, "--id goes with --join; --nodes and --hosts name n1, n2, ...")
    if args.nodes is None and args.hosts is None:
        raise CliError(EXIT_USAGE, "one of --nodes, --hosts or --join is required")
    members = _members(args)
    token = args.token if args.token is not None else new_token()
    _write_configs(cluster_configs(members, token=token, data_root=args.data_root), args)
    return 0


def _joining_config(args: argparse.Namespace) -> Config:
    """The config of one node that asks the members at `--join` to add it."""
    if args.id is None or args.token is None:
        raise CliError(EXIT_USAGE, "--join needs --id (the new node's) and --token (the cluster's)")
    if args.client_port == args.peer_port:
        raise CliError(EXIT_USAGE, "--client-port and --peer-port must differ")
    host = args.host or "127.0.0.1"
    member = Member(
        id=args.id,
        peer_addr=HostPort(host, args.peer_port),
        client_addr=HostPort(host, args.client_port),
    )
    [config] = cluster_configs([member], token=args.token, data_root=args.data_root)
    config = attrs.evolve(config, join=tuple(args.join))
    problems = validate_config(config)
    if problems:
        raise CliError(EXIT_USAGE, problems[0])
    return config


def _members(args: argparse.Namespace) -> tuple[Member, ...]:
    """The members init's options describe."""
    if args.hosts is not None:
        if args.host is not None:
            raise CliError(EXIT_USAGE, "--host goes with --nodes; --hosts names every host")
        if args.client_port == args.peer_port:
            raise CliError(EXIT_USAGE, "--client-port and --peer-port must differ")
        return one_per_host_members(args.hosts, args.client_port, args.peer_port)
    last = max(args.client_port, args.peer_port) + args.nodes - 1
    if last > 65535:
        raise CliError(EXIT_USAGE, f"--nodes {args.nodes} needs ports up to {last}")
    if abs(args.client_port - args.peer_port) < args.nodes:
        raise CliError(
            EXIT_USAGE,
            f"--client-port {args.client_port} and --peer-port {args.peer_port} are too "
            f"close: {args.nodes} nodes need {args.nodes} ports of each kind",
        )
    return same_host_members(args.nodes, args.host or "127.0.0.1", args.client_port, args.peer_port)


def _write_configs(configs: Sequence[Config], args: argparse.Namespace) -> None:
    """Write each config to `--out`/ID.toml, refusing to overwrite one without `--force`."""
    out: Path = args.out
    paths = [out / f"{cfg.node_id}.toml" for cfg in configs]
    if not args.force:
        for path in paths:
            if path.exists():
                raise CliError(EXIT_USAGE, f"{path} already exists (--force overwrites it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for cfg, path in zip(configs, paths, strict=True):
            _write_private(path, render_config(cfg))
    except OSError as e:
        raise CliError(EXIT_FAILURE, f"cannot write {e.filename or out}: {e.strerror}") from None
    for path in paths:
        print(f"wrote {path}")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only: it holds the cluster token."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


# ---- serve, check, status, cluster --------------------------------------------------


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", type=Path, required=True, help="the node's config")
    p.add_argument(
        "--refusal-status",
        metavar="N",
        type=_refusal_status,
        default=EXIT_FAILURE,
        help="exit with status N (3 to 125) instead of 1 when the node refuses to start for a "
        "reason a restart cannot fix, so that a supervisor can tell (the systemd unit "
        f"passes {EXIT_REFUSED})",
    )


def _refusal_status(text: str) -> int:
    if not text.isdigit() or not 3 <= int(text) <= 125:
        raise argparse.ArgumentTypeError(f"expected a number from 3 to 125, got {text!r}")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    from trioraft.ops.daemon import StartupError, first_error, serve
    from trioraft.runtime.incarnation import WipedMember

    config = load_config(args.config)
    setup_logging(config.node_id, config.log_level, fmt=config.log_format)
    try:
        serve(config, args.config)
    except KeyboardInterrupt:
        raise CliError(EXIT_FAILURE, "interrupted while starting") from None
    except BaseException as exc:  # one line, never a traceback
        leaf = first_error(exc)
        if isinstance(leaf, WipedMember) or (isinstance(leaf, StartupError) and leaf.permanent):
            raise CliError(args.refusal_status, str(leaf)) from None
        if isinstance(leaf, StartupError):
            raise CliError(EXIT_FAILURE, str(leaf)) from None
        logging.getLogger("trioraft").error("stopped by an error", exc_info=leaf)
        raise CliError(EXIT_FAILURE, f"stopped by an error: {describe(leaf)}") from None
    return 0


def _check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", type=Path, help="a node's data dir")


def _check(args: argparse.Namespace) -> int:
    from trioraft.storage import StorageError, check_data_dir

    if not args.data_dir.is_dir():
        raise CliError(EXIT_FAILURE, f"{args.data_dir}: no such data dir")
    try:
        report = check_data_dir(args.data_dir)
    except StorageError as exc:
        raise CliError(EXIT_FAILURE, str(exc)) from None
    for warning in report.warnings:
        print(f"warning: {warning}")
    log_range = f"{report.first_index}..{report.last_index}" if report.entry_count else "empty"
    print(
        f"{args.data_dir}: intact: node {report.node_id}, "
        f"snapshot index {report.snapshot_index or 'none'}, "
        f"log {log_range}, {report.entry_count} entries in {report.segment_count} segments, "
        f"term {report.hard_state.term}"
    )
    return 0


def _status_arguments(p: argparse.ArgumentParser, timeout: float = 5.0) -> None:
    p.add_argument("address", metavar="ADDR", help="a node's client address, host:port")
    p.add_argument(
        "--timeout", type=float, default=timeout, help=f"seconds to wait (default {timeout:g})"
    )
    p.add_argument(
        "--cacert",
        metavar="FILE",
        type=Path,
        help="speak TLS to the node, trusting the CA certificates in FILE (PEM)",
    )


def _node_address(args: argparse.Namespace) -> tuple[HostPort, ssl.SSLContext | None]:
    """The node that `_status_arguments` name, and the TLS to speak to it."""
    try:
        address = parse_address(args.address)
    except ValueError as e:
        raise CliError(EXIT_USAGE, str(e)) from None
    try:
        tls = ssl.create_default_context(cafile=args.cacert) if args.cacert else None
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"--cacert {args.cacert}: {describe(exc)}") from None
    return address, tls


def _status(args: argparse.Namespace) -> int:
    from trioraft.ops.status import print_cluster_status

    address, tls = _node_address(args)
    try:
        print_cluster_status(address.host, address.port, args.timeout, tls)
    except (OSError, ValueError) as exc:
        raise CliError(EXIT_FAILURE, f"{address}: {describe(exc)}") from None
    return 0


# ---- member, transfer -----------------------------------------------------------------

#: `trioraft member ACTION`: the arguments after ADDR each action takes
_MEMBER_ACTIONS = {
    "list": (),
    "add": ("ID", "PEER_ADDR", "CLIENT_ADDR"),
    "promote": ("ID",),
    "remove": ("ID",),
}


def _member_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=sorted(_MEMBER_ACTIONS), help="what to do")
    _status_arguments(p, timeout=10.0)
    p.add_argument(
        "operands",
        nargs="*",
        metavar="ARG",
        help="add: ID PEER_ADDR CLIENT_ADDR (the new node's addresses, host:port); "
        "promote, remove: ID",
    )


def _member(args: argparse.Namespace) -> int:
    wanted = _MEMBER_ACTIONS[args.action]
    if len(args.operands) != len(wanted):
        usage = " ".join(wanted) or "nothing more"
        raise CliError(EXIT_USAGE, f"{args.action} takes ADDR then {usage}")
    command = [b"RAFT.MEMBER", args.action.upper().encode()]
    return _ask_node(args, command + [operand.encode() for operand in args.operands])


def _transfer_arguments(p: argparse.ArgumentParser) -> None:
    _status_arguments(p, timeout=10.0)
    p.add_argument(
        "--to", metavar="ID", help="the voter to hand over to (default: the most caught up)"
    )


def _transfer(args: argparse.Namespace) -> int:
    return _ask_node(args, [b"RAFT.TRANSFER"] + ([args.to.encode()] if args.to else []))


def _ask_node(args: argparse.Namespace, command: list[bytes]) -> int:
    from trioraft.ops.status import run_member_command

    address, tls = _node_address(args)
    try:
        run_member_command(address.host, address.port, command, args.timeout, tls)
    except (OSError, ValueError) as exc:
        raise CliError(EXIT_FAILURE, f"{address}: {describe(exc)}") from None
    return 0


# ---- backup, restore ----------------------------------------------------------------


def _backup_arguments(p: argparse.ArgumentParser) -> None:
    _status_arguments(p, timeout=60.0)
    p.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        required=True,
        help="write the backup to FILE (through FILE.tmp, renamed once checked); a node "
        f"with a password is sent AUTH with the password in ${PASSWORD_VARIABLE}",
    )


def _backup(args: argparse.Namespace) -> int:
    from trioraft.ops.backup import BackupError, fetch_backup
    from trioraft.storage import StorageError

    address, tls = _node_address(args)
    progress = _Progress(sys.stderr)
    try:
        header = fetch_backup(
            address.host,
            address.port,
            args.out,
            timeout=args.timeout,
            tls=tls,
            password=os.environ.get(PASSWORD_VARIABLE),
            progress=progress.show,
        )
    except (BackupError, StorageError) as exc:
        progress.end()
        raise CliError(EXIT_FAILURE, f"{address}: {exc}") from None
    except OSError as exc:
        progress.end()
        raise CliError(EXIT_FAILURE, f"{address}: {describe(exc)}") from None
    progress.end()
    print(
        f"wrote {args.out}: the state at index {header.meta.index} (term {header.meta.term}), "
        f"{header.size} bytes, checksum verified"
    )
    return 0


class _Progress:
    """One progress line on a terminal, rewritten in place; nothing on anything else."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def show(self, received: int, total: int) -> None:
        if self.stream.isatty():
            percent = 100 * received // total if total else 100
            mib = 1024 * 1024
            self.stream.write(
                f"\rreceived {received / mib:.1f} of {total / mib:.1f} MiB ({percent}%)"
            )
            self.stream.flush()
            self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False


def _restore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("backup", metavar="FILE", type=Path, help="a file written by trioraft backup")
    _init_arguments(p, token=False)


def _restore(args: argparse.Namespace) -> int:
    from trioraft.ops.backup import (
        BackupError,
        read_backup,
        refuse_used_data_dirs,
        write_data_dirs,
    )
    from trioraft.storage import StorageError

    members = _members(args)
    # a new token, always: no node of the old cluster can ever talk to the new one
    configs = cluster_configs(members, token=new_token(), data_root=args.data_root)
    # where the nodes will find their data dirs: relative to the folder of their configs
    placed = [attrs.evolve(c, data_dir=args.out.absolute() / c.data_dir) for c in configs]
    try:
        meta, state = read_backup(args.backup)
        refuse_used_data_dirs(placed)
    except (BackupError, StorageError) as exc:
        raise CliError(EXIT_FAILURE, str(exc)) from None
    except OSError as exc:
        raise CliError(EXIT_FAILURE, f"{args.backup}: {describe(exc)}") from None
    keys = len(state.store)
    _write_configs(configs, args)
    try:
        write_data_dirs(meta, state, placed)
    except StorageError as exc:
        raise CliError(EXIT_FAILURE, str(exc)) from None
    for config in placed:
        print(f"wrote {config.data_dir}")
    print(
        f"restored the state at index {meta.index} ({keys} keys) into a new cluster of "
        f"{len(placed)} nodes with a new cluster token; start every node with "
        f"trioraft serve --config {args.out}/nK.toml"
    )
    return 0


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    _init_arguments(p, quick_start=True)


#: init's options that shape the configs, as the quick start names them when it ignores them
_SHAPE_OPTIONS = ("nodes", "hosts", "host", "client_port", "peer_port", "data_root", "token")


def _cluster(args: argparse.Namespace) -> int:
    from trioraft.ops.quickstart import run_cluster

    out: Path = args.out
    first = out / "n1.toml"
    if first.exists() and not args.force:
        paths = _existing_cluster(first)
        given = [f"--{name.replace('_', '-')}" for name in _SHAPE_OPTIONS if getattr(args, name)]
        if given:
            print(
                f"note: {first} exists, so the cluster is the one configured in {out}: "
                f"{', '.join(given)} ignored. To start afresh, stop it, delete {out} (its "
                f"data included: every key is lost) and run trioraft cluster again, or "
                f"choose another --out DIR."
            )
    else:
        for name, default in _INIT_DEFAULTS.items():
            if getattr(args, name) is None and (name != "nodes" or args.hosts is None):
                setattr(args, name, default)
        if args.force:
            _refuse_to_orphan_data(args)
        _init(args)
        paths = [out / f"{member.id}.toml" for member in load_config(first).members]
    return run_cluster(paths)


def _existing_cluster(first: Path) -> list[Path]:
    """The config files of the cluster `first` belongs to: one per member, beside it."""
    paths = [first.with_name(f"{member.id}.toml") for member in load_config(first).members]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise CliError(
            EXIT_USAGE,
            f"{first} names members whose config files are missing ({', '.join(missing)}); "
            f"write them with trioraft init, or start afresh in another --out DIR",
        )
    return paths


def _refuse_to_orphan_data(args: argparse.Namespace) -> None:
    """New configs get a new cluster token, which data dirs of the old cluster refuse: do
    not write them while those data dirs hold data."""
    base: Path = args.out
    data_root: Path = base / args.data_root
    count = len(args.hosts) if args.hosts is not None else int(args.nodes)
    for k in range(1, count + 1):
        data_dir = data_root / f"n{k}"
        if data_dir.is_dir() and any(data_dir.iterdir()):
            raise CliError(
                EXIT_USAGE,
                f"{data_dir} holds the data of the cluster these configs would replace, which "
                f"the new configs' nodes would refuse to use: to start afresh, delete "
                f"{data_root} first (every key is lost), or choose another --out DIR",
            )


# ---- bench ----------------------------------------------------------------------------


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _size(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}")
    return int(text)


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("address", metavar="ADDR", help="a node's client address, host:port")
    p.add_argument("-c", "--connections", metavar="N", type=_count, default=50, help="(default 50)")
    p.add_argument(
        "-P",
        "--pipeline",
        metavar="N",
        type=_count,
        default=1,
        help="requests each connection sends before waiting for their replies (default 1)",
    )
    p.add_argument(
        "--reads",
        metavar="F",
        type=_fraction,
        default=0.0,
        help="the fraction of requests that are GETs, the rest SETs (default 0: all SETs)",
    )
    p.add_argument(
        "-r",
        "--keyspace",
        metavar="N",
        type=_count,
        default=100_000,
        help="how many distinct keys, picked at random (default 100000)",
    )
    p.add_argument(
        "-d", "--value-size", metavar="BYTES", type=_size, default=100, help="(default 100)"
    )
    bound = p.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration", metavar="SECONDS", type=_seconds, help="how long to run (default 10)"
    )
    bound.add_argument(
        "-n", "--requests", metavar="N", type=_count, help="run until N requests are answered"
    )
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=10.0,
        help="a batch with replies missing after this long counts them as errors (default 10)",
    )
    p.add_argument("--password", metavar="PW", help="AUTH with PW on every connection")
    p.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_seconds,
        default=1.0,
        help="the step of the timeline in --json and --plot (default 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="of the random keys and commands")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        help="draw throughput and latency over time into FILE (PNG; needs matplotlib: "
        "pip install 'trioraft[plot]')",
    )


def _bench(args: argparse.Namespace) -> int:
    import trio

    from trioraft.ops.bench import (
        BenchError,
        BenchSpec,
        check_plot_available,
        print_result,
        run_bench,
        write_plot,
    )

    try:
        address = parse_address(args.address)
    except ValueError as e:
        raise CliError(EXIT_USAGE, str(e)) from None
    spec = BenchSpec(
        host=address.host,
        port=address.port,
        connections=args.connections,
        pipeline=args.pipeline,
        reads=args.reads,
        keyspace=args.keyspace,
        value_size=args.value_size,
        duration=None if args.requests is not None else (args.duration or 10.0),
        requests=args.requests,
        timeout=args.timeout,
        password=args.password,
        interval=args.interval,
        seed=args.seed,
    )
    progress = sys.stderr if sys.stderr.isatty() else None
    try:
        if args.plot is not None:
            check_plot_available()
        result = trio.run(run_bench, spec, progress)
        print_result(result, args.json)
        if args.plot is not None:
            write_plot([(str(address), result.as_json())], args.plot)
    except BenchError as exc:
        raise CliError(EXIT_FAILURE, str(exc)) from None
    except OSError as exc:
        raise CliError(EXIT_FAILURE, describe(exc)) from None
    failed = result.recorder.error_count
    if failed:
        raise CliError(EXIT_FAILURE, f"{failed:,} requests failed (see the errors above)")
    return 0


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- the command line ---------------------------------------------------------------

COMMANDS: tuple[Command, ...] = (
    Command(
        "init",
        "write the config files of a new cluster, or of a node joining one",
        functools.partial(_init_arguments, join=True),
        _init,
    ),
    Command("serve", "run one node in the foreground", _serve_arguments, _serve),
    Command(
        "cluster",
        "the quick start: write configs and run a local cluster until Ctrl-C",
        _cluster_arguments,
        _cluster,
    ),
    Command("status", "show the cluster as a node sees it", _status_arguments, _status),
    Command(
        "member",
        "list the members, or add, promote or remove one (ask any node)",
        _member_arguments,
        _member,
    ),
    Command("transfer", "hand leadership to another voter", _transfer_arguments, _transfer),
    Command("check", "check a data dir offline", _check_arguments, _check),
    Command(
        "backup",
        "save a consistent copy of a running cluster's keys to a file",
        _backup_arguments,
        _backup,
    ),
    Command(
        "restore",
        "write the configs and data dirs of a new cluster starting from a backup",
        _restore_arguments,
        _restore,
    ),
    Command("bench", "measure throughput and latency against a node", _bench_arguments, _bench),
)


def _exit_status_help() -> str:
    lines = ["exit status:"]
    for status, meaning in EXIT_STATUSES:
        lines += textwrap.wrap(
            meaning, 78, initial_indent=f"  {status}  ", subsequent_indent=" " * 5
        )
    return "\n".join(lines)


def _parser() -> _Parser:
    parser = _Parser(
        prog="trioraft",
        description="A Raft key-value store speaking RESP2 and RESP3.",
        epilog=_exit_status_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trioraft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=_exit_status_help() if command.name == "serve" else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    prefix = f"trioraft {name}" if name in {c.name for c in COMMANDS} else "trioraft"
    try:
        args = _parser().parse_args(argv)
        status: int = args.run(args)
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0
    except CliError as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return e.status
    except ConfigError as e:
        for problem in e.problems:
            print(f"{prefix}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return status
