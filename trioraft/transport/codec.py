"""The peer wire format: frames, the handshake, every Raft message and RPC as msgpack.

Sans-I/O: bytes in, values out. Every `encode_*` function returns a whole frame, ready for
`send_all`; every `decode_*` function takes a frame body as `FrameReader` yields it.

Frame: a 4-byte big-endian body length, then the body, one msgpack array. The receiver
refuses a length above its limit as soon as it has read the header, before buffering the
body. The first frame each way is the handshake; after it, four kinds of frame:

    RAFT      (0, tag, src, dst, term, *fields)    a Raft message, fire and forget
    REQUEST   (1, id, method, payload)             an RPC, answered on the same connection
    RESPONSE  (2, id, ok, payload)                 ok false: payload is the error text
    REFUSED   (3, id, reason)                      the answer to a request not run at all

Raft messages are flat tuples in a fixed field order per type, `tag` naming the type
(`_MESSAGES`); entries are (term, index, kind, data) tuples, a snapshot's metadata is the
form core/membership.py gives it. This is the replication hot path, so each type has a
small hand-written function each way rather than a layout derived from its class.

The runtime's RPCs (transport/rpcs.py) travel in REQUEST and RESPONSE frames: `RPCS`
names the method of each request, whose payload is the array of its fields (shapes.py);
an answer's payload is its tag (its place among the answers the request declares)
followed by its fields.

Decoding raises `ProtocolError` saying what is wrong. An RPC's every field is checked. A
Raft message's structure is (kinds, tags, field counts, entry kinds, the snapshot
metadata), but the types of its scalar fields are trusted from a peer that passed the
handshake: checking them cost the hot path about a tenth of its decoding time.

Handshake, connecting side first: HELLO (magic, version, token, src, dst), where `dst` is
the node it means to reach; then VERDICT (magic, version, accepted, reason). The magic and
version come first in both, and stay there in every protocol version. Arrays decode as
tuples.
"""

from __future__ import annotations

import struct
import typing
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import msgpack  # type: ignore[import-untyped]

from trioraft.core.membership import (
    members_from_wire,
    members_to_wire,
    meta_from_wire,
    meta_to_wire,
)
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
from trioraft.transport.rpcs import (
    ChangeMembers,
    ConfigurationQuery,
    IncarnationQuery,
    Join,
    MemberList,
    PeerRequest,
    Propose,
    ReadIndex,
    SnapshotBegin,
    SnapshotChunk,
    SnapshotInstall,
    StatusQuery,
    Transfer,
)
from trioraft.transport.shapes import Malformed, Shape, shape_of, shown

A = TypeVar("A")

#: the first field of both handshake frames
MAGIC = b"trioraft"
#: bumped on any incompatible change to the frames below or to what an RPC carries
#: (3: a forwarded write's outcome is typed, no longer a RESP reply; 4: every RPC typed
#: and checked, a snapshot's metadata with the members' addresses)
PROTOCOL_VERSION = 4
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


# Raft messages: per type, its frame (with the tag `_MESSAGES` gives it) and back.


def _enc_request_vote(tag: int, m: RequestVote) -> tuple[object, ...]:
    fields = (m.last_log_index, m.last_log_term, m.pre_vote, m.transfer)
    return (_RAFT, tag, m.src, m.dst, m.term, *fields)


def _dec_request_vote(frame: tuple[Any, ...]) -> RequestVote:
    _, _, src, dst, term, last_log_index, last_log_term, pre_vote, transfer = frame
    return RequestVote(
        src=src,
        dst=dst,
        term=term,
        last_log_index=last_log_index,
        last_log_term=last_log_term,
        pre_vote=pre_vote,
        transfer=transfer,
    )


def _enc_request_vote_response(tag: int, m: RequestVoteResponse) -> tuple[object, ...]:
    return (_RAFT, tag, m.src, m.dst, m.term, m.granted, m.pre_vote)


def _dec_request_vote_response(frame: tuple[Any, ...]) -> RequestVoteResponse:
    _, _, src, dst, term, granted, pre_vote = frame
    return RequestVoteResponse(src=src, dst=dst, term=term, granted=granted, pre_vote=pre_vote)


def _enc_append_entries(tag: int, m: AppendEntries) -> tuple[object, ...]:
    entries = [(e.term, e.index, e.kind, e.data) for e in m.entries]
    return (_RAFT, tag, m.src, m.dst, m.term, m.prev_index, m.prev_term, m.commit, entries)


def _dec_append_entries(frame: tuple[Any, ...]) -> AppendEntries:
    _, _, src, dst, term, prev_index, prev_term, commit, entries = frame
    kinds = _ENTRY_KINDS
    decoded = tuple([Entry(t, i, kinds[k], d) for t, i, k, d in entries])
    return AppendEntries(
        src=src,
        dst=dst,
        term=term,
        prev_index=prev_index,
        prev_term=prev_term,
        entries=decoded,
        commit=commit,
    )


def _enc_append_entries_response(tag: int, m: AppendEntriesResponse) -> tuple[object, ...]:
    return (_RAFT, tag, m.src, m.dst, m.term, m.success, m.index, m.hint_index, m.hint_term)


def _dec_append_entries_response(frame: tuple[Any, ...]) -> AppendEntriesResponse:
    _, _, src, dst, term, success, index, hint_index, hint_term = frame
    return AppendEntriesResponse(
        src=src,
        dst=dst,
        term=term,
        success=success,
        index=index,
        hint_index=hint_index,
        hint_term=hint_term,
    )


def _enc_heartbeat(tag: int, m: Heartbeat) -> tuple[object, ...]:
    return (_RAFT, tag, m.src, m.dst, m.term, m.commit, m.seq)


def _dec_heartbeat(frame: tuple[Any, ...]) -> Heartbeat:
    _, _, src, dst, term, commit, seq = frame
    return Heartbeat(src=src, dst=dst, term=term, commit=commit, seq=seq)


def _enc_heartbeat_response(tag: int, m: HeartbeatResponse) -> tuple[object, ...]:
    return (_RAFT, tag, m.src, m.dst, m.term, m.seq, m.last_index)


def _dec_heartbeat_response(frame: tuple[Any, ...]) -> HeartbeatResponse:
    _, _, src, dst, term, seq, last_index = frame
    return HeartbeatResponse(src=src, dst=dst, term=term, seq=seq, last_index=last_index)


def _enc_install_snapshot(tag: int, m: InstallSnapshot) -> tuple[object, ...]:
    return (_RAFT, tag, m.src, m.dst, m.term, meta_to_wire(m.meta))


def _dec_install_snapshot(frame: tuple[Any, ...]) -> InstallSnapshot:
    _, _, src, dst, term, meta = frame
    try:
        return InstallSnapshot(src=src, dst=dst, term=term, meta=meta_from_wire(meta))
    except ValueError as exc:
        raise ProtocolError(f"malformed InstallSnapshot: {exc}") from None


def _enc_timeout_now(tag: int, m: TimeoutNow) -> tuple[object, ...]:
    return (_RAFT, tag, m.src, m.dst, m.term)


def _dec_timeout_now(frame: tuple[Any, ...]) -> TimeoutNow:
    _, _, src, dst, term = frame
    return TimeoutNow(src=src, dst=dst, term=term)


_ENTRY_KINDS = {kind.value: kind for kind in EntryKind}

#: every Raft message type: (its tag, its encoder, its decoder)
_MESSAGES: Final[
    dict[
        type[Message],
        tuple[int, Callable[[int, Any], tuple[object, ...]], Callable[[tuple[Any, ...]], Message]],
    ]
] = {
    RequestVote: (0, _enc_request_vote, _dec_request_vote),
    RequestVoteResponse: (1, _enc_request_vote_response, _dec_request_vote_response),
    AppendEntries: (2, _enc_append_entries, _dec_append_entries),
    AppendEntriesResponse: (3, _enc_append_entries_response, _dec_append_entries_response),
    Heartbeat: (4, _enc_heartbeat, _dec_heartbeat),
    HeartbeatResponse: (5, _enc_heartbeat_response, _dec_heartbeat_response),
    InstallSnapshot: (6, _enc_install_snapshot, _dec_install_snapshot),
    TimeoutNow: (7, _enc_timeout_now, _dec_timeout_now),
}
_ENCODERS: Final = {cls: (tag, encode) for cls, (tag, encode, _) in _MESSAGES.items()}
_DECODERS: Final = {tag: decode for _, (tag, _, decode) in _MESSAGES.items()}
_NAMES: Final = {tag: cls.__name__ for cls, (tag, _, _) in _MESSAGES.items()}


def _malformed_message(frame: tuple[Any, ...], error: Exception) -> ProtocolError:
    """What is wrong with a RAFT frame whose decoding raised `error`."""
    name = _NAMES.get(frame[1]) if type(frame[1]) is int else None
    if name is None:
        return ProtocolError(f"malformed frame: no Raft message has the tag {shown(frame[1])}")
    return ProtocolError(f"malformed {name}: {type(error).__name__}: {error}")


# The runtime's RPCs: the method of each request. Its answers are the types its
# `PeerRequest[...]` declares, each tagged by its place there.

RPCS: Final[dict[str, type[PeerRequest[Any]]]] = {
    "propose": Propose,
    "read_index": ReadIndex,
    "change_members": ChangeMembers,
    "transfer": Transfer,
    "join": Join,
    "members": MemberList,
    "committed_configuration": ConfigurationQuery,
    "status": StatusQuery,
    "incarnation_of": IncarnationQuery,
    "snapshot_begin": SnapshotBegin,
    "snapshot_chunk": SnapshotChunk,
    "snapshot_install": SnapshotInstall,
}


def _core_form(cls: type, to_wire: Callable[[Any], Any], from_wire: Callable[[Any], Any]) -> Shape:
    """The shape of a value whose wire form core/membership.py defines."""

    def decode(value: Any) -> Any:
        try:
            return from_wire(value)
        except ValueError as exc:
            raise Malformed(str(exc)) from None

    def accepts(value: Any) -> bool:
        return type(value) is tuple

    return Shape(cls.__name__, to_wire, decode, lambda value: isinstance(value, cls), accepts)


#: a configuration and a snapshot's metadata travel in one form wherever they go: the
#: one a configuration entry has
_OVERRIDES: Final[dict[type, Shape]] = {
    Members: _core_form(Members, members_to_wire, members_from_wire),
    SnapshotMeta: _core_form(SnapshotMeta, meta_to_wire, meta_from_wire),
}


class _Rpc:
    """One request type on the wire: its method, its shape, and its answers by tag."""

    def __init__(self, method: str, request: type[PeerRequest[Any]]) -> None:
        self.method = method
        self.request = shape_of(request, _OVERRIDES)
        answers = _declared_answers(request)
        self.answers = {tag: shape_of(cls, _OVERRIDES) for tag, cls in enumerate(answers)}
        self.tags = {cls: tag for tag, cls in enumerate(answers)}


def _declared_answers(request: type[PeerRequest[Any]]) -> tuple[type, ...]:
    """The answer types `request` declares as `PeerRequest[A | B ...]`, in order."""
    bases = request.__orig_bases__  # type: ignore[attr-defined]
    [base] = [b for b in bases if typing.get_origin(b) is PeerRequest]
    [answer] = typing.get_args(base)
    return typing.get_args(answer) or (answer,)


_RPCS_BY_METHOD: Final = {method: _Rpc(method, request) for method, request in RPCS.items()}
_RPCS_BY_TYPE: Final = {request: _RPCS_BY_METHOD[m] for m, request in RPCS.items()}


def method_of(request: type[PeerRequest[Any]]) -> str:
    return _RPCS_BY_TYPE[request].method


def encode_call(request: PeerRequest[Any]) -> tuple[str, Payload]:
    """The method and payload that carry `request`."""
    rpc = _RPCS_BY_TYPE[type(request)]
    payload: Payload = rpc.request.encode(request)
    return rpc.method, payload


def decode_call(method: str, payload: Payload) -> PeerRequest[Any]:
    """The request a method and payload carry; ProtocolError saying what is wrong when
    they carry none."""
    rpc = _RPCS_BY_METHOD.get(method)
    if rpc is None:
        raise ProtocolError(f"unknown method {shown(method)}")
    try:
        request: PeerRequest[Any] = rpc.request.decode(payload)
    except Malformed as exc:
        raise ProtocolError(f"malformed {method!r} request: {exc}") from None
    return request


def encode_answer(request: PeerRequest[A], answer: A) -> Payload:
    """The payload that carries `answer` to `request`; TypeError when the request does
    not declare that answer."""
    rpc = _RPCS_BY_TYPE[type(request)]
    tag = rpc.tags.get(type(answer))
    if tag is None:
        raise TypeError(f"{type(answer).__name__} is not an answer to {rpc.method!r}")
    fields: list[Any] = rpc.answers[tag].encode(answer)
    return [tag, *fields]


def decode_answer(request: PeerRequest[A], payload: Payload) -> A:
    """The answer `payload` carries to `request`; ProtocolError saying what is wrong when
    it is not one the request declares."""
    rpc = _RPCS_BY_TYPE[type(request)]
    tag, *fields = payload if isinstance(payload, tuple) and payload else (None,)
    shape = rpc.answers.get(tag) if type(tag) is int else None
    if shape is None:
        raise ProtocolError(f"malformed answer to {rpc.method!r}: {shown(payload)}")
    try:
        answer: A = shape.decode(tuple(fields))
    except Malformed as exc:
        raise ProtocolError(f"malformed answer to {rpc.method!r}: {exc}") from None
    return answer


# Frames after the handshake.


def encode_message(msg: Message) -> bytes:
    """A RAFT frame carrying `msg`."""
    known = _ENCODERS.get(type(msg))
    if known is None:
        raise TypeError(f"not a Raft message type: {type(msg).__name__}")
    tag, encode = known
    return _frame(encode(tag, msg))


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
            try:
                message: Message = _DECODERS[frame[1]](frame)
            except (KeyError, ValueError, TypeError) as exc:
                raise _malformed_message(frame, exc) from None
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
