"""Volume authenticity on samples whose size distribution is known, and the contract market."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from detectors.base import split_by_key
from detectors.volume_authenticity import DAY_NS, VolumeAuthenticity, size_parts
from tests.conftest import events

MIDNIGHT = 1_709_251_200  # 2024-03-01 00:00 UTC, in seconds
LOTS = np.array([100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0])


def day_of(qty, venue="AFFX", start_s=MIDNIGHT + 3600.0, step_s=1.0) -> pa.Table:
    n = len(qty)
    return events(ts=start_s + step_s * np.arange(n), kind=["trade"] * n, venue=[venue] * n,
                  instrument=["BTC/USDT"] * n, venue_symbol=["BTCUSDT"] * n, price=[100.0] * n,
                  qty=np.asarray(qty, dtype=float), trade_id=[f"{venue}-{i}" for i in range(n)])


def judge(det, qty, **kw):
    st = det.new_state()
    alerts = det.update(st, det.select(day_of(qty, **kw)))
    return det.report(st), alerts, st


def lognormal(n, seed=0):
    return np.round(np.random.default_rng(seed).lognormal(3, 2.5, n), 6)


def round_lots(n, seed=0):
    rng = np.random.default_rng(seed)
    q = np.round(rng.lognormal(5, 1.5, n)) + 1  # the 30% genuine part: whole lots
    bot = rng.random(n) < 0.7
    q[bot] = rng.choice(LOTS, bot.sum())
    return q


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """Two venues trading BTC/USDT across midnight UTC (half the time on each day, so day one closes).

    SHARED sizes are log-normal on both days.  AFFX is genuine on day one; on day two 70% of its
    trades recycle round lots up to 1 BTC and the rest are uniform between 0.05 and 1: fabricated
    volume, off Benford, round, and capped (its largest trades are all the 1 BTC lot).
    """
    rng = np.random.default_rng(seed)
    n = seconds * 2  # ~900 trades per venue and day at 1800 s: past min_trades, quick at batch size 1
    ts = np.sort(MIDNIGHT - seconds / 2 + rng.uniform(0, seconds, n))
    venue = rng.choice(["SHARED", "AFFX"], n)
    qty = np.round(rng.lognormal(-1, 2.2, n), 6) + 1e-6
    fake = (venue == "AFFX") & (ts >= MIDNIGHT)
    lots = rng.random(n) < 0.7
    qty[fake & lots] = rng.choice([0.1, 0.2, 0.25, 0.5, 1.0], (fake & lots).sum())
    qty[fake & ~lots] = np.round(rng.uniform(0.05, 1.0, (fake & ~lots).sum()), 4)
    price = np.round(60_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, n))), 2)
    return events(ts=ts, kind=["trade"] * n, venue=venue, instrument=["BTC/USDT"] * n, venue_symbol=["BTCUSDT"] * n,
                  price=price, qty=qty, side=rng.choice(["buy", "sell"], n), trade_id=[f"t{i}" for i in range(n)])


# -- the three statistics --------------------------------------------------------------------------
def test_size_parts_reads_decimal_sizes_through_float_noise():
    digit, decade, step = size_parts(np.array([0.1 + 0.2, 1e-4, 46242.0, 2500.0, 9.99999999999, 0.07]))
    assert digit.tolist() == [3, 1, 4, 2, 1, 7]
    assert decade.tolist() == [-1, -4, 4, 3, 1, -2]
    assert step.tolist() == [-1, -4, 0, 2, 1, -2]


def test_lognormal_sizes_conform_to_benford_and_score_low():
    r, alerts, st = judge(VolumeAuthenticity(), lognormal(20_000))
    assert r["mad"] < 0.006 and r["p_value"] > 0.01  # Nigrini "close conformity", chi-square does not reject
    assert r["score"] < 0.1 and not alerts
    want = stats.chisquare(st.digits, np.log10(1 + 1 / np.arange(1, 10)) * st.n)
    assert r["chi2"] == pytest.approx(want.statistic, abs=1e-3) and r["p_value"] == pytest.approx(want.pvalue)


def test_pareto_sizes_do_not_alert():
    # Pareto first digits are not Benford's (they are only as alpha -> 0): one component alone never alerts
    q = np.round(np.random.default_rng(1).pareto(1.5, 20_000) + 1, 6)
    r, alerts, _ = judge(VolumeAuthenticity(), q)
    assert r["score_round"] == 0 and r["score_tail"] == 0 and r["score"] < 0.5 and not alerts


@pytest.mark.parametrize("alpha", [1.2, 2.0, 3.0])
def test_hill_recovers_a_known_pareto_alpha(alpha):
    q = np.random.default_rng(2).pareto(alpha, 20_000) + 1
    r, _, _ = judge(VolumeAuthenticity(tail_k=1000), q)
    assert r["hill_k"] == 1000
    assert r["hill_alpha"] == pytest.approx(alpha, rel=0.12)  # standard error alpha/sqrt(k) ~ 3%


def test_uniform_sizes_score_high():
    q = np.round(np.random.default_rng(3).uniform(0, 10, 3000), 4) + 0.0001
    r, alerts, _ = judge(VolumeAuthenticity(), q)
    assert r["score_benford"] > 0.8 and r["hill_alpha"] > 8 and r["score"] >= 0.6
    assert len(alerts) == 1 and "sizes look fabricated" in alerts[0].summary


def test_round_lots_score_high_and_the_round_share_is_defined_by_unit_and_resolution():
    r, alerts, _ = judge(VolumeAuthenticity(), round_lots(3000))
    # resolution 1 (whole lots), median decade 10^2 -> unit 100: a continuous size hits one in 100
    assert (r["resolution"], r["round_unit"], r["round_expected"]) == (1.0, 100.0, 0.01)
    assert r["round_share"] > 0.7 and r["score_round"] == 1.0 and r["score"] >= 0.8
    assert alerts and alerts[0].severity == "high"
    genuine = judge(VolumeAuthenticity(), np.round(np.random.default_rng(4).lognormal(5, 1.5, 3000)) + 1)[0]
    assert genuine["round_unit"] == 100.0 and genuine["round_share"] < 0.05 and genuine["score"] < 0.2


def test_identical_top_sizes_give_a_capped_alpha():
    q = np.concatenate([lognormal(850), np.full(150, 1e9)])
    assert judge(VolumeAuthenticity(), q)[0]["hill_alpha"] == 100.0


# -- thresholds ------------------------------------------------------------------------------------
def test_min_score_just_above_and_just_below():
    q = np.round(np.random.default_rng(5).uniform(0, 10, 1000), 4) + 0.0001
    score = judge(VolumeAuthenticity(), q)[0]["score"]
    assert 0.5 < score < 0.9
    assert judge(VolumeAuthenticity(min_score=score, min_trades=1000), q)[1]  # judged once, on all 1000
    assert not judge(VolumeAuthenticity(min_score=score + 1e-4, min_trades=1000), q)[1]


def test_min_trades_just_above_and_just_below():
    q = round_lots(600)
    assert not judge(VolumeAuthenticity(min_trades=601), q)[1]
    [a] = judge(VolumeAuthenticity(min_trades=600), q)[1]
    assert a.metrics["trades"] == 600 and a.metrics["fired_at_trades"] == 600


def test_parameters_are_validated():
    for bad in ({"min_score": 0.0}, {"min_trades": 0}, {"tail_k": 1}, {"mad_low": 0.1, "mad_high": 0.05},
                {"alpha_low": 5.0}, {"round_excess_high": 1.5}):
        with pytest.raises(ValueError):
            VolumeAuthenticity(**bad)


# -- days, evidence, state -------------------------------------------------------------------------
def test_select_keeps_trades_with_a_positive_size():
    t = events(ts=[0.0, 1.0, 2.0, 3.0], kind=["trade", "trade", "quote", "order"], venue=["V"] * 4,
               instrument=["X"] * 4, qty=[1.0, 0.0, 5.0, 2.0], price=[1.0] * 4)
    assert VolumeAuthenticity().select(t).column("qty").to_pylist() == [1.0]


def test_days_close_at_midnight_utc_and_each_day_is_judged_alone():
    det = VolumeAuthenticity()
    day1 = day_of(round_lots(1000), start_s=MIDNIGHT - 1000.0)  # fabricated, ends 1 s before midnight
    day2 = day_of(lognormal(1000), start_s=MIDNIGHT)  # genuine
    st = det.new_state()
    [a] = det.update(st, det.select(pa.concat_tables([day1, day2])))
    assert a.window_start_ns == (MIDNIGHT - 86_400) * 10**9 and a.window_end_ns == (MIDNIGHT - 1) * 10**9
    assert a.metrics["trades"] == 1000 and "2024-02-29" in a.summary
    assert st.day * DAY_NS == MIDNIGHT * 10**9 and st.n == 1000 and not st.fired_n
    assert not det.is_idle(st, (MIDNIGHT + 86_399) * 10**9) and det.is_idle(st, (MIDNIGHT + 86_400) * 10**9)
    assert det.flush(st) == []


def test_evidence_is_the_largest_trades_earliest_first_on_ties():
    q = round_lots(1000)
    q[[10, 20, 30]] = 1e6
    [a] = judge(VolumeAuthenticity(), q)[1]
    ev = a.evidence
    assert ev.num_rows == 20 and ev.column("qty").to_pylist() == sorted(ev.column("qty").to_pylist(), reverse=True)
    assert ev.column("trade_id").to_pylist()[:3] == ["AFFX-10", "AFFX-20", "AFFX-30"]
    want = sorted(range(len(q)), key=lambda i: (-q[i], i))[:20]  # ties (many 5000 lots): earliest first
    assert ev.column("trade_id").to_pylist() == [f"AFFX-{i}" for i in want]


@pytest.mark.parametrize("chunk", [1, 7, 250])
def test_same_alert_whatever_the_chunking_and_through_pickle(chunk):
    det = VolumeAuthenticity()
    t = det.select(day_of(round_lots(700, seed=6)))
    ref = det.update(det.new_state(), t)[-1]
    st, got = det.new_state(), {}
    for s in range(0, t.num_rows, chunk):
        for a in det.update(st, t.slice(s, chunk)):
            got[a.alert_id] = a
        st = pickle.loads(pickle.dumps(st))
    [a] = got.values()
    assert (a.alert_id, a.summary, a.metrics) == (ref.alert_id, ref.summary, ref.metrics)
    assert a.evidence.equals(ref.evidence)


def test_a_burst_that_fired_keeps_its_alert_as_the_day_dilutes_it():
    det = VolumeAuthenticity()
    st = det.new_state()
    first = det.update(st, det.select(day_of(round_lots(600))))
    later = det.update(st, det.select(day_of(lognormal(20_000), start_s=MIDNIGHT + 7200.0, step_s=0.1)))
    assert first and later and first[0].alert_id == later[0].alert_id
    assert later[0].metrics["trades"] == 20_600 and later[0].metrics["score"] < det.min_score
    assert later[0].score == later[0].metrics["peak_score"] >= det.min_score and "peak" in later[0].summary


def test_state_is_bounded_whatever_the_day_holds():
    det = VolumeAuthenticity()
    st = det.new_state()
    for seed in range(5):
        det.update(st, det.select(day_of(lognormal(20_000, seed), start_s=MIDNIGHT + seed * 2000.0, step_s=0.1)))
    assert st.n == 100_000 and len(st.tail) == det.tail_k + 1 and st.top_rows.num_rows == det.max_evidence_rows
    assert len(st.decades) <= 25 and len(st.steps) <= 25 and len(pickle.dumps(st)) < 100_000


def test_contract_market_alerts_only_the_fabricated_day():
    det = VolumeAuthenticity()
    alerts = []
    for _, part in split_by_key(det.select(contract_market()), det.key_columns):
        alerts += det.update(det.new_state(), part)
    assert [(a.venues, a.window_start_ns) for a in alerts] == [(["AFFX"], MIDNIGHT * 10**9)]
