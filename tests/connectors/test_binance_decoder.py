"""connectors.binance: Binance public-data trade files."""
from __future__ import annotations

import pyarrow as pa
import pytest

from connectors import decode_file, detect_format

ROW = "3355510000,44150.01000000,0.00120000,52.98001200,1704412800012,True,True"


def test_headerless_published_file_decodes_with_symbol_from_its_name(fixtures, decode):
    path = fixtures / "BTCUSDT-trades-2024-01-05.csv"
    assert detect_format(path) == "binance"
    r = decode(path, venue="binance", src=1)
    assert r.dead.num_rows == 0
    assert r.rows("kind", "feed", "venue", "venue_symbol", "trade_id", "price", "qty", "side", "src_seq") == [
        {"kind": "trade", "feed": "binance", "venue": "binance", "venue_symbol": "BTCUSDT", "trade_id": "3355510000",
         "price": 44150.01, "qty": 0.0012, "side": "sell", "src_seq": 0},  # buyer was maker: the seller took
        {"kind": "trade", "feed": "binance", "venue": "binance", "venue_symbol": "BTCUSDT", "trade_id": "3355510001",
         "price": 44150.0, "qty": 0.015, "side": "buy", "src_seq": 1},
        {"kind": "trade", "feed": "binance", "venue": "binance", "venue_symbol": "BTCUSDT", "trade_id": "3355510002",
         "price": 44150.01, "qty": 0.25, "side": "buy", "src_seq": 2},
        {"kind": "trade", "feed": "binance", "venue": "binance", "venue_symbol": "BTCUSDT", "trade_id": "3355510003",
         "price": 44149.99, "qty": 0.0003, "side": "sell", "src_seq": 3},
    ]
    ts = r.events.column("ts").cast(pa.int64()).to_pylist()
    assert ts[0] == 1704412800012000000 and r.events.column("recv_ts").equals(r.events.column("ts"))


def test_file_with_a_header_and_microsecond_times(fixtures, decode):
    path = fixtures / "binance_us_header.csv"
    assert detect_format(path) == "binance"
    r = decode(path, venue="binance", symbol="BTCUSDT")
    assert r.events.column("ts").cast(pa.int64()).to_pylist() == [1736035200123456000, 1736035200999999000]
    assert r.col("side") == ["sell", "buy"]


def test_ms_and_us_are_told_apart_per_value(write, decode):
    path = write("ETHBTC-trades-2025-01.csv", "1,0.03,1,0.03,1735689600000,false,true\n"
                 "2,0.03,1,0.03,1735689600000001,false,true\n")
    ts = decode(path, venue="binance").events.column("ts").cast(pa.int64()).to_pylist()
    assert ts == [1735689600000000000, 1735689600000001000]


def test_venue_and_symbol_are_required(fixtures, write):
    with pytest.raises(ValueError, match="--venue"):
        decode_file(fixtures / "BTCUSDT-trades-2024-01-05.csv")
    anonymous = write("trades.csv", ROW + "\n")
    with pytest.raises(ValueError, match="symbol="):
        decode_file(anonymous, venue="binance")
    with pytest.raises(ValueError, match="Binance files only"):
        decode_file(anonymous, "ccxt", venue="x", symbol="BTCUSDT")


def test_malformed_rows_become_dead_letters(write, decode, same_in_any_chunking):
    rows = [
        ROW,
        "3355510001,44150.0,0.015,662.25,1704412800012,maybe,True",
        "3355510002,44150.0,0.015,662.25,1704412800012,False",
        "3355510003,44150.0,0,0,1704412800012,False,True",
        "3355510004,44150.0,0.015,662.25,-5,False,True",
        ROW.replace("3355510000", "3355510005"),
    ]
    path = write("BTCUSDT-trades-2024-01-05.csv.gz", "\n".join(rows) + "\n")
    r = same_in_any_chunking(path, venue="binance")
    assert r.col("trade_id") == ["3355510000", "3355510005"] and r.col("src_seq") == [0, 5]
    assert r.dead_rows() == [
        ("is_buyer_maker: cannot parse 'maybe' as true/false", "line 2", rows[1].encode()),
        ("expected 7 fields, got 6", "line 3", rows[2].encode()),
        ("qty must be positive (got 0.0)", "line 4", rows[3].encode()),
        ("time: -5 is out of range", "line 5", rows[4].encode()),
    ]
