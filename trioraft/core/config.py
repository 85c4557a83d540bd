"""The core's tuning: timeouts in ticks, batching and pacing limits, learner promotion."""

from __future__ import annotations

import attrs


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
