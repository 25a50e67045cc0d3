"""Reference deviation: band and duration either side, NAV anchors from a canonical file, pegs, look-alikes.

``tape`` lays trades of one instrument on one venue every ``every`` seconds at ``anchor x (1 +
bps/1e4)``; ``nav`` gives reference events.  Default parameters: band 50 bps, 60 s.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from connectors import decode_file
from detectors.reference_deviation import ReferenceDeviation
from surveil.schemas import conform, sort_events
from tests.conftest import events

FUND = "BUIDL/USD"


def tape(t0: float, t1: float, bps, anchor: float = 100.0, venue: str = "SHARED", inst: str = FUND,
         every: float = 5.0, tag: str = "") -> list[dict]:
    times = np.arange(t0, t1, every)
    dev = np.broadcast_to(np.asarray(bps, dtype=float), times.shape) if np.ndim(bps) == 0 else np.asarray(bps)
    return [dict(ts=float(t), kind="trade", venue=venue, instrument=inst, price=float(anchor * (1 + d / 1e4)),
                 qty=1.0, trade_id=f"{venue}{tag}{k}") for k, (t, d) in enumerate(zip(times, dev))]


def nav(t: float, value: float, inst: str = FUND, source: str = "NAV") -> dict:
    return dict(ts=float(t), kind="reference", venue=source, instrument=inst, price=value)


def table(rows: list[dict]) -> pa.Table:
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def run(rows, det=None, batch: int | None = None):
    det = det or ReferenceDeviation()
    t = det.select(table(rows))
    st, out = det.new_state(), {}
    step = batch or t.num_rows
    for s in range(0, t.num_rows, step):
        for a in det.update(st, t.slice(s, step)):
            out[a.alert_id] = a
    for a in det.flush(st):
        out[a.alert_id] = a
    return list(out.values())


def scene(bps: float, seconds: float = 120.0) -> list[dict]:
    """NAV 100 at 0; in band for 100 s, ``bps`` away for ``seconds``, back in band after."""
    return [nav(0, 100.0)] + tape(0, 100, 5.0) + tape(100, 100 + seconds, bps, tag="x") + \
        tape(100 + seconds, 100 + seconds + 50, -5.0, tag="y")


@pytest.mark.parametrize("bps,fires", [(51.0, True), (49.0, False), (-51.0, True), (-49.0, False)])
def test_band(bps, fires):
    alerts = run(scene(bps))
    assert bool(alerts) is fires
    if fires:
        a = alerts[0]
        assert a.instrument == FUND and a.venues == ["SHARED"] and a.metrics["anchor_source"] == "NAV"
        assert a.metrics["closed"] and a.window_start_ns == 100 * 10**9 and a.window_end_ns == 220 * 10**9
        assert ("above" if bps > 0 else "below") in a.summary and "(NAV)" in a.summary
        assert a.evidence.column("kind").to_pylist()[0] == "reference" and a.params["band_bps"] == 50.0


@pytest.mark.parametrize("seconds,fires", [(61.0, True), (59.0, False)])
def test_duration(seconds, fires):
    # trades every 5 s: outside observations at 100..160 span 60 s (fires), at 100..155 span 55 s (does not)
    assert bool(run(scene(80.0, seconds))) is fires


def test_one_alert_per_episode_whatever_the_batch_size():
    rows = scene(120.0, 300.0)
    ref = [(a.alert_id, a.summary, a.evidence.num_rows) for a in run(rows)]
    assert len(ref) == 1
    for b in (1, 3, 17):
        assert [(a.alert_id, a.summary, a.evidence.num_rows) for a in run(rows, batch=b)] == ref


def test_a_new_nav_moves_the_anchor():
    # Trades at 100.8 are 80 bps above NAV 100, but the NAV published at 110 s is 100.8: back in band.
    rows = [nav(0, 100.0)] + tape(0, 100, 0.0) + tape(100, 300, 80.0, tag="x") + [nav(110, 100.8)]
    assert run(rows) == []
    # ... and an anchor older than max_anchor_age_ms no longer judges anything
    assert run([nav(0, 100.0)] + tape(100, 300, 80.0), ReferenceDeviation(max_anchor_age_ms=60_000)) == []


def test_deviation_on_any_venue_and_from_quote_mids():
    quotes = [dict(ts=float(t), kind="quote", venue="REFX", instrument=FUND, bid=99.0, ask=99.2)
              for t in range(100, 250, 10)]  # mid 99.1: 90 bps below
    alerts = run([nav(0, 100.0)] + tape(0, 300, 0.0) + quotes)
    assert [a.venues for a in alerts] == [["REFX"]] and "below" in alerts[0].summary


def test_stablecoin_peg_as_a_parameter_and_its_wobble_inside_the_band():
    usdt = "USDT/USD"
    wobble = 35.0 * np.sin(np.arange(0, 1800, 5.0) / 60.0)  # +-35 bps for half an hour: a look-alike
    assert run(tape(0, 1800, wobble, anchor=1.0, inst=usdt)) == []
    spike = tape(0, 100, 0.0, anchor=1.0, inst=usdt) + tape(100, 130, -150.0, anchor=1.0, inst=usdt, tag="s") + \
        tape(130, 400, 0.0, anchor=1.0, inst=usdt, tag="r")  # 30 s beyond the band: brief, no alert
    assert run(spike) == []
    depeg = tape(0, 100, 0.0, anchor=1.0, inst=usdt) + tape(100, 400, -150.0, anchor=1.0, inst=usdt, tag="d")
    alerts = run(depeg)
    assert len(alerts) == 1 and "(peg)" in alerts[0].summary and alerts[0].evidence.num_rows >= 1
    assert run(depeg, ReferenceDeviation(pegs="")) == []  # without the peg nothing anchors USDT/USD


def test_nav_file_through_the_canonical_decoder(tmp_path):
    """A NAV file is a canonical CSV of reference events; bad rows become dead letters."""
    p = tmp_path / "nav.csv"
    p.write_text("ts,kind,venue,instrument,price\n"
                 "1970-01-01T00:00:00Z,reference,NAV,BUIDL/USD,100.0\n"
                 "1970-01-01T00:00:01Z,reference,NAV,,100.0\n"
                 "1970-01-01T00:00:02Z,reference,NAV,BUIDL/USD,-1\n")
    decoded = list(decode_file(p, src=1))
    navs = pa.concat_tables([d.events for d in decoded])
    dead = pa.concat_tables([d.dead for d in decoded]).column("reason").to_pylist()
    assert navs.num_rows == 1 and dead == ["reference value without instrument", "reference price must be positive (got -1.0)"]
    trades = table(tape(0, 100, 0.0) + tape(100, 300, -90.0, tag="x"))
    merged = sort_events(pa.concat_tables([conform(navs), trades]))
    det = ReferenceDeviation()
    alerts = det.update(det.new_state(), det.select(merged))
    assert alerts and alerts[-1].metrics["anchor"] == 100.0 and alerts[-1].metrics["anchor_source"] == "NAV"


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        ReferenceDeviation(pegs="USDT/USD=abc")
    with pytest.raises(ValueError):
        ReferenceDeviation(band_bps=0)
    # every parameter is a str/int/float, so the TOML configuration can check its type against the default
    assert {type(v) for v in ReferenceDeviation.defaults().values()} <= {str, int, float}


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """A tokenised fund with a NAV every minute on two venues, and USDT/USD against its peg;
    a deviation episode of each every ten minutes, wobbles inside the band otherwise."""
    rng = np.random.default_rng(seed)
    rows = []
    navs = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, seconds // 60 + 1)))
    rows += [nav(60.0 * k, float(v)) for k, v in enumerate(navs)]
    for venue in ("SHARED", "REFX"):
        t = np.sort(rng.uniform(0, seconds, seconds // 2))
        dev = rng.normal(0, 10, len(t))
        for k, start in enumerate(range(200, seconds - 200, 600)):
            if (k + (venue == "REFX")) % 2 == 0:
                dev = np.where((t > start) & (t < start + 150), dev + rng.choice([-1, 1]) * rng.uniform(80, 200), dev)
        anchor = navs[np.minimum((t // 60).astype(int), len(navs) - 1)]
        rows += [dict(ts=float(x), kind="trade", venue=venue, instrument=FUND, price=float(a * (1 + d / 1e4)),
                      qty=1.0, trade_id=f"{venue}-f{i}") for i, (x, a, d) in enumerate(zip(t, anchor, dev))]
    t = np.sort(rng.uniform(0, seconds, seconds))
    dev = rng.normal(0, 8, len(t)) + np.where((t % 900 > 400) & (t % 900 < 520), -120.0, 0.0)
    rows += [dict(ts=float(x), kind="trade", venue="SHARED", instrument="USDT/USD", price=float(1 + d / 1e4),
                  qty=100.0, trade_id=f"u{i}") for i, (x, d) in enumerate(zip(t, dev))]
    return table(rows)
