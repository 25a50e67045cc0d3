import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from detectors.off_market import OffMarket
from surveil.schemas import sort_events
from tests.conftest import events, market


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """The generic market thinned to one trade in twelve, REFX quoting every 4 s around its latest price, and four
    odd SHARED prints in BTC/USDT: three 1.2-1.3% above the market within 10 s (one burst), one 0.9% under it later.

    The generic market's REFX dislocations (t=300-360 s, 1200-1240 s) may show up too where the thinned
    SHARED tape is too sparse to tell which venue moved.
    """
    full = market(seed=seed, seconds=seconds)
    m = full.filter(pa.array(np.arange(full.num_rows) % 12 == 0))  # small, so that batch size 1 stays fast
    q_ts, q_inst, q_px = [], [], []
    for k, inst in enumerate(("BTC/USDT", "ETH/USDT")):
        refx = full.filter(pc.and_(pc.equal(full.column("venue"), "REFX"), pc.equal(full.column("instrument"), inst)))
        grid = np.arange(2.0 + k, seconds - 1, 4.0)
        idx = np.searchsorted(refx.column("ts").cast(pa.int64()).to_numpy() / 1e9, grid) - 1
        q_ts += grid[idx >= 0].tolist()
        q_inst += [inst] * int((idx >= 0).sum())
        q_px += refx.column("price").to_numpy()[idx[idx >= 0]].tolist()
    p, n = np.array(q_px), len(q_px)
    quotes = events(ts=q_ts, kind=["quote"] * n, venue=["REFX"] * n, instrument=q_inst,
                    bid=np.round(p * (1 - 3e-4), 2), ask=np.round(p * (1 + 3e-4), 2), bid_qty=[1.0] * n,
                    ask_qty=[1.0] * n, src=pa.array([1] * n, pa.int32()))
    shared = m.filter(pc.and_(pc.equal(m.column("venue"), "SHARED"), pc.equal(m.column("instrument"), "BTC/USDT")))
    sts = shared.column("ts").cast(pa.int64()).to_numpy() / 1e9
    at = [900.2, 903.7, 910.1, 1500.3]
    px = [round(shared.column("price")[int(np.searchsorted(sts, t))].as_py() * f, 2)
          for t, f in zip(at, (1.012, 1.013, 1.012, 0.991))]
    odd = events(ts=at, kind=["trade"] * 4, venue=["SHARED"] * 4, instrument=["BTC/USDT"] * 4, price=px, qty=[5.0] * 4,
                 side=["buy", "buy", "buy", "sell"], trade_id=[f"X{i}" for i in range(4)],
                 src=pa.array([2] * 4, pa.int32()))
    # both instruments print on both venues in the last second, so every run ends with the same keys
    # live (the state-size contract compares a short and a long run's final states)
    last = {i: m.filter(pc.equal(m.column("instrument"), i)).column("price")[-1].as_py()
            for i in ("BTC/USDT", "ETH/USDT")}
    end = events(ts=[seconds - 0.9, seconds - 0.8, seconds - 0.7] * 2, kind=["quote", "trade", "trade"] * 2,
                 venue=["REFX", "REFX", "SHARED"] * 2, instrument=[i for i in last for _ in range(3)],
                 bid=[last[i] - 0.01 if k == 0 else None for i in last for k in range(3)],
                 ask=[last[i] + 0.01 if k == 0 else None for i in last for k in range(3)],
                 price=[None if k == 0 else last[i] for i in last for k in range(3)],
                 qty=[None, 1.0, 1.0] * 2, trade_id=[f"E{j}" for j in range(6)], src=pa.array([3] * 6, pa.int32()))
    return sort_events(pa.concat_tables([m, quotes, odd, end]))


def tape(rows):
    """(t_s, venue, kind, price_or_(bid, ask)) tuples -> events on instrument X."""
    ts, venue, kind, price, bid, ask = [], [], [], [], [], []
    for t, v, k, p in rows:
        ts.append(t), venue.append(v), kind.append(k)
        price.append(p if k == "trade" else None)
        bid.append(p[0] if k == "quote" else None), ask.append(p[1] if k == "quote" else None)
    n = len(ts)
    return events(ts=ts, kind=kind, venue=venue, instrument=["X"] * n, price=price,
                  qty=[1.0 if k == "trade" else None for k in kind], bid=bid, ask=ask,
                  trade_id=[f"t{i}" if k == "trade" else None for i, k in enumerate(kind)])


def run(det, table, batch=None):
    st = det.new_state()
    sel = det.select(table)
    out = {}
    for s in range(0, sel.num_rows, batch or max(sel.num_rows, 1)):
        out.update({a.alert_id: a for a in det.update(st, sel.slice(s, batch or sel.num_rows))})
    out.update({a.alert_id: a for a in det.flush(st)})
    return list(out.values())


QUOTES = [(t, "REFX", "quote", (100.0, 100.5)) for t in np.arange(0, 20, 0.5)]


def with_trade(t, venue, price, quotes=QUOTES):
    return tape(sorted(quotes + [(t, venue, "trade", price)], key=lambda r: r[0]))


@pytest.mark.parametrize("bps, fires", [(25.5, True), (24.5, False)])
def test_above_the_best_offer_by_just_over_the_limit_fires_just_under_does_not(bps, fires):
    alerts = run(OffMarket(through_bps=25), with_trade(5.2, "SHARED", 100.5 * (1 + bps / 1e4)))
    assert bool(alerts) is fires
    if fires:
        [a] = alerts
        assert a.metrics["side"] == "above" and a.metrics["distance_bps"] == pytest.approx(bps)
        assert a.metrics["reference_venue"] == "REFX" and a.metrics["reference_price"] == 100.5
        assert a.metrics["limit_bps"] == 25 and "(limit 25 bps through a quote)" in a.summary


@pytest.mark.parametrize("bps, fires", [(25.5, True), (24.5, False)])
def test_below_the_best_bid_by_just_over_the_limit_fires_just_under_does_not(bps, fires):
    alerts = run(OffMarket(through_bps=25), with_trade(5.2, "SHARED", 100.0 * (1 - bps / 1e4)))
    assert bool(alerts) is fires
    if fires:
        assert alerts[0].metrics["side"] == "below" and "below the best bid" in alerts[0].summary


def recent_trades_market(odd_price: float):
    """Both venues trade every second at 100, no quotes; SHARED prints once at ``odd_price`` at 5.5 s."""
    rows = [(t + dt, v, "trade", 100.0) for t in range(12) for v, dt in (("REFX", 0.0), ("SHARED", 0.5))]
    return tape(sorted([r for r in rows if r[0] != 5.5] + [(5.5, "SHARED", "trade", odd_price)], key=lambda r: r[0]))


@pytest.mark.parametrize("bps, fires", [(50.5, True), (49.5, False)])
def test_beyond_recent_trade_prices_by_just_over_the_band_fires_just_under_does_not(bps, fires):
    # a recent-trade median is only an estimate of a venue's market: the wider band_bps applies, not through_bps
    alerts = run(OffMarket(through_bps=25, band_bps=50), recent_trades_market(100.0 * (1 + bps / 1e4)))
    assert bool(alerts) is fires
    if fires:
        assert alerts[0].metrics["reference_kind"] == "off-market" and alerts[0].metrics["limit_bps"] == 50
        assert "(limit 50 bps beyond recent prices)" in alerts[0].summary


def test_trade_through_on_the_shared_book_names_the_quote_it_went_through():
    [a] = run(OffMarket(), with_trade(5.2, "SHARED", 101.40))
    assert "SHARED trade t" in a.summary
    assert "at 101.40 is 89.6 bps above the best offer across venues (REFX ask 100.50)" in a.summary
    assert "trade-through" in a.summary and a.metrics["reference_kind"] == "trade-through"
    kinds = a.evidence.column("kind").to_pylist()
    assert kinds.count("trade") == 1 and "quote" in kinds and a.venues == ["REFX", "SHARED"]
    assert a.window_start_ns == a.window_end_ns == 5_200_000_000 and a.params == OffMarket().params()


def test_a_stale_reference_is_ignored():
    quotes = [(0.0, "REFX", "quote", (100.0, 100.5)), (30.0, "REFX", "quote", (100.0, 100.5))]
    assert run(OffMarket(max_staleness_ms=5_000), with_trade(5.5, "SHARED", 102.0, quotes)) == []
    assert len(run(OffMarket(max_staleness_ms=5_000), with_trade(4.5, "SHARED", 102.0, quotes))) == 1


def test_a_venue_without_quotes_is_referenced_by_the_median_of_its_recent_trades():
    # both venues trade every second at 100; SHARED prints once at 100.9
    rows = [(t + dt, v, "trade", 100.0) for t in range(12) for v, dt in (("REFX", 0.0), ("SHARED", 0.5))]
    rows = sorted([r for r in rows if r[0] != 5.5] + [(5.5, "SHARED", "trade", 100.9)], key=lambda r: r[0])
    [a] = run(OffMarket(), tape(rows))
    assert a.metrics["reference_kind"] == "off-market" and "(REFX recent-trade price 100.00)" in a.summary
    assert a.metrics["distance_bps"] == pytest.approx(90.0) and a.venues == ["REFX", "SHARED"]
    # REFX then prints 100.9 too: against SHARED's median it is off-market, against SHARED's last print it is not
    rows = sorted([r for r in rows if r[:2] != (6.0, "REFX")] + [(6.0, "REFX", "trade", 100.9)], key=lambda r: r[0])
    assert sorted(a.metrics["reference_venue"] for a in run(OffMarket(), tape(rows))) == ["REFX", "SHARED"]
    assert [a.metrics["reference_venue"] for a in run(OffMarket(ref_trades=1), tape(rows))] == ["REFX"]


def test_the_trades_own_venue_is_not_its_reference():
    quotes = [(t, "SHARED", "quote", (100.0, 100.5)) for t in np.arange(0, 20, 0.5)]
    assert run(OffMarket(), with_trade(5.2, "SHARED", 102.0, quotes)) == []


def test_between_crossed_other_venues_is_in_the_band():
    quotes = [(t, v, "quote", q) for t in np.arange(0, 20, 0.5)
              for v, q in (("A", (100.0, 100.2)), ("B", (101.0, 101.2)))]
    assert run(OffMarket(), with_trade(5.2, "C", 100.6, quotes)) == []
    assert len(run(OffMarket(), with_trade(5.2, "C", 102.0, quotes))) == 1


def test_a_news_jump_that_moves_every_venue_is_not_off_market():
    # SHARED prints the new level first; REFX's quotes follow 0.3 s later and stay there
    quotes = [(t, "REFX", "quote", (100.0, 100.5) if t < 10.3 else (103.0, 103.5)) for t in np.arange(0, 20, 0.5)]
    quotes.append((10.3, "REFX", "quote", (103.0, 103.5)))
    rows = quotes + [(t, "SHARED", "trade", 103.2) for t in (10.0, 10.6, 11.5)]
    table = tape(sorted(rows, key=lambda r: r[0]))
    assert run(OffMarket(), table) == []
    assert run(OffMarket(confirm_ms=0), table)  # without the confirmation the first print would alert


def test_a_burst_on_one_venue_is_one_alert_revised_and_a_later_one_another():
    # SHARED trades in line every second, with four odd prints in between: three within 4 s, one 12 s later
    odd = {3.3: 101.5, 5.3: 101.7, 7.3: 101.6, 19.3: 101.5}
    trades = [(t + 0.8, "SHARED", "trade", 100.2) for t in range(20)]
    trades += [(t, "SHARED", "trade", p) for t, p in odd.items()]
    table = tape(sorted(QUOTES + trades, key=lambda r: r[0]))
    alerts = run(OffMarket(burst_gap_ms=5_000), table)
    first, second = sorted(alerts, key=lambda a: a.window_start_ns)
    assert first.metrics["trades"] == 3 and first.window_end_ns == 7_300_000_000
    assert "3 off-market trades" in first.summary and "up to 119.4 bps" in first.summary
    assert first.metrics["peak_distance_bps"] == pytest.approx((101.7 / 100.5 - 1) * 1e4)
    assert second.metrics["trades"] == 1 and second.window_start_ns == 19_300_000_000
    for batch in (1, 3, 7):  # trades confirmed, and bursts grown, across batches
        got = run(OffMarket(burst_gap_ms=5_000), table, batch=batch)
        assert {a.alert_id: (a.summary, a.evidence.num_rows) for a in got} == \
            {a.alert_id: (a.summary, a.evidence.num_rows) for a in alerts}


def test_a_venue_moving_as_a_whole_is_a_dislocation_not_off_market_prints():
    # SHARED trades 1.5% above REFX's quotes from t=5 on: every print goes through REFX's offer,
    # but SHARED's own market is there too (before and after each print): price_dislocation's case
    trades = [(t + 0.8, "SHARED", "trade", 100.2 if t < 5 else 101.8) for t in range(20)]
    assert run(OffMarket(), tape(sorted(QUOTES + trades, key=lambda r: r[0]))) == []
    # so is a spike that outlasts the confirmation window (5 s): the venue moved, briefly
    trades = [(t / 2, "SHARED", "trade", 101.8 if 5 <= t / 2 < 10 else 100.2) for t in range(40)]
    assert run(OffMarket(), tape(sorted(QUOTES + trades, key=lambda r: r[0]))) == []


def test_a_venue_ramping_away_and_back_is_not_off_market():
    # SHARED leaves REFX's quotes in 1 s (prints at 101.0 and 101.5 on the way), holds 102 for 10 s and comes back
    # the same way: each print on the way out is followed by prints beyond it, each on the way back lies between
    # SHARED's own level and the other venues' band - the venue moving (a peg wobble, a dislocation), not odd prints
    path = {4.6: 101.0, 4.9: 101.5, 15.6: 101.5, 15.9: 101.0}
    trades = [(t / 5, "SHARED", "trade", 100.2) for t in range(0, 23)]  # 0 .. 4.4 s in line
    trades += [(t, "SHARED", "trade", p) for t, p in path.items()]
    trades += [(5.2 + t / 5, "SHARED", "trade", 102.0) for t in range(0, 50)]  # 5.2 .. 15.0 s at 102
    trades += [(16.2 + t / 5, "SHARED", "trade", 100.2) for t in range(0, 18)]  # back in line
    table = tape(sorted(QUOTES + trades, key=lambda r: r[0]))
    assert run(OffMarket(), table) == []
    # the same print at 101.0 with SHARED trading back in line around it is off-market
    alone = [r for r in trades if r[0] < 4.5 or r[0] >= 16.2] + [(4.6, "SHARED", "trade", 101.0)]
    alone += [(4.8 + t / 5, "SHARED", "trade", 100.2) for t in range(0, 55)]
    [a] = run(OffMarket(), tape(sorted(QUOTES + alone, key=lambda r: r[0])))
    assert a.window_start_ns == 4_600_000_000 and a.metrics["distance_bps"] == pytest.approx((101.0 / 100.5 - 1) * 1e4)


def test_a_print_between_its_venues_level_and_the_band_is_not_off_market():
    # SHARED has traded at 102 (1.5% above REFX's quotes); a print at 101.3 is through REFX's offer by 80 bps but
    # on SHARED's way back towards REFX, so not out of line with every venue's market
    trades = [(t / 2, "SHARED", "trade", 102.0) for t in range(0, 12)]
    trades += [(6.2, "SHARED", "trade", 101.3)] + [(7.0 + t / 2, "SHARED", "trade", 100.2) for t in range(0, 20)]
    assert run(OffMarket(), tape(sorted(QUOTES + trades, key=lambda r: r[0]))) == []


def at_epoch(table: pa.Table, epoch_ns: int) -> pa.Table:
    """The same events shifted to ``epoch_ns`` (real nanosecond times, beyond float64's exact integers)."""
    ts = pc.add(table.column("ts").cast(pa.int64()), pa.scalar(epoch_ns, pa.int64()))
    return table.set_column(table.schema.get_field_index("ts"), "ts", ts.cast(table.schema.field("ts").type))


def test_real_nanosecond_times_give_the_same_verdict():
    # after the print at 5.2 s SHARED shows two trades within confirm_ms, one at the print's level and one back in
    # line: half at its level is still an odd print.  At 2026's epoch times (~1.77e18 ns, not exact in float64) the
    # print itself must not slip into its own confirmation window and tip the count
    trades = [(t + 0.8, "SHARED", "trade", 100.2) for t in range(5)] + [(5.2, "SHARED", "trade", 101.5),
              (5.9, "SHARED", "trade", 101.5), (6.6, "SHARED", "trade", 100.2)]
    trades += [(t + 0.8, "SHARED", "trade", 100.2) for t in range(8, 20)]
    table = tape(sorted(QUOTES + trades, key=lambda r: r[0]))
    [a] = run(OffMarket(), table)
    assert (a.metrics["venue_observations_after"], a.metrics["venue_observations_at_its_level"]) == (2, 1)
    epoch = 1_772_410_000_000_000_001 - 5_200_000_000  # the print lands 1 ns past a multiple of 256 ns
    for batch in (None, 7):
        [b] = run(OffMarket(), at_epoch(table, epoch), batch=batch)
        assert b.window_start_ns == a.window_start_ns + epoch and b.summary == a.summary


def test_the_verdict_waits_for_the_confirmation_window_and_flush_gives_it():
    det = OffMarket(confirm_ms=2_000)
    st = det.new_state()
    table = det.select(with_trade(5.2, "SHARED", 102.0))
    head = table.filter(pc.less_equal(table.column("ts"), pa.scalar(7_000_000_000, pa.timestamp("ns", "UTC"))))
    assert det.update(st, head) == [] and len(st.pending) == 1
    assert not det.is_idle(st, 7_000_000_000)
    st2 = pickle.loads(pickle.dumps(st))
    [a] = det.flush(st2)
    [b] = det.update(st, table.slice(head.num_rows))
    assert a.alert_id == b.alert_id and not st.pending


def test_idle_only_when_nothing_could_change_a_later_alert():
    det = OffMarket(max_staleness_ms=5_000, burst_gap_ms=10_000, level_lookback_ms=8_000)
    st = det.new_state()
    det.update(st, det.select(with_trade(5.2, "SHARED", 102.0)))
    last_quote = 19_500_000_000  # the burst (5.2 s) could take no trade after 15.2 s
    assert not det.is_idle(st, last_quote + 4_000_000_000)  # REFX's quote could still be a reference
    assert not det.is_idle(st, last_quote + 7_000_000_000)  # ... or set REFX's own level
    assert det.is_idle(st, last_quote + 8_000_000_001)
