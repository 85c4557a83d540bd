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
candidates and pre-candidates, `_step_leader`); `tick()` likewise. This module holds what
every role shares, the follower's and the candidate's work and the role changes. The
leader's work is a `Leader` (leader.py), which exists only while this node leads and keeps
what only a leader tracks in one `Leadership` (leadership.py; `Raft.leadership` is None
unless this node leads), so stepping down drops it whole. What a batch of inputs produces
gathers in an `Outbox` until `ready()` hands it out (ready.py).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Hashable, Sequence

from trioraft.core.config import RaftConfig
from trioraft.core.errors import NotLeader
from trioraft.core.leader import Leader
from trioraft.core.leadership import Leadership
from trioraft.core.log import RaftLog
from trioraft.core.membership import Configurations, MemberChange
from trioraft.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
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
from trioraft.core.ready import Outbox, Ready


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


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
        #: the leader's behaviour and state while this node leads; None unless it leads
        self._leader: Leader | None = None

        self._emitted_hard_state = hs
        self._emitted_members = self.members
        self._out = Outbox()
        self._snapshot_to_install: SnapshotMeta | None = None

    # --- queries ---------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def leadership(self) -> Leadership | None:
        """What this node tracks while it leads; None unless it leads."""
        return self._leader.state if self._leader is not None else None

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
        return self._leading().most_caught_up_voter()

    def committed_in_term(self) -> bool:
        """Whether this leader has committed an entry of its own term."""
        return self.log.term(self.commit) == self.term

    # --- inputs ----------------------------------------------------------------------

    def tick(self) -> None:
        if self._leader is not None:
            self._leader.tick()
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
        return self._leading().propose(commands)

    def change_members(self, change: MemberChange) -> tuple[int, int]:
        """Append a configuration entry making `change`; returns its (index, term). It is
        in force at once; the change is done once that entry is committed. Raises
        NotLeader, TransferInProgress, ChangeNotAllowedYet or InvalidChange, in which
        case nothing was appended."""
        return self._leading().change_members(change)

    def read_index(self, ctx: Hashable) -> None:
        """Register a linearizable read; it comes back in a later Ready's `reads` (or
        `dropped_reads` if leadership is lost first). Raises NotLeader."""
        self._leading().read_index(ctx)

    def heartbeat_now(self) -> int:
        """Have the next Ready send a heartbeat round (leader only); returns the round: a
        follower answered it once its progress's `acked_seq` reached it. Raises
        NotLeader."""
        return self._leading().heartbeat_now()

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to `target` once its log is complete (thesis 3.10). New
        proposals are refused meanwhile; the transfer is abandoned after an election
        timeout."""
        self._leading().transfer_leadership(target)

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
        if self._leader is not None:
            self._leader.report_snapshot(peer, delivered=delivered)

    def persisted(self, index: int, term: int) -> None:
        """The runtime made the log durable up to (index, term)."""
        if index > self.persisted_index and self.log.term(index) == term:
            self.persisted_index = index
            if self._leader is not None:
                self._leader.maybe_commit()

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
        if self._leader is not None:
            self._step_leader(self._leader, m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # --- output ----------------------------------------------------------------------

    def ready(self) -> Ready:
        if self._leader is not None:
            self._leader.flush()
        hs = self.hard_state
        hard_state = hs if hs != self._emitted_hard_state else None
        self._emitted_hard_state = hs
        members = self.members if self.members != self._emitted_members else None
        self._emitted_members = self.members
        entries = self.log.take_unstable()
        apply_to = min(self.commit, self.persisted_index)
        committed = self.log.slice(self.applied_handed + 1, apply_to + 1)
        self.applied_handed = max(self.applied_handed, apply_to)
        if self._leader is not None:
            self._leader.handed_out(committed)
        rd = self._out.ready(
            snapshot=self._snapshot_to_install,
            hard_state=hard_state,
            entries=entries,
            committed=committed,
            members=members,
        )
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
        if self._leader is not None:
            self._out.dropped_reads.extend(self._leader.state.unserved_reads())
            self._leader = None

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
        self._leader = Leader(self, self._out, step_down=self._step_down)
        self._leader.start()

    def _step_down(self) -> None:
        """The leader gives up leading (its term stays) and follows nobody yet."""
        self._become_follower(self.term, None)

    def _leading(self) -> Leader:
        """This node's leader behaviour; raises NotLeader when it does not lead."""
        if self._leader is None:
            raise NotLeader(self.leader_id)
        return self._leader

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

    def _step_leader(self, leader: Leader, m: Message) -> None:
        if isinstance(m, AppendEntriesResponse):
            leader.handle_append_response(m)
        elif isinstance(m, HeartbeatResponse):
            leader.handle_heartbeat_response(m)
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

    def _send(self, m: Message) -> None:
        # a heartbeat answer promises nothing about the disk (see the notes above): it may
        # overtake this node's writes; every other answer waits for them
        if isinstance(m, HeartbeatResponse):
            self._out.messages.append(m)
        else:
            self._out.messages_after_persist.append(m)
