"""Whatever the bytes after a valid header, decoding never raises, accounts for every line and
keeps the good ones."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import decode_file
from connectors.fix import encode_message

HEADERS = {
    "ccxt": b"symbol,timestamp,datetime,side,price,amount,cost\n",
    "tardis": b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n",
    "csv": b"ts,kind,venue,venue_symbol,price,qty,side,is_aggressor\n",
    "binance": b"id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n",
    "jsonl": b"",
    "fix": b"",
}
GOOD = {
    "ccxt": b"A/B,1600000000000,x,buy,1.5,2,3",
    "tardis": b"ex,A,1600000000000000,1600000000000001,7,sell,1,2",
    "csv": b"1600000000000000000,trade,X,A,1,2,buy,true",
    "binance": b"1,2.5,3,7.5,1600000000000,true,true",
    "jsonl": b'{"ts": 1, "kind": "trade", "venue": "X", "venue_symbol": "A", "price": 1, "qty": 1}',
    "fix": encode_message([(35, "8"), (37, "O"), (150, "0"), (54, "1"), (55, "A"), (38, "1"),
                           (60, "20240105-09:30:00"), (207, "X")]),
}
junk = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
pieces = st.sampled_from([b",", b'"', b"\r", b"\xff", b"-1", b"nan", b"1e999", b"\x01", b"=", b"{", b"}", b" "])
lines = st.one_of(junk, st.lists(pieces, max_size=12).map(b"".join))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(HEADERS)), st.lists(st.one_of(lines, st.sampled_from(list(GOOD.values()))), max_size=15),
       st.sampled_from([1, 4, 1000]))
def test_decoding_accounts_for_every_line(tmp_path, fmt, body, chunk_rows):
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(HEADERS[fmt] + b"\n".join(body) + b"\n")
    stream = decode_file(path, fmt, venue="V", symbol="S" if fmt == "binance" else None, chunk_rows=chunk_rows)
    chunks = list(stream)
    # blank: nothing before the line end (a byte-order mark that starts the file is not content)
    first = len(HEADERS[fmt]) == 0
    rows = [line for i, line in enumerate(body)
            if (line.removeprefix(b"\xef\xbb\xbf") if first and i == 0 else line) not in (b"", b"\r")]
    accounted = stream.stats.events + stream.stats.dead + stream.stats.skipped
    assert accounted == len(rows), [c.dead.column("reason").to_pylist() for c in chunks]
    assert stream.stats.events >= body.count(GOOD[fmt])  # good rows among the junk are kept
