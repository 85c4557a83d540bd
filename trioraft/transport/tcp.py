"""Peer links over TCP: one outgoing connection per peer, handshake first, frames after.

Theory of operation:

- Each node sends to a peer over its own outgoing connection to that peer, the link. Raft
  messages and RPC requests go out on the link; RPC responses come back on the same
  connection. The peer sends its own traffic over its own link the other way, so a pair of
  nodes holds up to two connections, and each connection has one writer per side.
- A link is driven by one task. It connects only once something is queued for the peer,
  under one deadline for connect and handshake, and after a failure waits an exponential
  backoff with jitter before trying again. Its queue is bounded in frames and bytes: `send`
  drops and counts what does not fit, so a slow or dead peer never blocks the others.
- The writer drains everything queued and writes it with one `send_all`, under a deadline.
- Without TLS a connection is a `FastSocketStream` (fast_stream.py): a send or receive
  that need not wait makes its system call without a pass through the event loop. The
  write and idle deadlines are one cancel scope per connection whose deadline is set
  around each wait, not a scope entered per write or per read.
- Nothing queued or pending outlives the connection it was meant for: when a connection
  ends, or an attempt to make one fails, the link drops its queue and fails its pending
  calls (`RpcConnectionLost` once connected, `RpcUnavailable` when it never connected).
  Messages queued during the backoff pause go out on the next attempt.
- The accepting side reads the handshake under a deadline, with a small frame limit, and
  refuses (and logs, with the remote address and the reason) a bad magic or version, a
  wrong cluster token (compared in constant time), a node id it does not know, or a
  handshake meant for another node.
- After the handshake, one reader task per accepted connection. Raft messages go to
  `incoming`; when that is full the reader waits, and TCP pushes back on the sender's
  queue. Each RPC request runs in its own task, at most `MAX_HANDLERS` at a time per
  connection; the reader never waits for one, it refuses the request beyond them at once
  (`base.HandlerSlots`). Answers go back through the connection's writer task.
- Deadlines: connect and handshake, each write, and the read on an accepted connection,
  which is closed after `idle_timeout` without frames and without handlers running (the
  sender reconnects when it next has something to say). The reader of answers on an
  outgoing connection has no deadline of its own: it ends with the connection, which the
  write deadline and the peer's idle timeout bound, and each call has its own timeout.
- TLS (when given `PeerContexts`): mutual. The accepting side requires a certificate
  from the cluster's CA and refuses (and logs) a failed TLS handshake like a bad
  handshake; the connecting side checks the peer's certificate and that it names the
  host it connected to. TLS comes first, under the same connect-and-handshake deadline;
  the token handshake and the frames then run inside it unchanged.
- Guests: a node that is not a member yet knows only an address. `call_address` opens a
  connection of its own to whichever node listens there (its Hello names no `dst`), sends
  one request and closes. The accepting side takes such a connection (and only such) from
  a node it does not know, when it has `guest_methods`, and only requests for them: a
  Raft message, or another method, ends it. The token is checked as for any peer.
- `set_peers` changes whom a node connects to and accepts. A changed address takes effect
  at once: the current connection is dropped, its pending calls fail, and what is queued
  goes to the new address. Connections already accepted from a removed peer last until
  they end.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Mapping
from typing import TypeAlias

import trio

from trioraft.core.messages import Message, NodeId
from trioraft.logs import NodeLogger
from trioraft.transport.base import (
    Address,
    HandlerSlots,
    Payload,
    PeerStats,
    PendingCall,
    RpcHandler,
    describe_error,
    remote_name,
)
from trioraft.transport.codec import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_HANDSHAKE_FRAME,
    FrameReader,
    Hello,
    Refusal,
    Request,
    Response,
    Verdict,
    decode_frame,
    decode_hello,
    decode_verdict,
    encode_hello,
    encode_message,
    encode_refusal,
    encode_request,
    encode_response,
    encode_verdict,
)
from trioraft.transport.errors import (
    HandshakeRefused,
    ProtocolError,
    RpcBusy,
    RpcConnectionLost,
    RpcError,
    RpcTimeout,
    RpcUnavailable,
    TransportError,
)
from trioraft.transport.fast_stream import fast_stream
from trioraft.transport.tls import PeerContexts, handshake_failure
from trioraft.wakeup import Wakeup

#: how much one read asks the kernel for
_RECEIVE_SIZE = 256 * 1024

#: what ends a connection attempt without being a bug
_CONNECT_ERRORS = (OSError, trio.TooSlowError, trio.BrokenResourceError, TransportError)
#: what ends an established connection without being a bug
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)

#: the `dst` of a Hello meant for whichever node listens at the address
ANY_NODE: NodeId = ""

#: (the connecting node, the reader past its Hello, whether it is a guest)
_Accepted: TypeAlias = tuple[NodeId, FrameReader, bool]


class _Outbox:
    """Frames waiting for one connection's writer, bounded in count and bytes."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._max_frames = max_frames
        #: a frame larger than this is still taken when the outbox is empty
        self._max_bytes = max_bytes
        #: the frames, oldest first
        self._frames: deque[bytes] = deque()
        #: the sum of their lengths
        self._bytes = 0
        #: set while `_frames` is not empty
        self._ready = Wakeup()
        #: frames written to the connection, ever
        self.sent = 0
        #: frames refused or discarded, ever
        self.dropped = 0

    def put(self, frame: bytes) -> bool:
        """Queue `frame`; False (and counted as dropped) when the outbox is full."""
        frames = self._frames
        if frames and (
            len(frames) >= self._max_frames or self._bytes + len(frame) > self._max_bytes
        ):
            self.dropped += 1
            return False
        frames.append(frame)
        self._bytes += len(frame)
        self._ready.set()
        return True

    async def wait(self) -> None:
        """Return once there is at least one frame."""
        await self._ready.wait()

    def take_all(self) -> list[bytes]:
        frames = list(self._frames)
        self._frames.clear()
        self._bytes = 0
        self._ready.clear()
        return frames

    def clear(self) -> None:
        self.dropped += len(self._frames)
        self.take_all()


class _Link:
    """This node's side of its outgoing connection to one peer."""

    def __init__(self, peer: NodeId, address: Address, outbox: _Outbox) -> None:
        self.peer = peer
        #: where to connect; a change takes effect at the next attempt
        self.address = address
        #: frames for the peer: Raft messages and RPC requests
        self.outbox = outbox
        #: calls queued or sent on the current connection and not yet answered, by id
        self.pending: dict[int, PendingCall] = {}
        #: true from a successful handshake until the connection ends
        self.connected = False
        #: whether a handshake ever succeeded: until then the peer may still be starting
        self.reached = False
        #: when the link started trying (trio time), and whether a never-reached peer
        #: has been warned about
        self.started = 0.0
        self.warned = False
        #: cancels the link's task, when the peer is removed
        self.scope = trio.CancelScope()
        #: cancels the current connection or attempt only, when the address changes
        self.connection_scope = trio.CancelScope()

    def fail_calls(self, error: type[RpcError], reason: str) -> None:
        """Fail every pending call with `error(reason)`."""
        for call in self.pending.values():
            call.fail(error(reason))
        self.pending.clear()

    def reset(self, error: type[RpcError], reason: str) -> None:
        """Drop the queue and fail every pending call with `error(reason)`."""
        self.outbox.clear()
        self.fail_calls(error, reason)


class TcpTransport:
    """The `Transport` between trioraft nodes over TCP."""

    def __init__(
        self,
        node_id: NodeId,
        token: str | bytes,
        listen_addr: Address,
        peers: Mapping[NodeId, Address],
        rpc_handler: RpcHandler,
        *,
        max_frame: int = MAX_FRAME,
        queue_frames: int = 4096,
        queue_bytes: int = MAX_FRAME,
        incoming_size: int = 1024,
        connect_timeout: float = 3.0,
        write_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        backoff: tuple[float, float] = (0.05, 1.0),
        unreachable_grace: float = 10.0,
        tls: PeerContexts | None = None,
        guest_methods: frozenset[str] = frozenset(),
    ) -> None:
        self.node_id = node_id
        self.log = NodeLogger(node_id, "trioraft.transport")
        #: the methods a node that is not a peer may call (none: such nodes are refused)
        self._guest_methods = guest_methods
        #: the address to listen on; once `serve` has bound it, the actual address
        self.listen_addr = listen_addr
        self._token = token.encode() if isinstance(token, str) else token
        self._rpc_handler = rpc_handler
        #: the largest frame body accepted from a peer, or sent to one
        self._max_frame = max_frame
        self._queue_frames = queue_frames
        self._queue_bytes = queue_bytes
        #: deadline for connect plus handshake, on either side
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._idle_timeout = idle_timeout
        #: the first and the largest pause between connection attempts
        self._backoff_min, self._backoff_max = backoff
        #: how long a peer never reached may take to start before it is warned about
        self._unreachable_grace = unreachable_grace
        #: mutual TLS on both sides of every connection; None for plain TCP
        self._tls = tls
        self._incoming_send, self.incoming = trio.open_memory_channel[Message](incoming_size)
        #: the address book: one link per peer, by id; never contains `node_id`
        self._links: dict[NodeId, _Link] = {}
        #: serve's nursery while it runs: link tasks started later go there
        self._nursery: trio.Nursery | None = None
        self._served = False
        self._request_ids = itertools.count(1)
        self.set_peers(peers)

    # The Transport interface.

    async def serve(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and run the links until cancelled; `started()` with the bound address."""
        if self._served:
            raise RuntimeError("a TcpTransport serves only once")
        self._served = True
        host, port = self.listen_addr
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle_connection, listeners)
                self._nursery = nursery
                for link in self._links.values():
                    nursery.start_soon(self._run_link, link)
                bound = listeners[0].socket.getsockname()
                self.listen_addr = (bound[0], bound[1])
                task_status.started(self.listen_addr)
        finally:
            self._nursery = None
            self._incoming_send.close()

    def send(self, msg: Message) -> None:
        link = self._links.get(msg.dst)
        if link is None:
            self.log.debug("dropped a message for an unknown peer", peer=msg.dst)
            return
        frame = encode_message(msg)
        if len(frame) - HEADER_SIZE > self._max_frame:
            link.outbox.dropped += 1
            self.log.warning(
                "dropped a message above the frame limit",
                peer=link.peer,
                type=type(msg).__name__,
                bytes=len(frame),
            )
            return
        link.outbox.put(frame)

    async def call(self, peer: NodeId, method: str, payload: Payload, timeout: float) -> Payload:
        link = self._links.get(peer)
        if link is None:
            raise RpcUnavailable(f"unknown peer {peer!r}")
        if self._nursery is None:
            raise RpcUnavailable("the transport is not serving")
        request_id = next(self._request_ids)
        frame = encode_request(request_id, method, payload)
        if len(frame) - HEADER_SIZE > self._max_frame:
            raise RpcUnavailable(f"a request of {len(frame)} bytes exceeds the frame limit")
        if not link.outbox.put(frame):
            raise RpcUnavailable(f"the queue to peer {peer!r} is full")
        call = PendingCall()
        link.pending[request_id] = call
        try:
            with trio.move_on_after(timeout):
                await call.done.wait()
                return call.outcome()
            raise RpcTimeout(f"no answer from peer {peer!r} to {method!r} within {timeout} s")
        finally:
            link.pending.pop(request_id, None)

    async def call_address(
        self, address: Address, method: str, payload: Payload, timeout: float
    ) -> Payload:
        """Run `method` on whichever node listens at `address`, on a connection of its own
        (a node that is not a member yet knows only addresses). Raises RpcUnavailable when
        no trioraft node answers the handshake there, or one refuses it (then caused by
        the HandshakeRefused), else as `call`."""
        host, port = address
        with trio.move_on_after(timeout):
            try:
                stream, reader = await self._connect(ANY_NODE, address)
            except HandshakeRefused as exc:
                # a trioraft node answered, and said no: the cause tells it from silence
                raise RpcUnavailable(f"{host}:{port}: {exc}") from exc
            except _CONNECT_ERRORS as exc:
                raise RpcUnavailable(f"{host}:{port}: {describe_error(exc)}") from None
            try:
                await stream.send_all(encode_request(1, method, payload))
                while True:
                    bodies = await _receive_bodies(stream, reader)
                    if bodies is None:
                        raise RpcConnectionLost(f"{host}:{port} closed the connection")
                    for body in bodies:
                        answer = decode_frame(body)
                        if isinstance(answer, Refusal):
                            raise RpcBusy(answer.reason)
                        if isinstance(answer, Response) and answer.id == 1:
                            call = PendingCall()
                            call.resolve(answer.ok, answer.payload)
                            return call.outcome()
            except (*_STREAM_ERRORS, ProtocolError) as exc:
                raise RpcConnectionLost(f"{host}:{port}: {describe_error(exc)}") from None
            finally:
                await trio.aclose_forcefully(stream)
        raise RpcTimeout(f"no answer from {host}:{port} to {method!r} within {timeout} s")

    def set_peers(self, peers: Mapping[NodeId, Address]) -> None:
        """Replace the address book; an entry for this node itself is ignored."""
        for peer in [p for p in self._links if p not in peers]:
            removed = self._links.pop(peer)
            removed.scope.cancel()
            removed.reset(RpcUnavailable, f"peer {peer!r} was removed")
        for peer, address in peers.items():
            if peer == self.node_id:
                continue
            link = self._links.get(peer)
            if link is None:
                outbox = _Outbox(self._queue_frames, self._queue_bytes)
                link = self._links[peer] = _Link(peer, address, outbox)
                if self._nursery is not None:
                    self._nursery.start_soon(self._run_link, link)
            elif link.address != address:
                # the queue goes to the new address; answers cannot come back to the old one
                link.address = address
                link.fail_calls(RpcConnectionLost, f"peer {peer!r} moved to {address}")
                link.connection_scope.cancel()

    def stats(self) -> dict[NodeId, PeerStats]:
        return {
            peer: PeerStats(
                sent=link.outbox.sent, dropped=link.outbox.dropped, connected=link.connected
            )
            for peer, link in self._links.items()
        }

    # Outgoing links.

    async def _run_link(self, link: _Link) -> None:
        """Keep the link to one peer: connect when there is something to send, retry."""
        backoff = self._backoff_min
        failures = 0
        link.started = trio.current_time()
        with link.scope:
            try:
                while True:
                    await link.outbox.wait()
                    connected = False
                    with trio.CancelScope() as link.connection_scope:
                        connected = await self._connect_and_run(link, failures)
                    if link.connection_scope.cancelled_caught:
                        continue  # the address changed: try the new one at once
                    if connected:
                        failures = 0
                        backoff = self._backoff_min
                    else:
                        failures += 1
                    await trio.sleep(backoff * random.uniform(0.5, 1.0))
                    if not connected:
                        backoff = min(backoff * 2, self._backoff_max)
            finally:
                link.reset(RpcUnavailable, f"the link to peer {link.peer!r} was shut down")

    def _unreachable_level(self, link: _Link, failures: int) -> int:
        """How loud a failed attempt is: WARNING for the first failure once the peer had
        been reached, or once a peer never reached had `unreachable_grace` seconds to
        start; INFO for the first failure of a peer never reached (at a normal start the
        peers start at about the same time); DEBUG for the others."""
        if link.reached:
            return logging.DEBUG if failures else logging.WARNING
        if not link.warned and trio.current_time() - link.started >= self._unreachable_grace:
            link.warned = True
            return logging.WARNING
        return logging.DEBUG if failures else logging.INFO

    async def _connect_and_run(self, link: _Link, failures: int) -> bool:
        """One connection to the peer, until it ends: True if the handshake succeeded."""
        host, port = address = link.address
        try:
            stream, reader = await self._connect(link.peer, address)
        except _CONNECT_ERRORS as exc:
            reason = describe_error(exc)
            self.log.log(
                self._unreachable_level(link, failures),
                "peer unreachable",
                peer=link.peer,
                address=f"{host}:{port}",
                reason=reason,
            )
            link.reset(RpcUnavailable, f"cannot reach peer {link.peer!r}: {reason}")
            return False
        if failures:
            self.log.info(
                "peer reachable", peer=link.peer, address=f"{host}:{port}", failed_attempts=failures
            )
        link.connected = link.reached = True
        try:
            async with trio.open_nursery() as nursery:
                where = {"peer": link.peer}
                nursery.start_soon(
                    self._write_loop, stream, link.outbox, nursery.cancel_scope, where
                )
                nursery.start_soon(self._read_answers, stream, reader, link, nursery.cancel_scope)
        finally:
            link.connected = False
            if not link.connection_scope.cancel_called:  # else set_peers has done it
                link.reset(RpcConnectionLost, f"the connection to peer {link.peer!r} was lost")
            await trio.aclose_forcefully(stream)
        return True

    async def _connect(self, peer: NodeId, address: Address) -> tuple[trio.abc.Stream, FrameReader]:
        """Connect and handshake, under one deadline; raises one of `_CONNECT_ERRORS`."""
        with trio.fail_after(self._connect_timeout):
            tcp = await trio.open_tcp_stream(*address)
            stream: trio.abc.Stream = tcp
            try:
                if self._tls is not None:
                    stream = trio.SSLStream(
                        tcp, self._tls.connect, server_hostname=address[0], https_compatible=True
                    )
                else:
                    stream = fast_stream(tcp)
                try:
                    reader = await self._exchange_hello(stream, peer)
                except trio.BrokenResourceError as exc:
                    if self._tls is None:
                        raise
                    # with TLS 1.3, a peer refusing this node's certificate says so only
                    # after the handshake seemed done: at the first read
                    reason = handshake_failure(exc) or "the peer closed the connection"
                    raise HandshakeRefused(f"TLS: {reason}") from None
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        reader.max_frame = self._max_frame
        return stream, reader

    async def _exchange_hello(self, stream: trio.abc.Stream, peer: NodeId) -> FrameReader:
        """Send the Hello and read the Verdict; the reader keeps what came after it."""
        await stream.send_all(encode_hello(Hello(self._token, self.node_id, peer)))
        reader = FrameReader(MAX_HANDSHAKE_FRAME)
        bodies = await _receive_bodies(stream, reader)
        if bodies is None:
            hint = " (does it trust this node's certificate?)" if self._tls is not None else ""
            raise HandshakeRefused(f"the peer closed the connection during the handshake{hint}")
        if len(bodies) != 1:
            raise ProtocolError("frames after the handshake answer, before any request")
        verdict = decode_verdict(bodies[0])
        if not verdict.accepted:
            raise HandshakeRefused(f"refused by the peer: {verdict.reason}")
        return reader

    async def _read_answers(
        self, stream: trio.abc.Stream, reader: FrameReader, link: _Link, scope: trio.CancelScope
    ) -> None:
        """Resolve pending calls from the responses on an outgoing connection."""
        try:
            while True:
                bodies = await _receive_bodies(stream, reader)
                if bodies is None:
                    self.log.debug("connection closed by the peer", peer=link.peer)
                    return
                for body in bodies:
                    answer = decode_frame(body)
                    if not isinstance(answer, Response | Refusal):
                        raise ProtocolError(
                            "only responses may come back on an outgoing connection"
                        )
                    call = link.pending.pop(answer.id, None)
                    if call is None:
                        continue
                    if isinstance(answer, Refusal):
                        call.fail(RpcBusy(answer.reason))
                    else:
                        call.resolve(answer.ok, answer.payload)
        except ProtocolError as exc:
            self.log.warning(
                "closing a connection to a peer that broke the protocol",
                peer=link.peer,
                reason=str(exc),
            )
        except _STREAM_ERRORS as exc:
            self.log.debug("connection to peer lost", peer=link.peer, reason=describe_error(exc))
        finally:
            scope.cancel()

    async def _write_loop(
        self,
        stream: trio.abc.Stream,
        outbox: _Outbox,
        scope: trio.CancelScope,
        where: Mapping[str, object],
    ) -> None:
        """Write everything queued, one batch per `send_all`; on failure cancel `scope`."""
        try:
            # one scope for the connection, its deadline set only while a write is on:
            # cheaper than entering a scope for each write
            with trio.CancelScope() as writing:
                while True:
                    await outbox.wait()
                    frames = outbox.take_all()
                    writing.deadline = trio.current_time() + self._write_timeout
                    await stream.send_all(b"".join(frames))
                    writing.deadline = math.inf
                    outbox.sent += len(frames)
            self.log.warning(
                "closing a connection: a write timed out", seconds=self._write_timeout, **where
            )
        except _STREAM_ERRORS as exc:
            self.log.debug("write failed", **where, reason=describe_error(exc))
        finally:
            scope.cancel()

    # Accepted connections.

    async def _handle_connection(self, tcp: trio.SocketStream) -> None:
        remote = remote_name(tcp)
        stream: trio.abc.Stream
        if self._tls is not None:
            stream = trio.SSLStream(tcp, self._tls.accept, server_side=True, https_compatible=True)
        else:
            stream = fast_stream(tcp)
        try:
            accepted = await self._accept_handshake(stream, remote)
            if accepted is not None:
                src, reader, guest = accepted
                await self._serve_peer(stream, reader, src, remote, guest=guest)
        finally:
            await trio.aclose_forcefully(stream)

    async def _accept_handshake(self, stream: trio.abc.Stream, remote: str) -> _Accepted | None:
        """Check the connecting side's Hello and answer it; None when refused."""
        reader = FrameReader(MAX_HANDSHAKE_FRAME)
        try:
            with trio.fail_after(self._connect_timeout):
                if isinstance(stream, trio.SSLStream):
                    try:
                        await stream.do_handshake()
                    except trio.BrokenResourceError as exc:
                        reason = handshake_failure(exc)
                        if reason is None:
                            raise
                        self._log_refusal(remote, f"TLS: {reason}")
                        return None
                bodies = await _receive_bodies(stream, reader)
                if bodies is None:
                    self.log.debug("closed before its handshake", remote=remote)
                    return None
                checked = self._check_hello(bodies)
                if isinstance(checked, str):
                    self._log_refusal(remote, checked)
                    await stream.send_all(encode_verdict(Verdict(accepted=False, reason=checked)))
                    return None
                await stream.send_all(encode_verdict(Verdict(accepted=True)))
        except trio.TooSlowError:
            self._log_refusal(remote, "handshake timed out")
            return None
        except ProtocolError as exc:
            self._log_refusal(remote, str(exc))
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.log.debug(
                "connection lost during the handshake", remote=remote, reason=describe_error(exc)
            )
            return None
        reader.max_frame = self._max_frame
        return checked.src, reader, checked.src not in self._links

    def _check_hello(self, bodies: list[bytearray]) -> Hello | str:
        """The Hello in `bodies` if it is accepted, else why it is refused."""
        if len(bodies) != 1:
            return "frames sent before the handshake answer"
        try:
            hello = decode_hello(bodies[0])
        except ProtocolError as exc:
            return str(exc)
        if not hmac.compare_digest(hello.token, self._token):
            return "wrong cluster token"
        if hello.dst not in (self.node_id, ANY_NODE):
            return f"it expects node {hello.dst!r}, this is {self.node_id!r}"
        if hello.src not in self._links and not (hello.dst == ANY_NODE and self._guest_methods):
            return f"unknown node id {hello.src!r}"
        return hello

    def _log_refusal(self, remote: str, reason: str) -> None:
        self.log.warning("refused a peer connection", remote=remote, reason=reason)

    async def _serve_peer(
        self,
        stream: trio.abc.Stream,
        reader: FrameReader,
        src: NodeId,
        remote: str,
        *,
        guest: bool = False,
    ) -> None:
        """Read an accepted connection until it ends: Raft messages in, RPCs answered; a
        guest's connection carries only requests for the guest methods."""
        answers = _Outbox(self._queue_frames, self._queue_bytes)
        slots = HandlerSlots()
        async with trio.open_nursery() as nursery:
            where = {"peer": src, "remote": remote}
            nursery.start_soon(self._write_loop, stream, answers, nursery.cancel_scope, where)
            try:
                while True:
                    # one scope until the connection idles, its deadline set only while
                    # a receive waits: cheaper than entering a scope for each receive
                    with trio.CancelScope() as idle:
                        while True:
                            idle.deadline = trio.current_time() + self._idle_timeout
                            bodies = await _receive_bodies(stream, reader)
                            idle.deadline = math.inf
                            if bodies is None:
                                return
                            for body in bodies:
                                item = decode_frame(body)
                                if guest:
                                    self._check_guest_frame(item)
                                if isinstance(item, Request):
                                    # no checkpoint: the requests that arrived together
                                    # start together, so the node can batch them
                                    if slots.try_admit():
                                        nursery.start_soon(self._answer, src, item, answers, slots)
                                    else:
                                        self._refuse(item, answers, slots, where)
                                elif isinstance(item, Response | Refusal):
                                    raise ProtocolError("a response on an accepted connection")
                                elif item.src != src or item.dst != self.node_id:
                                    raise ProtocolError(
                                        f"a message from {item.src!r} to {item.dst!r}"
                                        f" on a connection from {src!r}"
                                    )
                                else:
                                    await self._deliver(item)
                    if slots.running:
                        continue
                    self.log.debug("closing an idle connection", **where)
                    return
            except ProtocolError as exc:
                self.log.warning(
                    "closing a connection: the peer broke the protocol", **where, reason=str(exc)
                )
            except _STREAM_ERRORS as exc:
                self.log.debug("connection from peer lost", **where, reason=describe_error(exc))
            finally:
                nursery.cancel_scope.cancel()

    def _check_guest_frame(self, item: Message | Request | Response | Refusal) -> None:
        """A node that is not a peer may only call the guest methods."""
        if not isinstance(item, Request):
            raise ProtocolError("a node that is not a peer sent more than requests")
        if item.method not in self._guest_methods:
            raise ProtocolError(f"a node that is not a peer called {item.method!r}")

    async def _deliver(self, msg: Message) -> None:
        """Hand a Raft message to the node; without a checkpoint while there is room, so
        the messages that arrived together are stepped together."""
        try:
            self._incoming_send.send_nowait(msg)
        except trio.WouldBlock:
            await self._incoming_send.send(msg)

    def _refuse(
        self, request: Request, answers: _Outbox, slots: HandlerSlots, where: Mapping[str, object]
    ) -> None:
        """Answer a request with a refusal, unrun; warn once per overload."""
        reason = slots.refusal()
        if slots.refused == 1:
            self.log.warning("refusing peer requests until one finishes", **where, reason=reason)
        answers.put(encode_refusal(request.id, reason))

    async def _answer(
        self, src: NodeId, request: Request, answers: _Outbox, slots: HandlerSlots
    ) -> None:
        """Run the handler for one request and queue its response."""
        try:
            try:
                result = await self._rpc_handler(src, request.method, request.payload)
                frame = encode_response(request.id, True, result)
                if len(frame) - HEADER_SIZE > self._max_frame:
                    raise ValueError(f"a response of {len(frame)} bytes exceeds the frame limit")
            except Exception as exc:
                self.log.log(
                    logging.DEBUG,
                    "rpc handler failed",
                    exc_info=True,
                    peer=src,
                    method=request.method,
                )
                frame = encode_response(request.id, False, describe_error(exc))
            answers.put(frame)
        finally:
            slots.release()


async def _receive_bodies(stream: trio.abc.Stream, reader: FrameReader) -> list[bytearray] | None:
    """The next complete frame bodies from `stream`; None at the end of the stream."""
    while True:
        bodies = reader.bodies()
        if bodies:
            return bodies
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            return None
        reader.feed(data)
