"""Turning a decoded chunk's columns into a :class:`Decoded` pair: events and dead letters.

Every decoder ends each chunk here, so the rules every format shares live in one place:
``src``/``src_seq``/``feed``/``kind`` are stamped, ``recv_ts`` defaults to ``ts``, prices and
sizes must be finite numbers, :func:`surveil.schemas.validate` runs, and every refused row
becomes a dead letter with its position and exact raw bytes, in file order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import conform, dead_letters, empty_dead_letters, empty_events, validate


class Decoded(NamedTuple):
    events: pa.Table  # exactly surveil.schemas.EVENT_SCHEMA
    dead: pa.Table  # exactly surveil.schemas.DEAD_LETTER_SCHEMA


@dataclass(frozen=True)
class Context:
    """What every chunk of one file shares."""

    source: str  # the file path, as dead letters name it
    step_id: str  # e.g. "decode.fix"
    feed: str
    src: int
    recv_ts_ns: int  # dead letters' receipt time: the file's modification time


class DeadRow(NamedTuple):
    seq: int  # src_seq the row would have had: orders dead letters as in the file
    reason: str
    position: str
    raw: bytes


# where a chunk row came from: row index -> (position, raw bytes)
Locate = Callable[[int], tuple[str, bytes]]

_FINITE_COLUMNS = ("price", "qty", "leaves_qty", "bid", "bid_qty", "ask", "ask_qty")


class Rejects:
    """Per-row reasons a chunk refuses; the first reason given for a row wins."""

    def __init__(self, n: int):
        self.reasons = np.full(n, None, dtype=object)
        self._bad = np.zeros(n, dtype=bool)

    def flag(self, mask, reason_of: Callable[[int], str]) -> None:
        """Give ``reason_of(row)`` to each row where ``mask`` is true (null counts as false)."""
        if isinstance(mask, (pa.Array, pa.ChunkedArray)):
            if not pc.any(mask).as_py():
                return
            mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
        idx = np.flatnonzero(np.asarray(mask, dtype=bool) & ~self._bad)
        for i in idx:
            self.reasons[i] = reason_of(int(i))
        self._bad[idx] = True

    def add(self, bad: dict[int, str]) -> None:
        for i, reason in bad.items():
            if not self._bad[i]:
                self.reasons[i] = reason
                self._bad[i] = True

    def mask(self) -> np.ndarray:
        return self._bad.copy()


def const(value, n: int, typ: pa.DataType = pa.string()) -> pa.Array:
    return pa.repeat(pa.scalar(value, typ), n)


def dead_only(ctx: Context, rows: Iterable[DeadRow]) -> Decoded:
    rows = sorted(rows, key=lambda r: r.seq)
    return Decoded(empty_events(), dead_letters(ctx.source, ctx.step_id, [r[1:] for r in rows], ctx.recv_ts_ns))


def finish(
    cols: dict[str, pa.Array],
    seq: np.ndarray,
    locate: Locate,
    ctx: Context,
    *,
    kind: str | None = None,
    rejects: Rejects | None = None,
    dead: Iterable[DeadRow] = (),
) -> Decoded:
    """Stamp, conform and validate one chunk of decoded columns (all of length ``len(seq)``)."""
    n = len(seq)
    dead = list(dead)
    cols = dict(cols)
    if kind is not None:
        cols["kind"] = const(kind, n)
    feed = cols.get("feed")
    cols["feed"] = const(ctx.feed, n) if feed is None else pc.fill_null(feed, ctx.feed)
    cols["src"] = const(ctx.src, n, pa.int32())
    cols["src_seq"] = pa.array(seq, pa.int64())
    if "ts" in cols:
        recv = cols.get("recv_ts")
        cols["recv_ts"] = cols["ts"] if recv is None else pc.coalesce(recv, cols["ts"])
    table = conform(pa.table(cols)) if n else empty_events()

    rejects = rejects if rejects is not None else Rejects(n)
    for name in _FINITE_COLUMNS:
        if name in cols:
            col = table.column(name)
            if col.null_count < n:
                nonfinite = pc.invert(pc.is_finite(col))
                rejects.flag(nonfinite, lambda i, c=col, name=name: f"{name}: not a finite number ({c[i].as_py()})")
    keep = np.arange(n)
    bad = rejects.mask()
    if bad.any():
        for i in np.flatnonzero(bad):
            dead.append(DeadRow(int(seq[i]), rejects.reasons[i], *locate(int(i))))
        keep = np.flatnonzero(~bad)
        table = table.take(pa.array(keep))
    ok, refused = validate(table)
    if refused.num_rows:
        for i, reason in zip(refused.column("index").to_pylist(), refused.column("reason").to_pylist()):
            row = int(keep[i])
            dead.append(DeadRow(int(seq[row]), reason, *locate(row)))
    if not dead:
        return Decoded(ok, empty_dead_letters())
    dead.sort(key=lambda r: r.seq)
    return Decoded(ok, dead_letters(ctx.source, ctx.step_id, [r[1:] for r in dead], ctx.recv_ts_ns))
