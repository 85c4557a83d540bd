"""The simulation's power, proven: every named mutant of the core (tests/mutants.py) must
fail a seeded random run, not only a named scenario.

Each test runs the default seeds from 0 and stops at the first that catches its mutant, so
it costs what that takes (docs/testing.md has the table); `nox -s mutants` measures every
mutant over 500 seeds.
"""

from __future__ import annotations

import pytest
from mutants import MUTANTS, Mutant, SeamLost, first_catch, mutated_class

import trioraft.core.raft

#: the most seeds a mutant may take; each is caught well within it today (the table in
#: docs/testing.md), so a mutant that slips past is a weaker simulation, not bad luck
SEEDS = 60


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_the_simulation_catches(mutant: Mutant) -> None:
    catch = first_catch(mutant.build(), range(SEEDS))
    assert catch is not None, f"no seed of 0..{SEEDS - 1} caught {mutant.name}: {mutant.bug}"
    assert "--first-seed" in catch.message, "a failure says how to replay it"


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
