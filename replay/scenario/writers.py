"""Files of a scenario: canonical Parquet, tardis-style CSV, reference data, labels.

>>> decimal_text(0.00001, 5), decimal_text(0.1, 1), decimal_text(2.0, 0)
('0.00001', '0.1', '2')
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import REFX
from .fix import num

ROW_GROUP_ROWS = 128 * 1024
TARDIS_TRADES_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
TARDIS_QUOTES_HEADER = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"


def decimal_text(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


# Unique-per-row ids and numbers are not worth dictionary-encoding (it is tried, then dropped, per page).
_NO_DICTIONARY = {"ts", "recv_ts", "src_seq", "price", "qty", "leaves_qty", "bid", "bid_qty", "ask", "ask_qty",
                  "trade_id", "order_id", "client_order_id", "exec_id", "buy_order_id", "sell_order_id"}
_DELTA = ("ts", "recv_ts", "src_seq")


def write_parquet(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, compression="zstd",
                   use_dictionary=[c for c in table.column_names if c not in _NO_DICTIONARY],
                   column_encoding={c: "DELTA_BINARY_PACKED" for c in _DELTA if c in table.column_names})


def _us(col) -> pa.Array:
    """ns timestamps -> integer microseconds text (the values are whole microseconds)."""
    ns = col.cast(pa.int64())
    return pc.cast(pc.divide(ns, 1000), pa.string())


def _write_lines(path: Path, header: str, columns: list) -> int:
    n = len(columns[0])
    with open(path, "wb") as f:
        f.write((header + "\n").encode())
        if n:
            lines = pc.binary_join_element_wise(*columns, ",")
            body = pc.binary_join_element_wise(lines, "\n", "")
            if isinstance(body, pa.ChunkedArray):
                body = body.combine_chunks()
            body = body.cast(pa.large_string())
            off = np.frombuffer(body.buffers()[1], dtype=np.int64)[body.offset: body.offset + n + 1]
            f.write(memoryview(body.buffers()[2])[int(off[0]): int(off[-1])])
    return n


def write_tardis(out: Path, refx: pa.Table) -> dict[str, int]:
    """``REFX_trades.csv`` (and ``REFX_quotes.csv`` when there are quotes), tardis column layout."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    kind = refx.column("kind")
    trades = refx.filter(pc.equal(kind, "trade"))
    ex = pa.array([REFX] * trades.num_rows)
    counts["REFX_trades.csv"] = _write_lines(out / "REFX_trades.csv", TARDIS_TRADES_HEADER, [
        ex, trades.column("venue_symbol"), _us(trades.column("ts")), _us(trades.column("recv_ts")),
        trades.column("trade_id"), trades.column("side"), num(trades.column("price")), num(trades.column("qty")),
    ])
    quotes = refx.filter(pc.equal(kind, "quote"))
    if quotes.num_rows:
        ex = pa.array([REFX] * quotes.num_rows)
        counts["REFX_quotes.csv"] = _write_lines(out / "REFX_quotes.csv", TARDIS_QUOTES_HEADER, [
            ex, quotes.column("venue_symbol"), _us(quotes.column("ts")), _us(quotes.column("recv_ts")),
            num(quotes.column("ask_qty")), num(quotes.column("ask")), num(quotes.column("bid")),
            num(quotes.column("bid_qty")),
        ])
    return counts


def write_reference(out: Path, cfg, population) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "instruments.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["venue", "venue_symbol", "instrument", "tick_size", "lot_size"])
        for listing_of in (lambda s: s.shared, lambda s: s.refx):
            for spec in cfg.instruments:
                li = listing_of(spec)
                w.writerow([li.venue, li.venue_symbol, spec.instrument,
                            decimal_text(li.tick_size, li.tick_decimals), decimal_text(li.lot_size, li.lot_decimals)])
    accounts, links = population.reference_rows()
    with open(out / "accounts.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["platform", "account", "owner_id", "owner_type", "jurisdiction"])
        w.writerows(accounts)
    with open(out / "owner_links.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["owner_id", "group_id"])
        w.writerows(links)


def write_labels(path: Path, labels: dict) -> None:
    path.write_bytes(orjson.dumps(labels, option=orjson.OPT_INDENT_2) + b"\n")
