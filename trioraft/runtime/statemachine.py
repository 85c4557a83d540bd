"""What the runtime asks of the state machine it replicates, as hashicorp/raft's FSM.

The runtime knows nothing of what a command means. It hands each committed command to
`apply`, with its log index and its time (the leader's clock when it proposed it, see
stamps.py), and gives the result back to whoever proposed the command: a caller on this
node as it is, the follower that forwarded the command encoded with `encode_result` (and
decoded there with `decode_result`).

Snapshots: `begin_capture` starts a copy of the state as it is now, which the runtime
completes a slice per event-loop step (`Capture.step`) while commands go on applying,
and serializes in a worker thread. A snapshot received from the leader is loaded, in a
worker thread, into a new state machine (`restore`), which replaces the running one in
place (`replace`) once the core takes the snapshot.

Work in proportion to the size of the state is never done in one step: what a state
machine lets go of (a replaced state, a flushed keyspace) comes back as parts that the
runtime frees a few at a time (`take_garbage`, `replace`, `discard`).

Besides the application's commands, the log carries the registration of every member's
data dir (its incarnation, see incarnation.py). The state machine records them: the
incarnation guard reads them through the last five methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Protocol, Self, TypeVar

from trioraft.core.messages import NodeId

R = TypeVar("R")


class Capture(Protocol):
    """A copy of the state as it was when `begin_capture` was called, taken a slice per
    `step` while the state goes on changing. Close it once done or abandoned."""

    @property
    def done(self) -> bool: ...

    @property
    def keys(self) -> int:
        """How many keys (items of the state) were copied so far."""
        ...

    def step(self) -> None:
        """Copy the next slice."""

    def serialize(self) -> Iterator[bytes]:
        """The snapshot bytes of the finished copy, in pieces made as they are asked for
        (so that the whole need not be in memory at once); meant for a worker thread."""
        ...

    def close(self) -> None: ...


class StateMachine(Protocol[R]):
    @property
    def time(self) -> int:
        """The time (Unix ms) of the latest stamped command applied: the state's clock."""
        ...

    def apply(self, command: bytes, index: int, time_ms: int | None) -> R:
        """Apply the committed command at log `index`, stamped with `time_ms` (None: a
        command from before stamps, which leaves the time as it was)."""
        ...

    def encode_result(self, result: R) -> bytes: ...

    def decode_result(self, data: bytes) -> R:
        """A result as `encode_result` wrote it, on another node."""
        ...

    def take_garbage(self) -> list[Sized]:
        """What the commands applied since the last call let go of, to free stepwise."""
        ...

    def begin_capture(self) -> Capture: ...

    def restore(self, data: bytes) -> Self:
        """A new state machine holding what the snapshot `data` holds; ValueError when the
        bytes are not a snapshot. Meant for a worker thread: it leaves `self` alone."""
        ...

    def replace(self, restored: Self) -> list[Sized]:
        """Become `restored` (from `restore`); returns the former state's parts."""
        ...

    def discard(self) -> list[Sized]:
        """The parts of a restored state that will not be used."""
        ...

    def keep_incarnations_of(self, members: frozenset[NodeId]) -> None:
        """A configuration entry listing `members` was applied: forget the incarnations
        of the nodes it does not list."""
        ...

    def incarnation_of(self, node_id: NodeId) -> str | None:
        """The incarnation recorded for `node_id`, if any."""
        ...

    def registration(self, node_id: NodeId, incarnation: str) -> bytes:
        """The command that records `incarnation` for `node_id`."""
        ...

    def registration_in(self, command: bytes) -> tuple[NodeId, str] | None:
        """The (node id, incarnation) a not yet applied `command` registers, if it is a
        registration."""
        ...

    def registered(self, result: R) -> bool | None:
        """Whether the registration whose result this is was recorded (True), refused
        because another incarnation is recorded (False), or neither (None: try again)."""
        ...
