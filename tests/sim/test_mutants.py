"""The simulation's power, proven: every named mutant of the core (tests/sim/mutants.py) must
fail a seeded random run, not only a named scenario; and every mutant of the runtime must
fail the runtime test under random faults.

Each test runs the default seeds from 0 and stops at the first that catches its mutant, so
it costs what that takes (docs/testing.md has the table); `nox -s mutants` measures every
mutant of the core over 500 seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import node_cluster
from harness.node_cluster import hold_clock_during_threads
from harness.random_faults import under_random_faults
from trio.testing import MockClock

import trioraft.core.raft
from sim import mutants
from sim.mutants import (
    MUTANTS,
    RUNTIME_MUTANTS,
    Mutant,
    RuntimeMutant,
    SeamLost,
    first_catch,
    mutated_class,
    seams_of,
)
from trioraft.core.leader import Leader
from trioraft.core.raft import Raft
from trioraft.runtime.node import Node

#: the most seeds a mutant may take; each is caught well within it today (the table in
#: docs/testing.md), so a mutant that slips past is a weaker simulation, not bad luck
SEEDS = 60
#: the most seeds of the runtime test under random faults a runtime mutant may take
RUNTIME_SEEDS = 3


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_the_simulation_catches(mutant: Mutant) -> None:
    catch = first_catch(mutant.build(), range(SEEDS))
    assert catch is not None, f"no seed of 0..{SEEDS - 1} caught {mutant.name}: {mutant.bug}"
    assert "--first-seed" in catch.message, "a failure says how to replay it"


@pytest.mark.parametrize("mutant", RUNTIME_MUTANTS, ids=lambda m: m.name)
async def test_the_runtime_test_under_random_faults_catches(
    mutant: RuntimeMutant,
    autojump_clock: MockClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hold_clock_during_threads(autojump_clock, monkeypatch)
    built: list[Node] = []

    class Counted(mutant.node):  # type: ignore[name-defined,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(node_cluster, "Node", Counted)
    caught: list[int] = []
    for seed in range(1, RUNTIME_SEEDS + 1):
        run_dir = tmp_path / f"seed{seed}"
        run_dir.mkdir()
        try:
            await under_random_faults(run_dir, seed, monkeypatch)
        except* AssertionError:
            caught.append(seed)
        if caught:
            break
    assert built, "the clusters ran without the mutant: node_cluster no longer builds Node"
    assert caught, f"no seed of 1..{RUNTIME_SEEDS} caught {mutant.name}: {mutant.bug}"


def test_every_override_of_a_mutant_breaks_an_existing_method() -> None:
    subclasses = [m.node for m in RUNTIME_MUTANTS] + [
        value
        for value in vars(mutants).values()
        if isinstance(value, type)
        and issubclass(value, Raft | Leader)
        and value not in (Raft, Leader)
    ]
    assert len(subclasses) >= 6
    for cls in subclasses:
        assert seams_of(cls), cls

    class Renamed(Raft):
        def _no_such_seam(self) -> None: ...

    with pytest.raises(SeamLost, match="_no_such_seam"):
        seams_of(Renamed)


def test_there_are_enough_distinct_mutants() -> None:
    assert len({m.name for m in MUTANTS}) == len(MUTANTS) >= 12


def test_a_mutant_whose_fragment_moved_is_refused() -> None:
    with pytest.raises(SeamLost, match="occurs 0 times"):
        mutated_class(trioraft.core.raft, "Raft", "no such code", "")
    with pytest.raises(SeamLost, match=r"occurs [2-9]\d* times"):
        mutated_class(trioraft.core.raft, "Raft", "self.term", "")


def test_a_copied_class_uses_the_real_module_types() -> None:
    """The simulation compares roles with `is`: a mutated core must use the real Role."""
    cls = mutated_class(trioraft.core.raft, "Raft", "# --- queries", "# --- queries (copy)")
    assert cls is not trioraft.core.raft.Raft
    assert cls.__init__.__globals__["Role"] is trioraft.core.raft.Role
