"""The client listener: RESP2 and inline commands over TCP, on any node (RESP3 replies on a
connection that asks for them with HELLO 3).

Each connection reads what the client sent, parses every complete request in it, runs
them and writes all the replies in one send. Requests run in order, but consecutive ones
of the same kind are batched: a run of writes is proposed together (one log append, one
commit wait), a run of linearizable reads shares one read barrier. A read therefore
always sees the writes sent before it on the same connection.

ClientLimits (see `ClientLimits`): a request larger than the parser allows, or whose arguments
together pass `max_request_bytes`, is a protocol error and closes the connection;
replies that pile up unread past `max_unread_reply_bytes` make the server stop and wait
(checked after every reply, and after every item of an array reply, so a pipeline of
large GETs or one large MGET cannot pile up more than about that much), and a client
that does not read within the idle timeout is dropped; connections beyond `max_clients`
are told so and closed.

Timeouts cost no cancel scope per request: a connection notes the deadline by which its
client must have sent something (idle timeout) or taken its replies (reply timeout) while
it waits on it, and one watchdog task cancels, every eighth of the shortest timeout, the
connections whose deadline has passed. A connection is dropped at most that long late.

Plain TCP connections run on `FastSocketStream`, which goes through the event loop only
when the socket would block.

With TLS (`serve(ssl_context=...)`), each connection does its TLS handshake in its own
task, under a deadline, before its first request: a slow or silent client holds up no one,
and a client speaking plain text to the TLS port is disconnected.
"""

from __future__ import annotations

import enum
import errno
import hmac
import itertools
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias

import attrs
import trio

from trioraft.kvstore import arguments, data_commands, expiry
from trioraft.kvstore.replicated import ReplicatedState, Transaction, log_command
from trioraft.logs import NodeLogger
from trioraft.redis import members, transaction
from trioraft.redis.backup import BACKUP_COMMAND, backup_stream, take_backup
from trioraft.redis.handshake import (
    NOAUTH_HELLO,
    Hello,
    check_client_name,
    config_get,
    config_parameters,
    hello_reply,
)
from trioraft.redis.info import ClientStats, render_info
from trioraft.redis.limits import HANDSHAKE_SECONDS, ClientLimits
from trioraft.redis.replies import OK, PONG, ErrorReply, Map, Reply, SimpleString, Verbatim
from trioraft.redis.resp import RequestParser, RespProtocolError, encode, encode_into
from trioraft.runtime.metrics import UNKNOWN_COMMAND, Timings
from trioraft.runtime.node import Node
from trioraft.runtime.outcomes import (
    ChangeOutcome,
    Indeterminate,
    Outcome,
    Overloaded,
    Refused,
    Unavailable,
)
from trioraft.runtime.steps import run_stepwise
from trioraft.transport.base import remote_name
from trioraft.transport.fast_stream import fast_stream
from trioraft.transport.tls import handshake_failure

#: how many times a read has the keys it meets past their deadline deleted and waits
#: again; past it, it answers with them hidden
_EXPIRY_ROUNDS: Final = 3
#: items of an array reply encoded per event-loop step (about a microsecond each)
_ITEMS_PER_STEP: Final = 5_000
#: the watchdog looks for connections past their deadline this many times per timeout
_CHECKS_PER_TIMEOUT: Final = 8
#: what one read asks the socket for
_RECEIVE_SIZE: Final = 65536


class _Kind(enum.Enum):
    WRITE = "write"
    READ = "read"
    #: connection commands, unknown commands, anything before AUTH
    LOCAL = "local"


@attrs.define(eq=False)
class _Connection:
    """One client connection: its stream, its deadline, and what it has said about itself."""

    #: unique among this node's connections (CLIENT ID, HELLO)
    id: int
    authenticated: bool
    stream: trio.abc.Stream
    #: while the connection waits on its client, when the client is too late (trio time):
    #: to send its next request (idle timeout), or to take its replies (reply timeout)
    deadline: float = math.inf
    #: cancelled by the watchdog once the deadline has passed
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: HELLO 3: replies in RESP3
    resp3: bool = False
    #: CLIENT SETNAME or HELLO SETNAME
    name: bytes | None = None
    #: READONLY: serve reads from the local replica without a read barrier
    readonly: bool = False
    closing: bool = False
    #: MULTI: the commands queued for EXEC (None outside a transaction)
    queued: transaction.Queue | None = None
    #: WATCH: each watched key's revision when it was watched (None: missing)
    watched: dict[bytes, int | None] = attrs.Factory(dict)

    def end_transaction(self) -> None:
        """Forget the queued commands and the watched keys (EXEC, DISCARD)."""
        self.queued = None
        self.watched = {}


#: a command that sends its reply itself: (connection, args, replies so far)
_StreamingHandler: TypeAlias = Callable[[_Connection, list[bytes], bytearray], Awaitable[None]]


class ClientServer:
    def __init__(
        self,
        node: Node[Reply],
        state: ReplicatedState,
        limits: ClientLimits,
        password: str | None = None,
    ) -> None:
        self.node = node
        #: the state machine `node` replicates, which reads are served from
        self.state = state
        self.log = NodeLogger(node.id, "trioraft.server")
        self.limits = limits
        self.password = password.encode() if password else None
        self.stats = ClientStats()
        self._client_ids = itertools.count(1)
        #: the connections being served, which the watchdog checks
        self._connections: set[_Connection] = set()
        #: set by `serve`: TLS for every connection, and how long its handshake may take
        self._ssl_context: ssl.SSLContext | None = None
        self._handshake_timeout = HANDSHAKE_SECONDS
        self._local: dict[bytes, Callable[[_Connection, list[bytes]], Reply]] = {
            b"PING": self._ping,
            b"ECHO": self._echo,
            b"QUIT": self._quit,
            b"AUTH": self._auth,
            b"SELECT": self._select,
            b"READONLY": self._readonly,
            b"READWRITE": self._readwrite,
            b"INFO": self._info,
            b"CLIENT": self._client,
            b"COMMAND": _command,
            b"CONFIG": self._config,
            b"HELLO": self._hello,
            b"MULTI": self._multi,
            b"DISCARD": self._discard,
            b"UNWATCH": self._unwatch,
        }
        #: connection commands that wait for other nodes
        self._local_async: dict[bytes, Callable[[_Connection, list[bytes]], Awaitable[Reply]]] = {
            b"RAFT.STATUS": self._raft_status,
            b"RAFT.SNAPSHOT": self._raft_snapshot,
            b"RAFT.MEMBER": self._raft_member,
            b"RAFT.TRANSFER": self._raft_transfer,
            b"WATCH": self._watch,
            b"EXEC": self._exec,
        }
        #: connection commands that stream their reply themselves
        self._streaming: dict[bytes, _StreamingHandler] = {BACKUP_COMMAND: self._raft_backup}
        #: the request duration histogram of each known command, by upper-case name
        self._timings: dict[bytes, Timings] = {}

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = HANDSHAKE_SECONDS,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; `started()` with the bound (host, port). With
        `ssl_context`, every connection is TLS: its handshake runs in the connection's own
        task, and one not done within `handshake_timeout` seconds closes the connection."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self._ssl_context = ssl_context
        self._handshake_timeout = handshake_timeout
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drop_late_clients)
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started(listeners[0].socket.getsockname()[:2])

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                        # out of file descriptors: back off instead of spinning
                        self.log.warning("accept failed", error=exc.strerror)
                        await trio.sleep(0.1)
                        continue
                    raise
                nursery.start_soon(self._handle, stream)

    async def _drop_late_clients(self) -> None:
        """The watchdog: cancel every connection whose client is past its deadline."""
        timeouts = [t for t in (self.limits.idle_timeout, self.limits.reply_timeout) if t > 0]
        if not timeouts:
            return
        while True:
            await trio.sleep(min(timeouts) / _CHECKS_PER_TIMEOUT)
            now = trio.current_time()
            for conn in self._connections:
                if conn.deadline <= now:
                    conn.scope.cancel()

    async def _handle(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream
        if self._ssl_context is not None:
            stream = trio.SSLStream(tcp, self._ssl_context, server_side=True, https_compatible=True)
        else:
            stream = fast_stream(tcp)
        self.stats.connections_received += 1
        if self.stats.connected >= self.limits.max_clients:
            self.stats.connections_rejected += 1
            self.node.metrics.rejected_max_clients.inc()
            with trio.move_on_after(1):  # TLS: the handshake included
                await stream.send_all(encode(ErrorReply("ERR max number of clients reached")))
            await trio.aclose_forcefully(stream)
            return
        try:
            await self.converse(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except trio.TooSlowError:  # the TLS handshake took too long
            self.node.metrics.rejected_too_slow.inc()
        finally:
            await trio.aclose_forcefully(stream)

    async def converse(self, stream: trio.abc.Stream) -> None:
        """Serve one client on `stream`, a connection accepted by the listener (TLS
        included) or made by a test, until it leaves, turns out too slow, or breaks. The
        caller closes `stream`."""
        conn = _Connection(next(self._client_ids), self.password is None, stream)
        self.stats.connected += 1
        self._connections.add(conn)
        try:
            with conn.scope:
                if isinstance(stream, trio.SSLStream):
                    await self._tls_handshake(stream)
                await self._converse(conn)
            if conn.scope.cancelled_caught:  # idle, or not reading its replies
                self.node.metrics.rejected_too_slow.inc()
        finally:
            self._connections.discard(conn)
            self.stats.connected -= 1

    async def _tls_handshake(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        """The TLS handshake, under its deadline; a failure (a client speaking plain
        text, say) is logged and raised as the BrokenResourceError that closes it."""
        try:
            with trio.fail_after(self._handshake_timeout):
                await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            reason = handshake_failure(exc)
            if reason is not None:
                self.log.debug(
                    "TLS handshake failed",
                    remote=remote_name(stream.transport_stream),
                    reason=reason,
                )
            raise
        except trio.TooSlowError:
            self.log.debug("TLS handshake timed out", remote=remote_name(stream.transport_stream))
            raise

    async def _converse(self, conn: _Connection) -> None:
        limits = self.limits
        parser = RequestParser(
            max_inline=limits.max_inline_bytes,
            max_bulk=limits.max_value_bytes,
            max_args=limits.max_args,
        )
        receive = conn.stream.receive_some
        while not conn.closing:
            if limits.idle_timeout:
                conn.deadline = trio.current_time() + limits.idle_timeout
                data = await receive(_RECEIVE_SIZE)
                conn.deadline = math.inf
            else:
                data = await receive(_RECEIVE_SIZE)
            if not data:
                return
            parser.feed(data)
            failure: RespProtocolError | None = None
            requests: list[list[bytes]] = []
            try:
                # the parser returns the requests before bad input, and raises only on
                # the next call: make it now, since no more input may ever come
                while parsed := parser.next_requests():
                    requests += parsed
            except RespProtocolError as exc:
                failure = exc
            if failure is None and parser.buffered > limits.max_request_bytes:
                failure = RespProtocolError("too big request")
            out = bytearray()
            await self._run(conn, requests, out)
            if failure is not None:
                self.node.metrics.rejected_protocol.inc()
                encode_into(out, ErrorReply(f"ERR Protocol error: {failure}"))
                conn.closing = True
            if out:
                await self._send(conn, out)

    async def _run(self, conn: _Connection, requests: list[list[bytes]], out: bytearray) -> None:
        """Run requests in order, batching consecutive writes and consecutive reads."""
        k = 0
        while k < len(requests) and not conn.closing:
            kind = self._kind(conn, requests[k])
            end = k + 1
            if kind is not _Kind.LOCAL:
                while end < len(requests) and self._kind(conn, requests[end]) is kind:
                    end += 1
            batch = requests[k:end]
            self.stats.commands_processed += len(batch)
            started = time.perf_counter()
            streaming = self._streaming_command(conn, batch[0])
            if streaming is not None:
                await streaming(conn, batch[0], out)
            elif kind is _Kind.LOCAL:
                encode_into(out, await self._run_local(conn, batch[0]), conn.resp3)
            elif kind is _Kind.WRITE:
                await self._run_writes(conn, batch, out)
            else:
                await self._run_reads(conn, batch, out)
            seconds = time.perf_counter() - started
            for args in batch:
                self._timing(args[0]).observe(seconds)
            k = end
            await self._flush_if_full(conn, out)

    def _timing(self, name: bytes) -> Timings:
        """The request duration histogram of the command `name`, bound on first use."""
        upper = name.upper()
        timing = self._timings.get(upper)
        if timing is None:
            if self._knows(upper):
                timing = self.node.metrics.command_timing(upper.decode().lower())
                self._timings[upper] = timing
            else:  # not kept: clients could fill the table with made-up names
                timing = self.node.metrics.command_timing(UNKNOWN_COMMAND)
        return timing

    def _streaming_command(self, conn: _Connection, args: list[bytes]) -> _StreamingHandler | None:
        """The handler of a command that streams its reply, run now (not queued)."""
        if not conn.authenticated or conn.queued is not None:
            return None
        return self._streaming.get(args[0].upper())

    def _knows(self, upper: bytes) -> bool:
        """Whether `upper` names a command of this server."""
        commands = (self._local, self._local_async, self._streaming)
        return any(upper in table for table in commands) or data_commands.is_data_command(upper)

    async def _flush_if_full(self, conn: _Connection, out: bytearray) -> None:
        """Send the replies in `out` once they pass the unread-reply limit."""
        if len(out) > self.limits.max_unread_reply_bytes:
            await self._send(conn, out)
            out.clear()

    async def _send(self, conn: _Connection, out: bytearray) -> None:
        """Send replies; a client that has not taken them by the reply timeout is
        disconnected (by the watchdog)."""
        conn.deadline = trio.current_time() + self.limits.reply_timeout
        await conn.stream.send_all(out)
        conn.deadline = math.inf

    async def _add_reply(self, conn: _Connection, out: bytearray, reply: Reply) -> None:
        """Encode `reply` into `out`, an array item by item, flushing whenever full, and
        letting the event loop run other tasks between slices of a long array."""
        if isinstance(reply, list):
            out += b"*%d\r\n" % len(reply)
            for count, item in enumerate(reply, 1):
                await self._add_reply(conn, out, item)
                if count % _ITEMS_PER_STEP == 0:
                    await trio.lowlevel.checkpoint()
        else:
            encode_into(out, reply, conn.resp3)
            await self._flush_if_full(conn, out)

    def _kind(self, conn: _Connection, args: list[bytes]) -> _Kind:
        name = args[0].upper()
        local = name in self._local or name in self._local_async or name in self._streaming
        if local or not conn.authenticated or conn.queued is not None:
            return _Kind.LOCAL
        if data_commands.is_data_command(name) and data_commands.is_write(args):
            return _Kind.WRITE
        return _Kind.READ if data_commands.is_data_command(name) else _Kind.LOCAL

    async def _run_local(self, conn: _Connection, args: list[bytes]) -> Reply:
        name = args[0].upper()
        if not conn.authenticated and name not in (b"AUTH", b"HELLO", b"QUIT"):
            self.node.metrics.rejected_noauth.inc()
            return ErrorReply("NOAUTH Authentication required.")
        if conn.queued is not None:
            if name not in transaction.RUN_AT_ONCE:
                return conn.queued.add(args)
            problem = transaction.check_arity(args)
            if problem is not None:
                return self._refuse_in_transaction(conn, name, problem)
        waiting = self._local_async.get(name)
        if waiting is not None:
            return await waiting(conn, args)
        handler = self._local.get(name)
        if handler is None:
            return data_commands.validate(args) or ErrorReply("ERR syntax error")
        return handler(conn, args)

    async def _run_writes(
        self, conn: _Connection, batch: list[list[bytes]], out: bytearray
    ) -> None:
        problems = [data_commands.validate(args) for args in batch]
        commands = [
            data_commands.encode_command(log_command(args, self.limits.max_value_bytes))
            for args, problem in zip(batch, problems, strict=True)
            if problem is None
        ]
        outcomes = iter(await self.node.write(commands) if commands else [])
        for problem in problems:
            encode_into(out, problem or outcome_reply(next(outcomes)), conn.resp3)

    async def _run_reads(self, conn: _Connection, batch: list[list[bytes]], out: bytearray) -> None:
        problems = [data_commands.validate(args) for args in batch]
        # READONLY: the local replica, hiding keys past their deadline by the local clock
        now = self.node.time_ms()
        answered: dict[int, Reply] = {}
        if not conn.readonly and any(p is None for p in problems):
            try:
                now, answered = await self._read_at_barrier(batch, problems)
            except (Unavailable, Indeterminate) as exc:
                for problem in problems:
                    encode_into(out, problem or error_reply(exc), conn.resp3)
                return
        for k, (args, problem) in enumerate(zip(batch, problems, strict=True)):
            if problem is not None:
                reply: Reply = problem
            elif k in answered:
                reply = answered[k]
            else:
                reply = await self._read(args, now)
            await self._add_reply(conn, out, reply)

    async def _read_at_barrier(
        self, batch: list[list[bytes]], problems: list[ErrorReply | None]
    ) -> tuple[int, dict[int, Reply]]:
        """Wait until the reads may be served linearizably, and serve them: the leader's
        time to serve them at, and the replies by position in `batch` (but for KEYS, which
        `_read` serves a slice at a time, and for those with a problem). A key they name
        whose deadline has passed by then is deleted through the log first, and the
        barrier taken again: so a read never returns such a key, and what it answers stays
        true for every later read, whichever node serves it (after a few rounds, such keys
        are only hidden)."""
        for _ in range(_EXPIRY_ROUNDS):
            now = await self.node.read_barrier()
            # no await from the barrier to the last read: all read the state it confirmed
            store = self.state.store
            answered: dict[int, Reply] = {}
            expired: list[bytes] = []
            for k, (args, problem) in enumerate(zip(batch, problems, strict=True)):
                if problem is None and args[0].upper() != b"KEYS":  # KEYS waits for no one
                    answered[k], hidden = store.read_hiding(args, now)
                    expired += hidden
            if not expired:
                break
            await expiry.expire_now(self.node, expired)
        return now, answered

    async def _read(self, args: list[bytes], now: int) -> Reply:
        """Run a valid read at time `now`; KEYS reads a slice of the keyspace per
        event-loop step."""
        if args[0].upper() == b"KEYS":
            with self.state.store.search_keys(args[1], now) as search:
                await run_stepwise(search)
            return search.found
        return self.state.store.read(args, now)

    # --- transactions ----------------------------------------------------------------

    def _refuse_in_transaction(
        self, conn: _Connection, name: bytes, problem: ErrorReply
    ) -> ErrorReply:
        """A malformed MULTI, EXEC, DISCARD or WATCH inside a transaction fails it, as in
        Redis; a malformed EXEC also ends it."""
        if name == b"EXEC":
            conn.end_transaction()
            return transaction.exec_abort(problem)
        assert conn.queued is not None
        conn.queued.failed = True
        return problem

    def _multi(self, conn: _Connection, args: list[bytes]) -> Reply:
        problem = transaction.check_arity(args)
        if problem is not None:
            return problem
        if conn.queued is not None:
            return ErrorReply("ERR MULTI calls can not be nested")
        conn.queued = transaction.Queue(
            self.limits.max_transaction_commands,
            self.limits.max_transaction_bytes,
            # the watched keys travel in the transaction's entry too
            size=sum(len(key) for key in conn.watched),
        )
        return OK

    def _discard(self, conn: _Connection, args: list[bytes]) -> Reply:
        problem = transaction.check_arity(args)
        if problem is not None:
            return problem
        if conn.queued is None:
            return ErrorReply("ERR DISCARD without MULTI")
        conn.end_transaction()
        return OK

    def _unwatch(self, conn: _Connection, args: list[bytes]) -> Reply:
        problem = transaction.check_arity(args)
        if problem is not None:
            return problem
        conn.watched = {}
        return OK

    async def _watch(self, conn: _Connection, args: list[bytes]) -> Reply:
        """Note the revision of each key as a linearizable read sees it now; EXEC fails
        if any of them is not the same when its entry applies. A key watched again keeps
        the revision of its first WATCH, as Redis keeps its first."""
        problem = transaction.check_arity(args)
        if problem is not None:
            return problem
        if conn.queued is not None:
            return ErrorReply("ERR WATCH inside MULTI is not allowed")
        try:
            now = await self.node.read_barrier()
        except (Unavailable, Indeterminate) as exc:
            return error_reply(exc)
        # no await from the barrier on: every key is read in the state it confirmed
        store = self.state.store
        for key in args[1:]:
            if key not in conn.watched:
                revision = store.read([b"RAFT.REVISION", key], now)
                conn.watched[key] = revision if isinstance(revision, int) else None
        return OK

    async def _exec(self, conn: _Connection, args: list[bytes]) -> Reply:
        """Propose the queued data commands and the watched revisions as one entry, and
        answer the array of replies, the connection commands' among them; or the null
        array (a watched key changed), or the one error of the whole transaction."""
        problem = transaction.check_arity(args)
        if problem is not None:
            return problem
        queued, watched = conn.queued, conn.watched
        if queued is None:
            return ErrorReply("ERR EXEC without MULTI")
        conn.end_transaction()
        if queued.failed:
            return transaction.EXECABORT
        data = [args for args in queued.commands if data_commands.is_data_command(args[0])]
        applied: Reply = []
        if data or watched:
            entry = Transaction(
                watched, [log_command(args, self.limits.max_value_bytes) for args in data]
            )
            [outcome] = await self.node.write([data_commands.encode_command(entry.command())])
            applied = outcome_reply(outcome)
        if not isinstance(applied, list):
            return applied  # the null array, or the transaction's one error
        replies = iter(applied)
        return [
            next(replies)
            if data_commands.is_data_command(args[0])
            else self._local[args[0].upper()](conn, args)
            for args in queued.commands
        ]

    # --- connection commands ---------------------------------------------------------

    def _ping(self, conn: _Connection, args: list[bytes]) -> Reply:
        if len(args) > 2:
            return arguments.arity_error("ping")
        return args[1] if len(args) == 2 else PONG

    def _echo(self, conn: _Connection, args: list[bytes]) -> Reply:
        return args[1] if len(args) == 2 else arguments.arity_error("echo")

    def _quit(self, conn: _Connection, args: list[bytes]) -> Reply:
        conn.closing = True
        return OK

    def _auth(self, conn: _Connection, args: list[bytes]) -> Reply:
        if len(args) not in (2, 3):
            return arguments.arity_error("auth")
        if len(args) == 2 and self.password is None:
            return ErrorReply(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        username = args[1] if len(args) == 3 else b"default"
        return self._authenticate(conn, username, args[-1]) or OK

    def _authenticate(
        self, conn: _Connection, username: bytes, password: bytes
    ) -> ErrorReply | None:
        """Authenticate `conn` as the only user, `default` (who needs no password when the
        node has none); None on success, else the error reply."""
        if username == b"default" and (
            self.password is None or hmac.compare_digest(password, self.password)
        ):
            conn.authenticated = True
            return None
        return ErrorReply("WRONGPASS invalid username-password pair or user is disabled.")

    def _select(self, conn: _Connection, args: list[bytes]) -> Reply:
        if len(args) != 2:
            return arguments.arity_error("select")
        if args[1] != b"0":
            return ErrorReply("ERR DB index is out of range")
        return OK

    def _readonly(self, conn: _Connection, args: list[bytes]) -> Reply:
        conn.readonly = True
        return OK

    def _readwrite(self, conn: _Connection, args: list[bytes]) -> Reply:
        conn.readonly = False
        return OK

    def _info(self, conn: _Connection, args: list[bytes]) -> Reply:
        sections = [a.decode(errors="replace").lower() for a in args[1:]]
        info = render_info(
            sections,
            stats=self.stats,
            max_clients=self.limits.max_clients,
            raft=self.node.status,
            keyspace=self.state.store.stats,
        )
        return Verbatim(info.encode())

    def _client(self, conn: _Connection, args: list[bytes]) -> Reply:
        sub = args[1].upper() if len(args) > 1 else b""
        if sub == b"SETINFO":
            return OK
        if sub == b"SETNAME":
            if len(args) != 3:
                return arguments.arity_error("client|setname")
            return check_client_name(args[2]) or self._set_name(conn, args[2])
        if sub == b"GETNAME":
            return conn.name
        if sub == b"ID":
            return conn.id
        return ErrorReply(f"ERR unknown subcommand '{sub.decode(errors='replace')}'.")

    def _set_name(self, conn: _Connection, name: bytes) -> Reply:
        conn.name = name or None
        return OK

    def _config(self, conn: _Connection, args: list[bytes]) -> Reply:
        if len(args) < 2:
            return arguments.arity_error("config")
        sub = args[1].upper()
        if sub != b"GET":
            text = args[1].decode(errors="replace")
            return ErrorReply(f"ERR unknown subcommand '{text}'. Try CONFIG HELP.")
        if len(args) < 3:
            return arguments.arity_error("config|get")
        return config_get(args[2:], config_parameters(self.limits, self.node.options.fsync))

    async def _raft_status(self, conn: _Connection, args: list[bytes]) -> Reply:
        return members.member_rows_reply(await self.node.cluster_status())

    async def _raft_member(self, conn: _Connection, args: list[bytes]) -> Reply:
        parsed = members.parse_member_command(args)
        if isinstance(parsed, ErrorReply):
            return parsed
        if parsed == members.LIST:
            try:
                return members.member_rows_reply(await self.node.member_rows())
            except (Unavailable, Indeterminate) as exc:
                return error_reply(exc)
        assert not isinstance(parsed, str)
        return change_reply(await self.node.change_members(parsed))

    async def _raft_transfer(self, conn: _Connection, args: list[bytes]) -> Reply:
        target = members.parse_transfer(args)
        if isinstance(target, ErrorReply):
            return target
        return change_reply(await self.node.transfer(target))

    async def _raft_snapshot(self, conn: _Connection, args: list[bytes]) -> Reply:
        try:
            index = await self.node.snapshot_now()
        except Unavailable as exc:
            return error_reply(exc)
        return SimpleString(f"OK snapshot at index {index}")

    async def _raft_backup(self, conn: _Connection, args: list[bytes], out: bytearray) -> None:
        """RAFT.BACKUP: a consistent copy of the state, as an array streamed a chunk at a
        time after the replies before it (redis/backup.py)."""
        if len(args) != 1:
            encode_into(out, arguments.arity_error("raft.backup"), conn.resp3)
            return
        try:
            backup = await take_backup(self.node)
        except (Unavailable, Indeterminate) as exc:
            encode_into(out, error_reply(exc), conn.resp3)
            return
        self.log.info("streaming a backup", index=backup.meta.index, bytes=len(backup.data))
        for piece in backup_stream(backup):
            out += piece
            await self._send(conn, out)
            out.clear()

    def _hello(self, conn: _Connection, args: list[bytes]) -> Reply:
        hello = Hello.parse(args)
        if isinstance(hello, ErrorReply):
            return hello
        if hello.auth is not None:
            refused = self._authenticate(conn, *hello.auth)
            if refused is not None:
                return refused
        if not conn.authenticated:
            return NOAUTH_HELLO
        if hello.name is not None:
            self._set_name(conn, hello.name)
        if hello.protocol is not None:
            conn.resp3 = hello.protocol == 3
        return hello_reply(
            protocol=3 if conn.resp3 else 2, client_id=conn.id, leader=self.node.core.is_leader
        )


def error_reply(exc: Unavailable | Indeterminate | Overloaded) -> ErrorReply:
    """The error a client gets for a command without an outcome."""
    if isinstance(exc, Unavailable):
        return ErrorReply(f"CLUSTERDOWN {exc}")
    if isinstance(exc, Overloaded):
        return ErrorReply(f"TRYAGAIN {exc}, retry shortly")
    return ErrorReply(f"TIMEOUT {exc}")


def outcome_reply(outcome: Outcome[Reply]) -> Reply:
    """What a client gets for a write's command."""
    if isinstance(outcome, Unavailable | Indeterminate | Overloaded):
        return error_reply(outcome)
    return outcome


def _command(conn: _Connection, args: list[bytes]) -> Reply:
    """No command table: clients do without one. COMMAND DOCS is a map in Redis 7."""
    if len(args) > 1 and args[1].upper() == b"DOCS":
        return Map(())
    return []


def change_reply(outcome: ChangeOutcome) -> Reply:
    """What a client gets for a membership change or a transfer."""
    if outcome is None:
        return OK
    if isinstance(outcome, Refused):
        return ErrorReply(f"ERR {outcome.reason}")
    return error_reply(outcome)
