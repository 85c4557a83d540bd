"""Work on the state that is done a slice per event-loop step.

The state machine lives in the event loop, which also answers Raft heartbeats. Work in
proportion to the size of the keyspace (a snapshot's copy of it, KEYS) is therefore cut
into slices of bounded size, and the loop gets its turn between two of them.
"""

from __future__ import annotations

from typing import Protocol

import trio


class Stepwise(Protocol):
    @property
    def done(self) -> bool: ...

    def step(self) -> None:
        """Do the next slice of the work."""


async def run_stepwise(work: Stepwise) -> None:
    """Step `work` until it is done, a step per turn of the event loop."""
    while not work.done:
        work.step()
        await trio.lowlevel.checkpoint()
