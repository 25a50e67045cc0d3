"""behaviour_anomaly: features with known values, warm-up, drift reset, and the contract market."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from detectors._features import MARKET_FEATURES, OWNER_FEATURES, market_features, owner_features, recent_news
from detectors.base import split_by_key
from detectors.behaviour_anomaly import BehaviourAnomaly
from tests.conftest import events

S = 1_000_000_000


def _feat(window, owner, news=None):
    f = owner_features(window, news, window_ms=60_000)
    return dict(zip(OWNER_FEATURES, f.values[f.owners.index(owner)].tolist()))


def test_owner_features_on_a_hand_built_window():
    # X: rests a buy of 10 and cancels it 0.5 s later, another buy cancelled after 5 s, a sell cancelled never;
    # trades: X sells 1 to Y (X aggressor, HK), sells 1 to Y (Y aggressor, OV), buys 2 from Z (X aggressor, HK)
    t = events(
        ts=[1.0, 1.5, 2.0, 3.0, 7.0, 8.0, 9.0, 10.0],
        kind=["order", "order", "order", "order", "order", "trade", "trade", "trade"],
        action=["new", "cancel", "new", "new", "cancel", None, None, None],
        order_id=["o1", "o1", "o2", "o3", "o2", None, None, None],
        side=["buy", "buy", "buy", "sell", "buy", "sell", "buy", "buy"],
        qty=[10.0, 10.0, 3.0, 1.0, 3.0, 1.0, 1.0, 2.0],
        price=[99.0, 99.0, 98.0, 101.0, 98.0, 100.0, 100.0, 101.0],
        owner=["X"] * 5 + [None] * 3, account=["HK-X"] * 5 + [None] * 3,
        venue=["SHARED"] * 8, instrument=["I"] * 8,
        buy_owner=[None] * 5 + ["Y", "Y", "X"], sell_owner=[None] * 5 + ["X", "X", "Z"],
        buy_group=[None] * 5 + ["Y", "Y", "G"], sell_group=[None] * 5 + ["G", "G", "Z"],
        buy_platform=[None] * 5 + ["OVSAFF", "OVSAFF", "HKVATP"],
        sell_platform=[None] * 5 + ["HKVATP", "OVSAFF", "OVSAFF"])
    x = _feat(t, "X")
    assert x["msg_rate"] == pytest.approx(np.log1p(5))  # 5 messages in a 60 s window
    assert x["order_to_trade"] == pytest.approx(np.log1p(5 / 4))  # 3 trade legs + 1
    assert x["cancel_rate"] == pytest.approx(2 / (3 + 2))  # two pseudo-orders: three orders are few
    assert x["fast_cancel_share"] == pytest.approx(1 / (2 + 2))  # o1 after 0.5 s; o2 after 5 s
    typical = 1.0  # median trade quantity
    assert x["cancel_to_trade_qty"] == pytest.approx(np.log1p(13 / (4 + typical)))
    # X sold and bought: its buy cancels (13) count against its sales
    assert x["opposite_cancel"] == pytest.approx(np.log1p(13 / (4 + typical)))
    assert x["self_share"] == 0 and x["group_share"] == 0
    assert x["platform_mix"] == pytest.approx(1 / (4 + typical))  # 1 of 4 on OVSAFF
    assert x["aggressiveness"] == pytest.approx(3 / 4)
    assert x["position_build"] == pytest.approx(0.0)  # bought 2, sold 2
    assert x["position_reversal"] == pytest.approx(np.log1p(4))
    assert x["counterparty_round_trip"] == 0 and x["exclusive_round_trip"] == 0  # sold to Y, bought from Z
    assert x["push_bps"] == 0  # one aggressive sell, one aggressive buy: nothing walked
    assert x["participation"] == pytest.approx(1.0)  # in every trade of the window
    # sold at 100, bought at 101: -1 per unit over a range of 1, for 2 units unwound
    assert x["realised_spread"] == pytest.approx(-1.0 * 2 / (2 + typical))
    y = _feat(t, "Y")
    assert y["aggressiveness"] == pytest.approx(1 / 2) and y["position_build"] == pytest.approx(np.log1p(2))
    assert y["msg_rate"] == 0 and y["cancel_rate"] == 0


def test_self_group_counterparty_and_off_market_features():
    n = 12
    price = [100.0] * n
    price[6] = 103.0  # one print 3% off its neighbours
    buy = ["A", "B", "A", "C", "D", "E", "F", "E", "D", "F", "E", "D"]
    sell = ["A", "A", "B", "B", "E", "D", "E", "F", "F", "D", "F", "E"]
    group = {"A": "A", "B": "B", "C": "C", "D": "G", "E": "G", "F": "F"}
    t = events(ts=np.arange(n, dtype=float), kind=["trade"] * n, venue=["SHARED"] * n, instrument=["I"] * n,
               price=price, qty=[1.0] * n, side=["buy"] * n, buy_owner=buy, sell_owner=sell,
               buy_group=[group[o] for o in buy], sell_group=[group[o] for o in sell])
    a = _feat(t, "A")
    assert a["self_share"] == pytest.approx(2 / 4)  # both legs of trade 0 of its 4 legs
    assert a["counterparty_round_trip"] == pytest.approx(2 / (4 + 1))  # sold 1 to B, bought 1 from B; typical 1
    # ... and those two trades are 2 of B's 3: the round trip weighs 2/3
    assert a["exclusive_round_trip"] == pytest.approx(2 / (4 + 1) * 2 / 3)
    d = _feat(t, "D")
    assert d["group_share"] == pytest.approx(3 / 5)  # D traded with E (same group) 3 times of 5
    f = _feat(t, "F")
    assert f["price_dev_bps"] == pytest.approx(300.0)
    assert _feat(t, "C")["price_dev_bps"] == 0


def test_push_is_how_far_an_owners_aggressive_trades_walked_the_price():
    # P lifts the offer four times, 100 -> 100.6; Q sells into the bids twice at one price; R buys passively
    t = events(ts=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], kind=["trade"] * 6, venue=["SHARED"] * 6, instrument=["I"] * 6,
               price=[100.0, 100.2, 100.4, 100.6, 100.5, 100.5], qty=[1.0] * 6,
               side=["buy", "buy", "buy", "buy", "sell", "sell"],
               buy_owner=["P", "P", "P", "P", "R", "R"], sell_owner=["S", "S", "S", "S", "Q", "Q"])
    assert _feat(t, "P")["push_bps"] == pytest.approx(60.0)
    assert _feat(t, "Q")["push_bps"] == 0 and _feat(t, "R")["push_bps"] == 0 and _feat(t, "S")["push_bps"] == 0


def test_cancel_latency_across_the_window_edge():
    prev = events(ts=[59.7], kind=["order"], action=["new"], order_id=["o9"], owner=["X"], side=["buy"],
                  qty=[1.0], price=[1.0], venue=["SHARED"], instrument=["I"])
    news = recent_news(prev, 60 * S, 1_000)
    assert news.column("order_id").to_pylist() == ["o9"]
    now = events(ts=[60.2], kind=["order"], action=["cancel"], order_id=["o9"], owner=["X"], side=["buy"],
                 qty=[1.0], price=[1.0], venue=["SHARED"], instrument=["I"])
    assert _feat(now, "X", news)["fast_cancel_share"] == pytest.approx(1 / (1 + 2))
    assert _feat(now, "X", None)["fast_cancel_share"] == 0.0  # without the earlier new, latency unknown


def test_market_features():
    t = events(ts=[0.0, 1.0, 2.0], kind=["trade"] * 3, venue=["SHARED", "SHARED", "REFX"], instrument=["I"] * 3,
               price=[102.0, 102.0, 100.0], qty=[1.0, 3.0, 1.0], buy_owner=["A", "B", None],
               sell_owner=["B", "A", None], buy_platform=["HKVATP", "OVSAFF", None],
               sell_platform=["OVSAFF", "OVSAFF", None])
    f, vwap = market_features(t, 100.0)
    assert set(f) == set(MARKET_FEATURES) and vwap == 102.0
    assert f["venue_gap_bps"] == pytest.approx(200.0) and f["return_bps"] == pytest.approx(200.0)
    assert f["log_trades"] == pytest.approx(np.log1p(2))
    # HKVATP clients bought 1 from OVSAFF clients; the OVSAFF-OVSAFF trade is no exposure; typical trade 2
    assert f["platform_net"] == pytest.approx(np.log1p(1 / 2))


# ---- a synthetic market: ordinary owners, then a wash trader and a flickering owner ---------------------------
def _market(seed: int, seconds: int, rate: float = 3.0, wash_at: float | None = 900.0,
            busier_after: float | None = None, owners: int = 40, orders: bool = False,
            flicker_at: tuple[float, ...] = ()) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    ts = np.sort(rng.uniform(0, seconds, n))
    if busier_after is not None:  # a second, denser stream after the regime change
        extra = np.sort(rng.uniform(busier_after, seconds, int((seconds - busier_after) * rate * 3)))
        ts = np.sort(np.concatenate([ts, extra]))
        n = len(ts)
    names = np.array([f"O{i}" for i in range(owners)])
    b = rng.integers(0, owners, n)
    s = (b + rng.integers(1, owners, n)) % owners
    buy, sell = names[b].astype(object), names[s].astype(object)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    qty = np.round(rng.lognormal(0, 0.5, n), 3)
    side = rng.choice(["buy", "sell"], n)
    rows = dict(ts=list(ts), kind=["trade"] * n, action=[None] * n, order_id=[None] * n, owner=[None] * n,
                account=[None] * n, side=list(side), price=list(price), qty=list(qty), buy_owner=list(buy),
                sell_owner=list(sell))
    if wash_at is not None:
        for k in range(6):  # O1 trades with itself 6 times in 50 s
            i = int(np.searchsorted(ts, wash_at + 1 + 10 * k))
            rows["sell_owner"][i] = rows["buy_owner"][i] = "O1"
    if orders:
        _add_orders(rows, rng, seconds, names, flicker_at)
    m = len(rows["ts"])
    rows["trade_id"] = [f"t{i}" if k == "trade" else None for i, k in enumerate(rows["kind"])]
    rows["buy_group"], rows["sell_group"] = list(rows["buy_owner"]), list(rows["sell_owner"])
    rows["buy_account"] = [f"HK-{o}" if o else None for o in rows["buy_owner"]]
    rows["sell_account"] = [f"OV-{o}" if o else None for o in rows["sell_owner"]]
    rows["buy_platform"] = ["HKVATP" if o else None for o in rows["buy_owner"]]
    rows["sell_platform"] = ["OVSAFF" if o else None for o in rows["sell_owner"]]
    t = events(venue=["SHARED"] * m, instrument=["BTC/USDT"] * m, **rows)
    return t


def _add_orders(rows: dict, rng, seconds: int, names, flicker_at: tuple[float, ...]) -> None:
    """Resting orders of ordinary owners (one every 2 s, cancelled 2-30 s later), and from each ``flicker_at``
    O7 flickering: 25 ordinary-sized sells flashed one at a time, each cancelled 50-500 ms after it was placed,
    over 50 s, while it buys once on the other side; then the rows sorted by time."""
    orders = []  # (ts, owner, action, order_id, side, qty)
    for i, t in enumerate(np.sort(rng.uniform(0, seconds - 30, seconds // 2))):
        o, side, q = str(rng.choice(names)), str(rng.choice(["buy", "sell"])), float(rng.lognormal(0, 0.5))
        orders += [(t, o, "new", f"r{i}", side, q), (t + rng.uniform(2, 30), o, "cancel", f"r{i}", side, q)]
    for start in flicker_at:
        for i in range(25):
            t, q, oid = start + 2 * i + rng.uniform(0, 1), float(rng.uniform(0.5, 2.0)), f"f{start:.0f}-{i}"
            orders += [(t, "O7", "new", oid, "sell", q), (t + rng.uniform(0.05, 0.5), "O7", "cancel", oid, "sell", q)]
        j = int(np.searchsorted(rows["ts"], start + 30))
        rows["buy_owner"][j] = "O7"
        if rows["sell_owner"][j] == "O7":
            rows["sell_owner"][j] = "O8"
    for t, o, action, oid, side, q in orders:
        for k, v in (("ts", t), ("kind", "order"), ("action", action), ("order_id", oid), ("owner", o),
                     ("account", f"HK-{o}"), ("side", side), ("price", 100.0), ("qty", q), ("buy_owner", None),
                     ("sell_owner", None)):
            rows[k].append(v)
    order = np.argsort(np.asarray(rows["ts"]), kind="stable")
    for k in rows:
        rows[k] = [rows[k][i] for i in order]


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """The contract suite's market: a wash trader appears after the warm-up."""
    return _market(seed, seconds)


def _run(det, table, batch_rows):
    states, alerts = {}, {}
    for start in range(0, table.num_rows, batch_rows):
        for key, part in split_by_key(det.select(table.slice(start, batch_rows)), det.key_columns):
            st = states.setdefault(key, det.new_state())
            for a in det.update(st, part):
                alerts[a.alert_id] = a
    for key in sorted(states):
        for a in det.flush(states[key]):
            alerts[a.alert_id] = a
    return alerts, states


def test_a_wash_trader_alerts_and_names_the_feature():
    alerts, _ = _run(BehaviourAnomaly(), contract_market(seed=4), 5_000)
    hits = [a for a in alerts.values() if a.owners == ["O1"]]
    assert len(hits) == 1, [a.summary for a in alerts.values()]
    a = hits[0]
    assert a.metrics["top_features"][0]["feature"] == "self_share" and "self_share" in a.summary
    assert a.window_start_ns == 900 * S and a.params == BehaviourAnomaly().params()
    assert a.accounts == ["HK-O1", "OV-O1"]
    # nothing else in this market is anomalous
    assert len(alerts) == 1, [a.summary for a in alerts.values()]


def test_a_flickering_owner_alerts_on_the_combination_no_rule_looks_at():
    t = _market(seed=6, seconds=1800, wash_at=None, orders=True, flicker_at=(1210.0,))
    alerts, _ = _run(BehaviourAnomaly(), t, 5_000)
    hits = [a for a in alerts.values() if a.owners == ["O7"]]
    assert len(hits) == 1 and hits[0].window_start_ns == 1200 * S, [a.summary for a in alerts.values()]
    top = {f["feature"] for f in hits[0].metrics["top_features"]}
    assert top <= {"msg_rate", "order_to_trade", "cancel_rate", "fast_cancel_share", "cancel_to_trade_qty",
                   "opposite_cancel"}, top
    assert hits[0].metrics["features"]["fast_cancel_share"] == pytest.approx(25 / (25 + 2), abs=1e-6)  # every cancel
    # the same market without the flicker: nobody is flagged
    quiet, _ = _run(BehaviourAnomaly(), _market(seed=6, seconds=1800, wash_at=None, orders=True), 5_000)
    assert not quiet, [a.summary for a in quiet.values()]


def test_an_owner_who_keeps_flickering_is_flagged_as_it_starts_not_every_minute():
    # O7 flickers in each of eight minutes: its own history learns the new habit (winsorised), so the alerts
    # come in the first minutes of it, not in all eight
    starts = tuple(1210.0 + 60 * k for k in range(8))
    alerts, _ = _run(BehaviourAnomaly(), _market(seed=6, seconds=1800, wash_at=None, orders=True, flicker_at=starts),
                     5_000)
    flagged = sorted(a.window_start_ns // S for a in alerts.values() if a.owners == ["O7"])
    assert flagged and flagged[0] == 1200 and len(flagged) < len(starts), flagged


def test_a_crowd_trading_harder_together_is_no_crowd_of_suspects(monkeypatch):
    # minute 20: every trade comes sixty times over (a frenzy after news) - every owner's position build-up and
    # reversal soar against the population's past and its own, but not against the window's other owners
    t = _market(seed=7, seconds=1800, wash_at=None)
    ts = t.column("ts").cast(pa.int64()).to_numpy()
    busy = np.flatnonzero((ts >= 1200 * S) & (ts < 1260 * S))
    rows = np.sort(np.concatenate([np.arange(t.num_rows)] + [busy] * 59))
    t = t.take(pa.array(rows))
    t = t.set_column(t.schema.get_field_index("trade_id"), "trade_id", pa.array([f"t{i}" for i in range(t.num_rows)]))
    alerts, _ = _run(BehaviourAnomaly(), t, 5_000)
    assert not [a for a in alerts.values() if a.owners], [a.summary for a in alerts.values()]
    market = [a for a in alerts.values() if not a.owners]  # the instrument's own window says what happened
    assert [a.window_start_ns for a in market] == [1200 * S]
    assert {f["feature"] for f in market[0].metrics["top_features"][:2]} == {"log_trades", "log_volume"}
    # without the window's own owners as a baseline, the crowd would be flagged
    monkeypatch.setattr("detectors.behaviour_anomaly.MIN_CROSS_SECTION", 10**9)
    alerts, _ = _run(BehaviourAnomaly(), t, 5_000)
    assert len({a.owners[0] for a in alerts.values() if a.owners and a.window_start_ns == 1200 * S}) >= 10


def test_no_alert_during_warm_up():
    early = _market(seed=4, seconds=1800, wash_at=60.0)  # the wash trades in window 1
    alerts, _ = _run(BehaviourAnomaly(warmup_windows=3), early, 5_000)
    assert not [a for a in alerts.values() if a.owners == ["O1"]]
    # the warm-up is also the owners' own-history minimum: both must be 1 for window 1 to be judged
    alerts, _ = _run(BehaviourAnomaly(warmup_windows=1, own_min_windows=2), early, 5_000)
    assert not [a for a in alerts.values() if a.owners == ["O1"]]
    alerts, _ = _run(BehaviourAnomaly(warmup_windows=1, own_min_windows=1), early, 5_000)
    assert [a for a in alerts.values() if a.owners == ["O1"]]


def test_drift_resets_the_baselines_and_warms_up_again():
    t = _market(seed=5, seconds=3600, wash_at=None, busier_after=1800.0)  # four times the trades from 30 min
    det = BehaviourAnomaly(warmup_windows=5)
    _, states = _run(det, t, 5_000)
    st = states["BTC/USDT"]
    assert st.drifts >= 1
    # the reset came soon after the change and the windows since are counted afresh
    assert 0 < st.windows < 30
    calm, calm_states = _run(det, _market(seed=5, seconds=3600, wash_at=None), 5_000)
    assert calm_states["BTC/USDT"].drifts == 0 and not calm


def _public_tape(seed: int, minutes: int, burst_at: int | None) -> pa.Table:
    """A thin coin on a public venue's tape (no owners): one to three trades a minute bouncing by one tick
    (40 bps of the price), and at ``burst_at`` a pump's minute: 300 trades climbing 20 ticks."""
    rng = np.random.default_rng(seed)
    ts, price = [], []
    for m in range(minutes):
        k = 300 if m == burst_at else int(rng.integers(1, 4))
        ts += sorted((m * 60 + rng.uniform(0, 60, k)).tolist())
        base = 250 + (np.linspace(0, 20, k) if m == burst_at else rng.integers(0, 2, k))
        price += (np.round(base) * 1e-8).tolist()  # a 1-satoshi tick on a 2.5e-6 BTC coin
    n = len(ts)
    return events(ts=ts, kind=["trade"] * n, venue=["BINANCE"] * n, instrument=["APPC/BTC"] * n, price=price,
                  qty=rng.uniform(50, 500, n).round(0).tolist(), trade_id=[f"t{i}" for i in range(n)])


def test_a_public_tape_is_its_own_market_and_a_one_tick_bounce_is_no_surprise():
    # public trades stand in for the shared book; a tick of 40 bps sets the floor of the return's spread
    quiet, states = _run(BehaviourAnomaly(), _public_tape(1, 240, None), 5_000)
    assert not quiet, [a.summary for a in quiet.values()]
    assert states["APPC/BTC"].tick_bps == pytest.approx(1 / 251 * 1e4, rel=0.01)
    pump, _ = _run(BehaviourAnomaly(), _public_tape(1, 240, 200), 5_000)
    assert [a.window_start_ns for a in pump.values()] == [200 * 60 * S]
    assert not pump[next(iter(pump))].owners
