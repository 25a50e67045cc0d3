"""connectors: detect_format, decode_file's contract, and the line reader under it."""
from __future__ import annotations

import gzip
import os

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import FORMATS, Decoded, decode_file, detect_format
from connectors._io import LineReader

CCXT = "symbol,timestamp,datetime,side,price,amount,cost\nA/B,1600000000000,x,buy,1,2,2\n"


def test_formats_are_the_published_tuple():
    assert FORMATS == ("parquet", "jsonl", "csv", "fix", "tardis", "binance", "ccxt")


@pytest.mark.parametrize("name, fmt", [
    ("fix_dropcopy.fix", "fix"),
    ("fix_quickfix_pipes.log", "fix"),
    ("tardis_trades_sample.csv", "tardis"),
    ("tardis_quotes_sample.csv", "tardis"),
    ("BTCUSDT-trades-2024-01-05.csv", "binance"),
    ("binance_us_header.csv", "binance"),
    ("APPC_ccxt_sample.csv.gz", "ccxt"),
    ("cryptopia_BVB_sample.csv", "ccxt"),
])
def test_detect_format_of_each_fixture(fixtures, name, fmt):
    assert detect_format(fixtures / name) == fmt


def test_detect_canonical_formats_and_gzip(tmp_path, write):
    assert detect_format(write("e.jsonl", b'{"ts": 1, "kind": "trade"}\n')) == "jsonl"
    assert detect_format(write("e.ndjson.gz", b'\n{"ts": 1}\n')) == "jsonl"
    assert detect_format(write("e.csv", "ts,kind,price\n1,trade,2\n")) == "csv"
    assert detect_format(write("e.csv.gz", "\ufeffts,kind\n1,trade\n".encode())) == "csv"  # BOM
    assert detect_format(write("tape.dat.gz", CCXT)) == "ccxt"  # content decides when the name says nothing
    pq.write_table(pa.table({"ts": [1], "kind": ["trade"]}), tmp_path / "e.parquet")
    assert detect_format(tmp_path / "e.parquet") == "parquet"
    os.rename(tmp_path / "e.parquet", tmp_path / "e.bin")
    assert detect_format(tmp_path / "e.bin") == "parquet"


def test_detect_format_refuses_what_it_cannot_tell_or_what_contradicts_the_name(tmp_path, write):
    with pytest.raises(ValueError, match="cannot tell the format from its first line b'hello,world'"):
        detect_format(write("x.csv", "hello,world\n1,2\n"))
    with pytest.raises(ValueError, match="empty"):
        detect_format(write("empty.csv", ""))
    with pytest.raises(ValueError, match="looks like ccxt but the file name says .jsonl"):
        detect_format(write("tape.jsonl", CCXT))
    with pytest.raises(ValueError, match="does not start with the Parquet magic"):
        detect_format(write("x.parquet", CCXT))
    with pytest.raises(ValueError, match="compressed Parquet"):
        pq.write_table(pa.table({"ts": [1]}), tmp_path / "p.parquet")
        detect_format(write("p.parquet.gz", (tmp_path / "p.parquet").read_bytes()))
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        detect_format(tmp_path / "nowhere.csv")


def test_decode_file_refuses_bad_arguments_before_reading(write):
    path = write("t.csv", CCXT)
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        decode_file(path, "xml")
    with pytest.raises(ValueError, match="chunk_rows"):
        decode_file(path, venue="v", chunk_rows=0)
    with pytest.raises(ValueError, match="int32"):
        decode_file(path, venue="v", src=2**31)
    with pytest.raises(ValueError, match="not a ccxt trades CSV"):
        decode_file(write("q.csv", "a,b\n1,2\n"), "ccxt", venue="v")


def test_stream_counts_and_dead_letter_receipt_time_is_the_file_mtime(write):
    path = write("t.csv", CCXT + "A/B,1600000000001,x,buy,bad,2,2\n")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    stream = decode_file(path, venue="v")
    chunks = list(stream)
    assert all(isinstance(c, Decoded) for c in chunks)
    assert (stream.stats.events, stream.stats.dead, stream.stats.chunks) == (1, 1, 1)
    dead = chunks[0].dead
    assert dead.column("recv_ts").cast(pa.int64()).to_pylist() == [1_700_000_000_123_456_789]
    assert (dead["source"][0].as_py(), dead["step_id"][0].as_py()) == (str(path), "decode.ccxt")


def test_same_file_decodes_to_the_same_tables_twice(fixtures):
    runs = [[(c.events, c.dead) for c in decode_file(fixtures / "fix_dropcopy.fix")] for _ in range(2)]
    assert all(a[0].equals(b[0]) and a[1].equals(b[1]) for a, b in zip(*runs))


def test_line_reader_blocks_are_whole_lines_of_bounded_count(tmp_path):
    lines = [b"x" * (i % 50) + b",%d" % i for i in range(1000)]
    path = tmp_path / "l.txt.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))  # no final newline
    with LineReader(path, max_lines=37) as reader:
        blocks = list(reader.blocks())
    assert all(0 < b.n_lines <= 37 and b.data.endswith(b"\n") and b.data.count(b"\n") == b.n_lines for b in blocks)
    assert b"".join(b.data for b in blocks) == b"\n".join(lines) + b"\n"
    assert [b.first_line for b in blocks] == [1 + sum(x.n_lines for x in blocks[:i]) for i in range(len(blocks))]


def test_line_reader_reads_a_line_longer_than_its_guess(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"h\n" + b"y" * 300_000 + b"\nz\n")
    with LineReader(path, max_lines=1) as reader:
        assert reader.read_header() == b"h"
        assert [len(b.data) for b in reader.blocks()] == [300_001, 2]


def test_jsonl_and_csv_chunks_hold_at_most_chunk_rows(write):
    path = write("e.jsonl", b"".join(orjson.dumps({"ts": i, "kind": "trade"}) + b"\n" for i in range(100)))
    assert [c.dead.num_rows for c in decode_file(path, chunk_rows=40)] == [40, 40, 20]  # no venue: all refused
