"""The k-way event-time merge of many files, resuming, and pacing."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.merge import InputSpec, Pacer, merge_inputs
from tests.conftest import events


def write_venue(path, venue, ts):
    n = len(ts)
    pq.write_table(events(ts=ts, kind=["trade"] * n, venue=[venue] * n, venue_symbol=["X"] * n, price=[1.0] * n,
                          qty=[1.0] * n, trade_id=[f"{venue}{i}" for i in range(n)]).drop_columns(["src", "src_seq"]),
                   path)


def files(tmp_path):
    rng = np.random.default_rng(1)
    specs = []
    for v in ("A", "B", "C"):
        write_venue(tmp_path / f"{v}.parquet", v, np.sort(rng.uniform(0, 100, 500)))
        specs.append(InputSpec(str(tmp_path / f"{v}.parquet")))
    return specs


def merged(specs, **kw):
    return pa.concat_tables(t for kind, t in merge_inputs(specs, **kw) if kind == "events")


def test_many_files_come_out_in_global_event_time_order_in_exact_batches(tmp_path):
    specs = files(tmp_path)
    items = [t for k, t in merge_inputs(specs, batch_rows=97, chunk_rows=64) if k == "events"]
    assert all(t.num_rows == 97 for t in items[:-1]) and sum(t.num_rows for t in items) == 1500
    out = pa.concat_tables(items)
    ts = out.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert sorted(set(out.column("src").to_pylist())) == [0, 1, 2]


def test_output_is_the_same_whatever_the_chunk_and_batch_sizes(tmp_path):
    specs = files(tmp_path)
    ref = merged(specs, batch_rows=10_000)
    for batch_rows, chunk_rows in ((1, 7), (97, 64), (500, 1000)):
        assert merged(specs, batch_rows=batch_rows, chunk_rows=chunk_rows).equals(ref)


def test_resuming_skips_exactly_the_rows_already_emitted(tmp_path):
    specs = files(tmp_path)
    ref = merged(specs, batch_rows=50)
    assert merged(specs, batch_rows=50, skip_rows=333).equals(ref.slice(333))


def test_pacer_keeps_event_time_n_times_faster_than_wall_time():
    now = [0.0]
    slept = []

    def sleep(dt):
        slept.append(dt)
        now[0] += dt

    p = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    for ts_s in (0, 10, 20, 20, 50):
        p.wait_for(int(ts_s * 1e9))
    assert now[0] == 5.0 and slept == [1.0, 1.0, 3.0]
    fast = Pacer(None, clock=lambda: 0.0, sleep=lambda dt: (_ for _ in ()).throw(AssertionError("slept")))
    fast.wait_for(0)
    fast.wait_for(10**12)
