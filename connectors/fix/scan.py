"""Vectorised FIX framing: check and split a whole block of SOH-delimited messages at once.

Python handles a FIX message in several microseconds (splitting, a dict, lookups), too slow
for a few hundred thousand messages a second.  Here numpy works on the block's bytes: one
pass finds every delimiter; each field's first 8 bytes, read as one integer, give its tag
(up to the first '='), which Arrow's hash table reduces to the few dozen distinct tags of the
block, checked once each; per line, whole-array operations check BeginString, BodyLength and
CheckSum; the values become Arrow arrays that point into the block (:func:`_between`).

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
    """What :func:`scan` computes for a field of this tag: its digits, plus bit 7 of the '=' byte."""
    digits = str(tag).encode()
    return int.from_bytes(digits, "little") | (0x80 << (8 * len(digits)))


class TagTable:
    """The wanted tags, and what each distinct field code of a block means."""

    def __init__(self, tags: tuple[int, ...]):
        self.tags = tags
        self.slot = {tag: i for i, tag in enumerate(tags)}

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Per distinct code: ``slot * 8 + k`` for a wanted tag of k digits, -1 for another valid
        tag, -2 for no valid tag (one lookup per field gives all three facts)."""
        out = np.full(len(codes), -2, dtype=np.int64)
        for i, code in enumerate(codes.tolist()):
            marker = code & 0x8080808080808080
            if marker == 0 or marker & (marker - 1) or code >> marker.bit_length():
                continue  # no '=' among the first 8 bytes, or bytes above 0x7F, or bytes after the '='
            length = (marker.bit_length() - 8) // 8
            digits = (code ^ marker).to_bytes(8, "little")[:length]
            if length >= 1 and digits.isdigit() and digits[0] != 48:  # no leading zero, like the parser
                slot = self.slot.get(int(digits))
                out[i] = -1 if slot is None else slot * 8 + length
        return out


class Scan(NamedTuple):
    n_lines: int
    line_start: np.ndarray  # byte offset of each line
    line_end: np.ndarray  # byte offset of each line's LF
    ok: np.ndarray  # per line: framing, BodyLength and CheckSum all good
    is_er: np.ndarray  # per line: ok and an ExecutionReport (35=8)
    table: np.ndarray  # (n_lines, n_slots): index into ``values`` of each wanted tag's value, -1 if absent
    values: pa.Array  # binary; element 2*i is the value of the i-th wanted field (odd ones: what lies between)


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
    shift = (8 * (8 - np.clip(n, 1, 8))).astype(_U)
    with np.errstate(over="ignore"):
        v = (words[start] << shift) | _pad_zeros(shift)
        ok = fits & ((v & _HI_NIBBLES) == _ZEROS) & ((((v & _LO_NIBBLES) + _SIXES) & _CARRIES) == 0)
    return fold8(v - _ZEROS), ok


def _pad_zeros(shift: np.ndarray) -> np.ndarray:
    """'0' in the low ``shift // 8`` bytes (shift < 64)."""
    with np.errstate(over="ignore"):
        return _ZEROS & ((_U(1) << shift) - _U(1))


PAD = b"\0" * 8


def scan(padded: bytes, tags: TagTable) -> Scan:
    """Check and split ``padded``: whole lines, SOH-delimited, each ending with LF, then :data:`PAD`.

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

    # int32 positions: half the memory traffic of int64 (a piece is far below 2 GiB)
    sep = np.flatnonzero(a < 11).astype(np.int32)  # SOH and LF; another control byte makes its line irregular
    kind = a[sep]
    is_lf = kind == 10
    tail = np.flatnonzero(is_lf)  # each line's last segment: what follows its last SOH
    n_lines, n_seg = len(tail), len(sep)
    seg_start = np.empty(n_seg, dtype=np.int32)
    seg_start[0] = 0
    seg_start[1:] = sep[:-1] + 1
    seg_end = sep
    first = np.empty(n_lines, dtype=np.int64)
    first[0] = 0
    first[1:] = tail[:-1] + 1
    line_of = np.repeat(np.arange(n_lines, dtype=np.int32), tail - first + 1)

    # the first '=' among a field's first 8 bytes (haszero on w ^ '='): its bit 7 marks it, the
    # bytes below are the tag; the block's few dozen distinct codes are then decoded once each
    w = words[seg_start]
    x = w ^ _EQ8
    with np.errstate(over="ignore"):
        z = (x - _ONES) & ~x & _HIGHS
        lowest = z & (~z + _U(1))  # bit 7 of the first '=' byte; 0 if none
        code = (w & ((lowest >> _U(7)) - _U(1))) | lowest
    code[lowest == 0] = 0
    encoded = pa.array(code).dictionary_encode()
    ids = encoded.indices.to_numpy()
    info = tags.decode(encoded.dictionary.to_numpy())[ids]  # slot*8+k, -1 other tag, -2 not a tag
    field_ok = (kind == 1) & (info >= -1)
    bad_per_line = np.bincount(line_of[~(field_ok | is_lf)], minlength=n_lines)
    line_start, line_end = seg_start[first], seg_end[tail]
    # at least 8, 9, 35 and 10, and the line ends with SOH (nothing after the last one)
    ok = (bad_per_line == 0) & (tail - first >= 4) & (a[line_end - 1] == 1)

    # per line: 8=FIX.4.4 first, then 9=, 35=, and 10=nnn last
    last_i = n_seg - 1
    f0, f1, f2 = first, np.minimum(first + 1, last_i), np.minimum(first + 2, last_i)
    fl = np.maximum(tail - 1, 0)
    seg_len_f0, seg_len_fl = seg_end[f0] - seg_start[f0], seg_end[fl] - seg_start[fl]
    ok &= (seg_len_f0 == 9) & (w[f0] == _BEGIN8) & (a[np.minimum(seg_start[f0] + 8, len(a) - 1)] == ord("4"))
    ok &= (code[f1] == tag_code(9)) & (code[f2] == tag_code(35)) & (code[fl] == tag_code(10)) & (seg_len_fl == 6)
    good = np.flatnonzero(ok)
    body_len, len_ok = _small_ints(words, seg_start[f1[good]] + 2, seg_end[f1[good]])
    declared_sum, sum_ok = _small_ints(words, seg_start[fl[good]] + 3, seg_end[fl[good]])
    bounds = np.empty(2 * len(good), dtype=np.int64)
    bounds[0::2] = seg_start[f0[good]]
    bounds[1::2] = seg_start[fl[good]]
    sums = np.add.reduceat(a, bounds, dtype=np.uint8)[0::2] if len(good) else bounds  # uint8 adds are mod 256
    ok[good] = len_ok & sum_ok & (body_len == bounds[1::2] - seg_start[f2[good]]) & (sums == declared_sum)
    # MsgType (the third field) is "8": an ExecutionReport
    is_er = (seg_end[f2] - seg_start[f2] == 4) & (a[np.minimum(seg_start[f2] + 3, len(a) - 1)] == ord("8"))

    take = np.flatnonzero(field_ok & (info >= 0))
    wanted = info[take]
    vstart, vend = seg_start[take] + (wanted & 7) + 1, seg_end[take]
    entry = 2 * np.arange(len(take))
    entry[vstart == vend] = -1  # an empty value (not valid FIX, but the per-line parser lets it through): absent
    table = np.full((n_lines, n_slots), -1, dtype=np.int64)
    table.ravel()[line_of[take].astype(np.int64) * n_slots + (wanted >> 3)] = entry
    table[~ok] = -1  # lines the checks refused are the per-line parser's
    return Scan(n_lines, line_start, line_end, ok, is_er & ok, table, _between(padded, vstart, vend))
