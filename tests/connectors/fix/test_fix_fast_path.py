"""connectors.fix: the vectorised path on a large mixed log, its tag cache, and fixed-width times.

The block here spans several pieces of :data:`connectors.fix.decoder.PIECE_BYTES` (pieces are
scanned in place, reading the next piece's bytes as padding; the last one gets a padded copy),
and mixes every kind of line the fast path must leave to the per-line parser.
"""
from __future__ import annotations

import random
import time

import numpy as np
import pyarrow as pa

from connectors._events import Context
from connectors.fix import FixFileDecoder, encode_message
from connectors.fix.decoder import PIECE_BYTES
from connectors.fix.scan import TagTable, tag_code
from connectors.fix.utctime import parse

BASE = [(35, "8"), (49, "PLATA"), (56, "SURVEIL"), (34, "1"), (52, "20240105-09:30:00.500"), (1, "ACC1"),
        (11, "CL"), (37, "ORD1"), (17, "EX1"), (150, "0"), (55, "BTC/USDT"), (207, "XSHR"), (54, "1"),
        (38, "2"), (40, "2"), (44, "100.5"), (59, "1"), (151, "2"), (60, "20240105-09:30:00.250")]


def report(cl: str, *, extra=(), **values) -> bytes:
    """An ExecutionReport with ClOrdID ``cl``; ``t44="x"`` replaces tag 44's value."""
    fields = [(t, values.get(f"t{t}", cl if t == 11 else v)) for t, v in BASE]
    return encode_message(fields + list(extra))


def reframed(msg: bytes, old: bytes, new: bytes) -> bytes:
    """``msg`` with ``old`` replaced by ``new`` in its body, BodyLength and CheckSum made right."""
    body = msg[msg.index(b"\x0135=") + 1: msg.rindex(b"10=")].replace(old, new, 1)
    head = b"8=FIX.4.4\x019=%d\x01" % len(body) + body
    return head + b"10=%03d\x01" % (sum(head) % 256)


def _decoders():
    ctx = Context("mem", "decode.fix", "fix", 0, 0)
    out = []
    for _ in range(2):
        d = FixFileDecoder.__new__(FixFileDecoder)
        d.ctx, d.venue, d.skipped = ctx, "V", 0
        out.append(d)
    return out


def mixed_log(n: int, seed: int = 11) -> tuple[bytes, list[str], list[tuple[int, str]], int]:
    """Lines of every kind; returns the block, the ClOrdIDs of the events it must give, the
    (line, reason start) of its dead letters, and its number of non-ExecutionReports."""
    rnd = random.Random(seed)
    lines, events, dead, skipped = [], [], [], 0
    for i in range(n):
        cl = f"C{i}"
        kind = rnd.randrange(20)
        if kind == 0:
            lines.append(encode_message([(35, "0"), (49, "PLATA"), (34, str(i))]))
            skipped += 1
        elif kind == 1:
            lines.append(report(cl)[:-7] + b"10=000\x01")
            dead.append((i, "CheckSum mismatch"))
        elif kind == 2:
            lines.append(b"20240105-09:30:00.000 : " + report(cl))  # a QuickFIX log prefix
            events.append(cl)
        elif kind == 3:
            lines.append(report(cl).replace(b"\x01", b"|"))  # a '|' line among SOH lines
            events.append(cl)
        elif kind == 4:
            lines.append(report(cl, extra=[(1234567, "x")]))  # the longest tag read in one word
            events.append(cl)
        elif kind == 5:
            lines.append(report(cl, extra=[(12345678, "x")]))  # longer: only the per-line parser reads it
            events.append(cl)
        elif kind == 6:
            lines.append(reframed(report(cl), b"\x0149=", b"\x01049="))  # a tag with a leading zero
            dead.append((i, "field 4 is not TAG=VALUE: b'049=PLATA'"))
        elif kind == 7:
            lines.append(report(cl, t49="P\x0249=Q"))  # a control byte inside a value
            events.append(cl)
        elif kind == 8:
            lines.append(report("first", extra=[(11, cl)]))  # a repeated tag keeps its last value
            events.append(cl)
        elif kind == 9:
            lines.append(report(cl + "=x", t1=""))  # '=' inside a value; an empty value is absent
            events.append(cl + "=x")
        elif kind == 10:
            lines.append(report(cl, t37=b"O\xff"))  # not UTF-8
            dead.append((i, "OrderID (37): not valid UTF-8"))
        elif kind == 11:
            lines.append(report(cl)[:60])
            dead.append((i, "message does not end with a delimiter"))
        elif kind == 12:
            lines.append(report(cl, t150="D"))
            dead.append((i, "unsupported ExecType (150) 'D'"))
        elif kind == 13:
            lines.append(reframed(report(cl), b"\x0155=", b"\x01junk\x0155="))  # a field without '='
            dead.append((i, "field 13 is not TAG=VALUE: b'junk'"))
        elif kind == 14:
            msg = report(cl)
            lines.append(msg[:-4] + b"0" + msg[-4:])  # the right CheckSum, but in 4 digits
            dead.append((i, "CheckSum must be 3 digits, got '0"))
        elif kind == 15:
            lines.append(encode_message([(8, "FIX_4.4")] + [(t, cl if t == 11 else v) for t, v in BASE]))
            dead.append((i, "BeginString must be FIX.4.4, got 'FIX_4.4'"))
        elif kind == 16:
            msg = report(cl)
            lines.append(msg + msg[-7:-1])  # a second CheckSum field, with no SOH after it
            dead.append((i, "message does not end with a delimiter after CheckSum"))
        elif kind == 17:
            msg = report(cl)
            declared = msg.split(b"\x01")[1]  # 9=...
            wrong = msg[: msg.rindex(b"10=")].replace(declared, b"9=%d" % (int(declared[2:]) + 1), 1)
            lines.append(wrong + b"10=%03d\x01" % (sum(wrong) % 256))  # the right CheckSum of a wrong BodyLength
            dead.append((i, "BodyLength mismatch"))
        else:
            lines.append(report(cl))
            events.append(cl)
    return b"\n".join(lines) + b"\n", events, dead, skipped


def test_large_mixed_log_decodes_like_the_per_line_parser_and_as_expected():
    block, events, dead, skipped = mixed_log(12000)
    assert len(block) > 2 * PIECE_BYTES  # several pieces, scanned in place, and a padded last one
    fast, slow = _decoders()
    a, na = fast.decode_block(block, 1, 0)
    b, nb = slow.decode_block(block, 1, 0, fast=False)
    assert a.events.equals(b.events) and a.dead.equals(b.dead)
    assert na == nb == 12000 and fast.skipped == slow.skipped == skipped
    assert a.events.column("client_order_id").to_pylist() == events
    got = list(zip(a.dead.column("position").to_pylist(), a.dead.column("reason").to_pylist()))
    assert len(got) == len(dead)
    for (position, reason), (line, start) in zip(got, dead):
        assert position == f"line {line + 1}" and reason.startswith(start), (position, reason, line, start)
    lines = block.split(b"\n")
    assert a.dead.column("raw").to_pylist() == [lines[line] for line, _ in dead]


def test_tag_cache_gives_what_decode_gives_even_when_codes_collide():
    table = TagTable((8, 9, 10, 35, 49, 1057))
    rnd = random.Random(5)
    tags = [rnd.randrange(1, 10**rnd.randrange(1, 8)) for _ in range(6000)] + [35, 49, 1057, 8]
    junk = [int.from_bytes(rnd.randbytes(8), "little") for _ in range(200)] + [0, tag_code(35) | 1 << 40]
    codes = np.array([tag_code(t) for t in tags] + junk, dtype=np.uint64)
    info = table.decode(codes)
    expected_start = np.where(info >= -1, [len(b"%d=" % t) for t in tags] + [0] * len(junk), 0)
    expected_column = np.where(info >= 0, info >> 3, len(table.tags))
    for _ in range(3):  # the first pass fills the cache, later ones read it (6000 codes > 4096 slots)
        order = rnd.sample(range(len(codes)), len(codes))
        start, column = table.lookup(codes[order])
        assert start.tolist() == expected_start[order].tolist()
        assert column.tolist() == expected_column[order].tolist()


def test_utc_timestamps_of_one_width_agree_with_the_standard_library():
    rnd = random.Random(3)
    for digits in (0, 3, 6, 9):
        values, expected = [], []
        for _ in range(500):
            t = rnd.randrange(0, 7_258_118_400)
            frac = rnd.randrange(10**digits) if digits else 0
            stamp = "%04d%02d%02d-%02d:%02d:%02d" % time.gmtime(t)[:6]
            values.append(stamp + (f".{frac:0{digits}d}" if digits else ""))
            expected.append(t * 10**9 + frac * 10 ** (9 - digits))
        values[7] = values[7][:8] + "x" + values[7][9:]  # one bad value among them
        got, ok = parse(pa.array([v.encode() for v in values], pa.binary()).slice(1))
        assert ok.tolist() == [i != 7 for i in range(1, 500)]
        assert [g for g, k in zip(got.tolist(), ok) if k] == [e for i, e in enumerate(expected) if i not in (0, 7)]
