"""Accumulating decoded rows into Arrow tables: conformed, validated EVENT_SCHEMA plus dead letters.

Rows are appended to plain column lists (one list per column, not one dict per event) and
turned into Arrow only at flush, through :func:`connectors._events.finish`: the same stamping,
finiteness and :func:`surveil.schemas.validate` rules every file decoder applies.  Every row,
event or dead letter, takes the next ``src_seq``, so the numbering says in which order the
client received them.  A dead letter's ``position`` is ``connection:message[:item]`` (message
numbered from 1 within its connection) and its ``recv_ts`` the receipt time of its message.

>>> from connectors.ws import okx
>>> b = BatchBuilder(venue="OKX", source="ws://x", step_id="ws.okx", src=3)
>>> b.add(okx.decode(b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
...       b'"tradeId":"1","px":"30236","sz":"0","side":"buy","ts":"1652459224818"}]}', 7), b"raw", "1:1")
>>> ev, dead = b.flush()
>>> ev.num_rows, dead.column("reason").to_pylist(), dead.column("position").to_pylist()
(0, ['qty must be positive (got 0.0)'], ['1:1:0'])
"""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from surveil.schemas import TS, Feed, Kind, empty_dead_letters, empty_events

from .._events import Context, DeadRow, finish
from ._message import DecodedMessage, TradeRow

_COLUMNS = ("kind", "ts", "recv_ts", "venue_symbol", "price", "qty", "side", "trade_id", "buy_order_id",
            "sell_order_id", "bid", "bid_qty", "ask", "ask_qty")
_TYPES = {"ts": pa.int64(), "recv_ts": pa.int64(), "price": pa.float64(), "qty": pa.float64(), "bid": pa.float64(),
          "bid_qty": pa.float64(), "ask": pa.float64(), "ask_qty": pa.float64()}
_TRADE, _QUOTE = Kind.TRADE.value, Kind.QUOTE.value
_TRADE_FIELDS = ("price", "qty", "side", "trade_id", "buy_order_id", "sell_order_id")  # TradeRow[2:8]
_QUOTE_FIELDS = ("bid", "bid_qty", "ask", "ask_qty")  # QuoteRow[2:6]


class BatchBuilder:
    def __init__(self, *, venue: str, source: str, step_id: str, src: int = 0):
        if not -(2**31) <= src < 2**31:
            raise ValueError(f"src must fit in int32 (got {src})")
        self.venue = venue
        self._ctx = Context(source=source, step_id=step_id, feed=Feed.WEBSOCKET.value, src=src, recv_ts_ns=0)
        self.next_seq = 0  # src_seq of the next row, across flushes and reconnects
        self._reset()

    def _reset(self) -> None:
        self._cols: dict[str, list] = {c: [] for c in _COLUMNS}
        self._seq: list[int] = []
        self._where: list[tuple[str, bytes]] = []  # per row: position, raw message
        self._dead: list[DeadRow] = []
        self._dead_recv: dict[str, int] = {}  # position -> receipt time, for dead letters' recv_ts
        self.first_added = None  # monotonic time of the oldest pending row: the batch's age

    @property
    def pending(self) -> int:
        return len(self._seq) + len(self._dead)

    def _touch(self) -> int:
        if self.first_added is None:
            self.first_added = time.monotonic()
        n = self.next_seq
        self.next_seq += 1
        return n

    def add_dead(self, reason: str, position: str, raw: bytes, recv_ts_ns: int) -> None:
        self._dead.append(DeadRow(self._touch(), reason, position, raw))
        self._dead_recv[position] = recv_ts_ns

    def add(self, msg: DecodedMessage, raw: bytes, position: str, trades: list[TradeRow] | None = None) -> None:
        """Queue a message's rows (``trades``: the ones the gap tracker kept) and item errors."""
        cols, recv = self._cols, msg.recv_ts_ns
        trades = msg.trades if trades is None else trades
        if msg.errors or msg.quotes:
            # one message's rows and errors in item order, so src_seq follows the wire
            entries = [(r.item, r) for r in trades] + [(q.item, q) for q in msg.quotes]
            entries += [(i if i is not None else -1, reason) for i, reason in msg.errors]
            entries.sort(key=lambda e: e[0])
        else:  # the usual case: trades only, already in item order
            entries = [(r.item, r) for r in trades]
        for item, entry in entries:
            where = f"{position}:{item}" if item >= 0 else position
            if isinstance(entry, str):
                self.add_dead(entry, where, raw, recv)
                continue
            self._seq.append(self._touch())
            self._where.append((where, raw))
            self._dead_recv[where] = recv
            cols["ts"].append(entry.ts_ns)
            cols["recv_ts"].append(recv)
            cols["venue_symbol"].append(entry.venue_symbol)
            is_trade = isinstance(entry, TradeRow)
            cols["kind"].append(_TRADE if is_trade else _QUOTE)
            for name, v in zip(_TRADE_FIELDS, entry[2:8] if is_trade else (None,) * 6):
                cols[name].append(v)
            for name, v in zip(_QUOTE_FIELDS, (None,) * 4 if is_trade else entry[2:6]):
                cols[name].append(v)

    def flush(self) -> tuple[pa.Table, pa.Table]:
        """(events, dead letters) of everything pending; either may have no rows."""
        if not self.pending:
            return empty_events(), empty_dead_letters()
        n = len(self._seq)
        arrays = {c: pa.array(v, _TYPES.get(c, pa.string())) for c, v in self._cols.items()}
        arrays["venue"] = pa.repeat(pa.scalar(self.venue, pa.string()), n)
        where = self._where
        out = finish(arrays, np.asarray(self._seq, dtype=np.int64), lambda i: where[i], self._ctx, dead=self._dead)
        dead = out.dead
        if dead.num_rows:  # finish stamps one receipt time per chunk; ours is per message
            recv = [self._dead_recv[p] for p in dead.column("position").to_pylist()]
            dead = dead.set_column(0, "recv_ts", pa.array(recv, pa.int64()).cast(TS))
        self._reset()
        return out.events, dead
