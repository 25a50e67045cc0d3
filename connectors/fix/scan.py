"""Vectorised FIX framing: check and split a whole block of SOH-delimited messages at once.

Python handles a FIX message in several microseconds (splitting, a dict, lookups), too slow
for a few hundred thousand messages a second.  Here numpy works on the block's bytes: one
pass finds every delimiter; each field's first 8 bytes, read as one integer, give its tag
(up to the first '='), whose meaning comes from a small cache of the log's few dozen distinct
tags, each decoded once (:meth:`TagTable.lookup`); per line, whole-array operations check
BeginString, BodyLength and CheckSum; the values become Arrow arrays that point into the
block (:func:`_between`).

A line that does not pass every check here (wrong checksum, a log prefix, a tag longer than
7 digits, a control byte, ...) is left to the caller's per-line parser, which gives the
exact reason or accepts it: this path only ever decides *fast*, never differently.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from .utctime import fold8

_U = np.uint64
_EQ8 = _U(0x3D3D3D3D3D3D3D3D)  # '=' in every byte
_ONES = _U(0x0101010101010101)
_HIGHS = _U(0x8080808080808080)
_HI_NIBBLES = _U(0xF0F0F0F0F0F0F0F0)
_LO_NIBBLES = _U(0x0F0F0F0F0F0F0F0F)
_ZEROS = _U(0x3030303030303030)  # '0' in every byte
_SIXES = _U(0x0606060606060606)
_CARRIES = _U(0x1010101010101010)
_BEGIN8 = _U(int.from_bytes(b"8=FIX.4.", "little"))


def tag_code(tag: int) -> int:
    """What :func:`scan` computes for a field of this tag: its bytes up to the first '=', as a
    little-endian integer (higher bytes zero).

    >>> tag_code(35).to_bytes(8, "little")
    b'35=\\x00\\x00\\x00\\x00\\x00'
    """
    return int.from_bytes(b"%d=" % tag, "little")


class TagTable:
    """The wanted tags, and what each distinct field code of a block means."""

    def __init__(self, tags: tuple[int, ...]):
        if len(tags) >= 2**26:
            raise ValueError(f"at most {2**26 - 1} tags (a column number has 26 bits here), got {len(tags)}")
        self.tags = tags
        self.slot = {tag: i for i, tag in enumerate(tags)}
        # codes already decoded, direct-mapped by a multiplicative hash (see :meth:`lookup`):
        # keys and meanings in one tuple, replaced whole, so a reader never pairs one's key
        # with another's meaning
        self._cache = (np.zeros(_CACHE_SLOTS, dtype=np.uint64), self._meanings(np.zeros(_CACHE_SLOTS, np.uint64)))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Per distinct code: ``slot * 8 + k`` for a wanted tag of k digits, -1 for another valid
        tag, -2 for no valid tag."""
        out = np.full(len(codes), -2, dtype=np.int64)
        for i, code in enumerate(codes.tolist()):
            digits, eq, rest = code.to_bytes(8, "little").partition(b"=")
            if not eq or rest.strip(b"\0"):
                continue  # no '=' among the first 8 bytes (the code is then all 8), or bytes after it
            length = len(digits)
            if length >= 1 and digits.isdigit() and digits[0] != 48:  # no leading zero, like the parser
                slot = self.slot.get(int(digits))
                out[i] = -1 if slot is None else slot * 8 + length
        return out

    def _meanings(self, codes: np.ndarray) -> np.ndarray:
        """What :meth:`lookup` gives, from :meth:`decode`, in one int32: ``column << 4 | start``
        (one gather per field instead of two)."""
        info = self.decode(codes)
        # a tag's code ends with its '=': the value starts one byte further than the code's length
        start = np.array([(code.bit_length() + 7) // 8 for code in codes.tolist()], dtype=np.int32)
        start[info < -1] = 0
        return (np.where(info >= 0, info >> 3, len(self.tags)).astype(np.int32) << 4) | start

    def lookup(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per field code: where the value starts from the field's start (0 for a code of no valid
        tag), and the field's column (its slot for a wanted tag, ``len(tags)`` for another).

        A FIX log uses a few dozen tags: each field's code is hashed to one of
        :data:`_CACHE_SLOTS` slots and its meaning taken from there if the slot holds that
        very code (a hash table of Arrow's ``dictionary_encode`` costs three times as much).
        The other codes are decoded, then cached (overwriting: memory stays fixed).

        >>> t = TagTable((8, 9, 10, 35))
        >>> start, column = t.lookup(np.array([tag_code(35), tag_code(49), 0, tag_code(35)], dtype=np.uint64))
        >>> start.tolist(), column.tolist()
        ([3, 3, 0, 3], [3, 4, 4, 3])
        """
        keys, meanings = self._cache
        with np.errstate(over="ignore"):
            h = ((codes * _HASH_MUL) >> _HASH_SHIFT).view(np.int64)
        meaning = meanings[h]
        miss = np.flatnonzero(keys[h] != codes)
        if len(miss):
            new, inverse = np.unique(codes[miss], return_inverse=True)
            new_meaning = self._meanings(new)
            meaning[miss] = new_meaning[inverse]
            with np.errstate(over="ignore"):
                slot, which = np.unique(((new * _HASH_MUL) >> _HASH_SHIFT).view(np.int64), return_index=True)
            keys, meanings = keys.copy(), meanings.copy()
            keys[slot], meanings[slot] = new[which], new_meaning[which]
            self._cache = (keys, meanings)
        return meaning & 15, meaning >> 4


_CACHE_SLOTS = 4096  # 32 KiB of keys: stays in the L1/L2 cache
_HASH_MUL = _U(0x9E3779B97F4A7C15)  # odd; the top 12 bits of code * it pick the slot
_HASH_SHIFT = _U(64 - 12)


class Scan(NamedTuple):
    n_lines: int
    line_start: np.ndarray  # byte offset of each line
    line_end: np.ndarray  # byte offset of each line's LF
    ok: np.ndarray  # per line: framing, BodyLength and CheckSum all good
    is_er: np.ndarray  # per line: ok and an ExecutionReport (35=8)
    table: np.ndarray  # (n_lines, n_slots): index into ``values`` of each wanted tag's value, -1 if absent
    values: pa.Array  # binary; element 2*i is the value of the i-th segment (odd ones: what lies between)


def _between(data: bytes, start: np.ndarray, end: np.ndarray) -> pa.Array:
    """Binary array of data[start[i]:end[i]] at element 2*i, without copying ``data``.

    The ranges must be in increasing, non-overlapping order; element 2*i+1 is the gap after.
    """
    large = len(data) >= 2**31 - 1
    offsets = np.empty(2 * len(start) + 1, dtype=np.int64 if large else np.int32)
    offsets[0:-1:2] = start
    offsets[1::2] = end
    offsets[-1] = end[-1] if len(end) else 0
    typ = pa.large_binary() if large else pa.binary()
    return pa.Array.from_buffers(typ, len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _small_ints(words: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal value of each field value [start, end), and whether it is 1 to 8 ASCII digits.

    SWAR: the value's bytes are read as one little-endian word, left-padded with '0' to
    eight digits, checked, and folded pairwise (8 -> 4 -> 2 -> 1 numbers).
    """
    n = end - start
    fits = (n >= 1) & (n <= 8)
    shift = (64 - 8 * np.minimum(np.maximum(n, 1), 8)).view(_U)  # (np.clip costs more, on short arrays)
    with np.errstate(over="ignore"):
        v = (words[start] << shift) | _pad_zeros(shift)
        ok = fits & ((v & _HI_NIBBLES) == _ZEROS) & ((((v & _LO_NIBBLES) + _SIXES) & _CARRIES) == 0)
    return fold8(v - _ZEROS), ok


def _pad_zeros(shift: np.ndarray) -> np.ndarray:
    """'0' in the low ``shift // 8`` bytes (shift < 64)."""
    with np.errstate(over="ignore"):
        return _ZEROS & ((_U(1) << shift) - _U(1))


PAD = b"\0" * 8


def scan(padded: bytes | memoryview, tags: TagTable) -> Scan:
    """Check and split ``padded``: whole lines, SOH-delimited, each ending with LF, then 8 more
    bytes (:data:`PAD`, or any: the result does not depend on them).

    (The padding lets every field's first 8 bytes be read as one word.)
    """
    n_slots = len(tags.tags)
    size = len(padded) - len(PAD)
    if size <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return Scan(0, empty, empty, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool),
                    np.full((0, n_slots), -1, dtype=np.int64), _between(b"", empty, empty))
    a = np.frombuffer(padded, np.uint8)[:size]
    words = np.ndarray((size + 1,), dtype="<u8", buffer=padded, strides=(1,))  # 8 bytes from each offset

    # positions stay intp: numpy converts any other index type before gathering (slower)
    sep = np.flatnonzero(a < 11)  # SOH and LF; another control byte makes its line irregular
    kind = a[sep]
    is_lf = kind == 10
    tail = np.flatnonzero(is_lf)  # each line's last segment: what follows its last SOH
    n_lines, n_seg = len(tail), len(sep)
    seg_start = np.empty(n_seg, dtype=np.intp)
    seg_start[0] = 0
    np.add(sep[:-1], 1, out=seg_start[1:])
    seg_end = sep
    first = np.empty(n_lines, dtype=np.intp)
    first[0] = 0
    np.add(tail[:-1], 1, out=first[1:])

    # a field's code: its first 8 bytes up to the first '=' (haszero on w ^ '=' sets bit 7 of
    # each '=' byte, and maybe of higher bytes; z ^ (z - 1) masks up to the lowest set bit).
    # Without an '=' the code is all 8 bytes, which no tag's code can equal (it holds an '=').
    # The block's few dozen distinct codes are decoded once each.
    w = words[seg_start]
    with np.errstate(over="ignore"):
        x = w ^ _EQ8
        z = x - _ONES
        z &= np.invert(x, out=x)
        z &= _HIGHS
        code = np.subtract(z, _U(1), out=x)  # x is spent: reuse its memory
        code ^= z
        code &= w
    value_at, column = tags.lookup(code)
    # a line is refused for any segment that is neither a TAG=VALUE field nor its end
    refused = np.flatnonzero((kind != 10) & ((kind != 1) | (value_at == 0)))
    line_start, line_end = seg_start[first], seg_end[tail]
    # at least 8, 9, 35 and 10, and the line ends with SOH (nothing after the last one)
    ok = (tail - first >= 4) & (a[line_end - 1] == 1)
    ok[np.searchsorted(tail, refused)] = False

    # per line: 8=FIX.4.4 first, then 9=, 35=, and 10=nnn last
    last_i = n_seg - 1
    f0, f1, f2 = first, np.minimum(first + 1, last_i), np.minimum(first + 2, last_i)
    fl = np.maximum(tail - 1, 0)
    seg_len_fl = seg_end[fl] - seg_start[fl]
    ok &= (seg_end[f0] - line_start == 9) & (w[f0] == _BEGIN8) & (a[np.minimum(line_start + 8, len(a) - 1)] == 52)
    ok &= (code[f1] == tag_code(9)) & (code[f2] == tag_code(35)) & (code[fl] == tag_code(10)) & (seg_len_fl == 6)
    good = np.flatnonzero(ok)
    n_good = len(good)
    g1, gl = f1[good], fl[good]
    sum_at = seg_start[gl]  # the CheckSum field: where the body ends
    # BodyLength and CheckSum values in one call (the per-line arrays are short: calls cost)
    value_start = np.concatenate((seg_start[g1] + 2, sum_at + 3))
    number, number_ok = _small_ints(words, value_start, np.concatenate((seg_end[g1], seg_end[gl])))
    bounds = np.empty(2 * n_good, dtype=np.intp)
    bounds[0::2] = line_start[good]
    bounds[1::2] = sum_at
    sums = np.add.reduceat(a, bounds, dtype=np.uint8)[0::2] if n_good else bounds  # uint8 adds are mod 256
    ok[good] = (number_ok[:n_good] & number_ok[n_good:] & (number[:n_good] == sum_at - seg_start[f2[good]])
                & (sums == number[n_good:]))
    # MsgType (the third field) is "8": an ExecutionReport
    is_er = (seg_end[f2] - seg_start[f2] == 4) & (a[np.minimum(seg_start[f2] + 3, len(a) - 1)] == ord("8"))

    # every segment's value (a field's after its '=', a segment without a tag's empty or whole:
    # those land in an extra column, dropped).  A tag's '=' lies before the segment's end, as its
    # digits do, so the ranges are sound.
    vstart = seg_start + value_at
    entry = np.arange(0, 2 * n_seg, 2, dtype=np.int64 if size >= 2**30 else np.int32)
    entry[vstart == seg_end] = -1  # an empty value (not valid FIX, but the per-line parser lets it through): absent
    width = n_slots + 1
    cell = np.repeat(np.arange(0, n_lines * width, width, dtype=np.intp), tail - first + 1)
    cell += column
    table = np.full((n_lines, width), -1, dtype=entry.dtype)
    table.ravel()[cell] = entry
    table[~ok] = -1  # lines the checks refused are the per-line parser's
    return Scan(n_lines, line_start, line_end, ok, is_er & ok, table[:, :n_slots], _between(padded, vstart, seg_end))
