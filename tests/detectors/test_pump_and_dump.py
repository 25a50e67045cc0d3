"""Pump and dump: surge, volume and dump thresholds either side, look-alikes, and the contract market.

``market`` lays down a calm venue (one trade of 1.0 every 5 s at 100) for 30 minutes, then a
surge to ``rise`` % over 60 s on ``mult`` x the usual quantity, then a fall back by ``back``.
"""
from __future__ import annotations

import numpy as np
import pytest

from detectors.pump_and_dump import PumpAndDump
from tests.detectors.test_spoofing import INST, book, trade


def alerts(det, rows):
    state = det.new_state()
    out = {a.alert_id: a for a in det.update(state, det.select(book(rows)))}
    out.update({a.alert_id: a for a in det.flush(state)})
    return list(out.values())


def calm(t0: float = 0.0, t1: float = 1800.0, px: float = 100.0, venue: str = "SHARED", tag: str = "c") -> list[dict]:
    return [dict(trade(t, f"{tag}{t:g}", "MMX", "TRX", px, 1.0), venue=venue) for t in np.arange(t0, t1, 5.0)]


def pump(rise: float = 8.0, mult: float = 6.0, back: float = 0.8, t0: float = 1800.0, hold: float = 0.0,
         venue: str = "SHARED", base: float = 100.0, tag: str = "p") -> list[dict]:
    """60 s up by ``rise`` % at ``mult`` x the calm quantity, ``hold`` s at the peak, 60 s down by ``back`` of it."""
    rows, per = [], mult * 2.0  # the calm venue trades 2.0 per 10 s bucket
    peak = base * (1 + rise / 100)
    for k in range(6):  # six buckets of 10 s, four trades each
        px = base + (peak - base) * (k + 1) / 6
        rows += [dict(trade(t0 + 10 * k + 2.5 * j, f"{tag}u{k}{j}", "CH", "MMX", round(px, 6), per / 4), venue=venue)
                 for j in range(4)]
    rows += calm(t0 + 60, t0 + 60 + hold, peak, venue, f"{tag}h")
    t1 = t0 + 60 + hold
    for k in range(6):
        px = peak - (peak - base) * back * (k + 1) / 6
        rows += [dict(trade(t1 + 10 * k + 2.5 * j, f"{tag}d{k}{j}", "MMX", "CH", round(px, 6), 0.5), venue=venue)
                 for j in range(4)]
    return rows


def test_pump_then_dump_alerts_once_with_evidence_and_summary():
    [a] = alerts(PumpAndDump(), calm() + pump())
    assert a.instrument == INST and a.venues == ["SHARED"] and a.owners == []
    assert "pumped and dumped on SHARED" in a.summary and "+8.0%" in a.summary and "3x usual volume" in a.summary
    assert a.evidence.num_rows == 3 and a.params == PumpAndDump().params()
    assert a.window_start_ns <= 1800 * 10**9 <= a.window_end_ns


@pytest.mark.parametrize("rise, fires", [(4.7, True), (4.3, False)])
def test_rise_threshold(rise, fires):
    assert bool(alerts(PumpAndDump(min_rise_pct=4.5), calm() + pump(rise=rise))) is fires


@pytest.mark.parametrize("mult, fires", [(5.2, True), (4.8, False)])  # the 120 s window holds 60 s of surge
def test_volume_threshold(mult, fires):
    assert bool(alerts(PumpAndDump(volume_multiple=3.0), calm() + pump(mult=mult))) is fires


@pytest.mark.parametrize("back, fires", [(0.55, True), (0.45, False)])
def test_retrace_threshold(back, fires):
    assert bool(alerts(PumpAndDump(min_retrace_share=0.5), calm() + pump(back=back))) is fires


def test_no_alert_before_warm_up():
    assert alerts(PumpAndDump(min_buckets=30), calm(0, 200) + pump(t0=200)) == []


def test_each_venue_on_its_own():
    rows = calm() + calm(venue="REFX", tag="r") + pump() + calm(1800, 2000, venue="REFX", tag="r2")
    [a] = alerts(PumpAndDump(), rows)
    assert a.venues == ["SHARED"]


# -- look-alikes ------------------------------------------------------------------------------
def test_news_jump_does_not_alert():  # 0.5-0.8% on both venues on 1.5-3x volume, and it holds
    rows = calm() + calm(venue="REFX", tag="r") + pump(rise=0.8, mult=3.0, back=0.0, hold=300)
    assert alerts(PumpAndDump(), rows) == []


def test_lasting_repricing_on_volume_does_not_alert():  # an abnormal but genuine move: no dump
    rows = calm() + pump(rise=8.0, back=0.0, hold=600)
    assert alerts(PumpAndDump(dump_window_ms=300_000), rows) == []


def test_price_jump_without_volume_does_not_alert():  # a dislocation or a spike on one venue
    assert alerts(PumpAndDump(), calm() + pump(mult=1.0)) == []


def test_state_is_idle_only_after_the_lookback_and_verdicts():
    det = PumpAndDump()
    state = det.new_state()
    det.update(state, det.select(book(calm())))
    assert not det.is_idle(state, 1800 * 10**9 + det.lookback_ms * 10**6 * 2)  # a bucket still open
    det.flush(state)
    assert det.is_idle(state, 1800 * 10**9 + det.lookback_ms * 10**6 * 2)
    assert not det.is_idle(state, 1800 * 10**9)


@pytest.mark.parametrize("bad", [dict(bucket_ms=0), dict(min_rise_pct=0), dict(baseline_alpha=0),
                                 dict(min_retrace_share=1.5), dict(lookback_ms=1)])
def test_bad_parameters_are_value_errors(bad):
    with pytest.raises(ValueError):
        PumpAndDump(**bad)


# -- contract market ----------------------------------------------------------------------------
def contract_market(seed: int = 0, seconds: int = 1800):
    """A calm, noisy venue with a pump and dump every 900 s after a 600 s warm-up."""
    rng = np.random.default_rng(seed)
    rows, px = [], 100.0
    for t in np.arange(0.0, seconds, 5.0):
        px *= float(np.exp(rng.normal(0, 2e-4)))
        rows.append(trade(float(t), f"c{t:g}", "MMX", "TRX", round(px, 4), round(float(rng.lognormal(0, .3)), 4)))
    for k, t0 in enumerate(range(600, seconds - 200, 900)):
        rows = [r for r in rows if not t0 <= r["ts"] < t0 + 125]
        rows += pump(rise=float(rng.uniform(6, 20)), mult=float(rng.uniform(4, 10)), t0=float(t0) + 0.5,
                     base=px, tag=f"k{k}")
    return book(rows)
