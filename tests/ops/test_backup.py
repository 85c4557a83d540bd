"""`fetch_backup` against an in-memory node's client listener on a real socket: the
copy holds the node's keys, and a node with a password wants it (real time: the client
is blocking code in a thread)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from harness.node_cluster import open_cluster, set_command

from trioraft.ops.backup import BackupError, fetch_backup, read_backup
from trioraft.redis import replies
from trioraft.redis.limits import ClientLimits
from trioraft.redis.server import ClientServer


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ("sekrit", None),
        (None, "the node refused: NOAUTH Authentication required."),
        ("wrong", "AUTH refused: WRONGPASS"),
    ],
)
async def test_a_backup_of_a_node_with_a_password(
    tmp_path: Path, given: str | None, refusal: str | None
) -> None:
    async with open_cluster(tmp_path, size=1) as cluster:
        node = await cluster.wait_for_leader()
        writes = [set_command(b"k%d" % k, b"v%d" % k) for k in range(50)]
        assert await node.write(writes) == [replies.OK] * 50
        server = ClientServer(node, node.state, ClientLimits(), password="sekrit")
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve, "127.0.0.1", 0)
            out = tmp_path / "node.backup"
            seen: list[tuple[int, int]] = []

            def fetch() -> object:
                return fetch_backup(
                    host, port, out, timeout=10, password=given, progress=lambda *p: seen.append(p)
                )

            if refusal is None:
                await trio.to_thread.run_sync(fetch)
            else:
                with pytest.raises(BackupError, match=refusal):
                    await trio.to_thread.run_sync(fetch)
            nursery.cancel_scope.cancel()
    if refusal is not None:
        assert not out.exists() and not out.with_name(out.name + ".tmp").exists()
        return
    meta, state = read_backup(out)
    assert meta.index >= 50
    assert dict(state.store.items()) == {b"k%d" % k: b"v%d" % k for k in range(50)}
    assert seen and seen[-1][0] == seen[-1][1]  # the last progress call: all received
