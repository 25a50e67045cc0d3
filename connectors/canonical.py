"""Canonical files: events already in surveil's vocabulary, as Parquet, JSONL or CSV.

Columns (keys, for JSONL) are EVENT_SCHEMA names; a file need not have them all.  ``ts`` and
``recv_ts`` are integer ns since the epoch or ISO-8601 strings (no zone = UTC).  ``feed`` is
``canonical`` unless the file says; ``src``/``src_seq`` are always restamped (they say where the
row came from in *this* run).  ``venue=`` fills rows that have no venue.

CSV and Parquet files must have ``kind`` and ``ts`` columns and no column outside the schema
(a misspelt column would otherwise be dropped without a word); JSONL objects may carry extra
keys, which are ignored.  Empty CSV cells are null.

Every kind of ``surveil.schemas.Kind`` reads the same way, including the two that carry no
market activity: ``reference`` rows (an anchor: ``instrument``, ``price`` = the anchor value,
``venue`` = its source such as ``NAV`` or ``PEG``) — a NAV file is a canonical CSV of them —
and ``settlement`` rows (``venue`` = the shared book, ``platform`` = the affiliate, optional
``instrument`` and ``trade_id``).  A row breaking its kind's rules (a reference without
instrument or price, a settlement without platform) is a dead letter with the reason.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from surveil.schemas import EVENT_SCHEMA

from ._csv import Layout, decode_csv, read_header_names
from ._events import Context, Decoded, DeadRow, Rejects, dead_only, finish
from ._io import LineReader, split_lines
from ._time import time_value_ns, time_column_ns

_RESTAMPED = {"src", "src_seq"}
_TIME = {"ts", "recv_ts"}
_FIELDS = {f.name: f.type for f in EVENT_SCHEMA if f.name not in _RESTAMPED}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)


def check_columns(names: list[str], path: str | Path, what: str) -> None:
    unknown = [n for n in names if n not in EVENT_SCHEMA.names]
    if unknown:
        raise ValueError(f"{path}: {what} has column(s) outside the event schema: {', '.join(map(repr, unknown))}")
    missing = [n for n in ("kind", "ts") if n not in names]
    if missing:
        raise ValueError(f"{path}: {what} lacks column(s) {', '.join(map(repr, missing))}")


# -- one value at a time, for columns whose fast conversion failed ---------------------------

def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.fullmatch(v):
        return float(v)
    raise ValueError


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):  # numeric ids are common in JSON
        return str(v)
    raise ValueError


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError


_CONVERT = {"floating": (_to_float, "a number"), "string": (_to_str, "a string"), "boolean": (_to_bool, "true/false")}


def _kind_of(typ: pa.DataType) -> str:
    if pa.types.is_floating(typ):
        return "floating"
    if pa.types.is_boolean(typ):
        return "boolean"
    return "string"


def convert_column(name: str, values: list | pa.Array) -> tuple[pa.Array, dict[int, str]]:
    """Values of one schema column as an array of its type, and ``{row: reason}`` for the misfits."""
    typ = _FIELDS[name]
    if name in _TIME:
        if isinstance(values, list):
            try:
                values = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                return _time_values(name, values)
        return time_column_ns(values, name)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.type == typ:
            return values, {}
        try:
            return values.cast(typ), {}
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = values.to_pylist()
    else:
        kind = _kind_of(typ)
        if not (kind == "floating" and any(type(v) is bool for v in values)):
            try:
                return pa.array(values, typ), {}
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                pass
    convert, what = _CONVERT[_kind_of(typ)]
    out, bad = [], {}
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(convert(v))
        except (ValueError, OverflowError):
            out.append(None)
            bad[i] = f"{name}: expected {what}, got {v!r}"
    return pa.array(out, typ), bad


def _time_values(name: str, values: list) -> tuple[pa.Array, dict[int, str]]:
    out, bad = [], {}
    for i, v in enumerate(values):
        try:
            out.append(None if v is None else time_value_ns(v))
        except (ValueError, OverflowError) as e:
            out.append(None)
            bad[i] = f"{name}: {e}"
    return pa.array(out, pa.int64()), bad


def _fill_venue(cols: dict, n: int, venue: str | None) -> None:
    if venue is not None:
        cols["venue"] = pa.repeat(venue, n) if "venue" not in cols else pc.fill_null(cols["venue"], venue)


def _columns(source: dict[str, list | pa.Array], n: int, venue: str | None) -> tuple[dict, Rejects]:
    rejects = Rejects(n)
    cols = {}
    for name, values in source.items():
        cols[name], bad = convert_column(name, values)
        rejects.add(bad)
    _fill_venue(cols, n, venue)
    return cols, rejects


# -- JSONL -----------------------------------------------------------------------------------

def decode_jsonl(path: str | Path, *, ctx: Context, venue: str | None = None,
                 chunk_rows: int = 65_536) -> Iterator[Decoded]:
    LineReader(path, max_lines=1).close()  # a missing or unreadable file raises now, not on first next()
    return _jsonl(path, ctx, venue, chunk_rows)


def _jsonl(path, ctx: Context, venue: str | None, chunk_rows: int) -> Iterator[Decoded]:
    seq0 = 0
    with LineReader(path, max_lines=chunk_rows) as reader:
        for block in reader.blocks():
            lines = split_lines(block.data)
            idx = [i for i, line in enumerate(lines) if line]  # blank lines are not rows, as in every format
            out = json_rows([lines[i] for i in idx], range(seq0, seq0 + len(idx)),
                            lambda r, idx=idx, first=block.first_line: f"line {first + idx[r]}", ctx, venue)
            seq0 += len(idx)
            if out.events.num_rows or out.dead.num_rows:
                yield out
        if reader.truncated is not None:
            t = reader.truncated
            yield dead_only(ctx, [DeadRow(seq0, t.reason, f"line {t.line}", t.raw)])


def json_rows(records: Sequence[bytes], seqs: Sequence[int], position: Callable[[int], str], ctx: Context,
              venue: str | None = None) -> Decoded:
    """Canonical JSON objects, one per record (lines of a file, Kafka messages, lines appended to
    a tailed file) → events and dead letters; ``seqs[i]`` and ``position(i)`` name record ``i``.

    Records are not split on newlines (a Kafka message may hold pretty-printed JSON); blank
    records are the caller's business (files skip them, Kafka makes them dead letters).

    >>> ctx = Context(source="kafka:t", step_id="decode.kafka.json", feed="canonical", src=1, recv_ts_ns=0)
    >>> out = json_rows([b'{"kind":"trade","ts":5,"venue":"X","venue_symbol":"A","price":1,"qty":2}', b'[1]'],
    ...                 [10, 11], ["0:10", "0:11"].__getitem__, ctx)
    >>> out.events.column("src_seq").to_pylist(), out.dead.column("reason").to_pylist()
    ([10], ['expected a JSON object, got list'])
    """
    rows, row_idx, dead, row_seqs = [], [], [], []
    for i, (rec, seq) in enumerate(zip(records, seqs)):
        try:
            obj = orjson.loads(rec)
        except orjson.JSONDecodeError as e:
            dead.append(DeadRow(int(seq), f"invalid JSON: {e}", position(i), rec))
            continue
        if isinstance(obj, dict):
            rows.append(obj)
            row_idx.append(i)
            row_seqs.append(int(seq))
        else:
            dead.append(DeadRow(int(seq), f"expected a JSON object, got {type(obj).__name__}", position(i), rec))
    keys = set().union(*rows) if rows else set()
    source = {name: [r.get(name) for r in rows] for name in _FIELDS if name in keys}
    cols, rejects = _columns(source, len(rows), venue)

    def locate(r: int) -> tuple[str, bytes]:
        i = row_idx[r]
        return position(i), records[i]

    return finish(cols, np.array(row_seqs, np.int64), locate, ctx, rejects=rejects, dead=dead)


# -- CSV -------------------------------------------------------------------------------------

def decode_csv_file(path: str | Path, *, ctx: Context, venue: str | None = None,
                    chunk_rows: int = 65_536) -> Iterator[Decoded]:
    names = read_header_names(path) or []
    check_columns(names, path, "canonical CSV header")
    types = {n: (pa.string() if n in _TIME else _FIELDS[n]) for n in names if n in _FIELDS}

    def transform(t: pa.Table):
        source = {}
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_string(col.type):
                col = pc.if_else(pc.equal(col, ""), None, col)
            source[name] = col
        return _columns(source, t.num_rows, venue)

    return decode_csv(path, Layout(tuple(names), types), transform, ctx, kind=None, header=True,
                      chunk_rows=chunk_rows)


# -- Parquet ---------------------------------------------------------------------------------

def decode_parquet(path: str | Path, *, ctx: Context, venue: str | None = None,
                   chunk_rows: int = 65_536) -> Iterator[Decoded]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, pa.ArrowIOError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable Parquet file: {e}") from e
    names = pf.schema_arrow.names
    check_columns(names, path, "Parquet file")
    return _parquet(pf, [n for n in names if n in _FIELDS], ctx, venue, chunk_rows)


def _parquet(pf: pq.ParquetFile, columns: list[str], ctx: Context, venue: str | None,
             chunk_rows: int) -> Iterator[Decoded]:
    seq0 = 0
    with pf:
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
            n = batch.num_rows
            cols, rejects = _columns({name: batch.column(name) for name in columns}, n, venue)

            def locate(r: int, batch=batch, seq0=seq0) -> tuple[str, bytes]:
                row = batch.slice(r, 1).to_pylist()[0]
                return f"row {seq0 + r + 1}", orjson.dumps(row, default=str)

            yield finish(cols, np.arange(seq0, seq0 + n, dtype=np.int64), locate, ctx, rejects=rejects)
            seq0 += n
