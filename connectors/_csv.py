"""The block-wise CSV engine every CSV format (canonical, tardis, Binance, ccxt) runs on.

A block of whole lines is parsed by one ``pyarrow.csv.read_csv`` call with the format's
column types.  If that call refuses the block (a bad number, a short line, bad UTF-8),
the block alone is parsed again line by line in Python, which finds the culprit lines,
sends them to dead letters with a reason and their raw bytes, and keeps the others.

A format supplies a :class:`Layout` (its columns and their Arrow types) and a
``transform(table) -> (event columns, Rejects | None)`` working on whole columns;
:func:`decode_csv` does the rest.  Blank lines are not data rows: they are skipped and
not counted in ``src_seq``.  A quoted value may not span lines (its pieces become dead letters).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from ._events import Context, Decoded, DeadRow, Rejects, dead_only, finish
from ._io import Block, LineReader, split_lines


class Layout(NamedTuple):
    names: tuple[str, ...]  # every column of the file, in file order
    types: dict[str, pa.DataType]  # the columns to read, by name, with their types


Transform = Callable[[pa.Table], tuple[dict[str, pa.Array], Rejects | None]]


def header_names(line: bytes, path: str | Path) -> list[str]:
    """Column names from a header line; padding spaces are dropped."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: header is not valid UTF-8 ({e})") from None
    return [name.strip() for name in next(csv.reader([text]))]


def _parse_fast(data: bytes, layout: Layout) -> pa.Table | None:
    try:
        return pv.read_csv(
            pa.py_buffer(data),
            read_options=pv.ReadOptions(column_names=list(layout.names), block_size=1 << 22),
            parse_options=pv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pv.ConvertOptions(
                column_types=layout.types,
                include_columns=list(layout.types),
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None


_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def _convert(text: str, typ: pa.DataType):
    """One CSV field as Arrow's CSV reader would read it; raises ValueError with a reason."""
    if pa.types.is_string(typ):
        return text
    if text == "":
        return None
    if text != text.strip() or "_" in text:  # Python's float()/int() accept these, Arrow does not
        raise ValueError
    if pa.types.is_floating(typ):
        return float(text)
    if pa.types.is_integer(typ):
        return int(text)
    if pa.types.is_boolean(typ):
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError
    raise TypeError(f"no CSV conversion for {typ}")


_WHAT = {"floating": "a number", "integer": "an integer", "boolean": "true/false"}


def _what(typ: pa.DataType) -> str:
    if pa.types.is_floating(typ):
        return _WHAT["floating"]
    if pa.types.is_integer(typ):
        return _WHAT["integer"]
    return _WHAT["boolean"]


class Parsed(NamedTuple):
    table: pa.Table
    row_line: np.ndarray  # index within the block of each table row's line
    line_seq: np.ndarray  # per block line: ordinal among the block's data rows (-1: blank line)
    dead: list[tuple[int, str]]  # (line index in block, reason)


def parse_block(data: bytes, n_lines: int, layout: Layout) -> Parsed:
    # Arrow also ends a row at a lone CR; lines here end at LF only, so such a block goes slow
    lone_cr = b"\r" in data and data.count(b"\r") != data.count(b"\r\n")
    table = None if lone_cr else _parse_fast(data, layout)
    if table is not None and table.num_rows == n_lines:
        rows = np.arange(n_lines)
        return Parsed(table, rows, rows, [])
    lines = split_lines(data)
    blank = np.fromiter((not ln for ln in lines), dtype=bool, count=len(lines))
    line_seq = np.where(blank, -1, np.cumsum(~blank) - 1)
    if table is not None and table.num_rows == len(lines) - int(blank.sum()):  # blank lines made the difference
        return Parsed(table, np.flatnonzero(~blank), line_seq, [])
    return _parse_slow(lines, blank, line_seq, layout)


def _parse_slow(lines: list[bytes], blank: np.ndarray, line_seq: np.ndarray, layout: Layout) -> Parsed:
    width = len(layout.names)
    wanted = [(layout.names.index(name), name, typ) for name, typ in layout.types.items()]
    values: dict[str, list] = {name: [] for name in layout.types}
    good: list[int] = []
    dead: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if blank[i]:
            continue
        try:
            fields = next(csv.reader([line.decode("utf-8")], strict=True))
        except UnicodeDecodeError as e:
            dead.append((i, f"not valid UTF-8 ({e.reason} at byte {e.start})"))
            continue
        except csv.Error as e:
            dead.append((i, f"malformed CSV line ({e})"))
            continue
        if len(fields) != width:
            dead.append((i, f"expected {width} fields, got {len(fields)}"))
            continue
        row = []
        for col, name, typ in wanted:
            try:
                row.append(_convert(fields[col], typ))
            except ValueError:
                dead.append((i, f"{name}: cannot parse {fields[col]!r} as {_what(typ)}"))
                break
        else:
            good.append(i)
            for (_, name, _), v in zip(wanted, row):
                values[name].append(v)
    table = pa.table({name: pa.array(values[name], typ) for name, typ in layout.types.items()})
    return Parsed(table, np.array(good, dtype=np.int64), line_seq, dead)


def read_header_names(path: str | Path) -> list[str] | None:
    """The header line's column names (None for an empty file); the file is closed again."""
    with LineReader(path, max_lines=1) as reader:
        line = reader.read_header()
    return None if line is None else header_names(line, path)


def decode_csv(
    path: str | Path,
    layout: Layout,
    transform: Transform,
    ctx: Context,
    *,
    kind: str | None,
    header: bool,
    chunk_rows: int,
) -> Iterator[Decoded]:
    """Decode a CSV file block by block (its header, if ``header``, skipped)."""
    seq0 = 0
    with LineReader(path, max_lines=chunk_rows) as reader:
        if header:
            reader.read_header()
        for block in reader.blocks():
            out, n_rows = decode_block(block, layout, transform, ctx, kind=kind, seq0=seq0)
            seq0 += n_rows
            if out.events.num_rows or out.dead.num_rows:
                yield out
        if reader.truncated is not None:
            t = reader.truncated
            yield dead_only(ctx, [DeadRow(seq0, t.reason, f"line {t.line}", t.raw)])


def decode_block(
    block: Block, layout: Layout, transform: Transform, ctx: Context, *, kind: str | None, seq0: int
) -> tuple[Decoded, int]:
    parsed = parse_block(block.data, block.n_lines, layout)
    lines: list[bytes] | None = None

    def raw_of(li: int) -> bytes:
        nonlocal lines
        if lines is None:
            lines = split_lines(block.data)
        return lines[li]

    def locate(row: int) -> tuple[str, bytes]:
        li = int(parsed.row_line[row])
        return f"line {block.first_line + li}", raw_of(li)

    pre_dead = [
        DeadRow(seq0 + int(parsed.line_seq[li]), reason, f"line {block.first_line + li}", raw_of(li))
        for li, reason in parsed.dead
    ]
    cols, rejects = transform(parsed.table)
    seq = seq0 + parsed.line_seq[parsed.row_line]
    n_rows = int(parsed.line_seq.max(initial=-1)) + 1
    return finish(cols, seq, locate, ctx, kind=kind, rejects=rejects, dead=pre_dead), n_rows
