"""tardis.dev normalised CSV ("downloadable CSV files"): trades and top-of-book quotes.

Times are µs since the epoch: ``timestamp`` is the exchange's (→ ``ts``), ``local_timestamp``
tardis's capture time (→ ``recv_ts``).  The venue is the ``exchange`` column (``venue=``
only fills empty cells).  In trades ``side`` is the aggressor, ``unknown`` → null.
Docs: https://docs.tardis.dev/downloadable-csv-files/data-types
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import Kind

from ._csv import Layout, decode_csv, read_header_names
from ._events import Context, Decoded, Rejects
from ._time import scale_to_ns

TRADE_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")
QUOTE_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price", "bid_price",
                 "bid_amount")
_COMMON = {"exchange": pa.string(), "symbol": pa.string(), "timestamp": pa.int64(), "local_timestamp": pa.int64()}
_TRADE_TYPES = {**_COMMON, "id": pa.string(), "side": pa.string(), "price": pa.float64(), "amount": pa.float64()}
_QUOTE_TYPES = {**_COMMON, "ask_amount": pa.float64(), "ask_price": pa.float64(), "bid_price": pa.float64(),
                "bid_amount": pa.float64()}


def _cols(names: list[str]) -> str:
    return ",".join(names[:8]) + (f",... ({len(names)} columns)" if len(names) > 8 else "") if names else "(none)"


def kind_of(names: list[str]) -> Kind | None:
    """Which tardis data type a header is (trades or quotes), None if neither."""
    have = set(names)
    if have >= set(TRADE_COLUMNS):
        return Kind.TRADE
    if have >= set(QUOTE_COLUMNS):
        return Kind.QUOTE
    return None


def is_tardis_header(names: list[str]) -> bool:
    return names[:4] == list(TRADE_COLUMNS[:4])


def layout_of(path: str | Path) -> tuple[Layout, Kind]:
    names = read_header_names(path) or []
    kind = kind_of(names)
    if kind is None:
        raise ValueError(
            f"{path}: tardis CSV with columns {_cols(names)} is not supported; "
            f"expected trades ({','.join(TRADE_COLUMNS)}) or quotes ({','.join(QUOTE_COLUMNS)})"
        )
    return Layout(tuple(names), _TRADE_TYPES if kind is Kind.TRADE else _QUOTE_TYPES), kind


def _common(t: pa.Table, venue: str | None, rejects: Rejects) -> dict[str, pa.Array]:
    ts, bad_ts = scale_to_ns(t.column("timestamp"), 1_000)
    recv, bad_recv = scale_to_ns(t.column("local_timestamp"), 1_000)
    rejects.flag(bad_ts, lambda i: f"timestamp: {t.column('timestamp')[i].as_py()} µs is out of range")
    rejects.flag(bad_recv, lambda i: f"local_timestamp: {t.column('local_timestamp')[i].as_py()} µs is out of range")
    exchange = pc.if_else(pc.equal(t.column("exchange"), ""), None, t.column("exchange"))
    symbol = pc.if_else(pc.equal(t.column("symbol"), ""), None, t.column("symbol"))
    return {
        "ts": ts,
        "recv_ts": recv,
        "venue": exchange if venue is None else pc.fill_null(exchange, venue),
        "venue_symbol": symbol,
    }


def _trades(venue: str | None):
    def transform(t: pa.Table):
        rejects = Rejects(t.num_rows)
        cols = _common(t, venue, rejects)
        side = t.column("side")
        cols.update(
            price=t.column("price"),
            qty=t.column("amount"),
            side=pc.if_else(pc.is_in(side, pa.array(["unknown", ""])), None, side),
            trade_id=pc.if_else(pc.equal(t.column("id"), ""), None, t.column("id")),
        )
        return cols, rejects

    return transform


def _quotes(venue: str | None):
    def transform(t: pa.Table):
        rejects = Rejects(t.num_rows)
        cols = _common(t, venue, rejects)
        cols.update(bid=t.column("bid_price"), bid_qty=t.column("bid_amount"), ask=t.column("ask_price"),
                    ask_qty=t.column("ask_amount"))
        return cols, rejects

    return transform


def decode(path: str | Path, *, ctx: Context, venue: str | None = None, chunk_rows: int = 65_536) -> Iterator[Decoded]:
    """Check the header now (a bad one raises here), decode lazily."""
    layout, kind = layout_of(path)
    transform = _trades(venue) if kind is Kind.TRADE else _quotes(venue)
    return decode_csv(path, layout, transform, ctx, kind=kind.value, header=True, chunk_rows=chunk_rows)
