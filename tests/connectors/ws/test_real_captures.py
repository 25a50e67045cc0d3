"""Every received message of the full real captures in ../shared/data (skipped when absent):
nothing recorded from a venue may become a dead letter, and every trade in them is decoded."""
from __future__ import annotations

import orjson
import pytest

from connectors.ws import Control, Pipeline, venue_module
from tests.conftest import shared_data

from .capture import read_capture

CAPTURES = [  # (file, decoder, what the capture holds)
    ("BINANCE.ws.1.0.gz", "BINANCE", "spot combined streams: depth, bookTicker, kline, aggTrade"),
    ("BINANCE_US.ws.1.0.gz", "BINANCE", "Binance.US, same wire format"),
    ("BINANCE_FUTURES.ws.1.0.gz", "BINANCE", "USD-M futures, same envelope"),
    ("BINANCE_DELIVERY.ws.1.0.gz", "BINANCE", "COIN-M futures, same envelope"),
    ("OKX.ws.1.0.gz", "OKX", "v5 tickers, trades, books"),
    ("COINBASE.ws.28.0.gz", "COINBASE", "legacy feed: level2, ticker, matches"),
    ("KRAKEN.ws.48.0.gz", "KRAKEN", "v1 trade"),
    ("KRAKEN.ws.49.0.gz", "KRAKEN", "v1 ticker"),
    ("KRAKEN.ws.50.0.gz", "KRAKEN", "v1 book"),
]


def trades_in(venue: str, raw: bytes) -> int:
    """Trades in one message, counted straight from the JSON (independently of the decoders)."""
    m = orjson.loads(raw)
    if venue == "BINANCE":
        return int(isinstance(m, dict) and m.get("data", {}).get("e") in ("trade", "aggTrade"))
    if venue == "OKX":
        return len(m["data"]) if isinstance(m, dict) and m.get("arg", {}).get("channel") == "trades" and "data" in m else 0
    if venue == "COINBASE":
        return int(m.get("type") in ("match", "last_match"))
    return len(m[1]) if isinstance(m, list) and m[-2] == "trade" else 0


@pytest.mark.parametrize("name,venue,what", CAPTURES, ids=[c[0] for c in CAPTURES])
def test_real_capture_decodes_without_dead_letters(name, venue, what):
    cap = read_capture(shared_data("ws-raw-cryptofeed", name))
    assert cap.received, f"{name}: no received messages"
    p = Pipeline(venue, source=name, batch_rows=1 << 30)
    conn = p.new_connection()
    gaps = []
    for i, (raw, recv) in enumerate(cap.received):
        gaps += [v for k, v in p.message(raw, recv, f"{conn}:{i + 1}")[1] if k == "gap"]
    items = p.flush()
    dead = [v for k, v in items if k == "dead"]
    assert not dead, dead[0].select(["reason", "position"]).to_pylist()[:5]
    expected = sum(trades_in(venue, raw) for raw, _ in cap.received)
    assert p.stats.trades == expected and p.stats.duplicates == 0
    # every capture's trade ids are contiguous per symbol: accounting finds no gap in real traffic
    assert not [g for g in gaps if g["kind"] != "sequence"], gaps[:3]
    assert p.stats.controls[Control.MALFORMED.value] == 0 and venue_module(venue).VENUE == venue
