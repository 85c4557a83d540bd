"""The WAL writer's long-lived thread (trioraft.runtime.worker_thread), in real time: the
calls run in one thread other than Trio's, a cancellation waits for the call and is then
raised, and `close` ends the thread."""

from __future__ import annotations

import threading

import pytest
import trio

from trioraft.runtime.worker_thread import WorkerThread

#: the bound on every wait for a thread
DEADLINE = 10.0


async def test_calls_run_in_turn_in_one_thread_of_their_own() -> None:
    worker = WorkerThread("test worker")
    try:
        idents = [await worker.run_sync(threading.get_ident) for _ in range(3)]
        assert len(set(idents)) == 1
        assert idents[0] != threading.get_ident()
        assert await worker.run_sync(lambda: 6 * 7) == 42

        def fail() -> None:
            raise OSError("the disk failed")

        with pytest.raises(OSError, match="the disk failed"):
            await worker.run_sync(fail)
        assert await worker.run_sync(threading.get_ident) == idents[0]  # still serving
    finally:
        worker.close()


async def test_a_cancelled_call_is_waited_for_and_then_raises_cancelled() -> None:
    worker = WorkerThread("test worker")
    started, release = threading.Event(), threading.Event()
    went_on = False

    def blocking_write() -> str:
        started.set()
        release.wait(DEADLINE)
        return "written"

    async def writer(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        nonlocal went_on
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await worker.run_sync(blocking_write)
            went_on = True  # what a crashed node must not do after its write

    try:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                scope = await nursery.start(writer)
                while not started.is_set():
                    await trio.sleep(0.001)
                scope.cancel()
                await trio.sleep(0.05)
                assert not scope.cancelled_caught  # still waiting for the write
                release.set()
        assert scope.cancelled_caught
        assert not went_on
    finally:
        worker.close()


async def test_close_ends_the_thread() -> None:
    worker = WorkerThread("test worker to close")
    await worker.run_sync(lambda: None)
    [thread] = [t for t in threading.enumerate() if t.name == "test worker to close"]
    worker.close()
    thread.join(DEADLINE)
    assert not thread.is_alive()
