"""OKX v5 public WebSocket: the ``trades`` channel (and ``trades-all``, same shape).

Docs: https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-trades-channel
Subscribe with ``{"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]}``; each
subscription is acknowledged by ``{"event": "subscribe", "arg": {...}}``; errors come as
``{"event": "error", "code": ..., "msg": ...}``.  Data: ``{"arg": {...}, "data": [{instId, tradeId,
px, sz, side, ts}]}`` with ``side`` the taker's and ``ts`` in ms.  Since 2023 the ``trades`` channel
may aggregate the fills of one taker order at one price: ``count`` fills, ``tradeId`` the last one,
so ids ``tradeId - count + 1 .. tradeId`` are accounted for.  Trade ids are contiguous per instrument.

Keep-alive: OKX closes a connection with no traffic for 30 s; the client sends the text ``ping``
when idle and the venue answers the text ``pong`` (not JSON).

>>> m = decode(b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
...            b'"tradeId":"338476307","px":"30236","sz":"0.0002","side":"buy","ts":"1652459224818"}]}', 0)
>>> t = m.trades[0]
>>> (t.venue_symbol, t.trade_id, t.price, t.qty, t.side, t.ts_ns, t.seq_lo)
('BTC-USDT', '338476307', 30236.0, 0.0002, 'buy', 1652459224818000000, 338476307)
>>> decode(b"pong", 0).control
<Control.PONG: 'pong'>
"""
from __future__ import annotations

from typing import Any

from surveil.schemas import Side

from ._message import (
    Control, DecodedMessage, Heartbeat, TradeRow, collect, dumps, integer, loads, malformed, ms_to_ns, num, side, text,
)

VENUE = "OKX"
URL = "wss://ws.okx.com:8443/ws/v5/public"
HEARTBEAT = Heartbeat(ping_message="ping", ping_idle_s=20.0, stale_after_s=40.0)
CHANNELS = ("trades", "trades-all")
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_PER_REQUEST = 100  # keep each request well under OKX's 64 KiB message limit


def endpoint(**options: Any) -> str:
    return URL


def subscribe_messages(symbols: list[str], *, channel: str = "trades") -> list[str]:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS} (got {channel!r})")
    args = [{"channel": channel, "instId": s} for s in symbols]
    return [dumps({"op": "subscribe", "args": args[i : i + _PER_REQUEST]}) for i in range(0, len(args), _PER_REQUEST)]


def _trade(d: dict, i: int) -> TradeRow:
    symbol = text(d["instId"], "instId")
    tid = integer(d["tradeId"], "tradeId")
    count = integer(d.get("count") or 1, "count")
    if count < 1 or count > tid:
        raise ValueError(f"count: {count} is not a number of fills ending at trade {tid}")
    return TradeRow(
        ts_ns=ms_to_ns(d["ts"], "ts"), venue_symbol=symbol, price=num(d["px"], "px"), qty=num(d["sz"], "sz"),
        side=side(d["side"], "side", _SIDES), trade_id=str(tid),
        seq_key=symbol, seq_lo=tid - count + 1, seq_hi=tid, item=i,
    )


def decode(raw: bytes, recv_ts_ns: int) -> DecodedMessage:
    if raw.strip() == b"pong":
        return DecodedMessage(Control.PONG, recv_ts_ns)
    try:
        msg = loads(raw)
    except ValueError as e:
        return malformed(recv_ts_ns, f"not JSON: {e}")
    if not isinstance(msg, dict):
        return malformed(recv_ts_ns, "not an OKX message: expected a JSON object")
    event = msg.get("event")
    if event == "subscribe":
        return DecodedMessage(Control.SUBSCRIBED, recv_ts_ns, detail=dumps(msg.get("arg")))
    if event == "error":
        return DecodedMessage(Control.ERROR, recv_ts_ns, detail=f"code {msg.get('code')}: {msg.get('msg')}")
    if event is not None:  # unsubscribe, notice (service upgrade), channel-conn-count, login
        return DecodedMessage(Control.INFO, recv_ts_ns, detail=f"{event}: {msg.get('msg') or msg.get('arg') or ''}")
    arg = msg.get("arg")
    if not isinstance(arg, dict) or "channel" not in arg:
        return malformed(recv_ts_ns, "OKX message without event or arg.channel")
    if arg["channel"] not in CHANNELS:
        return DecodedMessage(Control.IGNORED, recv_ts_ns, detail=str(arg["channel"]))
    data = msg.get("data")
    if not isinstance(data, list):
        return malformed(recv_ts_ns, "trades message without a data list")
    out = DecodedMessage(Control.DATA, recv_ts_ns)
    return collect(data, _trade, out, out.trades)
