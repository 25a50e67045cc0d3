import pytest

from detectors.price_dislocation import PriceDislocation
from tests.conftest import events


def two_venues(gap_bps: float, hold_s: float, staleness_after: float | None = None):
    """A at 100 throughout; B jumps by gap_bps at t=10 for hold_s seconds, then returns. Both trade every second."""
    ts, venue, price = [], [], []
    end = 10 + hold_s
    for t in range(0, int(end) + 20):
        for v in ("A", "B"):
            if staleness_after is not None and v == "A" and t > staleness_after:
                continue
            ts.append(float(t) + (0.5 if v == "B" else 0.0))
            venue.append(v)
            up = v == "B" and 10 <= t + (0.5 if v == "B" else 0) < end
            price.append(100.0 * (1 + gap_bps / 1e4) if up else 100.0)
    n = len(ts)
    return events(ts=ts, kind=["trade"] * n, venue=venue, instrument=["X"] * n, price=price, qty=[1.0] * n,
                  trade_id=[f"t{i}" for i in range(n)])


def run(det, table):
    st = det.new_state()
    out = {a.alert_id: a for a in det.update(st, det.select(table))}
    out.update({a.alert_id: a for a in det.flush(st)})
    return list(out.values())


def test_above_threshold_for_longer_than_T_alerts_with_window_peak_and_venues():
    [a] = run(PriceDislocation(threshold_bps=50, min_duration_ms=30_000), two_venues(60, 40))
    assert a.venues == ["A", "B"] and a.metrics["high_venue"] == "B" and a.metrics["closed"]
    assert a.metrics["peak_gap_bps"] == pytest.approx(60 / (1 + 0.003), rel=1e-3)
    assert a.window_start_ns == 10_500_000_000 and a.window_end_ns == 50_500_000_000


def test_just_below_threshold_does_not_alert():
    assert run(PriceDislocation(threshold_bps=50, min_duration_ms=30_000), two_venues(50.1, 60)) == []


def test_too_short_does_not_alert():
    assert run(PriceDislocation(threshold_bps=50, min_duration_ms=30_000), two_venues(100, 29)) == []


def test_just_long_enough_alerts():
    assert len(run(PriceDislocation(threshold_bps=50, min_duration_ms=30_000), two_venues(100, 31))) == 1


def test_a_stale_venue_is_left_out():
    # A stops trading at t=5: B's jump at t=10 has nothing fresh to compare against
    assert run(PriceDislocation(threshold_bps=50, min_duration_ms=30_000, max_staleness_ms=2_000),
               two_venues(100, 60, staleness_after=5)) == []


def test_alert_fires_when_duration_is_reached_then_is_revised_at_close():
    det = PriceDislocation(threshold_bps=50, min_duration_ms=30_000)
    table = det.select(two_venues(100, 60))
    st = det.new_state()
    first = det.update(st, table.slice(0, 2 * 45))  # up to t=45: open for 35 s
    assert len(first) == 1 and not first[0].metrics["closed"]
    rest = det.update(st, table.slice(2 * 45))
    assert [a.alert_id for a in rest] == [first[0].alert_id] and rest[0].metrics["closed"]
