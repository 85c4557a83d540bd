"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.node_cluster import hold_clock_during_threads
from harness.process_cluster import ProcessCluster, running_cluster
from hypothesis import settings
from trio.testing import MockClock

# Hypothesis's per-example deadline (200 ms) measures how loaded the machine is, not the
# code under test: on two shared cores a parser example can wait that long for the CPU.
# Every property here is bounded by its own example count instead.
settings.register_profile("trioraft", deadline=None)
settings.load_profile("trioraft")


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[ProcessCluster]:
    """One running 3-node cluster for every test that only needs a healthy cluster: such
    tests use keys of their own (a prefix per test), never flush, kill or pause it."""
    with running_cluster(3) as cluster:
        yield cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("simulation", "the seeded cluster simulation (test_simulation.py)")
    group.addoption("--seeds", type=int, default=500, help="how many seeds to simulate")
    group.addoption("--first-seed", type=int, default=0, help="the first seed to simulate")
    group.addoption(
        "--clock-seeds",
        type=int,
        default=4,
        help="how many seeds to simulate with drifting and jumping clocks (expiry)",
    )


@pytest.fixture
def clock(autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> MockClock:
    """`autojump_clock`, held still while a worker thread runs (a WAL write, a snapshot's
    serialization): for the tests of in-process nodes on virtual time."""
    hold_clock_during_threads(autojump_clock, monkeypatch)
    return autojump_clock
