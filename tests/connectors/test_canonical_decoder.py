"""connectors.canonical: events already in surveil's vocabulary, as JSONL, CSV or Parquet."""
from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import decode_file
from surveil.schemas import EVENT_SCHEMA, TRADE_COLUMNS

T0 = 1704447000123456789  # 2024-01-05T09:30:00.123456789Z


def ints(result, column):
    return result.events.column(column).cast(pa.int64()).to_pylist()


def jsonl(*objs) -> bytes:
    return b"\n".join(o if isinstance(o, bytes) else orjson.dumps(o) for o in objs) + b"\n"


TRADE = {"ts": T0, "kind": "trade", "venue": "XSHR", "venue_symbol": "BTC/USDT", "price": 42000.5, "qty": 0.25,
         "side": "buy", "trade_id": "T1", "buy_account": "A", "sell_account": "B"}
ORDER = {"ts": "2024-01-05T09:30:00.123456789Z", "recv_ts": "2024-01-05 09:30:01", "kind": "order",
         "venue": "XSHR", "instrument": "BTC/USDT", "order_id": 17, "action": "new", "side": "sell",
         "price": "41000", "qty": 2, "is_aggressor": False, "unrelated": [1, 2]}


def test_jsonl_events_decode_with_int_and_iso_times(write, decode):
    r = decode(write("e.jsonl", jsonl(TRADE, ORDER)), src=5)
    assert r.dead.num_rows == 0
    assert ints(r, "ts") == [T0, T0] and ints(r, "recv_ts") == [T0, 1704447001000000000]
    assert r.rows("kind", "feed", "src", "src_seq", "price", "qty", "buy_account", "order_id", "is_aggressor") == [
        {"kind": "trade", "feed": "canonical", "src": 5, "src_seq": 0, "price": 42000.5, "qty": 0.25,
         "buy_account": "A", "order_id": None, "is_aggressor": None},
        {"kind": "order", "feed": "canonical", "src": 5, "src_seq": 1, "price": 41000.0, "qty": 2.0,
         "buy_account": None, "order_id": "17", "is_aggressor": False},
    ]


def test_jsonl_bad_lines_become_dead_letters(write, decode, same_in_any_chunking):
    lines = [
        orjson.dumps(TRADE),
        b'{"ts": 1, "kind": "trade"',
        b"[1, 2]",
        orjson.dumps({**TRADE, "price": "abc"}),
        orjson.dumps({**TRADE, "price": True}),
        orjson.dumps({**TRADE, "ts": "yesterday"}),
        orjson.dumps({**TRADE, "qty": -1}),
        orjson.dumps({**TRADE, "side": "long"}),
        orjson.dumps({**TRADE, "venue": None}),
        orjson.dumps({**TRADE, "trade_id": "T2"}),
    ]
    r = same_in_any_chunking(write("bad.jsonl.gz", jsonl(*lines)))
    assert r.col("trade_id") == ["T1", "T2"] and r.col("src_seq") == [0, 9]
    reasons = [reason for reason, _, _ in r.dead_rows()]
    assert reasons[0].startswith("invalid JSON: ")
    assert reasons[1:] == [
        "expected a JSON object, got list",
        "price: expected a number, got 'abc'",
        "price: expected a number, got True",
        "ts: cannot parse 'yesterday' as a time (integer ns or ISO-8601)",
        "qty must be positive (got -1.0)",
        "unknown side 'long'",
        "missing venue",
    ]
    assert [raw for *_, raw in r.dead_rows()] == lines[1:9]
    assert [pos for _, pos, _ in r.dead_rows()] == [f"line {i}" for i in range(2, 10)]


def test_venue_argument_fills_rows_without_venue(write, decode):
    r = decode(write("v.jsonl", jsonl({**TRADE, "venue": None}, {k: v for k, v in TRADE.items() if k != "venue"})),
               venue="XPLAT")
    assert r.col("venue") == ["XPLAT", "XPLAT"]


def test_csv_events_decode(write, decode, same_in_any_chunking):
    path = write("events.csv", "ts,kind,venue,venue_symbol,price,qty,side,trade_id,is_aggressor\n"
                 f"{T0},trade,XSHR,BTC/USDT,42000.5,0.25,buy,T1,\n"
                 "2024-01-05T09:30:00.123456789Z,trade,XSHR,BTC/USDT,42000.5,0.5,,T2,true\n"
                 f"{T0},trade,XSHR,BTC/USDT,4200O.5,0.5,,T3,\n"
                 f"{T0},trade,XSHR,BTC/USDT,42000.5,0.5,,T4,\n")
    r = same_in_any_chunking(path)
    assert ints(r, "ts") == [T0, T0, T0]
    assert r.rows("trade_id", "side", "is_aggressor", "feed") == [
        {"trade_id": "T1", "side": "buy", "is_aggressor": None, "feed": "canonical"},
        {"trade_id": "T2", "side": None, "is_aggressor": True, "feed": "canonical"},
        {"trade_id": "T4", "side": None, "is_aggressor": None, "feed": "canonical"},
    ]
    assert r.dead_rows() == [("price: cannot parse '4200O.5' as a number", "line 4",
                              f"{T0},trade,XSHR,BTC/USDT,4200O.5,0.5,,T3,".encode())]


def test_csv_header_must_be_schema_columns_with_kind_and_ts(write):
    with pytest.raises(ValueError, match="outside the event schema: 'prce'"):
        decode_file(write("a.csv", "ts,kind,prce\n1,trade,2\n"), "csv")
    with pytest.raises(ValueError, match="lacks column\\(s\\) 'ts'"):
        decode_file(write("b.csv", "kind,price\ntrade,2\n"), "csv")


def test_parquet_round_trip_keeps_values_and_restamps_src(tmp_path, same_in_any_chunking):
    schema = pa.schema([EVENT_SCHEMA.field(c) for c in TRADE_COLUMNS])
    rows = [{**{c: TRADE.get(c) for c in TRADE_COLUMNS}, "ts": T0 + i, "trade_id": f"T{i}", "src": 0, "src_seq": 99}
            for i in range(5)]
    table = pa.Table.from_pylist(rows, schema=schema.set(0, pa.field("ts", pa.int64())))
    path = tmp_path / "archive.parquet"
    pq.write_table(table.set_column(0, "ts", table.column("ts").cast(EVENT_SCHEMA.field("ts").type)), path,
                   row_group_size=2)
    r = same_in_any_chunking(path, src=9)
    assert ints(r, "ts") == [T0 + i for i in range(5)]
    assert r.col("trade_id") == [f"T{i}" for i in range(5)]
    assert r.col("src") == [9] * 5 and r.col("src_seq") == list(range(5))


def test_parquet_refused_rows_carry_their_values_as_json(tmp_path, decode):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"ts": pa.array([T0, T0]), "kind": ["trade", "trade"], "venue": ["X", "X"],
                             "venue_symbol": ["A", "A"], "price": ["1.5", "oops"], "qty": [1.0, 2.0]}), path)
    r = decode(path)
    assert r.col("price") == [1.5]
    (reason, position, raw), = r.dead_rows()
    assert (reason, position) == ("price: expected a number, got 'oops'", "row 2")
    assert orjson.loads(raw) == {"ts": T0, "kind": "trade", "venue": "X", "venue_symbol": "A", "price": "oops",
                                 "qty": 2.0}


def test_parquet_with_foreign_columns_is_refused(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"ts": [1], "kind": ["trade"], "colour": ["red"]}), path)
    with pytest.raises(ValueError, match="outside the event schema: 'colour'"):
        decode_file(path)
