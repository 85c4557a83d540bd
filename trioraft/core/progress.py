"""What a leader knows about one follower's log, and how it paces replication to it.

A follower is in one of three states:
- PROBE: its log position is unknown; one AppendEntries at a time finds where the logs
  meet (fast back-off uses the follower's hint); another is sent only after an answer or a
  heartbeat interval.
- REPLICATE: the logs meet at `match`; AppendEntries are pipelined optimistically,
  `next` runs ahead of `match`, at most `max_inflight` messages unanswered. Loss is
  found by asking, never guessed from timing: when a heartbeat round is answered while
  something sent before it is still unacknowledged, one more AppendEntries goes out at
  `next` (empty if there is nothing new), beyond the window. A follower that holds
  everything acknowledges it (which also makes up for lost acknowledgements); one that
  missed an AppendEntries rejects it, and only then does the leader probe again. Past a
  full window it is always empty: a follower that never answers (its disk hangs) gets
  no more entries than the window holds. The
  heartbeat answer itself cannot tell: it leaves before the follower's disk write, so
  it routinely overtakes the acknowledgements of entries the follower is writing.
- SNAPSHOT: the entries it needs are compacted away; a snapshot is on its way and
  nothing else is sent until it is answered.
"""

from __future__ import annotations

import enum
from collections import deque


class ReplicationState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    def __init__(self, next_index: int) -> None:
        #: the highest index known to be in the follower's log and equal to ours
        #: (invariant: match < next)
        self.match = 0
        #: the next index to send
        self.next = next_index
        self.state = ReplicationState.PROBE
        #: PROBE only: an AppendEntries is unanswered; send no other until an answer
        #: or the next heartbeat interval
        self.probe_sent = False
        #: REPLICATE only: the last index carried by each unanswered AppendEntries
        self.inflight: deque[int] = deque()
        #: SNAPSHOT only: the index of the snapshot being sent
        self.snapshot_index = 0
        #: heard from in the current CheckQuorum period
        self.recent_active = False
        #: the highest heartbeat round this follower has answered in the current term
        self.acked_seq = 0
        #: the heartbeat round of the last heartbeat interval, and `next - 1` when it was
        #: sent: once it is answered, every AppendEntries up to there has arrived or was
        #: lost, and an acknowledgement still missing may be a loss to ask about
        self.hb_seq = 0
        self.hb_expected_last = 0
        #: REPLICATE only: send one AppendEntries at `next` even if the window is full
        #: or there is nothing new, to find out whether anything was lost
        self.check_due = False
        #: the highest commit index sent to this follower
        self.sent_commit = 0
        #: learners only: ticks this learner has been within a few entries of the leader
        self.caught_up_ticks = 0

    def become_probe(self) -> None:
        # after a snapshot, start probing just past it
        self.next = max(self.match + 1, self.snapshot_index + 1)
        self.state = ReplicationState.PROBE
        self.probe_sent = False
        self._clear_window()
        self.snapshot_index = 0

    def become_replicate(self) -> None:
        self.state = ReplicationState.REPLICATE
        self.next = self.match + 1
        self._clear_window()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ReplicationState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self._clear_window()

    def _clear_window(self) -> None:
        self.inflight.clear()
        self.check_due = False

    def heartbeat_interval_passed(self, seq: int) -> None:
        """Heartbeat round `seq` went out at the end of a heartbeat interval."""
        self.probe_sent = False
        self.hb_seq = seq
        self.hb_expected_last = self.next - 1

    def heartbeat_answered(self, seq: int) -> None:
        """The follower answered heartbeat round `seq`."""
        self.acked_seq = max(self.acked_seq, seq)
        if self.state is ReplicationState.PROBE:
            self.probe_sent = False
        elif (
            self.state is ReplicationState.REPLICATE
            and seq == self.hb_seq
            and self.match < self.hb_expected_last
        ):
            self.check_due = True

    def sent(self, last_index: int) -> None:
        """Record an AppendEntries carrying entries up to `last_index`."""
        if self.state is ReplicationState.REPLICATE:
            if last_index >= self.next:  # an empty one takes no room in the window
                self.inflight.append(last_index)
            self.next = last_index + 1
            self.check_due = False
        elif self.state is ReplicationState.PROBE:
            self.probe_sent = True

    def acked(self, index: int) -> bool:
        """The follower holds our log up to `index`. Returns whether match moved."""
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        if index <= self.match:
            return False
        self.match = index
        self.next = max(self.next, index + 1)
        self.probe_sent = False
        return True

    def window_full(self, max_inflight: int) -> bool:
        return self.state is ReplicationState.REPLICATE and len(self.inflight) >= max_inflight

    def can_send(self, max_inflight: int) -> bool:
        if self.state is ReplicationState.PROBE:
            return not self.probe_sent
        if self.state is ReplicationState.REPLICATE:
            return not self.window_full(max_inflight) or self.check_due
        return False
