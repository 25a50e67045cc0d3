"""Live WebSocket public trade feeds: venue decoders, a resilient client, a threaded wrapper.

Every venue module (``binance``, ``okx``, ``coinbase``, ``kraken``) has the same shape, so the
next venue is one more module of that shape:

* ``VENUE`` (the canonical venue name), ``URL`` (default endpoint), ``HEARTBEAT`` (what the
  client must do to keep a connection alive and to tell it is dead);
* ``endpoint(**options) -> str`` and ``subscribe_messages(symbols, **options) -> list[str]``
  (same options: e.g. ``stream="aggTrade"`` for Binance, ``api="exchange"`` for Coinbase,
  ``version=1`` for Kraken);
* ``decode(raw: bytes, recv_ts_ns: int) -> DecodedMessage``: trades (and quotes) as rows, with
  the control information (ack, heartbeat, pong, venue error, sequence number); it never raises.

Rows become tables (EVENT_SCHEMA, ``feed=websocket``, ``venue_symbol`` as the venue writes it)
in one place, ``_batch``; numbering gaps and duplicates are accounted in ``_gaps``.

>>> from connectors.ws import VENUES, decode_messages
>>> sorted(VENUES)
['BINANCE', 'COINBASE', 'KRAKEN', 'OKX']
>>> d = decode_messages("KRAKEN", [(b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD",'
...     b'"side":"buy","price":105944.2,"qty":0.00027625,"ord_type":"limit","trade_id":10218208,'
...     b'"timestamp":"2023-10-06T17:35:55.440295Z"}]}', 1696613755500000000)])
>>> from surveil.schemas import to_rows
>>> r = to_rows(d.events)[0]
>>> r["venue"], r["venue_symbol"], r["trade_id"], r["price"], r["side"], r["ts"], r["feed"]
('KRAKEN', 'BTC/USD', '10218208', 105944.2, 'buy', 1696613755440295000, 'websocket')
"""
from __future__ import annotations

from ._message import Control, DecodedMessage, Heartbeat, QuoteRow, TradeRow
from ._pipeline import Item, Pipeline, Stats, decode_messages, step_id
from ._venues import VENUES, venue_module
from .client import ClientConfig, WsClient
from .thread import ThreadedFeed

__all__ = [
    "VENUES", "ClientConfig", "Control", "DecodedMessage", "Heartbeat", "Item", "Pipeline", "QuoteRow", "Stats",
    "ThreadedFeed", "TradeRow", "WsClient", "decode_messages", "step_id", "venue_module",
]
