"""Wakeup: a clearable event for a task that sleeps until there is work."""

from __future__ import annotations

import trio
import trio.testing
from trio.testing import MockClock

from trioraft.wakeup import Wakeup


async def test_a_set_before_the_wait_is_not_lost() -> None:
    wakeup = Wakeup()
    wakeup.set()
    with trio.fail_after(1):
        await wakeup.wait()


async def test_clear_makes_later_waits_wait_for_the_next_set(clock: MockClock) -> None:
    wakeup = Wakeup()
    wakeup.set()
    wakeup.clear()
    assert not wakeup.is_set()
    with trio.move_on_after(1) as waited:
        await wakeup.wait()
    assert waited.cancelled_caught


async def test_clear_while_not_set_keeps_a_waiting_task() -> None:
    wakeup = Wakeup()
    woken = []

    async def sleeper() -> None:
        await wakeup.wait()
        woken.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        wakeup.clear()
        wakeup.set()
    assert woken == [True]


async def test_pulse_wakes_the_waiting_tasks_and_not_later_ones() -> None:
    wakeup = Wakeup()
    woken = []

    async def sleeper(name: str) -> None:
        await wakeup.wait()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper, "a")
        nursery.start_soon(sleeper, "b")
        await trio.testing.wait_all_tasks_blocked()
        wakeup.pulse()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == ["a", "b"]
        assert not wakeup.is_set()
        nursery.start_soon(sleeper, "c")
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == ["a", "b"]
        wakeup.pulse()
    assert sorted(woken) == ["a", "b", "c"]
