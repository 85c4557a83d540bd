"""`with obj:` for objects that hold a file, a lock, a socket or processes: `close()` at the end."""

from __future__ import annotations

from typing import Self


class ClosedOnExit:
    """Mixin: the object is its own context manager and is closed when the block ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
