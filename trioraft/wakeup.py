"""`Wakeup`: a trio.Event that can be cleared, for a task that sleeps until there is work."""

from __future__ import annotations

import trio


class Wakeup:
    """Set when there is work; the task that does it waits, then clears it before taking
    the work, so whatever arrives meanwhile sets it again.

    A trio.Event cannot be cleared: clearing replaces a set event with a new one. Tasks
    woken by the old event stay woken; tasks that wait from then on wait for the next
    `set`. An event that is not set is kept, so a task already waiting on it is not lost.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    def pulse(self) -> None:
        """Wake every task waiting now; later waiters wait for the next `set` or `pulse`."""
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()
