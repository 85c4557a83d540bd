"""The clients of a simulated run (`Workload`): which operation each issues, when, to which
node, through the log or through read_index, with a TTL or not, and when it gives up; and
how an operation ends, recorded in the history the linearizability check reads."""

from __future__ import annotations

import itertools
import random

from sim.cluster import Cluster
from sim.linearizability import History, Kind
from sim.nodes import Client, Op
from sim.plans import TICK
from sim.state_machine import FILLER, encode_command
from trioraft.core.errors import NotLeader, TransferInProgress
from trioraft.core.messages import NodeId


class Workload:
    def __init__(
        self,
        cluster: Cluster,
        ids: list[NodeId],
        client_rng: random.Random,
        clock_rng: random.Random,
    ) -> None:
        """Clients of `cluster`'s nodes, each sending first to one of `ids`; `clock_rng`
        draws the TTLs (expiry runs)."""
        self.cluster = cluster
        self.rng = client_rng
        self.clock_rng = clock_rng
        plan = cluster.plan
        self.keys = [b"k%d" % k for k in range(plan.keys)]
        self.clients = [Client(c, client_rng.choice(ids)) for c in range(plan.clients)]
        self.history = History(clock=lambda: float(cluster.now))
        #: clients issue new operations (until the run winds down)
        self.clients_on = True
        self.op_ids = itertools.count(1)

    def step(self) -> None:
        """Every client gives up on what timed out, or issues its next operation."""
        for client in self.clients:
            self._client_step(client)

    def _client_step(self, client: Client) -> None:
        op = client.op
        if op is not None:
            if op.deadline is not None and self.cluster.now >= op.deadline:
                if op.via_log:
                    self.end_unknown(op)
                else:
                    self.end_failed(op)  # a read that never answered had no effect
                client.target = self.rng.choice(self.cluster.nodes).id  # try someone else
            return
        if self.clients_on and self.cluster.now >= client.next_at:
            self._issue(client)

    def _issue(self, client: Client) -> None:
        cluster, r = self.cluster, self.rng
        profile = cluster.profile
        slot = r.randrange(len(self.keys))
        key = self.keys[slot]
        kind, args, via_log = client.choose(r, key, slot % 2 == 0, cluster.plan.reads)
        ttl = 0
        if kind is Kind.SET and slot % 2 == 1 and self.clock_rng.random() < profile.ttl:
            ttl = self.clock_rng.randint(20, 800)
        handle = self.history.invoke(client.id, key, kind, args)
        if ttl:
            # the value may vanish at one instant from now on, when its deletion commits
            self.history.invoke("expiry", key, Kind.EXPIRE, args)
        deadline = cluster.now + profile.op_timeout if cluster.faults else None
        op = Op(
            next(self.op_ids),
            client,
            handle,
            kind,
            key,
            args,
            via_log,
            deadline,
            not cluster.faults,
        )
        client.op = op
        node = cluster.by_id[client.target]
        core = node.core
        if core is None:
            self.end_failed(op)  # connection refused
            client.target = r.choice(cluster.nodes).id
            return
        node.dirty = True
        try:
            if via_log:
                command = encode_command(op.id, kind, key, (*args, ttl) if ttl else args)
                [(op.index, op.term)] = cluster.propose(node, core, [command])
                node.waiting.setdefault(op.index, []).append(op)
            else:
                committed = cluster.checker.committed
                op.floor, op.term_floor = len(committed) - 1, cluster.report.max_term
                core.read_index(op.id)
                node.reads[op.id] = op
        except NotLeader as e:
            self.end_failed(op)
            client.target = e.leader_id or r.choice(cluster.nodes).id
        except TransferInProgress:
            self.end_failed(op)

    def keep_log_moving(self) -> None:
        """Once clients stop, a proposal stranded past the end of a deposed leader's log
        would wait for ever for its index to be applied: while any is pending, propose
        fillers (a read of a key no client uses), as further traffic would."""
        cluster = self.cluster
        leader = cluster.leader()
        if leader is not None and any(c.op is not None and c.op.via_log for c in self.clients):
            node = cluster.by_id[leader]
            assert node.core is not None
            try:
                cluster.propose(node, node.core, [FILLER])
            except TransferInProgress:
                return
            node.dirty = True

    def pending(self) -> list[Op]:
        return [c.op for c in self.clients if c.op is not None]

    # --- how an operation ends -------------------------------------------------------------

    def _finish_op(self, op: Op) -> None:
        op.done = True
        client = op.client
        client.op = None
        client.next_at = self.cluster.now + self.rng.randrange(2 * TICK)

    def end_ok(self, op: Op, output: object) -> None:
        self._finish_op(op)
        self.history.complete(op.handle, output)
        self.cluster.report.ops_ok += 1
        op.client.saw(op, output)

    def end_failed(self, op: Op) -> None:
        if not op.done:
            self._finish_op(op)
            self.history.fail(op.handle)
            self.cluster.report.ops_failed += 1

    def end_unknown(self, op: Op) -> None:
        if op.done:
            return
        if op.issued_after_heal:
            self.cluster.fail(
                "liveness",
                f"operation {op.id} ({op.kind.value} {op.key!r}), issued "
                f"after healing, ended indeterminate",
            )
        self._finish_op(op)
        self.history.unknown(op.handle)
        self.cluster.report.ops_unknown += 1
