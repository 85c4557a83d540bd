"""Fixtures of the client-facing tests: a follower of the shared cluster, and a connection
to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.process_cluster import ProcessCluster
from harness.process_node import Node
from harness.resp_client import RespClient


@pytest.fixture
def follower(shared_cluster: ProcessCluster) -> Node:
    return shared_cluster.followers()[0]


@pytest.fixture
def client(follower: Node) -> Iterator[RespClient]:
    """A connection to a follower of the shared cluster."""
    with follower.client() as connection:
        yield connection
