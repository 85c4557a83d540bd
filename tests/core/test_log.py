"""RaftLog: the in-memory log after the last snapshot, and its unstable tail."""

from __future__ import annotations

import pytest
from harness.core_cluster import log_of

from trioraft.core.log import RaftLog
from trioraft.core.messages import Entry


def log_with(*terms: int, snapshot_index: int = 0, snapshot_term: int = 0) -> RaftLog:
    """A log after a snapshot at (snapshot_index, snapshot_term), then entries of `terms`."""
    log = RaftLog(snapshot_index, snapshot_term)
    log.append(log_of(*terms, start=snapshot_index + 1))
    return log


def test_empty_log_knows_term_zero_at_index_zero() -> None:
    log = RaftLog()
    assert (log.first_index, log.last_index, log.last_term) == (1, 0, 0)
    assert log.term(0) == 0


def test_term_at_snapshot_index_is_snapshot_term() -> None:
    log = log_with(3, 3, snapshot_index=5, snapshot_term=2)
    assert log.term(5) == 2


def test_term_just_after_snapshot_is_first_entry_term() -> None:
    log = log_with(3, 4, snapshot_index=5, snapshot_term=2)
    assert (log.term(6), log.term(7)) == (3, 4)


def test_term_below_snapshot_is_unknown() -> None:
    log = log_with(3, snapshot_index=5, snapshot_term=2)
    assert log.term(4) is None


def test_term_beyond_last_index_is_unknown() -> None:
    log = log_with(3, snapshot_index=5, snapshot_term=2)
    assert log.term(7) is None


def test_empty_log_after_snapshot_ends_at_snapshot() -> None:
    log = RaftLog(5, 2)
    assert (log.first_index, log.last_index, log.last_term) == (6, 5, 2)


def test_slice_returns_entries_lo_to_hi_exclusive() -> None:
    log = log_with(1, 1, 2, 2)
    assert [e.index for e in log.slice(2, 4)] == [2, 3]


def test_slice_is_clamped_to_entries_held() -> None:
    log = log_with(1, 1, snapshot_index=3, snapshot_term=1)
    assert [e.index for e in log.slice(1, 100)] == [4, 5]


def test_slice_entirely_inside_snapshot_is_empty() -> None:
    log = log_with(1, snapshot_index=3, snapshot_term=1)
    assert log.slice(1, 3) == []


def test_append_out_of_order_is_refused() -> None:
    log = log_with(1, 1)
    with pytest.raises(AssertionError):
        log.append(log_of(1, start=4))


@pytest.mark.parametrize(
    ("last_index", "last_term", "expected"),
    [
        (3, 2, True),  # the same log end
        (9, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (1, 3, True),  # newer last term wins over length
        (9, 1, False),  # older last term loses despite length
    ],
)
def test_up_to_date_compares_last_term_then_last_index(
    last_index: int, last_term: int, expected: bool
) -> None:
    log = log_with(1, 2, 2)
    assert log.is_up_to_date(last_index, last_term) is expected


def test_merge_appends_entries_past_the_end() -> None:
    log = log_with(1, 1)
    assert log.merge(2, log_of(2, 2, start=3)) is None
    assert [e.term for e in log.entries] == [1, 1, 2, 2]


def test_merge_keeps_entries_already_present_with_same_term() -> None:
    log = log_with(1, 1, 2)
    log.take_unstable()
    assert log.merge(0, log_of(1, 1)) is None
    assert [e.term for e in log.entries] == [1, 1, 2]
    assert log.take_unstable() == []


def test_merge_cuts_the_tail_at_the_first_conflict() -> None:
    log = log_with(1, 1, 2, 2)
    assert log.merge(1, log_of(1, 3, start=2)) == 3
    assert [e.term for e in log.entries] == [1, 1, 3]


def test_merge_conflict_makes_the_replacement_unstable() -> None:
    log = log_with(1, 1, 2, 2)
    log.take_unstable()
    log.merge(2, log_of(3, start=3))
    assert log.take_unstable() == [Entry(3, 3, data=b"3")]


def test_merge_skips_entries_folded_into_the_snapshot() -> None:
    log = log_with(2, snapshot_index=3, snapshot_term=1)
    assert log.merge(1, log_of(1, 1, 2, 2, start=2)) is None
    assert [(e.index, e.term) for e in log.entries] == [(4, 2), (5, 2)]


def test_take_unstable_hands_each_entry_out_once() -> None:
    log = log_with(1, 1)
    assert [e.index for e in log.take_unstable()] == [1, 2]
    log.append(log_of(1, start=3))
    assert [e.index for e in log.take_unstable()] == [3]
    assert log.take_unstable() == []


def test_compact_drops_the_head_and_remembers_its_last_term() -> None:
    log = log_with(1, 2, 2, 3)
    log.compact(3)
    assert (log.snapshot_index, log.snapshot_term, log.first_index) == (3, 2, 4)
    assert [e.index for e in log.entries] == [4]


def test_compact_at_or_below_snapshot_changes_nothing() -> None:
    log = log_with(2, snapshot_index=3, snapshot_term=1)
    log.compact(2)
    assert (log.snapshot_index, log.snapshot_term, len(log.entries)) == (3, 1, 1)


def test_compact_beyond_the_end_is_refused() -> None:
    log = log_with(1, 1)
    with pytest.raises(AssertionError):
        log.compact(3)


def test_reset_replaces_the_log_by_a_snapshot() -> None:
    log = log_with(1, 1, 2)
    log.reset(7, 4)
    assert (log.snapshot_index, log.snapshot_term, log.last_index, log.last_term) == (7, 4, 7, 4)
    assert log.entries == []
    assert log.take_unstable() == []
