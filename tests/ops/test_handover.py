"""SIGTERM to a real leader while clients write through every node: the leader hands over
and exits 0, no acknowledged write is lost, no write answered "definitely not applied"
took effect, and the node it named leads the survivors at once. Then the systemd side of
a stop: READY=1 before STOPPING=1, each once."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from harness.polling import wait_until
from harness.process_cluster import ELECTION_SECONDS, running_cluster
from harness.process_node import EXIT_SECONDS, START_SECONDS, Node
from harness.resp_client import Error, RespClient
from harness.systemd_unit import NotifySocket, start_as_unit

pytestmark = pytest.mark.processes

#: replies that say a write was definitely not applied (docs/protocol.md)
DEFINITE_FAILURES = ("CLUSTERDOWN", "TRYAGAIN")


class OutcomeWriter:
    """A thread that SETs fresh keys `<prefix><n>` through one node until stopped, and
    records each write's outcome: acknowledged, definitely not applied, or unknown (a
    -TIMEOUT, or the connection lost mid-request, after which it reconnects)."""

    def __init__(self, node: Node, prefix: str) -> None:
        self.node = node
        self.prefix = prefix
        self.acked: list[str] = []
        self.refused: list[str] = []
        self.unknown: list[str] = []
        #: any reply the protocol does not allow for a SET
        self.wrong: list[tuple[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(EXIT_SECONDS)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set() and self.node.running:
            try:
                with RespClient(self.node.client_port, timeout=10.0) as client:
                    while not self._stop.is_set():
                        key = f"{self.prefix}{number}"
                        number += 1
                        try:
                            reply = client.call("SET", key, "x")
                        except (OSError, ValueError):
                            self.unknown.append(key)
                            raise
                        self._record(key, reply)
            except (OSError, ValueError):
                time.sleep(0.05)  # the node is stopping or gone: try again, or end

    def _record(self, key: str, reply: object) -> None:
        if reply == "OK":
            self.acked.append(key)
        elif isinstance(reply, Error) and reply.text.startswith(DEFINITE_FAILURES):
            self.refused.append(key)
        elif isinstance(reply, Error) and reply.text.startswith("TIMEOUT"):
            self.unknown.append(key)
        else:
            self.wrong.append((key, reply))


def test_sigterm_to_the_leader_hands_over_without_losing_or_misreporting_a_write() -> None:
    with running_cluster(3) as cluster:
        old = cluster.wait_for_leader()
        old_term = int(old.info()["term"])
        writers = [OutcomeWriter(node, f"ho:{node.id}:") for node in cluster.nodes]
        for writer in writers:
            writer.start()
        try:
            wait_until(lambda: all(len(w.acked) >= 20 for w in writers), 30.0, "writes through all")
            old.signal(signal.SIGTERM)
            survivors = [node for node in cluster.nodes if node is not old]
            wait_until(lambda: old.returncode is not None, EXIT_SECONDS, "the leader's exit")
            new = cluster.wait_for_leader()
            survivor_writers = [w for w in writers if w.node is not old]
            counts = [len(w.acked) for w in survivor_writers]
            wait_until(
                lambda: all(
                    len(w.acked) > c for w, c in zip(survivor_writers, counts, strict=True)
                ),
                ELECTION_SECONDS,
                "writes acknowledged again through every survivor",
            )
        finally:
            for writer in writers:
                writer.stop()
        assert old.returncode == 0
        assert new in survivors and int(new.info()["term"]) == old_term + 1
        assert f"handing over leadership to={new.id}" in old.log_text(), "a transfer"
        assert [w.wrong for w in writers] == [[], [], []]
        keys = [key for w in writers for key in w.acked + w.refused]
        with new.client() as client:
            values = client.call("MGET", *keys)
        assert isinstance(values, list)
        found = dict(zip(keys, values, strict=True))
        lost = [key for w in writers for key in w.acked if found[key] != b"x"]
        applied_anyway = [key for w in writers for key in w.refused if found[key] is not None]
        assert lost == [], "acknowledged writes lost"
        assert applied_anyway == [], "writes answered 'not applied' took effect"


def test_a_stopped_unit_says_ready_then_stopping_once_each(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("notify")
    notify = NotifySocket(folder)
    try:
        with running_cluster(1) as single:
            node = single.nodes[0]
            assert node.terminate() == 0
            start_as_unit(node, notify)
            wait_until(lambda: "READY=1" in notify.drain(), START_SECONDS, "READY=1")
            assert node.terminate() == 0
            states = [s for s in notify.drain() if s in ("READY=1", "STOPPING=1")]
            assert states == ["READY=1", "STOPPING=1"]
    finally:
        notify.close()
