"""Work on the state that is done a slice per event-loop step.

The state machine lives in the event loop, which also answers Raft heartbeats. Work in
proportion to the size of the keyspace (a snapshot's copy of it, KEYS) is therefore cut
into slices of bounded size, and the loop gets its turn between two of them.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Final, Protocol

import trio

#: keys freed per step by `Release`: about a millisecond
RELEASE_KEYS: Final = 10_000


class Stepwise(Protocol):
    @property
    def done(self) -> bool: ...

    def step(self) -> None:
        """Do the next slice of the work."""


class Release:
    """Frees `parts` (e.g. the buckets of an emptied keyspace), a step at a time: the
    parts holding about `RELEASE_KEYS` keys per step. Freeing millions of keys in one
    go would hold the event loop up for seconds."""

    def __init__(self, parts: list[Sized]) -> None:
        self._parts = parts

    @property
    def done(self) -> bool:
        return not self._parts

    def step(self) -> None:
        freed = 0
        while self._parts and freed < RELEASE_KEYS:
            # the part is freed here, as the last reference to it goes
            freed += len(self._parts.pop())


async def run_stepwise(work: Stepwise) -> None:
    """Step `work` until it is done, a step per turn of the event loop."""
    while not work.done:
        work.step()
        await trio.lowlevel.checkpoint()
