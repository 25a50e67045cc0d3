"""Binance public-data trade files (https://data.binance.vision, ``…/trades/``).

Columns ``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``.  Binance publishes them
without a header; a file with a header is read by its column names (so the 6-column futures
files, without ``is_best_match``, work too).  ``time`` is ms since the epoch, or µs in the
files published since 2025: decided per value (µs from 1e15 up).  The aggressor is the seller
when the buyer was the maker.

The rows carry neither venue nor symbol: ``venue=`` is required, and the symbol is taken from
a file named like Binance's (``BTCUSDT-trades-2024-01-05.csv[.gz]``) unless ``symbol=`` says.

>>> symbol_from_name("data/BTCUSDT-trades-2024-01-05.csv.gz"), symbol_from_name("x.csv")
('BTCUSDT', None)
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import Kind

from ._csv import Layout, decode_csv, read_header_names
from ._events import Context, Decoded, Rejects
from ._io import LineReader
from ._time import ms_or_us_to_ns

COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
REQUIRED = ("id", "price", "qty", "time", "is_buyer_maker")
_TYPES = {"id": pa.string(), "price": pa.float64(), "qty": pa.float64(), "time": pa.int64(),
          "is_buyer_maker": pa.bool_()}
_FILE_NAME = re.compile(r"([A-Z0-9]+)-trades-\d{4}-\d{2}(?:-\d{2})?\.csv(?:\.gz)?")
_INT = re.compile(rb"\d+")
_BOOL = {b"true", b"false", b"True", b"False", b"TRUE", b"FALSE"}


def symbol_from_name(path: str | Path) -> str | None:
    m = _FILE_NAME.fullmatch(Path(path).name)
    return m.group(1) if m else None


def is_binance_header(names: list[str]) -> bool:
    return set(REQUIRED) <= set(names)


def looks_headerless(first_line: bytes) -> bool:
    """A data line of Binance's published layout: 7 fields, integer id, true/false flags."""
    fields = first_line.rstrip(b"\r").split(b",")
    return len(fields) == 7 and bool(_INT.fullmatch(fields[0])) and fields[5] in _BOOL and fields[6] in _BOOL


def _transform(venue: str, symbol: str):
    def transform(t: pa.Table):
        rejects = Rejects(t.num_rows)
        ts, bad = ms_or_us_to_ns(t.column("time"))
        rejects.flag(bad, lambda i: f"time: {t.column('time')[i].as_py()} is out of range")
        maker = t.column("is_buyer_maker")
        rejects.flag(pc.is_null(maker), lambda i: "is_buyer_maker: missing")
        n = t.num_rows
        trade_id = t.column("id")
        return {
            "ts": ts,
            "venue": pa.repeat(venue, n),
            "venue_symbol": pa.repeat(symbol, n),
            "price": t.column("price"),
            "qty": t.column("qty"),
            "side": pc.if_else(maker, "sell", "buy"),
            "trade_id": pc.if_else(pc.equal(trade_id, ""), None, trade_id),
        }, rejects

    return transform


def decode(
    path: str | Path,
    *,
    ctx: Context,
    venue: str | None,
    symbol: str | None = None,
    chunk_rows: int = 65_536,
) -> Iterator[Decoded]:
    """Check header, venue and symbol now (raising ValueError), decode lazily."""
    with LineReader(path, max_lines=1) as reader:
        first = reader.peek_line()
    if first is None:
        names, header = COLUMNS, False
    elif looks_headerless(first):
        names, header = COLUMNS, False
    else:
        names, header = tuple(read_header_names(path) or ()), True
        if not is_binance_header(list(names)):
            raise ValueError(
                f"{path}: not a Binance trades CSV: expected {len(COLUMNS)} headerless columns "
                f"({','.join(COLUMNS)}) or a header with {', '.join(REQUIRED)}"
            )
    if venue is None:
        raise ValueError(f"{path}: Binance trade files carry no venue; pass it with --venue (venue=...)")
    symbol = symbol or symbol_from_name(path)
    if symbol is None:
        raise ValueError(
            f"{path}: cannot tell the symbol: the file name does not follow Binance's "
            f"SYMBOL-trades-YYYY-MM[-DD].csv; pass symbol=..."
        )
    layout = Layout(names, dict(_TYPES))
    return decode_csv(path, layout, _transform(venue, symbol), ctx, kind=Kind.TRADE.value, header=header,
                      chunk_rows=chunk_rows)
