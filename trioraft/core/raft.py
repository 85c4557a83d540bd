"""The Raft state machine of one node, with no I/O at all.

Theory of operation. Time enters only as `tick()`; peer messages enter as values through
`step()`; client work enters through `propose()` and `read_index()`. Nothing is sent or
written from here: after a batch of inputs the runtime calls `ready()` and gets one
`Ready` value saying what to do, in this order:

1. persist `hard_state` and `entries` (entries[0].index <= the last index written means
   the log is cut there first), fsynced when `must_sync`;
2. send `messages` at once: the leader's replication traffic, which may go out while its
   own disk write runs (thesis 10.2.1), and answers to heartbeats, which promise nothing
   about the disk (they only say "I knew no higher term when your heartbeat came", which
   is all ReadIndex counts on; votes are what must be durable, and they are);
3. send `messages_after_persist` only once this Ready's writes, and those of every earlier
   Ready, are durable: votes and acknowledgements promise what is on disk;
4. apply `committed` entries in order (they are always durable locally already);
5. answer `reads`: a ReadIndex read may be served once the state machine has applied
   up to its index; `dropped_reads` lost their leader and must be retried.

Once the writes of a Ready are durable the runtime calls `persisted(index, term)` with
the last entry written, so the core can count its own copy toward commitment.

Safety rules kept here (Raft paper Figure 2, thesis chapters 3, 6 and 9):
- one vote per term, for a candidate whose log is at least as up to date;
- PreVote: a node campaigns only after a majority says it would vote for it, so a
  node that was cut off does not disturb a healthy leader when it comes back;
- CheckQuorum: a leader that has not heard from a majority within an election timeout
  steps down, and a node that has heard from a leader within it ignores votes;
- a new leader appends a no-op; entries are committed by counting replicas only when
  they are of the leader's own term;
- ReadIndex: a read is registered at the commit index once the leader has committed an
  entry of its term, and released after a heartbeat round sent after the read arrived
  was answered by a majority.

A leader whose own write has not been confirmed within an election timeout hands
leadership to its most up-to-date follower, and steps down if that has not happened
after another election timeout. Commitment counts the followers' copies, but a leader
applies only what it holds durably, so with a hung disk every read and write through it
would wait forever while its heartbeats keep the followers loyal.

How the code is laid out (as etcd-io/raft's): `step()` settles the term, then hands the
message to the step function of the node's role (`_step_follower`, `_step_candidate` for
candidates and pre-candidates, `_step_leader`); `tick()` likewise. What only a leader
tracks is one `Leadership` (leadership.py) in `self.leadership`, None unless this node
leads: the leader's code receives it as an argument, so it cannot run without one, and
stepping down drops it whole.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Hashable, Sequence

import attrs

from trioraft.core.errors import (
    ChangeNotAllowedYet,
    NotLeader,
    TooMuchUncommitted,
    TransferInProgress,
)
from trioraft.core.leadership import Leadership, ReadState
from trioraft.core.log import RaftLog
from trioraft.core.membership import (
    ChangeKind,
    Configurations,
    MemberChange,
    apply_change,
    encode_members,
)
from trioraft.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Members,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from trioraft.core.progress import Progress, ReplicationState


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@attrs.frozen
class RaftConfig:
    #: ticks without a leader before campaigning; the actual timeout is drawn from
    #: [election_ticks, election_ticks_max), by default [election_ticks, 2 * election_ticks);
    #: it is also the CheckQuorum period and the leader lease
    election_ticks: int = 10
    election_ticks_max: int | None = None
    #: ticks between a leader's heartbeats
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    #: most entries in one AppendEntries
    max_batch_entries: int = 1024
    #: most entry payload bytes in one AppendEntries (at least one entry is always sent)
    max_batch_bytes: int = 1 << 20
    #: most unanswered AppendEntries per follower while pipelining
    max_inflight: int = 64
    #: most command bytes a leader holds proposed but not yet committed and handed out
    #: to apply; beyond it proposals are refused (one is always taken when none is held)
    max_uncommitted_bytes: int = 64 << 20
    #: a leader promotes a learner to voter once it has stayed within
    #: `learner_catchup_entries` of the leader's log for an election timeout
    promote_learners: bool = True
    learner_catchup_entries: int = 16


@attrs.frozen
class FollowerLostEntries:
    """A follower no longer holds an entry it acknowledged: its disk lost writes it had
    fsynced (a failing disk, or fsync turned off). Entries committed with its help may be
    on fewer nodes than a quorum now. The leader replicates to it again from scratch."""

    #: the follower
    peer: NodeId
    #: the index the leader knew to match on the follower
    match: int
    #: the index the follower rejected: its log does not hold our entry there
    rejected: int


@attrs.define
class Ready:
    #: a snapshot received from the leader replaces the state machine and the log;
    #: install it before anything else in this Ready
    snapshot: SnapshotMeta | None
    hard_state: HardState | None
    entries: list[Entry]
    messages: list[Message]
    messages_after_persist: list[Message]
    committed: list[Entry]
    reads: list[ReadState]
    dropped_reads: list[Hashable]
    #: leader only: followers found to have lost entries they acknowledged (to report)
    lost_entries: list[FollowerLostEntries] = attrs.Factory(list)
    #: the configuration in force, when it changed since the last Ready (an entry was
    #: appended or cut, or a snapshot installed)
    members: Members | None = None

    @property
    def must_sync(self) -> bool:
        return self.snapshot is not None or self.hard_state is not None or bool(self.entries)

    @property
    def empty(self) -> bool:
        return not (
            self.snapshot
            or self.must_sync
            or self.messages
            or self.messages_after_persist
            or self.committed
            or self.reads
            or self.dropped_reads
            or self.lost_entries
            or self.members
        )


#: what only a leader sends, in its current term: safe to send before its own disk write
_LEADER_TRAFFIC = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow)


class Raft:
    def __init__(
        self,
        node_id: NodeId,
        members: Members,
        *,
        rng: random.Random,
        config: RaftConfig | None = None,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: SnapshotMeta | None = None,
        may_vote: bool = True,
    ) -> None:
        """A node starting from what its storage recovered: the hard state, the snapshot
        it holds (if any) and the log entries after it, all durable. With may_vote False
        it neither votes nor campaigns until `allow_voting()`."""
        self.id = node_id
        self.config = config or RaftConfig()
        self.rng = rng
        #: the configurations the log holds; the newest is in force
        self.configs = Configurations(snapshot.members if snapshot else members)
        hs = hard_state or HardState()
        #: the latest term seen (persisted)
        self.term = hs.term
        #: the vote cast in `term` (persisted)
        self.vote: NodeId | None = hs.vote
        self.log = RaftLog(snapshot.index, snapshot.term) if snapshot else RaftLog()
        self.log.append(list(entries))
        self.configs.appended(entries)
        self.log.unstable_from = self.log.last_index + 1
        #: the last index known durable locally (invariant: <= log.last_index)
        self.persisted_index = self.log.last_index
        #: the highest index known committed (not persisted: relearned from the leader)
        self.commit = self.log.snapshot_index
        #: the last entry handed to the runtime to apply
        self.applied_handed = self.log.snapshot_index
        self.role = Role.FOLLOWER
        self.leader_id: NodeId | None = None
        #: False while the runtime has not yet confirmed that this node's storage is the
        #: one the cluster knows (a wiped node must neither vote nor campaign)
        self.may_vote = may_vote
        #: ticks since the last election timeout reset (heard from a leader, voted,
        #: campaigned); for a leader, ticks in the current CheckQuorum period
        self.election_elapsed = 0
        self.randomized_timeout = self._draw_timeout()
        #: votes received in the current (pre-)campaign
        self.votes: dict[NodeId, bool] = {}
        #: what this node tracks while it leads; None unless it leads
        self.leadership: Leadership | None = None

        self._emitted_hard_state = hs
        self._emitted_members = self.members
        self._messages: list[Message] = []
        self._messages_after_persist: list[Message] = []
        self._reads: list[ReadState] = []
        self._dropped_reads: list[Hashable] = []
        self._lost_entries: list[FollowerLostEntries] = []
        self._snapshot_to_install: SnapshotMeta | None = None

    # --- queries ---------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def members(self) -> Members:
        """The configuration in force: the newest in the log, committed or not."""
        return self.configs.current

    def members_at(self, index: int) -> Members:
        """The configuration once the log up to `index` (at least the snapshot index) is
        applied: what a snapshot taken there records."""
        return self.configs.at(index)

    def most_caught_up_voter(self) -> NodeId | None:
        """The other voter whose log matches the most of this leader's (None if the
        leader is the only voter). Raises NotLeader."""
        return self._leading().most_caught_up(self.members.voters - {self.id})

    def committed_in_term(self) -> bool:
        """Whether this leader has committed an entry of its own term."""
        return self.log.term(self.commit) == self.term

    # --- inputs ----------------------------------------------------------------------

    def tick(self) -> None:
        if self.leadership is not None:
            self._tick_leader(self.leadership)
            return
        self.election_elapsed += 1
        if (
            self.may_vote
            and self.id in self.members.voters
            and self.election_elapsed >= self.randomized_timeout
        ):
            self._campaign()

    def allow_voting(self) -> None:
        """The runtime confirmed that this node's storage is the one the cluster knows:
        it may vote and campaign from now on."""
        self.may_vote = True

    def withdraw(self) -> None:
        """The runtime learned that this node was removed from the cluster: it neither
        votes nor campaigns (until `allow_voting()`, should it be added again), and a
        campaign under way ends."""
        self.may_vote = False
        if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            self._become_follower(self.term, None)

    def adopt_members(self, members: Members) -> None:
        """Take `members` as the configuration to start from: the one a running cluster
        answered a node that asked to join it, in place of none. Only while the log holds
        nothing (no entry, no snapshot): once the leader's log has reached the node, the
        log says what the configuration is."""
        if self.log.last_index:
            raise ValueError("the log already holds a configuration")
        self.configs.reset(members)

    def propose(self, commands: Sequence[bytes]) -> list[tuple[int, int]]:
        """Append client commands; returns the (index, term) of each. Raises NotLeader,
        TransferInProgress (also once this leader has removed itself) or
        TooMuchUncommitted, in which case nothing was appended."""
        ld = self._leading()
        if ld.transfer_target is not None or self.id not in self.members.voters:
            # a leader that removed itself hands over as soon as that commits: what it
            # took after it would be left to the next leader, its outcome unknown
            raise TransferInProgress()
        size = sum(len(data) for data in commands)
        if ld.uncommitted_bytes and ld.uncommitted_bytes + size > self.config.max_uncommitted_bytes:
            raise TooMuchUncommitted()
        ld.uncommitted_bytes += size
        first = self.log.last_index + 1
        term = self.term
        new = [Entry(term, first + k, EntryKind.COMMAND, data) for k, data in enumerate(commands)]
        self.log.append(new)
        return [(entry.index, term) for entry in new]

    def change_members(self, change: MemberChange) -> tuple[int, int]:
        """Append a configuration entry making `change`; returns its (index, term). It is
        in force at once; the change is done once that entry is committed. Raises
        NotLeader, TransferInProgress, ChangeNotAllowedYet or InvalidChange, in which
        case nothing was appended."""
        ld = self._leading()
        if ld.transfer_target is not None:
            raise TransferInProgress()
        refusal = self._change_refusal()
        if refusal is not None:
            raise ChangeNotAllowedYet(refusal)
        data = encode_members(apply_change(self.members, change))
        entry = Entry(self.term, self.log.last_index + 1, EntryKind.CONFIG, data)
        ld.uncommitted_bytes += len(data)
        self._append(ld, [entry])
        return entry.index, entry.term

    def read_index(self, ctx: Hashable) -> None:
        """Register a linearizable read; it comes back in a later Ready's `reads` (or
        `dropped_reads` if leadership is lost first). Raises NotLeader."""
        ld = self._leading()
        if self.committed_in_term():
            ld.register_read(ctx, self.commit)
        else:
            ld.reads_waiting.append(ctx)

    def heartbeat_now(self) -> int:
        """Have the next Ready send a heartbeat round (leader only); returns the round: a
        follower answered it once its progress's `acked_seq` reached it. Raises
        NotLeader."""
        ld = self._leading()
        ld.need_heartbeat = True
        return ld.read_seq + 1

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to `target` once its log is complete (thesis 3.10). New
        proposals are refused meanwhile; the transfer is abandoned after an election
        timeout."""
        ld = self._leading()
        if target == self.id or target not in self.members.voters:
            return
        ld.start_transfer(target)
        self._maybe_send_timeout_now(ld)

    def compact(self, index: int) -> None:
        """The state machine's snapshot covers the log up to `index` (which must have
        been applied); entries up to there are dropped. Followers that still need them
        get the snapshot instead."""
        assert index <= self.applied_handed, "compacting entries not yet applied"
        self.log.compact(index)
        self.configs.compacted(self.log.snapshot_index)

    def report_snapshot(self, peer: NodeId, *, delivered: bool) -> None:
        """The runtime finished sending a snapshot to `peer`. Either way the leader
        probes: just past the snapshot when it was delivered, else from what is known to
        match (and so sends the snapshot again if still needed)."""
        pr = self.leadership.progress.get(peer) if self.leadership is not None else None
        if pr is None or pr.state is not ReplicationState.SNAPSHOT:
            return
        if not delivered:
            pr.snapshot_index = 0  # probe from what is known to match: resends it
        pr.become_probe()

    def persisted(self, index: int, term: int) -> None:
        """The runtime made the log durable up to (index, term)."""
        if index > self.persisted_index and self.log.term(index) == term:
            self.persisted_index = index
            if self.leadership is not None:
                self._maybe_commit(self.leadership)

    def step(self, m: Message) -> None:
        """Take a peer message: the term decides first (a newer one makes this node a
        follower, an older one is answered or dropped), then the step function of the
        node's role."""
        if m.dst != self.id:
            return
        if m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self.term:
            self._answer_stale(m)
            return
        if self.leadership is not None:
            self._step_leader(self.leadership, m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # --- output ----------------------------------------------------------------------

    def ready(self) -> Ready:
        if self.leadership is not None:
            self._flush_leader(self.leadership)
        hs = self.hard_state
        hard_state = hs if hs != self._emitted_hard_state else None
        self._emitted_hard_state = hs
        members = self.members if self.members != self._emitted_members else None
        self._emitted_members = self.members
        entries = self.log.take_unstable()
        apply_to = min(self.commit, self.persisted_index)
        committed = self.log.slice(self.applied_handed + 1, apply_to + 1)
        self.applied_handed = max(self.applied_handed, apply_to)
        if self.leadership is not None:
            handed_out = sum(len(e.data) for e in committed if e.term == self.term)
            self.leadership.uncommitted_bytes -= handed_out
        rd = Ready(
            snapshot=self._snapshot_to_install,
            hard_state=hard_state,
            entries=entries,
            messages=self._messages,
            messages_after_persist=self._messages_after_persist,
            committed=committed,
            reads=self._reads,
            dropped_reads=self._dropped_reads,
            lost_entries=self._lost_entries,
            members=members,
        )
        self._messages, self._messages_after_persist = [], []
        self._reads, self._dropped_reads = [], []
        self._lost_entries = []
        self._snapshot_to_install = None
        return rd

    # --- role changes ----------------------------------------------------------------

    def _draw_timeout(self) -> int:
        low = self.config.election_ticks
        return self.rng.randrange(low, self.config.election_ticks_max or 2 * low)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader_id = None
        self.election_elapsed = 0
        self.randomized_timeout = self._draw_timeout()
        self.votes = {}
        if self.leadership is not None:
            self._dropped_reads.extend(self.leadership.unserved_reads())
            self.leadership = None

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader

    def _campaign(self) -> None:
        if self.config.pre_vote:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=False)

    def _become_pre_candidate(self) -> None:
        # the term and vote stay as they are: a PreVote changes nobody's state
        self.role = Role.PRE_CANDIDATE
        self.leader_id = None
        self.election_elapsed = 0
        self.randomized_timeout = self._draw_timeout()
        self.votes = {self.id: True}
        if self._tally() is True:
            self._become_candidate(transfer=False)
            return
        for peer in sorted(self.members.voters - {self.id}):
            self._send(
                RequestVote(
                    src=self.id,
                    dst=peer,
                    term=self.term + 1,
                    last_log_index=self.log.last_index,
                    last_log_term=self.log.last_term,
                    pre_vote=True,
                )
            )

    def _become_candidate(self, *, transfer: bool) -> None:
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self.vote = self.id
        self.votes = {self.id: True}
        if self._tally() is True:
            self._become_leader()
            return
        for peer in sorted(self.members.voters - {self.id}):
            self._send(
                RequestVote(
                    src=self.id,
                    dst=peer,
                    term=self.term,
                    last_log_index=self.log.last_index,
                    last_log_term=self.log.last_term,
                    transfer=transfer,
                )
            )

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader_id = self.id
        next_index = self.log.last_index + 1
        ld = self.leadership = Leadership(sorted(self.members.all - {self.id}), next_index)
        # the no-op lets this leader commit, and so learn the commit index (thesis 6.4)
        self._append(ld, [Entry(self.term, next_index, EntryKind.NOOP)])
        self._maybe_commit(ld)

    def _leading(self) -> Leadership:
        """This node's leadership; raises NotLeader when it does not lead."""
        if self.leadership is None:
            raise NotLeader(self.leader_id)
        return self.leadership

    # --- the step function of each role ----------------------------------------------

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            # the leader of this term spoke: it is alive, restart the election timeout
            self.leader_id = m.src
            self.election_elapsed = 0
        if isinstance(m, AppendEntries):
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._handle_heartbeat(m)
        elif isinstance(m, InstallSnapshot):
            self._handle_snapshot(m)
        elif isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, TimeoutNow):
            self._handle_timeout_now()
        # late answers to an earlier campaign or leadership of this node: nothing to do

    def _step_candidate(self, m: Message) -> None:
        """Candidates and pre-candidates."""
        if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            self._become_follower(self.term, m.src)  # this term has a leader: follow it
            self._step_follower(m)
        elif isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, RequestVoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, TimeoutNow):
            self._handle_timeout_now()

    def _step_leader(self, ld: Leadership, m: Message) -> None:
        if isinstance(m, AppendEntriesResponse):
            self._handle_append_response(ld, m)
        elif isinstance(m, HeartbeatResponse):
            self._handle_heartbeat_response(ld, m)
        elif isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
            # another leader of this term, which election safety rules out: follow it,
            # as a candidate would
            self._become_follower(self.term, m.src)
            self._step_follower(m)
        # vote answers come late (it won already), and TimeoutNow is from a leader of its
        # own term, which only it is

    # --- messages every role handles -------------------------------------------------

    def _in_lease(self) -> bool:
        """Whether a leader was heard from within the minimum election timeout."""
        return (
            self.config.check_quorum
            and self.leader_id is not None
            and self.election_elapsed < self.config.election_ticks
        )

    def _accept_higher_term(self, m: Message) -> bool:
        """Handle a message from a higher term; returns whether to process it further."""
        if isinstance(m, RequestVote):
            if not m.transfer and self._in_lease():
                return False  # a live leader exists: ignore the disruption
            if not m.pre_vote:
                self._become_follower(m.term, None)
            return True
        if isinstance(m, RequestVoteResponse) and m.pre_vote:
            if m.granted:
                return True  # granted PreVotes carry the term we would campaign in
            self._become_follower(m.term, None)
            return False
        leader = m.src if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot) else None
        self._become_follower(m.term, leader)
        return True

    def _answer_stale(self, m: Message) -> None:
        """A message from an older term: tell leaders and candidates the current term so
        they step down; drop the rest."""
        if isinstance(m, AppendEntries | Heartbeat):
            self._answer_append(m.src, success=False, index=0)
        elif isinstance(m, RequestVote):
            self._send(
                RequestVoteResponse(
                    src=self.id, dst=m.src, term=self.term, granted=False, pre_vote=m.pre_vote
                )
            )

    def _handle_vote_request(self, m: RequestVote) -> None:
        if not self.may_vote:
            return
        may_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader_id is None)
            or (m.pre_vote and m.term > self.term)
        )
        # the candidate need not be in this node's configuration (thesis 4.1): when two
        # uncommitted changes disagree, only such a vote may let anyone win
        grant = may_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        if grant and not m.pre_vote:
            self.vote = m.src
            self.election_elapsed = 0
        self._send(
            RequestVoteResponse(
                src=self.id,
                dst=m.src,
                term=m.term if grant and m.pre_vote else self.term,
                granted=grant,
                pre_vote=m.pre_vote,
            )
        )

    def _handle_timeout_now(self) -> None:
        """The leader hands leadership to this node: campaign at once, skipping PreVote."""
        if self.may_vote and self.id in self.members.voters:
            self._become_candidate(transfer=True)

    # --- the candidate ---------------------------------------------------------------

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        if m.pre_vote != (self.role is Role.PRE_CANDIDATE):
            return  # an answer to the other kind of campaign
        if m.pre_vote and m.granted and m.term != self.term + 1:
            return  # granted in an earlier PreVote round
        self.votes.setdefault(m.src, m.granted)
        outcome = self._tally()
        if outcome is True:
            if self.role is Role.PRE_CANDIDATE:
                self._become_candidate(transfer=False)
            else:
                self._become_leader()
        elif outcome is False:
            self._become_follower(self.term, None)

    def _tally(self) -> bool | None:
        """True once a majority of voters granted, False once a majority refused."""
        granted = sum(1 for v, ok in self.votes.items() if ok and v in self.members.voters)
        refused = sum(1 for v, ok in self.votes.items() if not ok and v in self.members.voters)
        quorum = self.members.quorum()
        if granted >= quorum:
            return True
        if refused >= quorum:
            return False
        return None

    # --- the follower ----------------------------------------------------------------

    def _handle_append(self, m: AppendEntries) -> None:
        if m.prev_index < self.commit:
            # all up to our commit index matches the leader already (leader completeness)
            self._answer_append(m.src, success=True, index=self.commit)
            return
        local_term = self.log.term(m.prev_index)
        if local_term != m.prev_term:
            hint_index, hint_term = self._conflict_hint(m.prev_index, local_term)
            self._answer_append(
                m.src, success=False, index=m.prev_index, hint_index=hint_index, hint_term=hint_term
            )
            return
        last_before = self.log.last_index
        cut = self.log.merge(m.prev_index, m.entries)
        if cut is not None:
            self.persisted_index = min(self.persisted_index, cut - 1)
            self.configs.truncated(cut)
        first_new = cut if cut is not None else last_before + 1
        self.configs.appended(self.log.slice(first_new, self.log.last_index + 1))
        last_new = m.prev_index + len(m.entries)
        self._commit_to(min(m.commit, last_new))
        self._answer_append(m.src, success=True, index=last_new)

    def _answer_append(
        self, leader: NodeId, *, success: bool, index: int, hint_index: int = 0, hint_term: int = 0
    ) -> None:
        self._send(
            AppendEntriesResponse(
                src=self.id,
                dst=leader,
                term=self.term,
                success=success,
                index=index,
                hint_index=hint_index,
                hint_term=hint_term,
            )
        )

    def _conflict_hint(self, prev_index: int, local_term: int | None) -> tuple[int, int]:
        """Where the leader should try next: past our last entry when our log is too
        short, else the first index of our conflicting term (Raft paper 5.3)."""
        if local_term is None:
            return self.log.last_index + 1, 0
        index = prev_index
        while index - 1 > self.commit and self.log.term(index - 1) == local_term:
            index -= 1
        return index, local_term

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        """The runtime has received the leader's snapshot data and holds it durably;
        the core switches to it unless the log already covers it."""
        meta = m.meta
        if meta.index <= self.commit:
            matched = self.commit
        elif self.log.term(meta.index) == meta.term:
            matched = meta.index  # the log already holds it: keep the entries after it
            self._commit_to(meta.index)
        else:
            self.log.reset(meta.index, meta.term)
            self.configs.reset(meta.members)
            self.commit = self.persisted_index = self.applied_handed = meta.index
            self._snapshot_to_install = meta
            matched = meta.index
        self._answer_append(m.src, success=True, index=matched)

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self._commit_to(min(m.commit, self.log.last_index))
        self._send(
            HeartbeatResponse(
                src=self.id, dst=m.src, term=self.term, seq=m.seq, last_index=self.log.last_index
            )
        )

    def _commit_to(self, index: int) -> None:
        if index > self.commit:
            self.commit = index

    # --- the leader ------------------------------------------------------------------

    def _handle_append_response(self, ld: Leadership, m: AppendEntriesResponse) -> None:
        pr = ld.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if not m.success:
            self._handle_reject(pr, m)
            return
        if not pr.acked(m.index):
            return
        if pr.state is ReplicationState.PROBE:
            pr.become_replicate()
        elif pr.state is ReplicationState.SNAPSHOT and pr.match >= pr.snapshot_index:
            pr.become_probe()
            pr.become_replicate()
        if self._maybe_commit(ld) and m.src == ld.transfer_target:
            self._maybe_send_timeout_now(ld)

    def _handle_reject(self, pr: Progress, m: AppendEntriesResponse) -> None:
        if pr.state is ReplicationState.REPLICATE and m.index <= pr.match:
            return  # an answer to something older than what is known to match
        if pr.state is ReplicationState.PROBE and m.index != pr.next - 1:
            return  # an answer to an earlier probe
        if pr.state is ReplicationState.SNAPSHOT:
            return
        if m.index <= pr.match:
            # the answer to the current probe, which follows `match`: the follower lacks
            # an entry it acknowledged; probing from `match + 1` would repeat forever
            self._lost_entries.append(FollowerLostEntries(m.src, pr.match, m.index))
            pr.match = 0
        next_index = m.hint_index
        if m.hint_term:
            # skip the follower's whole conflicting term, or past our own entries of it
            last_of_term = self._last_index_of_term(m.hint_term, m.index)
            if last_of_term is not None:
                next_index = last_of_term + 1
        pr.become_probe()
        pr.next = max(pr.match + 1, min(next_index, m.index))

    def _last_index_of_term(self, term: int, below: int) -> int | None:
        index = min(below, self.log.last_index)
        while index > self.log.snapshot_index:
            t = self.log.term(index)
            assert t is not None
            if t == term:
                return index
            if t < term:
                return None
            index -= 1
        return None

    def _handle_heartbeat_response(self, ld: Leadership, m: HeartbeatResponse) -> None:
        pr = ld.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.heartbeat_answered(m.seq)
        self._release_reads(ld)

    def _tick_leader(self, ld: Leadership) -> None:
        ld.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if ld.transfer_target is not None:
            ld.transfer_elapsed += 1
            if ld.transfer_elapsed >= self.config.election_ticks:
                ld.abandon_transfer()
        if not self._watch_own_disk(ld):
            return
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum:
                active = {p for p, pr in ld.progress.items() if pr.recent_active} | {self.id}
                if len(active & self.members.voters) < self.members.quorum():
                    self._become_follower(self.term, None)
                    return
                for pr in ld.progress.values():
                    pr.recent_active = False
        if ld.heartbeat_elapsed >= self.config.heartbeat_ticks:
            ld.heartbeat_elapsed = 0
            self._broadcast_heartbeat(ld)
            for pr in ld.progress.values():
                pr.heartbeat_interval_passed(ld.read_seq)
        if self.config.promote_learners:
            self._promote_caught_up_learner(ld)

    def _promote_caught_up_learner(self, ld: Leadership) -> None:
        """Promote a learner that kept within a few entries of this log for an election
        timeout: a slow new member never counts toward a quorum it would hold up."""
        lag = self.config.learner_catchup_entries
        for learner in self.members.learners:
            pr = ld.progress[learner]
            caught_up = (
                pr.state is ReplicationState.REPLICATE and self.log.last_index - pr.match <= lag
            )
            pr.caught_up_ticks = pr.caught_up_ticks + 1 if caught_up else 0
        ready = sorted(
            learner
            for learner in self.members.learners
            if ld.progress[learner].caught_up_ticks >= self.config.election_ticks
        )
        if ready and ld.transfer_target is None and self._change_refusal() is None:
            self.change_members(MemberChange(ChangeKind.PROMOTE, ready[0]))

    def _change_refusal(self) -> str | None:
        """Why this leader may not append a membership change now (None: it may)."""
        if not self.committed_in_term():
            # an uncommitted change of an earlier leader could still win over ours
            return "the leader has not committed an entry of its term yet; retry shortly"
        if self.configs.last_index > self.commit:
            return (
                f"the membership change at index {self.configs.last_index} is not "
                f"committed yet; one change at a time"
            )
        return None

    def _watch_own_disk(self, ld: Leadership) -> bool:
        """Hand leadership over, then step down, while an own write stays unconfirmed
        (see the module's notes); returns whether this node still leads."""
        if self.persisted_index >= self.log.last_index:
            ld.disk_wait_index = ld.disk_wait_elapsed = 0
            return True
        if self.persisted_index >= ld.disk_wait_index:
            # the write waited for landed (or none was): wait for the newest one
            ld.disk_wait_index, ld.disk_wait_elapsed = self.log.last_index, 0
            return True
        ld.disk_wait_elapsed += 1
        best = self.most_caught_up_voter()
        if best is None:
            return True  # nobody to hand over to
        timeout = self.config.election_ticks
        if ld.disk_wait_elapsed >= 2 * timeout:
            self._become_follower(self.term, None)
            return False
        if ld.disk_wait_elapsed >= timeout and ld.transfer_target is None:
            self.transfer_leadership(best)
        return True

    def _broadcast_heartbeat(self, ld: Leadership) -> None:
        seq = ld.next_round()
        for peer, pr in ld.progress.items():
            self._send(
                Heartbeat(
                    src=self.id,
                    dst=peer,
                    term=self.term,
                    commit=min(pr.match, self.commit),
                    seq=seq,
                )
            )
        self._release_reads(ld)

    def _release_reads(self, ld: Leadership) -> None:
        if not ld.reads_pending:
            return
        voters = self.members.voters
        acked = sorted(
            [ld.read_seq if self.id in voters else 0]
            + [pr.acked_seq for p, pr in ld.progress.items() if p in voters],
            reverse=True,
        )
        self._reads.extend(ld.release_reads(confirmed=acked[self.members.quorum() - 1]))

    def _maybe_commit(self, ld: Leadership) -> bool:
        """Commit what a majority of voters holds, if of this term; returns whether this
        node still leads (it steps down once its own removal is committed)."""
        matches = sorted(
            [pr.match for p, pr in ld.progress.items() if p in self.members.voters]
            + ([self.persisted_index] if self.id in self.members.voters else []),
            reverse=True,
        )
        candidate = matches[self.members.quorum() - 1]
        if candidate <= self.commit or self.log.term(candidate) != self.term:
            return True  # only entries of the current term are committed by counting
        first_in_term = not self.committed_in_term()
        self.commit = candidate
        if first_in_term:
            waiting, ld.reads_waiting = ld.reads_waiting, []
            for ctx in waiting:
                ld.register_read(ctx, self.commit)
        if self.configs.last_index <= self.commit:
            self._forget_removed_members(ld)
            if self.id not in self.members.voters:
                self._leave(ld)
                return False
        return True

    def _forget_removed_members(self, ld: Leadership) -> None:
        for peer in ld.progress.keys() - self.members.all:
            del ld.progress[peer]

    def _leave(self, ld: Leadership) -> None:
        """This leader's removal is committed: hand leadership to a voter whose log is
        complete, if there is one, and step down."""
        best = self.most_caught_up_voter()
        if best is not None and ld.progress[best].match == self.log.last_index:
            self._send(TimeoutNow(src=self.id, dst=best, term=self.term))
        self._become_follower(self.term, None)

    def _append(self, ld: Leadership, entries: list[Entry]) -> None:
        """Append this leader's own entries; a configuration among them is in force at once."""
        self.log.append(entries)
        before = self.members
        self.configs.appended(entries)
        if self.members != before:
            self._members_changed(ld)

    def _members_changed(self, ld: Leadership) -> None:
        """Follow a new configuration: replicate to new members, and count the new quorum
        (it may be smaller). A removed member is still sent the log until its removal
        commits, so that it learns it was removed."""
        for peer in self.members.all - {self.id} - ld.progress.keys():
            ld.progress[peer] = Progress(self.log.last_index)
        if ld.transfer_target is not None and ld.transfer_target not in self.members.voters:
            ld.abandon_transfer()
        if self._maybe_commit(ld):
            self._release_reads(ld)

    def _maybe_send_timeout_now(self, ld: Leadership) -> None:
        target = ld.transfer_target
        if (
            target is None
            or ld.timeout_now_sent
            or ld.progress[target].match != self.log.last_index
        ):
            return
        # proposals stay refused until the target wins (and this node steps down) or
        # the transfer is abandoned
        self._send(TimeoutNow(src=self.id, dst=target, term=self.term))
        ld.timeout_now_sent = True

    def _flush_leader(self, ld: Leadership) -> None:
        if ld.need_heartbeat:
            self._broadcast_heartbeat(ld)
        for peer, pr in ld.progress.items():
            self._send_appends(peer, pr)

    def _send_appends(self, peer: NodeId, pr: Progress) -> None:
        """Send what the follower lacks, as far as its pacing allows; an empty
        AppendEntries carries a commit index it has not been told yet."""
        cfg = self.config
        while pr.can_send(cfg.max_inflight):
            if pr.next - 1 < self.log.snapshot_index:
                self._send_snapshot(peer, pr)
                return
            # past a full window only the empty one asking about loss goes
            entries = [] if pr.window_full(cfg.max_inflight) else self._batch(pr.next)
            probing = pr.state is ReplicationState.PROBE and pr.match < pr.next - 1
            if not entries and self.commit <= pr.sent_commit and not probing and not pr.check_due:
                return
            prev_index = pr.next - 1
            prev_term = self.log.term(prev_index)
            assert prev_term is not None
            self._send(
                AppendEntries(
                    src=self.id,
                    dst=peer,
                    term=self.term,
                    prev_index=prev_index,
                    prev_term=prev_term,
                    entries=tuple(entries),
                    commit=self.commit,
                )
            )
            pr.sent_commit = self.commit
            pr.sent(prev_index + len(entries))
            if not entries:
                return

    def _batch(self, start: int) -> list[Entry]:
        entries = self.log.slice(start, start + self.config.max_batch_entries)
        size = 0
        for k, entry in enumerate(entries):
            size += len(entry.data)
            if size > self.config.max_batch_bytes and k > 0:
                return entries[:k]
        return entries

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        meta = SnapshotMeta(
            self.log.snapshot_index,
            self.log.snapshot_term,
            self.members_at(self.log.snapshot_index),
        )
        pr.become_snapshot(meta.index)
        self._send(InstallSnapshot(src=self.id, dst=peer, term=self.term, meta=meta))

    def _send(self, m: Message) -> None:
        if isinstance(m, HeartbeatResponse) or (
            self.role is Role.LEADER and isinstance(m, _LEADER_TRAFFIC)
        ):
            self._messages.append(m)
        else:
            self._messages_after_persist.append(m)
