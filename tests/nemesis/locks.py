"""Lock clients of a fault run, and the checker of what they were granted.

Clients. `LockClients` runs `clients` Trio tasks that compete for `locks` locks, each
as docs/locks.md takes one, through a random node each time: `SET lock token NX PX ttl`
(a fresh random token), then the fencing token `RAFT.REVISION lock`, then `GET lock`,
which must still be the token for the fencing token to be the holder's. A holder then
works a little (up to half its TTL, or now and then past it, as a paused holder would),
writes to the protected resource with its fencing token, and releases the lock with
`DELEX lock IFEQ token` (or, now and then, lets it expire). A request without a reply
(a timeout, a connection lost) abandons the round: the lock, if taken, expires. The
resource (`Resource`) is in the harness, as a database row would be elsewhere: it
accepts a write only with a fencing token at least as high as any it accepted.

The checker (`check_locks`), from what the clients saw (`Grant`s, on one clock, the
harness's monotonic one):

- fencing tokens are unique per lock, and follow the grants in real time: a grant whose
  acknowledgement came before another's request has the lower token;
- no grant while an earlier holder's lock was still valid: the next grant's
  acknowledgement comes no earlier than the earlier holder's request plus its TTL (less
  `EXPIRY_MARGIN`), unless that holder had released it by then;
- the resource refused only holders that had been overtaken: a later grant, with a
  higher token, came before the refused write (so, with the checks above, the resource
  took the holders' writes in the order the locks were granted).
A grant whose `SET` had no reply is not a grant here (nobody knows its token's fate);
the lock it may have taken just expires, which the second check allows for.
"""

from __future__ import annotations

import itertools
import random
import secrets
import time
from collections.abc import Sequence

import attrs
import trio

from .client import Connection
from .workload import BROKEN, EXPIRY_MARGIN, ClientTasks, Target

#: the lock TTL (ms), and how long a holder may take past it now and then (as if paused)
LOCK_TTL_MS = 800
#: the share of holders that overstay their lock, and that let it expire unreleased
OVERSTAY = 0.1
FORGET = 0.2
#: pause between two rounds of one client (s)
ROUND_PAUSE = (0.0, 0.2)


@attrs.define
class Grant:
    """One lock granted to a client, with its fencing token."""

    lock: str
    client: int
    token: str
    fence: int
    #: when the SET was sent, and when its OK came (monotonic seconds)
    requested: float
    granted: float
    ttl: float
    #: when the holder sent its release (None: it let the lock expire)
    released: float | None = None


@attrs.define
class Resource:
    """The protected resource: it accepts a write only with a fencing token at least as
    high as the highest it accepted."""

    highest: dict[str, int] = attrs.Factory(dict)
    #: (lock, fence, when, accepted) in the order the writes came
    writes: list[tuple[str, int, float, bool]] = attrs.Factory(list)

    def write(self, lock: str, fence: int) -> bool:
        accepted = fence >= self.highest.get(lock, 0)
        if accepted:
            self.highest[lock] = fence
        self.writes.append((lock, fence, time.monotonic(), accepted))
        return accepted


class LockClients(ClientTasks):
    """Clients taking locks over real sockets; see the module docstring."""

    def __init__(
        self, targets: Sequence[Target], *, seed: int, clients: int, locks: int, timeout: float
    ) -> None:
        super().__init__(clients)
        self.targets = list(targets)
        self.seed = seed
        self.locks = [f"lock:{number}" for number in range(locks)]
        self.timeout = timeout
        self.grants: list[Grant] = []
        self.resource = Resource()
        #: rounds that ended without a reply to some request
        self.abandoned = 0

    async def _client(self, number: int) -> None:
        rng = random.Random(f"{self.seed}/lock/{number}")
        while not self.stopping.is_set():
            target, lock = rng.choice(self.targets), rng.choice(self.locks)
            try:
                with trio.fail_after(self.timeout):
                    connection = await Connection.open(target.host, target.port)
            except (*BROKEN, trio.TooSlowError):
                await trio.sleep(0.05)
                continue
            try:
                await self._round(rng, number, lock, connection)
            except (*BROKEN, ValueError, trio.TooSlowError):
                self.abandoned += 1
            finally:
                await connection.aclose()
            await trio.sleep(rng.uniform(*ROUND_PAUSE))

    async def _call(self, connection: Connection, *args: str | int) -> object:
        with trio.fail_after(self.timeout):
            return await connection.call(*args)

    async def _round(
        self, rng: random.Random, number: int, lock: str, connection: Connection
    ) -> None:
        token = secrets.token_hex(8)
        requested = time.monotonic()
        taken = await self._call(connection, "SET", lock, token, "NX", "PX", LOCK_TTL_MS)
        if taken != "OK":
            return  # held by someone else, or refused (an error reply): no grant
        granted = time.monotonic()
        fence = await self._call(connection, "RAFT.REVISION", lock)
        if await self._call(connection, "GET", lock) != token.encode() or not isinstance(
            fence, int
        ):
            return  # lost already: the revision read may be another holder's
        grant = Grant(lock, number, token, fence, requested, granted, LOCK_TTL_MS / 1000)
        self.grants.append(grant)
        overstay = rng.random() < OVERSTAY
        work = grant.ttl * (rng.uniform(1.0, 1.5) if overstay else rng.uniform(0, 0.5))
        await trio.sleep(work)
        self.resource.write(lock, fence)
        if rng.random() >= FORGET:
            grant.released = time.monotonic()
            await self._call(connection, "DELEX", lock, "IFEQ", token)


def check_locks(grants: Sequence[Grant], resource: Resource) -> list[str]:
    """What went wrong (see the module docstring); empty when nothing did."""
    problems: list[str] = []
    by_lock: dict[str, list[Grant]] = {}
    for grant in grants:
        by_lock.setdefault(grant.lock, []).append(grant)
    for lock, held in by_lock.items():
        held.sort(key=lambda grant: grant.fence)
        fences = [grant.fence for grant in held]
        if len(set(fences)) != len(fences):
            problems.append(f"{lock}: two grants share a fencing token: {fences}")
        for earlier, later in itertools.pairwise(held):
            if later.granted < earlier.requested:
                problems.append(
                    f"{lock}: fencing token {later.fence} was granted at {later.granted:.3f}, "
                    f"before token {earlier.fence} was asked for at {earlier.requested:.3f}"
                )
            valid_until = earlier.requested + earlier.ttl - EXPIRY_MARGIN
            if earlier.released is not None:
                valid_until = min(valid_until, earlier.released)
            if later.granted < valid_until:
                problems.append(
                    f"{lock}: granted to client {later.client} at {later.granted:.3f} while "
                    f"client {earlier.client}'s lock (token {earlier.fence}) was valid "
                    f"until {valid_until:.3f}"
                )
    for lock, fence, when, accepted in resource.writes:
        overtaken = any(
            grant.fence > fence and grant.granted < when for grant in by_lock.get(lock, [])
        )
        if not accepted and not overtaken:
            problems.append(
                f"{lock}: the resource refused token {fence} at {when:.3f}, though no later "
                "grant had come by then"
            )
    return problems


def lock_summary(clients: LockClients, problems: Sequence[str]) -> dict[str, object]:
    writes = clients.resource.writes
    return {
        "grants": len(clients.grants),
        "released": sum(1 for grant in clients.grants if grant.released is not None),
        "abandoned_rounds": clients.abandoned,
        "resource_writes": len(writes),
        "resource_refusals": sum(1 for *_, accepted in writes if not accepted),
        "problems": list(problems),
    }
