"""FIX UTCTimestamp (``YYYYMMDD-HH:MM:SS[.sss[sss[sss]]]``) → int64 ns, vectorised.

Two timestamps per ExecutionReport make this a hot spot: ``strptime`` costs ~0.3 µs a value.
Here each value's 27 bytes are read as four 8-byte words and checked and converted with
whole-array integer operations (SWAR: "SIMD within a register"), about 20 per word.

>>> ns, ok = parse(pa.array(["20240105-12:30:00.123456", "20240230-00:00:00", None]))
>>> int(ns[0]), ok.tolist()
(1704457800123456000, [True, False, False])
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

_U = np.uint64
_ZEROS = _U(0x3030303030303030)
_LO = _U(0x0F0F0F0F0F0F0F0F)
_HI = _U(0xF0F0F0F0F0F0F0F0)
_SIXES = _U(0x0606060606060606)
_LENGTHS = np.array([17, 21, 24, 27])


def _bytes_mask(positions) -> int:
    return sum(0xFF << (8 * p) for p in positions)


# word 1 is bytes 8..15 "-HH:MM:S", word 2 bytes 16..23 "S.ffffff", word 3 bytes 24..26 "fff"
_W1_DIGITS = _U(_bytes_mask([1, 2, 4, 5, 7]))
_W1_SEPS = _U(_bytes_mask([0, 3, 6]))
_W1_SEP_VALUES = _U(ord("-") | ord(":") << 24 | ord(":") << 48)
# per length class (17, 21, 24, 27): which bytes of words 2 and 3 are digits, and whether '.' is
_W2_DIGITS = np.array([_bytes_mask([0]), _bytes_mask([0, 2, 3, 4]), _bytes_mask([0, 2, 3, 4, 5, 6, 7]),
                       _bytes_mask([0, 2, 3, 4, 5, 6, 7])], dtype=_U)
_W2_DOT = np.array([0, _bytes_mask([1]), _bytes_mask([1]), _bytes_mask([1])], dtype=_U)
_W3_DIGITS = np.array([0, 0, 0, _bytes_mask([0, 1, 2])], dtype=_U)
_FRAC_USED = np.array([0, _bytes_mask([0, 1, 2]), _bytes_mask(range(6)), _bytes_mask(range(8))], dtype=_U)
_DAYS_BEFORE_MONTH = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64)
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _digits_ok(y: np.ndarray, mask) -> np.ndarray:
    """Whether the bytes under ``mask`` of ``y`` (= word XOR '0'*8) are all 0..9."""
    y = y & mask
    return (((y & _HI) | ((y & _LO) + (_SIXES & mask))) & _HI) == 0


def fold8(v: np.ndarray) -> np.ndarray:
    """Eight digit values (one per byte, first digit in the low byte) → their decimal number."""
    with np.errstate(over="ignore"):
        v = (v * _U(10) + (v >> _U(8))) & _U(0x00FF00FF00FF00FF)
        v = (v * _U(100) + (v >> _U(16))) & _U(0x0000FFFF0000FFFF)
        v = (v * _U(10000) + (v >> _U(32))) & _U(0xFFFFFFFF)
    return v.view(np.int64)  # below 2**32: the same numbers


def parse(s: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Times as int64 ns and a mask of the values that parsed (nulls are not ok)."""
    n = len(s)
    if n == 0 or s.null_count == n:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    binary = s.type == pa.binary()  # the same layout as string: read as is
    if not binary:
        s = s.cast(pa.string())
    offsets = np.frombuffer(s.buffers()[1], np.int32, count=n + 1, offset=4 * s.offset)
    # only this array's bytes: a slice shares the data buffer of every column it was cut from
    lo, hi = int(offsets[0]), int(offsets[-1])
    raw = b"".join((memoryview(s.buffers()[2] or b"")[lo:hi], bytes(32)))
    length = np.diff(offsets)
    valid = np.asarray(s.is_valid(), dtype=bool)
    width = int(length[0])
    if (length == width).all():  # all of one length (the usual case): one class, words at a fixed stride
        cls = min(int(np.searchsorted(_LENGTHS, width)), 3)
        ok = valid & (_LENGTHS[cls] == width)
        y0, y1, y2, y3 = (np.ndarray((n,), "<u8", raw, 8 * i, (width,)) ^ _ZEROS for i in range(4))
    else:
        cls = np.searchsorted(_LENGTHS, length)
        ok = (cls < 4) & (_LENGTHS[np.minimum(cls, 3)] == length) & valid
        cls = np.minimum(cls, 3)
        words = np.ndarray((len(raw) - 7,), dtype="<u8", buffer=raw, strides=(1,))
        start = (offsets[:-1] - lo).astype(np.intp)  # intp: numpy gathers with it as is
        y0, y1, y2, y3 = (words[start + 8 * i] ^ _ZEROS for i in range(4))
    ok &= _digits_ok(y0, _U(-1 & 0xFFFFFFFFFFFFFFFF)) & _digits_ok(y1, _W1_DIGITS)
    ok &= ((y1 ^ _ZEROS) & _W1_SEPS) == _W1_SEP_VALUES
    ok &= _digits_ok(y2, _W2_DIGITS[cls]) & _digits_ok(y3, _W3_DIGITS[cls])
    ok &= ((y2 ^ _ZEROS) & _W2_DOT[cls]) == (_U(ord(".") << 8) & _W2_DOT[cls])

    # YYYYMMDD folded once: 16-bit lanes YY, YY, MM, DD (no division; digits unchecked here
    # give garbage below 256 per lane, refused by ``ok`` and kept inside the tables' bounds)
    with np.errstate(over="ignore"):
        pairs = ((y0 * _U(10) + (y0 >> _U(8))) & _U(0x00FF00FF00FF00FF)).view(np.int64)
    year = (pairs & 0xFF) * 100 + ((pairs >> 16) & 0xFF)
    month, day = (pairs >> 32) & 0xFF, pairs >> 48
    digit = lambda y, p: ((y >> _U(8 * p)) & _U(0xF)).view(np.int64)  # noqa: E731
    # "-HH:MM:S" folded the same way: bytes 1 and 4 hold HH and MM, byte 7 ten times S's first digit
    hms = y1 & _W1_DIGITS
    with np.errstate(over="ignore"):
        hms = (hms * _U(10) + (hms >> _U(8))).view(np.int64)
    hour, minute = (hms >> 8) & 0xFF, (hms >> 32) & 0xFF
    sec = ((hms >> 56) & 0xFF) + digit(y2, 0)
    frac8 = ((y2 >> _U(16)) | (y3 << _U(48))) & _FRAC_USED[cls]  # fraction digits 1..8, unused = 0
    frac_ns = fold8(frac8) * 10 + np.where(cls == 3, digit(y3, 2), 0)

    month_ok = (month >= 1) & (month <= 12)
    m = np.where(month_ok, month, 1)
    leap = _LEAP[year]
    ok &= month_ok & (day >= 1) & (day <= _DAYS_IN_MONTH[m] - ((m == 2) & ~leap))
    ok &= (hour < 24) & (minute < 60) & (sec <= 60)
    days = _DAYS_BEFORE_YEAR[year] + _DAYS_BEFORE_MONTH[m] + ((m > 2) & leap) + day - 1
    ns = (days * 86400 + hour * 3600 + minute * 60 + sec) * 1_000_000_000 + frac_ns
    return np.where(ok, ns, 0), ok


# per year 0..25755 (the most two unchecked lanes can give): leap or not, days from 1970 to its 1 January
_YEARS = np.arange(256 * 100 + 256, dtype=np.int64)
_LEAP = ((_YEARS % 4 == 0) & (_YEARS % 100 != 0)) | (_YEARS % 400 == 0)
_Y = _YEARS - 1
_DAYS_BEFORE_YEAR = _Y * 365 + _Y // 4 - _Y // 100 + _Y // 400 - 719162
