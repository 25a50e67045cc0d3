"""Marking the close: thresholds either side, look-alikes (news jump on every venue, two-way trader,
one large order), configured fixing times, and the contract market.

Fixings every 30 minutes (``FIX`` = 00:30 UTC); ``tape`` lays down two-way background trades of size 1
on SHARED and REFX; ``marking`` adds an owner's aggressive buys (or sells) stepping the SHARED price.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
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


def tape(t0=FIX - 400, t1=FIX + 5, price=lambda t: 100.0, refx=lambda t: 100.0, inst=INST):
    rows = []
    for k, t in enumerate(np.arange(t0, t1, 2.0)):
        t = float(t)
        side = "buy" if k % 2 else "sell"  # BG1 takes both ways in turn
        rows.append(trade(t, "SHARED", side, price(t), 1.0, *(("BG1", "BG2") if k % 2 else ("BG2", "BG1")), inst))
        rows.append(trade(t + 0.5, "REFX", "buy" if k % 2 else "sell", refx(t), 1.0, inst=inst))
    return rows


def marking(n=6, step_bps=10.0, qty=1.0, side="buy", owner="M1", lead=60.0, opposite=0, inst=INST):
    """``n`` aggressive trades in the ``lead`` s before the fixing, each ``step_bps`` past the last; plus
    ``opposite`` trades the other way.  Returns (rows, the SHARED price path it sets)."""
    sign = 1 if side == "buy" else -1
    times = [FIX - lead + lead * k / n for k in range(n)]
    def price(t):  # noqa: E306
        done = sum(1 for x in times if x <= t)
        return round(100.0 * (1 + sign * step_bps * 1e-4 * done), 4)
    pair = (lambda: (owner, "CP")) if side == "buy" else (lambda: ("CP", owner))
    rows = [trade(t + 0.1, "SHARED", side, price(t + 0.1), qty, *pair(), inst) for t in times]
    other = "sell" if side == "buy" else "buy"
    back = ("CP", owner) if side == "buy" else (owner, "CP")
    rows += [trade(FIX - lead - 1 - k, "SHARED", other, 100.0, qty, *back, inst) for k in range(opposite)]
    return rows, price


def table(rows):
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def alerts(rows, **kw):
    d = MarkingTheClose(**{"fixing_every_ms": EVERY, **kw})
    return d.update(d.new_state(), d.select(table(rows)))


def scenario(refx_follows=False, **kw):
    ep, price = marking(**kw)
    return tape(price=price, refx=price if refx_follows else (lambda t: 100.0)) + ep


def test_fires_with_evidence_summary_and_params():
    (a,) = alerts(scenario())
    assert a.owners == ["M1"] and a.key == f"M1|{INST}" and a.window_end_ns == int(FIX * 1e9)
    assert a.evidence.num_rows == 6 and set(a.evidence.column("buy_owner").to_pylist()) == {"M1"}
    assert a.params["fixing_every_ms"] == EVERY and "00:30:00 UTC fixing" in a.summary
    assert a.metrics["move_bps"] > 40 and a.metrics["other_venues_bps"] == {"REFX": 0.0}


def test_sell_side_fires():
    (a,) = alerts(scenario(side="sell"))
    assert a.metrics["side"] == "sell" and "aggressive sells" in a.summary


def test_move_threshold():
    # the background trades at the stepped price too: 6 steps of s bps move the level 6 s bps
    assert len(alerts(scenario(step_bps=3.4))) == 1  # 20.4 bps
    assert alerts(scenario(step_bps=3.3)) == []  # 19.8 bps


def test_trades_threshold():
    assert len(alerts(scenario(n=7, step_bps=10), min_trades=7, max_side_pvalue=0.01)) == 1
    assert alerts(scenario(n=6, step_bps=10), min_trades=7) == []


def test_one_sidedness():
    assert len(alerts(scenario(n=8, opposite=1))) == 1  # 8 of 9: chance 1.95%, within max_side_pvalue 0.02
    assert alerts(scenario(n=8, opposite=2), max_side_pvalue=0.05) == []  # 8 of 10: chance 5.5%


def test_news_jump_on_every_venue_does_not_alert():
    assert alerts(scenario(refx_follows=True)) == []


def test_large_volume_is_in_proportion():
    # 6 trades of 12x typical moving 60 bps: 0.83 bps per typical trade, under 1
    assert alerts(scenario(qty=12.0)) == []
    assert len(alerts(scenario(qty=12.0), min_bps_per_typical=0.8)) == 1


def test_trades_outside_the_window_do_not_count():
    assert alerts(scenario(lead=60.0), window_ms=30_000) == []


def test_daily_fixing_times():
    assert len(alerts(scenario(), fixing_every_ms=0, fixing_times_utc="00:30")) == 1
    assert alerts(scenario(), fixing_every_ms=0, fixing_times_utc="00:31") == []


def test_validation():
    for bad in ({"fixing_every_ms": 0}, {"fixing_times_utc": "25:00"}, {"window_ms": 0}, {"min_side_share": 0.2},
                {"max_side_pvalue": 0.0}):
        with pytest.raises(ValueError):
            MarkingTheClose(**bad)


def test_same_alerts_in_any_batching():
    rows = scenario()
    t = table(rows)
    d = MarkingTheClose(fixing_every_ms=EVERY)
    st, got = d.new_state(), []
    for i in range(t.num_rows):
        got += d.update(st, d.select(t.slice(i, 1)))
    assert [a.alert_id for a in got] == [a.alert_id for a in alerts(rows)]


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """The generic market (one trade in two) with an owner marking BTC/USDT's SHARED price 60 bps up into
    the fixings (every 300 s) at 600 s and 1500 s (and every 900 s after)."""
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
        for j in range(8):
            t = f - 100 + 12.0 * j + 1
            rows.append(dict(trade(t, "SHARED", "buy", round(base * (1 + 0.006 * (j + 1) / 8), 2), 1.0,
                                   f"MK{k % 2}", "CP"), trade_id=f"mk{k}-{j}"))
    m = m.set_column(m.schema.get_field_index("price"), "price", pa.array(np.round(price, 2)))
    extra = table(rows).select(m.column_names).cast(m.schema)
    return pa.concat_tables([m, extra]).sort_by([("ts", "ascending")])
