"""The client workload of a fault run, and the history it records.

Clients. `Workload` runs `clients` Trio tasks in the harness's thread. Each connects to
a random node, sends a random number (1 to 50) of requests on that connection, one at
a time, then moves on to another random node; any request that ends without a reply
also ends its connection. Connecting and each request may take `timeout` seconds; a
connection that cannot be made is no operation (nothing was sent) and is retried after
a short pause. Clients stop between requests once told to.

Operations, on a small set of keys: GET (30%), SET of a fresh value (25%), INCR (15%),
DEL (5%) and SET-if-equal (25%: `SET k v IFEQ old`, where `old` is the last value any
client saw for the key; a plain SET when none is known, since IFEQ never creates a key).
A quarter of the requests go to keys with deadlines instead (their own rotating set):
GET (40%), `SET k v PX ttl` (35%), `SET k v IFEQ old PX ttl` (15%) and DEL (10%), with
TTLs of 0.3 to 2 s; every write there sets a new deadline, so a value vanishes only by
its own expiry, which the history records as an indeterminate `expire` of the value,
called at the write's call plus its TTL, less `EXPIRY_MARGIN` (the leader's clock and the
harness's are the same machine's): the checker then proves that no value vanishes before
its deadline nor in any way but once and for good.
Every value a SET writes is unique in the run and a multiple of 1000, and with the
default rotation a key sees far fewer than 1000 INCRs, so a value read names the one
write that wrote it (directly or through the INCRs that followed it).

Transfers (`TRANSFER_SHARE` of the requests) go to banks of two accounts (their own
rotating set): `WATCH a b`, `MGET a b`, `MULTI`, `INCRBY a -n`, `INCRBY b n`, `EXEC`, sent
at once. The MGET is an atomic read of both accounts, and an EXEC that ran is one
transaction on both, which fits only where the values the MGET saw still hold (when the
WATCH and the MGET answered; a blind transfer otherwise). A bank's accounts always sum to
zero (a missing account counts as 0).

Keys rotate, as in Jepsen's independent-key tests: `keys` keys are in use at a time, and
each is retired after `uses` operations and replaced by a fresh one. The checker's
search grows with the indeterminate operations of a key, which never return and stay
concurrent with everything after them; rotation bounds how many one key collects.

History. `Recorder` wraps the checker's `History` (stamped with `time.monotonic`) and
keeps, per operation, the node it went to and what ended it (the error reply,
"timeout", "connection lost"), for the history file. Outcomes follow
`client.interpret`.
"""

from __future__ import annotations

import abc
import itertools
import random
import time
from collections.abc import Iterable, Sequence

import attrs
import trio
from harness.process_node import Node
from harness.resp_client import Arg as Word
from harness.resp_client import ConnectionClosed, Error, Reply
from sim.linearizability import Arg, Handle, History, Kind, Operation, Status

from trioraft.runtime.node import REQUEST_TIMEOUT

from .client import Connection, UnexpectedReply, interpret

#: seconds a client waits before trying again to connect to a node that refused
CONNECT_PAUSE = 0.05
#: the most requests one connection carries before its client moves to another node
REQUESTS_PER_CONNECTION = 50
#: final reads: keys per MGET, and attempts per batch
READ_BATCH = 50
READ_ATTEMPTS = 5
#: how many unexpected replies are kept as examples
EXAMPLES_KEPT = 20
#: the share of requests that go to keys with deadlines, and their TTLs (ms)
TTL_SHARE = 0.25
TTL_MS = (300, 2000)
#: the share of requests that are transfers between the two accounts of a bank
TRANSFER_SHARE = 0.1
#: how much earlier than call + TTL a value may vanish: the wall clock the leader stamps
#: entries with and the monotonic clock of the history may drift a little apart
EXPIRY_MARGIN = 0.1
#: how long after its call a write whose client gave up may still take effect: a node
#: gives a write up by its request timeout, and one already in the leader's log commits
#: within a round of the healed cluster (a second is ample)
SETTLE_SECONDS = REQUEST_TIMEOUT + 1.0
#: how long the final reads of one batch may take
FINAL_READ_SECONDS = 10.0

BROKEN = (OSError, ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


@attrs.frozen
class Target:
    """A node as clients see it."""

    node_id: str
    host: str
    port: int


def targets_of(nodes: Iterable[Node]) -> list[Target]:
    return [Target(node.id, node.host, node.client_port) for node in nodes]


class Recorder:
    """The run's history, with the node and the ending of each operation."""

    def __init__(self) -> None:
        self.history = History(time.monotonic)
        #: per operation (by handle index): the node it went to
        self.nodes: list[str] = []
        #: per operation: what ended it when it was no plain reply ("" otherwise)
        self.notes: list[str] = []

    def invoke(
        self,
        client: int | str,
        node: str,
        key: str | tuple[str, ...],
        kind: Kind,
        args: tuple[Arg, ...],
        at: float | None = None,
    ) -> Handle:
        handle = self.history.invoke(client, key, kind, args, at)
        self.nodes.append(node)
        self.notes.append("")
        return handle

    def end(self, handle: Handle, status: Status, output: object = None, note: str = "") -> None:
        if status is Status.OK:
            self.history.complete(handle, output)
        elif status is Status.FAIL:
            self.history.fail(handle)
        else:
            self.history.unknown(handle)
        self.notes[handle.index] = note

    def operations(self) -> list[Operation]:
        return self.history.operations()


class KeyRing:
    """The keys in use; see the module docstring."""

    def __init__(self, width: int, uses: int, prefix: str = "k") -> None:
        self.uses = uses
        self.prefix = prefix
        self._numbers = itertools.count()
        self.active = [self._fresh() for _ in range(width)]
        self._used = dict.fromkeys(self.active, 0)

    def _fresh(self) -> str:
        return f"{self.prefix}{next(self._numbers)}"

    @property
    def all_keys(self) -> list[str]:
        """Every key used so far (and the active ones), oldest first."""
        return list(self._used)

    def pick(self, rng: random.Random) -> str:
        slot = rng.randrange(len(self.active))
        key = self.active[slot]
        self._used[key] += 1
        if self._used[key] >= self.uses:
            fresh = self._fresh()
            self.active[slot] = fresh
            self._used[fresh] = 0
        return key


@attrs.define
class WorkloadStats:
    connect_failures: int = 0
    #: (node, command, reply) of the first unexpected replies
    unexpected: list[tuple[str, str, str]] = attrs.Factory(list)
    unexpected_count: int = 0


class ClientTasks(abc.ABC):
    """`clients` concurrent Trio tasks, each running `_client` until `stop`."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        #: set by `stop`; each client's loop ends when it sees it
        self.stopping = trio.Event()

    def stop(self) -> None:
        """Clients stop after their current request."""
        self.stopping.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for number in range(self.clients):
                nursery.start_soon(self._client, number)

    @abc.abstractmethod
    async def _client(self, number: int) -> None:
        """Client `number`'s loop, until `stopping` is set."""


class Workload(ClientTasks):
    """Concurrent clients over real sockets; see the module docstring."""

    def __init__(
        self,
        targets: Sequence[Target],
        recorder: Recorder,
        *,
        seed: int,
        clients: int,
        timeout: float,
        keys: int,
        uses: int,
    ) -> None:
        super().__init__(clients)
        self.targets = list(targets)
        self.recorder = recorder
        self.seed = seed
        self.timeout = timeout
        self.keys = KeyRing(keys, uses)
        #: the keys that get deadlines (never INCR: every write there sets a deadline)
        self.ttl_keys = KeyRing(max(1, keys // 2), uses, prefix="t")
        #: the banks of two accounts that transfers go to
        self.banks = KeyRing(max(1, keys // 4), uses, prefix="b")
        #: the monotonic time by which the deadline of every write answered so far has passed
        self.deadlines_over = 0.0
        self.stats = WorkloadStats()
        #: the last value any client saw for each key (what IFEQ expects)
        self.last_seen: dict[str, bytes | None] = {}
        self._values = itertools.count(1)

    async def _client(self, number: int) -> None:
        rng = random.Random(f"{self.seed}/{number}")
        connection: Connection | None = None
        target = self.targets[0]
        left = 0
        try:
            while not self.stopping.is_set():
                if connection is None or left <= 0:
                    if connection is not None:
                        await connection.aclose()
                    connection = None
                    target = rng.choice(self.targets)
                    connection = await self._connect(target)
                    if connection is None:
                        with trio.move_on_after(CONNECT_PAUSE):
                            await self.stopping.wait()
                        continue
                    left = rng.randint(1, REQUESTS_PER_CONNECTION)
                left -= 1
                if not await self._request(rng, number, target, connection):
                    await connection.aclose()
                    connection = None
        finally:
            if connection is not None:
                await connection.aclose()

    async def _connect(self, target: Target) -> Connection | None:
        with trio.move_on_after(self.timeout):
            try:
                return await Connection.open(target.host, target.port)
            except OSError:
                pass
        self.stats.connect_failures += 1
        return None

    def _operation(
        self, rng: random.Random, key: str
    ) -> tuple[Kind, tuple[Arg, ...], tuple[Word, ...]]:
        """(kind, checker arguments, command) of a random operation on `key`."""
        roll = rng.random()
        if key.startswith(self.ttl_keys.prefix):
            return self._ttl_operation(rng, key, roll)
        if roll < 0.30:
            return Kind.GET, (), ("GET", key)
        if roll < 0.45:
            return Kind.INCR, (1,), ("INCR", key)
        if roll < 0.50:
            return Kind.DEL, (), ("DEL", key)
        value = b"%d" % (next(self._values) * 1000)
        expected = self.last_seen.get(key)
        if roll < 0.75 or expected is None:
            return Kind.SET, (value,), ("SET", key, value)
        return Kind.SET_IF_EQUAL, (expected, value), ("SET", key, value, "IFEQ", expected)

    def _ttl_operation(
        self, rng: random.Random, key: str, roll: float
    ) -> tuple[Kind, tuple[Arg, ...], tuple[Word, ...]]:
        """An operation on a key with deadlines: every write gives it a new one."""
        if roll < 0.40:
            return Kind.GET, (), ("GET", key)
        if roll < 0.50:
            return Kind.DEL, (), ("DEL", key)
        value = b"%d" % (next(self._values) * 1000)
        ttl = b"%d" % rng.randint(*TTL_MS)
        expected = self.last_seen.get(key)
        if roll < 0.85 or expected is None:
            return Kind.SET, (value,), ("SET", key, value, "PX", ttl)
        command = ("SET", key, value, "IFEQ", expected, "PX", ttl)
        return Kind.SET_IF_EQUAL, (expected, value), command

    def _record_expiry(self, key: str, value: Arg, ttl: Word) -> None:
        """The written value may vanish, once, from its deadline on (see the docstring)."""
        now = time.monotonic()
        after = now + int(ttl) / 1000
        self.recorder.invoke("expiry", "", key, Kind.EXPIRE, (value,), at=after - EXPIRY_MARGIN)

    def _deadline_answered(self, ttl: Word) -> None:
        """A write with a deadline was answered. The leader stamps the deadline when it
        proposes the write, after the call and by the answer, so it passes by now + TTL."""
        self.deadlines_over = max(self.deadlines_over, time.monotonic() + int(ttl) / 1000)

    async def _request(
        self, rng: random.Random, number: int, target: Target, connection: Connection
    ) -> bool:
        """Run one random operation; False when the connection must be dropped."""
        if rng.random() < TRANSFER_SHARE:
            return await self._transfer(rng, number, target, connection)
        use_ttl = rng.random() < TTL_SHARE
        key = (self.ttl_keys if use_ttl else self.keys).pick(rng)
        kind, args, command = self._operation(rng, key)
        handle = self.recorder.invoke(number, target.node_id, key, kind, args)
        if "PX" in command:
            self._record_expiry(key, args[-1], command[-1])
        reply: Reply = None
        with trio.move_on_after(self.timeout) as scope:
            try:
                reply = await connection.call(*command)
            except (*BROKEN, ValueError) as exc:
                self.recorder.end(handle, Status.INFO, note=f"connection lost: {exc}")
                return False
        if scope.cancelled_caught:
            self.recorder.end(handle, Status.INFO, note="timeout")
            return False
        try:
            status, output = interpret(kind, reply)
        except UnexpectedReply as exc:
            self._unexpected(target, command, str(exc))
            self.recorder.end(handle, Status.INFO, note=f"unexpected reply: {exc}")
            return False
        note = reply.text if isinstance(reply, Error) else ""
        self.recorder.end(handle, status, output, note)
        if "PX" in command:
            self._deadline_answered(command[-1])
        if status is Status.OK:
            self._saw(kind, key, args, output)
        return True

    @property
    def accounts(self) -> list[str]:
        """Every bank account used so far."""
        return [account for bank in self.banks.all_keys for account in accounts_of(bank)]

    @property
    def all_keys(self) -> list[str]:
        """Every key the clients used so far: plain, with deadlines, bank accounts."""
        return self.keys.all_keys + self.ttl_keys.all_keys + self.accounts

    async def settle(self) -> None:
        """Once the clients stopped: sleep until no write whose client gave up can still
        take effect, nor a deadline it may carry (stamped as it takes effect), and every
        deadline of an answered write has passed."""
        unsettled = [
            op.call
            for op in self.recorder.operations()
            if op.status is Status.INFO and op.kind is not Kind.EXPIRE
        ]
        settled = max([*unsettled, -SETTLE_SECONDS]) + SETTLE_SECONDS + TTL_MS[1] / 1000
        now = time.monotonic()
        await trio.sleep(max(0.0, settled - now, self.deadlines_over - now))

    async def read_back(
        self, targets: Sequence[Target]
    ) -> tuple[dict[str, dict[str, bytes | None]], list[str]]:
        """Once settled: every key used, read through each of `targets` (see
        `read_everything`)."""
        return await read_everything(self.recorder, targets, self.all_keys, FINAL_READ_SECONDS)

    async def _transfer(
        self, rng: random.Random, number: int, target: Target, connection: Connection
    ) -> bool:
        """A WATCH transfer between a bank's accounts (see the module docstring)."""
        keys = accounts_of(self.banks.pick(rng))
        source, dest = rng.sample(keys, 2)
        amount = rng.randint(1, 9)
        requests: list[tuple[Word, ...]] = [
            ("WATCH", *keys),
            ("MGET", *keys),
            ("MULTI",),
            ("INCRBY", source, -amount),
            ("INCRBY", dest, amount),
            ("EXEC",),
        ]
        moves = ((source, Kind.INCR.value, (-amount,)), (dest, Kind.INCR.value, (amount,)))
        start = time.monotonic()
        replies: list[Reply] = []
        note = "timeout"
        with trio.move_on_after(self.timeout):
            try:
                replies = await connection.pipeline(requests)
            except (*BROKEN, ValueError) as exc:
                note = f"connection lost: {exc}"
        if not replies:
            handle = self._record_transfer(number, target, keys, (), moves, start)
            self.recorder.end(handle, Status.INFO, note=note)
            return False
        watched, seen, *_, executed = replies
        reads: tuple[Arg, ...] = ()
        if isinstance(seen, list):
            read = self._record_transfer(
                number, target, keys, (), tuple((key, Kind.GET.value, ()) for key in keys), start
            )
            self.recorder.end(read, Status.OK, tuple(seen))
            if watched == "OK":
                reads = tuple(zip(keys, seen, strict=True))  # type: ignore[arg-type]
        handle = self._record_transfer(number, target, keys, reads, moves, start)
        try:
            status, output = interpret(Kind.TRANSACTION, executed)
        except UnexpectedReply as exc:
            self._unexpected(target, ("EXEC",), str(exc))
            self.recorder.end(handle, Status.INFO, note=f"unexpected reply: {exc}")
            return False
        self.recorder.end(
            handle, status, output, executed.text if isinstance(executed, Error) else ""
        )
        return True

    def _record_transfer(
        self,
        number: int,
        target: Target,
        keys: tuple[str, str],
        reads: tuple[Arg, ...],
        commands: tuple[Arg, ...],
        start: float,
    ) -> Handle:
        args: tuple[Arg, ...] = (keys, reads, commands)  # type: ignore[assignment]
        return self.recorder.invoke(number, target.node_id, keys, Kind.TRANSACTION, args, start)

    def _saw(self, kind: Kind, key: str, args: tuple[Arg, ...], output: object) -> None:
        if kind is Kind.GET:
            self.last_seen[key] = output if isinstance(output, bytes) else None
        elif kind is Kind.SET:
            self.last_seen[key] = args[0] if isinstance(args[0], bytes) else None
        elif kind is Kind.INCR and isinstance(output, int):
            self.last_seen[key] = b"%d" % output
        elif kind is Kind.DEL:
            self.last_seen[key] = None
        elif kind is Kind.SET_IF_EQUAL and output:
            self.last_seen[key] = args[1] if isinstance(args[1], bytes) else None

    def _unexpected(self, target: Target, command: tuple[Word, ...], reply: str) -> None:
        self.stats.unexpected_count += 1
        if len(self.stats.unexpected) < EXAMPLES_KEPT:
            words = " ".join(a.decode() if isinstance(a, bytes) else str(a) for a in command)
            self.stats.unexpected.append((target.node_id, words, reply))


def accounts_of(bank: str) -> tuple[str, str]:
    return f"{bank}.0", f"{bank}.1"


def unbalanced_banks(final: dict[str, dict[str, bytes | None]], banks: Sequence[str]) -> list[str]:
    """The banks whose accounts do not sum to zero in some node's final reads."""
    problems = []
    for node, values in final.items():
        for bank in banks:
            found = [values.get(account) for account in accounts_of(bank)]
            if sum(int(value or 0) for value in found) != 0:
                problems.append(f"{bank} through {node}: {found}")
    return problems


async def read_everything(
    recorder: Recorder, targets: Sequence[Target], keys: Sequence[str], timeout: float
) -> tuple[dict[str, dict[str, bytes | None]], list[str]]:
    """Read every key through every node with MGET (linearizable reads), recording each
    key's read as a get of client `final-<node>`. Returns, per node, the values read,
    and the problems met (a batch that never succeeded is listed, not retried forever)."""
    values: dict[str, dict[str, bytes | None]] = {}
    problems: list[str] = []
    for target in targets:
        seen: dict[str, bytes | None] = {}
        for start in range(0, len(keys), READ_BATCH):
            batch = list(keys[start : start + READ_BATCH])
            problem = ""
            for _ in range(READ_ATTEMPTS):
                outcome = await _read_batch(recorder, target, batch, timeout)
                if isinstance(outcome, dict):
                    seen.update(outcome)
                    break
                problem = outcome
            else:
                problems.append(
                    f"final read of {len(batch)} keys through {target.node_id}: {problem}"
                )
        values[target.node_id] = seen
    return values, problems


async def _read_batch(
    recorder: Recorder, target: Target, keys: list[str], timeout: float
) -> dict[str, bytes | None] | str:
    client = f"final-{target.node_id}"
    handles = [recorder.invoke(client, target.node_id, key, Kind.GET, ()) for key in keys]
    reply: Reply = None
    problem = ""
    with trio.move_on_after(timeout) as scope:
        try:
            connection = await Connection.open(target.host, target.port)
            try:
                reply = await connection.call("MGET", *keys)
            finally:
                await connection.aclose()
        except (*BROKEN, ValueError) as exc:
            problem = f"connection lost: {exc}"
    if scope.cancelled_caught:
        problem = "timeout"
    if not problem and not (isinstance(reply, list) and len(reply) == len(keys)):
        problem = f"reply {reply!r}"
    if problem:
        status = Status.FAIL if "CLUSTERDOWN" in problem else Status.INFO
        for handle in handles:
            recorder.end(handle, status, note=problem)
        return problem
    assert isinstance(reply, list)
    result: dict[str, bytes | None] = {}
    for key, handle, value in zip(keys, handles, reply, strict=True):
        if value is not None and not isinstance(value, bytes):
            recorder.end(handle, Status.INFO, note=f"unexpected value {value!r}")
            continue
        recorder.end(handle, Status.OK, value)
        result[key] = value
    return result
