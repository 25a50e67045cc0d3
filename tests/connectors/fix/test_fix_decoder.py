"""connectors.fix.decoder: FIX 4.4 drop-copy logs → order events."""
from __future__ import annotations

import gzip
from datetime import datetime, timezone

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import decode_file
from connectors._events import Context
from connectors.fix import FixFileDecoder, encode_message


def ns(text: str) -> int:
    """'2024-01-05 09:30:00.000123' (UTC) as int ns, computed independently of the decoder."""
    whole, _, frac = text.partition(".")
    dt = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 10**9 + int(frac.ljust(9, "0"))


BASE = {35: "8", 49: "PLATA", 56: "SURVEIL", 34: "1", 52: "20240105-09:30:00.500", 1: "ACC1", 11: "CL1",
        37: "ORD1", 17: "EX1", 150: "0", 39: "0", 55: "BTC/USDT", 207: "XSHR", 54: "1", 38: "2", 40: "2",
        44: "100.5", 59: "1", 151: "2", 60: "20240105-09:30:00.250"}


def er(delimiter=b"\x01", **changes) -> bytes:
    """An ExecutionReport; ``t44="abc"`` sets tag 44, ``t44=None`` drops it."""
    fields = dict(BASE)
    for key, value in changes.items():
        tag = int(key[1:])
        if value is None:
            fields.pop(tag, None)
        else:
            fields[tag] = value
    return encode_message(list(fields.items()), delimiter)


def test_drop_copy_fixture_decodes_every_execution_report(fixtures, decode):
    r = decode(fixtures / "fix_dropcopy.fix", src=3)
    assert r.stream.format == "fix"
    assert r.events.num_rows == 8 and r.dead.num_rows == 0
    assert r.stream.stats.skipped == 2  # logon and heartbeat
    first = r.events.slice(0, 1).to_pylist()[0]
    assert first["ts"] == datetime(2024, 1, 5, 9, 30, 0, 123, tzinfo=timezone.utc)
    assert r.events.column("ts").cast(pa.int64())[0].as_py() == ns("2024-01-05 09:30:00.000123")
    assert r.events.column("recv_ts").cast(pa.int64())[0].as_py() == ns("2024-01-05 09:30:00.001")
    assert {k: first[k] for k in ("kind", "feed", "src", "src_seq", "venue", "venue_symbol", "account",
                                  "client_order_id", "order_id", "exec_id", "platform", "side", "action", "qty",
                                  "price", "leaves_qty", "order_type", "time_in_force", "trade_id",
                                  "is_aggressor")} == {
        "kind": "order", "feed": "fix", "src": 3, "src_seq": 1, "venue": "XSHR", "venue_symbol": "BTC/USDT",
        "account": "ACC-A1", "client_order_id": "A-CL1", "order_id": "A-ORD1", "exec_id": "A-EX1",
        "platform": "PLATA", "side": "buy", "action": "new", "qty": 1.5, "price": 42000.5, "leaves_qty": 1.5,
        "order_type": "limit", "time_in_force": "gtc", "trade_id": None, "is_aggressor": None,
    }
    assert r.col("action") == ["new", "new", "fill", "fill", "amend", "cancel", "reject", "expire"]
    assert r.col("src_seq") == [1, 2, 4, 5, 6, 7, 8, 9]
    assert r.col("order_type") == ["limit", "market", "market", "limit", "limit", "limit", "limit", "limit"]
    assert r.col("time_in_force") == ["gtc", "ioc", "ioc", "gtc", "gtc", "gtc", "fok", "day"]
    assert r.events.column("ts").cast(pa.int64())[7].as_py() == ns("2024-01-05 23:59:59.999")


def test_fills_carry_last_qty_last_px_match_id_and_aggressor(fixtures, decode):
    r = decode(fixtures / "fix_dropcopy.fix")
    fills = [row for row in r.events.to_pylist() if row["action"] == "fill"]
    assert [(f["platform"], f["side"], f["qty"], f["price"], f["trade_id"], f["is_aggressor"], f["venue"],
             f["leaves_qty"]) for f in fills] == [
        ("PLATB", "sell", 0.4, 42000.5, "M-1", True, "XSHR", 0.0),
        ("PLATA", "buy", 0.4, 42000.5, "M-1", False, "XSHR", 1.1),  # qty is LastQty, not OrderQty 1.5
    ]
    assert r.events.column("ts").cast(pa.int64())[2].as_py() == ns("2024-01-05 09:30:00.1005")


def test_quickfix_log_with_prefixes_pipes_and_crlf_matches_the_soh_file(fixtures, decode):
    soh = decode(fixtures / "fix_dropcopy.fix")
    log = decode(fixtures / "fix_quickfix_pipes.log", "fix")
    assert log.dead.num_rows == 0 and log.stream.stats.skipped == 2  # logon, heartbeat
    assert log.events.equals(soh.events.slice(0, 4))


def _write_lines(write, name, lines: list[bytes]):
    return write(name, b"\n".join(lines) + b"\n")


def test_malformed_lines_become_dead_letters_with_reason_and_raw_bytes(write, decode):
    good = er()
    lines = [
        good,
        good[:-7] + b"10=000\x01",
        good.replace(b"9=", b"9=9", 1),
        good[:60],
        er(t150="D"),
        er(t54="5"),
        er(t38="-1"),
        er(t44="abc"),
        er(t207=None),
        b"not a fix message",
        er(t60="2024-01-05 09:30:00"),
        er(t37=None),
        er(t11="CL-last"),
    ]
    r = decode(_write_lines(write, "bad.fix", lines))
    assert r.col("client_order_id") == ["CL1", "CL-last"]
    assert r.col("src_seq") == [0, 12]
    dead = r.dead_rows()
    assert [(reason, pos) for reason, pos, _ in dead] == [
        (f"CheckSum mismatch: declared 000, computed {good[-4:-1].decode()}", "line 2"),
        ("BodyLength mismatch: declared 9" + good.split(b"\x01")[1][2:].decode() + ", computed "
         + good.split(b"\x01")[1][2:].decode(), "line 3"),
        ("message does not end with a delimiter after CheckSum (truncated?): ends " + repr(good[40:60]), "line 4"),
        ("unsupported ExecType (150) 'D'", "line 5"),
        ("unsupported Side (54) '5'", "line 6"),
        ("qty must be positive (got -1.0)", "line 7"),
        ("Price (44): cannot parse 'abc' as a number", "line 8"),
        ("missing venue", "line 9"),
        ("message must start with BeginString (8=), got b'not a fix message'", "line 10"),
        ("TransactTime (60): cannot parse '2024-01-05 09:30:00' as YYYYMMDD-HH:MM:SS[.sss]", "line 11"),
        ("order event without order_id", "line 12"),
    ]
    assert [raw for *_, raw in dead] == lines[1:12]
    assert set(r.dead.column("step_id").to_pylist()) == {"decode.fix"}


def test_venue_argument_fills_messages_without_a_market(write, decode):
    path = _write_lines(write, "v.fix", [er(t207=None), er(t207=None, t30="XLIVE")])
    assert decode(path, venue="XPLAT").col("venue") == ["XPLAT", "XLIVE"]


def test_sending_time_stands_in_for_a_missing_transact_time(write, decode):
    r = decode(_write_lines(write, "t.fix", [er(t60=None)]))
    ts = r.events.column("ts").cast(pa.int64()).to_pylist()
    assert ts == r.events.column("recv_ts").cast(pa.int64()).to_pylist() == [ns("2024-01-05 09:30:00.5")]


def test_blank_lines_are_skipped_and_not_counted(write, decode):
    path = write("b.fix", b"\n" + er() + b"\n\n\r\n" + er(t11="CL2") + b"\n")
    r = decode(path)
    assert r.col("src_seq") == [0, 1] and r.dead.num_rows == 0


def test_empty_value_reads_as_absent(write, decode):
    r = decode(_write_lines(write, "e.fix", [er(t1="")]))
    assert r.col("account") == [None] and r.dead.num_rows == 0


def test_gzip_and_chunking_give_the_same_events(fixtures, write, decode, same_in_any_chunking):
    plain = same_in_any_chunking(fixtures / "fix_dropcopy.fix")
    gz = write("dropcopy.fix.gz", (fixtures / "fix_dropcopy.fix").read_bytes())
    assert decode(gz).events.equals(plain.events)
    bad = _write_lines(write, "mixed.fix", [er(), b"garbage", er(t44="x"), er(delimiter=b"|"), er()[:-3]])
    r = same_in_any_chunking(bad)
    assert r.events.num_rows == 2 and r.dead.num_rows == 3


def test_mixed_delimiters_are_decided_per_line(write, decode):
    r = decode(_write_lines(write, "m.fix", [er(), er(delimiter=b"|", t11="P"), er(t11="S")]))
    assert r.col("client_order_id") == ["CL1", "P", "S"] and r.dead.num_rows == 0


def test_truncated_gzip_keeps_the_lines_before_the_break(tmp_path, decode):
    data = gzip.compress(b"\n".join(er(t11=f"C{i}") for i in range(3000)) + b"\n")
    path = tmp_path / "cut.fix.gz"
    path.write_bytes(data[: len(data) // 2])
    r = decode(path, "fix")
    assert 0 < r.events.num_rows < 3000
    assert r.dead.num_rows == 1 and "truncated" in r.dead.column("reason")[0].as_py()


# -- the vectorised path and the per-line parser must agree on everything -----------------------

def _mutations(msg: bytes):
    return st.one_of(
        st.just(msg),
        st.integers(0, len(msg) - 1).map(lambda i: msg[:i]),  # truncated
        st.tuples(st.integers(0, len(msg) - 1), st.binary(min_size=1, max_size=3)).map(
            lambda t: msg[: t[0]] + t[1] + msg[t[0] + 1:]),  # bytes replaced (framing checks must catch it)
        st.just(msg.replace(b"\x01", b"|")),
        st.just(b"20240105-09:30:00.000 : " + msg),
    )


field_values = st.text(st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\n\x01"), max_size=9)
messages = st.builds(
    lambda ch, tags: er(**{**{f"t{t}": "x" for t in tags}, **{f"t{t}": v for t, v in ch.items()}}),
    st.dictionaries(st.sampled_from([1, 11, 37, 38, 44, 54, 150, 60, 52, 31, 32, 1057, 880, 30, 35]), field_values,
                    max_size=4),
    st.lists(st.integers(100, 999_999), max_size=3),
)


@settings(max_examples=int(__import__("os").environ.get("FIX_EXAMPLES", 60)), deadline=None)
@given(st.lists(messages.flatmap(_mutations), min_size=1, max_size=12))
def test_fast_path_decides_exactly_like_the_per_line_parser(lines):
    block = b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n"
    ctx = Context("mem", "decode.fix", "fix", 0, 0)
    fast = FixFileDecoder.__new__(FixFileDecoder)
    slow = FixFileDecoder.__new__(FixFileDecoder)
    for d in (fast, slow):
        d.ctx, d.venue, d.skipped = ctx, "V", 0
    a, na = fast.decode_block(block, 1, 0)
    b, nb = slow.decode_block(block, 1, 0, fast=False)
    assert na == nb and fast.skipped == slow.skipped
    assert a.events.equals(b.events)
    assert a.dead.equals(b.dead)


def test_decode_file_requires_a_readable_file(tmp_path):
    try:
        decode_file(tmp_path / "missing.fix", "fix")
    except FileNotFoundError as e:
        assert "missing.fix" in str(e)
    else:
        raise AssertionError("no error for a missing file")


def test_a_time_that_is_not_utf8_is_a_dead_letter_and_the_file_goes_on(write, decode):
    """Bytes above 0x7F in TransactTime (a valid message otherwise): refused with the reason, never a
    decode error that ends the file."""
    lines = [er(t11="CL-a"), er(t11="CL-b", t60=b"20240105-09:30:00.2\xff0"), er(t11="CL-c")]
    r = decode(_write_lines(write, "utf.fix", lines))
    assert r.col("client_order_id") == ["CL-a", "CL-c"]
    [(reason, pos, raw)] = r.dead_rows()
    assert reason.startswith("TransactTime (60): cannot parse") and pos == "line 2" and raw == lines[1]
