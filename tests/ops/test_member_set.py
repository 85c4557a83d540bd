"""The member set a node's data dir records against the one its config file lists: until
membership can change at run time, a node whose snapshot records other members than its
config file refuses to start, rather than elect and commit with a different quorum than
the nodes that follow the file."""

from __future__ import annotations

from pathlib import Path

import attrs
from harness.process_cluster import run_cli

from trioraft.core.messages import Members, SnapshotMeta
from trioraft.kvstore.replicated import ReplicatedState
from trioraft.ops.config import cluster_configs, render_config, same_host_members
from trioraft.storage import DataDir, SnapshotStore

TOKEN = "a-token-for-the-member-set-tests"
#: the status `trioraft serve --refusal-status` is given for a refusal a restart cannot fix
REFUSED = 3


def prepare(tmp_path: Path, recorded: frozenset[str], listed: int) -> Path:
    """Node n1's data dir holding a snapshot that records `recorded` as the voters, and
    its config file listing members n1..n<listed>; returns the config file."""
    configs = cluster_configs(same_host_members(listed), token=TOKEN, data_root=tmp_path)
    config = attrs.evolve(configs[0], fsync=False)
    DataDir.open(config.data_dir, node_id="n1", cluster_token=TOKEN).close()
    with ReplicatedState().begin_capture() as capture:
        while not capture.done:
            capture.step()
    data = ReplicatedState.serialize(capture)
    SnapshotStore(config.data_dir / "snap", fsync=False).write(
        SnapshotMeta(5, 1, Members(voters=recorded)), data
    )
    path = tmp_path / "n1.toml"
    path.write_text(render_config(config))
    return path


def test_a_node_whose_snapshot_records_other_members_refuses_to_start(tmp_path: Path) -> None:
    config_file = prepare(tmp_path, frozenset({"n1", "n2", "n3"}), listed=5)

    result = run_cli("serve", "--config", config_file, "--refusal-status", str(REFUSED), timeout=20)

    assert result.returncode == REFUSED, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "members" in line]
    assert f"{config_file}: members lists n1, n2, n3, n4, n5" in line
    assert "records the members n1, n2, n3" in line
    assert "set members back to n1, n2, n3" in line
    assert "client port" not in result.stderr, "it must refuse before it serves"
