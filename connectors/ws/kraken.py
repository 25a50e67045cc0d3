"""Kraken spot WebSocket: the v2 ``trade`` channel, and v1 ``trade`` arrays (the recorded captures).

**v2** (wss://ws.kraken.com/v2, docs: https://docs.kraken.com/api/docs/websocket-v2/trade):
subscribe with ``{"method": "subscribe", "params": {"channel": "trade", "symbol": [...],
"snapshot": true}}``, answered by ``{"method": "subscribe", "success": true|false, ...}``.  Data:
``{"channel": "trade", "type": "snapshot"|"update", "data": [{symbol, side, price, qty, ord_type,
trade_id, timestamp}]}``; ``side`` is the taker's, ``timestamp`` RFC 3339 with µs, ``trade_id``
sequential per pair.  The snapshot (the last 50 trades) is asked for on purpose: after a
reconnect it refills part of the gap, and the client's id accounting drops the overlap.

**v1** (wss://ws.kraken.com): ``[channelID, [[price, volume, time, side b/s, ordType, misc], ...],
"trade", pair]`` with ``time`` in epoch seconds as a decimal string; v1 trades carry no id, so
there is neither gap accounting nor deduplication for them.

Keep-alive: Kraken sends a heartbeat every second when nothing else is sent, so silence means a
dead connection; no client ping is needed.

>>> m = decode(b'[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]', 0)
>>> t = m.trades[0]
>>> (t.venue_symbol, t.trade_id, t.price, t.qty, t.side, t.ts_ns)
('XMR/USD', None, 354.11, 0.89594024, 'sell', 1618678142557535000)
"""
from __future__ import annotations


from surveil.schemas import Side

from ._message import (
    Control, DecodedMessage, Heartbeat, TradeRow, collect, dumps, integer, iso_to_ns, loads, malformed, num,
    seconds_to_ns, side, text,
)

VENUE = "KRAKEN"
URLS = {2: "wss://ws.kraken.com/v2", 1: "wss://ws.kraken.com"}
URL = URLS[2]
HEARTBEAT = Heartbeat(ping_message=None, stale_after_s=15.0)
_SIDES_V2 = {"buy": Side.BUY, "sell": Side.SELL}
_SIDES_V1 = {"b": Side.BUY, "s": Side.SELL}


def endpoint(*, version: int = 2) -> str:
    if version not in URLS:
        raise ValueError(f"version must be 1 or 2 (got {version!r})")
    return URLS[version]


def subscribe_messages(symbols: list[str], *, version: int = 2) -> list[str]:
    endpoint(version=version)
    if version == 1:
        return [dumps({"event": "subscribe", "pair": list(symbols), "subscription": {"name": "trade"}})]
    return [dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": list(symbols), "snapshot": True},
                   "req_id": 1})]


def _trade_v2(d: dict, i: int) -> TradeRow:
    symbol = text(d["symbol"], "symbol")
    tid = integer(d["trade_id"], "trade_id")
    return TradeRow(
        ts_ns=iso_to_ns(d["timestamp"], "timestamp"), venue_symbol=symbol, price=num(d["price"], "price"),
        qty=num(d["qty"], "qty"), side=side(d["side"], "side", _SIDES_V2), trade_id=str(tid),
        seq_key=symbol, seq_lo=tid, seq_hi=tid, item=i,
    )


def _v2(msg: dict, recv_ts_ns: int) -> DecodedMessage:
    method = msg.get("method")
    if method == "pong":
        return DecodedMessage(Control.PONG, recv_ts_ns)
    if method is not None:  # subscribe / unsubscribe answers
        if msg.get("success") is False:
            return DecodedMessage(Control.ERROR, recv_ts_ns, detail=f"{method}: {msg.get('error')}")
        return DecodedMessage(Control.SUBSCRIBED if method == "subscribe" else Control.INFO, recv_ts_ns,
                              detail=dumps(msg.get("result")))
    channel = msg.get("channel")
    if channel == "heartbeat":
        return DecodedMessage(Control.HEARTBEAT, recv_ts_ns)
    if channel == "status":
        return DecodedMessage(Control.INFO, recv_ts_ns, detail=dumps(msg.get("data")))
    if channel is None:
        if "error" in msg:
            return DecodedMessage(Control.ERROR, recv_ts_ns, detail=str(msg["error"]))
        return malformed(recv_ts_ns, "Kraken message without method or channel")
    if channel != "trade":
        return DecodedMessage(Control.IGNORED, recv_ts_ns, detail=str(channel))
    data = msg.get("data")
    if not isinstance(data, list):
        return malformed(recv_ts_ns, "trade message without a data list")
    out = DecodedMessage(Control.DATA, recv_ts_ns)
    return collect(data, _trade_v2, out, out.trades)


def _v1_event(msg: dict, recv_ts_ns: int) -> DecodedMessage:
    event = msg["event"]
    if event == "heartbeat":
        return DecodedMessage(Control.HEARTBEAT, recv_ts_ns)
    if event == "pong":
        return DecodedMessage(Control.PONG, recv_ts_ns)
    if event == "subscriptionStatus":
        if msg.get("status") == "error":
            return DecodedMessage(Control.ERROR, recv_ts_ns, detail=f"{msg.get('pair')}: {msg.get('errorMessage')}")
        control = Control.SUBSCRIBED if msg.get("status") == "subscribed" else Control.INFO
        return DecodedMessage(control, recv_ts_ns, detail=f"{msg.get('pair')}: {msg.get('status')}")
    return DecodedMessage(Control.INFO, recv_ts_ns, detail=f"{event}: {msg.get('status', '')}")


def _v1_trades(msg: list, recv_ts_ns: int) -> DecodedMessage:
    if len(msg) < 4 or not isinstance(msg[-2], str):
        return malformed(recv_ts_ns, "Kraken v1 array message without channel name and pair")
    if msg[-2] != "trade":
        return DecodedMessage(Control.IGNORED, recv_ts_ns, detail=msg[-2])
    pair, items = msg[-1], msg[1]
    if not isinstance(pair, str) or not isinstance(items, list):
        return malformed(recv_ts_ns, "Kraken v1 trade message without a pair and a list of trades")

    def trade(r: list, i: int) -> TradeRow:
        if not isinstance(r, list) or len(r) < 4:
            raise ValueError(f"expected [price, volume, time, side, ...], got {r!r}")
        return TradeRow(ts_ns=seconds_to_ns(r[2], "time"), venue_symbol=pair, price=num(r[0], "price"),
                        qty=num(r[1], "volume"), side=side(r[3], "side", _SIDES_V1), trade_id=None, item=i)

    out = DecodedMessage(Control.DATA, recv_ts_ns)
    return collect(items, trade, out, out.trades)


def decode(raw: bytes, recv_ts_ns: int) -> DecodedMessage:
    try:
        msg = loads(raw)
    except ValueError as e:
        return malformed(recv_ts_ns, f"not JSON: {e}")
    if isinstance(msg, list):
        return _v1_trades(msg, recv_ts_ns)
    if not isinstance(msg, dict):
        return malformed(recv_ts_ns, "not a Kraken message: expected a JSON object or array")
    if "event" in msg:
        return _v1_event(msg, recv_ts_ns)
    return _v2(msg, recv_ts_ns)
