"""The peer wire format: frames, the handshake, and every Raft message as msgpack.

Sans-I/O: bytes in, values out. Every `encode_*` function returns a whole frame, ready for
`send_all`; every `decode_*` function takes a frame body as `FrameReader` yields it.

Frame: a 4-byte big-endian body length, then the body, one msgpack array. The receiver
refuses a length above its limit as soon as it has read the header, before buffering the
body. The first frame each way is the handshake; after it, four kinds of frame:

    RAFT      (0, tag, src, dst, term, *fields)    a Raft message, fire and forget
    REQUEST   (1, id, method, payload)             an RPC, answered on the same connection
    RESPONSE  (2, id, ok, payload)                 ok false: payload is the error text
    REFUSED   (3, id, reason)                      the answer to a request not run at all

Raft messages are flat tuples in a fixed field order per type, `tag` naming the type (the
keys of `_DECODERS`); entries are (term, index, kind, data) tuples. This is the replication
hot path, so there is no generic attrs-to-dict conversion: one small function per type each
way.
Decoding checks the structure (kinds, tags, field counts, entry kinds) and raises
`ProtocolError` when it is wrong; it trusts the field types of a peer that passed the
handshake, except the ones the transport itself relies on.

Handshake, connecting side first: HELLO (magic, version, token, src, dst), where `dst` is
the node it means to reach; then VERDICT (magic, version, accepted, reason). The magic and
version come first in both, and stay there in every protocol version. Arrays decode as
tuples.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]

from trioraft.core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Members,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from trioraft.transport.base import Payload
from trioraft.transport.errors import FrameTooLarge, ProtocolError

#: the first field of both handshake frames
MAGIC = b"trioraft"
#: bumped on any incompatible change to the frames below or to what an RPC carries
#: (3: a forwarded write's outcome is typed, no longer a RESP reply)
PROTOCOL_VERSION = 3
#: the default limit on a frame body once the handshake is done
MAX_FRAME = 64 * 1024 * 1024
#: the limit before the handshake: an unauthenticated peer cannot make us buffer more
MAX_HANDSHAKE_FRAME = 4096

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size

_RAFT = 0
_REQUEST = 1
_RESPONSE = 2
_REFUSED = 3

_UNPACK_OPTIONS: dict[str, Any] = {"raw": False, "use_list": False, "strict_map_key": False}
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException)
_ENTRY_KINDS = {kind.value: kind for kind in EntryKind}


@attrs.frozen(slots=True)
class Request:
    #: chosen by the caller, unique among its calls in flight on the connection
    id: int
    method: str
    payload: Payload


@attrs.frozen(slots=True)
class Response:
    #: the id of the request it answers
    id: int
    #: true: `payload` is the handler's result; false: `payload` is the error text
    ok: bool
    payload: Payload


@attrs.frozen(slots=True)
class Refusal:
    """The answer to a request the peer did not run (too many were running)."""

    #: the id of the request it answers
    id: int
    reason: str


@attrs.frozen(slots=True)
class Hello:
    """The connecting side's introduction."""

    #: the cluster token, compared in constant time by the accepting side
    token: bytes
    #: the connecting node
    src: NodeId
    #: the node it means to reach
    dst: NodeId


@attrs.frozen(slots=True)
class Verdict:
    """The accepting side's answer to a Hello."""

    accepted: bool
    #: why it refused; empty when accepted
    reason: str = ""


def _frame(obj: object) -> bytes:
    body: bytes = msgpack.packb(obj)
    return _HEADER.pack(len(body)) + body


# Raft messages, one encoder and one decoder per type.


def _enc_request_vote(m: RequestVote) -> tuple[object, ...]:
    fields = (m.last_log_index, m.last_log_term, m.pre_vote, m.transfer)
    return (_RAFT, 0, m.src, m.dst, m.term, *fields)


def _dec_request_vote(f: Sequence[Any]) -> RequestVote:
    _, _, src, dst, term, last_log_index, last_log_term, pre_vote, transfer = f
    return RequestVote(
        src=src,
        dst=dst,
        term=term,
        last_log_index=last_log_index,
        last_log_term=last_log_term,
        pre_vote=pre_vote,
        transfer=transfer,
    )


def _enc_request_vote_response(m: RequestVoteResponse) -> tuple[object, ...]:
    return (_RAFT, 1, m.src, m.dst, m.term, m.granted, m.pre_vote)


def _dec_request_vote_response(f: Sequence[Any]) -> RequestVoteResponse:
    _, _, src, dst, term, granted, pre_vote = f
    return RequestVoteResponse(src=src, dst=dst, term=term, granted=granted, pre_vote=pre_vote)


def _enc_append_entries(m: AppendEntries) -> tuple[object, ...]:
    entries = [(e.term, e.index, e.kind, e.data) for e in m.entries]
    return (_RAFT, 2, m.src, m.dst, m.term, m.prev_index, m.prev_term, m.commit, entries)


def _dec_append_entries(f: Sequence[Any]) -> AppendEntries:
    _, _, src, dst, term, prev_index, prev_term, commit, raw_entries = f
    kinds = _ENTRY_KINDS
    entries = tuple([Entry(t, i, kinds[k], d) for t, i, k, d in raw_entries])
    return AppendEntries(
        src=src,
        dst=dst,
        term=term,
        prev_index=prev_index,
        prev_term=prev_term,
        entries=entries,
        commit=commit,
    )


def _enc_append_entries_response(m: AppendEntriesResponse) -> tuple[object, ...]:
    return (_RAFT, 3, m.src, m.dst, m.term, m.success, m.index, m.hint_index, m.hint_term)


def _dec_append_entries_response(f: Sequence[Any]) -> AppendEntriesResponse:
    _, _, src, dst, term, success, index, hint_index, hint_term = f
    return AppendEntriesResponse(
        src=src,
        dst=dst,
        term=term,
        success=success,
        index=index,
        hint_index=hint_index,
        hint_term=hint_term,
    )


def _enc_heartbeat(m: Heartbeat) -> tuple[object, ...]:
    return (_RAFT, 4, m.src, m.dst, m.term, m.commit, m.seq)


def _dec_heartbeat(f: Sequence[Any]) -> Heartbeat:
    _, _, src, dst, term, commit, seq = f
    return Heartbeat(src=src, dst=dst, term=term, commit=commit, seq=seq)


def _enc_heartbeat_response(m: HeartbeatResponse) -> tuple[object, ...]:
    return (_RAFT, 5, m.src, m.dst, m.term, m.seq, m.last_index)


def _dec_heartbeat_response(f: Sequence[Any]) -> HeartbeatResponse:
    _, _, src, dst, term, seq, last_index = f
    return HeartbeatResponse(src=src, dst=dst, term=term, seq=seq, last_index=last_index)


def _enc_install_snapshot(m: InstallSnapshot) -> tuple[object, ...]:
    meta = m.meta
    voters = sorted(meta.members.voters)
    learners = sorted(meta.members.learners)
    return (_RAFT, 6, m.src, m.dst, m.term, meta.index, meta.term, voters, learners)


def _dec_install_snapshot(f: Sequence[Any]) -> InstallSnapshot:
    _, _, src, dst, term, index, meta_term, voters, learners = f
    members = Members(voters=frozenset(voters), learners=frozenset(learners))
    meta = SnapshotMeta(index=index, term=meta_term, members=members)
    return InstallSnapshot(src=src, dst=dst, term=term, meta=meta)


def _enc_timeout_now(m: TimeoutNow) -> tuple[object, ...]:
    return (_RAFT, 7, m.src, m.dst, m.term)


def _dec_timeout_now(f: Sequence[Any]) -> TimeoutNow:
    _, _, src, dst, term = f
    return TimeoutNow(src=src, dst=dst, term=term)


_ENCODERS: dict[type[Message], Callable[[Any], tuple[object, ...]]] = {
    RequestVote: _enc_request_vote,
    RequestVoteResponse: _enc_request_vote_response,
    AppendEntries: _enc_append_entries,
    AppendEntriesResponse: _enc_append_entries_response,
    Heartbeat: _enc_heartbeat,
    HeartbeatResponse: _enc_heartbeat_response,
    InstallSnapshot: _enc_install_snapshot,
    TimeoutNow: _enc_timeout_now,
}

#: by tag: the second field of a RAFT frame, as each encoder above writes it
_DECODERS: dict[int, Callable[[Sequence[Any]], Message]] = {
    0: _dec_request_vote,
    1: _dec_request_vote_response,
    2: _dec_append_entries,
    3: _dec_append_entries_response,
    4: _dec_heartbeat,
    5: _dec_heartbeat_response,
    6: _dec_install_snapshot,
    7: _dec_timeout_now,
}


# Frames after the handshake.


def encode_message(msg: Message) -> bytes:
    """A RAFT frame carrying `msg`."""
    encoder = _ENCODERS.get(type(msg))
    if encoder is None:
        raise TypeError(f"not a Raft message type: {type(msg).__name__}")
    return _frame(encoder(msg))


def encode_request(request_id: int, method: str, payload: Payload) -> bytes:
    """A REQUEST frame; TypeError when the payload is not msgpack-encodable."""
    return _frame_payload((_REQUEST, request_id, method, payload))


def encode_response(request_id: int, ok: bool, payload: Payload) -> bytes:
    """A RESPONSE frame; TypeError when the payload is not msgpack-encodable."""
    return _frame_payload((_RESPONSE, request_id, ok, payload))


def encode_refusal(request_id: int, reason: str) -> bytes:
    """A REFUSED frame."""
    return _frame((_REFUSED, request_id, reason))


def _frame_payload(obj: tuple[object, ...]) -> bytes:
    try:
        return _frame(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"RPC payload is not msgpack-encodable: {exc}") from exc


def decode_frame(body: bytes | bytearray) -> Message | Request | Response | Refusal:
    """The value a post-handshake frame body carries; ProtocolError when malformed."""
    try:
        frame = msgpack.unpackb(body, **_UNPACK_OPTIONS)
        kind = frame[0]
        if kind == _RAFT:
            message: Message = _DECODERS[frame[1]](frame)
            return message
        if kind == _REQUEST:
            _, request_id, method, payload = frame
            if type(request_id) is int and type(method) is str:
                return Request(request_id, method, payload)
        elif kind == _RESPONSE:
            _, request_id, ok, payload = frame
            if type(request_id) is int and type(ok) is bool:
                return Response(request_id, ok, payload)
        elif kind == _REFUSED:
            _, request_id, reason = frame
            if type(request_id) is int and type(reason) is str:
                return Refusal(request_id, reason)
    except _DECODE_ERRORS as exc:
        raise ProtocolError(f"malformed frame: {type(exc).__name__}: {exc}") from exc
    raise ProtocolError(f"malformed frame: unknown kind or bad header {frame[:3]!r}")


def copy_payload(payload: Payload) -> Payload:
    """`payload` as the receiving side of a real connection would see it."""
    try:
        body: bytes = msgpack.packb(payload)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"RPC payload is not msgpack-encodable: {exc}") from exc
    copied: Payload = msgpack.unpackb(body, **_UNPACK_OPTIONS)
    return copied


# The handshake.


def encode_hello(hello: Hello) -> bytes:
    return _frame((MAGIC, PROTOCOL_VERSION, hello.token, hello.src, hello.dst))


def decode_hello(body: bytes | bytearray) -> Hello:
    """ProtocolError when the body is not a Hello of this protocol version."""
    fields = _decode_handshake(body, 5)
    _, _, token, src, dst = fields
    if type(token) is not bytes or type(src) is not str or type(dst) is not str:
        raise ProtocolError("malformed handshake: bad field types")
    return Hello(token=token, src=src, dst=dst)


def encode_verdict(verdict: Verdict) -> bytes:
    return _frame((MAGIC, PROTOCOL_VERSION, verdict.accepted, verdict.reason))


def decode_verdict(body: bytes | bytearray) -> Verdict:
    """ProtocolError when the body is not a Verdict of this protocol version."""
    _, _, accepted, reason = _decode_handshake(body, 4)
    if type(accepted) is not bool or type(reason) is not str:
        raise ProtocolError("malformed handshake answer: bad field types")
    return Verdict(accepted=accepted, reason=reason)


def _decode_handshake(body: bytes | bytearray, size: int) -> tuple[Any, ...]:
    try:
        fields = msgpack.unpackb(body, **_UNPACK_OPTIONS)
    except _DECODE_ERRORS as exc:
        raise ProtocolError(f"malformed handshake: {type(exc).__name__}: {exc}") from exc
    if type(fields) is not tuple or len(fields) < 2 or fields[0] != MAGIC:
        raise ProtocolError("malformed handshake: not a trioraft peer")
    if fields[1] != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {fields[1]!r} not supported (this node speaks {PROTOCOL_VERSION})"
        )
    if len(fields) != size:
        raise ProtocolError(f"malformed handshake: {len(fields)} fields, expected {size}")
    return fields


class FrameReader:
    """Splits a byte stream into frame bodies, enforcing a size limit per frame."""

    def __init__(self, max_frame: int) -> None:
        #: the largest body accepted; may be raised once the handshake is done
        self.max_frame = max_frame
        #: received bytes not yet returned as bodies: always starts at a frame header
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def bodies(self) -> list[bytearray]:
        """Every complete body buffered so far, in order; FrameTooLarge on a bad length."""
        buffer = self._buffer
        end = len(buffer)
        pos = 0
        out: list[bytearray] = []
        while end - pos >= HEADER_SIZE:
            (size,) = _HEADER.unpack_from(buffer, pos)
            if size > self.max_frame:
                raise FrameTooLarge(size, self.max_frame)
            stop = pos + HEADER_SIZE + size
            if stop > end:
                break
            out.append(buffer[pos + HEADER_SIZE : stop])
            pos = stop
        if pos:
            del buffer[:pos]
        return out
