"""The record format of the write-ahead log.

A segment file is a sequence of records, each a 12-byte header and a payload:

    offset  size  field
    0       4     payload length n (u32)
    4       4     crc32 of bytes 0..4, the length field (u32)
    8       4     crc32 of the payload (u32)
    12      n     payload

The payload starts with a type byte:

    ENTRY (1)       term u64, index u64, kind u8, then the entry's data to the end
    HARD_STATE (2)  term u64, vote length u16, then the vote as utf-8 (length 0: no vote)
    LOG_START (3)   index u64, term u64: the log restarts after (index, term), which a
                    snapshot covers; every entry before the record is forgotten

Integers are little-endian; crc32 is zlib's (IEEE 802.3 polynomial). The length has its own
checksum so that a damaged length is recognised before it is used to find the payload.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import attrs

from trioraft.core.messages import Entry, EntryKind, HardState

#: record type byte: a log entry
ENTRY = 1
#: record type byte: the node's term and vote
HARD_STATE = 2
#: record type byte: the log restarts after a snapshot
LOG_START = 3

HEADER = struct.Struct("<III")
HEADER_SIZE = HEADER.size
_LENGTH = struct.Struct("<I")
_ENTRY_HEAD = struct.Struct("<BQQB")
_HARD_STATE_HEAD = struct.Struct("<BQH")
_LOG_START = struct.Struct("<BQQ")
_KINDS = {kind.value: kind for kind in EntryKind}


@attrs.frozen
class LogStart:
    """The log restarts after (index, term): the next entry is index + 1."""

    #: the last index the snapshot the log restarts after covers, at least 1
    index: int
    #: the term of the entry at `index`
    term: int


def encode_entries(entries: Sequence[Entry]) -> bytes:
    """One blob holding a record for each entry, in order."""
    parts: list[bytes] = []
    add = parts.append
    crc32 = zlib.crc32
    pack_head = _ENTRY_HEAD.pack
    pack_header = HEADER.pack
    pack_length = _LENGTH.pack
    for entry in entries:
        head = pack_head(ENTRY, entry.term, entry.index, entry.kind)
        data = entry.data
        n = len(head) + len(data)
        add(pack_header(n, crc32(pack_length(n)), crc32(data, crc32(head))))
        add(head)
        add(data)
    return b"".join(parts)


def encode_hard_state(hard_state: HardState) -> bytes:
    """The record for one hard state."""
    vote = b"" if hard_state.vote is None else hard_state.vote.encode("utf-8")
    if hard_state.vote is not None and not vote:
        raise ValueError("a vote must name a node: the empty id is not allowed")
    payload = _HARD_STATE_HEAD.pack(HARD_STATE, hard_state.term, len(vote)) + vote
    n = len(payload)
    return HEADER.pack(n, zlib.crc32(_LENGTH.pack(n)), zlib.crc32(payload)) + payload


def encode_log_start(start: LogStart) -> bytes:
    """The record restarting the log after `start`."""
    if start.index < 1 or start.term < 0:
        raise ValueError(f"a log cannot restart after index {start.index}, term {start.term}")
    payload = _LOG_START.pack(LOG_START, start.index, start.term)
    n = len(payload)
    return HEADER.pack(n, zlib.crc32(_LENGTH.pack(n)), zlib.crc32(payload)) + payload


def length_checksum_ok(data: bytes, offset: int, checksum: int) -> bool:
    """Whether the length field of the header at `offset` matches its checksum."""
    return zlib.crc32(data[offset : offset + _LENGTH.size]) == checksum


def decode_payload(payload: bytes) -> Entry | HardState | LogStart:
    """The value held by a payload whose checksum matched; ValueError says what is wrong
    with a payload that does not make sense."""
    if not payload:
        raise ValueError("empty payload")
    record_type = payload[0]
    if record_type == ENTRY:
        if len(payload) < _ENTRY_HEAD.size:
            raise ValueError(f"entry record of {len(payload)} bytes is too short")
        _, term, index, kind = _ENTRY_HEAD.unpack_from(payload)
        if kind not in _KINDS:
            raise ValueError(f"unknown entry kind {kind}")
        if index < 1:
            raise ValueError("entry index 0")
        return Entry(term, index, _KINDS[kind], payload[_ENTRY_HEAD.size :])
    if record_type == HARD_STATE:
        if len(payload) < _HARD_STATE_HEAD.size:
            raise ValueError(f"hard state record of {len(payload)} bytes is too short")
        _, term, vote_length = _HARD_STATE_HEAD.unpack_from(payload)
        if len(payload) != _HARD_STATE_HEAD.size + vote_length:
            raise ValueError("hard state record length does not match its vote length")
        vote = payload[_HARD_STATE_HEAD.size :].decode("utf-8") if vote_length else None
        return HardState(term, vote)
    if record_type == LOG_START:
        if len(payload) != _LOG_START.size:
            raise ValueError(f"log start record of {len(payload)} bytes has the wrong length")
        _, index, term = _LOG_START.unpack(payload)
        if index < 1:
            raise ValueError("log start at index 0")
        return LogStart(index, term)
    raise ValueError(f"unknown record type {record_type}")
