"""Momentum ignition: thresholds either side, look-alikes, and the contract market.

A calm tape at 100 (trades one a second between two owners, no aggressor side), then owner IG's
burst of aggressive buys stepping the price up, then IG's sales against the move.  ``refx`` adds
the reference venue's public trades (no owners) the burst's venue is measured against.
"""
from __future__ import annotations

import numpy as np
import pytest

from detectors.momentum_ignition import MomentumIgnition
from tests.detectors.test_spoofing import INST, book, tape, trade


def alerts(det, rows):
    state = det.new_state()
    out = {a.alert_id: a for a in det.update(state, det.select(book(rows)))}
    out.update({a.alert_id: a for a in det.flush(state)})
    return list(out.values())


def ignition(t0=40.0, n=6, move_bps=30.0, qty=1.0, reverse=0.6, delay=10.0, owner="IG", side="buy",
             base=100.0, tag="") -> list[dict]:
    """``n`` aggressive trades by ``owner`` in 2.5 s moving the price ``move_bps``, then sales of ``reverse`` x
    the burst's quantity ``delay`` s after the burst (in two trades, resting)."""
    sign = 1 if side == "buy" else -1
    rows = []
    for k in range(n):
        px = round(base * (1 + sign * move_bps * 1e-4 * (k + 1) / n), 6)
        buyer, seller = (owner, "MM") if side == "buy" else ("MM", owner)
        rows.append(trade(t0 + 0.5 * k, f"{tag}b{k}", buyer, seller, px, qty, aggressor=side))
    end = t0 + 0.5 * (n - 1)
    top = rows[-1]["price"]
    for k in range(2):
        buyer, seller = ("CP", owner) if side == "buy" else (owner, "CP")
        rows.append(trade(end + delay + k, f"{tag}r{k}", buyer, seller, top, round(reverse * n * qty / 2, 9),
                          aggressor="buy" if side == "buy" else "sell"))
    return rows


def refx(price, t0: float = 0.0, t1: float = 60.0) -> list[dict]:
    """The reference venue's public trades, one a second at ``price(t)`` (a number or a function of t)."""
    at = price if callable(price) else (lambda t: price)
    return [dict(ts=t + 0.25, kind="trade", venue="REFX", instrument=INST, trade_id=f"rx{t}", price=at(t), qty=1.0,
                 side="buy") for t in np.arange(t0, t1, 1.0)]


def test_burst_then_reversal_alerts_with_evidence_and_summary():
    [a] = alerts(MomentumIgnition(), tape(60) + ignition())
    assert a.owners == ["IG"] and a.instrument == INST and a.venues == ["SHARED"]
    assert a.evidence.column("trade_id").to_pylist() == [f"b{k}" for k in range(6)] + ["r0", "r1"]
    assert "6 aggressive buys" in a.summary and "+30 bps" in a.summary and "then sold 3.6 (60% of the burst)" in a.summary
    assert a.params == MomentumIgnition().params() and a.window_start_ns == 40 * 10**9


def test_sell_side_burst_then_buying_back():
    [a] = alerts(MomentumIgnition(), tape(60) + ignition(side="sell"))
    assert "aggressive sells" in a.summary and "then bought" in a.summary and a.metrics["move_bps"] > 29


def test_same_alert_id_whatever_the_batching():
    det = MomentumIgnition()
    table = det.select(book(tape(60) + ignition()))
    whole = alerts(det, tape(60) + ignition())
    state, got = det.new_state(), {}
    for i in range(table.num_rows):
        got.update({a.alert_id: a for a in det.update(state, table.slice(i, 1))})
    got.update({a.alert_id: a for a in det.flush(state)})
    assert [a.alert_id for a in whole] == list(got) and list(got.values())[0].summary == whole[0].summary


@pytest.mark.parametrize("n, fires", [(5, True), (4, False)])
def test_min_trades_threshold(n, fires):
    assert bool(alerts(MomentumIgnition(min_trades=5), tape(60) + ignition(n=n))) is fires


@pytest.mark.parametrize("move, fires", [(20.5, True), (19.5, False)])
def test_move_threshold(move, fires):
    assert bool(alerts(MomentumIgnition(min_move_bps=20.0), tape(60) + ignition(move_bps=move))) is fires


@pytest.mark.parametrize("share, fires", [(0.31, True), (0.29, False), (1.99, True), (2.01, False)])
def test_reverse_share_thresholds(share, fires):
    det = MomentumIgnition(min_reverse_share=0.3, max_reverse_share=2.0)
    assert bool(alerts(det, tape(60) + ignition(reverse=share))) is fires


@pytest.mark.parametrize("delay, fires", [(80.0, True), (95.0, False)])
def test_reversal_window(delay, fires):
    assert bool(alerts(MomentumIgnition(reverse_ms=90_000), tape(150) + ignition(delay=delay))) is fires


def test_arbitrageur_keeping_its_position_does_not_alert():
    rows = [r for r in ignition() if not r["trade_id"].startswith("r")]  # bought, never sold back
    assert alerts(MomentumIgnition(), tape(60) + rows) == []


def test_sustained_campaign_is_not_a_burst():
    # buying on, a trade a second, until 12 s after the burst began: more than twice burst_ms
    rows = ignition(n=6) + [trade(43.0 + k, f"x{k}", "IG", "MM", 100.3, 1.0, aggressor="buy") for k in range(10)]
    assert alerts(MomentumIgnition(burst_ms=5_000), tape(60) + rows) == []


def test_a_stray_trade_next_to_the_burst_is_no_campaign():
    rows = ignition(n=6) + [trade(46.0, "x", "IG", "MM", 100.3, 1.0, aggressor="buy")]  # 6 s after it began
    assert len(alerts(MomentumIgnition(burst_ms=5_000), tape(60) + rows)) == 1


@pytest.mark.parametrize("other_qty, fires", [(10.0, True), (12.0, False)])  # 6 of 56 (10.7%) / of 66 (9.1%)
def test_volume_share_threshold(other_qty, fires):
    # another owner also buys aggressively, five times, while the burst runs: whose move was it?
    crowd = [trade(40.1 + 0.5 * k, f"c{k}", "CH", "MM", 100.0, other_qty, aggressor="buy") for k in range(5)]
    det = MomentumIgnition(min_volume_share=0.1)
    assert bool(alerts(det, tape(60) + ignition() + crowd)) is fires


@pytest.mark.parametrize("ref, fires", [(100.0, True), (100.095, True), (100.105, False)])
def test_venue_must_end_out_of_line_with_the_other_venues(ref, fires):
    # the burst takes SHARED to 100.3: 20.5 / 19.5 bps beyond a reference at 100.095 / 100.105
    assert bool(alerts(MomentumIgnition(min_move_bps=20.0), tape(60) + refx(ref) + ignition())) is fires


@pytest.mark.parametrize("ref, fires", [(99.86, True), (99.84, False)])
def test_venue_already_out_of_line_joined_a_move(ref, fires):
    # SHARED stood 14 / 16 bps above the other venues, the burst's way, before it began
    assert bool(alerts(MomentumIgnition(max_prior_move_bps=15.0), tape(60) + refx(ref) + ignition())) is fires


# -- look-alikes ------------------------------------------------------------------------------
def test_move_every_venue_makes_does_not_alert():
    news = refx(lambda t: 100.0 if t < 40 else 100.3)  # the reference venue moves with SHARED
    assert alerts(MomentumIgnition(), tape(60) + news + ignition()) == []


def test_arbitrageur_bringing_the_venue_back_in_line_does_not_alert():
    # the other venue jumped 30 bps first; the burst (and its unwind) only catch SHARED up with it
    jump = refx(lambda t: 100.0 if t < 35 else 100.3)
    assert alerts(MomentumIgnition(), tape(60) + jump + ignition()) == []


def test_busy_trader_routine_does_not_alert():
    # IG took liquidity every 2 s for the five minutes before: a burst is its routine
    usual = [trade(t, f"u{t}", "IG" if k % 2 else "MM", "MM" if k % 2 else "IG", 100.0, 0.1,
                   aggressor="buy" if k % 2 else "sell") for k, t in enumerate(np.arange(-260.0, 39.0, 2.0))]
    rows = tape(60) + [trade(t, f"c{t}", "MMX", "TRX", 100.0, 1.0) for t in range(-260, 0, 1)] + usual + ignition()
    assert alerts(MomentumIgnition(), rows) == []
    assert alerts(MomentumIgnition(max_usual_trades=100.0), rows)


def test_chaser_joining_a_move_already_under_way_does_not_alert():
    ramp = [trade(30 + k, f"p{k}", "MMX", "TRX", round(100 * (1 + 0.002 * k / 9), 6), 1.0) for k in range(10)]
    rows = tape(30) + ramp + ignition(base=100.2)
    assert alerts(MomentumIgnition(max_prior_move_bps=15.0), rows) == []
    assert alerts(MomentumIgnition(max_prior_move_bps=25.0), rows)


def test_state_is_idle_only_after_the_verdict():
    det = MomentumIgnition()
    state = det.new_state()
    det.update(state, det.select(book(tape(60) + ignition()[:6])))
    assert state.open and not det.is_idle(state, 10**15)
    det.flush(state)
    assert det.is_idle(state, 10**15)


@pytest.mark.parametrize("bad", [dict(min_trades=1), dict(burst_ms=0), dict(min_move_bps=0),
                                 dict(min_reverse_share=0.5, max_reverse_share=0.4), dict(max_usual_trades=0),
                                 dict(min_volume_share=1.5)])
def test_bad_parameters_are_value_errors(bad):
    with pytest.raises(ValueError):
        MomentumIgnition(**bad)


# -- contract market ----------------------------------------------------------------------------
def contract_market(seed: int = 0, seconds: int = 1800):
    """Two instruments of calm two-way trading with an ignition episode every 300 s on BTC/USDT."""
    rng = np.random.default_rng(seed)
    rows = []
    for inst, step in ((INST, 2), ("ETH/USDT", 5)):
        px = 100.0
        for t in range(1, seconds, step):
            px *= float(np.exp(rng.normal(0, 1e-4)))
            b, s = rng.choice([f"T{i}" for i in range(8)], 2, replace=False)
            rows.append(trade(float(t), f"{inst[:3]}{t}", str(b), str(s), round(px, 4), round(float(rng.lognormal(0, .5)), 4),
                              aggressor=str(rng.choice(["buy", "sell"])), inst=inst))
    btc = sorted((r["ts"], r["price"]) for r in rows if r["instrument"] == INST)
    for k, t0 in enumerate(range(120, seconds - 120, 300)):
        base = btc[int(np.searchsorted([t for t, _ in btc], t0)) - 1][1]
        rows += ignition(t0=t0 + 0.25, n=int(rng.integers(5, 9)), move_bps=float(rng.uniform(25, 60)),
                         reverse=float(rng.uniform(0.4, 1.0)), delay=float(rng.uniform(3, 40)), owner=f"IG{k % 3}",
                         side="buy" if k % 2 else "sell", base=base, tag=f"k{k}")
    return book(rows)
