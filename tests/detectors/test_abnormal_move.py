import pickle

import numpy as np
import pyarrow as pa
import pytest

from detectors.abnormal_move import AbnormalMove
from surveil.schemas import sort_events
from tests.conftest import events, market

MIN = 60.0
HOUR = 3600.0


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """A thinned generic market (one trade in four); at t=1500 s BTC/USDT jumps 2% on both venues
    on a burst of 80 extra 5-lot trades within the minute (the 26th one-minute bucket, after warm-up)."""
    m = market(seed=seed, seconds=seconds)
    m = m.filter(pa.array(np.arange(m.num_rows) % 4 == 0))  # small, so that batch size 1 stays fast
    ts = m.column("ts").cast(pa.int64()).to_numpy() / 1e9
    btc = np.asarray(m.column("instrument").to_pylist()) == "BTC/USDT"
    price = np.where(btc & (ts >= 1500), np.round(m.column("price").to_numpy() * 1.02, 2), m.column("price").to_numpy())
    m = m.set_column(m.schema.get_field_index("price"), "price", pa.array(price))
    base = float(price[btc & (ts >= 1500)][0])
    n = 80
    burst = events(ts=np.linspace(1500.5, 1559.5, n), kind=["trade"] * n, venue=["SHARED", "REFX"] * (n // 2),
                   instrument=["BTC/USDT"] * n, price=np.round(base * (1 + np.linspace(0, 0.002, n)), 2),
                   qty=[5.0] * n, trade_id=[f"B{i}" for i in range(n)], src=pa.array([1] * n, pa.int32()))
    return sort_events(pa.concat_tables([m, burst]))


def tape(specs, start_s: float = 0.0, bucket_s: float = MIN):
    """One bucket per spec ``(trades, qty, price)`` or list of per-trade ``(qty, price)``; evenly spread, venues A/B."""
    ts, qty, price, venue = [], [], [], []
    for b, spec in enumerate(specs):
        trades = spec if isinstance(spec, list) else [(spec[1], spec[2])] * spec[0]
        for i, (q, p) in enumerate(trades):
            ts.append(start_s + b * bucket_s + (i + 0.5) * bucket_s / len(trades))
            qty.append(q), price.append(p), venue.append("AB"[i % 2])
    n = len(ts)
    return events(ts=ts, kind=["trade"] * n, venue=venue, instrument=["X"] * n, price=price, qty=qty,
                  trade_id=[f"t{i}" for i in range(n)])


def quiet(n_buckets: int, trades: int = 5, qty: float = 1.0, price: float = 100.0, seed: int = 0):
    """Buckets whose volume varies +-20% and whose price wanders +-5 bps."""
    rng = np.random.default_rng(seed)
    return [(trades, round(qty * rng.uniform(0.8, 1.2), 4), round(price * (1 + rng.uniform(-5e-4, 5e-4)), 4))
            for _ in range(n_buckets)]


def run(det, table, batch=None):
    st = det.new_state()
    sel = det.select(table)
    out = {}
    for s in range(0, sel.num_rows, batch or max(sel.num_rows, 1)):
        out.update({a.alert_id: a for a in det.update(st, sel.slice(s, batch or sel.num_rows))})
    out.update({a.alert_id: a for a in det.flush(st)})
    return sorted(out.values(), key=lambda a: a.window_start_ns)


VOLUME_SPIKE = quiet(40) + [(5, 8.0, 100.0)] + quiet(3, seed=1)
PRICE_JUMP = quiet(40) + [(5, 1.0, 101.0)] + quiet(3, price=101.0, seed=1)


def test_a_volume_spike_alerts_with_its_multiple_baseline_and_bounded_evidence():
    [a] = run(AbnormalMove(), tape(VOLUME_SPIKE))
    assert a.window_start_ns == 40 * 60 * 10**9 and a.window_end_ns == 41 * 60 * 10**9
    assert a.metrics["volume_abnormal"] and not a.metrics["price_abnormal"]
    assert a.metrics["volume"] == 40.0
    assert a.metrics["volume_multiple"] == pytest.approx(40.0 / a.metrics["baseline_volume_mean"])
    assert "abnormal volume" in a.summary and "x recent (z" in a.summary and "5 trades on A, B" in a.summary
    assert 0 < a.evidence.num_rows <= 5 and a.params == AbnormalMove().params()


@pytest.mark.parametrize("factor, fires", [(0.999, True), (1.001, False)])
def test_volume_z_and_multiple_thresholds(factor, fires):
    [a] = run(AbnormalMove(), tape(VOLUME_SPIKE))
    z, mult = a.metrics["volume_z"], a.metrics["volume_multiple"]
    assert bool(run(AbnormalMove(volume_z=z * factor), tape(VOLUME_SPIKE))) is fires
    assert bool(run(AbnormalMove(min_volume_multiple=mult * factor), tape(VOLUME_SPIKE))) is fires


@pytest.mark.parametrize("factor, fires", [(0.999, True), (1.001, False)])
def test_return_z_and_min_return_thresholds(factor, fires):
    [a] = run(AbnormalMove(), tape(PRICE_JUMP))
    assert a.metrics["price_abnormal"] and not a.metrics["volume_abnormal"] and "price +1.00%" in a.summary
    z, bps = a.metrics["return_z"], a.metrics["return_bps"]
    assert bool(run(AbnormalMove(return_z=z * factor), tape(PRICE_JUMP))) is fires
    assert bool(run(AbnormalMove(min_return_bps=bps * factor), tape(PRICE_JUMP))) is fires


@pytest.mark.parametrize("min_buckets, fires", [(10, True), (11, False)])
def test_nothing_alerts_during_warm_up(min_buckets, fires):
    spike = quiet(10) + [(5, 8.0, 100.0)] + quiet(3, seed=1)  # 10 buckets closed before the spike
    assert bool(run(AbnormalMove(min_buckets=min_buckets), tape(spike))) is fires


def test_one_odd_print_does_not_move_the_bucket_price():
    odd = [(1.0, 100.0)] * 9 + [(0.05, 105.0)]  # a 5% print, but small: the VWAP barely moves
    assert run(AbnormalMove(), tape(quiet(40, trades=10) + [odd] + quiet(3, trades=10, seed=1))) == []


def test_a_news_sized_jump_does_not_alert_a_market_wide_move_does():
    # both venues step together: 0.6% on twice the volume is news; 1.5% on 8x is abnormal
    assert run(AbnormalMove(), tape(quiet(40) + [(5, 2.0, 100.6)] + quiet(3, price=100.6, seed=1))) == []
    [a] = run(AbnormalMove(), tape(quiet(40) + [(5, 8.0, 101.5)] + quiet(3, price=101.5, seed=1)))
    assert a.metrics["price_abnormal"] and a.metrics["volume_abnormal"] and a.severity.value == "high"
    assert set(a.metrics["venue_return_bps"]) == {"A", "B"} and "across venues (A +1." in a.summary


def test_one_venue_moving_alone_is_not_a_market_move():
    # B (alone) jumps 2% and stays there: a dislocation, price_dislocation's finding
    apart = [[(1.0, 100.0), (1.0, 102.0)] * 3] * 4
    assert run(AbnormalMove(), tape(quiet(40, trades=6) + apart)) == []
    # B runs up 3% on ten times its volume while A stays put: a pump on one venue, not the market
    pump = [[(1.0, 100.0), (10.0, 103.0)] * 3] + [[(1.0, 100.0), (1.0, 103.0)] * 3] * 3
    assert run(AbnormalMove(), tape(quiet(40, trades=6) + pump)) == []


def test_a_regular_busy_hour_does_not_alert_the_same_volume_in_a_quiet_hour_does():
    # two days of one-minute buckets: 14:00-15:00 UTC is busy (10x) every day; on day 2, 03:00-04:00 is too
    day = 24 * 60
    specs = []
    for minute in range(2 * day):
        hour = minute % day // 60
        busy = hour == 14 or (minute >= day and hour == 3)
        specs.append((3, (10.0 if busy else 1.0) * (0.8 + 0.4 * ((minute * 7919) % 13) / 12), 100.0))
    alerts = run(AbnormalMove(), tape(specs))
    hours = [(a.window_start_ns // 10**9 // 86400, a.window_start_ns // 10**9 % 86400 // 3600) for a in alerts]
    assert (1, 3) in hours and (1, 14) not in hours
    first = next(a for a in alerts if hours[alerts.index(a)] == (1, 3))
    assert first.window_start_ns == (86400 + 3 * 3600) * 10**9 and "x usual for 03:00-04:00 UTC (z" in first.summary


def test_same_alerts_whatever_the_batch_size_and_across_a_snapshot():
    table = tape(VOLUME_SPIKE[:20] + [(5, 1.0, 101.0)] + VOLUME_SPIKE[20:])
    whole = [(a.alert_id, a.summary) for a in run(AbnormalMove(min_buckets=10), table)]
    assert len(whole) == 2
    for batch in (1, 3, 7):  # buckets open in one batch and close in another
        assert [(a.alert_id, a.summary) for a in run(AbnormalMove(min_buckets=10), table, batch=batch)] == whole
    det = AbnormalMove(min_buckets=10)
    st, sel = det.new_state(), det.select(table)
    got = det.update(st, sel.slice(0, 77))
    st = pickle.loads(pickle.dumps(st))
    got += det.update(st, sel.slice(77)) + det.flush(st)
    assert [(a.alert_id, a.summary) for a in got] == whole


def test_the_last_bucket_closes_at_flush():
    det = AbnormalMove()
    st = det.new_state()
    assert det.update(st, det.select(tape(quiet(30) + [(5, 8.0, 100.0)]))) == []
    [a] = det.flush(st)
    assert a.metrics["volume_abnormal"]


def test_a_long_gap_restarts_the_baseline_and_makes_the_state_idle():
    det = AbnormalMove(max_gap_ms=3_600_000)
    before, after = tape(quiet(30)), tape([(5, 8.0, 100.0)] + quiet(3), start_s=30 * MIN + 2 * HOUR)
    st = det.new_state()
    det.update(st, det.select(before))
    assert not det.is_idle(st, int((30 * MIN + 0.5 * HOUR) * 1e9))
    assert det.is_idle(st, int((30 * MIN + 1.1 * HOUR) * 1e9))
    assert det.update(st, det.select(after)) + det.flush(st) == []  # warming up again
    assert run(AbnormalMove(max_gap_ms=3 * 3_600_000), pa.concat_tables([before, after]))  # same spike, baseline kept
