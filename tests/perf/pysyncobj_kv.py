"""One node of the PySyncObj reference that the benchmark matrix (matrix.py) measures
trioraft against: PySyncObj's replicated dict (`ReplDict`) behind a small RESP front, so
that `trioraft bench` drives it exactly as it drives trioraft and redis-server.

    python pysyncobj_kv.py --port CLIENT_PORT --node 127.0.0.1:PEER_PORT \\
        --partner 127.0.0.1:PEER_PORT2 --partner 127.0.0.1:PEER_PORT3

It runs under any Python that has the `pysyncobj` package, and imports nothing else
outside the standard library: pysyncobj is no dependency of trioraft, so it lives in a
virtualenv of its own (docs/performance.md says how).

What it answers, one connection per client, pipelined requests answered in order:

- `SET key value`: the dict's `set`, replicated through PySyncObj's log; `+OK` once this
  node applied it (PySyncObj's callback), or `-ERR pysyncobj failed: <code>`.
- `GET key`: this node's dict as it is, a local read (PySyncObj has no read barrier, so
  unlike trioraft's GET it may be stale on a follower or a deposed leader).
- `PING`, and `ROLE`: `leader` or `follower`, for the matrix to find the leader.

PySyncObj keeps its log in memory and never fsyncs: what it acknowledges is on no disk.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable

from pysyncobj import SyncObj, SyncObjConf  # type: ignore[import-not-found]
from pysyncobj.batteries import ReplDict  # type: ignore[import-not-found]

#: PySyncObj's `getStatus()["state"]` of a leader
LEADER = 2
OK = b"+OK\r\n"


def bulk(value: bytes | None) -> bytes:
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(value), value)


async def read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """The next request (a RESP array of bulk strings, or an inline line); None at EOF."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    args = []
    for _ in range(int(line[1:])):
        size = int((await reader.readline())[1:])
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


class Front:
    """The RESP front of one PySyncObj node."""

    def __init__(self, node: str, partners: list[str]) -> None:
        self.data = ReplDict()
        self.sync = SyncObj(
            node, partners, conf=SyncObjConf(appendEntriesUseBatch=False), consumers=[self.data]
        )

    def execute(self, args: list[bytes]) -> Awaitable[bytes]:
        """The reply to `args`, when it is ready."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()
        name = args[0].upper() if args else b""
        if name == b"SET" and len(args) == 3:

            def applied(result: object, error: int) -> None:
                text = OK if error == 0 else b"-ERR pysyncobj failed: %d\r\n" % error
                loop.call_soon_threadsafe(reply.set_result, text)

            self.data.set(args[1], args[2], callback=applied)
        elif name == b"GET" and len(args) == 2:
            reply.set_result(bulk(self.data.get(args[1])))
        elif name == b"PING":
            reply.set_result(b"+PONG\r\n")
        elif name == b"ROLE":
            leads = self.sync.getStatus()["state"] == LEADER
            reply.set_result(bulk(b"leader" if leads else b"follower"))
        else:
            reply.set_result(b"-ERR unknown command\r\n")
        return reply

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read requests as they come; a second task sends the replies in order."""
        pending: asyncio.Queue[Awaitable[bytes] | None] = asyncio.Queue()

        async def send_replies() -> None:
            while (reply := await pending.get()) is not None:
                writer.write(await reply)
                if pending.empty():
                    await writer.drain()

        sender = asyncio.create_task(send_replies())
        try:
            while (args := await read_command(reader)) is not None:
                pending.put_nowait(self.execute(args))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            pending.put_nowait(None)
            await sender
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the RESP port")
    parser.add_argument("--node", required=True, help="this node's PySyncObj address")
    parser.add_argument("--partner", action="append", default=[], help="another node's")
    args = parser.parse_args()
    front = Front(args.node, args.partner)
    server = await asyncio.start_server(front.serve, "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
