"""A resilient WebSocket client for one venue's public trade feed, as an async iterator of items.

``async for kind, value in WsClient("OKX", ["BTC-USDT"])`` yields

* ``("events", table)``: conformed, validated EVENT_SCHEMA rows, at most ``batch_rows`` per table
  and at most ``batch_ms`` old;
* ``("dead", table)``: DEAD_LETTER_SCHEMA rows (step id ``ws.<venue>``) for malformed messages,
  bad items and venue error replies;
* ``("gap", dict)``: the feed's own health, as data: ``kind`` is ``trade_id`` / ``sequence`` /
  ``out_of_order`` (numbering jumps, see ``_gaps``), ``connect_failed`` (an attempt failed),
  ``disconnect`` (a connection dropped: ``from`` its last message, ``retry_in_ms``), ``reconnect``
  (the window closed: ``from``, ``to`` = first message on the new connection, ``attempts``) or
  ``gave_up`` (``max_attempts`` consecutive failures; the iterator then ends).

Nothing received ever raises out of the client.  It reconnects with exponential backoff and
jitter (each delay drawn from ``[d·(1-jitter), d]``, ``d = min(max, initial·factorⁿ⁻¹)`` after n
consecutive failures; a connection that delivered trades, or stayed up ``stale_after_s``, resets
n), resubscribes, sends the venue's application ping when idle and reconnects when nothing at
all arrives for ``stale_after_s`` (a half-open TCP connection otherwise looks alive forever).
Time-bounded flushes happen while the consumer pulls (``ThreadedFeed`` always does).

:meth:`stop` ends it cleanly: close frame, last batch flushed, iteration over.  Cancelling the
consuming task (or ``aclose()``) also closes the socket, without the last flush.  Bugs are not
bad input: an exception from our own code still propagates.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, AsyncIterator

from ._message import Control
from ._pipeline import Item, Pipeline, Stats
from ._venues import venue_module


@dataclass(frozen=True)
class ClientConfig:
    batch_rows: int = 1000
    batch_ms: float = 100.0
    backoff_initial_ms: float = 500.0
    backoff_max_ms: float = 30_000.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    max_attempts: int | None = None  # consecutive failures before giving up; None: retry for ever
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    stale_after_s: float | None = None  # None: the venue's Heartbeat says
    ping_idle_s: float | None = None  # None: the venue's Heartbeat says
    protocol_ping_interval_s: float | None = 20.0  # websockets' own ping frames (None: off)
    protocol_ping_timeout_s: float | None = 20.0
    max_message_bytes: int = 4 << 20
    use_env_proxy: bool = True
    seed: int | None = None  # for the jitter: a test can make delays reproducible

    def __post_init__(self) -> None:
        positive = ("batch_rows", "batch_ms", "backoff_initial_ms", "backoff_max_ms", "open_timeout_s",
                    "close_timeout_s", "max_message_bytes")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive (got {getattr(self, name)!r})")
        for name in ("stale_after_s", "ping_idle_s", "protocol_ping_interval_s", "protocol_ping_timeout_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive or None (got {v!r})")
        if self.backoff_factor < 1:
            raise ValueError(f"backoff_factor must be >= 1 (got {self.backoff_factor})")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError(f"backoff_jitter must be within [0, 1] (got {self.backoff_jitter})")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None (got {self.max_attempts})")

    def backoff_ms(self, failures: int, rng: random.Random) -> float:
        """The delay before the next attempt after ``failures`` consecutive failures (>= 1)."""
        d = min(self.backoff_max_ms, self.backoff_initial_ms * self.backoff_factor ** max(failures - 1, 0))
        return d * (1.0 - self.backoff_jitter * rng.random())


class WsClient:
    def __init__(self, venue: str | ModuleType, symbols: list[str], *, url: str | None = None,
                 options: dict[str, Any] | None = None, config: ClientConfig = ClientConfig(), src: int = 0):
        self.module = venue_module(venue)
        if not symbols:
            raise ValueError("symbols: subscribe to at least one symbol")
        options = dict(options or {})
        self.url = url or self.module.endpoint(**options)
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss:// (got {self.url!r})")
        self.venue = self.module.VENUE
        self.symbols = list(symbols)
        self.subscribe = self.module.subscribe_messages(self.symbols, **options)  # bad options raise here
        self.config = config
        hb = self.module.HEARTBEAT
        self.stale_after_s = config.stale_after_s or hb.stale_after_s
        self.ping_message = hb.ping_message
        self.ping_idle_s = config.ping_idle_s or hb.ping_idle_s
        self.pipeline = Pipeline(self.module, source=self.url, src=src, batch_rows=config.batch_rows)
        self._rng = random.Random(config.seed)
        self._stopping = asyncio.Event()
        self._ws = None

    @property
    def stats(self) -> Stats:
        return self.pipeline.stats

    def stop(self) -> None:
        """Ask for a clean end (from the client's event loop): close frame, last flush, iteration ends."""
        self._stopping.set()
        if self._ws is not None:
            asyncio.ensure_future(self._ws.close())

    def __aiter__(self) -> AsyncIterator[Item]:
        return self.items()

    def _connect(self):
        from websockets.asyncio.client import connect  # imported here: decoders work without websockets

        c = self.config
        return connect(self.url, open_timeout=c.open_timeout_s, close_timeout=c.close_timeout_s,
                       ping_interval=c.protocol_ping_interval_s, ping_timeout=c.protocol_ping_timeout_s,
                       max_size=c.max_message_bytes, proxy=True if c.use_env_proxy else None, compression=None)

    async def _pause(self, delay_ms: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay_ms / 1000)
        except TimeoutError:
            pass

    def _failed(self, failures: int, info: dict) -> list[Item]:
        """A gap item for a failure, with the delay before the next attempt, or gave_up."""
        out: list[Item] = [("gap", info)]
        limit = self.config.max_attempts
        if limit is not None and failures >= limit:
            out.append(("gap", {"kind": "gave_up", "venue": self.venue, "attempts": failures, "recv_ts": time.time_ns()}))
        else:
            info["retry_in_ms"] = self.config.backoff_ms(failures, self._rng)
        return out

    async def items(self) -> AsyncIterator[Item]:
        from websockets.exceptions import ConnectionClosed

        p, cfg = self.pipeline, self.config
        failures = 0
        down_since: int | None = None  # when the feed went down; None while up
        try:
            while not self._stopping.is_set():
                try:
                    ws = await self._connect()
                except Exception as e:  # refused, DNS, TLS, HTTP status, handshake timeout: all retried
                    failures += 1
                    p.stats.connect_failures += 1
                    out = self._failed(failures, {"kind": "connect_failed", "venue": self.venue, "attempt": failures,
                                                  "reason": f"{type(e).__name__}: {e}", "recv_ts": time.time_ns()})
                    for item in out:
                        yield item
                    if "retry_in_ms" not in out[0][1]:
                        return
                    await self._pause(out[0][1]["retry_in_ms"])
                    continue
                self._ws = ws
                conn = p.new_connection()
                n, productive, reason = 0, False, "stopped"
                last_recv_ns = time.time_ns()
                opened = last_recv = last_ping = time.monotonic()
                try:
                    for m in self.subscribe:
                        await ws.send(m)
                    while not self._stopping.is_set():
                        now = time.monotonic()
                        due = [last_recv + self.stale_after_s]
                        if self.ping_message:
                            due.append(max(last_recv, last_ping) + self.ping_idle_s)
                        if p.builder.first_added is not None:
                            due.append(p.builder.first_added + cfg.batch_ms / 1000)
                        try:
                            async with asyncio.timeout(max(min(due) - now, 0)):
                                raw = await ws.recv(decode=False)
                        except TimeoutError:  # a timer is due: flush, ping, or give up on a silent socket
                            now = time.monotonic()
                            first = p.builder.first_added
                            if first is not None and now - first >= cfg.batch_ms / 1000:
                                for item in p.flush():
                                    yield item
                            if now - last_recv >= self.stale_after_s:
                                reason = f"stale: no message for {self.stale_after_s:g} s"
                                break
                            if self.ping_message and now - max(last_recv, last_ping) >= self.ping_idle_s:
                                await ws.send(self.ping_message)
                                last_ping = now
                                p.stats.pings_sent += 1
                            continue
                        last_recv_ns, last_recv = time.time_ns(), time.monotonic()
                        n += 1
                        if n == 1 and down_since is not None:
                            yield ("gap", {"kind": "reconnect", "venue": self.venue, "connection": conn,
                                           "from": down_since, "to": last_recv_ns, "attempts": failures,
                                           "recv_ts": last_recv_ns})
                            down_since = None
                        msg, out = p.message(raw, last_recv_ns, f"{conn}:{n}")
                        if msg.reply is not None:
                            await ws.send(msg.reply)
                        if msg.control is Control.DATA and not productive:
                            productive, failures = True, 0
                        for item in out:
                            yield item
                        first = p.builder.first_added  # under steady traffic recv never times out:
                        if first is not None and time.monotonic() - first >= cfg.batch_ms / 1000:  # age it here
                            for item in p.flush():
                                yield item
                except ConnectionClosed as e:
                    reason = f"connection closed: {e}"
                finally:
                    self._ws = None
                    await ws.close()  # sends the close frame if still open; bounded by close_timeout
                for item in p.flush():
                    yield item
                if self._stopping.is_set():
                    break
                if not productive and time.monotonic() - opened < self.stale_after_s:
                    failures += 1  # a connection that never worked: keep backing off
                else:
                    failures = 1
                p.stats.disconnects += 1
                down_since = down_since or last_recv_ns
                out = self._failed(failures, {"kind": "disconnect", "venue": self.venue, "connection": conn,
                                              "attempt": failures, "reason": reason, "from": last_recv_ns,
                                              "recv_ts": time.time_ns()})
                for item in out:
                    yield item
                if "retry_in_ms" not in out[0][1]:
                    return
                await self._pause(out[0][1]["retry_in_ms"])
        finally:
            if self._ws is not None:  # cancelled mid-session
                await self._ws.close()
                self._ws = None
