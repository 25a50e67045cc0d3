"""connectors.fix.codec: building and checking FIX 4.4 messages."""
from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.fix.codec import FixError, checksum, encode_message, parse_message

HEARTBEAT = encode_message([(35, "0"), (49, "A"), (56, "B"), (34, "7")])


def test_encode_computes_body_length_and_checksum_by_hand():
    msg = encode_message([(35, "0"), (49, "A")])
    body = b"35=0\x0149=A\x01"
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    assert msg == head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def test_pipe_delimited_message_has_the_same_counts_and_soh_checksum():
    soh = encode_message([(35, "8"), (37, "O1")])
    pipe = encode_message([(35, "8"), (37, "O1")], delimiter=b"|")
    assert pipe.replace(b"|", b"\x01") == soh
    assert parse_message(pipe) == parse_message(soh)
    assert checksum(b"a|b|", b"|") == checksum(b"a\x01b\x01")


def test_parse_returns_every_field_by_tag():
    fields = parse_message(HEARTBEAT + b"\r\n")
    assert fields[8] == b"FIX.4.4" and fields[35] == b"0" and fields[34] == b"7"
    assert fields[10] == HEARTBEAT[-4:-1]


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda m: m[:-4] + b"12\x01", "CheckSum must be 3 digits, got '12'"),
        (lambda m: m[:-7] + b"10=000\x01", "CheckSum mismatch: declared 000, computed"),
        (lambda m: m.replace(b"9=", b"9=1", 1), "BodyLength mismatch: declared 1"),
        (lambda m: m.replace(b"34=7", b"34=77"), "BodyLength mismatch"),
        (lambda m: m[:-12], "last field must be CheckSum (10=nnn), got b'56=B' (truncated?)"),
        (lambda m: m[:-1], "does not end with a delimiter"),
        (lambda m: m.replace(b"FIX.4.4", b"FIX.4.2"), "BeginString must be FIX.4.4, got 'FIX.4.2'"),
        (lambda m: b"X" + m, "message must start with BeginString"),
        (lambda m: m.replace(b"\x01", b" "), "no field delimiter"),
    ],
)
def test_malformed_messages_say_what_is_wrong(mutate, reason):
    with pytest.raises(FixError, match=re.escape(reason)):
        parse_message(mutate(HEARTBEAT))


def test_structure_errors_are_reported_even_with_a_correct_checksum():
    bad_field = encode_message([(35, "0"), (49, "A")]).replace(b"49=A", b"49A")
    fixed = _refix(bad_field)
    with pytest.raises(FixError, match="field 4 is not TAG=VALUE"):
        parse_message(fixed)
    with pytest.raises(FixError, match="not TAG=VALUE"):
        parse_message(_refix(HEARTBEAT.replace(b"\x0134=7", b"\x01034=7")))  # leading zero in a tag
    with pytest.raises(FixError, match="third field must be MsgType"):
        parse_message(encode_message([(49, "A"), (35, "0")]))


def _refix(msg: bytes) -> bytes:
    """Recompute BodyLength and CheckSum of a hand-edited message."""
    parts = msg.split(b"\x01")[:-1]
    body = b"\x01".join(parts[2:-1]) + b"\x01"
    head = parts[0] + b"\x019=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def test_encode_refuses_computed_tags_and_delimiters_in_values():
    with pytest.raises(ValueError, match="tag 10 is computed"):
        encode_message([(35, "0"), (10, "123")])
    with pytest.raises(ValueError, match="contains the field delimiter"):
        encode_message([(35, "0"), (58, "a\x01b")])
    with pytest.raises(ValueError, match="contains the field delimiter"):
        encode_message([(35, "0"), (58, "a|b")], delimiter=b"|")


values = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="|"), min_size=1, max_size=12)
tags = st.integers(11, 99999).filter(lambda t: t not in (8, 9, 10, 35))


@given(st.lists(st.tuples(tags, values), max_size=20), st.sampled_from([b"\x01", b"|"]))
def test_encode_then_parse_gives_the_fields_back(fields, delimiter):
    msg = encode_message([(35, "8"), *fields], delimiter)
    parsed = parse_message(msg)
    assert parsed[35] == b"8"
    assert {t: v.encode() for t, v in fields} == {t: v for t, v in parsed.items() if t not in (8, 9, 10, 35)}
