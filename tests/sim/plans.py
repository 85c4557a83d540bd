"""The plan of a simulated run: how hostile it is (`Profile`, the seeded `PROFILES` and
`EXPIRY_PROFILES`) and its shape (`Plan`: cluster size, fault steps, clients, keys, the cores'
timing), all derived from the run's seed."""

from __future__ import annotations

import random

import attrs

from trioraft.core.config import RaftConfig

#: steps between two ticks of a node running at its nominal rate
TICK = 4
#: a client gives up on an operation (indeterminate) after this many steps
OP_TIMEOUT = 40 * TICK


@attrs.frozen
class Profile:
    """How hostile a run is. Rates are mean steps between events; 0 means never."""

    name: str
    #: probability that a message is lost in transit
    drop: float = 0.0
    #: probability that a message is delivered twice
    duplicate: float = 0.0
    #: probability that a message takes a detour of up to two election timeouts
    detour: float = 0.0
    #: probability that an InstallSnapshot arrives once more, up to two election timeouts
    #: later, when its receiver may have moved past it
    stale_snapshots: float = 0.0
    #: ordinary latency is 1 .. latency steps, so messages overtake each other
    latency: int = 3
    #: a durable write takes 1 .. fsync steps
    fsync: int = 2
    partition_every: int = 0
    #: a partition lasts partition_steps[0] .. partition_steps[1] steps
    partition_steps: tuple[int, int] = (10 * TICK, 150 * TICK)
    #: the kinds of partition drawn from (see `_random_partition`)
    partition_kinds: tuple[str, ...] = ("split", "leader", "one-way", "bridge", "flaky")
    crash_every: int = 0
    #: the most nodes down at once
    max_down: int = 1
    #: steps a crashed node stays down: 1 .. downtime
    downtime: int = 100 * TICK
    #: probability that a newly elected leader crashes within a few steps, before its
    #: no-op is safely replicated (how Figure 8 of the Raft paper begins)
    kill_new_leader: float = 0.0
    #: a doomed new leader crashes kill_after .. kill_after + kill_within steps after its
    #: election
    kill_after: int = 0
    kill_within: int = 3 * TICK
    #: a crash is a power loss of the whole host: the messages it sent that are still on
    #: their way are lost with it (so a leader's first AppendEntries can die with it, which
    #: Figure 8 needs)
    crash_loses_sends: bool = False
    transfer_every: int = 0
    #: mean steps between membership changes asked of the leader (0: never)
    member_every: int = 0
    #: probability that a newly elected leader is asked for a membership change at once
    member_on_election: float = 0.0
    #: probability that a leader is cut off from everyone right after it takes a
    #: membership change, for partition_steps: the others elect a new leader without it
    cut_changing_leader: float = 0.0
    #: a node snapshots once it has applied this many entries past its last snapshot
    snapshot_every: int = 40
    #: most entries in one AppendEntries, for every run of this profile (None: the plan
    #: draws it)
    batch_entries: int | None = None
    #: the share of gets through read_index, for every run of this profile (None: the plan
    #: draws it)
    reads: float | None = None
    #: a client gives up on an operation (indeterminate) after this many steps
    op_timeout: int = OP_TIMEOUT
    #: the share of writes of a string key that give it a deadline (0: no expiry at all, and
    #: entries carry no time)
    ttl: float = 0.0
    #: a node's wall clock jumps (forwards or backwards) every this many steps, on average
    clock_jump_every: int = 0
    #: by this many milliseconds, at least and at most
    clock_jump_ms: tuple[int, int] = (1000, 5000)
    #: the number of nodes at the start, for every run of this profile (None: the plan
    #: draws it)
    size: int | None = None


PROFILES = (
    Profile("calm", drop=0.01, duplicate=0.01, transfer_every=500, member_every=400),
    Profile(
        "lossy",
        drop=0.2,
        duplicate=0.1,
        detour=0.03,
        latency=6,
        transfer_every=700,
        member_every=500,
    ),
    Profile(
        "partitions", drop=0.02, duplicate=0.02, latency=4, partition_every=200, member_every=400
    ),
    Profile(
        "crashes",
        drop=0.02,
        latency=4,
        fsync=8,
        crash_every=150,
        snapshot_every=20,
        member_every=300,
    ),
    Profile(
        "elections",
        drop=0.05,
        latency=5,
        fsync=4,
        crash_every=300,
        max_down=2,
        downtime=30 * TICK,
        kill_new_leader=0.5,
        crash_loses_sends=True,
        snapshot_every=30,
        member_every=300,
        member_on_election=0.5,
    ),
    # Figure 8 of the Raft paper: a leader dies with its no-op on its own disk only, the
    # next one too, and the first comes back and, one entry per message, sends its old
    # term's entry to a majority before its new no-op: committing it then would be unsafe
    Profile(
        "figure-8",
        drop=0.02,
        latency=6,
        fsync=1,
        crash_every=100,
        max_down=2,
        downtime=15 * TICK,
        kill_new_leader=0.6,
        # once its no-op is durable (fsync takes one step), before it arrives anywhere
        kill_after=2,
        kill_within=2,
        crash_loses_sends=True,
        batch_entries=1,
        snapshot_every=30,
    ),
    # a leader cut off alone leads on until CheckQuorum deposes it, while the others elect
    # a new one: clients that give up soon and read a lot keep asking the old leader, so a
    # read it answers without a heartbeat round a majority answered is a stale read
    Profile(
        "deposed",
        drop=0.02,
        latency=3,
        partition_every=50,
        partition_steps=(25 * TICK, 50 * TICK),
        partition_kinds=("leader",),
        reads=0.7,
        op_timeout=15 * TICK,
    ),
    Profile(
        "laggards",
        drop=0.05,
        latency=4,
        partition_every=300,
        crash_every=300,
        snapshot_every=6,
        member_every=300,
    ),
    Profile(
        "chaos",
        drop=0.1,
        duplicate=0.05,
        detour=0.02,
        stale_snapshots=0.3,
        latency=6,
        fsync=6,
        partition_every=250,
        crash_every=200,
        max_down=5,
        kill_new_leader=0.2,
        crash_loses_sends=True,
        transfer_every=400,
        snapshot_every=12,
        member_every=400,
        member_on_election=0.5,
    ),
    # membership changes all the time, and leaders change during them: a leader is often
    # cut off right after it takes a change, so the change stays on its side, and the
    # others elect a leader that is asked for a change at once, before its no-op
    # commits. It must refuse (thesis 4.1, the single-server trap), else the earlier
    # leader's uncommitted change and its own can form two majorities that do not overlap
    Profile(
        "membership",
        drop=0.05,
        latency=6,
        fsync=6,
        crash_every=120,
        max_down=2,
        downtime=20 * TICK,
        kill_new_leader=0.2,
        kill_after=1,
        kill_within=6,
        crash_loses_sends=True,
        member_every=15,
        member_on_election=1.0,
        cut_changing_leader=0.7,
        partition_steps=(30 * TICK, 100 * TICK),
        # an even number of voters: two changes one step from it each can leave two
        # majorities that do not overlap
        size=4,
        snapshot_every=25,
    ),
)

#: a membership change never leaves fewer voters, nor more members, than these
MIN_VOTERS = 3
MAX_MEMBERS = 6

#: no fault at all: the named scenarios inject their own
QUIET = Profile("quiet", snapshot_every=1000)

#: expiry decided through the log, with wall clocks that drift apart and jump (seconds,
#: backwards too) while leaders change: kept apart from PROFILES, whose seeds are pinned
EXPIRY_PROFILES = (
    Profile(
        "clocks",
        drop=0.02,
        latency=4,
        ttl=0.6,
        clock_jump_every=150,
        transfer_every=150,
        crash_every=300,
        snapshot_every=20,
    ),
    Profile(
        "clocks-partitions",
        drop=0.05,
        latency=5,
        ttl=0.6,
        clock_jump_every=100,
        partition_every=250,
        partition_kinds=("leader", "split"),
        transfer_every=300,
        snapshot_every=12,
    ),
)


@attrs.frozen
class Plan:
    """Everything a run's shape depends on; `from_seed` derives one from a seed."""

    seed: int
    size: int
    profile: Profile
    #: steps with faults, before everything heals
    fault_steps: int
    clients: int
    keys: int
    config: RaftConfig = attrs.field(factory=RaftConfig)
    #: the share of client operations that are gets through read_index (the others go
    #: through the log: a few gets, and writes)
    reads: float = 0.3
    #: the command that replays this run (None: the seeded run of `seed`)
    replay: str | None = None

    @classmethod
    def from_seed(cls, seed: int, profiles: tuple[Profile, ...] = PROFILES) -> Plan:
        r = random.Random(f"trioraft-plan-{seed}")
        size = r.choice((3, 3, 5))
        profile = r.choice(profiles)
        return cls(
            seed=seed,
            size=profile.size or size,
            profile=profile,
            fault_steps=r.randrange(1500, 2500),
            clients=r.randint(2, 4),
            keys=r.randint(2, 4),
            reads=profile.reads or r.choice((0.2, 0.3, 0.5)),
            config=RaftConfig(
                # a narrow timeout range: quick elections, and more split votes
                election_ticks_max=r.choice((None, None, 12)),
                heartbeat_ticks=r.choice((1, 2)),
                max_batch_entries=profile.batch_entries or r.choice((3, 64)),
                max_inflight=r.choice((2, 16)),
            ),
        )

    def describe(self) -> str:
        return (
            f"seed {self.seed}: {self.size} nodes, profile {self.profile.name}, "
            f"{self.fault_steps} fault steps, {self.clients} clients, {self.keys} keys"
        )
