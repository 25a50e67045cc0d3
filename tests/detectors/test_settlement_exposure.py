"""Settlement exposure: reserve levels either side, netting, assumed cycles, settlement events, deadlines.

Trades of BTC/USDT at 100 between an HKVATP client and an OVSAFF client on SHARED; the
reserve is 10,000 quote currency, levels 0.5 / 0.8 / 1.0, cycle 300 s, deadline 600 s.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from connectors import decode_file
from detectors.settlement_exposure import SettlementExposure
from surveil.schemas import conform, sort_events
from tests.conftest import events

INST = "BTC/USDT"


def trade(ts: float, qty: float, local_buys: bool = True, price: float = 100.0, inst: str = INST,
          affiliate: str = "OVSAFF", tid: str | None = None) -> dict:
    bp, sp = ("HKVATP", affiliate) if local_buys else (affiliate, "HKVATP")
    return dict(ts=float(ts), kind="trade", venue="SHARED", instrument=inst, price=price, qty=qty,
                trade_id=tid or f"t{ts:g}{inst[:3]}{affiliate[:2]}", buy_platform=bp, sell_platform=sp,
                buy_account=f"{bp[:2]}-1", sell_account=f"{sp[:2]}-2")


def settlement(ts: float, affiliate: str = "OVSAFF", inst: str | None = None) -> dict:
    return dict(ts=float(ts), kind="settlement", venue="SHARED", platform=affiliate, instrument=inst,
                trade_id=f"S{ts:g}")


def table(rows: list[dict]) -> pa.Table:
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def det(**kw) -> SettlementExposure:
    return SettlementExposure(**{"reserve_fund": 10_000.0, **kw})


def run(rows, d=None, batch: int | None = None):
    d = d or det()
    t = d.select(table(rows))
    st, out = d.new_state(), {}
    step = batch or max(t.num_rows, 1)
    for s in range(0, t.num_rows, step):
        for a in d.update(st, t.slice(s, step)):
            out[a.alert_id] = a
    for a in d.flush(st):
        out[a.alert_id] = a
    return list(out.values())


def kinds(alerts):
    return sorted(a.metrics["kind"] for a in alerts)


@pytest.mark.parametrize("qty,fires", [(51.0, True), (49.0, False)])
def test_lowest_reserve_level(qty, fires):
    # qty x 100 owed by OVSAFF in BTC: 5,100 is 51% of the reserve, 4,900 is 49%
    alerts = run([trade(10 + k, qty / 10) for k in range(10)])
    assert bool(alerts) is fires
    if fires:
        a = alerts[0]
        assert a.metrics["level_reached"] == 0.5 and a.instrument == INST and a.venues == ["SHARED"]
        assert "OVSAFF owes HKVATP 5,100" in a.summary and a.evidence.num_rows >= 1 and a.params["reserve_fund"] == 1e4


def test_higher_levels_revise_one_alert_and_the_episode_ends_at_settlement():
    rows = [trade(10 + k, 10.0) for k in range(12)]  # 1,000 a trade: 50% at 5, 80% at 8, 100% at 10 trades
    alerts = run(rows + [trade(400, 0.01)])  # past the 300 s cycle: everything settles
    assert len(alerts) == 1
    a = alerts[0]
    assert a.metrics["level_reached"] == 1.0 and a.metrics["closed"] and a.severity == "high"
    assert a.window_start_ns == 14 * 10**9 and a.window_end_ns == 300 * 10**9
    assert a.evidence.num_rows == 3  # the trades that crossed each level


def test_exposure_flickering_around_the_lowest_level_stays_one_episode():
    # 51% -> 45% -> 51%: one episode; it ends only below 80% of the lowest level (40%)
    assert len(run([trade(10, 51.0), trade(20, 6.0, local_buys=False), trade(30, 6.0)])) == 1
    assert len(run([trade(10, 51.0), trade(20, 12.0, local_buys=False), trade(30, 12.0)])) == 2


def test_two_way_flow_nets_out_a_look_alike():
    """Heavy cross-platform flow both ways (gross 100x the reserve) leaves little owed either way."""
    rows = [trade(1 + k * 0.5, 20.0, local_buys=k % 2 == 0) for k in range(1000)]
    assert run(rows) == []


def test_exposure_counts_what_the_affiliate_owes_in_either_asset():
    # HKVATP clients sell: OVSAFF owes the quote currency
    alerts = run([trade(10 + k, 10.0, local_buys=False) for k in range(6)])
    assert len(alerts) == 1 and "USDT 6,000" in alerts[0].summary and "HKVATP owes BTC" in alerts[0].summary


def test_the_assumed_cycle_settles_before_the_level_is_reached():
    # 40% before the 300 s boundary, 40% after: never 50% at once
    rows = [trade(290, 40.0), trade(310, 40.0)]
    assert run(rows) == []
    assert run(rows, det(settlement_cycle_ms=600_000))  # a longer cycle lets them add up


def test_settlement_events_replace_the_cycle_and_a_late_one_is_overdue():
    rows = [settlement(1), trade(10, 1.0), trade(20, 1.0, inst="ETH/USDT")]
    on_time = rows + [settlement(500), trade(700, 1.0, tid="late")]
    assert run(on_time) == []  # settled 490 s after the first trade: within the 600 s deadline
    late = rows + [trade(611, 0.5, tid="probe"), settlement(700, inst="ETH/USDT"), settlement(900)]
    alerts = run(late)
    assert kinds(alerts) == ["overdue"]
    a = alerts[0]
    assert a.instrument == INST and a.window_start_ns == 10 * 10**9 and a.window_end_ns == 900 * 10**9
    assert a.metrics["settled"] and "unsettled for 890s (deadline 600s), then settled" in a.summary
    # at 609 s the BTC trade is 599 s old: not yet overdue
    assert run(rows + [trade(609, 0.5, tid="probe")]) == []


def test_batch_size_does_not_change_the_alerts():
    rows = [settlement(1)] + [trade(10 + k, 10.0) for k in range(12)] + [trade(700, 1.0, inst="ETH/USDT"),
                                                                         settlement(800)]
    ref = sorted((a.alert_id, a.summary) for a in run(rows))
    assert kinds(run(rows)) == ["exposure", "overdue"]
    for b in (1, 4):
        assert sorted((a.alert_id, a.summary) for a in run(rows, batch=b)) == ref


def test_settlement_events_from_a_canonical_file(tmp_path):
    p = tmp_path / "settlements.jsonl"
    p.write_text('{"ts": 1000000000, "kind": "settlement", "venue": "SHARED", "platform": "OVSAFF"}\n'
                 '{"ts": 2000000000, "kind": "settlement", "venue": "SHARED"}\n')
    decoded = list(decode_file(p, src=1))
    s = pa.concat_tables([d.events for d in decoded])
    assert s.num_rows == 1 and [r for d in decoded for r in d.dead.column("reason").to_pylist()] == [
        "settlement without the affiliate platform"]
    merged = sort_events(pa.concat_tables([conform(s), table([trade(10, 1.0), trade(700, 0.1, tid="x")])]))
    d = det()
    alerts = d.update(d.new_state(), d.select(merged))
    assert kinds(alerts) == ["overdue"]  # the file's settlement switched the cycle off for OVSAFF


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        SettlementExposure(alert_fractions="half")
    with pytest.raises(ValueError):
        SettlementExposure(reserve_fund=0)
    assert {type(v) for v in SettlementExposure.defaults().values()} <= {str, int, float}


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """Two-way cross-platform flow on SHARED with a one-way surge (above half the default reserve)
    every ten minutes; settlements every 5 minutes, one of them missed."""
    rng = np.random.default_rng(seed)
    rows = []
    t = np.sort(rng.uniform(0, seconds, 2 * seconds))
    for k, x in enumerate(t):
        rows.append(trade(x, float(rng.lognormal(0, 1)), local_buys=bool(rng.random() < 0.5),
                          inst=INST if k % 3 else "ETH/USDT", tid=f"b{k}"))
    for j, start in enumerate(range(30, seconds - 120, 600)):
        for k in range(40):
            rows.append(trade(start + k * 2.0 + 0.5, 8_000.0, local_buys=j % 2 == 0, price=100.0, tid=f"s{j}-{k}"))
    for k, x in enumerate(range(300, seconds, 300)):
        if k % 4 != 1:
            rows.append(settlement(float(x)))
    return table(rows)
