"""Malformed input becomes dead letters (step id, reason, position, raw bytes); decoders never raise."""
from __future__ import annotations

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ws import VENUES, Control, Pipeline, decode_messages
from surveil.schemas import DEAD_LETTER_SCHEMA, to_rows

OKX_TRADE = (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"%d",'
             b'"px":"%s","sz":"0.5","side":"buy","ts":"1652459224818"}]}')


def dead_rows(table: pa.Table) -> list[tuple]:
    return [(r["step_id"], r["reason"], r["position"], r["raw"]) for r in to_rows(table)]


def test_malformed_messages_and_items_become_dead_letters_in_wire_order():
    bad_json = b'{"arg": {"channel": "trades"'
    bad_price = OKX_TRADE % (2, b"abc")
    two_items = (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"3",'
                 b'"px":"1","sz":"1","side":"sideways","ts":"1"},{"instId":"BTC-USDT","tradeId":"4","px":"2",'
                 b'"sz":"1","side":"sell","ts":"1652459224819"}]}')
    not_okx = b'[1, 2, 3]'
    venue_error = b'{"event":"error","code":"60018","msg":"Wrong URL or channel:trades,instId:NOPE doesn\'t exist"}'
    msgs = [(OKX_TRADE % (1, b"30236"), 10), (bad_json, 11), (bad_price, 12), (two_items, 13), (not_okx, 14),
            (venue_error, 15), (OKX_TRADE % (5, b"nan"), 16), (OKX_TRADE % (6, b"-1"), 17)]
    d = decode_messages("OKX", msgs, source="ws://test")
    assert d.events.column("trade_id").to_pylist() == ["1", "4"]
    assert d.events.column("src_seq").to_pylist() == [0, 4]  # every row, dead or not, takes a number
    rows = dead_rows(d.dead)
    assert d.dead.schema == DEAD_LETTER_SCHEMA and [r[0] for r in rows] == ["ws.okx"] * 7
    assert [(r[2], r[3]) for r in rows] == [("1:2", bad_json), ("1:3:0", bad_price), ("1:4:0", two_items),
                                            ("1:5", not_okx), ("1:6", venue_error), ("1:7:0", msgs[6][0]),
                                            ("1:8:0", msgs[7][0])]
    reasons = [r[1] for r in rows]
    assert reasons[0].startswith("not JSON")
    assert reasons[1:4] == ["px: cannot parse 'abc' as a number", "side: unknown side 'sideways'",
                            "not an OKX message: expected a JSON object"]
    assert reasons[4].startswith("venue error: code 60018: Wrong URL")
    assert reasons[5:] == ["price: not a finite number (nan)", "price must be positive (got -1.0)"]
    assert d.dead.column("recv_ts").cast(pa.int64()).to_pylist() == [11, 12, 13, 14, 15, 16, 17]
    assert d.dead.column("source").to_pylist() == ["ws://test"] * 7


def test_decoder_bug_costs_one_message_not_the_feed(monkeypatch):
    from connectors.ws import binance

    def broken(raw, recv):
        raise ZeroDivisionError("boom")

    p = Pipeline("BINANCE", source="x")
    p.new_connection()
    monkeypatch.setattr(binance, "decode", broken)
    p.message(b"{}", 1, "1:1")
    (kind, dead), = p.flush()
    assert kind == "dead" and dead.column("reason").to_pylist() == ["decoder failed: ZeroDivisionError: boom"]


def test_gap_flushes_earlier_rows_first_and_drops_duplicates():
    p = Pipeline("OKX", source="x", batch_rows=1000)
    p.new_connection()
    out = []
    for i, tid in enumerate([1, 2, 3, 2, 7, 8]):
        out += p.message(OKX_TRADE % (tid, b"1"), i, f"1:{i + 1}")[1]
    out += p.flush()
    kinds = [k for k, _ in out]
    assert kinds == ["events", "gap", "events"]
    assert out[0][1].column("trade_id").to_pylist() == ["1", "2", "3"]
    gap = out[1][1]
    assert (gap["kind"], gap["key"], gap["expected"], gap["got"], gap["missing"]) == ("trade_id", "BTC-USDT", 4, 7, 3)
    assert out[2][1].column("trade_id").to_pylist() == ["7", "8"]
    assert (p.stats.duplicates, p.stats.gaps, p.stats.missing, p.stats.trades) == (1, 1, 3, 5)


def test_backward_ids_are_kept_and_reported_not_swallowed():
    p = Pipeline("OKX", source="x")
    p.new_connection()
    out = []
    for i, tid in enumerate([100, 101, 50, 102]):
        out += p.message(OKX_TRADE % (tid, b"1"), i, f"1:{i + 1}")[1]
    out += p.flush()
    gaps = [v for k, v in out if k == "gap"]
    assert [(g["kind"], g["got"]) for g in gaps] == [("out_of_order", 50)]
    ids = [t for k, v in out if k == "events" for t in v.column("trade_id").to_pylist()]
    assert ids == ["100", "101", "50", "102"]


def test_sequence_numbers_restart_with_each_connection():
    def at(seq: int) -> bytes:
        return b'{"channel":"heartbeats","sequence_num":%d,"events":[]}' % seq

    p = Pipeline("COINBASE", source="x")
    p.new_connection()
    gaps = [v for i, s in enumerate([0, 1, 2, 5]) for k, v in p.message(at(s), i, "p")[1] if k == "gap"]
    assert [(g["kind"], g["expected"], g["got"], g["missing"]) for g in gaps] == [("sequence", 3, 5, 2)]
    p.new_connection()
    assert [k for k, _ in p.message(at(0), 9, "p")[1]] == []  # a new connection starts again at 0


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=200))
def test_decoders_never_raise_on_bytes(raw):
    for module in VENUES.values():
        m = module.decode(raw, 1)
        assert isinstance(m.control, Control)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["e", "s", "t", "p", "q", "T", "m", "a", "data", "stream", "arg", "channel", "instId",
                         "tradeId", "px", "sz", "side", "ts", "type", "events", "trades", "product_id", "price",
                         "size", "time", "trade_id", "symbol", "qty", "timestamp", "event", "method", "count"]),
        inner, max_size=8),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None)
@given(value=json_values)
def test_pipeline_never_raises_and_keeps_raw_bytes(value):
    raw = orjson.dumps(value)
    for venue in VENUES:
        d = decode_messages(venue, [(raw, 5)])
        assert d.events.num_rows + d.dead.num_rows >= 0
        assert set(d.dead.column("raw").to_pylist()) <= {raw}
