"""The extra episode types and their look-alikes, checked against the events they label.

Each type gets a small market of its own (10 minutes, low rate) and the label is re-derived
from the events: the orders, trades and prices a detector would see.  One market with every
type checks what holds across them: no two episodes share an instrument's time, order
lifecycles and the FIX drop copy stay consistent, the run is deterministic.
"""
from __future__ import annotations

import functools
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from replay.scenario import ALL_EPISODE_TYPES, ALL_LOOKALIKE_TYPES, ScenarioConfig, generate, simulate
from replay.scenario.config import DEFAULT_LOOKALIKE_TYPES
from replay.scenario.fix import checksum_ok, write_fix

S = 10**9
NEW_TYPES = [t for t in ALL_EPISODE_TYPES if t not in ("wash_trade", "price_dislocation")]
NEW_LOOKALIKES = [t for t in ALL_LOOKALIKE_TYPES if t not in DEFAULT_LOOKALIKE_TYPES]
LABEL_FIELDS = {"episode_id", "type", "instrument", "venues", "owners", "accounts", "start_ns", "end_ns",
                "params", "trade_ids", "order_ids", "related_types"}
ORDER_COLS = ["ts", "order_id", "account", "side", "action", "price", "qty", "leaves_qty", "trade_id"]


def _rows(t: pa.Table) -> list[dict]:
    """to_pylist with ``ts`` as int ns (datetime has only microseconds)."""
    return t.set_column(t.column_names.index("ts"), "ts", t.column("ts").cast(pa.int64())).to_pylist()


class Market:
    """A simulated scenario with the lookups the checks need."""

    def __init__(self, sc):
        self.sc, self.labels = sc, sc.labels()
        pop = sc.population
        self.owner_of = dict(zip(pop.account_ids, (pop.owner_ids[o] for o in pop.account_owner.tolist())))
        self.platform_of = {a: ("HKVATP", "OVSAFF")[p] for a, p in zip(pop.account_ids, pop.account_platform.tolist())}
        self.group_of = {pop.owner_ids[o]: pop.group_ids[g] for o, g in enumerate(pop.owner_group.tolist()) if g >= 0}
        self.role_of = {pop.owner_ids[o]: r for o, r in enumerate(pop.owner_role.tolist())}
        self.shared = sc.shared
        trades = sc.shared.filter(pc.equal(sc.shared.column("kind"), "trade")).select(
            ["ts", "instrument", "price", "qty", "side", "trade_id", "buy_account", "sell_account"])
        self.trades = {r["trade_id"]: r for r in _rows(trades)}

    def orders_of(self, ids) -> dict[str, list[dict]]:
        """Each order's events, in order (only the orders asked for: the tables are big)."""
        t = self.shared
        t = t.filter(pc.is_in(t.column("order_id"), pa.array(sorted(set(ids)), pa.string())))
        out = defaultdict(list)
        for r in _rows(t.select(ORDER_COLS)):
            out[r["order_id"]].append(r)
        return out

    @functools.cached_property
    def all_orders(self) -> dict[str, list[dict]]:
        t = self.shared
        out = defaultdict(list)
        for r in _rows(t.filter(pc.equal(t.column("kind"), "order")).select(ORDER_COLS)):
            out[r["order_id"]].append(r)
        return out

    def message_times(self, owner: str) -> np.ndarray:
        """Times of every order event of the owner's accounts (all instruments)."""
        t = self.shared
        mine = pa.array([a for a, o in self.owner_of.items() if o == owner])
        t = t.filter(pc.fill_null(pc.is_in(t.column("account"), mine), False))
        return t.column("ts").cast(pa.int64()).to_numpy()

    def episodes(self, type_name: str, look: bool = False) -> list[dict]:
        eps = [e for e in self.labels["lookalikes" if look else "episodes"] if e["type"] == type_name]
        assert eps, f"no {type_name} episode"
        return eps

    def prices(self, venue: str, instrument: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ts, price, qty) of the venue's trades in one instrument."""
        t = self.sc.shared if venue == "SHARED" else self.sc.refx
        t = t.filter(pc.and_(pc.equal(t.column("kind"), "trade"), pc.equal(t.column("instrument"), instrument)))
        return (t.column("ts").cast(pa.int64()).to_numpy(), t.column("price").to_numpy(), t.column("qty").to_numpy())

    def median_price(self, venue, instrument, lo, hi) -> float:
        ts, px, _ = self.prices(venue, instrument)
        sel = (ts >= lo) & (ts < hi)
        assert sel.sum() >= 3, (venue, instrument, lo, hi)
        return float(np.median(px[sel]))

    def premium_bps(self, instrument, lo, hi) -> float:
        """SHARED's median trade price over REFX's in [lo, hi), in bps: a SHARED-only move, without
        the random walk both venues share."""
        shared, refx = (self.median_price(v, instrument, lo, hi) for v in ("SHARED", "REFX"))
        return (shared / refx - 1) * 1e4

    def typical_notional(self, instrument) -> float:
        _, px, q = self.prices("SHARED", instrument)
        return float(np.median(px * q))

    def owner_side(self, trade: dict, accounts) -> str:
        return "buy" if trade["buy_account"] in accounts else "sell"


@functools.lru_cache(maxsize=None)
def market(episode_types: tuple, lookalike_types: tuple | None = None, minutes: float = 10, seed: int = 3) -> Market:
    return Market(simulate(ScenarioConfig(seed=seed, minutes=minutes, events_per_second=150,
                                          episode_types=episode_types, lookalike_types=lookalike_types)))


def only(type_name: str, minutes: float = 10) -> Market:
    return market((type_name,), (), minutes)


def _check_label(e: dict, m: Market) -> None:
    assert set(e) == LABEL_FIELDS
    lab = m.labels
    assert lab["start_ns"] <= e["start_ns"] <= e["end_ns"] <= lab["end_ns"]
    assert {m.owner_of[a] for a in e["accounts"]} <= set(e["owners"])
    for tid in e["trade_ids"]:
        t = m.trades[tid]
        assert e["start_ns"] <= t["ts"] <= e["end_ns"] and t["instrument"] == e["instrument"]
    orders = m.orders_of(e["order_ids"])
    assert len(orders) == len(e["order_ids"]) == len(set(e["order_ids"]))
    for ev in orders.values():
        assert ev[0]["action"] == "new" and m.owner_of[ev[0]["account"]] in e["owners"]


@pytest.mark.parametrize("type_name", NEW_TYPES)
def test_each_type_alone_is_labelled_completely(type_name):
    m = only(type_name)
    eps = m.labels["episodes"]
    assert {e["type"] for e in eps} == {type_name} and m.labels["lookalikes"] == []
    for e in eps:
        _check_label(e, m)
        assert e["owners"] or type_name in ("abnormal_move", "reference_deviation", "settlement_exposure")
        assert e["trade_ids"] or type_name in ("abnormal_move", "excessive_messaging", "reference_deviation",
                                               "settlement_exposure")
        if type_name == "settlement_exposure":  # a surge is tens of millions one way: abnormal volume too
            assert e["related_types"] == (["abnormal_move"] if e["params"]["variant"] == "surge" else [])
    assert ("fixings_ns" in m.labels) == (type_name == "marking_the_close")


def _resting_checks(e: dict, m: Market, n_range: tuple[int, int]) -> list[dict]:
    p = e["params"]
    orders = list(m.orders_of(e["order_ids"]).values())
    assert n_range[0] <= len(orders) == p["n_orders"] <= n_range[1]
    typical = m.typical_notional(e["instrument"])
    execs = [m.trades[t] for t in e["trade_ids"]]
    exec_accounts = {a for a in e["accounts"] if m.platform_of[a] == p["execution_platform"]}
    first_new = min(o[0]["ts"] for o in orders)
    for ev in orders:
        new, last = ev[0], ev[-1]
        assert [r["action"] for r in ev] == ["new", "cancel"]  # cancelled, never (partly) filled
        assert new["side"] == p["side"] and new["price"] * new["qty"] >= 2.5 * typical
        assert 1 * S <= last["ts"] - new["ts"] <= 30 * S and last["ts"] <= e["end_ns"]
        # the execution, on the other side, comes after the large orders and before any cancel
        assert all(first_new < x["ts"] < last["ts"] for x in execs)
    assert all(m.owner_side(x, exec_accounts) == p["execution_side"] != p["side"] for x in execs)
    assert {m.platform_of[o[0]["account"]] for o in orders} == {p["order_platform"]}
    if p["variant"] == "cross_venue":
        assert p["order_platform"] != p["execution_platform"]
    return orders


def test_spoofing_large_orders_opposite_the_execution_cancelled_unfilled():
    m = only("spoofing", minutes=20)
    eps = m.episodes("spoofing")
    assert {e["params"]["variant"] for e in eps} == {"same_platform", "cross_venue"}
    for e in eps:
        _resting_checks(e, m, (1, 3))
        assert all(5 <= x <= 20 for x in e["params"]["size_multiple"])


def test_layering_orders_on_successive_levels():
    m = only("layering", minutes=20)
    for e in m.episodes("layering"):
        orders = _resting_checks(e, m, (3, 8))
        px = [o[0]["price"] for o in sorted(orders, key=lambda o: o[0]["ts"])]
        steps = np.diff(px) * (-1 if e["params"]["side"] == "buy" else 1)
        assert len(set(px)) == len(px) and (steps > 0).all()  # each further from the touch


def test_round_trips_alternate_between_two_unlinked_owners():
    m = only("round_trip")
    for e in m.episodes("round_trip"):
        a_owner, b_owner = e["params"]["seller_first"], next(o for o in e["owners"] if o != e["params"]["seller_first"])
        assert m.group_of.get(a_owner) is None or m.group_of.get(a_owner) != m.group_of.get(b_owner)
        trades = sorted((m.trades[t] for t in e["trade_ids"]), key=lambda t: t["ts"])
        assert 3 <= len(trades) // 2 <= 6 and len(trades) % 2 == 0
        for k, t in enumerate(trades):  # A sells to B, B sells back, and so on
            seller, buyer = (a_owner, b_owner) if k % 2 == 0 else (b_owner, a_owner)
            assert (m.owner_of[t["sell_account"]], m.owner_of[t["buy_account"]]) == (seller, buyer)
        for out, back in zip(trades[::2], trades[1::2]):
            assert 10 * S - 10**6 <= back["ts"] - out["ts"] <= 120 * S
            assert abs(back["price"] / out["price"] - 1) * 1e4 <= 5.0 + 1e-9
            assert abs(back["qty"] / out["qty"] - 1) <= 0.1 + 1e-9


def test_front_running_trades_before_and_unwinds_after_a_large_trade():
    m = only("front_running", minutes=20)
    for e in m.episodes("front_running"):
        p = e["params"]
        trades = [m.trades[t] for t in e["trade_ids"]]
        large = [t for t in trades if p["victim_account"] in (t["buy_account"], t["sell_account"])]
        assert len(large) == 1 and large[0]["ts"] == p["large_trade_ns"]
        big = large[0]
        assert big["price"] * big["qty"] >= 8 * m.typical_notional(e["instrument"])
        victim, owner = p["victim_owner"], e["owners"][0]
        assert victim != owner and m.group_of.get(victim, 1) != m.group_of.get(owner, 2)
        mine = [t for t in trades if t is not big]
        before = [t for t in mine if t["ts"] < big["ts"]]
        after = [t for t in mine if t["ts"] > big["ts"]]
        assert len(before) == p["n_front_trades"] and len(after) == p["n_unwind_trades"]
        side = m.owner_side(big, {p["victim_account"]})
        assert all(m.owner_side(t, e["accounts"]) == side and 1 * S <= big["ts"] - t["ts"] <= 30 * S for t in before)
        assert all(m.owner_side(t, e["accounts"]) != side for t in after)
        assert 10 * S <= max(t["ts"] for t in after) - big["ts"] <= 120 * S
        assert sum(t["qty"] for t in before) == pytest.approx(sum(t["qty"] for t in after))
        if p["variant"] == "cross_platform":
            assert p["front_platform"] != p["victim_platform"]


def test_marking_the_close_moves_the_price_into_a_fixing():
    m = only("marking_the_close", minutes=20)
    fixings = m.labels["fixings_ns"]
    assert fixings == list(range(fixings[0], m.labels["end_ns"] + 1, 300 * S))
    for e in m.episodes("marking_the_close"):
        p = e["params"]
        assert e["end_ns"] == p["fixing_ns"] in fixings and 60 * S <= p["fixing_ns"] - e["start_ns"] <= 300 * S
        trades = [m.trades[t] for t in e["trade_ids"]]
        assert all(e["start_ns"] <= t["ts"] < p["fixing_ns"] for t in trades) and 5 <= len(trades) <= 20
        assert all(m.owner_side(t, e["accounts"]) == t["side"] == p["side"] for t in trades)  # aggressive
        sign = 1 if p["side"] == "buy" else -1
        before = m.premium_bps(e["instrument"], e["start_ns"] - 20 * S, e["start_ns"])
        at = m.premium_bps(e["instrument"], p["fixing_ns"] - 5 * S, p["fixing_ns"])
        assert 30 <= p["move_bps"] <= 150 and sign * (at - before) > 0.75 * p["move_bps"] - 10
        # the owner does not hit the other side meanwhile (its everyday flow that way pauses)
        taking = [t["side"] for t in m.trades.values() if t["instrument"] == e["instrument"]
                  and e["start_ns"] <= t["ts"] <= p["fixing_ns"]
                  and m.owner_of[t["buy_account" if t["side"] == "buy" else "sell_account"]] == e["owners"][0]]
        assert taking.count(p["side"]) >= len(trades) and set(taking) == {p["side"]}


def test_pump_and_dump_rise_volume_and_collapse():
    m = only("pump_and_dump")
    (e,) = m.episodes("pump_and_dump")
    p, inst = e["params"], e["instrument"]
    assert len({m.group_of[o] for o in e["owners"]}) == 1 and len(e["owners"]) >= 2
    start = m.premium_bps(inst, e["start_ns"] - 20 * S, e["start_ns"] + 10 * S)
    peak = m.premium_bps(inst, p["peak_ns"] - 10 * S, p["peak_ns"])
    end = m.premium_bps(inst, e["end_ns"] - 1 * S, e["end_ns"] + 5 * S)  # collapsed back by the end
    assert (1 + peak * 1e-4) / (1 + start * 1e-4) - 1 > 0.8 * p["rise_pct"] / 100 and 5 <= p["rise_pct"] <= 30
    assert abs(end - start) < 50
    ts, _, qty = m.prices("SHARED", inst)
    surge = (ts >= p["surge_start_ns"]) & (ts < p["peak_ns"])
    before = (ts >= e["start_ns"]) & (ts < p["surge_start_ns"])  # accumulation: ordinary volume
    rate = lambda sel, lo, hi: qty[sel].sum() / ((hi - lo) / S)  # noqa: E731
    multiple = rate(surge, p["surge_start_ns"], p["peak_ns"]) / rate(before, e["start_ns"], p["surge_start_ns"])
    assert multiple > 0.5 * p["volume_multiple"]
    for t in (m.trades[x] for x in e["trade_ids"]):
        side = m.owner_side(t, e["accounts"])
        assert side == ("buy" if t["ts"] < p["surge_start_ns"] else "sell")


def test_momentum_ignition_burst_moves_price_then_owner_trades_against_it():
    m = only("momentum_ignition", minutes=20)
    for e in m.episodes("momentum_ignition"):
        p = e["params"]
        trades = sorted((m.trades[t] for t in e["trade_ids"]), key=lambda t: t["ts"])
        burst = [t for t in trades if t["ts"] <= p["peak_ns"]]
        rev = [t for t in trades if t["ts"] >= p["reverse_ns"]]
        assert len(burst) == p["n_orders"] and 5 <= len(burst) <= 20 and len(rev) == p["n_reverse"]
        assert burst[-1]["ts"] - burst[0]["ts"] <= 5 * S
        assert all(t["side"] == p["side"] == m.owner_side(t, e["accounts"]) for t in burst)
        assert all(m.owner_side(t, e["accounts"]) != p["side"] for t in rev)
        assert 1 * S <= rev[0]["ts"] - burst[-1]["ts"] <= 65 * S
        sign = 1 if p["side"] == "buy" else -1
        moved = sign * (burst[-1]["price"] / burst[0]["price"] - 1) * 1e4
        assert moved > 0.6 * p["move_bps"] - 5 and 20 <= p["move_bps"] <= 80


def test_excessive_messaging_rate_multiple():
    m = only("excessive_messaging", minutes=20)
    for e in m.episodes("excessive_messaging"):
        p, owner = e["params"], e["owners"][0]
        ts = m.message_times(owner)
        inside = (ts >= e["start_ns"]) & (ts <= e["end_ns"])
        dur = (e["end_ns"] - e["start_ns"]) / S
        rest = (m.labels["end_ns"] - m.labels["start_ns"]) / S - dur
        rate_in, rate_out = inside.sum() / dur, max((~inside).sum(), 1) / rest
        assert rate_in / rate_out > 10 and 20 <= p["target_multiple"] <= 100
        orders = m.orders_of(e["order_ids"])
        assert p["n_messages"] == sum(len(ev) for ev in orders.values())
        assert len(e["trade_ids"]) <= 2 and len(e["order_ids"]) > 10 * len(e["trade_ids"])
        assert all(ev[-1]["action"] in ("cancel", "fill") for ev in orders.values())


def test_off_market_prints_far_from_both_venues():
    m = only("off_market", minutes=30)
    eps = m.episodes("off_market")
    assert {e["params"]["variant"] for e in eps} == {"fat_finger", "prearranged", "trade_through"}
    for e in eps:
        p, inst = e["params"], e["instrument"]
        (t,) = (m.trades[x] for x in e["trade_ids"])
        shared = m.median_price("SHARED", inst, t["ts"] - 10 * S, t["ts"] + 10 * S)
        refx = m.median_price("REFX", inst, t["ts"] - 10 * S, t["ts"] + 10 * S)
        q = m.sc.refx.filter(pc.and_(pc.equal(m.sc.refx.column("kind"), "quote"),
                                     pc.equal(m.sc.refx.column("instrument"), inst)))
        qts = q.column("ts").cast(pa.int64()).to_numpy()
        near = (qts > t["ts"] - 3 * S) & (qts < t["ts"] + 3 * S)
        mids = (q.column("bid").to_numpy() + q.column("ask").to_numpy())[near] / 2
        assert mids.max() / mids.min() - 1 < 15e-4  # REFX's book is quiet around the print (noise only)
        if p["variant"] == "trade_through":
            last = np.flatnonzero(qts <= t["ts"])[-1]
            edge = q.column("ask")[int(last)].as_py() if t["side"] == "buy" else q.column("bid")[int(last)].as_py()
            through = (t["price"] / edge - 1) * 1e4 * (1 if t["side"] == "buy" else -1)
            assert 25 <= through <= 110 and 30 <= p["target_bps"] <= 100
        else:
            assert all(abs(t["price"] / ref - 1) * 1e4 > 90 for ref in (shared, refx))
            assert 100 <= p["distance_bps"] <= 505 and len(e["owners"]) == (2 if p["variant"] == "prearranged" else 1)


def test_abnormal_move_on_both_venues_with_volume():
    m = only("abnormal_move")
    (e,) = m.episodes("abnormal_move")
    p, inst = e["params"], e["instrument"]
    assert e["owners"] == [] and e["venues"] == ["SHARED", "REFX"] and 1 <= abs(p["move_pct"]) <= 4
    assert e["start_ns"] - m.labels["start_ns"] >= 300 * S  # after a baseline (half of this 10-minute run)
    for venue in ("SHARED", "REFX"):
        before = m.median_price(venue, inst, e["start_ns"] - 30 * S, e["start_ns"])
        after = m.median_price(venue, inst, e["start_ns"] + int((p["ramp_s"] + 1) * S), e["end_ns"])
        assert (after / before - 1) * 100 == pytest.approx(p["move_pct"], abs=0.5)  # plus the random walk
        ts = m.prices(venue, inst)[0]
        inside = (ts >= e["start_ns"]) & (ts <= e["end_ns"])
        dur = (e["end_ns"] - e["start_ns"]) / S
        rate_out = (~inside).sum() / ((m.labels["end_ns"] - m.labels["start_ns"]) / S - dur)
        assert inside.sum() / dur / rate_out > 0.5 * p["volume_multiple"]


# ---- look-alikes ------------------------------------------------------------------------------

def lookalikes() -> Market:
    return market((), tuple(NEW_LOOKALIKES), 30)


def test_lookalikes_are_labelled_and_say_what_they_mimic():
    m = lookalikes()
    assert m.labels["episodes"] == []
    assert {e["type"] for e in m.labels["lookalikes"]} == set(NEW_LOOKALIKES)
    for e in m.labels["lookalikes"]:
        _check_label(e, m)
        assert e["params"]["mimics"] and e["related_types"] == []


def test_market_maker_cancels_over_90_percent():
    m = lookalikes()
    for e in m.episodes("market_maker_quoting", look=True):
        assert m.role_of[e["owners"][0]] == 0  # a market maker
        acts = [[r["action"] for r in ev] for ev in m.orders_of(e["order_ids"]).values()]
        cancelled = sum(a[-1] == "cancel" and "fill" not in a for a in acts)
        assert cancelled / len(acts) > 0.9 and any("fill" in a for a in acts)
        assert e["params"]["order_rate_per_s"] >= 2


def test_news_jump_moves_both_venues_by_the_same_amount():
    m = lookalikes()
    for e in m.episodes("news_jump", look=True):
        p, inst = e["params"], e["instrument"]
        moves = []
        for venue in ("SHARED", "REFX"):
            before = m.median_price(venue, inst, e["start_ns"] - 20 * S, e["start_ns"])
            after = m.median_price(venue, inst, e["start_ns"] + int((p["ramp_s"] + 2) * S), e["end_ns"])
            moves.append((after / before - 1) * 1e4)
        assert abs(moves[0] - moves[1]) < 10 and 50 <= abs(p["jump_pct"]) * 100 <= 80
        assert moves[0] == pytest.approx(p["jump_pct"] * 100, abs=25)  # plus the shared random walk


def test_honest_large_order_is_filled_not_cancelled():
    m = lookalikes()
    for e in m.episodes("honest_large_order", look=True):
        (oid,) = e["order_ids"]
        acts = m.orders_of([oid])[oid]
        assert [r["action"] for r in acts] == ["new", "fill"] and acts[-1]["leaves_qty"] == 0
        (t,) = (m.trades[x] for x in e["trade_ids"])
        assert t["price"] * t["qty"] >= 8 * m.typical_notional(e["instrument"])


def test_arbitrage_follows_refx_and_dual_platform_trader_uses_both_platforms():
    m = lookalikes()
    for e in m.episodes("cross_venue_arbitrage", look=True):
        p = e["params"]
        assert m.role_of[e["owners"][0]] == 1  # an arbitrageur
        trades = [m.trades[x] for x in e["trade_ids"]]
        assert all(m.owner_side(t, e["accounts"]) == p["side"] for t in trades)
        assert all(p["refx_move_ns"] < t["ts"] for t in trades)  # after REFX moved
    for e in m.episodes("dual_platform_trader", look=True):
        assert {m.platform_of[a] for a in e["accounts"]} == {"HKVATP", "OVSAFF"}
        traded = {m.platform_of[a] for x in e["trade_ids"]
                  for a in (m.trades[x]["buy_account"], m.trades[x]["sell_account"]) if a in e["accounts"]}
        assert traded == {"HKVATP", "OVSAFF"}
        typical = m.typical_notional(e["instrument"])
        cancelled = [ev for ev in m.orders_of(e["order_ids"]).values() if ev[-1]["action"] == "cancel"]
        assert len(cancelled) == e["params"]["n_cancelled"]
        for ev in cancelled:  # ordinary sizes, resting 5-60 s (or to the window's end)
            assert ev[0]["price"] * ev[0]["qty"] < 4 * typical and ev[-1]["ts"] - ev[0]["ts"] <= 60 * S


# ---- every type together ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    s = generate(out, seed=5, minutes=30, events_per_second=150, formats=("canonical", "fix"), episode_types="all")
    return s, market(tuple(ALL_EPISODE_TYPES), None, 30, 5)


def test_all_types_present_and_never_overlapping(everything):
    s, m = everything
    lab = m.labels
    assert {e["type"] for e in lab["episodes"]} == set(ALL_EPISODE_TYPES)
    assert {e["type"] for e in lab["lookalikes"]} == set(ALL_LOOKALIKE_TYPES)
    assert lab["episode_types"] == list(ALL_EPISODE_TYPES) and "fixings_ns" in lab
    by_inst = defaultdict(list)
    for e in lab["episodes"] + lab["lookalikes"]:
        assert set(e) == LABEL_FIELDS  # one layout for every type, today's included
        by_inst[e["instrument"]].append((e["start_ns"], e["end_ns"], e["episode_id"]))
    for spans in by_inst.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), spans
    assert s.episodes == tuple(lab["episodes"])
    (ab,) = (e for e in lab["episodes"] if e["type"] == "abnormal_move")
    assert ab["start_ns"] - lab["start_ns"] >= 1200 * S  # after the detector's baseline has warmed up


def test_all_types_only_wash_trades_self_match_and_no_lasting_gap(everything):
    _, m = everything
    lab = m.labels
    wash = {t for e in lab["episodes"] if e["type"] == "wash_trade" for t in e["trade_ids"]}
    owners = ((t["trade_id"], m.owner_of[t["buy_account"]], m.owner_of[t["sell_account"]]) for t in m.trades.values())
    assert {i for i, a, b in owners if a == b or (a in m.group_of and m.group_of[a] == m.group_of.get(b))} == wash
    # Between episodes the venues agree again: no episode leaves SHARED away from REFX for good.
    busy = defaultdict(list)
    for e in lab["episodes"] + lab["lookalikes"]:
        busy[e["instrument"]].append((e["start_ns"] - 5 * S, e["end_ns"] + 150 * S))
    for inst, spans in busy.items():
        for lo in range(lab["start_ns"], lab["end_ns"] - 30 * S, 30 * S):
            if not any(a < lo + 30 * S and lo < b for a, b in spans):
                assert abs(m.premium_bps(inst, lo, lo + 30 * S)) < 15, (inst, (lo - lab["start_ns"]) // S)


def test_all_types_order_lifecycles_and_fills(everything):
    _, m = everything
    fills = defaultdict(int)
    for oid, ev in m.all_orders.items():
        acts = [r["action"] for r in ev]
        for r in ev:
            fills[r["trade_id"]] += r["action"] == "fill"
        if acts == ["reject"]:
            continue
        assert acts[0] == "new" and "new" not in acts[1:]
        leaves = [r["leaves_qty"] for r in ev]
        closed = [i for i, r in enumerate(ev) if r["action"] == "cancel" or r["action"] == "fill" and r["leaves_qty"] == 0]
        assert not closed or closed[0] == len(ev) - 1, (oid, acts)  # nothing after a cancel or a full fill
        assert all(b <= a for a, b, r in zip(leaves, leaves[1:], ev[1:]) if r["action"] == "fill")
    fills.pop(None, None)
    assert set(fills) == set(m.trades) and set(fills.values()) == {2}


def test_all_types_fix_drop_copy_consistent(everything, tmp_path):
    s, m = everything
    orders = m.sc.shared.filter(pc.equal(m.sc.shared.column("kind"), "order"))
    for platform in ("HKVATP", "OVSAFF"):
        mine = orders.filter(pc.equal(orders.column("platform"), platform))
        lines = s.files[f"fix/{platform}.fix"].read_bytes().split(b"\n")[:-1]
        assert len(lines) == mine.num_rows == s.counts["fix"][platform]
        ids = mine.column("order_id").to_pylist()
        for i in range(0, len(lines), 97):
            msg = lines[i].decode()
            assert checksum_ok(msg) and f"\x0137={ids[i]}\x01" in msg
    # and the same bytes as writing the in-memory scenario again
    p = tmp_path / "again.fix"
    write_fix(p, m.sc.shared, m.sc.shared_aux, "HKVATP")
    assert p.read_bytes() == s.files["fix/HKVATP.fix"].read_bytes()


def test_extra_types_are_deterministic_and_leave_the_default_alone():
    a = simulate(ScenarioConfig(seed=9, minutes=6, events_per_second=100, episode_types=("spoofing", "pump_and_dump")))
    b = simulate(ScenarioConfig(seed=9, minutes=6, events_per_second=100, episode_types=("spoofing", "pump_and_dump")))
    assert a.shared.equals(b.shared) and a.refx.equals(b.refx) and a.labels() == b.labels()
    d = simulate(ScenarioConfig(seed=9, minutes=6, events_per_second=100)).labels()
    assert {e["type"] for e in d["episodes"]} <= {"wash_trade", "price_dislocation"}
    assert not {"episode_types", "fixings_ns"} & set(d)
    assert all("order_ids" not in e for e in d["episodes"] + d["lookalikes"])


def test_type_selection_and_cli(tmp_path, capsys):
    from replay.scenario.__main__ import main

    assert ScenarioConfig(episode_types="all").episode_types == ALL_EPISODE_TYPES
    assert ScenarioConfig(episode_types="spoofing,layering").episode_types == ("spoofing", "layering")
    assert "repeat_counterparties" in ScenarioConfig(episode_types=("round_trip",)).resolved_lookalike_types
    with pytest.raises(ValueError, match="unknown episode type"):
        ScenarioConfig(episode_types=("spoofin",))
    with pytest.raises(ValueError, match="unknown look-alike type"):
        ScenarioConfig(lookalike_types=("nope",))
    assert main([str(tmp_path / "cli"), "--minutes", "3", "--eps", "60", "--formats", "canonical",
                 "--episodes", "off_market", "--lookalikes", "none"]) == 0
    assert "episodes: 1, look-alikes: 0" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_abnormal_move_waits_for_a_20_minute_baseline_when_the_run_has_room(seed):
    """abnormal_move needs 20 one-minute buckets of history: a 30-minute run places its episodes after them."""
    m = market(("abnormal_move",), (), 30, seed)
    eps = m.episodes("abnormal_move")
    assert eps and all(e["start_ns"] - m.labels["start_ns"] >= 1200 * S for e in eps)
