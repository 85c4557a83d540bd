"""What a client request of the node waits on until it has its outcome.

A write's `Waiter` per command, settled when its entry applies, and the `Proposal` that
ends the waiters of one proposal together at the request timeout; a read's `ReadWaiter`,
resolved with its read index. The node's ticker expires both (deadlines.py).
"""

from __future__ import annotations

from typing import Any, Generic

import trio

from trioraft.runtime.outcomes import Indeterminate, Outcome, Unavailable
from trioraft.runtime.statemachine import R


class Waiter(Generic[R]):
    """A proposal of `term` waiting to be applied."""

    __slots__ = ("_outcome", "done", "term")

    def __init__(self, term: int) -> None:
        self.term = term
        self.done = trio.Event()
        self._outcome: Outcome[R] = Indeterminate("no answer from a majority in time")

    def settle(self, outcome: Outcome[R]) -> None:
        self._outcome = outcome
        self.done.set()

    @property
    def outcome(self) -> Outcome[R]:
        return self._outcome


class Proposal:
    """The waiters of the entries of one proposal, by log index, ended together by the
    request timeout (see deadlines.py). Entries apply in index order, so the proposal is
    settled once its last entry is."""

    __slots__ = ("_waiting", "waiters")

    def __init__(self, waiters: list[tuple[int, Waiter[Any]]], waiting: dict[int, Waiter[Any]]):
        self.waiters = waiters
        #: the node's waiters by index, which an expired waiter leaves
        self._waiting = waiting

    @property
    def settled(self) -> bool:
        return self.waiters[-1][1].done.is_set()

    def expire(self) -> None:
        for index, waiter in self.waiters:
            if not waiter.done.is_set():
                if self._waiting.get(index) is waiter:
                    del self._waiting[index]
                waiter.settle(Indeterminate("no answer from a majority in time"))


class ReadWaiter:
    """A read waiting for its read index and the leader's time when it confirmed it."""

    __slots__ = ("_done", "_expired", "_point")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._point: tuple[int, int] | None = None
        self._expired = False

    def resolve(self, index: int, time_ms: int) -> None:
        self._point = (index, time_ms)
        self._done.set()

    def fail(self) -> None:
        self._done.set()

    @property
    def settled(self) -> bool:
        return self._done.is_set()

    def expire(self) -> None:
        self._expired = True
        self._done.set()

    async def wait(self) -> tuple[int, int]:
        await self._done.wait()
        if self._point is not None:
            return self._point
        if self._expired:
            raise Indeterminate("read could not be confirmed in time")
        raise Unavailable("leadership changed before the read was confirmed")
