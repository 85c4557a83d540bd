"""`WorkerThread`: one long-lived thread that runs a Trio task's blocking calls in turn.

The node's WAL writer hands every batch to a thread (writes and an fsync block). Through
`trio.to_thread.run_sync` each hand-over takes a capacity limiter, copies the context,
names the cached thread twice (two system calls) and sets up a wait that can report back:
about twice the CPU of handing a job to a thread that waits for it on a queue and wakes
the task when done, which is what this does.

Semantics are those of `trio.to_thread.run_sync` without abandoning: a cancellation
waits for the call to return. Unlike it, the cancellation is then raised, not the
result returned, so a task cancelled during a write (a node that crashed) does nothing
after it, such as sending the messages the write made durable.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import trio

T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("error", "fn", "result", "task")

    def __init__(self, fn: Callable[[], T], task: trio.lowlevel.Task) -> None:
        self.fn = fn
        self.task = task
        self.result: T | None = None
        self.error: Exception | None = None


def _wait_for_the_thread(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # the call runs on: its task waits for it


class WorkerThread:
    """A thread, started at the first call, that runs `run_sync` calls one at a time;
    `close` ends it once the call in progress returns."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run_sync(self, fn: Callable[[], T]) -> T:
        """`fn()` run in the thread (see the module's docstring); one call at a time."""
        if self._thread is None:
            token = trio.lowlevel.current_trio_token()
            self._thread = threading.Thread(
                target=self._work, args=(token,), name=self._name, daemon=True
            )
            self._thread.start()
        job = _Job(fn, trio.lowlevel.current_task())
        self._jobs.put(job)
        await trio.lowlevel.wait_task_rescheduled(_wait_for_the_thread)
        await trio.lowlevel.checkpoint_if_cancelled()
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _work(self, token: trio.lowlevel.TrioToken) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.result = job.fn()
            except Exception as exc:
                job.error = exc
            token.run_sync_soon(trio.lowlevel.reschedule, job.task)
