"""ccxt-style trade tapes (``fetch_trades`` dumped to CSV), and the Cryptopia variant.

ccxt: header ``symbol,timestamp,datetime,side,price,amount,<cost|btc_volume|...>`` (an ``id``
column, if present, becomes ``trade_id``); ``timestamp`` is ms since the epoch, ``side`` the
taker's.  ``symbol`` is ccxt's unified ``BASE/QUOTE``, so it fills both ``venue_symbol`` and
``instrument``.  The files carry no venue: ``venue=`` is required.

Cryptopia (Xu & Livshits' case study): header ``TIMESTAMP,TYPE, PRICE<Q> , AMOUNT<B> , TOTAL<Q>``
with ``d/m/Y h:m:s AM/PM`` times (UTC), newest first (kept in file order: sorting is the
merge's job); the symbol ``B/Q`` comes from the column names.
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
from ._time import scale_to_ns

REQUIRED = ("symbol", "timestamp", "side", "price", "amount")
_TYPES = {"symbol": pa.string(), "timestamp": pa.int64(), "side": pa.string(), "price": pa.float64(),
          "amount": pa.float64()}
_CRYPTOPIA = re.compile(r"(PRICE|AMOUNT)([A-Z0-9]+)")


def is_ccxt_header(names: list[str]) -> bool:
    return set(REQUIRED) <= set(names) or cryptopia_symbol(names) is not None


def cryptopia_symbol(names: list[str]) -> str | None:
    """``BASE/QUOTE`` from a Cryptopia header (``TIMESTAMP,TYPE,PRICEBTC,AMOUNTBVB,...``), else None."""
    upper = [n.upper() for n in names]
    if upper[:2] != ["TIMESTAMP", "TYPE"]:
        return None
    found = dict(m.groups() for n in upper[2:] if (m := _CRYPTOPIA.fullmatch(n)))
    if set(found) != {"PRICE", "AMOUNT"}:
        return None
    return f"{found['AMOUNT']}/{found['PRICE']}"


def _blank_to_null(col):
    return pc.if_else(pc.equal(col, ""), None, col)


def _ccxt(venue: str):
    def transform(t: pa.Table):
        rejects = Rejects(t.num_rows)
        ts, bad = scale_to_ns(t.column("timestamp"), 1_000_000)
        rejects.flag(bad, lambda i: f"timestamp: {t.column('timestamp')[i].as_py()} ms is out of range")
        symbol = _blank_to_null(t.column("symbol"))
        cols = {
            "ts": ts,
            "venue": pa.repeat(venue, t.num_rows),
            "venue_symbol": symbol,
            "instrument": symbol,
            "side": _blank_to_null(t.column("side")),
            "price": t.column("price"),
            "qty": t.column("amount"),
        }
        if "id" in t.column_names:
            cols["trade_id"] = _blank_to_null(t.column("id"))
        return cols, rejects

    return transform


def _cryptopia(venue: str, names: tuple[str, ...], symbol: str):
    time_col, side_col = names[0], names[1]
    price_col = next(n for n in names if n.upper().startswith("PRICE"))
    qty_col = next(n for n in names if n.upper().startswith("AMOUNT"))

    def transform(t: pa.Table):
        rejects = Rejects(t.num_rows)
        text = t.column(time_col)
        when = pc.strptime(text, format="%d/%m/%Y %I:%M:%S %p", unit="s", error_is_null=True)
        # strptime rolls 31/11 over to 1/12: the date it read must be the date written
        written = pc.extract_regex(text, r"^\s*(?P<d>\d{1,2})/(?P<m>\d{1,2})/")
        same_date = pc.and_(pc.equal(pc.day(when), pc.cast(pc.struct_field(written, "d"), pa.int64())),
                            pc.equal(pc.month(when), pc.cast(pc.struct_field(written, "m"), pa.int64())))
        rejects.flag(pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(same_date, False))),
                     lambda i: f"{time_col}: cannot parse {text[i].as_py()!r} as d/m/Y h:m:s AM/PM")
        n = t.num_rows
        return {
            "ts": pc.multiply(when.cast(pa.int64()), 1_000_000_000),
            "venue": pa.repeat(venue, n),
            "venue_symbol": pa.repeat(symbol, n),
            "instrument": pa.repeat(symbol, n),
            "side": _blank_to_null(pc.utf8_lower(t.column(side_col))),
            "price": t.column(price_col),
            "qty": t.column(qty_col),
        }, rejects

    return transform


def decode(path: str | Path, *, ctx: Context, venue: str | None, chunk_rows: int = 65_536) -> Iterator[Decoded]:
    """Check the header and venue now (raising ValueError), decode lazily."""
    names = tuple(read_header_names(path) or ())
    if not is_ccxt_header(list(names)):
        missing = [c for c in REQUIRED if c not in names]
        raise ValueError(f"{path}: not a ccxt trades CSV: missing column(s) {', '.join(map(repr, missing))}")
    if venue is None:
        raise ValueError(f"{path}: ccxt trade files carry no venue; pass it with --venue (venue=...)")
    symbol = cryptopia_symbol(list(names))
    if symbol is None:
        types = dict(_TYPES)
        if "id" in names:
            types["id"] = pa.string()
        layout, transform = Layout(names, types), _ccxt(venue)
    else:
        types = {names[0]: pa.string(), names[1]: pa.string(), **{n: pa.float64() for n in names[2:4]}}
        layout, transform = Layout(names, types), _cryptopia(venue, names, symbol)
    return decode_csv(path, layout, transform, ctx, kind=Kind.TRADE.value, header=True, chunk_rows=chunk_rows)
