"""Expiry through the log: the leader proposes the deletion of keys whose deadline passed.

Replicas never delete a key by their own clock. The leader looks for keys whose deadline
has passed on its clock and proposes `RAFT.EXPIRE key ...` for them; every replica
deletes them when it applies that entry, at the same index (see replicated.py).

- Actively (`sweep`): every `SWEEP_SECONDS` the leader takes the due keys, at most
  `KEYS_PER_ENTRY` to an entry and `ENTRIES_PER_ROUND` entries, each proposed and awaited
  before the next. So a million keys that expire at once go in bounded steps: no step
  holds the event loop (and the heartbeats) for more than about a millisecond, and the
  log takes one entry at a time.
- On access (`expire_now`): a linearizable read that meets a key past its deadline on
  the leader's clock has it deleted through the log and reads again (server.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import trio

from trioraft.kvstore import data_commands
from trioraft.kvstore.replicated import EXPIRE, ReplicatedState

SWEEP_SECONDS: Final = 0.1
KEYS_PER_ENTRY: Final = 1000
ENTRIES_PER_ROUND: Final = 10


class Leading(Protocol):
    @property
    def is_leader(self) -> bool: ...


class Replicating(Protocol):
    """What expiry needs of the node that replicates the state: whether its core leads,
    its clock, and writes through the log."""

    @property
    def core(self) -> Leading: ...

    def time_ms(self) -> int: ...

    async def write(self, commands: list[bytes]) -> Sequence[object]: ...


async def expire_now(node: Replicating, keys: list[bytes]) -> bool:
    """Propose the deletion of `keys` (those still past their deadline when it applies)
    and wait for it; whether it was applied (its result, how many keys went, is a number;
    a write that failed is not)."""
    [outcome] = await node.write([data_commands.encode_command([EXPIRE, *keys])])
    return isinstance(outcome, int)


async def sweep(node: Replicating, state: ReplicatedState, interval: float = SWEEP_SECONDS) -> None:
    """While this node leads, delete the keys whose deadline passed in `state` (the state
    machine it replicates), through the log."""
    while True:
        await trio.sleep(interval)
        for _ in range(ENTRIES_PER_ROUND):
            if not node.core.is_leader:
                break
            store = state.store
            keys = store.due(node.time_ms(), KEYS_PER_ENTRY)
            if not keys:
                break
            if not await expire_now(node, keys):
                store.requeue(keys)
                break
