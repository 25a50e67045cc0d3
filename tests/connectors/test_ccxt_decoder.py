"""connectors.ccxt: ccxt-style trade tapes and the Cryptopia variant."""
from __future__ import annotations

import pyarrow as pa
import pytest

from connectors import decode_file, detect_format

HEADER = "symbol,timestamp,datetime,side,price,amount,btc_volume\n"


def test_real_tape_sample_decodes(fixtures, decode):
    path = fixtures / "APPC_ccxt_sample.csv.gz"
    assert detect_format(path) == "ccxt"
    r = decode(path, venue="binance", src=4)
    assert r.events.num_rows == 15 and r.dead.num_rows == 0
    assert r.rows("kind", "feed", "venue", "venue_symbol", "instrument", "side", "price", "qty", "trade_id",
                  "src", "src_seq")[0] == {
        "kind": "trade", "feed": "ccxt", "venue": "binance", "venue_symbol": "APPC/BTC", "instrument": "APPC/BTC",
        "side": "sell", "price": 2.46e-06, "qty": 575.0, "trade_id": None, "src": 4, "src_seq": 0}
    ts = r.events.column("ts").cast(pa.int64()).to_pylist()
    assert ts[:2] == [1603472409370000000, 1603472470391000000]
    assert r.events.column("recv_ts").equals(r.events.column("ts"))


def test_venue_is_required(fixtures):
    with pytest.raises(ValueError, match="--venue"):
        decode_file(fixtures / "APPC_ccxt_sample.csv.gz")


def test_header_without_the_needed_columns_is_refused(write):
    path = write("x.csv", "symbol,timestamp,price\nA/B,1,2\n")
    with pytest.raises(ValueError, match="missing column\\(s\\) 'side', 'amount'"):
        decode_file(path, "ccxt", venue="v")


def test_id_column_becomes_trade_id_and_extra_columns_are_ignored(write, decode):
    path = write("t.csv", "id,symbol,timestamp,datetime,side,price,amount,cost,fee\n"
                 "77,ETH/BTC,1600000000000,x,buy,0.03,2,0.06,\n")
    r = decode(path, venue="binance")
    assert r.rows("trade_id", "side", "qty") == [{"trade_id": "77", "side": "buy", "qty": 2.0}]


def test_malformed_rows_become_dead_letters_and_blank_lines_are_not_rows(write, decode, same_in_any_chunking):
    rows = [
        "APPC/BTC,1603472409370,2020-10-23T17:00:09.370Z,sell,2.46e-06,575.0,0.0014145",
        "",
        "APPC/BTC,1603472409371,2020-10-23T17:00:09.371Z,hold,2.46e-06,575.0,0.0014145",
        "APPC/BTC,1603472409372,2020-10-23T17:00:09.372Z,buy,2.46e-06,NaN,0.0014145",
        "APPC/BTC,1603472409373,2020-10-23T17:00:09.373Z,buy,0,5,0",
        '"APPC/BTC",1603472409374,"2020-10-23T17:00:09.374Z",buy,2.47e-06,1,2.47e-06',
        "APPC/BTC,1603472409375,2020-10-23T17:00:09.375Z,buy,2.47e-06",
        "APPC/BTC,1603472409376,2020-10-23T17:00:09.376Z,,2.47e-06,3,1",
    ]
    path = write("tape.csv", HEADER + "\r\n".join(rows) + "\r\n")
    r = same_in_any_chunking(path, venue="binance")
    assert r.col("src_seq") == [0, 4, 6] and r.col("side") == ["sell", "buy", None]
    assert r.dead_rows() == [
        ("unknown side 'hold'", "line 4", rows[2].encode()),
        ("qty: not a finite number (nan)", "line 5", rows[3].encode()),
        ("price must be positive (got 0.0)", "line 6", rows[4].encode()),
        ("expected 7 fields, got 5", "line 8", rows[6].encode()),
    ]


def test_cryptopia_variant(fixtures, decode):
    path = fixtures / "cryptopia_BVB_sample.csv"
    assert detect_format(path) == "ccxt"
    r = decode(path, venue="cryptopia")
    assert r.events.num_rows == 8 and r.dead.num_rows == 0
    assert r.rows("venue", "venue_symbol", "instrument", "side", "price", "qty")[0] == {
        "venue": "cryptopia", "venue_symbol": "BVB/BTC", "instrument": "BVB/BTC", "side": "sell",
        "price": 2.8e-07, "qty": 4058.558807}
    # 14/11/2018 8:22:20 PM, UTC
    assert r.events.column("ts").cast(pa.int64())[0].as_py() == 1542226940 * 10**9


def test_cryptopia_bad_time_is_a_dead_letter(write, decode):
    path = write("c.csv", "TIMESTAMP,TYPE, PRICEBTC , AMOUNTBVB , TOTALBTC \r\n"
                 "14/11/2018 8:22:20 PM,Sell,0.00000028,10,0.0000028\r\n"
                 "31/11/2018 8:22:20 PM,Buy,0.00000028,10,0.0000028\r\n")
    r = decode(path, venue="cryptopia")
    assert r.col("side") == ["sell"]
    assert r.dead_rows() == [("TIMESTAMP: cannot parse '31/11/2018 8:22:20 PM' as d/m/Y h:m:s AM/PM", "line 3",
                              b"31/11/2018 8:22:20 PM,Buy,0.00000028,10,0.0000028")]
