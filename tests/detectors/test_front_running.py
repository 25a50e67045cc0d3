"""Front running: thresholds either side, look-alikes (honest large order, busy two-way trader, linked
owner, a large trade whose move does not last, a move the other venues made at once or never followed,
a trend), and the contract market.

``tape`` lays down background trades of size about 1 (0.01 apart) at 100 between owners who take no part; ``episode``
adds a front trade, the large trade, background trades at the level the large trade moved the price
to (``hold_px``) and the unwind.  A large trade is decided ``unwind_ms`` after it, so ``alerts``
runs to end of input (``flush``).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from detectors.front_running import FrontRunning
from tests.conftest import events
from tests.conftest import market as generic_market

INST = "BTC/USDT"


def trade(ts, side, price, qty, buyer, seller, *, tid=None, inst=INST, buy_group=None, sell_group=None):
    return dict(ts=ts, kind="trade", venue="SHARED", instrument=inst, side=side, price=price, qty=qty,
                buy_owner=buyer, sell_owner=seller, buy_group=buy_group or buyer, sell_group=sell_group or seller,
                buy_account=f"HK-{buyer}", sell_account=f"OV-{seller}", buy_platform="HKVATP",
                sell_platform="OVSAFF", trade_id=tid or f"{inst[:3]}{ts:.3f}")


def tape(n=30, t0=0.0, inst=INST):
    """Background of sizes 0.99, 1 and 1.01: typical size 1, size increment 0.01."""
    return [trade(t0 + i, "buy" if i % 2 else "sell", 100.0, 1.0 + 0.01 * (i % 3 - 1), "BG1", "BG2", inst=inst)
            for i in range(n)]


def episode(t0=40.0, front=2.0, large=20.0, unwind_px=100.2, unwind_after=15.0, side="buy", owner="FR",
            victim="BIG", victim_group=None, inst=INST, hold_px=None, extra=()):
    """``owner`` takes ``front`` the large trade's way at t0, ``victim`` trades ``large`` 5 s later,
    background trades at ``hold_px`` (default: ``unwind_px``) follow for 30 s, ``owner`` trades
    ``front`` back at ``unwind_px`` ``unwind_after`` s after the large trade."""
    other = "sell" if side == "buy" else "buy"
    pair = (lambda who: (who, "CP")) if side == "buy" else (lambda who: ("CP", who))
    back = ("CP", owner) if side == "buy" else (owner, "CP")
    hold = unwind_px if hold_px is None else hold_px
    rows = [trade(t0, side, 100.0, front, *pair(owner), inst=inst),
            trade(t0 + 5, side, 100.0, large, *pair(victim), inst=inst,
                  **({"buy_group" if side == "buy" else "sell_group": victim_group} if victim_group else {})),
            trade(t0 + 5 + unwind_after, other, unwind_px, front, *back, inst=inst)]
    rows += [trade(t0 + 5 + k + 0.5, "buy" if k % 2 else "sell", hold, 1.0, "BG1", "BG2", inst=inst)
             for k in range(0, 30, 3)]
    return rows + list(extra)


def table(rows):
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def alerts(rows, **kw):
    d = FrontRunning(**kw)
    st = d.new_state()
    return d.update(st, d.select(table(rows))) + d.flush(st)


def test_fires_with_evidence_summary_and_params():
    (a,) = alerts(tape() + episode())
    assert a.owners == ["FR"] and a.instrument == INST and a.key == f"FR|{INST}"
    assert a.evidence.num_rows == 3 and a.params == FrontRunning().params()
    assert "FR front-ran BIG" in a.summary and "20.0 bps better" in a.summary and "+20.0 bps for good" in a.summary
    assert a.metrics["victim"] == "BIG" and a.metrics["lead_s"] == 5.0


def test_decided_once_the_unwind_window_has_passed():
    d = FrontRunning()
    st = d.new_state()
    rows = tape() + episode()
    assert d.update(st, d.select(table(rows))) == []  # 120 s after the large trade have not passed yet
    (a,) = d.update(st, d.select(table([trade(45.0 + 121, "buy", 100.2, 1.0, "BG1", "BG2")])))
    assert a.owners == ["FR"] and d.flush(st) == []


def test_sell_side_fires():
    (a,) = alerts(tape() + episode(side="sell", unwind_px=99.8))
    assert a.metrics["side"] == "sell" and a.score > 19


def test_large_trade_threshold():
    assert len(alerts(tape() + episode(large=10.0))) == 1  # exactly 10x typical
    assert alerts(tape() + episode(large=9.9)) == []


def test_move_threshold():
    # the level before is 100; the level the large trade moved it to is that of the trades in the 3 s after it
    assert len(alerts(tape() + episode(hold_px=100.051, unwind_px=100.2))) == 1  # 5.1 bps
    assert alerts(tape() + episode(hold_px=100.049, unwind_px=100.2)) == []  # 4.9 bps


def refx(price, t0: float = 0.0, t1: float = 120.0, inst=INST):
    """The other venue's public trades (no owners), one a second at ``price(t)``."""
    return [dict(ts=float(t) + 0.25, kind="trade", venue="REFX", instrument=inst, side="buy", price=price(float(t)),
                 qty=1.0, trade_id=f"rx{t}") for t in np.arange(t0, t1, 1.0)]


def test_other_venues_must_follow_the_move():
    # SHARED steps 20 bps at the large trade (45 s); REFX catches up 10 s later, or never
    # (strong_chance_matches=0: an unconfirmed move is never enough, whatever the match)
    assert len(alerts(tape() + episode() + refx(lambda t: 100.0 if t < 55 else 100.2))) == 1
    assert alerts(tape() + episode() + refx(lambda t: 100.0), strong_chance_matches=0) == []
    # the follow threshold: REFX up 30% / 25% of the move
    assert len(alerts(tape() + episode() + refx(lambda t: 100.0 if t < 55 else 100.061), min_follow_share=0.3,
                      strong_chance_matches=0)) == 1
    assert alerts(tape() + episode() + refx(lambda t: 100.0 if t < 55 else 100.05), min_follow_share=0.3,
                  strong_chance_matches=0) == []


def test_unconfirmed_move_needs_a_match_very_unlikely_by_chance():
    # REFX never follows: the step is unconfirmed (the market's drift can hide a follow), so FR's match
    # (one trade each way: 0.005 chance matches) is named only within strong_chance_matches
    never = tape() + episode() + refx(lambda t: 100.0)
    assert len(alerts(never, strong_chance_matches=0.0051)) == 1
    assert alerts(never, strong_chance_matches=0.0049) == []
    assert alerts(never) == []  # by default (0) an unconfirmed move is never enough


def test_move_every_venue_makes_at_once_is_not_the_large_trades():
    assert alerts(tape() + episode() + refx(lambda t: 100.0 if t < 45 else 100.2)) == []


def test_a_move_that_runs_on_is_a_trend_not_a_step():
    # the price goes on rising after the 20 bps step: 30 s later it is 80 bps up, more than 1 / 0.3 of the step
    trend = [trade(45.0 + k + 0.7, "buy", round(100.2 + 0.02 * k, 4), 1.0, "BG1", "BG2") for k in range(3, 40)]
    assert alerts(tape() + episode(hold_px=100.2, unwind_px=100.5) + trend, strong_chance_matches=0) == []
    assert len(alerts(tape() + episode(hold_px=100.2, unwind_px=100.5) + trend, min_follow_share=0.2,
                      strong_chance_matches=0)) == 1


def test_gain_far_beyond_the_move_is_not_the_large_trades():
    # the step is 20 bps; a gain above max_gain_multiple (4) x 20 = 80 bps came from a market that ran on
    assert len(alerts(tape() + episode(hold_px=100.2, unwind_px=100.79))) == 1  # 79 bps
    assert alerts(tape() + episode(hold_px=100.2, unwind_px=100.81)) == []  # 81 bps
    assert len(alerts(tape() + episode(hold_px=100.2, unwind_px=100.81), max_gain_multiple=4.1)) == 1


def test_pairs_tried_are_those_that_make_a_position():
    # FR also took 0.5 ahead: subsets 0.5 (below the 1x typical minimum: never a position), 2 and 2.5;
    # two positions x one subset back = 2 pairs, a chance of 2 x 0.01 / 2 = 0.01 (not 3 pairs, 0.015)
    rows = tape() + episode(extra=[trade(42.0, "buy", 100.0, 0.5, "FR", "CP")])
    (a,) = alerts(rows, max_chance_matches=0.0101)
    assert a.metrics["chance_matches"] == 0.01 and a.metrics["position_qty"] == 2.0
    assert alerts(rows, max_chance_matches=0.0099) == []


def test_position_threshold():
    assert len(alerts(tape() + episode(front=1.0))) == 1
    assert alerts(tape() + episode(front=0.9)) == []


def test_profit_threshold():
    assert len(alerts(tape() + episode(unwind_px=100.021, hold_px=100.2))) == 1
    assert alerts(tape() + episode(unwind_px=100.019, hold_px=100.2)) == []


def test_unwind_must_close_the_position():
    within = [trade(70.0, "sell", 100.2, 0.998, "CP", "FR")]  # 2 back then 0.998 more: no subset of <= 3 hits 2
    assert len(alerts(tape() + episode(extra=within))) == 1  # the 2 alone closes it
    short = episode()
    short[2] = dict(short[2], qty=1.99)  # 0.5% short of the position
    assert alerts(tape() + short) == []
    assert len(alerts(tape() + short, unwind_tolerance=0.006)) == 1


def test_unwind_window():
    assert len(alerts(tape() + episode(unwind_after=119.0))) == 1
    assert alerts(tape() + episode(unwind_after=121.0)) == []


def test_honest_large_order_alone_does_not_alert():
    rows = tape() + [trade(45.0, "buy", 100.0, 40.0, "BIG", "CP"), trade(60.0, "sell", 100.2, 1.0, "CP", "X")]
    rows += [trade(46.0 + k, "buy", 100.2, 1.0, "BG1", "BG2") for k in range(10)]
    assert alerts(rows) == []


def test_busy_trader_whose_flow_back_does_not_match_does_not_alert():
    # the owner bought ahead, but after the large trade it sells 1.3 and 1.1: no subset closes 2
    rows = episode()
    rows[2] = dict(rows[2], qty=1.3)
    extra = [trade(70.0, "sell", 100.2, 1.1, "CP", "FR"), trade(80.0, "buy", 100.2, 0.5, "FR", "CP")]
    assert alerts(tape() + rows + extra) == []


def test_chance_match_threshold():
    # one front subset x one back subset, match width 0.01 (the size increment) over a position of 2
    assert len(alerts(tape() + episode(), max_chance_matches=0.0051)) == 1
    assert alerts(tape() + episode(), max_chance_matches=0.0049) == []


def test_busy_owner_whose_match_is_likely_by_chance_does_not_alert():
    # ten more trades back offer 1 + 10 + 45 + ... subsets: the exact match proves little
    extra = [trade(50.0 + 5 * k, "sell", 100.2, 0.3 + 0.1 * k, "CP", "FR") for k in range(10)]
    assert alerts(tape() + episode(extra=extra)) == []


def test_one_position_is_matched_to_one_large_trade():
    extra = [trade(46.0, "buy", 100.0, 20.0, "BIG2", "CP")]  # a second large trade right after the first
    (a,) = alerts(tape() + episode(extra=extra))
    assert a.metrics["victim"] == "BIG"


def test_of_two_exact_unwinds_the_least_likely_by_chance_is_named():
    # FR2 also bought ahead (3) and sold 3 back, but among 14 subsets of its four trades back: a likelier
    # chance match (0.047) than FR's one trade each way (0.005)
    fr2 = [trade(41.0, "buy", 100.0, 3.0, "FR2", "CP")] + [
        trade(65.0 + k, "sell", 100.2, q, "CP", "FR2") for k, q in enumerate([1.5, 1.5, 0.7, 0.8])]
    (a,) = alerts(tape() + episode(extra=fr2))
    assert a.owners == ["FR"]
    (b,) = alerts(tape() + [r for r in episode(extra=fr2) if "FR" not in (r["buy_owner"], r["sell_owner"])])
    assert b.owners == ["FR2"] and b.metrics["chance_matches"] > a.metrics["chance_matches"]


def test_a_move_that_does_not_last_is_not_front_run():
    assert alerts(tape() + episode(hold_px=100.0)) == []


def test_linked_owner_is_not_front_running_its_own_group():
    rows = tape() + [dict(r, buy_group="G1") if r["buy_owner"] == "FR" else r for r in episode(victim_group="G1")]
    assert alerts(rows) == []


def test_same_alerts_in_any_batching():
    rows = tape() + episode() + [trade(200.0, "buy", 100.2, 1.0, "BG1", "BG2")]
    t = table(rows)
    d = FrontRunning()
    st, got = d.new_state(), []
    for i in range(t.num_rows):
        got += d.update(st, d.select(t.slice(i, 1)))
    got += d.flush(st)
    assert len(got) == 1 and [a.alert_id for a in got] == [a.alert_id for a in alerts(rows)]


def test_validation():
    import pytest
    for bad in ({"large_multiple": 1.0}, {"lead_ms": 0}, {"max_trades": 0}, {"unwind_tolerance": 1.0},
                {"hold_ms": 200_000}, {"jump_ms": 40_000}, {"min_follow_share": 1.5}, {"max_gain_multiple": 0},
                {"strong_chance_matches": -0.1}):
        with pytest.raises(ValueError):
            FrontRunning(**bad)


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """Two instruments of two-way trading on SHARED (owners T0-T7, sizes about 1) and public trades on
    REFX, with a front-running episode every 300 s on BTC/USDT: FRk takes 5 ahead of Vk's 60, which
    steps SHARED 20 bps for good (REFX follows 10 s later), and FRk unwinds 15 s after it."""
    rng = np.random.default_rng(seed)
    episodes = list(range(120, seconds - 150, 300))
    sides = ["buy" if k % 2 else "sell" for k in range(len(episodes))]

    def level(inst, t, lag=0.0):  # the price path: a step at each large trade (BTC only)
        if inst != INST:
            return 50.0
        steps = sum((1 if sd == "buy" else -1) for t0, sd in zip(episodes, sides) if t >= t0 + 5 + lag)
        return 100.0 * (1 + 20e-4 * steps)

    rows = []
    owners = [f"T{i}" for i in range(8)]
    for inst, step in ((INST, 1.0), ("ETH/USDT", 2.5)):
        for t in np.arange(0.3, seconds, step):
            b, s_ = rng.choice(len(owners), 2, replace=False)
            px = round(level(inst, t) * (1 + rng.normal(0, 2e-5)), 4)
            rows.append(trade(float(t), str(rng.choice(["buy", "sell"])), px, round(float(rng.lognormal(0, 0.5)), 4),
                              owners[b], owners[s_], inst=inst, tid=f"{inst[:3]}{t:.1f}"))
        rows += [dict(ts=float(t), kind="trade", venue="REFX", instrument=inst, side="buy", qty=1.0,
                      price=round(level(inst, t, lag=10.0), 4), trade_id=f"rx{inst[:3]}{t:.1f}")
                 for t in np.arange(0.6, seconds, 1.0)]
    for k, (t0, side) in enumerate(zip(episodes, sides)):
        other = "sell" if side == "buy" else "buy"
        mine = (lambda who: (who, "CP")) if side == "buy" else (lambda who: ("CP", who))
        back = ("CP", f"FR{k % 3}") if side == "buy" else (f"FR{k % 3}", "CP")
        rows += [trade(t0 + 0.1, side, level(INST, t0), 5.0, *mine(f"FR{k % 3}"), tid=f"fr{k}-0"),
                 trade(t0 + 5.0, side, level(INST, t0), 60.0, *mine(f"V{k}"), tid=f"fr{k}-1"),
                 trade(t0 + 20.1, other, level(INST, t0 + 20), 5.0, *back, tid=f"fr{k}-2")]
    return table(rows)
