"""connectors.tardis: tardis.dev normalised trades and quotes CSV."""
from __future__ import annotations

import pyarrow as pa
import pytest

from connectors import decode_file

TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
QUOTES_HEADER = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"


def ints(result, column):
    return result.events.column(column).cast(pa.int64()).to_pylist()


def test_real_trade_sample_decodes_to_the_ns(fixtures, decode):
    r = decode(fixtures / "tardis_trades_sample.csv", src=2)
    assert r.events.num_rows == 12 and r.dead.num_rows == 0
    assert r.rows("kind", "feed", "venue", "venue_symbol", "trade_id", "side", "price", "qty", "src", "src_seq")[0] == {
        "kind": "trade", "feed": "tardis", "venue": "binance-futures", "venue_symbol": "BTCUSDT",
        "trade_id": "42377944", "side": "buy", "price": 9682.0, "qty": 0.132, "src": 2, "src_seq": 0}
    assert ints(r, "ts")[:2] == [1582329602111000000, 1582329602116000000]
    assert ints(r, "recv_ts")[:2] == [1582329602418379000, 1582329602418420000]
    assert r.col("src_seq") == list(range(12))


def test_bitmex_uuid_trade_ids_are_kept_as_text(fixtures, decode):
    r = decode(fixtures / "tardis_bitmex_trades_sample.csv")
    assert r.col("trade_id")[0] == "ccc3c1fa-212c-e8b0-1706-9b9c4f3d5ecf"
    assert set(r.col("side")) == {"sell"} and r.col("qty")[0] == 2152.0


def test_real_quote_sample_decodes_bid_and_ask(fixtures, decode):
    r = decode(fixtures / "tardis_quotes_sample.csv")
    assert r.events.num_rows == 12 and r.dead.num_rows == 0
    assert r.rows("kind", "bid", "bid_qty", "ask", "ask_qty", "price", "qty")[0] == {
        "kind": "quote", "bid": 9681.92, "bid_qty": 0.67, "ask": 9682.0, "ask_qty": 0.84, "price": None, "qty": None}
    assert ints(r, "ts")[0] == 1582329601096000000 and ints(r, "recv_ts")[0] == 1582329603502092000


def test_quote_with_an_empty_side_of_the_book_is_kept(write, decode):
    path = write("q.csv", QUOTES_HEADER + "deribit,BTC-PERPETUAL,1585699200245000,1585699200355000,,,6500.5,1200\n")
    r = decode(path)
    assert r.rows("bid", "bid_qty", "ask", "ask_qty") == [
        {"bid": 6500.5, "bid_qty": 1200.0, "ask": None, "ask_qty": None}]


def test_unknown_side_is_null_and_other_sides_are_refused(write, decode):
    path = write("t.csv", TRADES_HEADER
                 + "bitmex,XBTUSD,1583020803145000,1583020803307160,a,unknown,8531.5,1\n"
                 + "bitmex,XBTUSD,1583020803145000,1583020803307160,b,short,8531.5,1\n")
    r = decode(path)
    assert r.col("side") == [None]
    assert r.dead_rows() == [("unknown side 'short'", "line 3",
                              b"bitmex,XBTUSD,1583020803145000,1583020803307160,b,short,8531.5,1")]


def test_malformed_rows_become_dead_letters_and_good_rows_around_them_stay(write, decode, same_in_any_chunking):
    good = "binance,BTCUSDT,1582329602111000,1582329602418379,{id},buy,9682,0.132"
    rows = [
        good.format(id=1),
        "binance,BTCUSDT,1582329602111000,1582329602418379,2,buy,abc,0.132",
        "binance,BTCUSDT,1582329602111000,1582329602418379,3,buy,9682",
        "binance,BTCUSDT,1582329602111000,1582329602418379,4,buy,9682,-0.5",
        "binance,BTCUSDT,15823296021x1000,1582329602418379,5,buy,9682,0.1",
        "binance,BTCUSDT,1582329602111000,1582329602418379,6,buy,9682,0.1,extra",
        "binance,,1582329602111000,1582329602418379,7,buy,9682,0.1",
        good.format(id=8),
        "binance,BTCUSDT,1582329602111000,1582329602418379,9,buy,9682,0.1",
        "binance,BTCUSDT,1582329602111000,158232960",  # truncated last line, no newline
    ]
    path = write("bad.csv.gz", TRADES_HEADER + "\n".join(rows))
    r = same_in_any_chunking(path)
    assert r.col("trade_id") == ["1", "8", "9"]
    assert r.col("src_seq") == [0, 7, 8]
    assert r.dead_rows() == [
        ("price: cannot parse 'abc' as a number", "line 3", rows[1].encode()),
        ("expected 8 fields, got 7", "line 4", rows[2].encode()),
        ("qty must be positive (got -0.5)", "line 5", rows[3].encode()),
        ("timestamp: cannot parse '15823296021x1000' as an integer", "line 6", rows[4].encode()),
        ("expected 8 fields, got 9", "line 7", rows[5].encode()),
        ("missing symbol (venue_symbol or instrument)", "line 8", rows[6].encode()),
        ("expected 8 fields, got 4", "line 11", rows[9].encode()),
    ]


def test_venue_argument_only_fills_an_empty_exchange(write, decode):
    path = write("v.csv", TRADES_HEADER + ",BTCUSDT,1582329602111000,1582329602418379,1,buy,9682,0.1\n"
                 + "okex,BTCUSDT,1582329602111000,1582329602418379,2,buy,9682,0.1\n")
    assert decode(path, venue="binance").col("venue") == ["binance", "okex"]
    assert decode(path).dead_rows()[0][0] == "missing venue"


def test_unsupported_tardis_data_types_are_refused_up_front(write):
    path = write("book.csv", "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n")
    with pytest.raises(ValueError, match="book.csv: tardis CSV .* is not supported"):
        decode_file(path)
    with pytest.raises(ValueError, match="not supported"):
        decode_file(path, "tardis")
