"""A loopback WebSocket server that speaks one venue's format, for the client tests.

Per connection it reads the subscribe requests and checks them against what the venue module
says a client must send (a wrong one gets the venue's error and a policy-violation close), sends
the venue's acks, then plays that connection's script: recorded trade messages by index,
heartbeats, protocol pings, garbage, sequence-number skips, sleeps, and an abrupt drop (TCP abort,
no close frame) or a close.  A reader task answers the client's application pings the way the
venue does.  Everything the server sees is recorded in ``conns`` for the assertions.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable

import orjson
from websockets.asyncio.server import ServerConnection, serve

Action = tuple  # ("trades", start, stop[, interval_s]) | ("heartbeat",) | ("ping",) | ("expect", text, timeout_s)
#                 | ("send", bytes) | ("skip_seq", n) | ("sleep", s) | ("drop",) | ("close", code)


@dataclass
class Format:
    """How one venue talks, as far as the test server needs."""

    venue: str
    symbols: list[str]
    options: dict
    messages: list[bytes]  # the recorded trade messages, one or more trades each
    ids: list[list[str]]  # trade ids carried by each message
    subscribe: list[str]  # what a client must send
    acks: Callable[[list[dict]], list[bytes]]
    heartbeat: bytes | None = None
    answer: Callable[[bytes], bytes | None] = lambda raw: None  # reply to a client's app message
    stamp: Callable[[bytes, int], bytes] = lambda raw, seq: raw  # set a per-connection sequence number
    resubscribe_replay: Callable[[list[bytes]], list[bytes]] = lambda sent: []  # what the venue replays on subscribe
    initial_ids: list[str] = field(default_factory=list)  # trade ids the first replay carries


@dataclass
class ConnRecord:
    opened: float
    subscribe_ok: bool = False
    received: list[bytes] = field(default_factory=list)
    pongs: int = 0
    seq: int = 0  # messages numbered so far (for venues with per-connection sequence numbers)
    closed: float | None = None
    close_code: int | None = None  # the code the client sent, if it closed


class VenueServer:
    def __init__(self, fmt: Format, scripts: list[list[Action]], *, refuse_first: int = 0):
        self.fmt = fmt
        self.scripts = scripts
        self.refuse_first = refuse_first
        self.attempts: list[float] = []  # monotonic time of every handshake attempt, refused ones too
        self.conns: list[ConnRecord] = []
        self.sent_trades: list[bytes] = []  # every trade message sent, for the venue's replay on resubscribe
        self.url = ""
        self._server = None

    async def __aenter__(self) -> "VenueServer":
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request,
                                   ping_interval=None, compression=None)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request):
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.refuse_first:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "try later\n")
        return None

    async def _reader(self, ws: ServerConnection, rec: ConnRecord, inbox: asyncio.Queue) -> None:
        async for raw in ws:
            raw = raw.encode() if isinstance(raw, str) else raw
            rec.received.append(raw)
            reply = self.fmt.answer(raw)
            if reply is not None:
                await ws.send(reply.decode())
            await inbox.put(raw)

    async def _handler(self, ws: ServerConnection) -> None:
        fmt = self.fmt
        rec = ConnRecord(opened=time.monotonic())
        self.conns.append(rec)
        script = self.scripts[min(len(self.conns), len(self.scripts)) - 1]

        async def send(raw: bytes) -> None:
            await ws.send(fmt.stamp(raw, rec.seq).decode())
            rec.seq += 1

        try:
            subs = []
            for _ in fmt.subscribe:
                raw = await asyncio.wait_for(ws.recv(), 2)
                rec.received.append(raw.encode() if isinstance(raw, str) else raw)
                subs.append(orjson.loads(raw))
            rec.subscribe_ok = subs == [orjson.loads(s) for s in fmt.subscribe]
            if not rec.subscribe_ok:
                await ws.send('{"error": "bad subscribe"}')
                await ws.close(1008)
                return
            for ack in fmt.acks(subs):
                await send(ack)
            for raw in fmt.resubscribe_replay(self.sent_trades):
                await send(raw)
            inbox: asyncio.Queue = asyncio.Queue()
            reader = asyncio.create_task(self._reader(ws, rec, inbox))
            try:
                for action in script:
                    if await self._act(ws, action, send, rec, inbox):
                        return
                await ws.wait_closed()
            finally:
                reader.cancel()
        except Exception:  # the client went away mid-script: that is what some tests do
            pass
        finally:
            rec.closed = time.monotonic()
            rcvd = ws.protocol.close_rcvd
            rec.close_code = rcvd.code if rcvd is not None else None

    async def _act(self, ws, action: Action, send, rec: ConnRecord, inbox: asyncio.Queue) -> bool:
        """Play one action; True when the connection is over."""
        op = action[0]
        if op == "trades":  # ("trades", start, stop[, seconds between messages])
            for raw in self.fmt.messages[action[1]:action[2]]:
                await send(raw)
                self.sent_trades.append(raw)
                if len(action) > 3:
                    await asyncio.sleep(action[3])
        elif op == "heartbeat":
            await send(self.fmt.heartbeat)
        elif op == "send":
            await send(action[1])
        elif op == "skip_seq":  # numbers lost on the way: the next message jumps ahead
            rec.seq += action[1]
        elif op == "ping":
            await asyncio.wait_for(await ws.ping(), 2)
            rec.pongs += 1
        elif op == "expect":
            while (await asyncio.wait_for(inbox.get(), action[2])) != action[1]:
                pass
        elif op == "sleep":  # quiet, but notice when the client closes meanwhile
            try:
                await asyncio.wait_for(ws.wait_closed(), action[1])
                return True
            except TimeoutError:
                pass
        elif op == "drop":
            ws.transport.abort()
            return True
        elif op == "close":
            await ws.close(action[1])
            return True
        else:
            raise ValueError(f"unknown action {action!r}")
        return False
