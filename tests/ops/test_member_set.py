"""The member set a node's data dir records against the one its config file lists. The
data dir wins: membership changes at run time, so the file's members only bootstrap an
empty data dir; a node whose data dir records other members says so (never silently)
and keeps the recorded ones, so that it never counts another quorum than the rest."""

from __future__ import annotations

from pathlib import Path

from trioraft.core.membership import encode_members
from trioraft.core.messages import Entry, EntryKind, Members, SnapshotMeta
from trioraft.ops.daemon import members_mismatch, recorded_members

FILE = Path("/etc/trioraft/n1.toml")
THREE = Members(frozenset({"n1", "n2", "n3"}))
FOUR = Members(frozenset({"n1", "n2", "n3"}), frozenset({"n4"}))


def config_entry(index: int, members: Members) -> Entry:
    return Entry(1, index, EntryKind.CONFIG, encode_members(members))


def test_an_empty_data_dir_records_no_members_and_the_file_bootstraps() -> None:
    assert recorded_members(None, [Entry(1, 1)]) is None
    assert members_mismatch(FILE, THREE, None) is None


def test_the_newest_configuration_entry_beats_the_snapshot() -> None:
    snapshot = SnapshotMeta(5, 1, THREE)
    entries = [Entry(1, 5), config_entry(6, FOUR), Entry(1, 7)]
    assert recorded_members(snapshot, entries) == FOUR
    assert recorded_members(snapshot, [Entry(1, 6)]) == THREE
    assert recorded_members(None, [config_entry(1, FOUR)]) == FOUR


def test_other_members_in_the_file_are_named_in_a_warning_and_not_used() -> None:
    warning = members_mismatch(FILE, Members(frozenset({"n1", "n2", "n3", "n4", "n5"})), FOUR)
    assert warning == (
        f"{FILE}: members lists n1, n2, n3, n4, n5, but this node's data dir records the "
        "members n1, n2, n3 (learners n4): the data dir's members are used (members only "
        "bootstraps an empty data dir; `trioraft member` changes membership)"
    )
    assert members_mismatch(FILE, THREE, THREE) is None
