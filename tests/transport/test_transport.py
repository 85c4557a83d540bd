"""The peer transport: the codec, TcpTransport on loopback, and the in-memory network.

TCP tests use port 0 and real time, bounded by deadlines: they wait for conditions, never
for fixed sleeps. Memory network tests run under `autojump_clock`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trioraft.core.membership import ChangeKind, MemberChange
from trioraft.core.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    MemberAddress,
    Members,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from trioraft.logs import LineFormatter
from trioraft.transport import (
    FrameTooLarge,
    MemoryNetwork,
    Payload,
    ProtocolError,
    RpcBusy,
    RpcConnectionLost,
    RpcHandler,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    TcpTransport,
    Transport,
    rpcs,
)
from trioraft.transport.base import MAX_HANDLERS
from trioraft.transport.codec import (
    HEADER_SIZE,
    RPCS,
    FrameReader,
    Hello,
    Refusal,
    Verdict,
    copy_payload,
    decode_answer,
    decode_call,
    decode_frame,
    decode_hello,
    decode_verdict,
    encode_answer,
    encode_call,
    encode_hello,
    encode_message,
    encode_refusal,
    encode_request,
    encode_response,
    encode_verdict,
)
from trioraft.transport.errors import HandshakeRefused
from trioraft.transport.rpcs import PeerRequest

TOKEN = "s3cret"
LOCAL = ("127.0.0.1", 0)
#: generous bound on any single real-time wait in these tests
DEADLINE = 5.0
FAST_BACKOFF = (0.01, 0.1)


def samples(src: NodeId = "n1", dst: NodeId = "n2", term: int = 3) -> list[Message]:
    """One or more values of every Raft message type, with non-default fields."""
    members = Members(
        voters=frozenset({"n1", "n2", "n3"}),
        learners=frozenset({"n4"}),
        addresses=(("n4", MemberAddress("10.0.0.4:7000", "10.0.0.4:6379")),),
    )
    entries = (
        Entry(term, 6, EntryKind.COMMAND, b"set k v"),
        Entry(term, 7, EntryKind.NOOP),
        Entry(term, 8, EntryKind.CONFIG, b"\x00\xff" * 10),
    )
    ids: dict[str, Any] = {"src": src, "dst": dst, "term": term}
    return [
        RequestVote(**ids, last_log_index=10, last_log_term=2, pre_vote=True),
        RequestVote(**ids, last_log_index=0, last_log_term=0, transfer=True),
        RequestVoteResponse(**ids, granted=True, pre_vote=True),
        AppendEntries(**ids, prev_index=5, prev_term=2, entries=entries, commit=4),
        AppendEntries(**ids, prev_index=9, prev_term=3, entries=(), commit=9),
        AppendEntriesResponse(**ids, success=False, index=9, hint_index=4, hint_term=1),
        AppendEntriesResponse(**ids, success=True, index=12),
        Heartbeat(**ids, commit=4, seq=77),
        HeartbeatResponse(**ids, seq=77, last_index=8),
        InstallSnapshot(**ids, meta=SnapshotMeta(index=100, term=2, members=members)),
        TimeoutNow(**ids),
    ]


def body(frame: bytes) -> bytes:
    return frame[HEADER_SIZE:]


async def echo_handler(src: NodeId, method: str, payload: Payload) -> Payload:
    if method == "echo":
        return [src, payload]
    if method == "fail":
        raise ValueError("nope")
    if method == "hang":
        await trio.sleep_forever()
    raise KeyError(method)


class Gate:
    """An RPC handler: `wait` requests run until `opened` is set, the rest as
    `echo_handler`."""

    def __init__(self) -> None:
        self.opened = trio.Event()

    async def __call__(self, src: NodeId, method: str, payload: Payload) -> Payload:
        if method == "wait":
            await self.opened.wait()
            return "done"
        return await echo_handler(src, method, payload)


async def receive(transport: Transport) -> Message:
    with trio.fail_after(DEADLINE):
        return await transport.incoming.receive()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds; fail after DEADLINE."""
    with trio.fail_after(DEADLINE):
        while not condition():
            await trio.sleep(0.01)


#: formats a record as the daemon logs it (without the time)
LOG_LINE = LineFormatter(timestamps=False)


def logged(caplog: pytest.LogCaptureFixture, *texts: str) -> bool:
    """Whether the transport logged a warning whose line contains all of `texts`."""
    return any(
        r.name == "trioraft.transport"
        and r.levelno == logging.WARNING
        and all(text in LOG_LINE.format(r) for text in texts)
        for r in caplog.records
    )


# The codec.


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in samples()} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_message_round_trip(msg: Message) -> None:
    assert decode_frame(body(encode_message(msg))) == msg


def test_the_wire_format_of_messages_is_fixed() -> None:
    """Fixed bytes, so a change of the peer protocol's encoding cannot pass unnoticed
    (nodes of different versions must still understand each other; see
    docs/data-format.md): a 4-byte big-endian length, then msgpack."""
    append = AppendEntries(
        src="n1",
        dst="n2",
        term=3,
        prev_index=7,
        prev_term=2,
        entries=(Entry(3, 8, EntryKind.COMMAND, b"set k v"),),
        commit=6,
    )
    vote = RequestVoteResponse(src="n2", dst="n1", term=4, granted=True, pre_vote=False)
    assert encode_message(append).hex() == (
        "0000001b990002a26e31a26e32030702069194030800c407736574206b2076"
    )
    assert encode_message(vote).hex() == "0000000c970001a26e32a26e3104c3c2"


entry_strategy = st.builds(
    Entry,
    term=st.integers(0, 2**63 - 1),
    index=st.integers(0, 2**63 - 1),
    kind=st.sampled_from(EntryKind),
    data=st.binary(max_size=300),
)


@given(
    entries=st.lists(entry_strategy, max_size=40).map(tuple),
    commit=st.integers(0, 2**64 - 1),
    src=st.text(max_size=20),
)
def test_append_entries_round_trip(entries: tuple[Entry, ...], commit: int, src: str) -> None:
    msg = AppendEntries(
        src=src, dst="n2", term=1, prev_index=0, prev_term=0, entries=entries, commit=commit
    )
    decoded = decode_frame(body(encode_message(msg)))
    assert decoded == msg
    assert isinstance(decoded, AppendEntries)
    assert all(type(e.kind) is EntryKind for e in decoded.entries)


def test_the_wire_format_of_a_snapshot_offer_is_fixed() -> None:
    """A snapshot's metadata carries the whole configuration, addresses included, in the
    form a configuration entry has."""
    members = Members(
        voters=frozenset({"n1"}),
        learners=frozenset({"n2"}),
        addresses=(("n1", MemberAddress("h:1", "h:2")), ("n2", MemberAddress("h:3", "h:4"))),
    )
    offer = InstallSnapshot(src="n1", dst="n2", term=3, meta=SnapshotMeta(9, 2, members))
    assert encode_message(offer).hex() == (
        "0000002f960006a26e31a26e32039309029391a26e3191a26e32"
        "9293a26e31a3683a31a3683a3293a26e32a3683a33a3683a34"
    )


# The typed RPCs.


def rpc_samples() -> list[tuple[PeerRequest[Any], list[Any]]]:
    """Every RPC request, each with the answers it allows."""
    meta = SnapshotMeta(
        7, 2, Members(frozenset({"n1"}), frozenset(), (("n1", MemberAddress("h:1", "h:2")),))
    )
    failed = rpcs.Failed(rpcs.FailureKind.INDETERMINATE, "timed out")
    config = rpcs.Configuration(4, meta.members)
    not_leader = rpcs.NotLeaderAnswer("n3")
    change = (rpcs.Done(), rpcs.Refused("n9 is not a member"), failed, rpcs.NotLeaderAnswer(None))
    add = MemberChange(ChangeKind.ADD, "n4", MemberAddress("h:5", "h:6"))
    return [
        (rpcs.Propose((b"set k v", b"")), [rpcs.Proposed((b"+OK", failed)), not_leader]),
        (rpcs.ReadIndex(), [rpcs.ReadPoint(12, 1_700_000_000_000), not_leader]),
        (rpcs.ChangeMembers(add), list(change)),
        (rpcs.ChangeMembers(MemberChange(ChangeKind.REMOVE, "n2")), list(change)),
        (rpcs.Transfer(None), list(change)),
        (rpcs.Transfer("n2"), list(change)),
        (
            rpcs.Join("n5", MemberAddress("h:7", "h:8")),
            [rpcs.Admitted(meta.members), rpcs.Refused("h:7 is taken"), failed],
        ),
        (rpcs.MemberList(), [rpcs.MemberRows(({"id": "n1", "match_index": 4},)), not_leader]),
        (rpcs.StatusQuery(), [rpcs.StatusRow({"node_id": "n1", "term": 3})]),
        (rpcs.IncarnationQuery("n2"), [rpcs.IncarnationAnswer("abc", False, config)]),
        (rpcs.IncarnationQuery("n2"), [rpcs.IncarnationAnswer(None, True, config)]),
        (rpcs.ConfigurationQuery(), [config]),
        (rpcs.SnapshotBegin(meta, 100, 0xDEADBEEF), [rpcs.SnapshotOffset(40)]),
        (rpcs.SnapshotChunk(7, 2, 40, b"\x00" * 8), [rpcs.Done()]),
        (rpcs.SnapshotInstall(7, 2, 5), [rpcs.Done()]),
    ]


def test_rpc_samples_cover_every_request_type() -> None:
    assert {type(request) for request, _ in rpc_samples()} == set(RPCS.values())


@pytest.mark.parametrize("request_", [r for r, _ in rpc_samples()], ids=repr)
def test_rpc_request_round_trip(request_: PeerRequest[Any]) -> None:
    method, payload = encode_call(request_)
    assert decode_call(method, copy_payload(payload)) == request_


@pytest.mark.parametrize(
    ("request_", "answer"),
    [(r, a) for r, answers in rpc_samples() for a in answers],
    ids=lambda v: type(v).__name__,
)
def test_rpc_answer_round_trip(request_: PeerRequest[Any], answer: Any) -> None:
    assert decode_answer(request_, copy_payload(encode_answer(request_, answer))) == answer


def test_the_wire_format_of_rpcs_is_fixed() -> None:
    """Fixed bytes for a forwarded write and its answers (see test_the_wire_format_of_
    messages_is_fixed): the payload is the array of the request's fields; an answer's is
    its tag (its place among the request's answers) followed by its fields."""
    propose = rpcs.Propose((b"set k v",))
    method, payload = encode_call(propose)
    assert encode_request(5, method, payload).hex() == (
        "00000016940105a770726f706f73659191c407736574206b2076"
    )
    proposed = rpcs.Proposed((b"OK", rpcs.Failed(rpcs.FailureKind.OVERLOADED, "full")))
    assert encode_response(5, True, encode_answer(propose, proposed)).hex() == (
        "00000012940205c3920092c4024f4b9203a466756c6c"
    )
    not_leader = encode_answer(propose, rpcs.NotLeaderAnswer("n2"))
    assert encode_response(5, True, not_leader).hex() == "00000009940205c39201a26e32"


@pytest.mark.parametrize(
    ("method", "payload", "error"),
    [
        ("nothing", [], "unknown method 'nothing'"),
        ("propose", [[b"ok", 5]], "Propose.commands: item 1: 5 is not bytes"),
        ("propose", [b"one"], "Propose.commands: b'one' is not an array"),
        ("propose", [], r"\(\) is not Propose \(commands\)"),
        ("read_index", None, "None is not ReadIndex"),
        ("transfer", [7], "Transfer.target: 7 is not str or None"),
        ("change_members", [["grow", "n4", None]], "MemberChange.kind: 'grow' is not a ChangeKind"),
        (
            "change_members",
            [["add", "n4", ["h:1"]]],
            r"address: \('h:1',\) is not MemberAddress or None",
        ),
        ("incarnation_of", [None], "IncarnationQuery.member: None is not str"),
        ("snapshot_chunk", [1, 2, -1.5, b""], "SnapshotChunk.offset: -1.5 is not int"),
        ("snapshot_install", [1, True, 3], "SnapshotInstall.term: True is not int"),
        ("snapshot_begin", [[1, 1, [[], [], [["n1", 2, "h"]]]], 1, 1], "address is"),
        ("snapshot_begin", [[1, 1, [[5], [], []]], 1, 1], "voters holds 5"),
    ],
)
def test_a_malformed_rpc_request_is_refused_saying_what_is_wrong(
    method: str, payload: Payload, error: str
) -> None:
    with pytest.raises(ProtocolError, match=error):
        decode_call(method, copy_payload(payload))


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (None, "malformed answer to 'propose': None"),
        ([2], "malformed answer to 'propose': \\(2,\\)"),
        (["0", []], "malformed answer to 'propose'"),
        ([0, [b"x", [9, "?"]]], "Proposed.outcomes: item 1: Failed.kind: 9 is not a FailureKind"),
        ([0, [b"x", [1]]], "Proposed.outcomes: item 1"),
        ([1, 5], "NotLeaderAnswer.leader: 5 is not str or None"),
    ],
)
def test_a_malformed_rpc_answer_is_refused_saying_what_is_wrong(
    payload: Payload, error: str
) -> None:
    with pytest.raises(ProtocolError, match=error):
        decode_answer(rpcs.Propose(()), copy_payload(payload))


def test_an_answer_a_request_does_not_allow_cannot_be_encoded() -> None:
    with pytest.raises(TypeError, match="NotLeaderAnswer is not an answer to 'status'"):
        encode_answer(rpcs.StatusQuery(), rpcs.NotLeaderAnswer(None))


def test_frame_reader_reassembles_a_stream_fed_byte_by_byte() -> None:
    messages = samples()
    stream = b"".join(encode_message(m) for m in messages)
    stream += encode_request(7, "echo", {"k": [b"v", 1]}) + encode_response(7, False, "boom")
    stream += encode_refusal(8, "too busy")
    reader = FrameReader(max_frame=1 << 20)
    bodies = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        bodies.extend(reader.bodies())
    decoded = [decode_frame(b) for b in bodies]
    assert decoded[: len(messages)] == messages
    request, response, refusal = decoded[len(messages) :]
    assert (request.id, request.method, request.payload) == (7, "echo", {"k": (b"v", 1)})  # type: ignore[union-attr]
    assert (response.id, response.ok, response.payload) == (7, False, "boom")  # type: ignore[union-attr]
    assert refusal == Refusal(8, "too busy")


def test_frame_reader_refuses_an_oversized_frame_from_its_header() -> None:
    reader = FrameReader(max_frame=100)
    reader.feed((101).to_bytes(4, "big"))
    with pytest.raises(FrameTooLarge):
        reader.bodies()


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",
        msgpack.packb("not a frame"),
        msgpack.packb({}),
        msgpack.packb([9, 1, 2]),
        msgpack.packb([0, 99, "a", "b", 1]),
        msgpack.packb([0, 7, "a", "b"]),
        msgpack.packb([0, 2, "a", "b", 1, 0, 0, 0, [[1, 1, 9, b""]]]),
        msgpack.packb([1, "id", "method", None]),
        msgpack.packb([2, 1, "yes", None]),
        msgpack.packb([3, 1, 2]),
        msgpack.packb([3, 1]),
        msgpack.packb([0, 7, "a", "b", 1]) + b"\x00",
    ],
)
def test_malformed_frames_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(raw)


def test_handshake_round_trip_and_version_check() -> None:
    hello = Hello(token=b"t", src="n1", dst="n2")
    assert decode_hello(body(encode_hello(hello))) == hello
    verdict = Verdict(accepted=False, reason="wrong cluster token")
    assert decode_verdict(body(encode_verdict(verdict))) == verdict
    with pytest.raises(ProtocolError, match="version 99"):
        decode_hello(msgpack.packb([b"trioraft", 99, b"t", "n1", "n2"]))
    with pytest.raises(ProtocolError, match="not a trioraft peer"):
        decode_hello(msgpack.packb([b"redis", 1, b"t", "n1", "n2"]))


def test_unencodable_payload_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not msgpack-encodable"):
        encode_request(1, "m", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not msgpack-encodable"):
        copy_payload({1, 2})  # type: ignore[arg-type]


# TcpTransport.


@asynccontextmanager
async def tcp_nodes(
    *ids: NodeId, handler: RpcHandler = echo_handler, **options: Any
) -> AsyncIterator[dict[NodeId, TcpTransport]]:
    """Transports for `ids` on loopback, serving, each knowing all the others."""
    options.setdefault("backoff", FAST_BACKOFF)
    transports = {i: TcpTransport(i, TOKEN, LOCAL, {}, handler, **options) for i in ids}
    async with trio.open_nursery() as nursery:
        addresses = {i: await nursery.start(t.serve) for i, t in transports.items()}
        for transport in transports.values():
            transport.set_peers(addresses)
        yield transports
        nursery.cancel_scope.cancel()


async def start_stoppable(
    nursery: trio.Nursery, transport: Transport
) -> tuple[Any, trio.CancelScope]:
    """Start `transport.serve` in `nursery` under a scope of its own: (started value, scope)."""
    scope = trio.CancelScope()

    async def serve(task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await transport.serve(task_status=task_status)

    return await nursery.start(serve), scope


async def exchange(a: Transport, b: Transport) -> None:
    """What every transport must do: messages and RPCs both ways, errors named."""
    for msg in samples(a.node_id, b.node_id):
        a.send(msg)
    for msg in samples(a.node_id, b.node_id):
        assert await receive(b) == msg
    reply = TimeoutNow(src=b.node_id, dst=a.node_id, term=9)
    b.send(reply)
    assert await receive(a) == reply
    payload: Payload = {"key": b"\x00bytes", "list": [1, "two", None], "n": 2**40}
    expected = (a.node_id, {"key": b"\x00bytes", "list": (1, "two", None), "n": 2**40})
    assert await a.call(b.node_id, "echo", payload, timeout=DEADLINE) == expected
    assert await b.call(a.node_id, "echo", b"x", timeout=DEADLINE) == (b.node_id, b"x")
    with pytest.raises(RpcRemoteError, match="ValueError: nope"):
        await a.call(b.node_id, "fail", None, timeout=DEADLINE)
    with pytest.raises(RpcUnavailable, match="unknown peer"):
        await a.call("nobody", "echo", None, timeout=DEADLINE)


async def refuses_requests_beyond_the_cap(a: Transport, b: Transport, gate: Gate) -> None:
    """What every transport must do: with a link's handlers all busy, a further request
    on it is refused at once, and neither the Raft messages behind it nor the other
    direction wait; once handlers finish, requests run again."""
    async with trio.open_nursery() as nursery:
        for _ in range(MAX_HANDLERS):
            nursery.start_soon(a.call, b.node_id, "wait", None, DEADLINE)
        await trio.testing.wait_all_tasks_blocked()  # every request is on its way
        with pytest.raises(RpcBusy, match=f"already running {MAX_HANDLERS} requests"):
            await a.call(b.node_id, "echo", 1, timeout=DEADLINE)
        a.send(heartbeat(a.node_id, b.node_id))
        assert await receive(b) == heartbeat(a.node_id, b.node_id)
        assert await b.call(a.node_id, "echo", 2, timeout=DEADLINE) == (b.node_id, 2)
        gate.opened.set()
    assert await a.call(b.node_id, "echo", 3, timeout=DEADLINE) == (a.node_id, 3)


async def test_two_tcp_nodes_exchange_messages_and_rpcs() -> None:
    async with tcp_nodes("n1", "n2") as nodes:
        await exchange(nodes["n1"], nodes["n2"])
        stats = nodes["n1"].stats()["n2"]
        assert (
            stats.connected and stats.dropped == 0 and stats.sent == len(samples()) + 2
        )  # and two calls


async def test_tcp_refuses_requests_beyond_the_cap_and_never_stalls_the_link() -> None:
    gate = Gate()
    async with tcp_nodes("n1", "n2", handler=gate) as nodes:
        await refuses_requests_beyond_the_cap(nodes["n1"], nodes["n2"], gate)


async def test_three_tcp_nodes_all_to_all() -> None:
    async with tcp_nodes("n1", "n2", "n3") as nodes:
        for src, transport in nodes.items():
            for dst in nodes:
                if dst != src:
                    transport.send(Heartbeat(src=src, dst=dst, term=1, commit=0, seq=1))
        for dst, transport in nodes.items():
            got = {(await receive(transport)).src for _ in range(2)}
            assert got == set(nodes) - {dst}
        assert await nodes["n3"].call("n1", "echo", 3, timeout=DEADLINE) == ("n3", 3)


async def test_a_slow_rpc_neither_blocks_raft_messages_nor_outlives_its_timeout() -> None:
    async with tcp_nodes("n1", "n2") as nodes:
        n1, n2 = nodes["n1"], nodes["n2"]
        async with trio.open_nursery() as nursery:

            async def hanging_call() -> None:
                with pytest.raises(RpcTimeout):
                    await n1.call("n2", "hang", None, timeout=0.3)

            nursery.start_soon(hanging_call)
            await trio.sleep(0)
            msg = Heartbeat(src="n1", dst="n2", term=1, commit=0, seq=5)
            n1.send(msg)
            assert await receive(n2) == msg
            assert await n1.call("n2", "echo", 1, timeout=DEADLINE) == ("n1", 1)


async def test_rpc_fails_with_connection_lost_when_the_peer_stops() -> None:
    async with tcp_nodes("n1") as nodes, trio.open_nursery() as nursery:
        n1 = nodes["n1"]
        n2 = TcpTransport("n2", TOKEN, LOCAL, {"n1": n1.listen_addr}, echo_handler)
        n2_address, n2_scope = await start_stoppable(nursery, n2)
        n1.set_peers({"n2": n2_address})

        async def stop_n2_once_handling() -> None:
            await wait_until(lambda: n1.stats()["n2"].sent > 0)
            n2_scope.cancel()

        nursery.start_soon(stop_n2_once_handling)
        with pytest.raises(RpcConnectionLost):
            await n1.call("n2", "hang", None, timeout=DEADLINE)


@pytest.mark.parametrize(
    ("token", "src", "expects", "reason"),
    [
        ("wrong", "n2", "n1", "wrong cluster token"),
        (TOKEN, "n9", "n1", "unknown node id 'n9'"),
        (TOKEN, "n2", "n3", "it expects node 'n3'"),
    ],
)
async def test_handshake_refusals(
    caplog: pytest.LogCaptureFixture, token: str, src: NodeId, expects: NodeId, reason: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="trioraft.transport")
    async with tcp_nodes("n1") as nodes:
        n1 = nodes["n1"]
        n1.set_peers({"n2": ("127.0.0.1", 1)})
        intruder = TcpTransport(src, token, LOCAL, {expects: n1.listen_addr}, echo_handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(intruder.serve)
            intruder.send(TimeoutNow(src=src, dst=expects, term=1))
            with pytest.raises(RpcUnavailable, match=reason):
                await intruder.call(expects, "echo", None, timeout=DEADLINE)
            await wait_until(lambda: logged(caplog, "remote=127.0.0.1:", f'reason="{reason}'))
            assert intruder.stats()[expects].dropped >= 1
            with pytest.raises(trio.WouldBlock):
                n1.incoming.receive_nowait()
            nursery.cancel_scope.cancel()


def framed(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj)
    return len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "handshake timed out"),
        (b"*1\r\n$4\r\nPING\r\n", "exceeds the limit"),
        (framed([b"redis", 1, b"t", "n2", "n1"]), "not a trioraft peer"),
        (framed([b"trioraft", 99, b"t", "n2", "n1"]), "protocol version 99 not supported"),
    ],
)
async def test_strangers_are_refused(
    caplog: pytest.LogCaptureFixture, data: bytes, reason: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="trioraft.transport")
    async with tcp_nodes("n1", "n2", connect_timeout=0.2) as nodes:
        stream = await trio.open_tcp_stream(*nodes["n1"].listen_addr)
        try:
            await stream.send_all(data)
            await wait_until(lambda: logged(caplog, "refused a peer connection", reason))
        finally:
            await stream.aclose()
        assert await nodes["n2"].call("n1", "echo", None, timeout=DEADLINE) == ("n2", None)


async def test_set_peers_moves_and_removes_peers() -> None:
    async with tcp_nodes("n1", "n2") as nodes, trio.open_nursery() as nursery:
        n1, n2 = nodes["n1"], nodes["n2"]
        assert await n1.call("n2", "echo", 1, timeout=DEADLINE) == ("n1", 1)
        moved = TcpTransport("n2", TOKEN, LOCAL, {"n1": n1.listen_addr}, echo_handler)
        n1.set_peers({"n2": await nursery.start(moved.serve)})
        msg = TimeoutNow(src="n1", dst="n2", term=1)
        n1.send(msg)
        assert await receive(moved) == msg
        with pytest.raises(trio.WouldBlock):
            n2.incoming.receive_nowait()
        n1.set_peers({})
        assert n1.stats() == {}
        with pytest.raises(RpcUnavailable, match="unknown peer"):
            await n1.call("n2", "echo", 1, timeout=DEADLINE)
        nursery.cancel_scope.cancel()


async def test_a_down_peer_blocks_nobody_and_is_reached_once_up() -> None:
    probe = trio.socket.socket()
    await probe.bind(("127.0.0.1", 0))
    n3_addr = probe.getsockname()
    probe.close()
    async with tcp_nodes("n1", "n2") as nodes, trio.open_nursery() as nursery:
        n1, n2 = nodes["n1"], nodes["n2"]
        n1.set_peers({"n2": n2.listen_addr, "n3": n3_addr})
        for seq in range(200):
            for dst in ("n3", "n2"):
                n1.send(Heartbeat(src="n1", dst=dst, term=1, commit=0, seq=seq))
        for seq in range(200):
            assert await receive(n2) == Heartbeat(src="n1", dst="n2", term=1, commit=0, seq=seq)
        with pytest.raises(RpcUnavailable, match="cannot reach peer 'n3'"):
            await n1.call("n3", "echo", None, timeout=DEADLINE)
        assert n1.stats()["n3"].dropped > 0 and not n1.stats()["n3"].connected

        n3 = TcpTransport("n3", TOKEN, n3_addr, {"n1": n1.listen_addr}, echo_handler)
        await nursery.start(n3.serve)
        got: list[Message] = []

        async def collect() -> None:
            got.append(await n3.incoming.receive())

        nursery.start_soon(collect)
        msg = TimeoutNow(src="n1", dst="n3", term=2)
        with trio.fail_after(DEADLINE):
            while not got:
                n1.send(msg)
                await trio.sleep(0.02)
        assert got == [msg]
        assert n1.stats()["n3"].connected
        nursery.cancel_scope.cancel()


async def test_an_oversized_frame_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trioraft.transport")
    async with tcp_nodes("n1", "n2", max_frame=1024) as nodes:
        n1, n2 = nodes["n1"], nodes["n2"]
        stream = await trio.open_tcp_stream(*n1.listen_addr)
        try:
            with trio.fail_after(DEADLINE):
                await stream.send_all(encode_hello(Hello(TOKEN.encode(), "n2", "n1")))
                reader = FrameReader(4096)
                while not (bodies := reader.bodies()):
                    reader.feed(await stream.receive_some())
                assert decode_verdict(bodies[0]).accepted
                await stream.send_all((1025).to_bytes(4, "big") + b"\x00" * 100)
                with pytest.raises(trio.BrokenResourceError):
                    while await stream.receive_some():
                        pass
                    raise trio.BrokenResourceError("closed")
        finally:
            await stream.aclose()
        await wait_until(lambda: logged(caplog, "frame of 1025 bytes exceeds the limit"))
        # only that connection ended
        n2.send(heartbeat("n2", "n1"))
        assert await receive(n1) == heartbeat("n2", "n1")


async def test_a_message_above_the_frame_limit_is_dropped_by_the_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with tcp_nodes("n1", "n2", max_frame=1024) as nodes:
        n1, n2 = nodes["n1"], nodes["n2"]
        big = Entry(1, 1, EntryKind.COMMAND, b"x" * 2000)
        n1.send(
            AppendEntries(
                src="n1", dst="n2", term=1, prev_index=0, prev_term=0, entries=(big,), commit=0
            )
        )
        assert n1.stats()["n2"].dropped == 1
        assert logged(caplog, "above the frame limit")
        small = TimeoutNow(src="n1", dst="n2", term=1)
        n1.send(small)
        assert await receive(n2) == small


async def test_an_idle_connection_is_closed_unless_a_handler_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trioraft.transport")
    gate = Gate()
    async with tcp_nodes("n1", "n2", handler=gate, idle_timeout=0.1) as nodes:
        n2 = nodes["n2"]
        async with trio.open_nursery() as nursery:
            answers: list[Payload] = []

            async def slow_call() -> None:
                answers.append(await n2.call("n1", "wait", None, timeout=DEADLINE))

            nursery.start_soon(slow_call)
            await trio.sleep(0.5)  # several idle timeouts go by while the handler runs
            assert not idle_closed(caplog)
            gate.opened.set()
        assert answers == ["done"]
        await wait_until(lambda: idle_closed(caplog) and not n2.stats()["n1"].connected)
        # the sender connects again when it next has something to say
        assert await n2.call("n1", "echo", None, timeout=DEADLINE) == ("n2", None)


def idle_closed(caplog: pytest.LogCaptureFixture) -> bool:
    return any("closing an idle connection" in r.getMessage() for r in caplog.records)


async def test_a_write_the_peer_never_reads_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that takes the connection and then reads nothing: once the socket's buffers
    are full, the write waits, and after the write timeout the connection is closed."""
    async with trio.open_nursery() as nursery:
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        handshaken = trio.Event()

        async def deaf_peer() -> None:
            async with listener, await listener.accept() as stream:
                reader = FrameReader(4096)
                while not reader.bodies():
                    reader.feed(await stream.receive_some())
                await stream.send_all(encode_verdict(Verdict(accepted=True)))
                handshaken.set()
                await trio.sleep_forever()

        nursery.start_soon(deaf_peer)
        n1 = TcpTransport("n1", TOKEN, LOCAL, {}, echo_handler, write_timeout=0.2)
        await nursery.start(n1.serve)
        n1.set_peers({"n2": listener.socket.getsockname()[:2]})
        big = Entry(1, 1, EntryKind.COMMAND, b"x" * 500_000)
        append = AppendEntries(
            src="n1", dst="n2", term=1, prev_index=0, prev_term=0, entries=(big,), commit=0
        )
        with trio.fail_after(DEADLINE):
            while not logged(caplog, "a write timed out", "peer=n2"):
                n1.send(append)
                await trio.sleep(0.01)
        await wait_until(lambda: not n1.stats()["n2"].connected)
        nursery.cancel_scope.cancel()


# The memory network, in virtual time.


@asynccontextmanager
async def memory_nodes(
    network: MemoryNetwork, *ids: NodeId, handler: RpcHandler = echo_handler
) -> AsyncIterator[dict[NodeId, Transport]]:
    transports = {i: network.transport(i, handler) for i in ids}
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await nursery.start(transport.serve)
        yield dict(transports)
        nursery.cancel_scope.cancel()


def heartbeat(src: NodeId, dst: NodeId, seq: int = 0) -> Heartbeat:
    return Heartbeat(src=src, dst=dst, term=1, commit=0, seq=seq)


async def test_memory_transport_exchanges_messages_and_rpcs(autojump_clock: Any) -> None:
    async with memory_nodes(MemoryNetwork(), "n1", "n2") as nodes:
        await exchange(nodes["n1"], nodes["n2"])


async def test_memory_refuses_requests_beyond_the_cap_as_tcp_does(autojump_clock: Any) -> None:
    gate = Gate()
    async with memory_nodes(MemoryNetwork(delay=0.001), "n1", "n2", handler=gate) as nodes:
        await refuses_requests_beyond_the_cap(nodes["n1"], nodes["n2"], gate)


async def test_memory_rpcs_keep_their_order_with_raft_messages(autojump_clock: Any) -> None:
    order: list[str] = []

    async def record(src: NodeId, method: str, payload: Payload) -> Payload:
        order.append(method)
        return None

    async def collect(transport: Transport) -> None:
        async for msg in transport.incoming:
            order.append(type(msg).__name__)

    network = MemoryNetwork(delay=0.01)
    async with memory_nodes(network, "n1", "n2", handler=record) as nodes:
        n1, n2 = nodes["n1"], nodes["n2"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, n2)
            n1.send(heartbeat("n1", "n2"))
            network.set_delay("n1", "n2", 0.001)  # later items never overtake earlier ones
            await n1.call("n2", "first", None, timeout=1.0)
            n1.send(TimeoutNow(src="n1", dst="n2", term=1))
            await n1.call("n2", "second", None, timeout=1.0)
            nursery.cancel_scope.cancel()
        assert order == ["Heartbeat", "first", "TimeoutNow", "second"]


async def test_memory_partition_and_heal(autojump_clock: Any) -> None:
    network = MemoryNetwork()
    async with memory_nodes(network, "n1", "n2", "n3") as nodes:
        n1, n2, n3 = nodes["n1"], nodes["n2"], nodes["n3"]
        network.partition({"n1"}, {"n2", "n3"})
        n1.send(heartbeat("n1", "n2"))
        n2.send(heartbeat("n2", "n1"))
        n2.send(heartbeat("n2", "n3"))
        assert await receive(n3) == heartbeat("n2", "n3")
        with pytest.raises(RpcTimeout):
            await n1.call("n2", "echo", None, timeout=1.0)
        assert n1.stats()["n2"].dropped == 1 and not n1.stats()["n2"].connected
        with pytest.raises(trio.WouldBlock):
            n1.incoming.receive_nowait()
        with pytest.raises(trio.WouldBlock):
            n2.incoming.receive_nowait()

        network.heal()
        n1.send(heartbeat("n1", "n2", 1))
        assert await receive(n2) == heartbeat("n1", "n2", 1)
        assert await n1.call("n2", "echo", None, timeout=1.0) == ("n1", None)

        network.isolate("n3")
        n3.send(heartbeat("n3", "n1"))
        n2.send(heartbeat("n2", "n3"))
        n2.send(heartbeat("n2", "n1", 2))
        assert await receive(n1) == heartbeat("n2", "n1", 2)
        assert n2.stats()["n3"].dropped == 1 and n3.stats()["n1"].dropped == 1


async def test_memory_one_way_block(autojump_clock: Any) -> None:
    network = MemoryNetwork()
    async with memory_nodes(network, "n1", "n2") as nodes:
        n1, n2 = nodes["n1"], nodes["n2"]
        network.block("n1", "n2")
        n1.send(heartbeat("n1", "n2"))
        n2.send(heartbeat("n2", "n1"))
        assert await receive(n1) == heartbeat("n2", "n1")
        # the request gets through, the answer does not
        with pytest.raises(RpcTimeout):
            await n2.call("n1", "echo", None, timeout=1.0)
        assert n1.stats()["n2"].dropped == 1
        network.unblock("n1", "n2")
        assert await n2.call("n1", "echo", None, timeout=1.0) == ("n2", None)


async def test_memory_delay_keeps_order_and_a_partition_drops_what_is_in_flight(
    autojump_clock: Any,
) -> None:
    network = MemoryNetwork(delay=0.01)
    async with memory_nodes(network, "n1", "n2") as nodes:
        n1, n2 = nodes["n1"], nodes["n2"]
        network.set_delay("n1", "n2", 0.5)
        start = trio.current_time()
        for seq in range(5):
            n1.send(heartbeat("n1", "n2", seq))
        for seq in range(5):
            assert await receive(n2) == heartbeat("n1", "n2", seq)
        assert trio.current_time() - start == pytest.approx(0.5)

        start = trio.current_time()
        assert await n1.call("n2", "echo", 1, timeout=2.0) == ("n1", 1)
        assert trio.current_time() - start == pytest.approx(0.51)

        n1.send(heartbeat("n1", "n2", 99))
        await trio.sleep(0.25)
        network.block("n1", "n2")
        await trio.sleep(0.5)
        network.heal()
        n1.send(heartbeat("n1", "n2", 100))
        assert await receive(n2) == heartbeat("n1", "n2", 100)


async def test_memory_down_node_and_restart(autojump_clock: Any) -> None:
    network = MemoryNetwork()
    async with memory_nodes(network, "n1") as nodes, trio.open_nursery() as nursery:
        n1 = nodes["n1"]
        n2 = network.transport("n2", echo_handler)
        _, n2_scope = await start_stoppable(nursery, n2)

        async def stop_n2() -> None:
            await trio.sleep(1)
            n2_scope.cancel()

        nursery.start_soon(stop_n2)
        with pytest.raises(RpcConnectionLost):
            await n1.call("n2", "hang", None, timeout=10)
        with pytest.raises(RpcUnavailable):
            await n1.call("n2", "echo", None, timeout=10)
        n1.send(heartbeat("n1", "n2"))
        assert n1.stats()["n2"].dropped == 1

        restarted = network.transport("n2", echo_handler, peers=["n1"])
        await nursery.start(restarted.serve)
        n1.send(heartbeat("n1", "n2", 1))
        assert await receive(restarted) == heartbeat("n1", "n2", 1)
        restarted.send(heartbeat("n2", "n3"))
        assert restarted.stats()["n3"].dropped == 1
        with pytest.raises(ValueError, match="already has a serving transport"):
            network.transport("n2", echo_handler)
        nursery.cancel_scope.cancel()


def unreachable_levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.levelname
        for r in caplog.records
        if r.name == "trioraft.transport" and "peer unreachable" in r.getMessage()
    ]


async def test_a_peer_never_reached_is_warned_about_only_after_a_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At a normal start the peers start at about the same time: a peer not listening yet
    is worth an INFO line; one still unreachable after the grace period, one WARNING."""
    caplog.set_level(logging.DEBUG, logger="trioraft.transport")
    async with tcp_nodes("n2") as nodes:
        # n2's address, with nothing listening once n2 is gone
        address = nodes["n2"].listen_addr
    n1 = TcpTransport(
        "n1",
        TOKEN,
        LOCAL,
        {"n2": address},
        echo_handler,
        backoff=FAST_BACKOFF,
        # three attempts (the INFO lines awaited first) fit in it even when the test waits
        # a second or more for the CPU; then one WARNING
        unreachable_grace=2.0,
    )

    async def keep_sending() -> None:  # as a node does: a failed attempt drops the queue
        while True:
            n1.send(heartbeat("n1", "n2"))
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        await nursery.start(n1.serve)
        nursery.start_soon(keep_sending)
        await wait_until(lambda: len(unreachable_levels(caplog)) >= 3)
        assert unreachable_levels(caplog)[0] == "INFO"
        assert "WARNING" not in unreachable_levels(caplog)
        await wait_until(lambda: "WARNING" in unreachable_levels(caplog))
        await trio.sleep(0.3)
        assert unreachable_levels(caplog).count("WARNING") == 1
        nursery.cancel_scope.cancel()


async def test_a_peer_reached_before_is_warned_about_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trioraft.transport")
    n1 = TcpTransport(
        "n1", TOKEN, LOCAL, {}, echo_handler, backoff=FAST_BACKOFF, unreachable_grace=60.0
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(n1.serve)
        async with tcp_nodes("n2") as nodes:
            n2 = nodes["n2"]
            n1.set_peers({"n2": n2.listen_addr})
            n2.set_peers({"n1": n1.listen_addr})
            n1.send(heartbeat("n1", "n2"))
            assert await receive(n2) == heartbeat("n1", "n2")
        n1.send(heartbeat("n1", "n2"))
        await wait_until(lambda: bool(unreachable_levels(caplog)))
        assert unreachable_levels(caplog)[0] == "WARNING"
        nursery.cancel_scope.cancel()


# Guests: a node that knows only an address.


async def test_a_guest_calls_a_guest_method_at_an_address() -> None:
    async with tcp_nodes("n1", guest_methods=frozenset({"echo", "fail"})) as nodes:
        n1 = nodes["n1"]
        joiner = TcpTransport("n9", TOKEN, LOCAL, {}, echo_handler)
        assert await joiner.call_address(n1.listen_addr, "echo", 7, DEADLINE) == ("n9", 7)
        with pytest.raises(RpcRemoteError, match="ValueError: nope"):
            await joiner.call_address(n1.listen_addr, "fail", None, DEADLINE)


@pytest.mark.parametrize(
    ("token", "guest_methods", "method", "error", "reason"),
    [
        ("wrong", frozenset({"echo"}), "echo", RpcUnavailable, "wrong cluster token"),
        (TOKEN, frozenset(), "echo", RpcUnavailable, "unknown node id 'n9'"),
        (TOKEN, frozenset({"echo"}), "fail", RpcConnectionLost, "closed the connection"),
    ],
)
async def test_guests_are_refused_what_they_may_not_do(
    caplog: pytest.LogCaptureFixture,
    token: str,
    guest_methods: frozenset[str],
    method: str,
    error: type[Exception],
    reason: str,
) -> None:
    async with tcp_nodes("n1", guest_methods=guest_methods) as nodes:
        joiner = TcpTransport("n9", token, LOCAL, {}, echo_handler)
        with pytest.raises(error, match=reason) as info:
            await joiner.call_address(nodes["n1"].listen_addr, method, None, DEADLINE)
        refused = isinstance(info.value.__cause__, HandshakeRefused)
        assert refused == (error is RpcUnavailable)  # a node answered the handshake: no
    if error is RpcConnectionLost:
        assert logged(caplog, "a node that is not a peer called 'fail'")


async def test_a_guest_may_not_send_raft_messages(caplog: pytest.LogCaptureFixture) -> None:
    async with tcp_nodes("n1", guest_methods=frozenset({"echo"})) as nodes:
        n1 = nodes["n1"]
        stream = await trio.open_tcp_stream(*n1.listen_addr)
        try:
            await stream.send_all(encode_hello(Hello(TOKEN.encode(), "n9", "")))
            # after the verdict: frames sent before it would be refused as such
            reader = FrameReader(4096)
            with trio.fail_after(DEADLINE):
                while not (bodies := reader.bodies()):
                    reader.feed(await stream.receive_some())
            assert decode_verdict(bodies[0]).accepted
            await stream.send_all(encode_message(TimeoutNow(src="n9", dst="n1", term=1)))
            await wait_until(lambda: logged(caplog, "not a peer sent more than requests"))
        finally:
            await stream.aclose()
        with pytest.raises(trio.WouldBlock):
            n1.incoming.receive_nowait()


async def test_a_node_it_does_not_know_is_a_guest_only_when_it_names_no_node() -> None:
    async with tcp_nodes("n1", guest_methods=frozenset({"echo"})) as nodes:
        n1 = nodes["n1"]
        stranger = TcpTransport("n9", TOKEN, LOCAL, {"n1": n1.listen_addr}, echo_handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(stranger.serve)
            with pytest.raises(RpcUnavailable, match="unknown node id 'n9'"):
                await stranger.call("n1", "echo", None, timeout=DEADLINE)
            nursery.cancel_scope.cancel()


async def test_an_address_where_no_node_listens_is_unavailable() -> None:
    joiner = TcpTransport("n9", TOKEN, LOCAL, {}, echo_handler, connect_timeout=0.5)
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(RpcUnavailable, match=f"127.0.0.1:{port}: "):
        await joiner.call_address(("127.0.0.1", port), "echo", None, DEADLINE)
