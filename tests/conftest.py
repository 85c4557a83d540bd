"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from procs import Cluster, running_cluster


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[Cluster]:
    """One running 3-node cluster for every test that only needs a healthy cluster: such
    tests use keys of their own (a prefix per test), never flush, kill or pause it."""
    with running_cluster(3) as cluster:
        yield cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simulation", "the seeded cluster simulation (test_simulation.py)")
    group.addoption("--seeds", type=int, default=500, help="how many seeds to simulate")
    group.addoption("--first-seed", type=int, default=0, help="the first seed to simulate")
