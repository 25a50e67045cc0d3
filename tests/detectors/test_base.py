"""The engine's per-batch helpers in ``detectors.base`` against straightforward references: the same
keys in the same order, the same rows in the same order, the same columns, whatever the chunking."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from detectors.base import keep_rows, split_by_key
from surveil.alerts import EVIDENCE_COLUMNS


def reference_split(events: pa.Table, columns: tuple[str, ...]) -> list[tuple[str, pa.Table]]:
    """Row by row: each key's rows in event order, keys in name order (nulls read as "")."""
    keys = ["|".join("" if v is None else v for v in vals)
            for vals in zip(*(events.column(c).to_pylist() for c in columns))]
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        rows.setdefault(k, []).append(i)
    return [(k, events.take(pa.array(rows[k], pa.int64()))) for k in sorted(rows)]


def random_table(rng: np.random.Generator, n: int, chunks: int) -> pa.Table:
    def strings(values):
        return pa.array([None if rng.random() < 0.15 else str(rng.choice(values)) for _ in range(n)], pa.string())
    t = pa.table({"venue": strings(["X", "Y", "Z|W", ""]), "instrument": strings(["BTC/USDT", "ETH/USDT", "é"]),
                  "seq": pa.array(np.arange(n)), "price": pa.array(rng.random(n)).cast(pa.float64())})
    cuts = sorted(rng.choice(np.arange(1, n), chunks - 1, replace=False).tolist()) if n > 1 and chunks > 1 else []
    return pa.concat_tables([t.slice(a, b - a) for a, b in zip([0] + cuts, cuts + [n])]) if n else t


@pytest.mark.parametrize("columns", [("venue",), ("instrument",), ("venue", "instrument")])
@pytest.mark.parametrize("seed", range(6))
def test_split_by_key_matches_a_row_by_row_split(columns, seed):
    rng = np.random.default_rng(seed)
    for n, chunks in ((0, 1), (1, 1), (7, 3), (200, 1), (1000, 9)):
        events = random_table(rng, n, chunks)
        got, want = split_by_key(events, columns), reference_split(events, columns)
        assert [k for k, _ in got] == [k for k, _ in want]
        for (_, g), (_, w) in zip(got, want):
            assert g.schema == w.schema and g.to_pydict() == w.to_pydict()


def test_split_by_key_of_one_key_is_the_batch_itself():
    events = pa.table({"instrument": ["A", "A"], "x": [1, 2]})
    assert split_by_key(events, ("instrument",)) == [("A", events)]


def test_split_by_key_parts_hold_only_their_rows():
    # a part is its own copy, not a slice of the batch: a state keeping it keeps (and pickles) only its rows
    events = pa.table({"instrument": ["A", "B"] * 50_000, "x": np.arange(100_000)})
    for _, part in split_by_key(events, ("instrument",)):
        assert part.get_total_buffer_size() < events.get_total_buffer_size() / 1.5


@pytest.mark.parametrize("chunks", [1, 5])
def test_keep_rows_is_a_filter_on_the_evidence_columns(chunks):
    rng = np.random.default_rng(chunks)
    n = 500
    t = pa.table({c: pa.array(rng.integers(0, 9, n)).cast(pa.string()) for c in EVIDENCE_COLUMNS + ("bid", "feed")})
    t = pa.concat_tables([t.slice(k * n // chunks, n // chunks) for k in range(chunks)])
    mask = pc.equal(pc.if_else(pc.equal(t.column("price"), "0"), pa.scalar(None, pa.string()), t.column("kind")), "1")
    assert mask.null_count  # a null selects nothing, as in a filter
    got = keep_rows(t, mask, ("bid",))
    want = t.select(list(EVIDENCE_COLUMNS) + ["bid"]).filter(mask)
    assert got.schema == want.schema and got.to_pydict() == want.to_pydict()
