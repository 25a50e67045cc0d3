"""The daemon with all four source kinds at once, a scripted market arriving through them.

The platforms' drop copies come over FIX sessions (HKVATP and OVSAFF initiators on loopback),
the reference venue's trades as canonical JSON on Kafka (librdkafka's mock cluster), its
quotes as a tailed JSONL file, and Binance's public trades over a local WebSocket server
speaking Binance's format.  Each transport also carries bad input.  The market holds a
cross-platform wash trade and a price dislocation (``labels.json``): both must be alerted
while the daemon runs, nothing else, and every bad message must land in dead letters.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading

import orjson
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from connectors.fix.initiator import FixInitiator, bodies_from_drop_copy
from replay.evaluate import alerts_from_db, load_labels, score
from replay.scenario import generate
from surveil.schemas import to_rows
from tests.connectors.ws.formats import binance_format
from tests.connectors.ws.venue_server import VenueServer
from tests.daemon.harness import Daemon, free_port, http_get, metric, query, wait_until, write_config


@pytest.fixture
def venue_server():
    fmt = binance_format()
    started, stop = threading.Event(), threading.Event()
    box = {}

    def serve():
        async def main():
            script = [("trades", 0, 10), ("send", b"{oops"), ("trades", 10, len(fmt.messages)), ("sleep", 600)]
            async with VenueServer(fmt, [script]) as server:
                box["url"] = server.url
                started.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    started.wait(10)
    yield fmt, box["url"]
    stop.set()
    t.join(5)


def test_four_transports_one_market_alerts_while_running(tmp_path, venue_server):
    fmt, ws_url = venue_server
    m = tmp_path / "m"
    generate(m, seed=5, minutes=2, events_per_second=300, formats=("canonical", "fix"))
    refx = pq.read_table(m / "canonical" / "REFX.parquet")

    # Kafka: REFX trades, one canonical JSON event per message, and one garbage message
    producer = Producer({"test.mock.num.brokers": 1, "logger": logging.getLogger("test.kafka")})
    broker = next(iter(producer.list_topics(timeout=5).brokers.values()))
    trades = refx.filter(pc.equal(refx.column("kind"), "trade"))
    for row in to_rows(trades):
        producer.produce("refx-trades", value=orjson.dumps({k: v for k, v in row.items() if v is not None}))
    producer.produce("refx-trades", value=b"\x00 not json")
    assert producer.flush(10) == 0

    # tailed file: REFX quotes, and one line that is not an event
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    quotes = refx.filter(pc.equal(refx.column("kind"), "quote"))
    with open(incoming / "refx-quotes.jsonl", "wb") as f:
        for row in to_rows(quotes):
            f.write(orjson.dumps({k: v for k, v in row.items() if v is not None}) + b"\n")
        f.write(b'{"kind": "quote", "venue": "REFX"}\n')  # no time, no prices

    fix_port, mport = free_port(), free_port()
    cfg = write_config(tmp_path / "surveil.toml", {
        "store": {"db": "surveil.duckdb"},
        "reference": {"dir": "m/ref"},
        # the transports deliver the two minutes at very different speeds: hold everything until
        # the market has gone quiet for 1.5 s, then release it in event-time order
        "pipeline": {"max_lateness_ms": 600_000, "idle_release_ms": 1500},
        "metrics": {"address": f"127.0.0.1:{mport}"},
    }, [
        {"name": "dropcopy", "type": "fix", "listen": f"127.0.0.1:{fix_port}", "sessions": ["HKVATP", "OVSAFF"],
         "heartbeat_s": 5},
        {"name": "refx_trades", "type": "kafka", "brokers": [f"{broker.host}:{broker.port}"],
         "topics": ["refx-trades"], "format": "json", "connect_timeout_s": 5.0},
        {"name": "refx_quotes", "type": "tail", "directory": str(incoming), "pattern": "*.jsonl", "format": "jsonl"},
        {"name": "binance", "type": "websocket", "venue": "BINANCE", "symbols": fmt.symbols, "url": ws_url,
         "options": fmt.options},
    ])
    d = Daemon(cfg).start()
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{mport}/health")[0] == 200, 60, "the daemon to start", d)
        sent = 0
        for platform in ("HKVATP", "OVSAFF"):
            ini = FixInitiator("127.0.0.1", fix_port, sender=platform, heartbeat_s=5)
            # /health answers before the dataflow has built the FIX acceptor: on a loaded machine
            # the port may not listen yet, so a refused connection is retried
            wait_until(lambda ini=ini: _logged_on(ini), 60, "the FIX acceptor to take a session", d)
            ini.send_raw(b"8=FIX.4.4\x019=5\x0135=8\x0110=000\x01")  # bad checksum, bad body
            sent += len(ini.send_bodies(bodies_from_drop_copy(m / "fix" / f"{platform}.fix")))
            assert ini.wait_for(lambda: True, 1)
            ini_ok = ini  # keep the session open while the daemon reads
        labels = load_labels(m / "labels.json")
        want = {e["type"] for e in labels["episodes"]}

        def alerted():
            code, body = http_get(f"http://127.0.0.1:{mport}/metrics")
            text = body.decode() if code == 200 else ""
            return all(metric(text, "surveil_alerts_total", detector=t) > 0 for t in want) and text
        text = wait_until(alerted, 240, "the market's alerts, while the daemon runs", d)
        for source, n in (("refx_trades", trades.num_rows), ("refx_quotes", quotes.num_rows), ("binance", 20)):
            assert metric(text, "surveil_events_in_total", source=source) == n, source
        assert metric(text, "surveil_events_in_total", source="dropcopy") >= sent - 2
        for source in ("dropcopy", "refx_trades", "refx_quotes", "binance"):
            assert metric(text, "surveil_decode_errors_total", source=source) >= 1, source
        ini_ok.logout()
    finally:
        rc = d.stop(signal.SIGTERM)
    assert rc == 0, d.output()[-3000:]

    db = tmp_path / "surveil.duckdb"
    s = score(alerts_from_db(db), labels)
    for t in want:
        assert s[t]["recall"] == 1.0 and s[t]["precision"] == 1.0, (t, s[t])
    dead = dict(query(db, "SELECT source, count(*) FROM dead_letters GROUP BY ALL"))
    for where in ("dropcopy:HKVATP", "dropcopy:OVSAFF", "kafka:refx-trades", "refx-quotes.jsonl", ws_url):
        assert any(k.endswith(where) for k in dead), (where, dead)


def _logged_on(ini: FixInitiator) -> bool:
    try:
        ini.connect(timeout=20)
    except ConnectionRefusedError:
        return False
    return True
