"""What a fault run's records mean, and the files a run leaves.

Lost acknowledged writes. A SET (or a SET-if-equal that answered OK) acknowledged to a
client wrote a value unique in the run. Once the cluster is healed and every key read
through every node, that value must be the final one, unless some other write to the
key may have come after it: an acknowledged write that changed something, or an
indeterminate write, that did not end before the SET was called. An acknowledged SET
whose value is not final and that no such write may have superseded is lost. The count
errs towards zero (an indeterminate write supersedes whether or not it took effect);
the linearizability checker judges the rest.

Availability, per fault, from the history alone: `unavailable_s` is the longest time,
between the fault's start and the first write acknowledged after it was healed, in which
no client write was acknowledged; `recovery_s` is the time from healing to that first
acknowledged write (None when none came before the run ended). A write counts as
acknowledged at its return: a set, del, incr or set-if-equal that answered OK.

The history file (`history.jsonl`) holds one JSON object per operation, in call order:
index, client, node, key, kind, args, status (ok, fail, info), output, call and ret in
seconds since the run started (ret null for indeterminate operations) and a note saying
what ended an operation that got no plain reply. Byte strings are written as text, one
character per byte (Latin-1), so `load_history` gives back exactly the operations the
checker saw.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.linearizability import Arg, Kind, Operation, Status

from .faults import FaultRecord
from .schedule import FaultKind
from .workload import Recorder

WRITE_KINDS = frozenset({Kind.SET, Kind.DEL, Kind.INCR, Kind.SET_IF_EQUAL})


def changed_something(op: Operation) -> bool:
    """Whether `op` may have changed its key: an indeterminate write, or an acknowledged
    one whose output says it wrote."""
    if op.kind not in WRITE_KINDS or op.status is Status.FAIL:
        return False
    if op.status is Status.INFO or op.kind is Kind.SET:
        return True
    if op.kind is Kind.DEL:
        return op.output == 1
    if op.kind is Kind.INCR:
        return op.output is not None
    return bool(op.output)


def written_value(op: Operation) -> bytes | None:
    """The value an acknowledged SET or successful SET-if-equal wrote, else None."""
    if op.status is not Status.OK:
        return None
    if op.kind is Kind.SET:
        value = op.args[0]
    elif op.kind is Kind.SET_IF_EQUAL and op.output:
        value = op.args[1]
    else:
        return None
    return value if isinstance(value, bytes) else None


def lost_writes(
    operations: Iterable[Operation], final: Mapping[str, Mapping[str, bytes | None]]
) -> list[Operation]:
    """The acknowledged writes lost by the end of the run (see the module docstring).
    `final` holds, per node, the values read at the end; keys no node read are skipped."""
    finals: dict[str, set[bytes | None]] = {}
    for values in final.values():
        for key, value in values.items():
            finals.setdefault(key, set()).add(value)
    writers: dict[str, list[Operation]] = {}
    expiring: set[tuple[str, Arg]] = set()
    for op in operations:
        if isinstance(op.key, str) and op.key in finals and changed_something(op):
            writers.setdefault(op.key, []).append(op)
        if op.kind is Kind.EXPIRE and isinstance(op.key, str):
            expiring.add((op.key, op.args[0]))
    lost = []
    for key, ops in writers.items():
        by_end = sorted(ops, key=lambda op: op.ret, reverse=True)
        for op in ops:
            value = written_value(op)
            if value is None or value in finals[key] or (key, value) in expiring:
                continue  # a value with a deadline may be gone by its expiry
            latest_other = next((other.ret for other in by_end if other is not op), -math.inf)
            if latest_other <= op.call:
                lost.append(op)
    return sorted(lost, key=lambda op: op.call)


def disagreements(final: dict[str, dict[str, bytes | None]]) -> list[str]:
    """The keys whose final reads differ between nodes, each with what every node read."""
    keys = sorted({key for values in final.values() for key in values})
    lines = []
    for key in keys:
        seen = {node: values[key] for node, values in final.items() if key in values}
        if len(set(seen.values())) > 1:
            lines.append(f"{key}: {seen}")
    return lines


def acknowledged_writes(operations: Iterable[Operation]) -> list[float]:
    """The return times of every acknowledged write, ascending."""
    return sorted(op.ret for op in operations if op.status is Status.OK and op.kind in WRITE_KINDS)


def availability(
    record: FaultRecord, acks: Sequence[float], end: float
) -> tuple[float, float | None]:
    """(unavailable_s, recovery_s) of one fault; see the module docstring. `acks` from
    `acknowledged_writes`, `end` the end of the run."""
    healed = record.healed if record.healed is not None else end
    after = bisect.bisect_right(acks, healed)
    served = acks[after] if after < len(acks) else None
    stop = served if served is not None else end
    inside = acks[bisect.bisect_right(acks, record.start) : bisect.bisect_left(acks, stop)]
    points = [record.start, *inside, stop]
    gap = max(b - a for a, b in itertools.pairwise(points))
    return gap, None if served is None else served - healed


def worst_per_kind(rows: Iterable[Mapping[str, Any]], field: str) -> dict[str, float | None]:
    """The largest `field` of the fault rows of each kind (None wins: never served)."""
    worst: dict[str, float | None] = {}
    for row in rows:
        kind, value = row["kind"], row[field]
        current = worst.get(kind, -math.inf)
        if current is not None and (value is None or value > current):
            worst[kind] = value
    return worst


def fault_row(record: FaultRecord, acks: Sequence[float], t0: float, end: float) -> dict[str, Any]:
    unavailable, recovery = availability(record, acks, end)
    return {
        "number": record.number,
        "kind": record.kind.value,
        "nodes": record.nodes,
        "description": record.description,
        "start_s": round(record.start - t0, 3),
        "held_s": None if record.healed is None else round(record.healed - record.start, 3),
        "unavailable_s": round(unavailable, 3),
        "recovery_s": None if recovery is None else round(recovery, 3),
        "probe_recovery_s": None
        if record.recovered is None or record.healed is None
        else round(record.recovered - record.healed, 3),
        "snapshots_forced": record.snapshots_forced,
        "snapshots_refused": record.snapshots_refused,
        "notes": record.notes,
    }


def count_faults(records: Iterable[FaultRecord]) -> dict[str, int]:
    counts = dict.fromkeys((kind.value for kind in FaultKind), 0)
    for record in records:
        counts[record.kind.value] += 1
    return {kind: count for kind, count in counts.items() if count}


# --- the history file -------------------------------------------------------------------


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    return value


def _decode_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text for a byte string, got {value!r}")
    return value.encode("latin-1")


def write_history(path: Path, recorder: Recorder, t0: float) -> None:
    with path.open("w") as out:
        for index, op in enumerate(recorder.operations()):
            line = {
                "index": index,
                "client": op.client,
                "node": recorder.nodes[index],
                "key": op.key,
                "kind": op.kind.value,
                "args": [_encode(arg) for arg in op.args],
                "status": op.status.value,
                "output": _encode(op.output),
                "call": round(op.call - t0, 6),
                "ret": None if op.ret == math.inf else round(op.ret - t0, 6),
                "note": recorder.notes[index],
            }
            out.write(json.dumps(line) + "\n")


def _transaction_args(raw: list[Any]) -> tuple[Arg, ...]:
    """A transaction's (keys, reads, commands) as `_encode` wrote them."""
    keys, reads, commands = raw
    return (
        tuple(keys),
        tuple((key, _decode_bytes(value)) for key, value in reads),
        tuple((key, kind, tuple(int(arg) for arg in args)) for key, kind, args in commands),
    )


def load_history(path: Path) -> list[Operation]:
    """The operations of a history file, as the checker saw them."""
    operations = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        try:
            line = json.loads(text)
            kind = Kind(line["kind"])
            raw = line["args"]
            args: tuple[Arg, ...]
            if kind is Kind.TRANSACTION:
                args = _transaction_args(raw)
            elif kind in (Kind.SET, Kind.EXPIRE):
                args = (_decode_bytes(raw[0]),)
            elif kind is Kind.INCR:
                args = (int(raw[0]),)
            elif kind is Kind.SET_IF_EQUAL:
                args = (_decode_bytes(raw[0]), _decode_bytes(raw[1]))
            else:
                args = ()
            output = line["output"]
            if kind is Kind.GET:
                output = _decode_bytes(output)
            elif kind is Kind.TRANSACTION and output is not None:
                output = tuple(_decode_bytes(v) if isinstance(v, str) else v for v in output)
            status = Status(line["status"])
            ret = math.inf if line["ret"] is None else float(line["ret"])
            operations.append(
                Operation(
                    line["client"],
                    tuple(line["key"]) if kind is Kind.TRANSACTION else line["key"],
                    kind,
                    args,
                    output,
                    float(line["call"]),
                    ret,
                    status,
                )
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: line {number}: {exc}") from None
    return operations
