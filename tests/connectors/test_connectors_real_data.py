"""Every real tape and tardis file in ../shared/data decodes, row for row."""
from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa

from connectors import decode_file, detect_format


def data_rows(path: Path) -> int:
    """Non-blank lines after the header, counted without the decoders."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        next(f)
        return sum(1 for line in f if line.strip())


def decode_counts(path: Path, **kw) -> tuple[int, int]:
    events = dead = 0
    for chunk in decode_file(path, **kw):
        events += chunk.events.num_rows
        dead += chunk.dead.num_rows
    return events, dead


def test_every_ccxt_tape_decodes_row_for_row(shared_data):
    tapes = sorted(shared_data.glob("pump-trades-*/trades/*.csv.gz"))
    assert len(tapes) >= 100
    total = 0
    for tape in tapes:
        assert detect_format(tape) == "ccxt"
        events, dead = decode_counts(tape, venue="binance")
        assert events + dead == data_rows(tape), tape
        total += events
    assert total >= 4_000_000  # 2,956,285 (moura) + 1,066,924 (pugoev) per their SOURCE.md


def test_every_tardis_trades_and_quotes_file_decodes_row_for_row(shared_data):
    files = [f for f in sorted((shared_data / "exchange-msg-samples" / "tardis-csv").iterdir())
             if "_trades_" in f.name or "_quotes_" in f.name]
    assert len(files) == 4
    for f in files:
        assert detect_format(f) == "tardis"
        events, dead = decode_counts(f)
        assert (events, dead) == (data_rows(f), 0), f


def test_tardis_trades_are_contiguous_and_in_time(shared_data):
    path = shared_data / "exchange-msg-samples" / "tardis-csv" / "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz"
    events = pa.concat_tables(c.events for c in decode_file(path, chunk_rows=4096))
    ids = [int(i) for i in events.column("trade_id").to_pylist()]
    assert ids == list(range(42377944, 42387943))  # SOURCE.md: contiguous ids 42377944 -> 42387942
    ts = events.column("ts").cast(pa.int64()).to_pylist()
    assert ts[0] == 1582329602111000000 and ts[-1] // 10**9 == 1582329600 + 2 * 3600 + 5 * 60 + 47  # to 02:05:47 UTC


def test_cryptopia_case_study_decodes_all_322_trades(shared_data):
    path = shared_data / "pump-case-xu-livshits" / "casestudy_BVB_cryptopia.csv"
    assert detect_format(path) == "ccxt"
    events, dead = decode_counts(path, venue="cryptopia")
    assert (events, dead) == (322, 0) == (data_rows(path), 0)
