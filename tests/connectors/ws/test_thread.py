"""The threaded wrapper: items over a bounded queue to a synchronous consumer, clean close."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest

pytest.importorskip("websockets")

from connectors.ws import ThreadedFeed, WsClient  # noqa: E402

from .formats import FORMATS  # noqa: E402
from .test_client import CFG, ids_of  # noqa: E402
from .venue_server import VenueServer  # noqa: E402


class ServerThread:
    """The loopback venue server on an event loop of its own, for a synchronous test."""

    def __init__(self, fmt, scripts):
        self.server = VenueServer(fmt, scripts)
        self._started = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.__aenter__())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.__aexit__(None, None, None))

    def __enter__(self) -> VenueServer:
        self._thread.start()
        self._started.wait(5)
        return self.server

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def feed_ids(items) -> list[str]:
    return [t for kind, v in items if kind == "events" for t in v.column("trade_id").to_pylist()]


def test_slow_consumer_gets_every_trade_through_a_bounded_queue():
    fmt = FORMATS["okx"]()
    scripts = [[("trades", 0, 8), ("drop",)], [("trades", 6, 20)]]
    with ServerThread(fmt, scripts) as server:
        client = WsClient("OKX", fmt.symbols, url=server.url, config=replace(CFG, batch_rows=2))
        items = []
        with ThreadedFeed(client, maxsize=1) as feed:
            deadline = time.monotonic() + 5
            while len(feed_ids(items)) < 20 and time.monotonic() < deadline:
                item = feed.get(timeout=0.5)
                if item is not None:
                    items.append(item)
                    time.sleep(0.005)  # slower than the feed: the queue (size 1) stays full
        assert not feed._thread.is_alive()
    assert feed_ids(items) == ids_of(fmt, 0, 20)
    assert [v["kind"] for k, v in items if k == "gap"] == ["disconnect", "reconnect"]


def test_stop_then_drain_delivers_the_last_batch_and_ends():
    fmt = FORMATS["kraken"]()
    with ServerThread(fmt, [[("trades", 0, 5)]]) as server:
        client = WsClient("KRAKEN", fmt.symbols, url=server.url, config=replace(CFG, batch_ms=10_000))
        feed = ThreadedFeed(client).start()
        deadline = time.monotonic() + 5
        while client.stats.controls["data"] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert feed.poll() == []  # the rows wait in the batch: no time flush within 10 s
        feed.stop()
        items = list(feed)  # ends after the final flush
        assert feed.ended and feed.get(timeout=0.1) is None
        feed.close()
        assert server.conns[0].close_code == 1000
    assert feed_ids(items) == ids_of(fmt, 0, 5)


def test_a_failure_inside_the_thread_reaches_the_consumer(monkeypatch):
    fmt = FORMATS["okx"]()
    with ServerThread(fmt, [[("trades", 0, 3)]]) as server:
        client = WsClient("OKX", fmt.symbols, url=server.url, config=CFG)

        def broken_flush():
            raise RuntimeError("bug in the batch builder")

        monkeypatch.setattr(client.pipeline, "flush", broken_flush)
        with ThreadedFeed(client) as feed:
            with pytest.raises(RuntimeError, match="WebSocket feed OKX failed") as e:
                for _ in range(50):
                    feed.get(timeout=0.1)
            assert "bug in the batch builder" in str(e.value.__cause__)
