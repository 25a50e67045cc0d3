"""Binance spot WebSocket streams: ``trade`` and ``aggTrade``, raw or in the combined-stream envelope.

Docs: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams
On ``/stream`` every message is ``{"stream": "btcusdt@trade", "data": {...}}``; subscriptions are
``{"method": "SUBSCRIBE", "params": [...], "id": n}``, acknowledged by ``{"result": null, "id": n}``.
``m`` (buyer is maker) true means the seller was the aggressor.  ``T`` is the trade time in ms (µs
when the connection asked for ``timeUnit=MICROSECOND``).

Trade ids (``t``) and aggregate ids (``a``) are contiguous per symbol, in two different id spaces:
subscribe to one stream kind per symbol, not both, or the same trades count twice.  The gap key
names the stream kind so the two never mix.

Keep-alive: the server sends a ping frame every 20 s and drops a connection whose pong is a minute
late; ``websockets`` answers pings itself, so nothing lives above the protocol.

>>> m = decode(b'{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT",'
...            b'"a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,'
...            b'"T":1633998523963,"m":false,"M":true}}', 1633998523957215000)
>>> t = m.trades[0]
>>> (t.venue_symbol, t.trade_id, t.price, t.qty, t.side, t.ts_ns, t.seq_key)
('NKNUSDT', '15683430', 0.3528, 58.0, 'buy', 1633998523963000000, 'NKNUSDT@aggTrade')
>>> subscribe_messages(["BTCUSDT"])
['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}']
"""
from __future__ import annotations

from typing import Any

from surveil.schemas import Side

from ._message import Control, DecodedMessage, Heartbeat, TradeRow, collect, dumps, integer, loads, malformed, ms_to_ns, num, text

VENUE = "BINANCE"
URL = "wss://stream.binance.com:9443/stream"
HEARTBEAT = Heartbeat(ping_message=None, stale_after_s=60.0)
STREAMS = ("trade", "aggTrade")
_BUY, _SELL = Side.BUY.value, Side.SELL.value  # looked up once: Enum.value costs per call
_PER_REQUEST = 200  # Binance caps a connection's incoming messages at 5/s: few, large requests



def endpoint(**options: Any) -> str:
    return URL


def subscribe_messages(symbols: list[str], *, stream: str = "trade") -> list[str]:
    """One SUBSCRIBE request per 200 streams; ``stream``: ``trade`` or ``aggTrade``."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS} (got {stream!r})")
    names = [f"{s.lower()}@{stream}" for s in symbols]
    chunks = [names[i : i + _PER_REQUEST] for i in range(0, len(names), _PER_REQUEST)]
    return [dumps({"method": "SUBSCRIBE", "params": c, "id": i + 1}) for i, c in enumerate(chunks)]


def _trade(d: dict, i: int) -> TradeRow:
    symbol = text(d["s"], "s")
    tid = integer(d["t"], "t")
    maker = d["m"]
    if not isinstance(maker, bool):
        raise ValueError(f"m: expected true/false, got {maker!r}")
    buy_oid, sell_oid = d.get("b"), d.get("a")  # order ids: in the trade stream until 2023 only
    return TradeRow(
        ts_ns=ms_to_ns(d["T"], "T"), venue_symbol=symbol, price=num(d["p"], "p"), qty=num(d["q"], "q"),
        side=_SELL if maker else _BUY, trade_id=str(tid),
        buy_order_id=None if buy_oid is None else str(buy_oid), sell_order_id=None if sell_oid is None else str(sell_oid),
        seq_key=f"{symbol}@trade", seq_lo=tid, seq_hi=tid, item=i,
    )


def _agg_trade(d: dict, i: int) -> TradeRow:
    symbol = text(d["s"], "s")
    aid = integer(d["a"], "a")
    maker = d["m"]
    if not isinstance(maker, bool):
        raise ValueError(f"m: expected true/false, got {maker!r}")
    return TradeRow(
        ts_ns=ms_to_ns(d["T"], "T"), venue_symbol=symbol, price=num(d["p"], "p"), qty=num(d["q"], "q"),
        side=_SELL if maker else _BUY, trade_id=str(aid),
        seq_key=f"{symbol}@aggTrade", seq_lo=aid, seq_hi=aid, item=i,
    )


def decode(raw: bytes, recv_ts_ns: int) -> DecodedMessage:
    try:
        msg = loads(raw)
    except ValueError as e:
        return malformed(recv_ts_ns, f"not JSON: {e}")
    if not isinstance(msg, dict):
        return malformed(recv_ts_ns, "not a Binance message: expected a JSON object")
    if "id" in msg and "result" in msg:
        return DecodedMessage(Control.SUBSCRIBED, recv_ts_ns, detail=f"request {msg['id']}: result {msg['result']}")
    err = msg.get("error") if isinstance(msg.get("error"), dict) else msg if "code" in msg and "msg" in msg else None
    if err is not None:
        return DecodedMessage(Control.ERROR, recv_ts_ns, detail=f"code {err.get('code')}: {err.get('msg')}")
    data = msg.get("data") if "stream" in msg else msg
    if not isinstance(data, dict):
        return malformed(recv_ts_ns, "combined-stream message without a data object")
    event = data.get("e")
    out = DecodedMessage(Control.DATA, recv_ts_ns)
    if event == "trade":
        return collect([data], _trade, out, out.trades)
    if event == "aggTrade":
        return collect([data], _agg_trade, out, out.trades)
    # any other event type is a stream we do not decode (depth, kline, ticker...), not bad input;
    # spot bookTicker and partial-depth messages carry no "e" at all
    if isinstance(event, str) or (event is None and ({"u", "b", "a"} <= data.keys() or "lastUpdateId" in data)):
        return DecodedMessage(Control.IGNORED, recv_ts_ns, detail=str(event or "bookTicker/depth"))
    return malformed(recv_ts_ns, f"unrecognised Binance message (event {event!r})")
