"""What a client request comes to, and how it travels back from the leader.

Outcomes of a write, per command (docs/protocol.md, Errors): applied (the state machine's
result), definitely not applied (`Unavailable`: no leader, or our entry was replaced by
another one; `Overloaded`: the leader holds too many uncommitted writes to take more), or
unknown (`Indeterminate`: the wait timed out, or the request was lost in flight).
"""

from __future__ import annotations

from typing import TypeAlias

from trioraft.core.errors import NotLeader
from trioraft.core.messages import Members
from trioraft.runtime.statemachine import R
from trioraft.transport import rpcs
from trioraft.transport.rpcs import FailureKind
from trioraft.transport.rpcs import Refused as Refused  # a ChangeOutcome


class Unavailable(Exception):
    """Definite: the request was not applied and will not be (no leader, or lost to a
    new leader's log)."""


class LeaderChanged(Exception):
    """A call to the leader was abandoned: this node learned of another leader."""


class Indeterminate(Exception):
    """The request may or may not take effect."""


class Overloaded(Exception):
    """Definite: the leader holds too many writes not yet committed and refused this
    one; it was not applied."""


#: why a write's command has no result
WriteFailure: TypeAlias = Unavailable | Indeterminate | Overloaded
WRITE_FAILURES = (Unavailable, Indeterminate, Overloaded)

#: what a write's command comes to: the state machine's result, or why there is none
Outcome: TypeAlias = R | WriteFailure


#: what a membership change or a transfer comes to: None once done, or why not
ChangeOutcome: TypeAlias = Refused | WriteFailure | None

#: what a node asking to join comes to: the configuration that has it, or why not
Admission: TypeAlias = Members | Refused | WriteFailure


#: how a write's failure travels back from the leader
_FAILURE_KINDS: dict[type[WriteFailure], FailureKind] = {
    Unavailable: FailureKind.UNAVAILABLE,
    Indeterminate: FailureKind.INDETERMINATE,
    Overloaded: FailureKind.OVERLOADED,
}
FAILURES = {kind: failure for failure, kind in _FAILURE_KINDS.items()}


def failure_to_wire(failure: WriteFailure) -> rpcs.Failed:
    return rpcs.Failed(_FAILURE_KINDS[type(failure)], str(failure))


def change_to_wire(outcome: ChangeOutcome) -> rpcs.Done | Refused | rpcs.Failed:
    if outcome is None:
        return rpcs.Done()
    if isinstance(outcome, Refused):
        return outcome
    return failure_to_wire(outcome)


def change_from_wire(answer: rpcs.ChangeAnswer) -> ChangeOutcome:
    """The outcome of a change the leader answered; NotLeader if it does not lead."""
    if isinstance(answer, rpcs.NotLeaderAnswer):
        raise NotLeader(answer.leader)
    if isinstance(answer, rpcs.Failed):
        return FAILURES[answer.kind](answer.reason)
    return None if isinstance(answer, rpcs.Done) else answer


def admission_from_wire(answer: rpcs.JoinAnswer) -> Admission:
    if isinstance(answer, rpcs.Admitted):
        return answer.members
    if isinstance(answer, rpcs.Failed):
        return FAILURES[answer.kind](answer.reason)
    return answer
