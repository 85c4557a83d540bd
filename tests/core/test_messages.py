"""describe(message): one line per message, so a failing run reads as a transcript."""

from __future__ import annotations

from trioraft.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Members,
    Message,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
    describe,
)

ROUTE = {"src": "n1", "dst": "n2", "term": 3}


def test_every_message_type_reads_as_one_line() -> None:
    lines: list[tuple[Message, str]] = [
        (
            RequestVote(**ROUTE, last_log_index=7, last_log_term=2, pre_vote=True),
            "n1->n2 t3 RequestVote last 7/2 pre-vote",
        ),
        (RequestVoteResponse(**ROUTE, granted=False), "n1->n2 t3 RequestVoteResponse refused"),
        (
            AppendEntries(
                **ROUTE, prev_index=5, prev_term=3, entries=(Entry(3, 6), Entry(3, 7)), commit=4
            ),
            "n1->n2 t3 AppendEntries after 5/3 entries 6..7 commit 4",
        ),
        (
            AppendEntries(**ROUTE, prev_index=5, prev_term=3, entries=(), commit=5),
            "n1->n2 t3 AppendEntries after 5/3 no entries commit 5",
        ),
        (
            AppendEntriesResponse(**ROUTE, success=False, index=5, hint_index=3, hint_term=2),
            "n1->n2 t3 AppendEntriesResponse rejects 5 hint 3/2",
        ),
        (
            AppendEntriesResponse(**ROUTE, success=True, index=7),
            "n1->n2 t3 AppendEntriesResponse matches 7",
        ),
        (Heartbeat(**ROUTE, commit=4, seq=9), "n1->n2 t3 Heartbeat seq 9 commit 4"),
        (
            HeartbeatResponse(**ROUTE, seq=9, last_index=7),
            "n1->n2 t3 HeartbeatResponse seq 9 last 7",
        ),
        (
            InstallSnapshot(**ROUTE, meta=SnapshotMeta(20, 2, Members(frozenset({"n1"})))),
            "n1->n2 t3 InstallSnapshot snapshot 20/2",
        ),
        (TimeoutNow(**ROUTE), "n1->n2 t3 TimeoutNow"),
    ]
    for message, line in lines:
        assert describe(message) == line
