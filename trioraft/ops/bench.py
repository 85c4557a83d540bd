"""`trioraft bench`: a load generator for any node (or any server speaking RESP).

How it measures:

- Each connection is one Trio task that sends a batch of `pipeline` requests, waits for
  all their replies, and sends the next batch, as redis-benchmark does. The requests are
  encoded once, before the run, into a ring of random keys and commands that every
  connection walks from its own offset, so the client spends its time on the socket.
- A reply's latency runs from the start of its batch's send to the read that completed
  it. Latencies go into log-linear histograms (exact to the microsecond below 2 ms, then
  within 0.1%): one for the whole run, one per command and one per interval of the
  timeline.
- Replies are counted, not decoded: the scanner only finds where each one ends and
  whether it is an error. The first word of an error (TRYAGAIN, CLUSTERDOWN, ...) is kept
  as its kind.
- A batch whose replies do not all come within `timeout` counts its missing replies as
  errors of kind `timeout`; a connection that fails counts them as `disconnected`. Either
  way the connection is opened again and the run goes on, so that a run can span a
  failover.
- A run ends after `duration` seconds (batches in flight are finished) or after
  `requests` requests.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import select
import socket
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TextIO

import attrs
import trio

__all__ = [
    "BenchError",
    "BenchResult",
    "BenchSpec",
    "Histogram",
    "ReplyScanner",
    "check_plot_available",
    "format_table",
    "run_bench",
    "write_plot",
]

#: the commands a run sends, by their code in the request ring
SET: Final = 0
GET: Final = 1
COMMAND_NAMES: Final = ("SET", "GET")
#: the most keys a run may use: each key is written with twelve digits
MAX_KEYSPACE: Final = 10**12
#: requests encoded before the run; connections walk this ring from their own offsets
_RING_SIZE: Final = 1 << 16
#: the percentiles reported, as (label, fraction)
PERCENTILES: Final = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))
#: how often the live progress line is redrawn, in seconds
_PROGRESS_EVERY: Final = 0.5
#: a pause before opening a failed connection again, in seconds
_RECONNECT_PAUSE: Final = 0.1


class BenchError(Exception):
    """A run that cannot start or go on: unreachable target, refused password, garbled
    replies. The text says what and where, in one line."""


@attrs.frozen(kw_only=True)
class BenchSpec:
    host: str
    port: int
    #: connections, each with one batch in flight at a time
    connections: int = 50
    #: requests per batch
    pipeline: int = 1
    #: the fraction of requests that are GETs; the rest are SETs
    reads: float = 0.0
    #: keys are `key:000000000000` ... `key:<keyspace - 1>`, picked at random
    keyspace: int = attrs.field(default=100_000, validator=attrs.validators.le(MAX_KEYSPACE))
    #: bytes per value
    value_size: int = 100
    #: seconds to run; None when the run is bounded by `requests`
    duration: float | None = 10.0
    #: requests to complete; None when the run is bounded by `duration`
    requests: int | None = None
    #: seconds to wait for a batch's replies before counting them as errors
    timeout: float = 10.0
    #: the password to AUTH with on every connection, if any
    password: str | None = None
    #: width of one step of the timeline, in seconds
    interval: float = 1.0
    #: seed of the random keys and commands
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if (self.duration is None) == (self.requests is None):
            raise ValueError("give exactly one of a duration and a request count")


# ---- latency histograms ----------------------------------------------------------------

#: sub-buckets per power of two: values below 2 * _SUB are exact, larger ones within 1/_SUB
_SUB_BITS: Final = 10
_SUB: Final = 1 << _SUB_BITS


def _bucket(micros: int) -> int:
    """The histogram bucket of a latency in microseconds (log-linear, contiguous)."""
    shift = micros.bit_length() - _SUB_BITS - 1
    if shift <= 0:
        return micros
    return (shift << _SUB_BITS) + (micros >> shift)


def _bucket_floor(bucket: int) -> int:
    """The smallest latency, in microseconds, that falls in `bucket`."""
    shift = (bucket >> _SUB_BITS) - 1
    if shift <= 0:
        return bucket
    return (bucket - (shift << _SUB_BITS)) << shift


class Histogram:
    """Counts of latencies, in microseconds."""

    __slots__ = ("count", "counts", "max")

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.count = 0
        self.max = 0

    def record(self, micros: int, times: int = 1) -> None:
        self.counts[_bucket(micros)] += times
        self.count += times
        if micros > self.max:
            self.max = micros

    def percentile(self, fraction: float) -> int:
        """The latency below which `fraction` of the recorded ones fall (0 when empty)."""
        if not self.count:
            return 0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(_bucket_floor(bucket), self.max)
        return self.max

    def summary(self) -> dict[str, float]:
        """The percentiles and the maximum, in milliseconds."""
        figures = {label: self.percentile(q) / 1000 for label, q in PERCENTILES}
        figures["max"] = self.max / 1000
        return figures


# ---- replies -------------------------------------------------------------------------

_SCALARS: Final = frozenset(b"+-:,_#(")
_BULKS: Final = frozenset(b"$=!")


class ReplyScanner:
    """Finds where replies end in a stream of bytes, without decoding them. Knows the
    scalar and bulk replies of RESP2 and RESP3; aggregates are not expected here."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> tuple[int, list[str]]:
        """Take received bytes; return how many replies they completed, and the texts of
        the errors among them."""
        buf = self._buf
        buf += data
        pos = self._pos
        end = len(buf)
        count = 0
        errors: list[str] = []
        while pos < end:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            kind = buf[pos]
            if kind in _BULKS:
                length = int(buf[pos + 1 : line_end])
                after = line_end + 2 + (length + 2 if length >= 0 else 0)
                if after > end:
                    break
            elif kind in _SCALARS:
                after = line_end + 2
                if kind == 0x2D:  # '-'
                    errors.append(buf[pos + 1 : line_end].decode("utf-8", "replace"))
            else:
                raise BenchError(f"unexpected reply starting {bytes(buf[pos : pos + 20])!r}")
            pos = after
            count += 1
        if pos == end:
            buf.clear()
            pos = 0
        self._pos = pos
        return count, errors


def _encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _request_ring(spec: BenchSpec) -> tuple[list[bytes], bytes]:
    """The encoded requests the connections walk, and each one's command code."""
    rng = random.Random(spec.seed)
    keys = [b"key:%012d" % rng.randrange(spec.keyspace) for _ in range(_RING_SIZE)]
    kinds = bytes(GET if rng.random() < spec.reads else SET for _ in range(_RING_SIZE))
    # every key has the same length, so each request is a fixed frame around its key
    slot = b"k" * len(keys[0])
    frames = (_encode(b"SET", slot, b"x" * spec.value_size), _encode(b"GET", slot))
    halves = [frame.partition(slot)[::2] for frame in frames]
    requests = [
        halves[kind][0] + key + halves[kind][1] for key, kind in zip(keys, kinds, strict=True)
    ]
    return requests, kinds


# ---- the run's figures -------------------------------------------------------------------


@attrs.define
class Interval:
    """What completed during one step of the timeline."""

    requests: int = 0
    errors: int = 0
    latency: Histogram = attrs.field(factory=Histogram)


@attrs.define
class Recorder:
    """Everything the connections measured, as it comes in."""

    interval: float
    start: float = attrs.field(factory=trio.current_time)
    latency: Histogram = attrs.field(factory=Histogram)
    by_command: tuple[Histogram, ...] = attrs.field(factory=lambda: (Histogram(), Histogram()))
    timeline: list[Interval] = attrs.field(factory=list)
    errors: Counter[str] = attrs.field(factory=Counter)

    @property
    def completed(self) -> int:
        return self.latency.count

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def _interval_at(self, now: float) -> Interval:
        step = int((now - self.start) / self.interval)
        while len(self.timeline) <= step:
            self.timeline.append(Interval())
        return self.timeline[step]

    def replies(self, now: float, sent_at: float, kinds: bytes, errors: list[str]) -> None:
        """Record replies that arrived at `now` for requests sent at `sent_at`."""
        micros = int((now - sent_at) * 1_000_000)
        count = len(kinds)
        gets = kinds.count(GET)
        self.latency.record(micros, count)
        if gets:
            self.by_command[GET].record(micros, gets)
        if gets < count:
            self.by_command[SET].record(micros, count - gets)
        interval = self._interval_at(now)
        interval.requests += count
        interval.latency.record(micros, count)
        for text in errors:
            self._error(interval, text.split(" ", 1)[0] or "ERR")

    def lost(self, now: float, count: int, kind: str) -> None:
        """Record `count` requests that got no reply."""
        interval = self._interval_at(now)
        for _ in range(count):
            self._error(interval, kind)

    def _error(self, interval: Interval, kind: str) -> None:
        self.errors[kind] += 1
        interval.errors += 1


@attrs.frozen
class BenchResult:
    spec: BenchSpec
    #: seconds from the first connection's start to the last reply
    elapsed: float
    recorder: Recorder

    @property
    def throughput(self) -> float:
        return self.recorder.completed / self.elapsed if self.elapsed > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        spec, recorder = self.spec, self.recorder
        return {
            "target": f"{spec.host}:{spec.port}",
            "connections": spec.connections,
            "pipeline": spec.pipeline,
            "reads": spec.reads,
            "keyspace": spec.keyspace,
            "value_size": spec.value_size,
            "elapsed_s": round(self.elapsed, 6),
            "requests": recorder.completed,
            "errors": recorder.error_count,
            "error_kinds": dict(sorted(recorder.errors.items())),
            "throughput": round(self.throughput, 1),
            "latency_ms": recorder.latency.summary(),
            "commands": {
                name: {
                    "requests": histogram.count,
                    "throughput": round(histogram.count / self.elapsed, 1) if self.elapsed else 0,
                    "latency_ms": histogram.summary(),
                }
                for name, histogram in zip(COMMAND_NAMES, recorder.by_command, strict=True)
                if histogram.count
            },
            "timeline": [
                {
                    "t": round(end, 6),
                    "seconds": round(end - step * spec.interval, 6),
                    "requests": interval.requests,
                    "errors": interval.errors,
                    "p50_ms": interval.latency.percentile(0.5) / 1000,
                    "p99_ms": interval.latency.percentile(0.99) / 1000,
                }
                for step, interval in enumerate(recorder.timeline)
                # the last interval ends with the run
                for end in [min((step + 1) * spec.interval, self.elapsed)]
            ],
        }


# ---- the run ---------------------------------------------------------------------------


@attrs.define
class _Budget:
    """What the connections may still send."""

    deadline: float
    remaining: int | None

    def take(self, wanted: int) -> int:
        """How many requests the next batch may hold (0: the run is over)."""
        if trio.current_time() >= self.deadline:
            return 0
        if self.remaining is None:
            return wanted
        granted = min(wanted, self.remaining)
        self.remaining -= granted
        return granted


class _Connection:
    """One connection's socket and the batch it has in flight."""

    __slots__ = (
        "answered",
        "blocked",
        "kinds",
        "position",
        "scanner",
        "sent_at",
        "sock",
        "unsent",
    )

    def __init__(self, sock: socket.socket, position: int) -> None:
        self.sock = sock
        self.scanner = ReplyScanner()
        #: where the next batch starts in the request ring
        self.position = position
        #: the commands of the batch in flight, and how many of them were answered
        self.kinds = b""
        self.answered = 0
        self.sent_at = 0.0
        #: the part of the batch the socket did not take yet, and whether the pump waits
        #: until it can send more
        self.unsent = b""
        self.blocked = False


async def _open_socket(spec: BenchSpec) -> socket.socket:
    """A connected non-blocking socket (Nagle off), after AUTH when the spec has a
    password; BenchError naming the target if that fails."""
    where = f"{spec.host}:{spec.port}"
    try:
        sock = await _connect(spec.host, spec.port)
    except OSError as exc:
        raise BenchError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    if spec.password is None:
        return sock
    scanner = ReplyScanner()
    answered, errors = 0, ["no answer"]
    with trio.move_on_after(spec.timeout), contextlib.suppress(OSError):
        sock.send(_encode(b"AUTH", spec.password.encode()))
        while not answered:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(4096)
            if not data:
                break
            answered, errors = scanner.feed(data)
    if not answered or errors:
        sock.close()
        raise BenchError(f"{where} refused the password: {errors[0]}")
    return sock


async def _connect(host: str, port: int) -> socket.socket:
    addresses = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure = OSError(f"{host} has no address")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            status = sock.connect_ex(address)
            if status == errno.EINPROGRESS:
                await trio.lowlevel.wait_writable(sock)
                status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if status:
                raise OSError(status, os.strerror(status))
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure


#: how often the pump looks for batches past their timeout, in seconds
_TICK: Final = 0.1


class _Pump:
    """Drives every connection of a run from one Trio task: it waits until one of the
    sockets can be read (through an epoll set of their own, whose descriptor Trio
    watches), reads every socket that has replies, and sends each connection its next
    batch as soon as the last one is answered. No task switch per request."""

    def __init__(
        self,
        spec: BenchSpec,
        ring: tuple[list[bytes], bytes],
        budget: _Budget,
        recorder: Recorder,
        nursery: trio.Nursery,
    ) -> None:
        self._spec = spec
        self._requests, self._kinds = ring
        self._budget = budget
        self._recorder = recorder
        self._nursery = nursery
        self._epoll = select.epoll()
        self._connections: dict[int, _Connection] = {}
        #: connections being opened again after a failure
        self._reopening = 0

    def add(self, connection: _Connection) -> None:
        self._connections[connection.sock.fileno()] = connection
        self._epoll.register(connection.sock, select.EPOLLIN)
        self._send_next(connection, trio.current_time())

    async def run(self) -> None:
        try:
            while self._connections or self._reopening:
                with trio.move_on_after(_TICK):
                    await trio.lowlevel.wait_readable(self._epoll.fileno())
                now = trio.current_time()
                for fd, events in self._epoll.poll(0):
                    if events & select.EPOLLOUT and fd in self._connections:
                        self._send_rest(self._connections[fd])
                    if events & ~select.EPOLLOUT and fd in self._connections:
                        self._receive(self._connections[fd], now)
                self._expire(trio.current_time())
        finally:
            for connection in list(self._connections.values()):
                self._drop(connection)
            self._epoll.close()

    def _send_next(self, connection: _Connection, now: float) -> None:
        count = self._budget.take(self._spec.pipeline)
        if not count:
            self._drop(connection)
            return
        start = connection.position
        end = start + count
        if end <= _RING_SIZE:
            batch = self._requests[start] if count == 1 else b"".join(self._requests[start:end])
            connection.kinds = self._kinds[start:end]
        else:
            end -= _RING_SIZE
            batch = b"".join(self._requests[start:] + self._requests[:end])
            connection.kinds = self._kinds[start:] + self._kinds[:end]
        connection.position = end
        connection.answered = 0
        connection.sent_at = now
        connection.unsent = batch
        self._send_rest(connection)

    def _send_rest(self, connection: _Connection) -> None:
        """Send what the socket takes of the batch; wait to send the rest if it is full."""
        try:
            sent = connection.sock.send(connection.unsent)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail(connection, "disconnected")
            return
        connection.unsent = connection.unsent[sent:]
        blocked = bool(connection.unsent)
        if blocked != connection.blocked:
            connection.blocked = blocked
            self._epoll.modify(connection.sock, select.EPOLLIN | (select.EPOLLOUT * blocked))

    def _receive(self, connection: _Connection, now: float) -> None:
        try:
            data = connection.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._fail(connection, "disconnected")
            return
        count, errors = connection.scanner.feed(data)
        if count:
            answered = connection.answered
            self._recorder.replies(
                now, connection.sent_at, connection.kinds[answered : answered + count], errors
            )
            connection.answered = answered + count
            if connection.answered >= len(connection.kinds):
                self._send_next(connection, now)

    def _expire(self, now: float) -> None:
        """Fail the batches that waited longer than the timeout for their replies."""
        oldest = now - self._spec.timeout
        for connection in list(self._connections.values()):
            if connection.sent_at < oldest:
                self._fail(connection, "timeout")

    def _fail(self, connection: _Connection, kind: str) -> None:
        """Count the batch's missing replies as errors and open the connection again."""
        missing = len(connection.kinds) - connection.answered
        self._recorder.lost(trio.current_time(), missing, kind)
        self._drop(connection)
        self._reopening += 1
        self._nursery.start_soon(self._reopen, connection.position)

    def _drop(self, connection: _Connection) -> None:
        if self._connections.pop(connection.sock.fileno(), None) is not None:
            self._epoll.unregister(connection.sock)
        connection.sock.close()

    async def _reopen(self, position: int) -> None:
        """Open a failed connection again, trying until the run's time is up (or, for a
        run bounded by its request count, for `timeout` seconds)."""
        try:
            give_up = self._budget.deadline
            if self._budget.remaining is not None:
                give_up = trio.current_time() + self._spec.timeout
            while trio.current_time() < give_up:
                await trio.sleep(_RECONNECT_PAUSE)
                with contextlib.suppress(BenchError):
                    sock = await _open_socket(self._spec)
                    self.add(_Connection(sock, position))
                    return
        finally:
            self._reopening -= 1


async def _progress(recorder: Recorder, out: TextIO) -> None:
    """Redraw one status line on `out` until cancelled."""
    last_time, last_count = recorder.start, 0
    while True:
        await trio.sleep(_PROGRESS_EVERY)
        now = trio.current_time()
        done = recorder.completed
        rate = (done - last_count) / (now - last_time)
        last_time, last_count = now, done
        latency = recorder.latency
        out.write(
            f"\r{now - recorder.start:6.1f}s  {rate:>9,.0f} req/s  {done:>11,} done  "
            f"errors {recorder.error_count:,}  p50 {latency.percentile(0.5) / 1000:.2f} ms  "
            f"p99 {latency.percentile(0.99) / 1000:.2f} ms \x1b[K"
        )
        out.flush()


async def run_bench(spec: BenchSpec, progress: TextIO | None = None) -> BenchResult:
    """Run the load `spec` describes; draw a live progress line on `progress` if given."""
    ring = _request_ring(spec)
    sockets: list[socket.socket] = []
    try:
        for _ in range(spec.connections):
            sockets.append(await _open_socket(spec))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    recorder = Recorder(interval=spec.interval)
    budget = _Budget(
        deadline=recorder.start + spec.duration if spec.duration is not None else math.inf,
        remaining=spec.requests,
    )
    async with trio.open_nursery() as nursery:
        if progress is not None:
            nursery.start_soon(_progress, recorder, progress)
        pump = _Pump(spec, ring, budget, recorder, nursery)
        for k, sock in enumerate(sockets):
            pump.add(_Connection(sock, k * _RING_SIZE // spec.connections))
        await pump.run()
        elapsed = trio.current_time() - recorder.start
        nursery.cancel_scope.cancel()
    if progress is not None:
        progress.write("\r\x1b[K")
        progress.flush()
    return BenchResult(spec=spec, elapsed=elapsed, recorder=recorder)


# ---- reporting -------------------------------------------------------------------------


def format_table(result: BenchResult) -> str:
    """The result as text: what ran, then one row per command and one for all."""
    spec, recorder = result.spec, result.recorder
    lines = [
        f"{spec.host}:{spec.port}: {spec.connections} connections, pipeline {spec.pipeline}, "
        f"{spec.reads:.0%} GET, {spec.value_size}-byte values, {spec.keyspace:,} keys, "
        f"{result.elapsed:.2f} s",
    ]
    header = ("", "requests", "req/s", "errors", *(label for label, _ in PERCENTILES), "max")
    rows: list[tuple[str, ...]] = [header]
    named = [
        (name, histogram)
        for name, histogram in zip(COMMAND_NAMES, recorder.by_command, strict=True)
        if histogram.count
    ]
    for name, histogram in [*named, ("all", recorder.latency)]:
        figures = histogram.summary()
        errors = str(recorder.error_count) if name == "all" else ""
        rows.append(
            (
                name,
                f"{histogram.count:,}",
                f"{histogram.count / result.elapsed:,.0f}" if result.elapsed else "0",
                errors,
                *(f"{figures[label]:.3f}" for label, _ in PERCENTILES),
                f"{figures['max']:.3f}",
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("latencies in ms")
    if recorder.errors:
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(recorder.errors.items()))
        lines.append(f"errors: {kinds}")
    return "\n".join(lines)


PLOT_MISSING: Final = "--plot needs matplotlib: pip install 'trioraft[plot]'"


def check_plot_available() -> None:
    """Raise BenchError saying how to install the plotting library when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError(PLOT_MISSING) from None


def write_plot(results: Iterable[tuple[str, dict[str, Any]]], path: Path) -> None:
    """A PNG of throughput and latency (p50, p99) over time, one line per labelled run
    (labels and `BenchResult.as_json()` figures)."""
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, latency_axes) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for label, figures in results:
        timeline = figures["timeline"]
        times = [point["t"] for point in timeline]
        rates = [p["requests"] / p["seconds"] if p["seconds"] else 0 for p in timeline]
        rate_axes.plot(times, rates, label=label)
        (p50,) = latency_axes.plot(times, [p["p50_ms"] for p in timeline], label=f"{label} p50")
        latency_axes.plot(
            times, [p["p99_ms"] for p in timeline], linestyle="--", color=p50.get_color()
        )
    rate_axes.set_ylabel("requests/s")
    rate_axes.legend(fontsize="small")
    latency_axes.set_ylabel("latency, ms (p50 solid, p99 dashed)")
    latency_axes.set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_result(result: BenchResult, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        json.dump(result.as_json(), out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(result) + "\n")
