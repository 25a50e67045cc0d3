"""Coinbase public WebSocket feeds: Advanced Trade ``market_trades``, and the Exchange ``matches``.

**Advanced Trade** (``api="advanced"``, wss://advanced-trade-ws.coinbase.com, docs:
https://docs.cdp.coinbase.com/advanced-trade/docs/ws-channels): messages are ``{"channel": ...,
"sequence_num": n, "events": [...]}``; ``sequence_num`` counts every message of the connection
from 0, so a skipped number is a lost message (the client's ``sequence`` gap).  ``market_trades``
events hold ``trades`` (``trade_id, product_id, price, size, side BUY/SELL, time``); ``side`` is
read as the aggressor's, as NautilusTrader and ccxt read it.  A subscription is answered on the
``subscriptions`` channel; the ``heartbeats`` channel keeps quiet connections open (Coinbase closes
them after 60-90 s without updates), so we subscribe to it too.  ``ticker`` becomes a quote.

**Exchange** (``api="exchange"``, wss://ws-feed.exchange.coinbase.com, the legacy Pro feed):
``match`` / ``last_match`` are trades whose ``side`` is the **maker's** (Coinbase docs: "a sell
side match is an up-tick"), so the aggressor is the other side; ``maker_order_id`` and
``taker_order_id`` give the buy and sell order ids.  ``ticker`` becomes a quote (best bid/ask).

Trade ids are contiguous per product in both feeds.  ``last_match`` (sent on subscribe) repeats a
trade already seen after a reconnect; the client's id accounting drops it.

>>> m = decode(b'{"type":"last_match","trade_id":881613,"maker_order_id":"27ff","taker_order_id":"1da6",'
...            b'"side":"sell","size":"0.04","price":"14.7775","product_id":"BAND-GBP","sequence":333938798,'
...            b'"time":"2021-04-17T16:43:30.244075Z"}', 0)
>>> t = m.trades[0]
>>> (t.venue_symbol, t.trade_id, t.price, t.qty, t.side, t.ts_ns, t.buy_order_id, t.sell_order_id)
('BAND-GBP', '881613', 14.7775, 0.04, 'buy', 1618677810244075000, '1da6', '27ff')
"""
from __future__ import annotations


from surveil.schemas import Side

from ._message import (
    Control, DecodedMessage, Heartbeat, QuoteRow, TradeRow, collect, dumps, integer, iso_to_ns, loads, malformed, num,
    opt_num, side, text,
)

VENUE = "COINBASE"
URLS = {"advanced": "wss://advanced-trade-ws.coinbase.com", "exchange": "wss://ws-feed.exchange.coinbase.com"}
URL = URLS["advanced"]
HEARTBEAT = Heartbeat(ping_message=None, stale_after_s=30.0)  # both feeds send a heartbeat every second
_TAKER = {"BUY": Side.BUY, "SELL": Side.SELL}
_MAKER_TO_TAKER = {"buy": Side.SELL, "sell": Side.BUY}
_EXCHANGE_OTHER = {"snapshot", "l2update", "received", "open", "done", "change", "activate", "status"}


def endpoint(*, api: str = "advanced") -> str:
    if api not in URLS:
        raise ValueError(f"api must be one of {tuple(URLS)} (got {api!r})")
    return URLS[api]


def subscribe_messages(symbols: list[str], *, api: str = "advanced") -> list[str]:
    endpoint(api=api)
    if api == "exchange":
        return [dumps({"type": "subscribe", "product_ids": list(symbols), "channels": ["matches", "heartbeat"]})]
    return [dumps({"type": "subscribe", "product_ids": list(symbols), "channel": "market_trades"}),
            dumps({"type": "subscribe", "channel": "heartbeats"})]


def _seq_id(trade_id: str) -> int | None:
    return int(trade_id) if trade_id.isdigit() else None


def _at_trade(d: dict, i: int) -> TradeRow:
    symbol = text(d["product_id"], "product_id")
    tid = d["trade_id"]
    tid = str(tid) if isinstance(tid, int) and not isinstance(tid, bool) else text(tid, "trade_id")
    n = _seq_id(tid)
    return TradeRow(
        ts_ns=iso_to_ns(d["time"], "time"), venue_symbol=symbol, price=num(d["price"], "price"),
        qty=num(d["size"], "size"), side=side(d["side"], "side", _TAKER), trade_id=tid,
        seq_key=symbol if n is not None else None, seq_lo=n, seq_hi=n, item=i,
    )


def _items(events: list, key: str) -> list:
    """The trades (tickers) of every event; an event without that list stands as a failing item."""
    out = []
    for e in events:
        v = e.get(key) if isinstance(e, dict) else None
        out.extend(v if isinstance(v, list) else [e])
    return out


def _advanced(msg: dict, recv_ts_ns: int) -> DecodedMessage:
    channel = msg["channel"]
    seq = msg.get("sequence_num")
    seq = ("connection", seq) if isinstance(seq, int) and not isinstance(seq, bool) else None
    if channel == "subscriptions":
        return DecodedMessage(Control.SUBSCRIBED, recv_ts_ns, detail=dumps(msg.get("events")), seq=seq)
    if channel == "heartbeats":
        return DecodedMessage(Control.HEARTBEAT, recv_ts_ns, seq=seq)
    if channel not in ("market_trades", "ticker"):
        return DecodedMessage(Control.IGNORED, recv_ts_ns, detail=str(channel), seq=seq)
    events = msg.get("events")
    if not isinstance(events, list):
        return malformed(recv_ts_ns, f"{channel} message without an events list")
    out = DecodedMessage(Control.DATA, recv_ts_ns, seq=seq)
    # items are numbered across the message's events, so each failing one has its own position
    if channel == "market_trades":
        return collect(_items(events, "trades"), _at_trade, out, out.trades)
    ts = msg.get("timestamp")

    def quote(d: dict, i: int) -> QuoteRow:
        return QuoteRow(iso_to_ns(ts, "timestamp"), text(d["product_id"], "product_id"), num(d["best_bid"], "best_bid"),
                        opt_num(d.get("best_bid_quantity"), "best_bid_quantity"), num(d["best_ask"], "best_ask"),
                        opt_num(d.get("best_ask_quantity"), "best_ask_quantity"), i)

    return collect(_items(events, "tickers"), quote, out, out.quotes)


def _match(d: dict, i: int) -> TradeRow:
    symbol = text(d["product_id"], "product_id")
    tid = integer(d["trade_id"], "trade_id")
    taker = side(d["side"], "side", _MAKER_TO_TAKER)
    maker_oid, taker_oid = d.get("maker_order_id"), d.get("taker_order_id")
    buy_oid, sell_oid = (taker_oid, maker_oid) if taker == Side.BUY.value else (maker_oid, taker_oid)
    return TradeRow(
        ts_ns=iso_to_ns(d["time"], "time"), venue_symbol=symbol, price=num(d["price"], "price"),
        qty=num(d["size"], "size"), side=taker, trade_id=str(tid), buy_order_id=buy_oid, sell_order_id=sell_oid,
        seq_key=symbol, seq_lo=tid, seq_hi=tid, item=i,
    )


def _ticker(d: dict, i: int) -> QuoteRow:
    return QuoteRow(iso_to_ns(d["time"], "time"), text(d["product_id"], "product_id"), num(d["best_bid"], "best_bid"),
                    opt_num(d.get("best_bid_size"), "best_bid_size"), num(d["best_ask"], "best_ask"),
                    opt_num(d.get("best_ask_size"), "best_ask_size"), i)


def _exchange(msg: dict, recv_ts_ns: int) -> DecodedMessage:
    kind = msg["type"]
    out = DecodedMessage(Control.DATA, recv_ts_ns)
    if kind in ("match", "last_match"):
        return collect([msg], _match, out, out.trades)
    if kind == "ticker":
        return collect([msg], _ticker, out, out.quotes)
    if kind == "subscriptions":
        return DecodedMessage(Control.SUBSCRIBED, recv_ts_ns, detail=dumps(msg.get("channels")))
    if kind == "heartbeat":
        return DecodedMessage(Control.HEARTBEAT, recv_ts_ns, detail=f"last_trade_id {msg.get('last_trade_id')}")
    if kind == "error":
        return DecodedMessage(Control.ERROR, recv_ts_ns, detail=f"{msg.get('message')}: {msg.get('reason', '')}")
    if kind in _EXCHANGE_OTHER:
        return DecodedMessage(Control.IGNORED, recv_ts_ns, detail=kind)
    return malformed(recv_ts_ns, f"unrecognised Coinbase message type {kind!r}")


def decode(raw: bytes, recv_ts_ns: int) -> DecodedMessage:
    try:
        msg = loads(raw)
    except ValueError as e:
        return malformed(recv_ts_ns, f"not JSON: {e}")
    if not isinstance(msg, dict):
        return malformed(recv_ts_ns, "not a Coinbase message: expected a JSON object")
    if "channel" in msg:
        return _advanced(msg, recv_ts_ns)
    if "type" in msg:  # Exchange feed; Advanced Trade errors are {"type": "error", "message": ...} too
        return _exchange(msg, recv_ts_ns)
    return malformed(recv_ts_ns, "Coinbase message without channel or type")
