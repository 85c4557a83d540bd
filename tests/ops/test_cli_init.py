"""`trioraft init` writes configs that load; the command line reports every failure in one
line with exit status 2 for bad usage."""

from __future__ import annotations

import argparse
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trioraft.ops import cli
from trioraft.ops.cli import main
from trioraft.ops.config import load_config
from trioraft.transport.addresses import HostPort


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_nodes_on_one_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "init", "--out", str(tmp_path), "--nodes", "3")
    assert (status, err) == (0, "")
    assert out.splitlines() == [f"wrote {tmp_path}/n{k}.toml" for k in (1, 2, 3)]
    configs = [load_config(tmp_path / f"n{k}.toml") for k in (1, 2, 3)]
    for k, cfg in enumerate(configs, start=1):
        assert cfg.node_id == f"n{k}"
        assert cfg.client_addr == HostPort("127.0.0.1", 7000 + k)
        assert cfg.peer_addr == HostPort("127.0.0.1", 8000 + k)
        assert cfg.data_dir == tmp_path / "data" / f"n{k}"
        assert cfg.members == configs[0].members
        assert cfg.cluster_token == configs[0].cluster_token
    assert len(configs[0].cluster_token) >= 40
    assert stat.S_IMODE((tmp_path / "n1.toml").stat().st_mode) == 0o600


def test_nodes_with_host_ports_data_root_and_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "new" / "conf"
    status, _, err = run(
        capsys,
        "init",
        "--out",
        str(out_dir),
        "--nodes",
        "5",
        "--host",
        "10.1.2.3",
        "--client-port",
        "6379",
        "--peer-port",
        "16379",
        "--data-root",
        "/var/lib/trioraft",
        "--token",
        "sesame",
    )
    assert (status, err) == (0, "")
    cfg = load_config(out_dir / "n5.toml")
    assert cfg.client_addr == HostPort("10.1.2.3", 6383)
    assert cfg.peer_addr == HostPort("10.1.2.3", 16383)
    assert cfg.data_dir == Path("/var/lib/trioraft/n5")
    assert cfg.cluster_token == "sesame"
    assert [m.id for m in cfg.members] == ["n1", "n2", "n3", "n4", "n5"]


def test_one_node_per_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys,
        "init",
        "--out",
        str(tmp_path),
        "--hosts",
        "db1.example,db2.example,::1",
        "--client-port",
        "6379",
        "--data-root",
        "../state",
    )
    assert (status, err) == (0, "")
    configs = [load_config(tmp_path / f"n{k}.toml") for k in (1, 2, 3)]
    # a node listens on its host when that is an IP address, else on every interface
    assert [str(c.client_addr) for c in configs] == ["0.0.0.0:6379", "0.0.0.0:6379", "[::1]:6379"]
    assert [str(c.peer_addr) for c in configs] == ["0.0.0.0:8001", "0.0.0.0:8001", "[::1]:8001"]
    # ... and the others reach it at its host
    assert [str(m.client_addr) for m in configs[0].members] == [
        "db1.example:6379",
        "db2.example:6379",
        "[::1]:6379",
    ]
    assert [str(m.peer_addr) for m in configs[0].members] == [
        "db1.example:8001",
        "db2.example:8001",
        "[::1]:8001",
    ]
    assert configs[2].data_dir == tmp_path / "../state/n3"


def test_tokens_differ_between_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "init", "--out", str(tmp_path / "a"), "--nodes", "1")
    run(capsys, "init", "--out", str(tmp_path / "b"), "--nodes", "1")
    tokens = {load_config(tmp_path / d / "n1.toml").cluster_token for d in "ab"}
    assert len(tokens) == 2


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "n2.toml").write_text("mine")
    status, out, err = run(capsys, "init", "--out", str(tmp_path), "--nodes", "3")
    assert status == 2
    assert out == ""
    assert err == f"trioraft init: {tmp_path}/n2.toml already exists (--force overwrites it)\n"
    assert not (tmp_path / "n1.toml").exists()
    assert (tmp_path / "n2.toml").read_text() == "mine"


def test_force_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "n2.toml").write_text("mine")
    status, _, err = run(capsys, "init", "--out", str(tmp_path), "--nodes", "3", "--force")
    assert (status, err) == (0, "")
    assert load_config(tmp_path / "n2.toml").node_id == "n2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "trioraft: the following arguments are required: COMMAND (see trioraft --help)"),
        (
            ["init", "--nodes", "3"],
            "trioraft init: the following arguments are required: --out (see trioraft init --help)",
        ),
        (
            ["init", "--out", "x"],
            "trioraft init: one of --nodes, --hosts or --join is required",
        ),
        (
            ["init", "--out", "x", "--nodes", "3", "--hosts", "a,b"],
            "trioraft init: argument --hosts: not allowed with argument --nodes "
            "(see trioraft init --help)",
        ),
        (
            ["init", "--out", "x", "--nodes", "0"],
            "trioraft init: argument --nodes: expected a positive number, got '0' "
            "(see trioraft init --help)",
        ),
        (
            ["init", "--out", "x", "--nodes", "3", "--client-port", "70000"],
            "trioraft init: argument --client-port: expected a port from 1 to 65535, "
            "got '70000' (see trioraft init --help)",
        ),
        (
            ["init", "--out", "x", "--nodes", "3", "--client-port", "65534"],
            "trioraft init: --nodes 3 needs ports up to 65536",
        ),
        (
            ["init", "--out", "x", "--nodes", "3", "--peer-port", "7002"],
            "trioraft init: --client-port 7001 and --peer-port 7002 are too close: "
            "3 nodes need 3 ports of each kind",
        ),
        (
            ["init", "--out", "x", "--nodes", "3", "--host", "0.0.0.0"],
            "trioraft init: argument --host: 0.0.0.0 is not an address other nodes can reach "
            "(see trioraft init --help)",
        ),
        (
            ["init", "--out", "x", "--hosts", "a,b", "--host", "c"],
            "trioraft init: --host goes with --nodes; --hosts names every host",
        ),
        (
            ["init", "--out", "x", "--hosts", "a,b,A"],
            "trioraft init: argument --hosts: A is named twice (see trioraft init --help)",
        ),
        (
            ["init", "--out", "x", "--hosts", "a,,b"],
            'trioraft init: argument --hosts: expected "host:port", got ":1" '
            "(see trioraft init --help)",
        ),
        (
            ["init", "--out", "x", "--hosts", "a,b", "--client-port", "8001"],
            "trioraft init: --client-port and --peer-port must differ",
        ),
        (
            ["serve", "--config", "x.toml", "--refusal-status", "2"],
            "trioraft serve: argument --refusal-status: expected a number from 3 to 125, "
            "got '2' (see trioraft serve --help)",
        ),
        (
            ["init", "--out", "x", "--nodes", "3", "--token", ""],
            "trioraft init: --token must not be empty",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *args)
    assert (status, out, err) == (2, "", message + "\n")
    assert not (tmp_path / "x").exists()


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "serve-all")
    assert (status, out) == (2, "")
    assert err.startswith("trioraft: argument COMMAND: invalid choice: 'serve-all' (choose from ")
    assert err.endswith(" (see trioraft --help)\n")
    assert err.count("\n") == 1


def test_unwritable_folder_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    status, out, err = run(capsys, "init", "--out", str(tmp_path / "file" / "sub"), "--nodes", "1")
    assert status == 1
    assert out == ""
    assert err.startswith(f"trioraft init: cannot write {tmp_path}/file/sub: ")
    assert err.count("\n") == 1


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "init", "--help")
    assert status == 0
    assert "--hosts H1,H2,..." in out


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trioraft", "init", "--out", str(tmp_path), "--nodes", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert load_config(tmp_path / "n1.toml").node_id == "n1"
    again = subprocess.run(
        [sys.executable, "-m", "trioraft", "init", "--out", str(tmp_path), "--nodes", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1


def test_example_cluster_configs_load() -> None:
    folder = Path(__file__).parents[2] / "config"
    configs = [load_config(folder / f"n{k}.toml") for k in (1, 2, 3)]
    assert [str(c.client_addr) for c in configs] == [f"127.0.0.1:700{k}" for k in (1, 2, 3)]
    assert [str(c.peer_addr) for c in configs] == [f"127.0.0.1:800{k}" for k in (1, 2, 3)]
    assert [c.data_dir for c in configs] == [folder / "data" / f"n{k}" for k in (1, 2, 3)]


def test_a_config_error_is_one_line_per_problem_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any command that loads a config reports its problems this way; a stand-in here."""

    def load(args: argparse.Namespace) -> int:
        load_config(args.config)
        return 0

    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, required=True)

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, cli.Command("load", "", arguments, load)))
    path = tmp_path / "n1.toml"
    path.write_text("node_id = 1\n[raft]\nheartbeet_ms = 5\n")
    status, out, err = run(capsys, "load", "--config", str(path))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"trioraft load: {path}: node_id: expected a string, got 1",
        f"trioraft load: {path}: data_dir: required key is missing",
        f"trioraft load: {path}: client_addr: required key is missing",
        f"trioraft load: {path}: peer_addr: required key is missing",
        f"trioraft load: {path}: cluster_token: required key is missing",
        f"trioraft load: {path}: members: required key is missing",
        f"trioraft load: {path}: raft.heartbeet_ms: unknown key (did you mean heartbeat_ms?)",
    ]


def test_join_writes_one_joining_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys,
        *("init", "--out", str(tmp_path), "--join", "10.0.0.1:7001", "--join", "10.0.0.2:8001"),
        *("--id", "n4", "--host", "10.0.0.4", "--client-port", "7004", "--peer-port", "8004"),
        *("--data-root", "/var/lib/trioraft", "--token", "tok"),
    )
    assert (status, err, out) == (0, "", f"wrote {tmp_path}/n4.toml\n")
    cfg = load_config(tmp_path / "n4.toml")
    assert cfg.join == (HostPort("10.0.0.1", 7001), HostPort("10.0.0.2", 8001))
    assert (cfg.node_id, cfg.cluster_token) == ("n4", "tok")
    assert cfg.data_dir == Path("/var/lib/trioraft/n4")
    assert (cfg.client_addr, cfg.peer_addr) == (
        HostPort("10.0.0.4", 7004),
        HostPort("10.0.0.4", 8004),
    )
    [me] = cfg.members
    assert (me.id, me.peer_addr, me.client_addr) == ("n4", cfg.peer_addr, cfg.client_addr)
    assert stat.S_IMODE((tmp_path / "n4.toml").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--join", "127.0.0.1:7001", "--token", "t"], "--join needs --id"),
        (["--join", "127.0.0.1:7001", "--id", "n4"], "--join needs --id"),
        (["--join", "127.0.0.1", "--id", "n4", "--token", "t"], 'expected "host:port"'),
        (["--join", "127.0.0.1:7001", "--nodes", "3"], "not allowed with argument"),
        (["--nodes", "3", "--id", "n4"], "--id goes with --join"),
        ([], "one of --nodes, --hosts or --join is required"),
        (
            ["--join", "127.0.0.1:7001", "--id", "n4", "--token", "t", "--client-port", "7001"],
            "join[0]: 127.0.0.1:7001 is this node's own address",
        ),
        (["--join", "127.0.0.1:7001", "--id", "n 4", "--token", "t"], "node_id: expected"),
    ],
)
def test_bad_join_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, "init", "--out", str(tmp_path), *argv)
    assert (status, out) == (2, "")
    assert err.startswith("trioraft init: ") and message in err
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())
