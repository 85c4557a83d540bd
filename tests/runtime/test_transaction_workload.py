"""Concurrent WATCH/MULTI/EXEC transactions through the client protocol of a runtime
cluster (harness/node_cluster.py, virtual time) while nodes crash and leaders are cut off.

Clients on every node move units between accounts (WATCH, MGET, MULTI, INCRBY twice,
EXEC; again when EXEC answers the null array), add to the accounts without WATCH, count
with WATCH (GET, then SET to one more) and read every account at once. Each transaction
that ran is one operation on several keys for the linearizability checker: it fits only
where the values its WATCH saw still hold, so a transaction run on stale values, a lost
one, or one applied in part makes the history not linearizable. Every read of all the
accounts, and every node's copy at the end, must hold the opening total."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from harness.node_cluster import NodeCluster, open_cluster
from sim.linearizability import Arg, History, Kind, check
from trio.testing import MockClock

from trioraft.core.messages import EntryKind
from trioraft.kvstore.replicated import TRANSACTION
from trioraft.redis.limits import ClientLimits
from trioraft.redis.replies import NULL_ARRAY, OK, ErrorReply, Reply
from trioraft.redis.resp import decode_reply, encode
from trioraft.redis.server import ClientServer
from trioraft.redis.transaction import EXECABORT, QUEUED
from trioraft.runtime.stamps import unstamp

ACCOUNTS = (b"acct:0", b"acct:1", b"acct:2")
COUNTER = b"counter"
OPENING = 100


class Lost(Exception):
    """The connection's node went down: what was in flight is unknown."""


class Connection:
    """A client connection to one node's client server, over an in-memory stream."""

    def __init__(self, server: ClientServer, nursery: trio.Nursery) -> None:
        self._stream, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(_serve, server, theirs)
        self._buffer = b""

    async def call(self, *args: bytes) -> Reply:
        await self._stream.send_all(encode([*args]))
        while (decoded := decode_reply(self._buffer)) is None:
            with trio.move_on_after(30) as scope:
                data = await self._stream.receive_some(65536)
            if scope.cancelled_caught or not data:
                raise Lost()
            self._buffer += data
        reply, end = decoded
        self._buffer = self._buffer[end:]
        return reply

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _serve(server: ClientServer, stream: trio.abc.Stream) -> None:
    try:
        await server.converse(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


@attrs.define
class Workload:
    cluster: NodeCluster
    history: History
    rng: random.Random
    servers: dict[str, ClientServer] = attrs.Factory(dict)
    #: the sums of the accounts seen by each read of all of them
    sums: list[int] = attrs.Factory(list)
    #: EXECs that ran, and that did not (a watched key changed, or no leader)
    ran: int = 0
    aborted: int = 0

    def server(self, node_id: str) -> ClientServer:
        """The client server of the running node `node_id` (a new one after a restart)."""
        node = next(node for node in self.cluster.nodes if node.id == node_id)
        server = self.servers.get(node_id)
        if server is None or server.node is not node:
            server = self.servers[node_id] = ClientServer(node, node.state, ClientLimits())
        return server

    async def client(self, name: int, operations: int, nursery: trio.Nursery) -> None:
        """Run `operations` operations, on a connection to a random running node, and
        on a new one whenever that node went down."""
        done = 0
        while done < operations:
            server = self.server(self.rng.choice(self.cluster.nodes).id)
            conn = Connection(server, nursery)
            try:
                while done < operations and server.node in self.cluster.nodes:
                    done += 1
                    await self.one(name, conn)
            except Lost:
                pass
            finally:
                await conn.aclose()

    async def one(self, name: int, conn: Connection) -> None:
        roll = self.rng.random()
        if roll < 0.5:
            await self.transfer(name, conn)
        elif roll < 0.65:
            await self.count(name, conn)
        elif roll < 0.8:
            await self.exec(name, conn, (), self.moves(1))
        else:
            values = await self.read(name, conn, ACCOUNTS)
            if values is not None:
                self.sums.append(sum(int(value) for value in values if isinstance(value, bytes)))

    def moves(self, amount: int) -> list[Command]:
        """Move `amount` from one account to another."""
        source, target = self.rng.sample(ACCOUNTS, 2)
        return [(source, "incr", (-amount,)), (target, "incr", (amount,))]

    async def transfer(self, name: int, conn: Connection) -> None:
        """WATCH both accounts, read them, move units between them if they still hold."""
        commands = self.moves(self.rng.randint(1, 20))
        keys = keys_of(commands)
        if isinstance(await conn.call(b"WATCH", *keys), ErrorReply):
            return
        seen = await self.read(name, conn, keys)
        if seen is None:
            await conn.call(b"UNWATCH")
            return
        await self.exec(name, conn, tuple(zip(keys, seen, strict=True)), commands)

    async def count(self, name: int, conn: Connection) -> None:
        """WATCH the counter, read it, set it to one more."""
        if isinstance(await conn.call(b"WATCH", COUNTER), ErrorReply):
            return
        seen = await self.read(name, conn, (COUNTER,))
        if seen is None:
            await conn.call(b"UNWATCH")
            return
        [value] = seen
        assert value is None or isinstance(value, bytes)
        following = b"%d" % (int(value or 0) + 1)
        await self.exec(name, conn, ((COUNTER, value),), [(COUNTER, "set", (following,))])

    async def read(self, name: int, conn: Connection, keys: Sequence[bytes]) -> list[Reply] | None:
        """MGET: an atomic read of its keys (None when it failed: a read changes nothing)."""
        gets = tuple((key, "get", ()) for key in keys)
        operation = self.history.invoke(
            name, tuple(keys), Kind.TRANSACTION, (tuple(keys), (), gets)
        )
        reply = await conn.call(b"MGET", *keys)
        if not isinstance(reply, list):
            self.history.fail(operation)
            return None
        self.history.complete(operation, tuple(reply))
        return reply

    async def exec(
        self,
        name: int,
        conn: Connection,
        reads: tuple[tuple[bytes, Reply], ...],
        commands: list[Command],
    ) -> None:
        """MULTI, the commands, EXEC: one operation from EXEC's call to its reply."""
        assert await conn.call(b"MULTI") == OK
        for key, kind, args in commands:
            value = b"%d" % args[0] if kind == "incr" else args[0]
            assert isinstance(value, bytes)
            command = b"INCRBY" if kind == "incr" else b"SET"
            assert await conn.call(command, key, value) == QUEUED
        keys = keys_of(commands)
        operation = self.history.invoke(
            name, keys, Kind.TRANSACTION, (keys, reads, tuple(commands))
        )
        try:
            reply = await conn.call(b"EXEC")
        except Lost:
            self.history.unknown(operation)
            raise
        if isinstance(reply, list):
            self.ran += 1
            self.history.complete(operation, tuple(reply))
        elif isinstance(reply, ErrorReply) and reply.text.startswith("TIMEOUT"):
            self.history.unknown(operation)
        else:  # the null array (a watched key changed), -CLUSTERDOWN, -TRYAGAIN: nothing ran
            assert reply == NULL_ARRAY or isinstance(reply, ErrorReply), reply
            self.aborted += 1
            self.history.fail(operation)


Command = tuple[bytes, str, tuple[Arg, ...]]


def keys_of(commands: Sequence[Command]) -> tuple[bytes, ...]:
    return tuple(dict.fromkeys(key for key, _, _ in commands))


async def nemesis(cluster: NodeCluster, rng: random.Random) -> None:
    """Cut off the leader, crash a node, or heal and restart: one node at most is out."""
    whole = True
    while True:
        await trio.sleep(rng.uniform(0.5, 1.5))
        roll = rng.random()
        leaders = cluster.leaders()
        if roll < 0.35 and whole and leaders:
            cluster.network.isolate(leaders[0].id)
            whole = False
        elif roll < 0.7 and whole:
            await cluster.crash(rng.choice(cluster.nodes).id)
            whole = False
        else:
            await heal(cluster)
            whole = True


async def heal(cluster: NodeCluster) -> None:
    cluster.network.heal()
    running = {node.id for node in cluster.nodes}
    for node_id in cluster.ids:
        if node_id not in running:
            await cluster.start(node_id)


async def run_workload(
    root: Path, seed: int, clients: int, operations: int, faults: bool
) -> Workload:
    rng = random.Random(seed)
    async with open_cluster(root, seed=seed) as cluster, trio.open_nursery() as nursery:
        leader = await cluster.wait_for_leader()
        workload = Workload(cluster, History(trio.current_time), rng)
        opening = Connection(workload.server(leader.id), nursery)
        await workload.exec(0, opening, (), [(key, "set", (b"%d" % OPENING,)) for key in ACCOUNTS])
        assert workload.ran == 1
        if faults:
            nursery.start_soon(nemesis, cluster, rng)
        async with trio.open_nursery() as running:
            for name in range(1, clients + 1):
                running.start_soon(workload.client, name, operations, nursery)
        nursery.cancel_scope.cancel()
        await heal(cluster)
        leader = await cluster.wait_for_leader()
        # every write whose client gave up has taken effect or never will by now
        await trio.sleep(10)
        async with trio.open_nursery() as final:
            values = await workload.read(0, Connection(workload.server(leader.id), final), ACCOUNTS)
            final.cancel_scope.cancel()
        assert values is not None
        await cluster.wait_converged()
        for node in cluster.nodes:
            copy = node.state.store.read([b"MGET", *ACCOUNTS], node.time_ms())
            assert isinstance(copy, list)
            assert sum(int(value) for value in copy if isinstance(value, bytes)) == OPENING * 3
        log = leader.core.log
        entries = log.slice(log.first_index, log.last_index + 1)
        in_log = sum(
            1
            for entry in entries
            if entry.kind is EntryKind.COMMAND and TRANSACTION in unstamp(entry.data)[1][:16]
        )
        assert in_log >= workload.ran
    return workload


def judge(workload: Workload) -> None:
    assert set(workload.sums) <= {OPENING * 3}, workload.sums
    result = check(workload.history, key_budget=60)
    assert result.ok, result.explain()


async def test_transactions_under_faults_are_linearizable_and_conserve_the_total(
    clock: MockClock, tmp_path: Path
) -> None:
    workload = await run_workload(tmp_path, seed=1, clients=5, operations=20, faults=True)
    assert workload.ran > 20 and workload.aborted > 0
    judge(workload)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
async def test_longer_runs_of_transactions_under_faults(
    clock: MockClock, tmp_path: Path, seed: int
) -> None:
    workload = await run_workload(tmp_path, seed, clients=8, operations=80, faults=True)
    judge(workload)


async def exec_reply(conn: Connection, *commands: tuple[bytes, ...]) -> Reply:
    assert await conn.call(b"MULTI") == OK
    for command in commands:
        assert await conn.call(*command) == QUEUED
    return await conn.call(b"EXEC")


async def test_exec_answers_one_error_for_the_whole_transaction(
    clock: MockClock, tmp_path: Path
) -> None:
    """Without a leader, EXEC answers -CLUSTERDOWN (nothing applied); a leader cut off
    after proposing answers -TIMEOUT, and the transaction is then found applied whole or
    not at all on every node."""
    moves = ((b"INCRBY", ACCOUNTS[0], b"-5"), (b"INCRBY", ACCOUNTS[1], b"5"))
    async with open_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
        leader = await cluster.wait_for_leader()
        follower = next(node for node in cluster.nodes if node is not leader)
        servers = {
            node.id: ClientServer(node, node.state, ClientLimits()) for node in cluster.nodes
        }
        to_leader = Connection(servers[leader.id], nursery)
        assert await exec_reply(to_leader, (b"MSET", ACCOUNTS[0], b"100", ACCOUNTS[1], b"0")) == [
            OK
        ]
        to_follower = Connection(servers[follower.id], nursery)
        cluster.network.isolate(follower.id)
        await trio.sleep(3)  # an election timeout: it knows of no leader
        reply = await exec_reply(to_follower, *moves)
        assert isinstance(reply, ErrorReply) and reply.text.startswith("CLUSTERDOWN"), reply
        assert isinstance(await to_follower.call(b"WATCH", ACCOUNTS[0]), ErrorReply)
        cluster.network.heal()
        leader = await cluster.wait_for_leader()
        to_leader = Connection(ClientServer(leader, leader.state, ClientLimits()), nursery)
        cluster.network.isolate(leader.id)
        reply = await exec_reply(to_leader, *moves)
        assert isinstance(reply, ErrorReply) and reply.text.startswith("TIMEOUT"), reply
        cluster.network.heal()
        await cluster.wait_for_leader()
        await trio.sleep(1)
        await cluster.wait_converged()
        for node in cluster.nodes:
            records = dict(node.state.store.records())
            first, second = records[ACCOUNTS[0]], records[ACCOUNTS[1]]
            assert (first[0], second[0]) in {(b"100", b"0"), (b"95", b"5")}
            assert first[1] == second[1]  # both written by the same entry
        nursery.cancel_scope.cancel()


async def test_a_transaction_past_the_limits_is_discarded(clock: MockClock, tmp_path: Path) -> None:
    limits = ClientLimits(max_transaction_commands=2, max_transaction_bytes=30)
    async with open_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
        leader = await cluster.wait_for_leader()
        follower = next(node for node in cluster.nodes if node is not leader)
        conn = Connection(ClientServer(follower, follower.state, limits), nursery)
        too_many = ErrorReply(
            "ERR transaction too large: more than 2 commands queued "
            "(limits.max_transaction_commands)"
        )
        assert await conn.call(b"MULTI") == OK
        assert [await conn.call(b"INCR", b"n") for _ in range(3)] == [QUEUED, QUEUED, too_many]
        assert await conn.call(b"EXEC") == EXECABORT
        # the watched keys count towards the bytes
        assert await conn.call(b"WATCH", b"k" * 20) == OK
        assert await conn.call(b"MULTI") == OK
        assert await conn.call(b"SET", b"a", b"0123456") == ErrorReply(
            "ERR transaction too large: more than 30 bytes queued (limits.max_transaction_bytes)"
        )
        assert await conn.call(b"EXEC") == EXECABORT
        assert await conn.call(b"EXISTS", b"n", b"a") == 0
        nursery.cancel_scope.cancel()
