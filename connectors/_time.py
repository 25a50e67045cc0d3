"""Turning the time representations files use into integer nanoseconds since the epoch (UTC).

Vectorised first (one Arrow cast for a whole column); only when that fails does a column
fall back to one value at a time, and then each value is tried with Arrow's own parser
before ours, so whether a value is accepted never depends on which chunk it landed in.

>>> parse_time_ns("2020-10-23T17:00:09.370123456Z")
1603472409370123456
>>> parse_time_ns("2020-10-23 19:00:09+02:00") == parse_time_ns("2020-10-23T17:00:09")
True
>>> parse_time_ns("1603472409370000000")
1603472409370000000
"""
from __future__ import annotations

import calendar
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TS_UTC = pa.timestamp("ns", tz="UTC")
_TS_NAIVE = pa.timestamp("ns")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_INT = re.compile(r"[+-]?\d+")


def parse_time_ns(text: str) -> int:
    """One time value as ns since the epoch: an integer (already ns) or an ISO-8601 string.

    A string without a zone offset is taken as UTC.  Raises ValueError saying what is wrong.
    """
    s = text.strip()
    if _INT.fullmatch(s):
        return int(s)
    m = _ISO.fullmatch(s)
    if not m:
        raise ValueError(f"cannot parse {text!r} as a time (integer ns or ISO-8601)")
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    try:
        secs = calendar.timegm((int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0)))
        _check_fields(int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), int(y))
    except (ValueError, OverflowError) as e:
        raise ValueError(f"cannot parse {text!r} as a time: {e}") from None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
        secs -= sign * offset
    return secs * 1_000_000_000 + int((frac or "").ljust(9, "0"))


def _check_fields(mo: int, d: int, h: int, mi: int, s: int, y: int) -> None:
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h < 24 and mi < 60 and s < 61):
        raise ValueError("field out of range")


def time_value_ns(v) -> int:
    """One time from a JSON value or string: int ns, or a string Arrow or :func:`parse_time_ns` reads."""
    if isinstance(v, bool):
        raise ValueError(f"cannot parse {v!r} as a time")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        for typ in (_TS_UTC, _TS_NAIVE):  # Arrow's parser first, for the same answer as the fast path
            try:
                return pc.cast(pa.array([v]), typ).cast(pa.int64())[0].as_py()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        return parse_time_ns(v)
    raise ValueError(f"cannot parse {v!r} as a time (integer ns or ISO-8601 string)")


def _try_cast_ns(col: pa.Array) -> pa.Array | None:
    t = col.type
    if pa.types.is_integer(t):
        return col.cast(pa.int64())
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return col.cast(pa.timestamp("ns")).cast(pa.int64())
        return col.cast(_TS_UTC).cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        for typ in (pa.int64(), _TS_UTC, _TS_NAIVE):
            try:
                return pc.cast(col, typ).cast(pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.int64())
    return None


def time_column_ns(col: pa.Array | pa.ChunkedArray, name: str) -> tuple[pa.Array, dict[int, str]]:
    """A column of times as int64 ns, and ``{row: reason}`` for values that are not times.

    Refused values are null in the returned column.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    fast = _try_cast_ns(col)
    if fast is not None:
        return fast, {}
    out: list[int | None] = []
    bad: dict[int, str] = {}
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(time_value_ns(v.isoformat() if hasattr(v, "isoformat") else v))
        except (ValueError, OverflowError) as e:
            out.append(None)
            bad[i] = f"{name}: {e}"
    return pa.array(out, pa.int64()), bad


_NS_MAX = np.iinfo(np.int64).max


def _int_values(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    v = col.cast(pa.int64())
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    return pc.fill_null(v, 0).to_numpy(), np.asarray(v.is_valid(), dtype=bool)


def scale_to_ns(col: pa.Array | pa.ChunkedArray, factor: int) -> tuple[pa.Array, np.ndarray]:
    """Integer epoch times in a coarser unit (``factor`` ns per unit) as int64 ns.

    Returns the column and a mask of values that were present but out of range
    (negative, or past what int64 ns can hold); those are null in the column.
    """
    arr, valid = _int_values(col)
    bad = valid & ((arr < 0) | (arr > _NS_MAX // factor))
    ok = valid & ~bad
    return pa.array(np.where(ok, arr, 0) * factor, pa.int64(), mask=~ok), bad


def ms_or_us_to_ns(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Epoch times in ms or µs, told apart per value by magnitude (µs from 1e15 up)."""
    arr, valid = _int_values(col)
    us = arr >= 10**15
    factor = np.where(us, 1_000, 1_000_000)
    bad = valid & ((arr < 0) | (arr > _NS_MAX // factor))
    ok = valid & ~bad
    return pa.array(np.where(ok, arr, 0) * factor, pa.int64(), mask=~ok), bad
