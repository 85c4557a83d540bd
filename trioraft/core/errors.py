"""Errors the core raises to its caller. Named errors live together here."""

from __future__ import annotations

from trioraft.core.messages import NodeId


class RaftError(Exception):
    """Base of the core's errors."""


class NotLeader(RaftError):
    """The request needs the leader and this node is not it. `leader_id` is the leader
    this node knows of, or None."""

    def __init__(self, leader_id: NodeId | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class TransferInProgress(RaftError):
    """The leader is handing leadership over and takes no new proposals meanwhile."""

    def __init__(self) -> None:
        super().__init__("leadership transfer in progress")


class TooMuchUncommitted(RaftError):
    """The leader holds `max_uncommitted_bytes` of proposals not yet committed and
    applied; new ones are refused until some are (flow control, never unbounded memory)."""

    def __init__(self) -> None:
        super().__init__("too many uncommitted writes")


class ChangeNotAllowedYet(RaftError):
    """The leader cannot take a membership change now: it has not committed an entry of
    its own term yet, or an earlier change is not committed yet. Retry shortly."""


class InvalidChange(RaftError):
    """The membership change does not fit the current configuration (the message says
    why)."""
