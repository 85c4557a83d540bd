"""Membership changes of a process cluster, through RAFT.MEMBER, for tests and fault runs.

Each change is driven to its condition, not trusted to one reply: `remove_member` asks
until the leader's member list (asked through any of the given nodes) no longer holds
the node, `add_member` until it holds it, `wait_voter` until it shows it as a voter. A
request that times out, meets an election or another change in flight (the cluster
takes one at a time) is simply asked again; a refusal that asking again cannot cure
(an address in use, a bad id) fails at once. Every wait is bounded.

`start_founders` starts the first nodes of a cluster as a cluster of their own, the rest
to be added later; `fresh_node` writes the config of a new node on new loopback ports (a
new address), with an empty data dir, listing the given members and itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from harness.polling import wait_until
from harness.ports import free_ports
from harness.process_cluster import ProcessCluster
from harness.process_node import Node
from harness.resp_client import Error
from trioraft.ops.config import Member, load_config, render_config
from trioraft.transport.addresses import HostPort

#: how long a change, or a promotion, may take: a promotion waits for the newcomer to
#: start (a cold Python start, tens of seconds at high load) and catch up
CHANGE_SECONDS = 90.0
#: how long one RAFT.MEMBER request may take
REQUEST_SECONDS = 10.0
#: refusals that pass: an election, a change still in flight, a leader without a commit
#: of its own term yet (the words of docs/operations.md and docs/protocol.md)
PASSING = ("CLUSTERDOWN", "TIMEOUT", "TRYAGAIN", "one change at a time", "retry shortly")


def member_roles(nodes: Sequence[Node]) -> dict[str, str]:
    """id -> role (`voter` or `learner`) as the leader lists them, asked through the
    first of `nodes` that answers; OSError when none does."""
    problems = []
    for node in nodes:
        try:
            reply = node.call("RAFT.MEMBER", "LIST", timeout=REQUEST_SECONDS)
        except (OSError, ValueError) as exc:
            problems.append(f"{node.id}: {exc}")
            continue
        if isinstance(reply, list):
            rows = [_row(item) for item in reply]
            return {row["id"]: row["role"] for row in rows}
        problems.append(f"{node.id}: {reply!r}")
    raise ConnectionError(f"no member list: {'; '.join(problems)}")


def _row(item: object) -> dict[str, str]:
    assert isinstance(item, list), f"a member row is a map, not {item!r}"
    fields = iter(item)
    return {_text(key): _text(value) for key, value in zip(fields, fields, strict=True)}


def _text(word: object) -> str:
    assert isinstance(word, bytes), f"a member row holds bulk strings, not {word!r}"
    return word.decode()


def remove_member(nodes: Sequence[Node], node_id: str, timeout: float = CHANGE_SECONDS) -> None:
    """Remove `node_id`, asking through `nodes` until the leader no longer lists it."""
    _change(nodes, ("REMOVE", node_id), lambda roles: node_id not in roles, timeout)


def add_member(nodes: Sequence[Node], newcomer: Node, timeout: float = CHANGE_SECONDS) -> None:
    """Add `newcomer` (as a learner) with its addresses, until the leader lists it."""
    address = f"{newcomer.host}:{newcomer.peer_port}", f"{newcomer.host}:{newcomer.client_port}"
    _change(nodes, ("ADD", newcomer.id, *address), lambda roles: newcomer.id in roles, timeout)


def wait_voter(nodes: Sequence[Node], node_id: str, timeout: float = CHANGE_SECONDS) -> None:
    """Wait until the leader lists `node_id` as a voter (promoted once caught up)."""
    wait_until(
        lambda: member_roles(nodes).get(node_id) == "voter",
        timeout,
        f"{node_id} a voter",
        interval=0.05,
    )


def _change(
    nodes: Sequence[Node],
    request: tuple[str, ...],
    done: Callable[[dict[str, str]], bool],
    timeout: float,
) -> None:
    asked = itertools.cycle(nodes)

    def made() -> bool:
        if done(member_roles(nodes)):
            return True
        node = next(asked)
        reply = node.call("RAFT.MEMBER", *request, timeout=REQUEST_SECONDS)
        if isinstance(reply, Error) and not any(word in reply.text for word in PASSING):
            raise AssertionError(f"RAFT.MEMBER {' '.join(request)} on {node.id}: -{reply.text}")
        return False

    wait_until(made, timeout, f"RAFT.MEMBER {' '.join(request)} in effect", interval=0.1)


def fresh_node(model: Node, node_id: str, members: Sequence[Node], root: Path) -> Node:
    """A new node (not started) like `model` but named `node_id`, on two new loopback
    ports, with an empty data dir under `root`, whose config lists `members` and itself."""
    config = load_config(model.config_path)
    client_port, peer_port = free_ports(2)
    listed = [
        Member(
            id=node.id,
            peer_addr=HostPort(node.host, node.peer_port),
            client_addr=HostPort(node.host, node.client_port),
        )
        for node in members
    ]
    own = Member(
        id=node_id,
        peer_addr=HostPort(model.host, peer_port),
        client_addr=HostPort(model.host, client_port),
    )
    new = attrs.evolve(
        config,
        node_id=node_id,
        data_dir=root / "data" / node_id,
        client_addr=own.client_addr,
        peer_addr=own.peer_addr,
        members=(*listed, own),
    )
    return Node.configured(
        new, root, model.log_path.parent, password=model.password, host=model.host
    )


def start_founders(cluster: ProcessCluster, count: int) -> list[Node]:
    """Start the first `count` nodes as a cluster of their own (their configs rewritten
    to list only them; the other nodes' configs still list everyone, so a newcomer knows
    where the cluster is) and wait until they serve."""
    founders = cluster.nodes[:count]
    ids = {node.id for node in founders}
    for node in founders:
        config = load_config(node.config_path)
        members = tuple(member for member in config.members if member.id in ids)
        node.config_path.write_text(render_config(attrs.evolve(config, members=members)))
        node.start()
    for node in founders:
        node.wait_serving()
    return founders
