"""Excessive messaging: thresholds either side, the market-maker look-alike, warm-up, and the contract market.

Hand-built order streams on one venue: ``steady`` gives an owner a message every ``every``
seconds (its baseline), ``flood`` packs ``n`` messages into ``seconds`` from ``t0``, ``fills``
adds fill events.  Windows are the detector's default 5 s, so a flood of 20 messages a second
for 10 s fills two whole windows.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from detectors.excessive_messaging import ExcessiveMessaging
from tests.conftest import events

INST = "BTC/USDT"


def msgs(owner: str, times, inst: str = INST, action: str | None = None) -> list[dict]:
    acts = ["new", "cancel"] if action is None else [action]
    return [dict(ts=float(t), kind="order", venue="SHARED", instrument=inst, owner=owner, account=f"HK-{owner}",
                 platform="HKVATP", order_id=f"{owner}-{inst}-{k // 2}", action=acts[k % len(acts)], side="buy",
                 price=100.0, qty=1.0) for k, t in enumerate(times)]


def steady(owner: str, every: float, until: float = 300.0, start: float = 0.0) -> list[dict]:
    return msgs(owner, np.arange(start, until, every))


def flood(owner: str, t0: float, rate: float, seconds: float = 10.0, inst: str = INST) -> list[dict]:
    n = int(round(rate * seconds))
    return msgs(owner, t0 + np.arange(n) / rate, inst)


def fills(owner: str, t0: float, n: int, seconds: float = 10.0) -> list[dict]:
    return msgs(owner, t0 + np.arange(n) * seconds / n + 0.001, action="fill")


def table(rows: list[dict]) -> pa.Table:
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def run(rows: list[dict], det: ExcessiveMessaging | None = None, batch: int | None = None):
    det = det or ExcessiveMessaging()
    t = det.select(table(rows))
    st = det.new_state()
    out = {}
    step = batch or max(t.num_rows, 1)
    for s in range(0, t.num_rows, step):
        for a in det.update(st, t.slice(s, step)):
            out[a.alert_id] = a
    for a in det.flush(st):
        out[a.alert_id] = a
    return list(out.values())


# A venue of ten quiet owners (one message every 5 s: 0.2/s each), watched for 300 s.
VENUE = [r for k in range(10) for r in steady(f"B{k}", 5.0, until=320.0, start=k * 0.3)]


def test_a_flood_from_a_quiet_owner_alerts_once_with_evidence():
    rows = VENUE + steady("Q", 5.0, until=300.0) + flood("Q", 300.0, 20.0)
    alerts = run(rows)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.owners == ["Q"] and a.instrument == INST and a.venues == ["SHARED"]
    assert a.metrics["messages"] == 200 and a.metrics["fills"] == 0
    assert a.window_start_ns == 300 * 10**9 and a.window_end_ns == 310 * 10**9
    assert a.evidence.num_rows > 0 and set(a.evidence.column("owner").to_pylist()) == {"Q"}
    assert a.summary.startswith("Q sent 200 order messages on SHARED in 10s (20.0/s") and a.params["owner_multiple"] == 10


@pytest.mark.parametrize("rate,fires", [(3.2, True), (2.8, False)])
def test_absolute_floor(rate, fires):
    # Q never sent a message before (baseline 0): only the floor of 3 messages/s decides.
    det = ExcessiveMessaging(venue_multiple=0.0, min_order_trade_ratio=0.0)
    assert bool(run(VENUE + flood("Q", 300.0, rate), det)) is fires


def test_a_layering_ladder_from_a_quiet_owner_is_no_flood():
    # The scenario's confusion: 8 orders on a ladder and 3 of their cancels in one window, and the
    # execution (11 messages, 1 fill: 45x the owner's baseline, ratio 11) - 2.2/s, not a flood.
    ladder = msgs("L", 302.0 + np.arange(8) * 0.06, action="new") + \
        msgs("L", 303.0 + np.arange(3) * 0.5, action="cancel") + fills("L", 302.6, 1, seconds=1.0)
    assert run(VENUE + steady("L", 20.0) + ladder) == []


@pytest.mark.parametrize("multiple,fires", [(11, True), (9, False)])
def test_owner_baseline_multiple(multiple, fires):
    # Q's baseline is 1 message/s; its flood is `multiple` x that; the venue norm (0.2/s) is no bar.
    rows = VENUE + steady("Q", 1.0) + flood("Q", 300.0, float(multiple))
    assert bool(run(rows, ExcessiveMessaging(venue_multiple=1.0))) is fires


@pytest.mark.parametrize("rate,fires", [(4.2, True), (3.8, False)])
def test_venue_norm_multiple(rate, fires):
    # The venue's owners send 0.2/s: 20x that is 4/s; Q is new, so its own baseline is no bar.
    assert bool(run(VENUE + flood("Q", 300.0, rate), ExcessiveMessaging(venue_multiple=20.0))) is fires


@pytest.mark.parametrize("n_fills,fires", [(18, True), (22, False)])
def test_order_to_trade_ratio(n_fills, fires):
    # 100 messages a window; a ratio of 10 allows 10 fills a window: 9 (ratio 11) fires, 11 (9.1) does not.
    rows = VENUE + flood("Q", 300.0, 20.0) + fills("Q", 300.0, n_fills)
    assert bool(run(rows)) is fires


def test_market_maker_quoting_faster_at_its_usual_pace_does_not_alert():
    """The scenario's look-alike: a market maker (20 messages/s, a fill every 5) adds 6 quotes/s
    at the touch for a minute and cancels nearly all of them (order-to-trade ratio ~40)."""
    background = msgs("MM", np.arange(0.0, 360.0, 0.05)) + msgs("MM", np.arange(0.01, 360.0, 0.25), action="fill")
    burst = flood("MM", 300.02, 12.0, seconds=60.0) + fills("MM", 300.0, 3, seconds=60.0)
    assert run(VENUE + background + burst) == []
    # ... whereas the same burst from an owner with an ordinary baseline is stuffing
    assert [a.owners for a in run(VENUE + steady("Q", 5.0) + flood("Q", 300.0, 12.0, seconds=60.0))] == [["Q"]]


def test_a_flood_in_the_warm_up_alerts_once_warm_from_its_start_and_does_not_become_the_baseline():
    early = VENUE + flood("Q", 20.0, 20.0, seconds=70.0)  # from 20 s to 90 s; warm from 60 s
    alerts = run(early)
    assert len(alerts) == 1 and alerts[0].window_start_ns == 20 * 10**9
    assert alerts[0].window_end_ns == 90 * 10**9 and alerts[0].metrics["messages"] == 1400


@pytest.mark.parametrize("batch", [None, 3])
def test_a_flood_over_before_the_venue_is_warm_still_alerts(batch):
    # The scenario's miss: a 17 s flood starting 14 s into the run, over before the 60 s warm-up.
    alerts = run(VENUE + steady("Q", 2.5, until=320.0) + flood("Q", 15.0, 20.0, seconds=15.0), batch=batch)
    assert [(a.owners, a.window_start_ns, a.window_end_ns, a.metrics["messages"]) for a in alerts] == \
        [(["Q"], 15 * 10**9, 30 * 10**9, 300 + 6)]


@pytest.mark.parametrize("rate, fires", [(9.4, True), (9.0, False)])
def test_warm_up_windows_are_judged_against_the_warm_baseline(rate, fires):
    # P sends 1 message/s from the start; its burst to `rate`/s in the fourth window (15-20 s) is
    # far above the baseline three windows give, but near 10x its warm one: 11/12 of 1/s (the
    # burst's own window, left out, counts as none), so the bar is 9.17/s.
    rows = VENUE + steady("P", 1.0, until=320.0, start=0.5) + flood("P", 15.0, rate - 1.0, seconds=5.0)
    assert bool(run(rows, ExcessiveMessaging(venue_multiple=1.0))) is fires


def test_a_long_flood_stays_one_episode_and_names_its_main_instrument():
    rows = VENUE + steady("Q", 5.0) + flood("Q", 300.0, 20.0, seconds=120.0, inst="ETH/USDT") + \
        flood("Q", 300.01, 2.0, seconds=120.0)
    alerts = run(rows)
    assert len(alerts) == 1 and alerts[0].instrument == "ETH/USDT"
    assert alerts[0].metrics["by_instrument"] == {"BTC/USDT": 240, "ETH/USDT": 2400}


def test_batch_size_does_not_change_the_alert():
    rows = VENUE + steady("Q", 5.0) + flood("Q", 300.0, 20.0, seconds=30.0)
    ref = [(a.alert_id, a.summary) for a in run(rows)]
    for b in (1, 7, 250):
        assert [(a.alert_id, a.summary) for a in run(rows, batch=b)] == ref


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        ExcessiveMessaging(owner_multiple=1.0)
    with pytest.raises(ValueError):
        ExcessiveMessaging(window_ms=10_000, baseline_ms=5_000)


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """A venue of steady owners, a market maker, and a stuffing flood every ten minutes."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(12):
        rate = rng.uniform(0.1, 0.5)
        t = np.sort(rng.uniform(0, seconds, int(rate * seconds)))
        rows += msgs(f"O{k}", t, inst=["BTC/USDT", "ETH/USDT"][k % 2])
    t = np.sort(rng.uniform(0, seconds, 6 * seconds))
    rows += msgs("MM", t)
    rows += msgs("MM", t[::5] + 0.001, action="fill")
    for start in range(300, seconds - 60, 600):
        stuffer = f"O{int(rng.integers(12))}"
        rows += flood(stuffer, start + float(rng.uniform(0, 5)), float(rng.uniform(10, 30)), seconds=30.0)
    return table(rows)
