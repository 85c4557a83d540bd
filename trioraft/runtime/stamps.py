"""An entry's time: the leader's clock when it proposed the entry, carried in the entry.

The state machine must never read a clock of its own: replicas whose clocks disagree would
change their state differently. So the leader stamps each batch of commands it proposes
with its wall clock (Unix milliseconds), and the state machine learns "now" only from the
entry it applies: every replica sees the same time at the same log index.

Stamps never go backwards along the log, also across leader changes: a node proposes at
least the latest stamp it has seen in its log (its own proposals, the entries a leader sent
it, the snapshot it started from), and a new leader's log holds every committed entry. A
leader whose clock is behind its predecessor's therefore repeats the last stamp until its
clock catches up; one whose clock jumped ahead moves time forward for good.

Layout of a stamped payload: `MARK` (0xc1, a byte msgpack never produces, so a payload
written before stamps existed, which is plain msgpack, reads as unstamped), the time as 8
bytes big-endian, then the command bytes, which stay opaque here.
"""

from __future__ import annotations

import struct
import time
from typing import Final

MARK: Final = b"\xc1"
_TIME: Final = struct.Struct(">Q")
_HEAD: Final = len(MARK) + _TIME.size


def stamp(data: bytes, time_ms: int) -> bytes:
    """`data` stamped with `time_ms`."""
    return MARK + _TIME.pack(time_ms) + data


def unstamp(data: bytes) -> tuple[int | None, bytes]:
    """The time (None when the payload carries none) and the command of a payload."""
    time_ms = time_of(data)
    return time_ms, (data if time_ms is None else data[_HEAD:])


def time_of(data: bytes) -> int | None:
    """The time a payload carries, or None."""
    if data[:1] != MARK or len(data) < _HEAD:
        return None
    stamped: int = _TIME.unpack_from(data, 1)[0]
    return stamped


def wall_clock_ms() -> int:
    """The machine's wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


class Stamper:
    """The stamps a node gives its proposals: its clock, never below the latest stamp in
    its log."""

    __slots__ = ("latest",)

    def __init__(self, latest: int = 0) -> None:
        #: the latest stamp this node has seen in its log, or given
        self.latest = latest

    def observe(self, time_ms: int | None) -> None:
        """A stamp found in the log (None: an entry without one)."""
        if time_ms is not None and time_ms > self.latest:
            self.latest = time_ms

    def next(self, now_ms: int) -> int:
        """The stamp for a proposal made when the clock reads `now_ms`."""
        self.latest = max(self.latest, now_ms)
        return self.latest
