"""Loading, checking and writing node configs: every problem is one line naming the file
and the key path."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from trioraft.ops.config import (
    Config,
    ConfigError,
    Limits,
    RaftSection,
    TlsConfig,
    cluster_configs,
    load_config,
    one_per_host_members,
    render_config,
    same_host_members,
)
from trioraft.transport.addresses import HostPort

MINIMAL = """\
node_id = "n1"
data_dir = "data/n1"
client_addr = "127.0.0.1:7001"
peer_addr = "127.0.0.1:8001"
cluster_token = "secret"

[[members]]
id = "n1"
peer_addr = "127.0.0.1:8001"
client_addr = "127.0.0.1:7001"

[[members]]
id = "n2"
peer_addr = "127.0.0.1:8002"
client_addr = "127.0.0.1:7002"

[[members]]
id = "n3"
peer_addr = "127.0.0.1:8003"
client_addr = "127.0.0.1:7003"
"""


def write(tmp_path: Path, text: str, name: str = "n1.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return list(info.value.problems)


def with_table(table: str, body: str) -> str:
    """MINIMAL with a [table] holding `body` (placed before the [[members]])."""
    head, sep, rest = MINIMAL.partition("[[members]]")
    return f"{head}[{table}]\n{body}\n\n{sep}{rest}"


def top(line: str, text: str = MINIMAL) -> str:
    """MINIMAL with `line` added among the top-level keys."""
    return f"{line}\n{text}"


# ---- good configs -------------------------------------------------------------------


def test_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.node_id == "n1"
    assert cfg.client_addr == HostPort("127.0.0.1", 7001)
    assert cfg.peer_addr == HostPort("127.0.0.1", 8001)
    assert cfg.cluster_token == "secret"
    assert cfg.fsync is True
    assert cfg.password is None
    assert cfg.log_level == "info"
    assert cfg.tls is None
    assert cfg.raft == RaftSection()
    assert cfg.limits == Limits()
    assert [m.id for m in cfg.members] == ["n1", "n2", "n3"]
    assert cfg.me.client_addr == cfg.client_addr
    assert [m.id for m in cfg.peers] == ["n2", "n3"]


def test_default_values() -> None:
    raft = RaftSection()
    assert (raft.tick_ms, raft.heartbeat_ms) == (10, 50)
    assert (raft.election_timeout_min_ms, raft.election_timeout_max_ms) == (300, 600)
    assert (raft.heartbeat_ticks, raft.election_ticks_min, raft.election_ticks_max) == (5, 30, 60)
    assert (raft.snapshot_entries, raft.snapshot_bytes, raft.snapshots_kept) == (
        100_000,
        64 << 20,
        2,
    )
    limits = Limits()
    assert limits.max_value_bytes == 1 << 20
    assert limits.max_inline_bytes == 64 << 10
    assert limits.max_args == 1 << 20
    assert limits.max_request_bytes == 16 << 20
    assert limits.max_clients == 10_000
    assert limits.idle_timeout_s == 0
    assert limits.max_unread_reply_bytes == 64 << 20
    assert limits.max_uncommitted_bytes == 64 << 20


def test_ticks_round_up() -> None:
    raft = RaftSection(tick_ms=20, heartbeat_ms=50, election_timeout_min_ms=310)
    assert (raft.heartbeat_ticks, raft.election_ticks_min, raft.election_ticks_max) == (3, 16, 30)


def test_every_key_set(tmp_path: Path) -> None:
    text = top(
        'fsync = false\npassword = "pw"\nlog_level = "debug"\nlog_format = "json"\n'
        'metrics_addr = "127.0.0.1:9101"',
        with_table(
            "raft",
            "tick_ms = 5\nheartbeat_ms = 20\nelection_timeout_min_ms = 100\n"
            "election_timeout_max_ms = 200\nsnapshot_entries = 10\nsnapshot_bytes = 1000\n"
            "snapshots_kept = 1\n\n[limits]\nmax_value_bytes = 100\nmax_inline_bytes = 200\n"
            "max_args = 10\nmax_request_bytes = 1000\nmax_clients = 5\nidle_timeout_s = 60\n"
            "max_unread_reply_bytes = 4096\nmax_uncommitted_bytes = 8192\n\n[tls]\n"
            'cert_file = "n1.pem"\n'
            'key_file = "/etc/trioraft/n1.key"\nca_file = "../ca.pem"',
        ),
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.fsync is False
    assert cfg.password == "pw"
    assert cfg.log_level == "debug"
    assert cfg.log_format == "json"
    assert cfg.metrics_addr == HostPort("127.0.0.1", 9101)
    assert cfg.raft == RaftSection(5, 20, 100, 200, 10, 1000, 1)
    assert cfg.limits == Limits(100, 200, 10, 1000, 5, 60, 4096, 8192)
    assert cfg.tls == TlsConfig(
        cert_file=tmp_path / "n1.pem",
        key_file=Path("/etc/trioraft/n1.key"),
        ca_file=tmp_path / "../ca.pem",
    )


def test_relative_data_dir_is_resolved_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("conf") / write(tmp_path / "conf", MINIMAL).name)
    assert cfg.data_dir == tmp_path / "conf" / "data" / "n1"
    assert cfg.data_dir.is_absolute()


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    text = MINIMAL.replace('"data/n1"', '"/var/lib/trioraft/n1"')
    assert load_config(write(tmp_path, text)).data_dir == Path("/var/lib/trioraft/n1")


def test_listening_on_a_wildcard_host_with_the_advertised_port(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'client_addr = "127.0.0.1:7001"\npeer', 'client_addr = "0.0.0.0:7001"\npeer'
    )
    text = text.replace('peer_addr = "127.0.0.1:8001"\ncluster', 'peer_addr = "[::]:8001"\ncluster')
    cfg = load_config(write(tmp_path, text))
    assert cfg.client_addr == HostPort("0.0.0.0", 7001)
    assert cfg.peer_addr == HostPort("::", 8001)


def test_listening_on_an_ip_address_for_an_advertised_host_name(tmp_path: Path) -> None:
    own = 'id = "n1"\npeer_addr = "127.0.0.1:8001"\nclient_addr = "127.0.0.1:7001"'
    assert own in MINIMAL
    text = MINIMAL.replace(own, own.replace("127.0.0.1", "db1.example"))
    cfg = load_config(write(tmp_path, text))
    assert (cfg.client_addr, cfg.peer_addr) == (
        HostPort("127.0.0.1", 7001),
        HostPort("127.0.0.1", 8001),
    )
    assert cfg.me.client_addr == HostPort("db1.example", 7001)


# ---- type problems ------------------------------------------------------------------


def test_wrong_type_names_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, with_table("raft", 'heartbeat_ms = "fast"'))
    assert problems(path) == [f'{path}: raft.heartbeat_ms: expected an integer, got "fast"']


def test_unknown_key_at_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, top("colour = 5"))
    assert problems(path) == [f"{path}: colour: unknown key"]


def test_unknown_key_in_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, with_table("raft", "heartbeet_ms = 5"))
    assert problems(path) == [
        f"{path}: raft.heartbeet_ms: unknown key (did you mean heartbeat_ms?)"
    ]


def test_a_misspelt_key_of_another_table_is_named_with_its_table(tmp_path: Path) -> None:
    path = write(tmp_path, top("heartbeet_ms = 5"))
    assert problems(path) == [
        f"{path}: heartbeet_ms: unknown key (did you mean raft.heartbeat_ms?)"
    ]


def test_unknown_key_in_a_member(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "addr = 1\n")
    assert problems(path) == [f"{path}: members[2].addr: unknown key"]


def test_unknown_table(tmp_path: Path) -> None:
    path = write(tmp_path, with_table("raf", "heartbeat_ms = 5"))
    assert problems(path) == [f"{path}: raf: unknown key (did you mean raft?)"]


def test_missing_keys(tmp_path: Path) -> None:
    text = MINIMAL.replace('cluster_token = "secret"\n', "").replace('id = "n2"\n', "")
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}: cluster_token: required key is missing",
        f"{path}: members[1].id: required key is missing",
    ]


def test_missing_tls_files(tmp_path: Path) -> None:
    path = write(tmp_path, with_table("tls", 'cert_file = "c.pem"'))
    assert problems(path) == [
        f"{path}: tls.key_file: required key is missing",
        f"{path}: tls.ca_file: required key is missing",
    ]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert problems(path) == [
        f"{path}: {key}: required key is missing"
        for key in ("node_id", "data_dir", "client_addr", "peer_addr", "cluster_token", "members")
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fsync = 1", "fsync: expected true or false, got 1"),
        ('fsync = "yes"', 'fsync: expected true or false, got "yes"'),
        ("password = 1234", "password: expected a string, got 1234"),
        ("log_level = true", "log_level: expected a string, got true"),
        ("log_format = 1", "log_format: expected a string, got 1"),
        ("metrics_addr = 9101", 'metrics_addr: expected an address "host:port", got 9101'),
        ("raft = 5", "raft: expected a table, got 5"),
        ('limits = "big"', 'limits: expected a table, got "big"'),
        ("tls = []", "tls: expected a table, got an array"),
    ],
)
def test_wrong_top_level_types(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, top(line))
    assert problems(path) == [f"{path}: {message}"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("true", "true"),
        ('"50"', '"50"'),
        ("50.0", "50.0"),
        ("[50]", "an array"),
        ("{ ms = 50 }", "a table"),
        ("1979-05-27", "a date"),
        ('"' + "x" * 50 + '"', '"' + "x" * 37 + '..."'),
    ],
)
def test_int_field_takes_only_an_integer(tmp_path: Path, value: str, shown: str) -> None:
    path = write(tmp_path, with_table("limits", f"max_clients = {value}"))
    assert problems(path) == [f"{path}: limits.max_clients: expected an integer, got {shown}"]


def test_wrong_types_of_strings_and_addresses(tmp_path: Path) -> None:
    text = MINIMAL.replace('node_id = "n1"', "node_id = 1")
    text = text.replace('data_dir = "data/n1"', "data_dir = false")
    text = text.replace('client_addr = "127.0.0.1:7001"\npeer', "client_addr = 7001\npeer")
    text = text.replace('peer_addr = "127.0.0.1:8001"\ncluster', 'peer_addr = "h:99999"\ncluster')
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}: node_id: expected a string, got 1",
        f"{path}: data_dir: expected a path (a string), got false",
        f'{path}: client_addr: expected an address "host:port", got 7001',
        f'{path}: peer_addr: port must be a number from 1 to 65535, got "99999"',
    ]


def test_empty_data_dir(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('"data/n1"', '""'))
    assert problems(path) == [f"{path}: data_dir: expected a path, got an empty string"]


def test_members_must_be_an_array_of_tables(tmp_path: Path) -> None:
    head = MINIMAL.partition("[[members]]")[0]
    path = write(tmp_path, head + 'members = "n1,n2"\n')
    assert problems(path) == [f'{path}: members: expected an array of tables, got "n1,n2"']
    path = write(tmp_path, head + 'members = ["n1"]\n')
    assert problems(path) == [f'{path}: members[0]: expected a table, got "n1"']


def test_several_problems_are_listed_together(tmp_path: Path) -> None:
    text = top("fsync = 0\nextra = 1", with_table("raft", 'heartbeat_ms = "fast"\nx = 1'))
    text = text.replace('peer_addr = "127.0.0.1:8002"\n', 'peer_addr = "nowhere"\n')
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}: fsync: expected true or false, got 0",
        f'{path}: members[1].peer_addr: expected "host:port", got "nowhere"',
        f'{path}: raft.heartbeat_ms: expected an integer, got "fast"',
        f"{path}: raft.x: unknown key",
        f"{path}: extra: unknown key",
    ]


def test_type_and_rule_problems_are_listed_together(tmp_path: Path) -> None:
    text = top("log_level = 5", with_table("raft", "heartbeat_ms = 500"))
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}: log_level: expected a string, got 5",
        f"{path}: raft.heartbeat_ms: must be at most a third of raft.election_timeout_min_ms "
        "(300), got 500",
    ]


def test_a_rule_involving_a_key_of_the_wrong_type_is_not_reported(tmp_path: Path) -> None:
    # with heartbeat_ms's default (50) the timeout rule would fail: not worth a line
    text = with_table("raft", 'heartbeat_ms = "fast"\nelection_timeout_min_ms = 100')
    path = write(tmp_path, text)
    assert problems(path) == [f'{path}: raft.heartbeat_ms: expected an integer, got "fast"']


# ---- files that are not TOML --------------------------------------------------------


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, 'node_id = "n1"\ndata_dir = \n')
    assert problems(path) == [f"{path}: line 2, column 12: invalid TOML: Invalid value"]


def test_toml_error_at_end_of_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'node_id = "n1"\nnode_id = "n2"')
    assert problems(path) == [f"{path}: end of document: invalid TOML: Cannot overwrite a value"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "n1.toml"
    path.write_bytes(b'node_id = "n\xff"\n')
    assert problems(path) == [f"{path}: byte offset 12: not valid UTF-8"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert problems(path) == [f"{path}: cannot read: No such file or directory"]


# ---- value and cross-field rules ----------------------------------------------------


@pytest.mark.parametrize(
    ("raft", "message"),
    [
        (
            "heartbeat_ms = 200",
            "raft.heartbeat_ms: must be at most a third of raft.election_timeout_min_ms "
            "(300), got 200",
        ),
        (
            "election_timeout_min_ms = 600",
            "raft.election_timeout_max_ms: must exceed raft.election_timeout_min_ms (600) "
            "by at least raft.tick_ms (10), got 600",
        ),
        (
            "election_timeout_max_ms = 305",
            "raft.election_timeout_max_ms: must exceed raft.election_timeout_min_ms (300) "
            "by at least raft.tick_ms (10), got 305",
        ),
        ("tick_ms = 60", "raft.heartbeat_ms: must be at least raft.tick_ms (60), got 50"),
        ("tick_ms = 0", "raft.tick_ms: must be at least 1, got 0"),
        ("snapshot_entries = -1", "raft.snapshot_entries: must be at least 1, got -1"),
        ("snapshots_kept = 0", "raft.snapshots_kept: must be at least 1, got 0"),
    ],
)
def test_raft_rules(tmp_path: Path, raft: str, message: str) -> None:
    path = write(tmp_path, with_table("raft", raft))
    assert problems(path) == [f"{path}: {message}"]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("max_clients = 0", "limits.max_clients: must be at least 1, got 0"),
        ("max_value_bytes = 0", "limits.max_value_bytes: must be at least 1, got 0"),
        ("idle_timeout_s = -1", "limits.idle_timeout_s: must be at least 0, got -1"),
        (
            "max_request_bytes = 1000",
            "limits.max_value_bytes: must be at most limits.max_request_bytes (1000), "
            "got 1048576\n"
            "limits.max_inline_bytes: must be at most limits.max_request_bytes (1000), got 65536",
        ),
    ],
)
def test_limits_rules(tmp_path: Path, limits: str, message: str) -> None:
    path = write(tmp_path, with_table("limits", limits))
    assert problems(path) == [f"{path}: {line}" for line in message.split("\n")]


def test_idle_timeout_zero_is_allowed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, with_table("limits", "idle_timeout_s = 0")))
    assert cfg.limits.idle_timeout_s == 0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('node_id = "n1"', 'node_id = "n4"', "node_id: n4 is not among the members"),
        (
            'node_id = "n1"',
            'node_id = "n 1"',
            "node_id: expected 1 to 64 letters, digits, '.', '_' or '-' starting with a "
            'letter or digit, got "n 1"\nnode_id: n 1 is not among the members',
        ),
        ('cluster_token = "secret"', 'cluster_token = ""', "cluster_token: must not be empty"),
        (
            'cluster_token = "secret"',
            'cluster_token = "secret"\npassword = ""',
            "password: must not be empty (leave the key out for no password)",
        ),
        (
            'cluster_token = "secret"',
            'cluster_token = "secret"\nlog_level = "loud"',
            'log_level: expected one of debug, info, warning, error, got "loud"',
        ),
        (
            'cluster_token = "secret"',
            'cluster_token = "secret"\nlog_format = "jsno"',
            'log_format: expected one of text, json, got "jsno" (did you mean json?)',
        ),
        (
            'cluster_token = "secret"',
            'cluster_token = "secret"\nmetrics_addr = "0.0.0.0:7001"',
            "metrics_addr: 0.0.0.0:7001 is also client_addr (127.0.0.1:7001)",
        ),
        (
            'cluster_token = "secret"',
            'cluster_token = "secret"\nlog_fromat = "json"',
            "log_fromat: unknown key (did you mean log_format?)",
        ),
        ('id = "n2"', 'id = "n1"', "members[1].id: n1 is also members[0].id"),
        ('id = "n2"', 'id = "n,2"', 'members[1].id: not a valid node id: "n,2"'),
        (
            'peer_addr = "127.0.0.1:8002"',
            'peer_addr = "127.0.0.1:8001"',
            "members[1].peer_addr: 127.0.0.1:8001 is also members[0].peer_addr",
        ),
        (
            'peer_addr = "127.0.0.1:8003"',
            'peer_addr = "127.0.0.1:7002"',
            "members[2].peer_addr: 127.0.0.1:7002 is also members[1].client_addr",
        ),
        (
            'client_addr = "127.0.0.1:7003"',
            'client_addr = "0.0.0.0:7003"',
            "members[2].client_addr: 0.0.0.0:7003 is not an address other nodes can reach",
        ),
        (
            'client_addr = "127.0.0.1:7001"\npeer',
            'client_addr = "127.0.0.2:7001"\npeer',
            "client_addr: 127.0.0.2:7001 differs from members[0].client_addr (127.0.0.1:7001): "
            "listen on 127.0.0.1:7001, or on port 7001 of 0.0.0.0 or an IP address",
        ),
        (
            'peer_addr = "127.0.0.1:8001"\ncluster',
            'peer_addr = "0.0.0.0:8009"\ncluster',
            "peer_addr: 0.0.0.0:8009 differs from members[0].peer_addr (127.0.0.1:8001): "
            "listen on 127.0.0.1:8001, or on port 8001 of 0.0.0.0 or an IP address",
        ),
    ],
)
def test_node_and_member_rules(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    assert problems(path) == [f"{path}: {line}" for line in message.split("\n")]


def test_no_members(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.partition("[[members]]")[0] + "members = []\n")
    assert problems(path) == [f"{path}: members: at least one [[members]] entry is required"]


def test_several_rule_problems_are_listed_together(tmp_path: Path) -> None:
    text = with_table("raft", "heartbeat_ms = 150").replace('node_id = "n1"', 'node_id = "n9"')
    path = write(tmp_path, text)
    assert problems(path) == [
        f"{path}: raft.heartbeat_ms: must be at most a third of "
        "raft.election_timeout_min_ms (300), got 150",
        f"{path}: node_id: n9 is not among the members",
    ]


def test_secrets_stay_out_of_repr() -> None:
    (cfg,) = cluster_configs(same_host_members(1), token="tok-123", password="pw-456")
    assert "tok-123" not in repr(cfg)
    assert "pw-456" not in repr(cfg)


# ---- writing ------------------------------------------------------------------------


def test_render_then_load_gives_the_same_config(tmp_path: Path) -> None:
    members = one_per_host_members(["a.example", "b.example", "::1"], 6379, 7379)
    configs = cluster_configs(
        members,
        token="t",
        data_root=Path("state"),
        fsync=False,
        password="pw",
        raft=RaftSection(
            heartbeat_ms=100, election_timeout_min_ms=500, election_timeout_max_ms=900
        ),
        limits=Limits(max_clients=50),
    )
    for cfg in configs:
        path = write(tmp_path, render_config(cfg), f"{cfg.node_id}.toml")
        loaded = load_config(path)
        assert loaded == Config(
            node_id=cfg.node_id,
            data_dir=tmp_path / "state" / cfg.node_id,
            client_addr=cfg.client_addr,
            peer_addr=cfg.peer_addr,
            cluster_token="t",
            members=members,
            fsync=False,
            password="pw",
            raft=cfg.raft,
            limits=cfg.limits,
        )


def test_render_leaves_unset_optional_keys_out() -> None:
    (cfg,) = cluster_configs(same_host_members(1), token="t")
    text = render_config(cfg)
    assert "password" not in text
    assert "[tls]" not in text
    assert text.startswith("# trioraft node n1")


def test_render_writes_tls(tmp_path: Path) -> None:
    (cfg,) = cluster_configs(same_host_members(1), token="t")
    tls = TlsConfig(Path("n1.pem"), Path("n1.key"), Path("/etc/ca.pem"))
    path = write(tmp_path, render_config(attrs.evolve(cfg, tls=tls)))
    assert load_config(path).tls == TlsConfig(
        tmp_path / "n1.pem", tmp_path / "n1.key", Path("/etc/ca.pem")
    )


# ---- join -----------------------------------------------------------------------------

JOINING = """\
node_id = "n4"
data_dir = "data/n4"
client_addr = "0.0.0.0:7004"
peer_addr = "0.0.0.0:8004"
cluster_token = "secret"
join = ["127.0.0.1:7001", "[::1]:8002"]

[[members]]
id = "n4"
peer_addr = "127.0.0.1:8004"
client_addr = "127.0.0.1:7004"
"""


def test_join_lists_addresses_to_ask(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, JOINING, "n4.toml"))
    assert cfg.join == (HostPort("127.0.0.1", 7001), HostPort("::1", 8002))
    assert load_config(write(tmp_path, render_config(cfg), "again.toml")) == cfg


def test_join_defaults_to_none(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).join == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"[::1]:8002"',
            '"127.0.0.1"',
            'join[1]: expected "host:port", got "127.0.0.1"',
        ),
        ('join = ["127.0.0.1:7001", "[::1]:8002"]', 'join = "127.0.0.1:7001"', ""),
        ('"[::1]:8002"', '"127.0.0.1:7001"', "join: 127.0.0.1:7001 is listed twice"),
        (
            '"[::1]:8002"',
            '"127.0.0.1:8004"',
            "join[1]: 127.0.0.1:8004 is this node's own address; name a member of the "
            "cluster to join",
        ),
        (
            '"[::1]:8002"',
            '"0.0.0.0:8002"',
            "join[1]: 0.0.0.0:8002 is this node's own address; name a member of the "
            "cluster to join",
        ),
    ],
)
def test_bad_join(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in JOINING
    path = write(tmp_path, JOINING.replace(old, new, 1), "n4.toml")
    expected = message or 'join: expected an array of addresses, got "127.0.0.1:7001"'
    assert problems(path) == [f"{path}: {expected}"]


def test_join_with_other_members_listed_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, top('join = ["127.0.0.1:7009"]'))
    assert problems(path) == [
        f"{path}: members: with join, list only this node (n1), where the others reach it; "
        "the cluster it joins tells it its members (remove n2, n3)"
    ]
