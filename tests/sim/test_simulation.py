"""The seeded cluster simulation (simulation.py): many seeds, and a few named scenarios.

`test_seed` runs one whole seeded run per seed: `--seeds N` (default 500) seeds from
`--first-seed` (default 0); a failure names the seed and the command that replays it.
`test_expiry_with_clocks_that_drift_and_jump` does the same with the expiry profiles,
`--clock-seeds N` (default 4) seeds. The
scenarios drive a quiet cluster by hand through one situation each and assert what Raft
promises about it; they also end with `finish()`, so liveness and linearizability are
checked there too. Two of them pin down replication stalls the simulation found in the core
(lost AppendEntries answers, a lost snapshot answer). The last tests check the simulation
itself: a seed replays exactly, in this process and in others (test_mutants.py proves that
the seeds catch broken cores).
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys

import attrs
import pytest

from sim.mutants import CHANGE_BEFORE_OWN_COMMIT
from sim.plans import EXPIRY_PROFILES, QUIET, TICK, Plan
from sim.simulation import CoreFactory, Simulation, SimulationFailure
from trioraft.core.config import RaftConfig
from trioraft.core.membership import ChangeKind, MemberChange
from trioraft.core.messages import NodeId
from trioraft.core.raft import Raft

#: the longest election timeout, in steps
ELECTION = 2 * RaftConfig().election_ticks * TICK


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        first = metafunc.config.getoption("first_seed")
        count = metafunc.config.getoption("seeds")
        metafunc.parametrize("seed", range(first, first + count), ids=str)
    if "clock_seed" in metafunc.fixturenames:
        first = metafunc.config.getoption("first_seed")
        count = metafunc.config.getoption("clock_seeds")
        metafunc.parametrize("clock_seed", range(first, first + count), ids=str)


def test_seed(seed: int) -> None:
    Simulation(Plan.from_seed(seed)).run()


# --- named scenarios -----------------------------------------------------------------------


def scenario(
    size: int,
    *,
    snapshot_every: int = 1000,
    config: RaftConfig | None = None,
    reads: float = 0.3,
    core_factory: CoreFactory = Raft,
) -> Simulation:
    """A quiet cluster with two clients, run until its first leader has committed."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "tests/sim/test_simulation.py").split()[0]
    plan = Plan(
        seed=1,
        size=size,
        profile=attrs.evolve(QUIET, snapshot_every=snapshot_every),
        fault_steps=0,
        clients=2,
        keys=2,
        config=config or RaftConfig(),
        reads=reads,
        replay=f"python -m pytest '{test}'",
    )
    sim = Simulation(plan, core_factory=core_factory)
    sim.run_until(lambda: leader_committed(sim), 10 * ELECTION, "a first leader")
    return sim


def leader_committed(sim: Simulation) -> bool:
    leader = sim.leader()
    return leader is not None and core_of(sim, leader).committed_in_term()


def core_of(sim: Simulation, node: NodeId) -> Raft:
    core = sim.by_id[node].core
    assert core is not None, f"{node} is down"
    return core


def others(sim: Simulation, *exclude: NodeId) -> list[NodeId]:
    return [n.id for n in sim.nodes if n.id not in exclude]


@pytest.mark.parametrize("size", [3, 5])
def test_leader_in_a_minority_steps_down(size: int) -> None:
    sim = scenario(size)
    old = sim.leader()
    assert old is not None
    old_term = core_of(sim, old).term
    minority = [old, *others(sim, old)[: size // 2 - 1]]
    sim.isolate(minority)
    sim.run_until(lambda: not core_of(sim, old).is_leader, 2 * ELECTION, "the old leader quits")

    def majority_leads() -> bool:
        leader = sim.leader()
        return leader not in (None, *minority) and leader_committed(sim)

    sim.run_until(majority_leads, 5 * ELECTION, "a leader on the majority side")
    new = sim.leader()
    assert new is not None and core_of(sim, new).term > old_term
    ok = sim.report.ops_ok
    sim.run_steps(2 * ELECTION)
    assert sim.report.ops_ok > ok, "the majority side makes progress"
    sim.finish()


def test_deposed_leader_serves_no_stale_reads() -> None:
    """A leader cut off alone still believes it leads until CheckQuorum deposes it, while
    the others elect a leader and commit: reads sent to it meanwhile must not be served
    (read_index waits for a heartbeat round a majority answers). The followers time out
    early, and the leader is cut early in a CheckQuorum period, after it heard from the
    others in it, so that it steps down only at the end of the next period: the two
    leaderships overlap (the test tries a few times until they do)."""
    config = RaftConfig(election_ticks_max=RaftConfig().election_ticks + 2)
    sim = scenario(5, config=config, reads=1.0)
    overlap = 0
    for _ in range(5):
        sim.run_until(lambda: leader_committed(sim), 10 * ELECTION, "a leader")
        old = sim.leader()
        assert old is not None
        old_core = core_of(sim, old)
        in_period = functools.partial(lambda core: core.election_elapsed == 2, old_core)
        sim.run_until(in_period, ELECTION, "a new CheckQuorum period")
        sim.isolate([old])
        for _ in range(3 * ELECTION):
            for client in sim.clients:
                if client.op is None:
                    client.target = old
            sim.step()
            if old_core.is_leader and sim.leader() != old and leader_committed(sim):
                overlap += 1
        sim.heal_partition()
        if overlap > TICK:
            break
    assert overlap > TICK, "the two leaderships never overlapped"
    sim.finish()


@pytest.mark.parametrize("size", [3, 5])
def test_rejoining_node_does_not_disrupt(size: int) -> None:
    """PreVote: a node cut off for many election timeouts comes back without raising the
    term, so the leader stays in place."""
    sim = scenario(size)
    leader = sim.leader()
    assert leader is not None
    term = core_of(sim, leader).term
    loner = others(sim, leader)[0]
    sim.isolate([loner])
    sim.run_steps(10 * ELECTION)
    assert core_of(sim, loner).term == term, "an isolated node must not bump its term"
    sim.heal_partition()
    sim.run_until(
        lambda: sim.by_id[loner].applied >= core_of(sim, leader).commit - 5,
        2 * ELECTION,
        "the rejoined node catching up",
    )
    sim.run_steps(2 * ELECTION)
    assert sim.leader() == leader and core_of(sim, leader).term == term
    assert sim.report.max_term == term
    sim.finish()


@pytest.mark.parametrize("size", [3, 5])
def test_partial_connectivity_still_makes_progress(size: int) -> None:
    """A follower that sees only one other follower (not the leader) cannot reach the
    leader, and must not take the cluster down trying: with PreVote and CheckQuorum the
    follower it can see, which still hears the leader, refuses to vote."""
    sim = scenario(size)
    leader = sim.leader()
    assert leader is not None
    term = core_of(sim, leader).term
    loner, bridge = others(sim, leader)[:2]
    cut = [n for n in others(sim, loner) if n != bridge]
    sim.partition({(loner, n) for n in cut} | {(n, loner) for n in cut})
    ok = sim.report.ops_ok
    sim.run_steps(10 * ELECTION)
    assert sim.report.ops_ok - ok > 50, "clients keep completing operations"
    assert sim.leader() == leader and core_of(sim, leader).term == term
    sim.finish()


def leave_a_follower_behind(sim: Simulation, margin: int) -> tuple[NodeId, NodeId]:
    """Crash a follower and run until the leader's snapshot lies `margin` entries past
    the follower's log; returns (leader, follower), the follower still down."""
    leader = sim.leader()
    assert leader is not None
    laggard = others(sim, leader)[0]
    sim.crash(laggard)
    behind = sim.by_id[laggard].disk.last_index
    sim.run_until(
        lambda: core_of(sim, leader).log.snapshot_index > behind + margin,
        100 * ELECTION,
        "the leader compacting past the laggard",
    )
    return leader, laggard


def test_follower_far_behind_catches_up_by_snapshot() -> None:
    sim = scenario(3, snapshot_every=10)
    leader, laggard = leave_a_follower_behind(sim, 50)
    installed = sim.report.snapshots_installed
    sim.restart(laggard)
    sim.run_until(
        lambda: sim.by_id[laggard].applied >= core_of(sim, leader).log.snapshot_index,
        5 * ELECTION,
        "the laggard catching up",
    )
    assert sim.report.snapshots_installed > installed, "it caught up through a snapshot"
    sim.finish()


# --- replication recovers from lost answers -----------------------------------------------


def test_lost_append_answers_do_not_stall_replication() -> None:
    """A follower whose answers are all lost while it receives entries: once it can answer
    again, replication to it resumes (pipelining with a small window)."""
    sim = scenario(3, config=RaftConfig(max_inflight=2))
    leader = sim.leader()
    assert leader is not None
    follower = others(sim, leader)[0]
    sim.run_steps(ELECTION)  # the leader pipelines to it by now
    sim.partition({(follower, leader)})
    sim.run_steps(ELECTION)
    sim.heal_partition()
    sim.finish()


def test_lost_snapshot_answer_does_not_stall_replication() -> None:
    """A follower installs the leader's snapshot but its answer is lost: replication to
    it resumes once it can answer again."""
    sim = scenario(3, snapshot_every=10)
    leader, laggard = leave_a_follower_behind(sim, 20)
    installed = sim.report.snapshots_installed
    sim.restart(laggard)
    sim.run_until(
        lambda: sim.report.snapshots_installed > installed, 5 * ELECTION, "a snapshot sent"
    )
    sim.partition({(laggard, leader)})  # its answer is still on the way to its disk
    sim.run_steps(ELECTION)
    sim.heal_partition()
    sim.finish()


# --- the simulation itself -----------------------------------------------------------------


def fingerprint(seed: int) -> str:
    sim = Simulation(Plan.from_seed(seed))
    report = sim.run()
    text = repr((report, sim.history.operations(), list(sim.trace)))
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_seed_replays_exactly() -> None:
    assert fingerprint(3) == fingerprint(3)


def test_a_seed_replays_exactly_in_another_process() -> None:
    """Node ids are strings, whose set order changes with PYTHONHASHSEED; a seed must not."""
    code = "from sim.test_simulation import fingerprint; print(fingerprint(5))"
    digests = set()
    for hash_seed in ("1", "2"):
        # the same modules as here: this process's import path
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(run.stdout.strip())
    assert digests == {fingerprint(5)}


# --- expiry with wall clocks that drift and jump ------------------------------------------


def test_expiry_with_clocks_that_drift_and_jump(clock_seed: int) -> None:
    """Keys with deadlines while nodes' clocks drift apart and jump by seconds (backwards
    too) and leaders change: replicas agree on every state, stamps never go back along the
    log, no read returns a key past its deadline on the clock of the leader that served it,
    and the history, where each value with a deadline may vanish at one instant, is
    linearizable."""
    plan = attrs.evolve(
        Plan.from_seed(clock_seed, EXPIRY_PROFILES),
        replay="python -m pytest tests/sim/test_simulation.py -k clocks_that_drift --seeds 0 "
        f"--clock-seeds 1 --first-seed {clock_seed}",
    )
    report = Simulation(plan).run()
    assert report.ops_ok > 0 and report.expired > 0 and report.clock_jumps > 0


def test_a_read_past_a_deadline_waits_for_the_deletion_across_a_leader_change() -> None:
    """The leader's clock runs seconds ahead of the next leader's: a read it serves that
    meets a key past its deadline (by its clock only) must not answer "gone" before the
    deletion commits, or the next leader, whose clock says the key lives, would serve it
    again. Leadership goes back and forth between the two while clients write values with
    deadlines and read them."""
    plan = attrs.evolve(
        Plan.from_seed(0, EXPIRY_PROFILES),
        size=3,
        profile=attrs.evolve(QUIET, ttl=1.0, snapshot_every=40),
        clients=3,
        keys=2,
        reads=0.7,
        replay="python -m pytest tests/sim/test_simulation.py -k across_a_leader_change",
    )
    sim = Simulation(plan)
    sim.run_until(lambda: leader_committed(sim), 10 * ELECTION, "a first leader")
    for _ in range(12):
        ahead = sim.leader()
        assert ahead is not None
        behind = others(sim, ahead)[0]
        sim.by_id[ahead].clock_offset_ms = sim.by_id[behind].clock_offset_ms + 2000
        sim.run_steps(40 * TICK)
        sim.transfer(ahead, behind)
        sim.run_until(lambda: leader_committed(sim), 10 * ELECTION, "a leader")
        sim.run_steps(10 * TICK)
    assert sim.report.expired_reads > 0
    sim.finish()


@pytest.mark.parametrize("mutated", [False, True], ids=["real", "mutant"])
def test_change_before_own_commit_is_the_single_server_trap(mutated: bool) -> None:
    """Four voters. The leader L1, cut off, appends the removal of x and keeps it. The
    others elect L2, which is asked at once to remove y: were it to take that before
    committing an entry of its term, L2 and x would commit it (a majority of the
    configuration without y) while L1 and y could still elect L1 (a majority of the one
    without x): the two majorities do not overlap. The real core refuses the change."""
    core = CHANGE_BEFORE_OWN_COMMIT.build() if mutated else Raft
    sim = scenario(4, core_factory=core)
    first = sim.leader()
    assert first is not None
    x = others(sim, first)[0]
    sim.isolate([first])
    assert sim.change_members(first, MemberChange(ChangeKind.REMOVE, x))

    def new_leader() -> NodeId | None:
        return next((n for n in others(sim, first) if core_of(sim, n).is_leader), None)

    sim.run_until(lambda: new_leader() is not None, 10 * ELECTION, "a leader of the rest")
    second = new_leader()
    assert second is not None and not core_of(sim, second).committed_in_term()
    y = others(sim, first, second, x)[0]
    sim.partition(
        {(a, b) for a in (first, y) for b in others(sim, a)}
        | {(b, a) for a in (first, y) for b in others(sim, a)}
    )
    taken = sim.change_members(second, MemberChange(ChangeKind.REMOVE, y))
    if not mutated:
        assert not taken
        sim.finish()
        return
    assert taken
    with pytest.raises(SimulationFailure, match="commit survival"):
        sim.run_steps(5 * ELECTION)
