"""Event-time ordering, lateness and FIX fill pairing."""
import numpy as np
import pyarrow as pa
from hypothesis import given, settings, strategies as st

from surveil.schemas import sort_events
from surveil.timeline import Deduplicator, Timeline
from tests.conftest import S, events


def feed(tl: Timeline, table: pa.Table, batch_rows: int):
    out, late = [], []
    for start in range(0, table.num_rows, batch_rows):
        o, l = tl.push(table.slice(start, batch_rows))
        out.append(o)
        late.append(l)
    out.append(tl.flush())
    return pa.concat_tables(out), pa.concat_tables(late)


def two_venue_stream(n=400, skew_s=2.0, seed=0):
    """Venue B's feed arrives interleaved with A's but stamped up to ``skew_s`` earlier (out of order)."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0, 100, n))
    venue = rng.choice(["A", "B"], n)
    arrival_ts = ts + np.where(venue == "B", skew_s, 0.0)
    order = np.argsort(arrival_ts, kind="stable")
    return events(ts=ts[order], kind=["trade"] * n, venue=venue[order].tolist(), instrument=["X"] * n,
                  price=[1.0] * n, qty=[1.0] * n, src=pa.array((venue[order] == "B").astype("int32")),
                  src_seq=pa.array(np.arange(n)))


def test_out_of_order_venues_come_out_in_event_time():
    table = two_venue_stream(skew_s=2.0)
    out, late = feed(Timeline(max_lateness_ms=3_000, pair_window_ms=0), table, 37)
    assert late.num_rows == 0 and out.num_rows == table.num_rows
    ts = out.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert out.equals(sort_events(table))


def test_events_beyond_the_lateness_go_to_late_with_how_late():
    table = two_venue_stream(skew_s=2.0)
    out, late = feed(Timeline(max_lateness_ms=500, pair_window_ms=0), table, 50)
    assert late.num_rows > 0 and out.num_rows + late.num_rows == table.num_rows
    assert set(late.column("venue").to_pylist()) == {"B"}
    assert min(late.column("late_by_ms").to_pylist()) > 500


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 500), lateness_ms=st.integers(0, 4000), seed=st.integers(0, 5))
def test_output_does_not_depend_on_batch_size(batch, lateness_ms, seed):
    table = two_venue_stream(n=200, seed=seed)
    ref_out, ref_late = feed(Timeline(lateness_ms, 0), table, table.num_rows)
    out, late = feed(Timeline(lateness_ms, 0), table, batch)
    assert out.equals(ref_out) and late.equals(ref_late)


EVENT_COLUMNS = events(ts=[0.0]).column_names


def fills(rows):
    """FIX fills: (ts_s, platform, side, account, trade_id, aggressor)."""
    n = len(rows)
    ts, platform, side, account, tid, agg = zip(*rows)
    return events(ts=list(ts), kind=["order"] * n, feed=["fix"] * n, action=["fill"] * n, venue=["SHARED"] * n,
                  venue_symbol=["BTC-USDT"] * n, price=[100.0] * n, qty=[1.5] * n, side=list(side),
                  platform=list(platform), account=list(account), order_id=[f"o-{a}-{t}" for a, t in zip(account, tid)],
                  trade_id=list(tid), is_aggressor=list(agg), src=pa.array([0 if p == "HK" else 1 for p in platform], pa.int32()))


def trades_of(out: pa.Table):
    t = out.filter(pa.compute.equal(out.column("kind"), "trade"))
    return t.select(["trade_id", "side", "buy_account", "sell_account", "buy_platform", "sell_platform"]).to_pylist()


def test_fills_from_two_platforms_pair_into_one_trade():
    table = fills([(1.0, "HK", "buy", "hk1", "M1", True), (1.0, "OV", "sell", "ov7", "M1", False)])
    out, _ = feed(Timeline(1000, 1000), table, 1)
    assert trades_of(out) == [{"trade_id": "M1", "side": "buy", "buy_account": "hk1", "sell_account": "ov7",
                               "buy_platform": "HK", "sell_platform": "OV"}]
    assert out.num_rows == 3  # both fills kept as order events, plus the trade


def test_a_fill_whose_other_side_never_arrives_is_a_one_sided_trade():
    table = fills([(1.0, "HK", "sell", "hk1", "M1", False), (5.0, "HK", "buy", "hk2", "M2", True),
                   (5.2, "OV", "sell", "ov1", "M2", False)])
    out, _ = feed(Timeline(1000, 1000), table, 1)
    assert trades_of(out) == [
        {"trade_id": "M1", "side": None, "buy_account": None, "sell_account": "hk1", "buy_platform": None, "sell_platform": "HK"},
        {"trade_id": "M2", "side": "buy", "buy_account": "hk2", "sell_account": "ov1", "buy_platform": "HK", "sell_platform": "OV"},
    ]
    ts = out.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    # the trade takes the later fill's time
    assert out.filter(pa.compute.equal(out.column("kind"), "trade")).column("ts").cast(pa.int64()).to_pylist() == [1 * S, int(5.2 * S)]


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 7))
def test_pairing_does_not_depend_on_batch_size(batch):
    table = fills([(1.0, "HK", "buy", "a", "M1", True), (1.3, "OV", "sell", "b", "M1", False),
                   (2.0, "OV", "buy", "c", "M2", False), (2.0, "OV", "sell", "d", "M3", True),
                   (2.1, "HK", "sell", "e", "M2", True), (9.0, "HK", "buy", "f", "M4", True)])
    ref, _ = feed(Timeline(500, 1000), table, table.num_rows)
    out, _ = feed(Timeline(500, 1000), table, batch)
    assert out.equals(ref) and len(trades_of(out)) == 4


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 7), seed=st.integers(0, 1_000))
def test_repeats_within_the_window_are_dropped_and_later_ones_kept_whatever_the_batches(batch, seed):
    """A trade id resent 1-2 s later is a duplicate; sent again 30 s later (window 10 s) it is a
    new trade: the key was forgotten.  One event a second, so no batch (<= 7 s) straddles the window."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    for t in range(120):
        back = rng.choice([0, 1, 2, 30], p=[0.7, 0.1, 0.1, 0.1])
        ids.append(ids[t - back] if back and t >= back else f"T{t}")
    # the expected repeat flags, by brute force over what was kept in the last 10 s
    kept: dict[str, int] = {}
    expected = []
    for t, k in enumerate(ids):
        dup = k in kept and t - kept[k] <= 10
        expected.append(dup)
        if not dup:
            kept[k] = t
    table = events(ts=np.arange(120.0), kind=["trade"] * 120, venue=["V"] * 120, instrument=["X"] * 120,
                   price=[1.0] * 120, qty=[1.0] * 120, trade_id=ids)
    d = Deduplicator(10_000)
    flagged = []
    for start in range(0, 120, batch):
        fresh, dups = d.split(table.slice(start, batch))
        assert fresh.num_rows + len(dups) == min(batch, 120 - start)
        flagged += [start + i for i, _ in dups]
        assert all(reason == f"duplicate trade id {ids[start + i]} on venue V" for i, reason in dups)
    assert flagged == [t for t, dup in enumerate(expected) if dup]
    assert any(expected) and len(d.state.seen) <= 12  # memory: only the last window's keys


def test_only_a_fill_waiting_for_its_partner_holds_the_stream_back():
    """Lateness 0.5 s, pair window 1 s: trades go once the watermark passes them; a fill waits a
    second more for its other side, and the events behind it wait with it (releases stay in order)."""
    tl = Timeline(max_lateness_ms=500, pair_window_ms=1000)

    def tape(ts, seq0):
        return events(ts=ts, kind=["trade"] * len(ts), venue=["REFX"] * len(ts), instrument=["X"] * len(ts),
                      src=pa.array([2] * len(ts), pa.int32()), src_seq=pa.array(range(seq0, seq0 + len(ts))))

    def released(table):
        out, _ = tl.push(table)
        return [t / S for t in out.column("ts").cast(pa.int64()).to_pylist()], out

    assert released(tape([1.0, 2.0, 3.0, 4.0], 0))[0] == [1.0, 2.0, 3.0]  # the watermark is 3.5 s
    # a fill at 4.2 s: the watermark (4.5 s) lets 4.0 s go, and the fill holds 4.5 s back
    assert released(pa.concat_tables([fills([(4.2, "HK", "buy", "hk1", "M1", True)]),
                                      tape([4.5, 5.0], 4).select(EVENT_COLUMNS)]))[0] == [4.0]
    assert released(fills([(5.1, "OV", "sell", "ov1", "M1", False)]))[0] == []  # its partner: the window is open
    ts, out = released(tape([7.0], 6))  # watermark 6.5 s: both fills are past their window
    assert ts == [4.2, 4.5, 5.0, 5.1, 5.1]
    assert trades_of(out.filter(pa.compute.equal(out.column("trade_id"), "M1"))) == [
        {"trade_id": "M1", "side": "buy", "buy_account": "hk1", "sell_account": "ov1", "buy_platform": "HK",
         "sell_platform": "OV"}]


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 60), seed=st.integers(0, 50))
def test_trades_and_fills_together_do_not_depend_on_batch_size(batch, seed):
    rng = np.random.default_rng(seed)
    n = 40
    match_ts = rng.uniform(0, 30, n)  # the other side's fill follows within the pair window
    pairs = fills([(float(t), "HK", "buy", f"h{i}", f"M{i}", True) for i, t in enumerate(match_ts)]
                  + [(float(t) + rng.uniform(0, 0.8), "OV", "sell", f"o{i}", f"M{i}", False)
                     for i, t in enumerate(match_ts)])
    tape = events(ts=rng.uniform(0, 30, 60), kind=["trade"] * 60, venue=["REFX"] * 60, instrument=["X"] * 60,
                  src=pa.array([2] * 60, pa.int32()), src_seq=pa.array(range(60)))
    table = pa.concat_tables([pairs, tape.select(pairs.column_names)])
    # arrival order: event time plus up to 0.4 s of jitter, within the 0.5 s lateness
    table = table.take(pa.array(np.argsort(table.column("ts").cast(pa.int64()).to_numpy() + rng.uniform(0, 4e8, 2 * n + 60))))
    ref_out, ref_late = feed(Timeline(500, 1000), table, table.num_rows)
    out, late = feed(Timeline(500, 1000), table, batch)
    assert out.equals(ref_out) and late.equals(ref_late) and late.num_rows == 0
    assert len(trades_of(out)) == 60 + n  # the tape's and one per match
