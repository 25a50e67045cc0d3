"""Spoofing: thresholds either side, the cross-platform variant, look-alikes, and the contract market.

Rows are built as dicts and turned into one conformed table (``book``); ``tape`` lays down
background trades that set the venue's typical traded size (1.0) and the touch (100.0).
The order-book helpers are shared with ``test_layering``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from detectors.spoofing import Spoofing
from tests.conftest import events

INST = "BTC/USDT"


# -- builders (shared with test_layering) --------------------------------------------------
def tape(n: int = 30, t0: float = 0.0, price: float = 100.0, qty: float = 1.0, inst: str = INST) -> list[dict]:
    """Background trades, one a second, between two owners who never rest orders here."""
    return [trade(t0 + i, f"bg{inst[:3]}{t0 + i:g}", "MMX", "TRX", price, qty, inst=inst) for i in range(n)]


def order(ts: float, oid: str, owner: str, side: str, action: str, price: float, qty: float, *,
          account: str | None = None, platform: str = "OVSAFF", leaves: float | None = None, tif: str = "gtc",
          inst: str = INST, group: str | None = None) -> dict:
    if leaves is None:
        leaves = 0.0 if action in ("cancel", "expire", "reject") else qty
    return dict(ts=ts, kind="order", venue="SHARED", instrument=inst, order_id=oid, side=side, action=action,
                price=price, qty=qty, leaves_qty=leaves, order_type="limit", time_in_force=tif,
                account=account or f"{platform[:2]}-{owner}", platform=platform, owner=owner, group_id=group or owner)


def trade(ts: float, tid: str, buyer: str, seller: str, price: float = 100.0, qty: float = 1.0, *,
          aggressor: str | None = None, buy_platform: str = "HKVATP", sell_platform: str = "OVSAFF",
          buy_order: str | None = None, sell_order: str | None = None, inst: str = INST) -> dict:
    return dict(ts=ts, kind="trade", venue="SHARED", instrument=inst, trade_id=tid, price=price, qty=qty,
                side=aggressor, buy_owner=buyer, sell_owner=seller, buy_group=buyer, sell_group=seller,
                buy_account=f"{buy_platform[:2]}-{buyer}", sell_account=f"{sell_platform[:2]}-{seller}",
                buy_platform=buy_platform, sell_platform=sell_platform, buy_order_id=buy_order,
                sell_order_id=sell_order)


def bid_hit(owner: str, price: float, qty: float, t: float = 38.0) -> list[dict]:
    """The owner's small bid, rested at ``t`` and hit in full a second later: it bought ``qty``."""
    return [order(t, "b", owner, "buy", "new", price, qty),
            trade(t + 1, "tw", owner, "CP", price, qty, aggressor="sell", buy_order="b"),
            order(t + 1, "b", owner, "buy", "fill", price, qty, leaves=0.0)]


def book(rows: list[dict]) -> pa.Table:
    """One event table from row dicts, in time order (stable: equal times keep list order)."""
    rows = sorted(rows, key=lambda r: r["ts"])
    names = sorted({k for r in rows for k in r})
    return events(**{k: [r.get(k) for r in rows] for k in names})


def alerts_of(det, rows: list[dict]):
    """Final revision of every alert, feeding the rows in one batch."""
    out = {}
    for a in det.update(det.new_state(), det.select(book(rows))):
        out[a.alert_id] = a
    return list(out.values())


def spoof_rows(t0: float = 40.0, qty: float = 10.0, price: float = 99.99, side: str = "buy", exec_after: float = 1.0,
               cancel_after: float = 3.0, owner: str = "SP", spoof_platform: str = "OVSAFF",
               exec_platform: str = "HKVATP", filled: float = 0.0, n: int = 1, step: float = 0.0,
               touch: float = 100.0) -> list[dict]:
    """``n`` large orders, the owner's opposite-side execution, then the cancels."""
    ex_side = "sell" if side == "buy" else "buy"
    rows = []
    for k in range(n):
        rows.append(order(t0 + 0.01 * k, f"S{k}", owner, side, "new", price - (step if side == "buy" else -step) * k,
                          qty, platform=spoof_platform))
    buyer, seller = (owner, "CP") if ex_side == "buy" else ("CP", owner)
    rows.append(trade(t0 + exec_after, "ex1", buyer, seller, touch, 1.0, aggressor=ex_side,
                      buy_platform=exec_platform if ex_side == "buy" else "OVSAFF",
                      sell_platform=exec_platform if ex_side == "sell" else "HKVATP"))
    if filled:
        rows.append(order(t0 + exec_after + 0.5, "S0", owner, side, "fill", price, filled, platform=spoof_platform,
                          leaves=qty - filled))
    for k in range(n):
        rows.append(order(t0 + cancel_after + 0.01 * k, f"S{k}", owner, side, "cancel",
                          price - (step if side == "buy" else -step) * k, qty, platform=spoof_platform))
    return rows


# -- the pattern and its thresholds ---------------------------------------------------------
def test_cross_platform_spoof_alerts_once_with_orders_execution_and_cancel():
    [a] = alerts_of(Spoofing(), tape() + spoof_rows())
    assert a.owners == ["SP"] and a.instrument == INST and a.accounts == ["HK-SP", "OV-SP"]
    assert "cross-platform" in a.summary and "OVSAFF" in a.summary and "HKVATP" in a.summary
    assert a.evidence.column("action").to_pylist() == ["new", None, "cancel"]
    assert a.evidence.column("trade_id").to_pylist() == [None, "ex1", None]
    assert a.metrics["cross_platform"] and a.metrics["orders_cancelled"] == 1
    assert a.params == Spoofing().params() and a.window_start_ns == 40 * 10**9


def test_same_platform_spoof_alerts_without_cross_platform_flag():
    [a] = alerts_of(Spoofing(), tape() + spoof_rows(exec_platform="OVSAFF"))
    assert "cross-platform" not in a.summary and not a.metrics["cross_platform"]


def test_sell_side_spoof_and_buy_execution():
    [a] = alerts_of(Spoofing(), tape() + spoof_rows(side="sell", price=100.01))
    assert "1 sell order(s)" in a.summary and "bought 1" in a.summary


def test_two_orders_one_episode_one_alert_revised():
    [a] = alerts_of(Spoofing(), tape() + spoof_rows(n=2))
    assert a.metrics["orders_cancelled"] == 2 and a.evidence.num_rows == 5


@pytest.mark.parametrize("qty, fires", [(4.01, True), (3.99, False)])
def test_size_multiple_threshold(qty, fires):
    assert bool(alerts_of(Spoofing(size_multiple=4.0), tape() + spoof_rows(qty=qty))) is fires


@pytest.mark.parametrize("price, fires", [(99.9, True), (99.89, False)])  # 10 bps below the touch at 100
def test_distance_from_the_touch_threshold(price, fires):
    assert bool(alerts_of(Spoofing(max_distance_bps=10.0), tape() + spoof_rows(price=price))) is fires


@pytest.mark.parametrize("cancel_after, fires", [(10.0, True), (10.001, False)])
def test_cancel_time_threshold(cancel_after, fires):
    det = Spoofing(max_cancel_ms=10_000)
    assert bool(alerts_of(det, tape() + spoof_rows(cancel_after=cancel_after))) is fires


@pytest.mark.parametrize("filled, fires", [(2.0, True), (2.1, False)])  # of 10: 20% fills at most
def test_fill_share_threshold(filled, fires):
    assert bool(alerts_of(Spoofing(max_fill_share=0.2), tape() + spoof_rows(filled=filled))) is fires


@pytest.mark.parametrize("buys, fires", [(2, True), (1, False)])  # with one sell: 3 vs 1 placed, or 2 vs 1
def test_side_ratio_threshold(buys, fires):
    others = [order(40.2 + 0.1 * i, f"b{i}", "SP", "buy", "new", 99.5, 0.1) for i in range(buys)]
    others.append(order(40.5, "s0", "SP", "sell", "new", 100.5, 0.1))
    assert bool(alerts_of(Spoofing(min_side_ratio=3.0), tape() + others + spoof_rows())) is fires


def test_needs_a_typical_size_first():
    assert alerts_of(Spoofing(), tape(n=10) + spoof_rows(t0=20.0)) == []


def test_large_for_the_book_but_usual_for_the_owner_does_not_alert():
    usual = [order(5 + i, f"U{i}", "SP", "sell", "new", 101.0, 10.0) for i in range(20)]
    assert alerts_of(Spoofing(), tape() + usual + spoof_rows()) == []


def test_three_levels_are_layering_not_spoofing():
    rows = tape() + spoof_rows(n=3, step=0.01)
    assert alerts_of(Spoofing(), rows) == []
    assert alerts_of(Spoofing(max_levels=3), rows)


# -- look-alikes --------------------------------------------------------------------------
def quotes(owner: str, t0: float, n: int, life: float = 5.0, big_every: int = 0, big: float = 8.0) -> list[dict]:
    """A market maker's two-sided quotes, one pair a second, each living ``life`` s; one in ten asks
    is lifted, every other quote is cancelled; every ``big_every``-th bid is ``big``."""
    rows = []
    for i in range(n):
        t, qb = t0 + i, (big if big_every and i % big_every == 0 else 1.0)
        rows += [order(t, f"B{i}", owner, "buy", "new", 99.99, qb),
                 order(t, f"A{i}", owner, "sell", "new", 100.01, 1.0),
                 order(t + life, f"B{i}", owner, "buy", "cancel", 99.99, qb)]
        if i % 10 == 5:
            rows += [trade(t + 0.5, f"m{i}", "CP", owner, 100.01, 1.0, aggressor="buy", sell_order=f"A{i}"),
                     order(t + 0.5, f"A{i}", owner, "sell", "fill", 100.01, 1.0, leaves=0.0)]
        else:
            rows.append(order(t + life, f"A{i}", owner, "sell", "cancel", 100.01, 1.0))
    return rows


def test_market_maker_cancelling_90_percent_of_small_quotes_at_the_touch_does_not_alert():
    assert alerts_of(Spoofing(), tape() + quotes("MM", 31, 60)) == []


def test_market_maker_odd_large_quote_among_its_quotes_does_not_alert():
    assert alerts_of(Spoofing(), tape() + quotes("MM", 31, 60, big_every=5)) == []


def pair(t: float = 40.0, owner: str = "SP", big: float = 10.0) -> list[dict]:
    """A small ask rested with a large bid; the ask is lifted, then the bid is pulled."""
    return [order(t, "B", owner, "buy", "new", 99.99, big), order(t, "A", owner, "sell", "new", 100.01, 1.0),
            trade(t + 0.5, "m", "CP", owner, 100.01, 1.0, aggressor="buy", sell_order="A"),
            order(t + 0.5, "A", owner, "sell", "fill", 100.01, 1.0, leaves=0.0),
            order(t + 1, "B", owner, "buy", "cancel", 99.99, big)]


def test_small_order_rested_with_the_spoof_and_filled_is_the_execution():
    # the classic passive spoof: the large bid draws a buyer onto the owner's own small ask
    [a] = alerts_of(Spoofing(), tape() + pair())
    assert a.metrics["orders_cancelled"] == 1 and a.evidence.column("trade_id").to_pylist() == [None, "m", None]


def test_same_pair_from_a_market_maker_quoting_both_sides_does_not_alert():
    # ... but among a market maker's continuous two-sided quotes it is one more quote
    assert alerts_of(Spoofing(), tape() + quotes("MM", 31, 60) + pair(t=40.2, owner="MM")) == []


@pytest.mark.parametrize("bought, fires", [(0.2, True), (0.21, False)])  # vs 1.0 sold: 20% at most
def test_two_way_share_threshold(bought, fires):
    # the spoofer's small bid was also hit (the spoof's side) while it sold: a market maker's two-way trading
    rows = tape() + bid_hit("SP", 99.99, bought) + spoof_rows()
    assert bool(alerts_of(Spoofing(max_two_way_share=0.2), rows)) is fires


@pytest.mark.parametrize("took, at, fires", [(True, 38.0, True), (False, 38.0, False), (True, 40.5, False)])
def test_liquidity_taken_on_the_spoof_side_before_the_orders_is_no_two_way_trading(took, at, fires):
    # 0.5 bought against the execution's 1.0 sold (50%, beyond max_two_way_share): taken at the ask before the
    # large bid goes in (40 s), it is a trader's own flow; its own bid hit, or buying while the bid rests, is two-way
    bought = ([order(at, "tk", "SP", "buy", "new", 100.0, 0.5),
               trade(at, "tw", "SP", "CP", 100.0, 0.5, aggressor="buy", buy_order="tk"),
               order(at, "tk", "SP", "buy", "fill", 100.0, 0.5, leaves=0.0)] if took
              else bid_hit("SP", 99.99, 0.5, t=at - 1))
    assert bool(alerts_of(Spoofing(), tape() + bought + spoof_rows())) is fires


def test_honest_large_order_that_trades_does_not_alert():
    rows = tape() + spoof_rows(filled=10.0)[:-1]  # filled in full: no cancel
    assert alerts_of(Spoofing(), rows) == []


def test_cancel_then_trade_on_the_other_side_later_does_not_alert():
    rows = tape() + [order(40, "S0", "SP", "buy", "new", 99.99, 10.0),
                     order(42, "S0", "SP", "buy", "cancel", 99.99, 10.0),
                     trade(100, "ex1", "CP", "SP", 100.0, 1.0, aggressor="sell")]
    assert alerts_of(Spoofing(), rows) == []


def test_execution_by_another_owner_does_not_alert():
    rows = [r if r["kind"] != "trade" or r["trade_id"] != "ex1" else dict(r, sell_owner="OTHER", sell_group="OTHER")
            for r in tape() + spoof_rows()]
    assert alerts_of(Spoofing(), rows) == []


@pytest.mark.parametrize("start, fires", [(20.0, True), (32.0, False)])
def test_owner_quoting_both_sides_does_not_alert(start, fires):
    # small quotes on both sides every 0.2 s for 10 s; the large bid goes in at 40 s, the sale at 41 s:
    # one-sidedness looks back 10 s at least, so quotes up to 30 s are out of sight, up to 42 s not
    both = [order(start + 0.2 * i, f"Q{i}", "SP", "sell" if i % 2 else "buy", "new", 100.02 if i % 2 else 99.98, 0.1)
            for i in range(50)]
    assert bool(alerts_of(Spoofing(), tape() + both + spoof_rows())) is fires


def test_state_expires_and_is_idle_past_the_horizon():
    det = Spoofing()
    st = det.new_state()
    det.update(st, det.select(book(tape() + spoof_rows()[:1])))
    assert not det.is_idle(st, 45 * 10**9)
    assert det.is_idle(st, 45 * 10**9 + det.horizon_ns())


# -- contract market --------------------------------------------------------------------
def background(rng, seconds: int, inst: str, mid: float, owners: list[str], mms: list[str],
               step: int = 1) -> list[dict]:
    """A thin shared book: every ``step`` s a market maker quotes both sides, a trader takes one
    side (in part), the rest is cancelled."""
    rows = []
    px = mid
    for t in range(1, seconds, step):
        px *= float(np.exp(rng.normal(0, 2e-4 * step ** 0.5)))
        mm = mms[t % len(mms)]
        bid, ask, tag = round(px * 0.9999, 2), round(px * 1.0001, 2), f"{inst[:3]}{t}"
        qb, qa = (round(float(rng.lognormal(0.3, 0.5)), 4) for _ in range(2))
        rows += [order(t, f"b{tag}", mm, "buy", "new", bid, qb, inst=inst),
                 order(t, f"a{tag}", mm, "sell", "new", ask, qa, inst=inst)]
        taker = owners[int(rng.integers(len(owners)))]
        q = round(float(rng.lognormal(0, 0.6)), 4)
        if rng.random() < 0.5:  # the taker lifts the ask (up to its size); the bid is cancelled
            q = min(q, qa)
            rows += [trade(t + 0.3, f"t{tag}", taker, mm, ask, q, aggressor="buy", sell_order=f"a{tag}", inst=inst),
                     order(t + 0.3, f"a{tag}", mm, "sell", "fill", ask, q, leaves=round(qa - q, 4), inst=inst),
                     order(t + 0.8, f"b{tag}", mm, "buy", "cancel", bid, qb, inst=inst)]
            if q < qa:
                rows.append(order(t + 0.8, f"a{tag}", mm, "sell", "cancel", ask, qa, inst=inst))
        else:  # ... or hits the bid
            q = min(q, qb)
            rows += [trade(t + 0.3, f"t{tag}", mm, taker, bid, q, aggressor="sell", buy_order=f"b{tag}", inst=inst),
                     order(t + 0.3, f"b{tag}", mm, "buy", "fill", bid, q, leaves=round(qb - q, 4), inst=inst),
                     order(t + 0.8, f"a{tag}", mm, "sell", "cancel", ask, qa, inst=inst)]
            if q < qb:
                rows.append(order(t + 0.8, f"b{tag}", mm, "buy", "cancel", bid, qb, inst=inst))
    return rows


def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """Two instruments of background flow with a spoofing episode every 300 s (cross-platform every other)."""
    rng = np.random.default_rng(seed)
    traders = [f"T{i}" for i in range(6)]
    rows = []
    for inst, mid, step in ((INST, 100.0, 4), ("ETH/USDT", 50.0, 10)):  # small: the contract runs it row by row
        rows += background(rng, seconds, inst, mid, traders, ["MM1", "MM2"], step)
    btc = sorted((r["ts"], r["price"]) for r in rows if r["kind"] == "trade" and r["instrument"] == INST)
    for k, t0 in enumerate(range(120, seconds - 60, 300)):
        touch = btc[np.searchsorted([t for t, _ in btc], t0) - 1][1]
        side = "buy" if k % 2 else "sell"
        ep = spoof_rows(t0=t0 + 0.5, qty=round(float(rng.uniform(8, 15)), 3), side=side, touch=touch,
                        price=round(touch - 0.02 if side == "buy" else touch + 0.02, 2),
                        exec_after=float(rng.uniform(0.5, 3)), cancel_after=float(rng.uniform(4, 20)),
                        owner=f"SP{k % 3}", exec_platform="HKVATP" if k % 2 else "OVSAFF")
        rows += [dict(r, order_id=f"k{k}{r['order_id']}" if r.get("order_id") else None,
                      trade_id=f"k{k}{r['trade_id']}" if r.get("trade_id") else None) for r in ep]
    return book(rows)
