"""Waiting for a condition in real time: poll it under a deadline, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def wait_until(
    check: Callable[[], _T | None],
    timeout: float,
    what: str,
    interval: float = 0.02,
    describe: Callable[[], str] | None = None,
) -> _T:
    """Call `check` until it returns something other than None (or False), then return
    that; raise TimeoutError naming `what` (and `describe()`) after `timeout` seconds.
    Exceptions of `check` that are OSError count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            result = check()
        except OSError as exc:
            last_error, result = exc, None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            extra = f"\n{describe()}" if describe else ""
            raise TimeoutError(f"not within {timeout} s: {what}{detail}{extra}")
        time.sleep(interval)
