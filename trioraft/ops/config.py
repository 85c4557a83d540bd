"""The node configuration: one TOML file per node, loaded into frozen attrs classes.

Rules:

- `load_config` reads the file with tomllib and structures it with a strict cattrs
  converter: unknown keys are errors, a bool is never taken for an integer (nor an
  integer for a bool), and no value is converted from another type (`"50"` is not 50).
- Every problem becomes one line `FILE: key.path: what is wrong`; all problems found are
  reported together in one `ConfigError`. Type problems are found first; then the value
  and cross-field rules (`validate_config`) run on the config without the keys that had
  type problems (their defaults stand in), and a rule naming such a key is not reported.
  An unknown key close to a known one gets "did you mean ...?".
- Relative paths (`data_dir`, the TLS files) are resolved against the folder holding the
  config file, so a cluster's files can move together.
- Addresses are `host:port` (IPv6 as `[addr]:port`), port 1..65535. A node's own
  `client_addr` and `peer_addr` are where it listens; its `[[members]]` entry is where the
  others reach it (advertised). The listen address has the advertised port, and the
  advertised host, a wildcard host (`0.0.0.0` or `::`) or, when the advertised host is a
  name, an IP address (of this host: not checked). `cluster_configs` has each node listen
  on its advertised address when that is an IP address, else on `0.0.0.0`.
- Time in the Raft core is counted in ticks of `raft.tick_ms`; the millisecond settings
  are rounded up to whole ticks (`RaftSection.heartbeat_ticks` and friends).
- `render_config` writes a config back with tomli-w; loading what it writes gives the
  same config.

docs/configuration.md describes every key, its default and the reasoning behind it.
"""

from __future__ import annotations

import difflib
import math
import re
import secrets
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import cattrs
import tomli_w
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

from trioraft.core.messages import MemberAddress, Members
from trioraft.transport.addresses import HostPort, parse_address, quoted

KIB = 1024
MIB = 1024 * KIB

#: the levels `log_level` accepts
LOG_LEVELS = ("debug", "info", "warning", "error")
#: the formats `log_format` accepts
LOG_FORMATS = ("text", "json")

_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = tuple(problems)


class _BadValue(ValueError):
    """Raised by the converter's hooks: the message says what was expected and got."""


@attrs.frozen(slots=True)
class Member:
    """One node of the initial cluster, as the other nodes reach it."""

    #: the node's id, unique in the cluster
    id: str
    #: where the other nodes connect for Raft messages
    peer_addr: HostPort
    #: where clients (and forwarding followers) connect
    client_addr: HostPort


@attrs.frozen(slots=True)
class RaftSection:
    """Timing and snapshot policy. The defaults suit a LAN with round trips under 10 ms."""

    #: the core's clock: one `tick()` every tick_ms milliseconds
    tick_ms: int = 10
    #: how often a leader sends AppendEntries (empty if nothing is new) to each follower
    heartbeat_ms: int = 50
    #: a follower that hears no leader for a random time in
    #: [election_timeout_min_ms, election_timeout_max_ms) starts an election; a leader
    #: that hears from no quorum for election_timeout_min_ms steps down (CheckQuorum)
    election_timeout_min_ms: int = 300
    #: the upper end of the election timeout range, exclusive
    election_timeout_max_ms: int = 600
    #: take a snapshot once this many entries were applied since the last one
    snapshot_entries: int = 100_000
    #: ... or once this many bytes of log were written since the last one
    snapshot_bytes: int = 64 * MIB
    #: how many snapshot files stay on disk (the newest is the one in use)
    snapshots_kept: int = 2

    @property
    def heartbeat_ticks(self) -> int:
        return _ticks(self.heartbeat_ms, self.tick_ms)

    @property
    def election_ticks_min(self) -> int:
        return _ticks(self.election_timeout_min_ms, self.tick_ms)

    @property
    def election_ticks_max(self) -> int:
        return _ticks(self.election_timeout_max_ms, self.tick_ms)


def _ticks(ms: int, tick_ms: int) -> int:
    return math.ceil(ms / tick_ms)


@attrs.frozen(slots=True)
class Limits:
    """What one client may cost a node. Breaking a limit gets an error reply, or the
    connection closed when the protocol itself is broken."""

    #: the largest value (and key) a command may carry, in bytes
    max_value_bytes: int = 1 * MIB
    #: the longest inline (plain text) request line, in bytes
    max_inline_bytes: int = 64 * KIB
    #: the most arguments one command may have, the command name included
    max_args: int = 1024 * 1024
    #: the largest request, all its arguments together, in bytes
    max_request_bytes: int = 16 * MIB
    #: the most client connections open at once; more are answered with an error and closed
    max_clients: int = 10_000
    #: close a client connection idle this many seconds; 0 never closes it
    idle_timeout_s: int = 0
    #: close a client connection whose replies waiting to be read exceed this many bytes
    max_unread_reply_bytes: int = 64 * MIB
    #: the most bytes of writes a leader holds not yet committed and applied; more are
    #: refused with -TRYAGAIN
    max_uncommitted_bytes: int = 64 * MIB
    #: the most commands one transaction (MULTI ... EXEC) may queue
    max_transaction_commands: int = 10_000
    #: the most bytes of arguments one transaction may queue, its watched keys included
    max_transaction_bytes: int = 16 * MIB


@attrs.frozen(slots=True)
class TlsConfig:
    """TLS on both listeners; peers verify each other against the CA (mutual TLS)."""

    #: this node's certificate chain (PEM), presented to clients and to peers
    cert_file: Path
    #: the private key of cert_file (PEM)
    key_file: Path
    #: the CA certificates (PEM) that peer certificates must chain to
    ca_file: Path


@attrs.frozen(slots=True, kw_only=True)
class Config:
    """One node's configuration. `load_config` builds it from a file and checks it."""

    #: this node's id: 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or
    #: digit; it must be one of `members`
    node_id: str
    #: the folder of the write-ahead log, hard state and snapshots; a relative path in a file
    #: is resolved against the file's folder
    data_dir: Path
    #: where the node listens for clients
    client_addr: HostPort
    #: where the node listens for the other nodes
    peer_addr: HostPort
    #: a secret every node of the cluster shares; a peer link with another token is refused
    cluster_token: str = attrs.field(repr=False)
    #: fsync the log before acknowledging anything; false is only for tests and benchmarks
    fsync: bool = True
    #: when set, clients must AUTH with it before any other command
    password: str | None = attrs.field(default=None, repr=False)
    #: the least severe log level written: debug, info, warning or error
    log_level: str = "info"
    #: how log lines are written: "text" (`TIME LEVEL NODE event key=value ...`) or "json"
    #: (one JSON object per line)
    log_format: str = "text"
    #: when set, where the node serves /metrics (Prometheus), /health and /ready over HTTP
    metrics_addr: HostPort | None = None
    #: the initial cluster; every node's file lists the same members. With `join`, only
    #: this node's own entry: where the others reach it
    members: tuple[Member, ...]
    #: when set, this node asks a running cluster to add it (as a learner, promoted once
    #: caught up) instead of bootstrapping one: client or peer addresses of its members,
    #: asked in turn until one answers. Only a data dir that records no configuration asks
    join: tuple[HostPort, ...] = ()
    #: the `[raft]` table: timing and snapshot policy
    raft: RaftSection = RaftSection()
    #: the `[limits]` table: what one client may cost the node
    limits: Limits = Limits()
    #: when set, both listeners speak TLS; when absent, plain TCP
    tls: TlsConfig | None = None

    @property
    def me(self) -> Member:
        """This node's own member entry."""
        return next(m for m in self.members if m.id == self.node_id)

    @property
    def peers(self) -> tuple[Member, ...]:
        """Every member but this node."""
        return tuple(m for m in self.members if m.id != self.node_id)


# ---- structuring --------------------------------------------------------------------


def _describe(value: object) -> str:
    """A value as an error message shows it: TOML spelling, long strings shortened."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _expect(kind: type, wanted: str) -> Callable[[object, type], Any]:
    """A hook that accepts exactly `kind` (so never a bool for an int) and nothing else."""

    def structure(value: object, _: type) -> object:
        if type(value) is not kind:
            raise _BadValue(f"expected {wanted}, got {_describe(value)}")
        return value

    return structure


def _structure_address(value: object, _: type) -> HostPort:
    if not isinstance(value, str):
        raise _BadValue(f'expected an address "host:port", got {_describe(value)}')
    try:
        return parse_address(value)
    except ValueError as e:
        raise _BadValue(str(e)) from None


def _structure_path(value: object, _: type) -> Path:
    if not isinstance(value, str):
        raise _BadValue(f"expected a path (a string), got {_describe(value)}")
    if not value:
        raise _BadValue("expected a path, got an empty string")
    return Path(value)


def _table_hook_factory(cl: type, converter: cattrs.Converter) -> Callable[[Any, type], Any]:
    inner: Callable[[Any, type], Any] = make_dict_structure_fn(
        cl, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )

    def structure(value: object, kind: type) -> Any:
        if not isinstance(value, dict):
            raise _BadValue(f"expected a table, got {_describe(value)}")
        return inner(value, kind)

    return structure


def _array_hook_factory(cl: type, converter: cattrs.Converter) -> Callable[[Any, type], Any]:
    inner = homogenous_tuple_structure_factory(cl, converter)
    wanted = "an array of addresses" if cl == tuple[HostPort, ...] else "an array of tables"

    def structure(value: object, kind: type) -> Any:
        if not isinstance(value, list):
            raise _BadValue(f"expected {wanted}, got {_describe(value)}")
        return inner(value, kind)

    return structure


def _is_homogeneous_tuple(cl: Any) -> bool:
    return getattr(cl, "__origin__", None) is tuple and cl.__args__[-1] is Ellipsis


def _make_converter() -> cattrs.Converter:
    c = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    c.register_structure_hook(int, _expect(int, "an integer"))
    c.register_structure_hook(bool, _expect(bool, "true or false"))
    c.register_structure_hook(str, _expect(str, "a string"))
    c.register_structure_hook(Path, _structure_path)
    c.register_structure_hook_factory(attrs.has, _table_hook_factory)
    c.register_structure_hook_factory(_is_homogeneous_tuple, _array_hook_factory)
    # registered after the attrs factory, so that it wins for HostPort
    c.register_structure_hook(HostPort, _structure_address)
    c.register_unstructure_hook(HostPort, str)
    c.register_unstructure_hook(Path, str)
    return c


_converter = _make_converter()


def _structure_problems(exc: BaseException, path: str) -> list[str]:
    """Walk cattrs's detailed validation errors into `key.path: problem` lines."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        lines = [
            line
            for sub, note in with_notes
            for line in _structure_problems(sub, _join(path, note.name))
        ]
        return lines + [line for sub in without for line in _structure_problems(sub, path)]
    if isinstance(exc, IterableValidationError):
        with_notes_i, without = exc.group_exceptions()
        lines = [
            line
            for sub, inote in with_notes_i
            for line in _structure_problems(sub, f"{path}[{inote.index}]")
        ]
        return lines + [line for sub in without for line in _structure_problems(sub, path)]
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [field.name for field in attrs.fields(exc.cl)]
        return [
            f"{_join(path, key)}: unknown key{_did_you_mean(key, known)}"
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        return [f"{path}: required key is missing"]
    if isinstance(exc, _BadValue):
        return [f"{path or '(top level)'}: {exc}"]
    raise exc


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    """A hint for an unknown key: a close key of the same table, else a close key of
    another table (a key written after a `[table]` header belongs to that table)."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return f" (did you mean {close[0]}?)"
    elsewhere = {
        _join(table, field.name): field.name
        for table, cl in _TABLES.items()
        for field in attrs.fields(cl)
        if field.name not in known
    }
    close = difflib.get_close_matches(key, list(elsewhere.values()), n=1, cutoff=0.75)
    if close:
        where = next(path for path, name in elsewhere.items() if name == close[0])
        return f" (did you mean {where}?)"
    return ""


#: every table of a config file, by its key path, for `_did_you_mean`
_TABLES: dict[str, type] = {
    "": Config,
    "raft": RaftSection,
    "limits": Limits,
    "tls": TlsConfig,
    "members[]": Member,
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def structure_config(data: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML, checking types only; raise ConfigError whose
    lines are `key.path: problem`."""
    try:
        return _converter.structure(data, Config)
    except (ClassValidationError, _BadValue) as e:
        raise ConfigError(_structure_problems(e, "")) from None


# ---- value and cross-field rules ----------------------------------------------------


def validate_config(cfg: Config) -> list[str]:
    """Check the value and cross-field rules; return one `key.path: problem` per broken
    rule, an empty list when the config is good."""
    problems: list[str] = []
    if not _NODE_ID.fullmatch(cfg.node_id):
        problems.append(
            f"node_id: expected 1 to 64 letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit, got {_describe(cfg.node_id)}"
        )
    if not cfg.cluster_token:
        problems.append("cluster_token: must not be empty")
    if cfg.password == "":
        problems.append("password: must not be empty (leave the key out for no password)")
    problems += _one_of("log_level", cfg.log_level, LOG_LEVELS)
    problems += _one_of("log_format", cfg.log_format, LOG_FORMATS)
    problems += _metrics_addr_problems(cfg)
    problems += _raft_problems(cfg.raft)
    problems += _limits_problems(cfg.limits)
    problems += _members_problems(cfg)
    problems += _join_problems(cfg)
    return problems


def _one_of(key: str, value: str, choices: Sequence[str]) -> list[str]:
    if value in choices:
        return []
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return [f"{key}: expected one of {', '.join(choices)}, got {_describe(value)}{hint}"]


def _metrics_addr_problems(cfg: Config) -> list[str]:
    if cfg.metrics_addr is None:
        return []
    mine = cfg.metrics_addr
    problems = []
    for name in ("client_addr", "peer_addr"):
        other: HostPort = getattr(cfg, name)
        same_host = other.host == mine.host or other.is_wildcard or mine.is_wildcard
        if other.port == mine.port and same_host:
            problems.append(f"metrics_addr: {mine} is also {name} ({other})")
    return problems


def _positive(section: str, obj: object, names: Sequence[str], least: int = 1) -> list[str]:
    return [
        f"{section}.{name}: must be at least {least}, got {getattr(obj, name)}"
        for name in names
        if getattr(obj, name) < least
    ]


def _raft_problems(raft: RaftSection) -> list[str]:
    problems = _positive(
        "raft",
        raft,
        [
            "tick_ms",
            "heartbeat_ms",
            "election_timeout_min_ms",
            "election_timeout_max_ms",
            "snapshot_entries",
            "snapshot_bytes",
            "snapshots_kept",
        ],
    )
    if problems:
        return problems
    if raft.heartbeat_ms < raft.tick_ms:
        problems.append(
            f"raft.heartbeat_ms: must be at least raft.tick_ms ({raft.tick_ms}), "
            f"got {raft.heartbeat_ms}"
        )
    if raft.heartbeat_ms * 3 > raft.election_timeout_min_ms:
        problems.append(
            f"raft.heartbeat_ms: must be at most a third of raft.election_timeout_min_ms "
            f"({raft.election_timeout_min_ms}), got {raft.heartbeat_ms}"
        )
    if raft.election_timeout_max_ms < raft.election_timeout_min_ms + raft.tick_ms:
        problems.append(
            f"raft.election_timeout_max_ms: must exceed raft.election_timeout_min_ms "
            f"({raft.election_timeout_min_ms}) by at least raft.tick_ms ({raft.tick_ms}), "
            f"got {raft.election_timeout_max_ms}"
        )
    return problems


def _limits_problems(limits: Limits) -> list[str]:
    problems = _positive(
        "limits",
        limits,
        [
            "max_value_bytes",
            "max_inline_bytes",
            "max_args",
            "max_request_bytes",
            "max_clients",
            "max_unread_reply_bytes",
            "max_uncommitted_bytes",
            "max_transaction_commands",
            "max_transaction_bytes",
        ],
    )
    problems += _positive("limits", limits, ["idle_timeout_s"], least=0)
    if problems:
        return problems
    for name in ("max_value_bytes", "max_inline_bytes"):
        if getattr(limits, name) > limits.max_request_bytes:
            problems.append(
                f"limits.{name}: must be at most limits.max_request_bytes "
                f"({limits.max_request_bytes}), got {getattr(limits, name)}"
            )
    return problems


def _members_problems(cfg: Config) -> list[str]:
    if not cfg.members:
        return ["members: at least one [[members]] entry is required"]
    problems: list[str] = []
    ids: dict[str, int] = {}
    addrs: dict[HostPort, str] = {}
    for i, m in enumerate(cfg.members):
        if not _NODE_ID.fullmatch(m.id):
            problems.append(f"members[{i}].id: not a valid node id: {_describe(m.id)}")
        if m.id in ids:
            problems.append(f"members[{i}].id: {m.id} is also members[{ids[m.id]}].id")
        ids.setdefault(m.id, i)
        for name in ("peer_addr", "client_addr"):
            addr: HostPort = getattr(m, name)
            key = f"members[{i}].{name}"
            if addr.is_wildcard:
                problems.append(f"{key}: {addr} is not an address other nodes can reach")
            elif addr in addrs:
                problems.append(f"{key}: {addr} is also {addrs[addr]}")
            addrs.setdefault(addr, key)
    if cfg.node_id not in ids:
        problems.append(f"node_id: {cfg.node_id} is not among the members")
        return problems
    me = cfg.members[ids[cfg.node_id]]
    for name in ("client_addr", "peer_addr"):
        own: HostPort = getattr(cfg, name)
        listed: HostPort = getattr(me, name)
        if not _listens_for(own, listed):
            problems.append(
                f"{name}: {own} differs from members[{ids[cfg.node_id]}].{name} ({listed}): "
                f"listen on {listed}, or on port {listed.port} of 0.0.0.0 or an IP address"
            )
    return problems


def _join_problems(cfg: Config) -> list[str]:
    """A joining node's file lists itself only: the cluster it joins says who else is in
    it, and a second list could only disagree with that."""
    if not cfg.join:
        return []
    problems = [
        f"join: {cfg.join[i]} is listed twice"
        for i in range(len(cfg.join))
        if cfg.join[i] in cfg.join[:i]
    ]
    others = [m.id for m in cfg.members if m.id != cfg.node_id]
    if others:
        problems.append(
            f"members: with join, list only this node ({cfg.node_id}), where the others reach "
            f"it; the cluster it joins tells it its members (remove {', '.join(others)})"
        )
    mine = [(m.peer_addr, m.client_addr) for m in cfg.members if m.id == cfg.node_id]
    own = {cfg.peer_addr, cfg.client_addr, *(mine[0] if mine else ())}
    problems += [
        f"join[{i}]: {address} is this node's own address; name a member of the cluster to join"
        for i, address in enumerate(cfg.join)
        if address in own or address.is_wildcard
    ]
    return problems


def _listens_for(own: HostPort, advertised: HostPort) -> bool:
    """Whether a node listening on `own` can be reached at `advertised`."""
    if own.port != advertised.port:
        return False
    return own.host == advertised.host or own.is_wildcard or (own.is_ip and not advertised.is_ip)


# ---- files --------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Read, check and return the config in `path`, with relative paths resolved against
    its folder. Raise ConfigError with one line `FILE: key.path: problem` per problem."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: byte offset {e.start}: not valid UTF-8"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: {_toml_error(str(e))}"]) from None
    problems = _problems(data)
    if problems:
        raise ConfigError([f"{path}: {line}" for line in problems])
    return _resolve_paths(structure_config(data), path.parent.absolute())


def _problems(data: dict[str, Any]) -> list[str]:
    """Every problem of the parsed file: type problems, then the rules that do not
    involve a key with a type problem."""
    try:
        return validate_config(structure_config(data))
    except ConfigError as e:
        problems = list(e.problems)
    bad_keys = [line.partition(": ")[0] for line in problems]
    for key in bad_keys:
        _remove_key(data, key)
    try:
        rest = validate_config(structure_config(data))
    except ConfigError:
        return problems  # a required key is missing or unusable: the rules cannot run
    return problems + [line for line in rest if not any(key in line for key in bad_keys)]


def _remove_key(data: dict[str, Any], key_path: str) -> None:
    """Delete `key_path` (like `raft.tick_ms` or `members[1].id`) from parsed TOML."""
    *parents, last = re.findall(r"[^.\[\]]+|\[\d+\]", key_path)
    node: Any = data
    for step in parents:
        node = node[int(step[1:-1])] if step.startswith("[") else node.get(step)
        if not isinstance(node, dict | list):
            return
    if isinstance(node, dict):
        node.pop(last, None)


def _toml_error(message: str) -> str:
    """tomllib's "What (at line L, column C)" as "line L, column C: invalid TOML: What"."""
    what, _, where = message.rpartition(" (at ")
    if not what:
        return f"invalid TOML: {message}"
    return f"{where.rstrip(')')}: invalid TOML: {what}"


def _resolve_paths(cfg: Config, base: Path) -> Config:
    tls = cfg.tls
    if tls is not None:
        tls = TlsConfig(
            cert_file=base / tls.cert_file,
            key_file=base / tls.key_file,
            ca_file=base / tls.ca_file,
        )
    return attrs.evolve(cfg, data_dir=base / cfg.data_dir, tls=tls)


def render_config(cfg: Config) -> str:
    """The config as TOML text, every key written out; `load_config` reads it back."""
    data = _drop_none(_converter.unstructure(cfg))
    header = f"# trioraft node {cfg.node_id}; every key is described in docs/configuration.md\n"
    return header + tomli_w.dumps(data)


def _drop_none(value: Any) -> Any:
    """TOML has no null: an unset optional key is left out."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# ---- building a cluster -------------------------------------------------------------


def listen_address(advertised: HostPort) -> HostPort:
    """Where a node listens to be reached at `advertised`: there when it is an IP address;
    for a host name, 0.0.0.0 on its port (the name may resolve to a loopback address on
    its own host, as a Debian host's name does)."""
    if advertised.is_ip:
        return advertised
    return HostPort("0.0.0.0", advertised.port)


def new_token() -> str:
    """A random cluster token: 32 bytes from the system's secure source, URL-safe text."""
    return secrets.token_urlsafe(32)


def same_host_members(
    count: int, host: str = "127.0.0.1", client_port: int = 7001, peer_port: int = 8001
) -> tuple[Member, ...]:
    """`count` members n1..nN on one host, with consecutive client and peer ports."""
    return tuple(
        Member(
            id=f"n{k}",
            peer_addr=HostPort(host, peer_port + k - 1),
            client_addr=HostPort(host, client_port + k - 1),
        )
        for k in range(1, count + 1)
    )


def one_per_host_members(
    hosts: Sequence[str], client_port: int = 7001, peer_port: int = 8001
) -> tuple[Member, ...]:
    """Members n1..nN, node k on hosts[k-1], all with the same two ports."""
    return tuple(
        Member(
            id=f"n{k}",
            peer_addr=HostPort(host, peer_port),
            client_addr=HostPort(host, client_port),
        )
        for k, host in enumerate(hosts, start=1)
    )


def cluster_configs(
    members: Sequence[Member],
    *,
    token: str,
    data_root: Path = Path("data"),
    fsync: bool = True,
    password: str | None = None,
    raft: RaftSection = RaftSection(),
    limits: Limits = Limits(),
) -> list[Config]:
    """One config per member, in the members' order; node X keeps its data in
    `data_root/X` and listens on `listen_address` of its advertised addresses."""
    return [
        Config(
            node_id=m.id,
            data_dir=data_root / m.id,
            client_addr=listen_address(m.client_addr),
            peer_addr=listen_address(m.peer_addr),
            cluster_token=token,
            members=tuple(members),
            fsync=fsync,
            password=password,
            raft=raft,
            limits=limits,
        )
        for m in members
    ]


def listed_members(config: Config) -> Members:
    """The configuration the file bootstraps an empty data dir with: none for a node that
    joins (the cluster it joins tells it; it must never form a cluster of its own)."""
    if config.join:
        return Members(frozenset())
    return Members(
        voters=frozenset(m.id for m in config.members),
        addresses=tuple(
            sorted(
                (m.id, MemberAddress(str(m.peer_addr), str(m.client_addr))) for m in config.members
            )
        ),
    )
