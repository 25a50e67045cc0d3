"""connectors.fix.scan and .utctime: the vectorised framing check and timestamp parser."""
from __future__ import annotations

import calendar
import random
import time

import numpy as np
import pyarrow as pa

from connectors.fix import encode_message
from connectors.fix.decoder import SLOT, TAGS
from connectors.fix.fields import WANTED
from connectors.fix.scan import PAD, TagTable, scan, tag_code
from connectors.fix.utctime import parse

MSG = encode_message([(35, "8"), (49, "P"), (37, "O1"), (55, "BTC/USDT"), (1057, "Y"), (9999, "x=y")])


def test_well_formed_lines_pass_the_vectorised_checks_and_give_their_values():
    other = encode_message([(35, "0"), (49, "Q")])
    sc = scan(MSG + b"\n" + other + b"\n" + b"\n" + PAD, TAGS)
    assert sc.n_lines == 3 and sc.ok.tolist() == [True, True, False]  # a blank line is left to the caller
    value = lambda line, tag: sc.values[int(sc.table[line, SLOT[tag]])].as_py()  # noqa: E731
    assert [value(0, t) for t in (49, 37, 55, 1057)] == [b"P", b"O1", b"BTC/USDT", b"Y"]
    assert sc.is_er.tolist() == [True, False, False]
    assert value(1, 49) == b"Q" and sc.table[1, SLOT[37]] == -1


def test_lines_the_vectorised_checks_leave_to_the_per_line_parser():
    bad = [
        MSG[:-7] + b"10=000\x01",  # checksum
        MSG.replace(b"9=", b"9=1", 1),  # body length
        MSG[:-1],  # no final SOH
        b"x: " + MSG,  # log prefix
        MSG.replace(b"\x01", b"|"),  # a '|' line in a block that has SOH
        MSG.replace(b"49=P", b"49=\tP"),  # a control byte
        MSG.replace(b"\x0149=", b"\x01049="),  # leading zero in a tag
        MSG.replace(b"\x0149=", b"\x014a="),  # not a number
        MSG.replace(b"\x0149=", b"\x0112345678="),  # tag too long to read in one word
    ]
    sc = scan(b"\n".join([MSG, *bad, MSG]) + b"\n" + PAD, TAGS)
    assert sc.ok.tolist() == [True] + [False] * len(bad) + [True]


def test_tag_table_decodes_field_codes():
    table = TagTable((8, 9, 10, *WANTED))
    codes = [tag_code(t) for t in (*WANTED, 2, 35, 1234567)]
    bad = [0, 0x80, int.from_bytes(b"3a", "little") | 0x80 << 16, int.from_bytes(b"03", "little") | 0x80 << 16,
           tag_code(35) | 1 << 40]
    info = table.decode(np.array(codes + bad, dtype=np.uint64))
    assert info.tolist() == [table.tags.index(t) * 8 + len(str(t)) for t in WANTED] + [-1] * 3 + [-2] * len(bad)


def test_utc_timestamps_agree_with_the_standard_library():
    rnd = random.Random(7)
    values, expected = [], []
    for _ in range(2000):
        secs = rnd.randrange(0, 7_258_118_400)  # 1970 .. 2200
        digits = rnd.choice([0, 3, 6, 9])
        frac = "." + str(rnd.randrange(10**digits)).zfill(digits) if digits else ""
        values.append(time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(secs)) + frac)
        expected.append(secs * 10**9 + int(frac[1:].ljust(9, "0") or 0))
    got, ok = parse(pa.array(values))
    assert ok.all() and got.tolist() == expected
    assert calendar.timegm((2024, 2, 29, 0, 0, 0)) * 10**9 == parse(pa.array(["20240229-00:00:00"]))[0][0]


def test_utc_timestamps_refuse_anything_off_the_format():
    bad = ["20230229-00:00:00", "20240105-12:30:00.1234", "20240105-24:00:00", "20240105 12:30:00",
           "2024-01-05T12:30:00", "20240105-12:30:00,123", "20241305-00:00:00", "20240100-00:00:00", "", None]
    got, ok = parse(pa.array(bad))
    assert not ok.any()
