"""The leader's behaviour: replication, commitment, ReadIndex, leadership transfer,
membership change proposals, and the watch on its own disk.

A `Leader` lives exactly as long as its node leads: the core (raft.py) creates one when
the node wins an election and drops it the moment the node steps down. It keeps what only
a leader tracks in its `Leadership` (`state`), works on what every role shares -- the
term, the log, the commit index, the configurations -- through the `Core` protocol, adds
what it sends and releases to the node's `Outbox`, and steps down by calling the
`step_down` it was given. The safety rules it keeps are listed in raft.py's notes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

from trioraft.core.config import RaftConfig
from trioraft.core.errors import ChangeNotAllowedYet, TooMuchUncommitted, TransferInProgress
from trioraft.core.leadership import Leadership
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
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Members,
    Message,
    NodeId,
    SnapshotMeta,
    TimeoutNow,
)
from trioraft.core.progress import Progress, ReplicationState
from trioraft.core.ready import FollowerLostEntries, Outbox


class Core(Protocol):
    """What a leader uses of its node's core (`trioraft.core.raft.Raft`)."""

    @property
    def id(self) -> NodeId: ...
    @property
    def config(self) -> RaftConfig: ...
    @property
    def term(self) -> int: ...
    @property
    def log(self) -> RaftLog: ...
    @property
    def configs(self) -> Configurations: ...
    @property
    def members(self) -> Members: ...
    @property
    def persisted_index(self) -> int: ...

    #: the leader advances it by counting replicas
    commit: int
    #: the leader counts its CheckQuorum period in it
    election_elapsed: int

    def members_at(self, index: int) -> Members: ...
    def committed_in_term(self) -> bool: ...


class Leader:
    def __init__(self, core: Core, out: Outbox, step_down: Callable[[], None]) -> None:
        """Leading `core` from now on; `step_down` makes the node a follower in its term
        (and drops this Leader)."""
        self.core = core
        self.out = out
        self.step_down = step_down
        members = core.members
        self.state = Leadership(sorted(members.all - {core.id}), core.log.last_index + 1)

    def start(self) -> None:
        """Append the no-op that lets this leader commit, and so learn the commit index
        (thesis 6.4)."""
        core = self.core
        self._append([Entry(core.term, core.log.last_index + 1, EntryKind.NOOP)])
        self.maybe_commit()

    # --- what the core asks of its leader ----------------------------------------------

    def most_caught_up_voter(self) -> NodeId | None:
        return self.state.most_caught_up(self.core.members.voters - {self.core.id})

    def propose(self, commands: Sequence[bytes]) -> list[tuple[int, int]]:
        core, ld = self.core, self.state
        if ld.transfer_target is not None or core.id not in core.members.voters:
            # a leader that removed itself hands over as soon as that commits: what it
            # took after it would be left to the next leader, its outcome unknown
            raise TransferInProgress()
        size = sum(len(data) for data in commands)
        if ld.uncommitted_bytes and ld.uncommitted_bytes + size > core.config.max_uncommitted_bytes:
            raise TooMuchUncommitted()
        ld.uncommitted_bytes += size
        first = core.log.last_index + 1
        term = core.term
        new = [Entry(term, first + k, EntryKind.COMMAND, data) for k, data in enumerate(commands)]
        core.log.append(new)
        return [(entry.index, term) for entry in new]

    def change_members(self, change: MemberChange) -> tuple[int, int]:
        core, ld = self.core, self.state
        if ld.transfer_target is not None:
            raise TransferInProgress()
        refusal = self._change_refusal()
        if refusal is not None:
            raise ChangeNotAllowedYet(refusal)
        data = encode_members(apply_change(core.members, change))
        entry = Entry(core.term, core.log.last_index + 1, EntryKind.CONFIG, data)
        ld.uncommitted_bytes += len(data)
        self._append([entry])
        return entry.index, entry.term

    def read_index(self, ctx: Hashable) -> None:
        if self.core.committed_in_term():
            self.state.register_read(ctx, self.core.commit)
        else:
            self.state.reads_waiting.append(ctx)

    def heartbeat_now(self) -> int:
        self.state.need_heartbeat = True
        return self.state.read_seq + 1

    def transfer_leadership(self, target: NodeId) -> None:
        if target == self.core.id or target not in self.core.members.voters:
            return
        self.state.start_transfer(target)
        self._maybe_send_timeout_now()

    def report_snapshot(self, peer: NodeId, *, delivered: bool) -> None:
        pr = self.state.progress.get(peer)
        if pr is None or pr.state is not ReplicationState.SNAPSHOT:
            return
        if not delivered:
            pr.snapshot_index = 0  # probe from what is known to match: resends it
        pr.become_probe()

    def handed_out(self, entries: list[Entry]) -> None:
        """`entries` go to the state machine: the commands this leader proposed among them
        no longer count toward `max_uncommitted_bytes`."""
        term = self.core.term
        self.state.uncommitted_bytes -= sum(len(e.data) for e in entries if e.term == term)

    def flush(self) -> None:
        """Send what the Ready being built should carry: a heartbeat round a read asked
        for, and to each follower what it lacks. A commit index alone waits for the
        next tick (see `_send_appends`)."""
        ld = self.state
        if ld.need_heartbeat:
            self._broadcast_heartbeat()
        commit_news, ld.commit_news_due = ld.commit_news_due, False
        for peer, pr in ld.progress.items():
            self._send_appends(peer, pr, commit_news=commit_news)

    # --- ticks ---------------------------------------------------------------------------

    def tick(self) -> None:
        core, ld, config = self.core, self.state, self.core.config
        ld.heartbeat_elapsed += 1
        ld.commit_news_due = True
        core.election_elapsed += 1
        if ld.transfer_target is not None:
            ld.transfer_elapsed += 1
            if ld.transfer_elapsed >= config.election_ticks:
                ld.abandon_transfer()
        if not self._watch_own_disk():
            return
        if core.election_elapsed >= config.election_ticks:
            core.election_elapsed = 0
            if config.check_quorum:
                active = {p for p, pr in ld.progress.items() if pr.recent_active} | {core.id}
                if len(active & core.members.voters) < core.members.quorum():
                    self.step_down()
                    return
                for pr in ld.progress.values():
                    pr.recent_active = False
        if ld.heartbeat_elapsed >= config.heartbeat_ticks:
            ld.heartbeat_elapsed = 0
            self._broadcast_heartbeat()
            for pr in ld.progress.values():
                pr.heartbeat_interval_passed(ld.read_seq)
        if config.promote_learners:
            self._promote_caught_up_learner()

    def _watch_own_disk(self) -> bool:
        """Hand leadership over, then step down, while an own write stays unconfirmed
        (see raft.py's notes); returns whether this node still leads."""
        core, ld = self.core, self.state
        if core.persisted_index >= core.log.last_index:
            ld.disk_wait_index = ld.disk_wait_elapsed = 0
            return True
        if core.persisted_index >= ld.disk_wait_index:
            # the write waited for landed (or none was): wait for the newest one
            ld.disk_wait_index, ld.disk_wait_elapsed = core.log.last_index, 0
            return True
        ld.disk_wait_elapsed += 1
        best = self.most_caught_up_voter()
        if best is None:
            return True  # nobody to hand over to
        timeout = core.config.election_ticks
        if ld.disk_wait_elapsed >= 2 * timeout:
            self.step_down()
            return False
        if ld.disk_wait_elapsed >= timeout and ld.transfer_target is None:
            self.transfer_leadership(best)
        return True

    def _promote_caught_up_learner(self) -> None:
        """Promote a learner that kept within a few entries of this log for an election
        timeout: a slow new member never counts toward a quorum it would hold up."""
        core, ld = self.core, self.state
        lag = core.config.learner_catchup_entries
        for learner in core.members.learners:
            pr = ld.progress[learner]
            caught_up = (
                pr.state is ReplicationState.REPLICATE and core.log.last_index - pr.match <= lag
            )
            pr.caught_up_ticks = pr.caught_up_ticks + 1 if caught_up else 0
        ready = sorted(
            learner
            for learner in core.members.learners
            if ld.progress[learner].caught_up_ticks >= core.config.election_ticks
        )
        if ready and ld.transfer_target is None and self._change_refusal() is None:
            self.change_members(MemberChange(ChangeKind.PROMOTE, ready[0]))

    # --- answers from followers ----------------------------------------------------------

    def handle_append_response(self, m: AppendEntriesResponse) -> None:
        pr = self.state.progress.get(m.src)
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
        if self.maybe_commit() and m.src == self.state.transfer_target:
            self._maybe_send_timeout_now()

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
            self.out.lost_entries.append(FollowerLostEntries(m.src, pr.match, m.index))
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
        log = self.core.log
        index = min(below, log.last_index)
        while index > log.snapshot_index:
            t = log.term(index)
            assert t is not None
            if t == term:
                return index
            if t < term:
                return None
            index -= 1
        return None

    def handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self.state.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.heartbeat_answered(m.seq)
        self._release_reads()

    # --- commitment and reads ------------------------------------------------------------

    def maybe_commit(self) -> bool:
        """Commit what a majority of voters holds, if of this term; returns whether this
        node still leads (it steps down once its own removal is committed)."""
        core, ld = self.core, self.state
        matches = sorted(
            [pr.match for p, pr in ld.progress.items() if p in core.members.voters]
            + ([core.persisted_index] if core.id in core.members.voters else []),
            reverse=True,
        )
        candidate = matches[core.members.quorum() - 1]
        if candidate <= core.commit or core.log.term(candidate) != core.term:
            return True  # only entries of the current term are committed by counting
        first_in_term = not core.committed_in_term()
        core.commit = candidate
        if first_in_term:
            waiting, ld.reads_waiting = ld.reads_waiting, []
            for ctx in waiting:
                ld.register_read(ctx, core.commit)
        if core.configs.last_index <= core.commit:
            self._forget_removed_members()
            if core.id not in core.members.voters:
                self._leave()
                return False
        return True

    def _release_reads(self) -> None:
        core, ld = self.core, self.state
        if not ld.reads_pending:
            return
        voters = core.members.voters
        acked = sorted(
            [ld.read_seq if core.id in voters else 0]
            + [pr.acked_seq for p, pr in ld.progress.items() if p in voters],
            reverse=True,
        )
        self.out.reads.extend(ld.release_reads(confirmed=acked[core.members.quorum() - 1]))

    # --- membership ----------------------------------------------------------------------

    def _change_refusal(self) -> str | None:
        """Why this leader may not append a membership change now (None: it may)."""
        core = self.core
        if not core.committed_in_term():
            # an uncommitted change of an earlier leader could still win over ours
            return "the leader has not committed an entry of its term yet; retry shortly"
        if core.configs.last_index > core.commit:
            return (
                f"the membership change at index {core.configs.last_index} is not "
                f"committed yet; one change at a time"
            )
        return None

    def _append(self, entries: list[Entry]) -> None:
        """Append this leader's own entries; a configuration among them is in force at once."""
        core = self.core
        core.log.append(entries)
        before = core.members
        core.configs.appended(entries)
        if core.members != before:
            self._members_changed()

    def _members_changed(self) -> None:
        """Follow a new configuration: replicate to new members, and count the new quorum
        (it may be smaller). A removed member is still sent the log until its removal
        commits, so that it learns it was removed."""
        core, ld = self.core, self.state
        for peer in core.members.all - {core.id} - ld.progress.keys():
            ld.progress[peer] = Progress(core.log.last_index)
        if ld.transfer_target is not None and ld.transfer_target not in core.members.voters:
            ld.abandon_transfer()
        if self.maybe_commit():
            self._release_reads()

    def _forget_removed_members(self) -> None:
        progress = self.state.progress
        for peer in progress.keys() - self.core.members.all:
            del progress[peer]

    def _leave(self) -> None:
        """This leader's removal is committed: hand leadership to a voter whose log is
        complete, if there is one, and step down."""
        best = self.most_caught_up_voter()
        if best is not None and self.state.progress[best].match == self.core.log.last_index:
            self._send(TimeoutNow(src=self.core.id, dst=best, term=self.core.term))
        self.step_down()

    # --- sending -------------------------------------------------------------------------

    def _maybe_send_timeout_now(self) -> None:
        ld = self.state
        target = ld.transfer_target
        if (
            target is None
            or ld.timeout_now_sent
            or ld.progress[target].match != self.core.log.last_index
        ):
            return
        # proposals stay refused until the target wins (and this node steps down) or
        # the transfer is abandoned
        self._send(TimeoutNow(src=self.core.id, dst=target, term=self.core.term))
        ld.timeout_now_sent = True

    def _broadcast_heartbeat(self) -> None:
        core, ld = self.core, self.state
        seq = ld.next_round()
        for peer, pr in ld.progress.items():
            self._send(
                Heartbeat(
                    src=core.id,
                    dst=peer,
                    term=core.term,
                    commit=min(pr.match, core.commit),
                    seq=seq,
                )
            )
        self._release_reads()

    def _send_appends(self, peer: NodeId, pr: Progress, *, commit_news: bool) -> None:
        """Send what the follower lacks, as far as its pacing allows. An empty
        AppendEntries that would carry only a commit index the follower has not been
        told goes when `commit_news` (once a tick): under load the next append carries
        it sooner, and a message, its acknowledgement and a wake-up of each side per
        commit are saved; the leader's own answers never wait for a follower to learn
        the commit, and a follower's read learns it from its heartbeat round."""
        core, cfg, log = self.core, self.core.config, self.core.log
        while pr.can_send(cfg.max_inflight):
            if pr.next - 1 < log.snapshot_index:
                self._send_snapshot(peer, pr)
                return
            # past a full window only the empty one asking about loss goes
            entries = [] if pr.window_full(cfg.max_inflight) else self._batch(pr.next)
            probing = pr.state is ReplicationState.PROBE and pr.match < pr.next - 1
            news = commit_news and core.commit > pr.sent_commit
            if not entries and not news and not probing and not pr.check_due:
                return
            prev_index = pr.next - 1
            prev_term = log.term(prev_index)
            assert prev_term is not None
            self._send(
                AppendEntries(
                    src=core.id,
                    dst=peer,
                    term=core.term,
                    prev_index=prev_index,
                    prev_term=prev_term,
                    entries=tuple(entries),
                    commit=core.commit,
                )
            )
            pr.sent_commit = core.commit
            pr.sent(prev_index + len(entries))
            if not entries:
                return

    def _batch(self, start: int) -> list[Entry]:
        cfg = self.core.config
        entries = self.core.log.slice(start, start + cfg.max_batch_entries)
        size = 0
        for k, entry in enumerate(entries):
            size += len(entry.data)
            if size > cfg.max_batch_bytes and k > 0:
                return entries[:k]
        return entries

    def _send_snapshot(self, peer: NodeId, pr: Progress) -> None:
        core = self.core
        meta = SnapshotMeta(
            core.log.snapshot_index,
            core.log.snapshot_term,
            core.members_at(core.log.snapshot_index),
        )
        pr.become_snapshot(meta.index)
        self._send(InstallSnapshot(src=core.id, dst=peer, term=core.term, meta=meta))

    def _send(self, m: Message) -> None:
        # a leader's own traffic in its term may go out while its disk write runs
        # (raft.py's notes): it promises nothing about this node's disk
        self.out.messages.append(m)
