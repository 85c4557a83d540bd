"""Snapshot files, snapshot transfers, and the rule that the snapshot and the log meet."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from trioraft.core.messages import Entry, HardState, MemberAddress, Members, SnapshotMeta
from trioraft.storage import (
    ChunkOffsetError,
    CorruptionError,
    DataDir,
    DataDirError,
    LogMismatchError,
    SnapshotStore,
    SnapshotTransferError,
    StaleSnapshotError,
    StorageError,
    WriteAheadLog,
    check_data_dir,
    open_storage,
    snapshots,
)
from trioraft.storage.snapshots import encode_header, read_header

MEMBERS = Members(frozenset({"n1", "n2", "nœud-3"}), frozenset({"n4"}))


def meta(index: int, term: int = 1, members: Members = MEMBERS) -> SnapshotMeta:
    return SnapshotMeta(index, term, members)


def blob(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(size))


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def tree(path: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"x%d" % i) for i in range(first, last + 1)]


# --- writing and loading --------------------------------------------------------------------


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap")
    assert store.latest() is None and store.load_latest() is None
    data = blob(100_000)
    path = store.write(meta(500, 3), data)
    assert path.name == "00000000000000000500-00000000000000000003.snap"
    assert store.latest() == meta(500, 3)
    assert store.load_latest() == (meta(500, 3), data)
    assert store.load(path) == (meta(500, 3), data)
    header = read_header(path)
    assert (header.size, header.crc) == (len(data), zlib.crc32(data))
    assert path.stat().st_size == header.data_offset + len(data)


#: a snapshot file of 5 bytes of data at (500, 3), voters n1 and n2, learner n4, with
#: their addresses: magic, format version, header length, index, term, data size, data
#: crc, the configuration (msgpack, as a configuration entry holds it), the header's crc,
#: then the data
SNAPSHOT_FILE = (
    "5452494f534e4150"
    "02000000"
    "79000000"
    "f401000000000000"
    "0300000000000000"
    "0500000000000000"
    "fbd293a3"
    "93"
    "92a26e31a26e32"
    "91a26e34"
    "93"
    "93a26e31a76e313a37303030a76e313a36333739"
    "93a26e32a76e323a37303030a76e323a36333739"
    "93a26e34a76e343a37303030a76e343a36333739"
    "ba513994"
    "7374617465"
)

#: the same snapshot in format version 1, which kept the members' ids only: voter and
#: learner counts, then each id after its length
SNAPSHOT_FILE_V1 = (
    "5452494f534e4150"
    "01000000"
    "44000000"
    "f401000000000000"
    "0300000000000000"
    "0500000000000000"
    "fbd293a3"
    "02000000"
    "01000000"
    "02006e31"
    "02006e32"
    "02006e34"
    "a8d04b83"
    "7374617465"
)

ADDRESSED = Members(
    frozenset({"n1", "n2"}),
    frozenset({"n4"}),
    tuple((node, MemberAddress(f"{node}:7000", f"{node}:6379")) for node in ("n1", "n2", "n4")),
)


def test_the_file_format_is_fixed(tmp_path: Path) -> None:
    """Fixed bytes, so a change of the on-disk format cannot pass unnoticed (a new version
    must read an old snapshot; see docs/data-format.md)."""
    at = meta(500, 3, ADDRESSED)
    written = SnapshotStore(tmp_path / "written").write(at, b"state")
    assert written.read_bytes().hex() == SNAPSHOT_FILE
    old = tmp_path / "old"
    old.mkdir()
    (old / written.name).write_bytes(bytes.fromhex(SNAPSHOT_FILE))
    assert SnapshotStore(old).load_latest() == (at, b"state")


def test_a_version_1_file_loads_with_its_members_and_no_addresses(tmp_path: Path) -> None:
    path = tmp_path / snapshots.snapshot_name(500, 3)
    path.write_bytes(bytes.fromhex(SNAPSHOT_FILE_V1))
    members = Members(frozenset({"n1", "n2"}), frozenset({"n4"}))
    assert SnapshotStore(tmp_path).load_latest() == (meta(500, 3, members), b"state")


def test_write_from_chunks_and_empty_data(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    chunks = [blob(1000, seed) for seed in range(10)]
    store.write(meta(7, 2, Members(frozenset({"a"}))), iter(chunks))
    assert store.load_latest() == (meta(7, 2, Members(frozenset({"a"}))), b"".join(chunks))
    store.write(meta(8, 2), b"")
    assert store.load_latest() == (meta(8, 2), b"")


def test_order_is_by_index_then_term(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=5)
    for index, term in [(9, 1), (10, 1), (100, 1), (100, 2)]:
        store.write(meta(index, term), b"%d" % index)
    assert store.latest() == meta(100, 2)
    assert files(tmp_path)[0].startswith("00000000000000000009-")


def test_keep_prunes_older_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    for index in range(1, 6):
        store.write(meta(index * 10), blob(10, index))
    assert [read_header(tmp_path / n).meta.index for n in files(tmp_path)] == [40, 50]
    assert store.load_latest() == (meta(50), blob(10, 5))
    # a store opened with a smaller keep prunes at once
    SnapshotStore(tmp_path, keep=1)
    assert [read_header(tmp_path / n).meta.index for n in files(tmp_path)] == [50]
    with pytest.raises(ValueError, match="keep"):
        SnapshotStore(tmp_path, keep=0)


def test_older_snapshots_are_refused_and_the_newest_is_replaced(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(meta(50, 2), b"first")
    with pytest.raises(StaleSnapshotError, match="older than the newest"):
        store.write(meta(40, 5), b"old")
    with pytest.raises(StaleSnapshotError):
        store.write(meta(50, 1), b"old")
    with pytest.raises(StaleSnapshotError):
        store.receiver(meta(49), 10, 0)
    store.write(meta(50, 2), b"second")
    assert store.load_latest() == (meta(50, 2), b"second")
    assert len(files(tmp_path)) == 1


def test_fsync_off_never_calls_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    store = SnapshotStore(tmp_path / "snap", fsync=False, keep=1)
    store.write(meta(1), b"a")
    store.write(meta(2), b"b")
    with store.receiver(meta(3), 1, zlib.crc32(b"c")) as receiver:
        receiver.write(0, b"c")
        receiver.finish()
    assert calls == []
    assert store.load_latest() == (meta(3), b"c")


def test_fsync_sequence_of_a_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temp file is fsynced before the rename, the directory after it and after the
    prune."""
    store = SnapshotStore(tmp_path, keep=1)
    store.write(meta(1), b"old")
    steps: list[str] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        steps.append("rename")
        real_replace(src, dst)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        steps.append("delete")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    store.write(meta(2), b"new")
    assert steps == ["fsync file", "rename", "fsync dir", "delete", "fsync dir"]


# --- damage ------------------------------------------------------------------------------


def test_damage_anywhere_in_the_header(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(meta(12, 3), blob(64))
    original = path.read_bytes()
    length = read_header(path).data_offset
    for position in range(length):
        data = bytearray(original)
        data[position] ^= 0x20
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptionError) as info:
            store.latest()
        assert info.value.path == path
        assert info.value.offset in (0, 12), position
        assert str(info.value).startswith(f"{path}: damaged snapshot at byte offset ")
        with pytest.raises(CorruptionError):
            store.load_latest()


def test_damage_in_the_data(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(meta(12), blob(5000))
    offset = read_header(path).data_offset
    data = bytearray(path.read_bytes())
    data[offset + 4321] ^= 0x01
    path.write_bytes(bytes(data))
    assert store.latest() == meta(12), "latest() reads only the header"
    with pytest.raises(CorruptionError, match="data checksum mismatch") as info:
        store.load_latest()
    assert (info.value.path, info.value.offset) == (path, offset)
    assert str(info.value).startswith(f"{path}: damaged snapshot at byte offset {offset}: ")


def test_wrong_length_is_damage(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(meta(12), blob(5000))
    offset = read_header(path).data_offset
    original = path.read_bytes()
    path.write_bytes(original[:-100])
    with pytest.raises(CorruptionError, match="ends after 4900 of 5000 bytes") as info:
        store.latest()
    assert info.value.offset == offset + 4900
    path.write_bytes(original + b"\0" * 3)
    with pytest.raises(CorruptionError, match="3 bytes follow the end") as info:
        store.latest()
    assert info.value.offset == offset + 5000
    path.write_bytes(original[:10])
    with pytest.raises(CorruptionError, match="too short") as info:
        store.latest()
    assert info.value.offset == 0


def test_header_must_match_the_file_name(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(meta(12, 3), b"data")
    wrong = path.rename(tmp_path / snapshots.snapshot_name(13, 3))
    with pytest.raises(CorruptionError, match="file name says index 13, term 3") as info:
        store.latest()
    assert (info.value.path, info.value.offset) == (wrong, 16)


def test_unknown_format_version(tmp_path: Path) -> None:
    path = tmp_path / snapshots.snapshot_name(5, 1)
    header = bytearray(encode_header(meta(5), 0, 0))
    struct.pack_into("<I", header, 8, 3)
    struct.pack_into("<I", header, len(header) - 4, zlib.crc32(header[:-4]))
    path.write_bytes(bytes(header))
    with pytest.raises(DataDirError, match="snapshot format version 3 is not supported"):
        SnapshotStore(tmp_path).latest()


# --- crashes while writing -----------------------------------------------------------------


class Crash(BaseException):
    """The process dies here."""


def crash(*args: object, **kwargs: object) -> None:
    raise Crash


@pytest.mark.parametrize(
    "step",
    ["writing data", "fsync of the file", "rename", "fsync of the directory", "prune"],
)
def test_a_crash_at_any_step_of_a_write_leaves_a_consistent_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    store.write(meta(10), b"ten")
    store.write(meta(20), b"twenty")

    def chunks() -> Iterator[bytes]:
        yield b"thir"
        raise Crash

    with monkeypatch.context() as m:
        if step == "fsync of the file":
            m.setattr(snapshots, "fsync_fd", crash)
        elif step == "rename":
            m.setattr(os, "replace", crash)
        elif step == "fsync of the directory":
            m.setattr(snapshots, "fsync_dir", crash)
        elif step == "prune":
            m.setattr(snapshots, "_remove", crash)
        with pytest.raises(Crash):
            store.write(meta(30), chunks() if step == "writing data" else b"thirty")
    # a crash may leave the temp file whatever the cleanup did
    (tmp_path / "00000000000000000030-00000000000000000001.snap.tmp").write_bytes(b"torn")

    reopened = SnapshotStore(tmp_path, keep=2)
    assert not [n for n in files(tmp_path) if not n.endswith(".snap")]
    assert len(files(tmp_path)) == 2
    loaded = reopened.load_latest()
    if step in ("fsync of the directory", "prune"):
        assert loaded == (meta(30), b"thirty")
    else:
        assert loaded == (meta(20), b"twenty")


# --- reading in chunks ---------------------------------------------------------------------


def test_reader_reads_by_offset(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=1)
    data = blob(10_000)
    store.write(meta(5), data)
    with store.open_reader(meta(5)) as reader:
        assert (reader.size, reader.crc, reader.meta) == (10_000, zlib.crc32(data), meta(5))
        assert reader.read(9_000, 4096) == data[9_000:]
        assert reader.read(10_000, 10) == b""
        assert reader.read(123, 77) == data[123:200]
        with pytest.raises(ValueError):
            reader.read(10_001, 1)
        # pruning the file does not disturb a transfer in progress
        store.write(meta(6), b"newer")
        assert reader.read(0, 10_000) == data
    with pytest.raises(StorageError, match="closed"):
        reader.read(0, 1)
    with pytest.raises(StorageError, match="cannot open"):
        store.open_reader(meta(5))
    with pytest.raises(StorageError, match="holds the members"):
        store.open_reader(meta(6, members=Members(frozenset({"x"}))))


def test_reader_checks_the_data_read_in_order(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    path = store.write(meta(5), blob(10_000))
    offset = read_header(path).data_offset
    data = bytearray(path.read_bytes())
    data[offset + 9_999] ^= 0xFF
    path.write_bytes(bytes(data))
    with store.open_reader(meta(5)) as reader:
        reader.read(0, 4_000)
        reader.read(4_000, 4_000)
        with pytest.raises(CorruptionError, match="data checksum mismatch") as info:
            reader.read(8_000, 4_000)
    assert (info.value.path, info.value.offset) == (path, offset)


# --- receiving ------------------------------------------------------------------------------


def send(receiver: snapshots.SnapshotReceiver, data: bytes, chunk: int = 1000) -> None:
    offset = receiver.received
    while offset < len(data):
        receiver.write(offset, data[offset : offset + chunk])
        offset += len(data[offset : offset + chunk])


def test_receive_in_chunks(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(meta(10), b"old")
    data = blob(25_000)
    with store.receiver(meta(90, 4), len(data), zlib.crc32(data)) as receiver:
        assert receiver.received == 0
        send(receiver, data, 4096)
        assert receiver.received == len(data)
        path = receiver.finish()
    assert path == tmp_path / snapshots.snapshot_name(90, 4)
    assert store.load_latest() == (meta(90, 4), data)
    assert len(files(tmp_path)) == 2
    with pytest.raises(StorageError, match="closed"):
        receiver.write(len(data), b"")


@pytest.mark.parametrize("stop", [0, 1, 999, 1000, 1001, 2500, 4999, 5000])
def test_receiver_resumes_after_abort(tmp_path: Path, stop: int) -> None:
    store = SnapshotStore(tmp_path)
    data = blob(5000)
    first = store.receiver(meta(30), len(data), zlib.crc32(data))
    first.write(0, data[:stop])
    first.abort()
    first.abort()
    second = store.receiver(meta(30), len(data), zlib.crc32(data))
    assert second.received == stop
    send(second, data, 700)
    second.finish()
    assert store.load_latest() == (meta(30), data)
    assert files(tmp_path) == [snapshots.snapshot_name(30, 1)]


def test_wrong_offset_and_too_much_data(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    data = blob(3000)
    with store.receiver(meta(30), len(data), zlib.crc32(data)) as receiver:
        receiver.write(0, data[:1000])
        for offset in (0, 999, 1001, 5000):
            with pytest.raises(ChunkOffsetError, match="must start at offset 1000") as info:
                receiver.write(offset, data[offset : offset + 10])
            assert (info.value.expected, info.value.offset) == (1000, offset)
        with pytest.raises(SnapshotTransferError, match="runs past the announced size"):
            receiver.write(1000, data[1000:] + b"extra")
        assert receiver.received == 1000
        with pytest.raises(SnapshotTransferError, match="only 1000 of 3000 bytes"):
            receiver.finish()
    # an incomplete transfer is kept for a resume
    with store.receiver(meta(30), len(data), zlib.crc32(data)) as receiver:
        assert receiver.received == 1000


def test_checksum_mismatch_at_finish(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write(meta(10), b"old")
    data = blob(3000)
    receiver = store.receiver(meta(30), len(data), zlib.crc32(data) ^ 1)
    send(receiver, data)
    with pytest.raises(SnapshotTransferError, match="does not match the announced"):
        receiver.finish()
    assert files(tmp_path) == [snapshots.snapshot_name(10, 1)]
    assert store.load_latest() == (meta(10), b"old")


def test_a_partial_file_of_another_transfer_is_not_continued(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    data = blob(3000)
    receiver = store.receiver(meta(30), len(data), zlib.crc32(data))
    receiver.write(0, data[:1000])
    receiver.abort()
    # the same snapshot announced with other data starts over
    other = blob(3000, seed=1)
    receiver = store.receiver(meta(30), len(other), zlib.crc32(other))
    assert receiver.received == 0
    receiver.write(0, other[:500])
    receiver.abort()
    # another snapshot removes the partial file
    receiver = store.receiver(meta(40), len(data), zlib.crc32(data))
    assert receiver.received == 0
    assert files(tmp_path) == [snapshots.snapshot_name(40, 1) + ".part"]
    receiver.write(0, data[:10])
    receiver.abort()
    # a restart removes it too: its bytes were never fsynced
    SnapshotStore(tmp_path)
    assert files(tmp_path) == []


def test_receiver_refuses_a_snapshot_older_than_one_written_meanwhile(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    receiver = store.receiver(meta(30), 1, zlib.crc32(b"x"))
    receiver.write(0, b"x")
    store.write(meta(40), b"local")
    with pytest.raises(StaleSnapshotError):
        receiver.finish()
    receiver.abort()
    assert store.load_latest() == (meta(40), b"local")


# --- the snapshot and the log meet ------------------------------------------------------------


def make_node(
    path: Path,
    *,
    snapshot: SnapshotMeta | None = None,
    log: list[Entry] | None = None,
    reset: tuple[int, int] | None = None,
    compact: int | None = None,
) -> Path:
    """A data dir with a snapshot, a log restarted after `reset` and then holding `log`,
    compacted up to `compact`."""
    with DataDir.open(path, node_id="n1", cluster_token="t") as data_dir:
        if snapshot is not None:
            SnapshotStore(data_dir.snap_dir).write(snapshot, b"state@%d" % snapshot.index)
        with WriteAheadLog.open(data_dir.wal_dir, segment_bytes=200)[0] as wal:
            wal.set_hard_state(HardState(4, "n2"))
            if reset is not None:
                wal.reset(*reset)
            for entry in log or []:
                wal.append([entry])
            if compact is not None:
                wal.compact(compact)
    return path


def test_log_after_the_snapshot(tmp_path: Path) -> None:
    path = make_node(tmp_path, snapshot=meta(50, 2), reset=(50, 2), log=entries(51, 60, 3))
    wal, store, restored = open_storage(path)
    with wal:
        assert restored.snapshot == (meta(50, 2), b"state@50")
        assert restored.entries == entries(51, 60, 3)
        assert restored.hard_state == HardState(4, "n2")
        assert not restored.restarted and restored.warnings == []
        assert store.latest() == meta(50, 2)
    assert check_data_dir(path).snapshot_index == 50


def test_log_overlapping_the_snapshot(tmp_path: Path) -> None:
    path = make_node(tmp_path, snapshot=meta(50, 1), log=entries(1, 80), compact=40)
    first = check_data_dir(path).first_index
    assert first is not None and 1 < first <= 41
    wal, _, restored = open_storage(path)
    with wal:
        assert restored.entries == entries(51, 80)
        assert not restored.restarted
        assert wal.last_index == 80


def test_no_snapshot_and_a_log_from_index_1(tmp_path: Path) -> None:
    path = make_node(tmp_path, log=entries(1, 5))
    wal, _, restored = open_storage(path)
    with wal:
        assert restored.snapshot is None and restored.entries == entries(1, 5)
    report = check_data_dir(path)
    assert report.snapshot_index is None and report.last_index == 5


@pytest.mark.parametrize("log", [[], entries(1, 30)])
def test_an_interrupted_install_is_completed(tmp_path: Path, log: list[Entry]) -> None:
    """The snapshot from the leader is on disk, but the crash came before the log was
    restarted after it: the log ends before the snapshot."""
    path = make_node(tmp_path, snapshot=meta(500, 7), log=log)
    assert check_data_dir(path).snapshot_index == 500
    wal, _, restored = open_storage(path, segment_bytes=200)
    with wal:
        assert restored.restarted == bool(log)
        assert restored.entries == []
        wal.append(entries(501, 502, 7))
    wal, recovery = WriteAheadLog.open(path / "wal")
    with wal:
        assert recovery.entries == entries(501, 502, 7)
        assert recovery.hard_state == HardState(4, "n2")
        if log:
            assert recovery.start == (500, 7)
            assert len(list((path / "wal").iterdir())) == 1, "the dead segments were deleted"


def test_a_conflicting_log_is_discarded(tmp_path: Path) -> None:
    """The log holds the snapshot's index with another term: its entries after it are
    from another history."""
    path = make_node(tmp_path, snapshot=meta(20, 5), log=entries(1, 30, term=4))
    wal, _, restored = open_storage(path)
    with wal:
        assert restored.restarted and restored.entries == []
        assert wal.last_index == 20


def test_missing_entries_between_snapshot_and_log(tmp_path: Path) -> None:
    path = make_node(tmp_path, snapshot=meta(500, 2), reset=(899, 2), log=entries(900, 910, 2))
    snap = path / "snap" / snapshots.snapshot_name(500, 2)
    expected = (
        f"{path / 'wal'}: the log starts at index 900 but the newest snapshot {snap} "
        "ends at 500: entries 501..899 are missing"
    )
    with pytest.raises(LogMismatchError) as info:
        open_storage(path)
    assert str(info.value) == expected
    with pytest.raises(LogMismatchError) as info:
        check_data_dir(path)
    assert str(info.value) == expected
    # the failed open released the log
    with pytest.raises(LogMismatchError):
        open_storage(path)


def test_a_compacted_log_needs_a_snapshot(tmp_path: Path) -> None:
    path = make_node(tmp_path / "a", log=entries(1, 40), compact=20)
    with pytest.raises(
        LogMismatchError, match=r"holds no snapshot: entries 1\.\.\d+ are missing"
    ) as info:
        open_storage(path)
    assert str(path / "wal") in str(info.value)

    path = make_node(tmp_path / "b", reset=(70, 2), log=entries(71, 72, 2))
    with pytest.raises(
        LogMismatchError, match=r"starts at index 71 .* entries 1\.\.70 are missing"
    ):
        check_data_dir(path)


def test_check_validates_every_snapshot(tmp_path: Path) -> None:
    path = make_node(tmp_path, snapshot=meta(10), log=entries(1, 12))
    store = SnapshotStore(path / "snap", keep=3)
    older = path / "snap" / snapshots.snapshot_name(10, 1)
    store.write(meta(11), blob(3000))
    (path / "snap" / (snapshots.snapshot_name(12, 1) + ".part")).write_bytes(b"ignored")
    before = tree(path)
    report = check_data_dir(path)
    assert tree(path) == before
    assert report.snapshot_index == 11

    data = bytearray(older.read_bytes())
    data[-1] ^= 0x04
    older.write_bytes(bytes(data))
    before = tree(path)
    with pytest.raises(CorruptionError, match="data checksum mismatch") as info:
        check_data_dir(path)
    assert (info.value.path, info.value.offset) == (older, read_header(older).data_offset)
    assert tree(path) == before
