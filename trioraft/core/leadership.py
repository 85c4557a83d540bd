"""What a node tracks only while it leads: one `Leadership` per term it leads in.

The core creates a `Leadership` when the node wins an election and drops it the moment the
node steps down (`Raft.leadership` is None otherwise), so nothing a leader knew -- its
followers' progress, its ReadIndex rounds, a leadership transfer under way -- can be read
by a follower or carried into a later term. The core's leader code does the work; this
holds the state and the bookkeeping that needs nothing else.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import attrs

from trioraft.core.messages import NodeId
from trioraft.core.progress import Progress


@attrs.frozen
class ReadState:
    #: the caller's token, as given to read_index()
    ctx: Hashable
    #: serve the read once the state machine has applied this index
    index: int


class Leadership:
    def __init__(self, peers: Iterable[NodeId], next_index: int) -> None:
        """Leading from a log whose next index is `next_index`, with `peers` (the other
        members, voters and learners) to replicate to."""
        #: replication state per member other than this node
        self.progress = {peer: Progress(next_index) for peer in peers}
        #: ticks since the last heartbeat round went out
        self.heartbeat_elapsed = 0
        #: the heartbeat round last sent; ReadIndex counts answers to it
        self.read_seq = 0
        #: a read is waiting for a heartbeat round to be sent
        self.need_heartbeat = False
        #: a tick went by: the next flush tells each follower a commit index that no
        #: append carried to it meanwhile
        self.commit_news_due = False
        #: reads that arrived before an entry of this term was committed
        self.reads_waiting: list[Hashable] = []
        #: reads registered at (heartbeat round needed, ctx, read index)
        self.reads_pending: list[tuple[int, Hashable, int]] = []
        #: the follower leadership is being handed to, and for how long
        self.transfer_target: NodeId | None = None
        self.transfer_elapsed = 0
        #: TimeoutNow went to the transfer target
        self.timeout_now_sent = False
        #: command bytes this leader proposed that are not yet handed out to apply
        #: (uncommitted, or not yet durable here)
        self.uncommitted_bytes = 0
        #: the own write being waited for (the last index when the wait began; 0 when
        #: all is durable), and for how many ticks
        self.disk_wait_index = 0
        self.disk_wait_elapsed = 0

    def most_caught_up(self, voters: Iterable[NodeId]) -> NodeId | None:
        """The voter among `voters` (other than this node) whose log matches the most of
        ours; ties go to the lowest id."""
        return max(sorted(voters), key=lambda p: self.progress[p].match, default=None)

    def start_transfer(self, target: NodeId) -> None:
        self.transfer_target = target
        self.transfer_elapsed = 0
        self.timeout_now_sent = False

    def abandon_transfer(self) -> None:
        self.transfer_target = None
        self.timeout_now_sent = False

    def next_round(self) -> int:
        """A heartbeat round goes out now; returns its number."""
        self.read_seq += 1
        self.need_heartbeat = False
        return self.read_seq

    def register_read(self, ctx: Hashable, index: int) -> None:
        """A read at `index`, released once a heartbeat round sent after now is answered
        by a majority."""
        self.reads_pending.append((self.read_seq + 1, ctx, index))
        self.need_heartbeat = True

    def release_reads(self, confirmed: int) -> list[ReadState]:
        """The reads whose heartbeat round is at most `confirmed` (a majority answered it)."""
        pending = self.reads_pending
        released = [ReadState(ctx, index) for seq, ctx, index in pending if seq <= confirmed]
        self.reads_pending = [read for read in pending if read[0] > confirmed]
        return released

    def unserved_reads(self) -> list[Hashable]:
        """Every read not yet released: leadership is lost, and they must be retried."""
        return self.reads_waiting + [ctx for _, ctx, _ in self.reads_pending]
