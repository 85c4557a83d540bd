"""When the daemon pings systemd's watchdog, and how often."""

from __future__ import annotations

import os

import pytest

from trioraft.ops.systemd import watchdog_interval


@pytest.fixture(autouse=True)
def unit(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    return monkeypatch


def test_half_the_unit_interval(unit: pytest.MonkeyPatch) -> None:
    unit.setenv("WATCHDOG_USEC", "20000000")
    assert watchdog_interval() == 10.0


def test_for_this_process_only(unit: pytest.MonkeyPatch) -> None:
    unit.setenv("WATCHDOG_USEC", "20000000")
    unit.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 10.0
    unit.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None


@pytest.mark.parametrize("usec", [None, "", "0", "ten"])
def test_no_watchdog_unless_the_unit_sets_one(unit: pytest.MonkeyPatch, usec: str | None) -> None:
    if usec is None:
        unit.delenv("WATCHDOG_USEC", raising=False)
    else:
        unit.setenv("WATCHDOG_USEC", usec)
    assert watchdog_interval() is None


def test_no_watchdog_without_a_notify_socket(unit: pytest.MonkeyPatch) -> None:
    unit.setenv("WATCHDOG_USEC", "20000000")
    unit.delenv("NOTIFY_SOCKET")
    assert watchdog_interval() is None
