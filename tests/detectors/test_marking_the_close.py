"""Marking the close: thresholds either side, a busy taker's campaign among its own trades both ways,
look-alikes (news jump on every venue, a price that holds after the fixing, a taker at its usual
pace, a one-way taker, a chaser of a move under way, one large order, a surge the whole venue piles
into), configured fixing times, and the contract market.

Fixings every 30 minutes (``FIX`` = 00:30 UTC); ``tape`` lays down two-way background trades of size 1
on SHARED and REFX every 2 s from 10 minutes before the fixing to 70 s after it (BG1 and BG2 take
liquidity in turn); ``marking`` adds an owner's aggressive buys (or sells) stepping the SHARED price
in the minute before the fixing.  By default the price is given back at the fixing.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from detectors.marking_the_close import MarkingTheClose
from tests.conftest import events
from tests.conftest import market as generic_market

INST = "BTC/USDT"
FIX = 1800.0
EVERY = 1_800_000


def trade(ts, venue, side, price, qty, buyer=None, seller=None, inst=INST):
    return dict(ts=ts, kind="trade", venue=venue, instrument=inst, side=side, price=price, qty=qty,
                buy_owner=buyer, sell_owner=seller, buy_account=buyer and f"HK-{buyer}",
                sell_account=seller and f"OV-{seller}", trade_id=f"{venue[0]}{inst[:3]}{ts:.3f}")


def tape(t0=FIX - 600, t1=FIX + 70, price=lambda t: 100.0, refx=lambda t: 100.0, inst=INST):
    rows = []
    for k, t in enumerate(np.arange(t0, t1, 2.0)):
        t = float(t)
        side = "buy" if k % 2 else "sell"  # BG1 takes both ways in turn
        rows.append(trade(t, "SHARED", side, price(t), 1.0, *(("BG1", "BG2") if k % 2 else ("BG2", "BG1")), inst))
        rows.append(trade(t + 0.5, "REFX", "buy" if k % 2 else "sell", refx(t), 1.0, inst=inst))
    return rows


def marking(n=6, step_bps=10.0, qty=1.0, side="buy", owner="M1", lead=60.0, opposite=0, holds=False,
            give_back=1.0, inst=INST):
    """``n`` aggressive trades in the ``lead`` s before the fixing, each ``step_bps`` past the last, and
    ``opposite`` trades the other way among them; after the fixing the price gives back ``give_back``
    of the move (none if ``holds``).  Returns (rows, the SHARED price path it sets)."""
    sign = 1 if side == "buy" else -1
    times = [FIX - lead + lead * k / n for k in range(n)]
    kept = 1.0 if holds else 1.0 - give_back

    def price(t):
        done = sum(1 for x in times if x <= t) * (1.0 if t < FIX else kept)
        return round(100.0 * (1 + sign * step_bps * 1e-4 * done), 4)
    pair = (lambda: (owner, "CP")) if side == "buy" else (lambda: ("CP", owner))
    rows = [trade(t + 0.1, "SHARED", side, price(t + 0.1), qty, *pair(), inst) for t in times]
    other = "sell" if side == "buy" else "buy"
    back = ("CP", owner) if side == "buy" else (owner, "CP")
    rows += [trade(FIX - lead / 2 + 0.3 + k, "SHARED", other, price(FIX - lead / 2), qty, *back, inst)
             for k in range(opposite)]
    return rows, price


def table(rows):
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def alerts(rows, **kw):
    d = MarkingTheClose(**{"fixing_every_ms": EVERY, **kw})
    st = d.new_state()
    return d.update(st, d.select(table(rows))) + d.flush(st)


def scenario(refx_follows=False, extra=(), **kw):
    ep, price = marking(**kw)
    return tape(price=price, refx=price if refx_follows else (lambda t: 100.0)) + ep + list(extra)


def test_fires_with_evidence_summary_and_params():
    (a,) = alerts(scenario())
    assert a.owners == ["M1"] and a.key == f"M1|{INST}" and a.window_end_ns == int(FIX * 1e9)
    assert a.evidence.num_rows == 6 and set(a.evidence.column("buy_owner").to_pylist()) == {"M1"}
    assert a.params["fixing_every_ms"] == EVERY and "00:30:00 UTC fixing" in a.summary
    assert "100% of the move given back" in a.summary and a.metrics["revert_share"] == 1.0
    assert a.metrics["move_bps"] > 40 and a.metrics["other_venues_bps"] == {"REFX": 0.0}


def test_verdict_waits_for_the_reversion_window():
    d = MarkingTheClose(fixing_every_ms=EVERY)
    st = d.new_state()
    rows = table(scenario())
    ts = rows.column("ts").cast(pa.int64()).to_numpy()
    cut = int(np.searchsorted(ts, int((FIX + 60) * 1e9)))
    assert d.update(st, d.select(rows.slice(0, cut))) == []  # 60 s after the fixing have not passed yet
    (a,) = d.update(st, d.select(rows.slice(cut)))
    assert a.owners == ["M1"] and d.flush(st) == []


def test_sell_side_fires():
    (a,) = alerts(scenario(side="sell"))
    assert a.metrics["side"] == "sell" and "aggressive sells" in a.summary


def test_move_threshold():
    # the background trades at the stepped price too: 6 steps of s bps move the level 6 s bps
    assert len(alerts(scenario(step_bps=3.4))) == 1  # 20.4 bps
    assert alerts(scenario(step_bps=3.3)) == []  # 19.8 bps


def test_net_trades_threshold():
    assert len(alerts(scenario(n=7, step_bps=10), min_net_trades=7)) == 1
    assert alerts(scenario(n=6, step_bps=10), min_net_trades=7) == []


def test_trades_the_other_way_net_out():
    # 8 buys and 1 / 2 sells among them: net 7 / 6
    (a,) = alerts(scenario(n=8, opposite=1), min_net_trades=7)
    assert (a.metrics["trades"], a.metrics["trades_against"]) == (8, 1)
    assert alerts(scenario(n=8, opposite=2), min_net_trades=7) == []


def test_out_of_habit_threshold():
    (a,) = alerts(scenario())
    p = a.metrics["net_pvalue"]
    assert len(alerts(scenario(), max_net_pvalue=p * 1.01)) == 1
    assert alerts(scenario(), max_net_pvalue=p * 0.99) == []


def test_reversion_threshold():
    # a move of 60 bps, half of it given back by 60 s after the fixing: just at min_revert_share
    assert len(alerts(scenario(give_back=0.5), min_revert_share=0.5)) == 1
    assert alerts(scenario(give_back=0.4), min_revert_share=0.5) == []


def test_news_jump_on_every_venue_does_not_alert():
    assert alerts(scenario(refx_follows=True)) == []


def test_price_that_stays_after_the_fixing_does_not_alert():
    # a move on information carries on past the fixing: nothing was held up for it
    assert alerts(scenario(holds=True)) == []


def test_taker_at_its_usual_pace_is_not_out_of_habit():
    # M1 took liquidity every 10 s (both ways, a sixth of the venue's takes) all along: six buys net in the
    # last minute, where its habit gives about one, are 3% likely — its routine, not a campaign
    usual = [trade(t + 0.2, "SHARED", "buy" if k % 2 else "sell", 100.0, 1.0,
                   *(("M1", "CP") if k % 2 else ("CP", "M1")))
             for k, t in enumerate(np.arange(FIX - 600, FIX - 60, 10.0))]
    assert alerts(scenario(extra=usual)) == []
    (a,) = alerts(scenario(extra=usual), max_net_pvalue=0.05)
    assert 0.01 < a.metrics["net_pvalue"] < 0.05


def crowd(price, every=0.5):
    """Other takers X0..X6 both ways in turn, a trade every ``every`` s, at the SHARED price."""
    return [trade(float(t) + 0.25, "SHARED", "buy" if k % 2 else "sell", price(float(t) + 0.25), 1.0,
                  *((f"X{k % 7}", "CP") if k % 2 else ("CP", f"X{k % 7}")))
            for k, t in enumerate(np.arange(FIX - 600, FIX + 70, every))]


def busy_campaign(every=15.0):
    """M1 takes both ways in turn every ``every`` s for the whole 10 minutes, in a venue where the crowd
    takes every 0.5 s, and over the last 4 minutes buys 20 more times, each 4 bps higher."""
    ep, price = marking(n=20, lead=240.0, step_bps=4.0)
    routine = [trade(float(t) + 0.35, "SHARED", "buy" if k % 2 else "sell", price(float(t) + 0.35), 1.0,
                     *(("M1", "CP") if k % 2 else ("CP", "M1")))
               for k, t in enumerate(np.arange(FIX - 600, FIX, every))]
    return tape(price=price) + ep + routine + crowd(price)


def test_busy_taker_trading_both_ways_is_found_by_its_net_flow():
    # Its own trades both ways surround the campaign (a quarter of its takes in it are sells); what
    # gives it away is the net: ~20 buys more than its habit of even two-way trading would give.
    (a,) = alerts(busy_campaign())
    assert a.owners == ["M1"] and a.metrics["side"] == "buy"
    assert a.metrics["trades_against"] >= 0.25 * a.metrics["trades"] and a.metrics["net_pvalue"] < 1e-5
    assert a.metrics["move_bps"] > 60 and a.evidence.num_rows == a.metrics["trades"]
    # twice as busy, its routine could make that net by chance
    assert alerts(busy_campaign(every=7.5)) == []


def test_a_surge_the_whole_venue_piles_into_is_not_a_marked_close():
    # the crowd takes five times as fast over the last 2 minutes: the move is the crowd's, M1 one of many
    ep, price = marking(n=8, lead=100.0)
    fast = [r for r in crowd(price, every=0.125) if r["ts"] >= FIX - 120 and r["ts"] < FIX]
    rows = tape(price=price) + ep + crowd(price) + fast
    assert alerts(rows) == []
    (a,) = alerts(rows, max_pace_multiple=10.0)
    pace = a.metrics["pace_multiple"]
    assert pace > 3
    assert len(alerts(rows, max_pace_multiple=pace * 1.01)) == 1
    assert alerts(rows, max_pace_multiple=pace * 0.99) == []


def test_one_way_taker_is_named_only_out_of_habit():
    # OW buys every 8 s all along (an accumulator): it takes its usual share of the buying, M1 is named
    ep, price = marking()
    ow = [trade(t + 0.3, "SHARED", "buy", price(t + 0.3), 1.0, "OW", "CP") for t in np.arange(FIX - 600, FIX, 8.0)]
    (a,) = alerts(tape(price=price) + ep + ow)
    assert a.owners == ["M1"]


def test_chaser_of_a_move_under_way_does_not_alert():
    # the venue rises 60 bps a minute from 2 minutes before the fixing: M1 buys in its last 30 s, joining it
    def price(t):
        return round(100.0 * (1 + 60e-4 * max(t - (FIX - 120), 0.0) / 60), 4) if t < FIX else 100.0
    ep = [trade(FIX - 30 + 5 * k + 0.1, "SHARED", "buy", price(FIX - 30 + 5 * k + 0.1), 1.0, "M1", "CP")
          for k in range(6)]
    assert alerts(tape(price=price) + ep) == []
    assert len(alerts(tape(price=price) + ep, max_prior_move_share=10.0)) == 1


def test_large_volume_is_in_proportion():
    # 6 trades of 12x typical moving 60 bps: 0.83 bps per typical trade
    assert alerts(scenario(qty=12.0), min_bps_per_typical=1.0) == []
    assert len(alerts(scenario(qty=12.0), min_bps_per_typical=0.8)) == 1


def test_trades_outside_the_window_do_not_count():
    assert alerts(scenario(lead=60.0), window_ms=30_000) == []


def test_daily_fixing_times():
    assert len(alerts(scenario(), fixing_every_ms=0, fixing_times_utc="00:30")) == 1
    assert alerts(scenario(), fixing_every_ms=0, fixing_times_utc="00:31") == []


def test_validation():
    for bad in ({"fixing_every_ms": 0}, {"fixing_times_utc": "25:00"}, {"window_ms": 0}, {"min_net_trades": 0},
                {"max_net_pvalue": 0.0}, {"max_net_pvalue": 1.5}, {"revert_ms": 0}, {"habit_ms": 0},
                {"min_revert_share": 1.5}, {"max_prior_move_share": 0.0}, {"max_pace_multiple": 0.0}):
        with pytest.raises(ValueError):
            MarkingTheClose(**bad)


def test_same_alerts_in_any_batching():
    rows = scenario()
    t = table(rows)
    d = MarkingTheClose(fixing_every_ms=EVERY)
    st, got = d.new_state(), []
    for i in range(t.num_rows):
        got += d.update(st, d.select(t.slice(i, 1)))
    got += d.flush(st)
    assert len(got) == 1 and [a.alert_id for a in got] == [a.alert_id for a in alerts(rows)]


def test_busy_campaign_same_alerts_in_any_batching():
    # the habit, the net and the pace are read by event time: batches of 37 rows give the one-batch alert
    rows = busy_campaign()
    t = table(rows)
    d = MarkingTheClose(fixing_every_ms=EVERY)
    st, got = d.new_state(), []
    for i in range(0, t.num_rows, 37):
        got += d.update(st, d.select(t.slice(i, 37)))
    got += d.flush(st)
    assert len(got) == 1 and [a.alert_id for a in got] == [a.alert_id for a in alerts(rows)]


@pytest.mark.parametrize("fold_rows", [1, 50, 10**9])
def test_same_alerts_however_batches_are_folded(monkeypatch, fold_rows):
    # small batches wait to be sorted onto the tape in bulk (FOLD_ROWS) and state is trimmed a fold at a time:
    # neither changes what is read, over a market with fixings every 5 minutes; nor does keeping only the
    # habit's columns of the folds older than every window still to judge
    import detectors.marking_the_close as mtc
    monkeypatch.setattr(mtc, "FOLD_ROWS", fold_rows)
    m = contract_market(seconds=1200)
    t = m.filter(pc.equal(m.column("instrument"), INST))
    d = MarkingTheClose(fixing_every_ms=300_000)
    reference = d.new_state()
    want = d.update(reference, d.select(t)) + d.flush(reference)
    st, got, slimmed = d.new_state(), [], False
    for i in range(0, t.num_rows, 23):
        got += d.update(st, d.select(t.slice(i, 23)))
        assert st.fresh_rows == sum(x.num_rows for x in st.fresh) < fold_rows
        slimmed |= any(x.column_names == mtc.HABIT_COLUMNS for _, x in st.agg)  # folds past every window: habit only
    got += d.flush(st)
    assert slimmed or fold_rows == 10**9
    assert want and [(a.alert_id, a.summary, a.metrics) for a in got] == [(a.alert_id, a.summary, a.metrics)
                                                                           for a in want]


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """The generic market (one trade in two) with an owner marking BTC/USDT's SHARED price 60 bps up into
    the fixings (every 300 s) at 600 s and 1500 s (and every 900 s after); the price is back 30 s later."""
    m = generic_market(seed=seed, seconds=seconds)
    m = m.filter(pa.array(np.arange(m.num_rows) % 2 == 0))
    ts = m.column("ts").cast(pa.int64()).to_numpy() / 1e9
    shared_btc = (np.asarray(m.column("instrument").to_pylist()) == "BTC/USDT") & (
        np.asarray(m.column("venue").to_pylist()) == "SHARED")
    price = m.column("price").to_numpy().copy()
    rows = []
    for k, f in enumerate(range(600, seconds, 900)):
        base = float(np.median(price[shared_btc & (ts < f - 120) & (ts > f - 180)]))
        ramp = (ts >= f - 100) & (ts < f)
        price[shared_btc & ramp] *= 1 + 0.006 * (ts[shared_btc & ramp] - (f - 100)) / 100
        fade = (ts >= f) & (ts < f + 30)
        price[shared_btc & fade] *= 1 + 0.006 * (1 - (ts[shared_btc & fade] - f) / 30)
        for j in range(8):
            t = f - 100 + 12.0 * j + 1
            rows.append(dict(trade(t, "SHARED", "buy", round(base * (1 + 0.006 * (j + 1) / 8), 2), 1.0,
                                   f"MK{k % 2}", "CP"), trade_id=f"mk{k}-{j}"))
    m = m.set_column(m.schema.get_field_index("price"), "price", pa.array(np.round(price, 2)))
    extra = table(rows).select(m.column_names).cast(m.schema)
    return pa.concat_tables([m, extra]).sort_by([("ts", "ascending")])
