"""How `trioraft cluster` judges the nodes it stops on Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from trioraft.ops.config import load_config
from trioraft.ops.quickstart import _LocalNode, _stop

#: a child that ends by SIGTERM's default action, as a node does before Python has
#: installed its handler
NO_HANDLER = "import time; time.sleep(60)"
#: a child that handles SIGTERM and exits with a status of its own
EXITS_WITH_3 = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)"
)


@contextmanager
def node_running(tmp_path: Path, code: str) -> Iterator[tuple[_LocalNode, IO[bytes]]]:
    """A `_LocalNode` whose process runs `code`, and that process's stdout."""
    init = [sys.executable, "-m", "trioraft", "init", "--out", str(tmp_path), "--nodes", "1"]
    assert subprocess.run(init, capture_output=True).returncode == 0
    config_path = tmp_path / "n1.toml"
    node = _LocalNode(config_path, load_config(config_path))
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as process:
        node.process = process
        assert process.stdout is not None
        try:
            yield node, process.stdout
        finally:
            if process.poll() is None:
                process.kill()


def test_a_node_stopped_before_it_handles_sigterm_counts_as_stopped_cleanly(
    tmp_path: Path,
) -> None:
    with node_running(tmp_path, NO_HANDLER) as (node, _):
        assert _stop([node]) == 0


def test_a_node_that_exits_with_an_error_on_sigterm_makes_the_status_1(tmp_path: Path) -> None:
    with node_running(tmp_path, EXITS_WITH_3) as (node, stdout):
        assert stdout.readline() == b"ready\n"  # its handler is in place
        assert _stop([node]) == 1
