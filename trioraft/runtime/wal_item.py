"""What the node queues to its WAL writer."""

from __future__ import annotations

import attrs

from trioraft.core.messages import Entry, HardState, Message


@attrs.define
class WalItem:
    """One Ready's durable part, queued to the WAL writer; or a compaction."""

    hard_state: HardState | None = None
    entries: list[Entry] = attrs.Factory(list)
    after_persist: list[Message] = attrs.Factory(list)
    #: the log restarts after this (index, term): a snapshot from the leader was installed
    reset: tuple[int, int] | None = None
    #: delete the segments wholly at or below this index (after the sync)
    compact_to: int | None = None

    @property
    def writes(self) -> bool:
        return bool(self.hard_state or self.entries or self.reset or self.compact_to)
