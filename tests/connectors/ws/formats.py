"""The venue formats the test server speaks, built from recorded messages (tests/fixtures/ws).

Binance, OKX and the Coinbase Exchange feed replay their recorded messages unchanged.  Coinbase
Advanced Trade and Kraken v2 have no recorded capture, so real recorded trades are re-encoded
in their wire format: the Coinbase Exchange SKL-USD matches as ``market_trades`` (taker side =
the opposite of the maker side the match gives), the Kraken REST XBT/USDT trades as v2 ``trade``.
What each venue replays on (re)subscribe is modelled too: Coinbase's ``last_match``, Advanced
Trade's ``snapshot`` (newest first), Kraken's 50-trade snapshot: the client must drop the overlap.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import orjson

from connectors.ws import binance, coinbase, kraken, okx

from .capture import fixture, read_capture
from .venue_server import Format


def _payloads(name: str, keep) -> list[dict]:
    return [m for m in (orjson.loads(raw) for raw, _ in read_capture(fixture(name)).received) if keep(m)]


def _dumps(obj) -> bytes:
    return orjson.dumps(obj)


def binance_format() -> Format:
    msgs = _payloads("binance_futures_aggtrade.txt", lambda m: m["data"].get("e") == "aggTrade")
    return Format(
        venue="BINANCE", symbols=["SUSHIUSDT"], options={"stream": "aggTrade"},
        messages=[_dumps(m) for m in msgs], ids=[[str(m["data"]["a"])] for m in msgs],
        subscribe=binance.subscribe_messages(["SUSHIUSDT"], stream="aggTrade"),
        acks=lambda subs: [_dumps({"result": None, "id": s["id"]}) for s in subs],
    )


def okx_format() -> Format:
    msgs = _payloads("okx_trades.txt", lambda m: m.get("arg", {}).get("instId") == "BTC-USDT" and "data" in m)
    return Format(
        venue="OKX", symbols=["BTC-USDT"], options={},
        messages=[_dumps(m) for m in msgs], ids=[[d["tradeId"] for d in m["data"]] for m in msgs],
        subscribe=okx.subscribe_messages(["BTC-USDT"]),
        acks=lambda subs: [_dumps({"event": "subscribe", "arg": a, "connId": "a4d3ae55"}) for s in subs for a in s["args"]],
        answer=lambda raw: b"pong" if raw == b"ping" else None,
    )


def _skl_matches() -> tuple[dict, list[dict]]:
    msgs = _payloads("coinbase_exchange_matches.txt", lambda m: m.get("product_id") == "SKL-USD")
    return next(m for m in msgs if m["type"] == "last_match"), [m for m in msgs if m["type"] == "match"]


def coinbase_exchange_format() -> Format:
    last, matches = _skl_matches()

    def replay(sent: list[bytes]) -> list[bytes]:  # on subscribe the feed repeats the product's last match
        m = orjson.loads(sent[-1]) if sent else last
        return [_dumps({**m, "type": "last_match"})]

    return Format(
        venue="COINBASE", symbols=["SKL-USD"], options={"api": "exchange"},
        messages=[_dumps(m) for m in matches], ids=[[str(m["trade_id"])] for m in matches],
        subscribe=coinbase.subscribe_messages(["SKL-USD"], api="exchange"),
        acks=lambda subs: [_dumps({"type": "subscriptions", "channels": [
            {"name": c, "product_ids": s["product_ids"]} for c in s["channels"]]}) for s in subs],
        heartbeat=_dumps({"type": "heartbeat", "last_trade_id": last["trade_id"], "product_id": "SKL-USD",
                          "sequence": last["sequence"], "time": last["time"]}),
        resubscribe_replay=replay, initial_ids=[str(last["trade_id"])],
    )


def _at_trade(m: dict) -> dict:
    taker = "BUY" if m["side"] == "sell" else "SELL"
    return {"trade_id": str(m["trade_id"]), "product_id": m["product_id"], "price": m["price"], "size": m["size"],
            "side": taker, "time": m["time"]}


def _at(channel: str, events: list, ts: str = "2021-04-17T16:43:40.000000Z") -> dict:
    return {"channel": channel, "client_id": "", "timestamp": ts, "sequence_num": 0, "events": events}


def coinbase_advanced_format() -> Format:
    _, matches = _skl_matches()
    msgs = [_at("market_trades", [{"type": "update", "trades": [_at_trade(m)]}], m["time"]) for m in matches]

    def stamp(raw: bytes, seq: int) -> bytes:
        m = orjson.loads(raw)
        m["sequence_num"] = seq
        return _dumps(m)

    def replay(sent: list[bytes]) -> list[bytes]:  # the market_trades snapshot: recent trades, newest first
        trades = [t for raw in sent[-3:] for t in orjson.loads(raw)["events"][0]["trades"]][::-1]
        return [_dumps(_at("market_trades", [{"type": "snapshot", "trades": trades}]))] if trades else []

    return Format(
        venue="COINBASE", symbols=["SKL-USD"], options={},
        messages=[_dumps(m) for m in msgs], ids=[[str(m["trade_id"])] for m in matches],
        subscribe=coinbase.subscribe_messages(["SKL-USD"]),
        acks=lambda subs: [_dumps(_at("subscriptions", [{"subscriptions": {s["channel"]: s.get("product_ids", [])}}]))
                           for s in subs],
        heartbeat=_dumps(_at("heartbeats", [{"current_time": "2021-04-17 16:43:40", "heartbeat_counter": 1}])),
        stamp=stamp, resubscribe_replay=replay,
    )


def _iso_us(seconds: float) -> str:
    us = int((Decimal(repr(seconds)) * 1_000_000).to_integral_value())
    t = datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def kraken_rest_trades() -> list[dict]:
    rows = orjson.loads(fixture("kraken_rest_trades_xbtusdt.json").read_bytes())["result"]["XBTUSDT"]
    return [{"symbol": "BTC/USDT", "side": "buy" if r[3] == "b" else "sell", "price": float(r[0]), "qty": float(r[1]),
             "ord_type": "limit" if r[4] == "l" else "market", "trade_id": r[6], "timestamp": _iso_us(r[2])}
            for r in rows]


def kraken_format() -> Format:
    trades = kraken_rest_trades()

    def replay(sent: list[bytes]) -> list[bytes]:  # v2 sends the last 50 trades on subscribe (snapshot: true)
        data = [t for raw in sent[-50:] for t in orjson.loads(raw)["data"]]
        return [_dumps({"channel": "trade", "type": "snapshot", "data": data})] if data else []

    return Format(
        venue="KRAKEN", symbols=["BTC/USDT"], options={},
        messages=[_dumps({"channel": "trade", "type": "update", "data": [t]}) for t in trades],
        ids=[[str(t["trade_id"])] for t in trades],
        subscribe=kraken.subscribe_messages(["BTC/USDT"]),
        acks=lambda subs: [_dumps({"method": "subscribe", "result": {"channel": "trade", "snapshot": True,
                                   "symbol": "BTC/USDT"}, "success": True, "time_in": "2025-11-10T17:23:50.000000Z",
                                   "time_out": "2025-11-10T17:23:50.000100Z", "req_id": 1})],
        heartbeat=b'{"channel":"heartbeat"}',
        answer=lambda raw: b'{"method":"pong","req_id":2}' if b'"ping"' in raw else None,
        resubscribe_replay=replay,
    )


FORMATS = {
    "binance": binance_format, "okx": okx_format, "coinbase-exchange": coinbase_exchange_format,
    "coinbase-advanced": coinbase_advanced_format, "kraken": kraken_format,
}
