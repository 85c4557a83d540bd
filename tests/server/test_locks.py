"""The lock example of docs/locks.md, run as written against a running cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness.process_cluster import ProcessCluster

pytestmark = pytest.mark.processes

LOCKS_DOC = Path(__file__).resolve().parents[2] / "docs" / "locks.md"


def example_code() -> str:
    [code] = re.findall(r"```python\n(.*?)```", LOCKS_DOC.read_text(), re.DOTALL)
    return code


def test_the_lock_example_runs_on_a_follower(shared_cluster: ProcessCluster) -> None:
    """Taken, refused to a second client, expired, taken again with a higher fencing
    token, the stale holder refused by the resource, released."""
    port = shared_cluster.followers()[0].client_port
    done = subprocess.run(
        [sys.executable, "-c", example_code()],
        env={**os.environ, "TRIORAFT_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [re.sub(r"\d+", "N", line) for line in lines] == [
        "A holds the lock, fence N",
        "B cannot take it while A holds it",
        "B holds the lock, fence N",
        "the resource refused A's late write",
        'B released the lock; writes: ["A\'s first write", "B\'s write"]',
    ]
