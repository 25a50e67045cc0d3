"""The venue decoders on recorded messages: exact field values, integer-ns times, control info."""
from __future__ import annotations

import orjson
import pytest

from connectors.ws import Control, binance, coinbase, decode_messages, kraken, okx
from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA, to_rows

from .capture import fixture, read_capture

TRADE_KEYS = ("ts", "recv_ts", "kind", "feed", "venue", "venue_symbol", "trade_id", "price", "qty", "side")


def decode_fixture(venue: str, name: str):
    cap = read_capture(fixture(name))
    d = decode_messages(venue, cap.received, source=name)
    assert d.events.schema == EVENT_SCHEMA and d.dead.schema == DEAD_LETTER_SCHEMA
    return cap, d, to_rows(d.events)


def pick(row: dict, keys=TRADE_KEYS) -> tuple:
    return tuple(row[k] for k in keys)


def raw_json(name: str) -> bytes:
    return fixture(name).read_bytes()


# -- Binance -----------------------------------------------------------------------------------

def test_binance_spot_aggtrade_capture():
    _, d, rows = decode_fixture("BINANCE", "binance_spot_aggtrade.txt")
    assert d.dead.num_rows == 0
    assert [pick(r) for r in rows] == [
        (1633998523963000000, 1633998523957215000, "trade", "websocket", "BINANCE", "NKNUSDT", "15683430", 0.3528, 58.0, "buy"),
        (1633998534486000000, 1633998534481201000, "trade", "websocket", "BINANCE", "LRCBTC", "9213679", 0.00000638, 177.0, "buy"),
    ]
    assert [r["src_seq"] for r in rows] == [0, 1]


def test_binance_combined_stream_capture_skips_other_streams():
    cap, d, rows = decode_fixture("BINANCE", "binance_futures_aggtrade.txt")
    assert d.dead.num_rows == 0
    assert [r["trade_id"] for r in rows] == [str(i) for i in range(87353230, 87353250)]
    assert pick(rows[-1]) == (1626992756421000000, 1626992756535795000, "trade", "websocket", "BINANCE", "SUSHIUSDT",
                              "87353249", 7.614, 39.0, "sell")  # m=true: the buyer made, the seller took
    controls = [binance.decode(raw, t).control for raw, t in cap.received]
    assert controls.count(Control.IGNORED) == 3 and controls.count(Control.DATA) == 20  # depth, bookTicker, kline


def test_binance_doc_samples_trade_and_aggtrade():
    t = binance.decode(raw_json("binance__trade_stream.json"), 7).trades[0]
    assert (t.ts_ns, t.venue_symbol, t.trade_id, t.price, t.qty, t.side, t.seq_key, t.seq_lo) == (
        123456785000000, "BTCUSDT", "5933014", 0.001, 100.0, "sell", "BTCUSDT@trade", 5933014)
    a = binance.decode(raw_json("binance__agg_trade_stream.json"), 7).trades[0]
    assert (a.trade_id, a.seq_key, a.side) == ("5933014", "BTCUSDT@aggTrade", "sell")


def test_binance_control_messages():
    assert binance.decode(b'{"result":null,"id":1}', 0).control is Control.SUBSCRIBED
    err = binance.decode(b'{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":1}', 0)
    assert (err.control, err.detail) == (Control.ERROR, "code 2: Invalid request: unknown variant")
    assert binance.decode(b'{"code":3,"msg":"Invalid JSON"}', 0).control is Control.ERROR
    t = binance.decode(b'{"e":"trade","s":"X","t":1,"p":"1","q":"2","T":1700000000000123,"m":false}', 0).trades[0]
    assert t.ts_ns == 1700000000000123000  # timeUnit=MICROSECOND streams: µs, told by magnitude


# -- OKX ---------------------------------------------------------------------------------------

def test_okx_capture():
    cap, d, rows = decode_fixture("OKX", "okx_trades.txt")
    assert d.dead.num_rows == 0
    btc = [r for r in rows if r["venue_symbol"] == "BTC-USDT"]
    assert [r["trade_id"] for r in btc] == [str(i) for i in range(338476307, 338476337)]
    row = next(r for r in btc if r["trade_id"] == "338476316")
    assert pick(row) == (1652459226753000000, 1652459226868955400, "trade", "websocket", "OKX", "BTC-USDT", "338476316",
                         30250.1, 0.00066996, "sell")
    assert [r["trade_id"] for r in rows if r["venue_symbol"] == "BTC-USD-220527"] == ["7849", "7850", "7851", "7852"]
    controls = [okx.decode(raw, t).control for raw, t in cap.received]
    assert controls.count(Control.SUBSCRIBED) == 6 and controls.count(Control.IGNORED) == 1  # the tickers message
    assert orjson.loads(cap.sent[0])["op"] == "subscribe"


def test_okx_aggregated_trades_account_for_count():
    m = okx.decode(b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474",'
                   b'"px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3"}]}', 0)
    t = m.trades[0]
    assert (t.trade_id, t.seq_lo, t.seq_hi) == ("130639474", 130639472, 130639474)


def test_okx_control_messages():
    assert okx.decode(b"pong", 0).control is Control.PONG
    err = okx.decode(b'{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}', 0)
    assert (err.control, err.detail) == (Control.ERROR, "code 60012: Invalid request")
    assert okx.decode(b'{"event":"notice","code":"64008","msg":"service upgrade"}', 0).control is Control.INFO
    assert okx.subscribe_messages(["BTC-USDT"]) == ['{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}']


# -- Coinbase ----------------------------------------------------------------------------------

def test_coinbase_exchange_capture():
    cap, d, rows = decode_fixture("COINBASE", "coinbase_exchange_matches.txt")
    assert d.dead.num_rows == 0
    skl = [r for r in rows if r["venue_symbol"] == "SKL-USD" and r["kind"] == "trade"]
    assert [r["trade_id"] for r in skl] == [str(i) for i in range(1568267, 1568288)]  # last_match, then 20 matches
    first = next(r for r in skl if r["trade_id"] == "1568268")
    # maker side "sell": the taker bought; the taker's order is the buy order
    assert pick(first) == (1618677817121358000, 1618677817129917900, "trade", "websocket", "COINBASE", "SKL-USD",
                           "1568268", 0.791, 450.0, "buy")
    assert (first["buy_order_id"], first["sell_order_id"]) == ("3dec64e4-f6ad-4ca8-ad3f-e5b1a0eb0d06",
                                                              "cac01d6d-8009-4c33-8e0d-f7f853d7c1bc")
    quote = next(r for r in rows if r["kind"] == "quote")
    assert pick(quote, ("ts", "venue_symbol", "bid", "ask", "bid_qty", "price")) == (
        1618677810244075000, "BAND-GBP", 14.755, 14.806, None, None)
    controls = [coinbase.decode(raw, t).control for raw, t in cap.received]
    assert controls.count(Control.SUBSCRIBED) == 3


def test_coinbase_advanced_trade_doc_samples():
    m = coinbase.decode(raw_json("coinbase__ws_market_trades.json"), 5)
    assert m.seq == ("connection", 5)
    assert [(t.trade_id, t.venue_symbol, t.price, t.qty, t.side, t.ts_ns, t.seq_lo) for t in m.trades] == [
        ("995098700", "BTC-USD", 68900.5, 0.0015, "buy", 1775572202789012000, 995098700),
        ("995098701", "BTC-USD", 68900.0, 0.05, "sell", 1775572202800000000, 995098701),
    ]
    q = coinbase.decode(raw_json("coinbase__ws_ticker.json"), 5).quotes[0]
    assert q[:6] == (1775572203000000000, "BTC-USD", 68900.0, 1.5, 68901.0, 0.5)


def test_coinbase_control_messages():
    sub = coinbase.decode(b'{"channel":"subscriptions","client_id":"","timestamp":"2023-02-09T20:32:08.548Z",'
                          b'"sequence_num":0,"events":[{"subscriptions":{"market_trades":["BTC-USD"]}}]}', 0)
    assert (sub.control, sub.seq) == (Control.SUBSCRIBED, ("connection", 0))
    hb = coinbase.decode(b'{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z",'
                         b'"sequence_num":3,"events":[{"current_time":"2023-06-23 20:31:56","heartbeat_counter":3}]}', 0)
    assert (hb.control, hb.seq) == (Control.HEARTBEAT, ("connection", 3))
    err = coinbase.decode(b'{"type":"error","message":"Failed to subscribe","reason":"bad product"}', 0)
    assert (err.control, err.detail) == (Control.ERROR, "Failed to subscribe: bad product")
    assert coinbase.decode(b'{"type":"heartbeat","last_trade_id":5,"product_id":"BTC-USD"}', 0).control is Control.HEARTBEAT
    assert coinbase.decode(b'{"type":"l2update","product_id":"BTC-USD","changes":[]}', 0).control is Control.IGNORED
    assert len(coinbase.subscribe_messages(["BTC-USD"])) == 2  # market_trades + heartbeats
    with pytest.raises(ValueError, match="api must be"):
        coinbase.subscribe_messages(["BTC-USD"], api="pro")


# -- Kraken ------------------------------------------------------------------------------------

def test_kraken_v1_capture():
    cap, d, rows = decode_fixture("KRAKEN", "kraken_v1_trades.txt")
    assert d.dead.num_rows == 0 and len(rows) == 10
    assert pick(rows[0]) == (1618678142557535000, 1618678142592855000, "trade", "websocket", "KRAKEN", "XMR/USD", None,
                             354.11, 0.89594024, "sell")
    assert pick(rows[3]) == (1618678150826417000, 1618678150856557100, "trade", "websocket", "KRAKEN", "XMR/USD", None,
                             354.04, 0.28245396, "sell")
    controls = [kraken.decode(raw, t).control for raw, t in cap.received]
    assert (controls.count(Control.HEARTBEAT), controls.count(Control.SUBSCRIBED), controls.count(Control.INFO)) == (30, 10, 1)


def test_kraken_v2_doc_sample():
    m = kraken.decode(raw_json("kraken__ws_trade_update.json"), 9)
    assert [(t.trade_id, t.venue_symbol, t.price, t.qty, t.side, t.ts_ns, t.seq_key) for t in m.trades] == [
        ("10218208", "BTC/USD", 105944.2, 0.00027625, "buy", 1696613755440295000, "BTC/USD"),
        ("10218209", "BTC/USD", 105910.5, 0.0001246, "sell", 1696613756123456000, "BTC/USD"),
    ]


def test_kraken_control_messages():
    ok = kraken.decode(b'{"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"BTC/USD"},'
                       b'"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}', 0)
    assert ok.control is Control.SUBSCRIBED
    bad = kraken.decode(b'{"error":"Currency pair not supported XBT/EUX","method":"subscribe","success":false}', 0)
    assert (bad.control, bad.detail) == (Control.ERROR, "subscribe: Currency pair not supported XBT/EUX")
    assert kraken.decode(b'{"channel":"heartbeat"}', 0).control is Control.HEARTBEAT
    assert kraken.decode(b'{"method":"pong","req_id":4}', 0).control is Control.PONG
    assert kraken.decode(b'{"channel":"book","type":"update","data":[]}', 0).control is Control.IGNORED
    v1err = kraken.decode(b'{"event":"subscriptionStatus","status":"error","pair":"XBT/EUX","errorMessage":"bad pair"}', 0)
    assert (v1err.control, v1err.detail) == (Control.ERROR, "XBT/EUX: bad pair")
