"""`Deadlines`: the requests a node is waiting on, ended by its ticker when overdue.

A cancel scope per request (`trio.move_on_after`) costs tens of microseconds of CPU to
enter and leave, a large part of a write's own work. Instead a waiting request is queued
here with its deadline and waits on its own event; the node's ticker calls `expire` on
every tick, which ends the overdue ones (each answers "timed out" as its scope did), so a
request times out at most one tick later than its deadline. Settled requests leave the
queue as they reach its front.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Protocol


class Expiring(Protocol):
    """A request waiting with a deadline."""

    @property
    def settled(self) -> bool:
        """Whether it has its outcome (then expiring it would change nothing)."""
        ...

    def expire(self) -> None:
        """Its deadline passed: give it the outcome of a request that timed out."""
        ...


def _when(item: tuple[float, Expiring]) -> float:
    return item[0]


class Deadlines:
    """Waiting requests in the order of their deadlines (trio time)."""

    __slots__ = ("_closed", "_queue")

    def __init__(self) -> None:
        self._queue: deque[tuple[float, Expiring]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, when: float, item: Expiring) -> None:
        if self._closed:
            item.expire()
            return
        queue = self._queue
        if not queue or queue[-1][0] <= when:
            queue.append((when, item))  # the usual case: every request has the same timeout
        else:  # a retry with what is left of its time
            queue.insert(bisect.bisect_right(queue, when, key=_when), (when, item))

    def expire(self, now: float) -> None:
        """End every request whose deadline is at or before `now`, and forget the
        settled ones at the front."""
        queue = self._queue
        while queue and (queue[0][0] <= now or queue[0][1].settled):
            _, item = queue.popleft()
            if not item.settled:
                item.expire()

    def close(self) -> None:
        """End every request still waiting, and any added from now on: the node stopped,
        so nothing would answer them, and no tick would end them."""
        self._closed = True
        self.expire(float("inf"))
