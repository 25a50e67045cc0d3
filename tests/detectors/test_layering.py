"""Layering: thresholds either side, the cross-platform variant, look-alikes, and the contract market."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from detectors.layering import Layering
from detectors.spoofing import Spoofing
from tests.detectors.test_spoofing import INST, alerts_of, background, bid_hit, book, order, quotes, tape, trade


def ladder_rows(t0: float = 40.0, levels: int = 4, qty: float = 1.0, side: str = "buy", tick: float = 0.01,
                exec_after: float = 1.0, cancel_after: float = 5.0, cancelled: int | None = None, owner: str = "LY",
                ladder_platform: str = "OVSAFF", exec_platform: str = "HKVATP", touch: float = 100.0,
                per_level: int = 1) -> list[dict]:
    """``levels`` price levels (``per_level`` orders each) behind the touch, the owner's opposite-side
    execution, then ``cancelled`` of the orders cancelled (all by default), the rest filled."""
    sign = -1 if side == "buy" else 1
    ex_side = "sell" if side == "buy" else "buy"
    ids = [(f"L{k}-{j}", touch + sign * tick * (k + 1)) for k in range(levels) for j in range(per_level)]
    rows = [order(t0 + 0.05 * i, oid, owner, side, "new", px, qty, platform=ladder_platform)
            for i, (oid, px) in enumerate(ids)]
    buyer, seller = (owner, "CP") if ex_side == "buy" else ("CP", owner)
    rows.append(trade(t0 + exec_after, "ex1", buyer, seller, touch, 0.5, aggressor=ex_side,
                      buy_platform=exec_platform if ex_side == "buy" else "OVSAFF",
                      sell_platform=exec_platform if ex_side == "sell" else "HKVATP"))
    n_cancel = len(ids) if cancelled is None else cancelled
    for i, (oid, px) in enumerate(ids):
        t = t0 + cancel_after + 0.05 * i
        if i < n_cancel:
            rows.append(order(t, oid, owner, side, "cancel", px, qty, platform=ladder_platform))
        else:  # hit in full by someone else
            rows += [trade(t, f"f{oid}", *(("X", owner) if side == "sell" else (owner, "X")), px, qty),
                     order(t, oid, owner, side, "fill", px, qty, platform=ladder_platform, leaves=0.0)]
    return rows


def test_cross_platform_ladder_alerts_once_with_every_order():
    [a] = alerts_of(Layering(), tape() + ladder_rows())
    assert a.owners == ["LY"] and a.accounts == ["HK-LY", "OV-LY"] and "cross-platform" in a.summary
    assert a.metrics["levels"] == 4 and a.metrics["cancelled"] == 4 and a.metrics["cancel_share"] == 1.0
    assert a.evidence.column("action").to_pylist().count("new") == 4
    assert a.evidence.column("action").to_pylist().count("cancel") == 4
    assert a.evidence.column("trade_id").to_pylist().count("ex1") == 1


def test_sell_ladder_same_platform():
    [a] = alerts_of(Layering(), tape() + ladder_rows(side="sell", exec_platform="OVSAFF"))
    assert "4 sell orders on 4 levels" in a.summary and "bought 0.5" in a.summary and "cross-platform" not in a.summary


@pytest.mark.parametrize("levels, fires", [(3, True), (2, False)])
def test_min_levels_threshold(levels, fires):
    assert bool(alerts_of(Layering(min_levels=3), tape() + ladder_rows(levels=levels, qty=2.0))) is fires


def test_orders_on_one_level_count_once():
    rows = tape() + ladder_rows(levels=2, per_level=3)
    assert alerts_of(Layering(min_levels=3), rows) == []


@pytest.mark.parametrize("cancelled, fires", [(3, True), (2, False)])  # of 5 orders
def test_cancel_share_threshold(cancelled, fires):
    rows = tape() + ladder_rows(levels=5, cancelled=cancelled)
    assert bool(alerts_of(Layering(min_cancel_share=0.6), rows)) is fires


@pytest.mark.parametrize("qty, fires", [(0.5, True), (0.49, False)])  # 4 levels: 2.0 vs 1.96 typical sizes
def test_total_size_threshold(qty, fires):
    assert bool(alerts_of(Layering(min_total_multiple=2.0), tape() + ladder_rows(qty=qty))) is fires


@pytest.mark.parametrize("tick, fires", [(0.025, True), (0.0251, False)])  # 4th level at 10 bps, or just past
def test_distance_threshold(tick, fires):
    rows = tape() + ladder_rows(tick=tick, levels=4)
    assert bool(alerts_of(Layering(max_distance_bps=10.0, min_levels=4), rows)) is fires


@pytest.mark.parametrize("cancel_after, fires", [(9.999, True), (10.001, False)])  # each order lives that long
def test_cancel_time_threshold(cancel_after, fires):
    det = Layering(max_cancel_ms=10_000, min_cancel_share=1.0)
    assert bool(alerts_of(det, tape() + ladder_rows(cancel_after=cancel_after))) is fires


@pytest.mark.parametrize("sells, fires", [(1, True), (2, False)])  # 4-order ladder: 4 >= 3 x 1, 4 < 3 x 2
def test_side_ratio_threshold(sells, fires):
    others = [order(40.3 + 0.1 * i, f"s{i}", "LY", "sell", "new", 100.5, 0.1) for i in range(sells)]
    assert bool(alerts_of(Layering(min_side_ratio=3.0), tape() + others + ladder_rows())) is fires


@pytest.mark.parametrize("usual, fires", [(0.5, True), (0.51, False)])  # 1.0 per ladder order vs 2x usual
def test_owner_multiple_threshold(usual, fires):
    # a market maker's ladder is its usual quote size: 20 earlier orders set the owner's usual size
    earlier = [order(5 + 0.5 * i, f"u{i}", "LY", "buy", "new", 99.0, usual) for i in range(20)]
    assert bool(alerts_of(Layering(min_owner_multiple=2.0), tape() + earlier + ladder_rows())) is fires


@pytest.mark.parametrize("bought, fires", [(0.1, True), (0.11, False)])  # vs 0.5 sold: 20% at most
def test_two_way_share_threshold(bought, fires):
    rows = tape() + bid_hit("LY", 99.9, bought) + ladder_rows()
    assert bool(alerts_of(Layering(max_two_way_share=0.2), rows)) is fires


def passive_fills(owner: str, side: str, n: int, t: float, price: float, tag: str) -> list[dict]:
    """``n`` small resting orders of ``owner`` on ``side`` placed from ``t``, each filled a second later."""
    buyer = lambda i: (owner, "CP") if side == "buy" else ("CP", owner)  # noqa: E731
    ref = "buy_order" if side == "buy" else "sell_order"
    return [r for i in range(n) for r in (
        order(t + 0.01 * i, f"{tag}{i}", owner, side, "new", price, 0.01),
        trade(t + 1 + 0.01 * i, f"t{tag}{i}", *buyer(i), price, 0.01, **{ref: f"{tag}{i}"},
              aggressor="sell" if side == "buy" else "buy"),
        order(t + 1 + 0.01 * i, f"{tag}{i}", owner, side, "fill", price, 0.01, leaves=0.0))]


# A market maker run over in a slide: before its bid ladder (4 orders) is pulled, its other
# bids are hit, as a market maker's quotes are and a layerer's are not.  Quoting when as many
# bids were hit as the ladder has orders, and more than 20% of its offers lifted meanwhile.
@pytest.mark.parametrize("bids_hit, offers_lifted, fires", [
    (3, 0, True), (4, 0, False),  # as many as the ladder's orders
    (5, 25, True), (6, 25, False),  # more than 0.2 x the other side's
])
def test_quotes_hit_on_the_ladder_side_while_it_rests(bids_hit, offers_lifted, fires):
    rows = tape() + passive_fills("LY", "sell", offers_lifted, 36.0, 100.0, "a") + ladder_rows() + \
        passive_fills("LY", "buy", bids_hit, 42.0, 99.0, "b")
    assert bool(alerts_of(Layering(max_two_way_share=0.2), rows)) is fires


@pytest.mark.parametrize("qty, fires", [(0.125, True), (0.12, False)])  # 4 levels: 0.5 or 0.48 vs 0.5 sold
def test_ladder_outweighs_the_execution(qty, fires):
    # The scenario's dual-platform trader: a few ordinary resting orders and a larger trade on the
    # other side.  Typical size 0.1 here, so the ladder is large enough on that count.
    rows = tape(qty=0.1) + ladder_rows(qty=qty)
    assert bool(alerts_of(Layering(min_exec_ratio=1.0), rows)) is fires


def test_taking_on_the_ladder_side_while_it_rests_is_no_quoting():
    # The scenario's layerer who, its ladder resting, buys 40x what it sold with orders that never
    # rest (IOC): no quote of its was hit, and the ladder is still layering.
    take = [order(42.0, "ioc1", "LY", "buy", "new", 100.05, 20.0, tif="ioc"),
            trade(42.0, "tk", "LY", "CP", 100.05, 20.0, aggressor="buy", buy_order="ioc1"),
            order(42.0, "ioc1", "LY", "buy", "fill", 100.05, 20.0, tif="ioc", leaves=0.0)]
    assert alerts_of(Layering(), tape() + ladder_rows() + take)


def test_deeper_levels_past_the_band_do_not_hide_the_ladder():
    # a ladder running past max_distance_bps: its deep orders press on the book too, they do not
    # count as "the rest" the ladder must outweigh (the other side's resting orders do)
    rows = tape() + ladder_rows(levels=8, tick=0.03)  # levels 3-30 bps behind: 3 within 10 bps
    det = Layering(max_distance_bps=10.0)
    [a] = alerts_of(det, rows)
    assert a.metrics["levels"] == 3
    other_side = [order(40.5, "s", "LY", "sell", "new", 100.5, 4.0)]
    assert alerts_of(det, rows + other_side) == []


def test_quotes_left_behind_by_a_trending_price_are_not_a_ladder():
    # placed near the touch one at a time while the price ran away; at the execution they sit
    # far behind it: a market maker's stale quotes, not a ladder pressing on the book
    rows = [trade(i, f"bg{i}", "MMX", "TRX", 100.0 + (max(0, i - 30) * 0.1), 1.0) for i in range(60)]
    rows += [order(31 + 3 * k, f"L{k}", "LY", "buy", "new", 100.0 + 0.3 * k - 0.05, 1.0) for k in range(4)]
    rows += [trade(50, "ex1", "CP", "LY", 102.0, 0.5, aggressor="buy")]
    rows += [order(52 + 0.1 * k, f"L{k}", "LY", "buy", "cancel", 100.0 + 0.3 * k - 0.05, 1.0) for k in range(4)]
    assert alerts_of(Layering(), rows) == []
    assert alerts_of(Layering(max_distance_bps=200.0), rows)  # the same orders, a band they all sit in


def test_ladder_of_large_orders_is_layering_only():
    rows = tape() + ladder_rows(qty=10.0)
    assert alerts_of(Layering(), rows) and alerts_of(Spoofing(), rows) == []


# -- look-alikes --------------------------------------------------------------------------
def test_market_maker_ladder_on_both_sides_does_not_alert():
    rows = tape()
    for i in range(30):  # four levels a side, refreshed every second, 90% cancelled, trading all the time
        t = 31 + i
        for k in range(4):
            for side, px in (("buy", 99.99 - 0.01 * k), ("sell", 100.01 + 0.01 * k)):
                oid = f"{side[0]}{i}-{k}"
                rows += [order(t, oid, "MM", side, "new", round(px, 2), 1.0),
                         order(t + 3, oid, "MM", side, "cancel", round(px, 2), 1.0)]
        rows.append(trade(t + 0.5, f"m{i}", "CP", "MM", 100.01, 0.1, aggressor="buy"))
    assert alerts_of(Layering(), rows) == []
    assert alerts_of(Layering(), tape() + quotes("MM", 31, 60)) == []


def test_ladder_that_fills_does_not_alert():
    assert alerts_of(Layering(), tape() + ladder_rows(cancelled=0)) == []


def test_cancel_before_the_execution_does_not_alert():
    rows = tape() + ladder_rows(exec_after=30.0, cancel_after=5.0)
    assert alerts_of(Layering(), rows) == []


def test_execution_by_another_owner_does_not_alert():
    rows = [dict(r, sell_owner="OTHER", sell_group="OTHER") if r.get("trade_id") == "ex1" else r
            for r in tape() + ladder_rows()]
    assert alerts_of(Layering(), rows) == []


# -- contract market --------------------------------------------------------------------
def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """Two instruments of background flow with a 3-8 level ladder every 300 s (cross-platform every other)."""
    rng = np.random.default_rng(seed)
    traders = [f"T{i}" for i in range(6)]
    rows = []
    for inst, mid, step in ((INST, 100.0, 4), ("ETH/USDT", 50.0, 10)):  # small: the contract runs it row by row
        rows += background(rng, seconds, inst, mid, traders, ["MM1", "MM2"], step)
    btc = sorted((r["ts"], r["price"]) for r in rows if r["kind"] == "trade" and r["instrument"] == INST)
    for k, t0 in enumerate(range(150, seconds - 60, 300)):
        touch = btc[np.searchsorted([t for t, _ in btc], t0) - 1][1]
        ep = ladder_rows(t0=t0 + 0.5, levels=int(rng.integers(3, 9)), qty=round(float(rng.uniform(0.8, 2)), 3),
                         side="buy" if k % 2 else "sell", touch=touch, exec_after=float(rng.uniform(1, 3)),
                         cancel_after=float(rng.uniform(4, 20)), owner=f"LY{k % 3}",
                         exec_platform="HKVATP" if k % 2 else "OVSAFF")
        rows += [dict(r, order_id=f"k{k}{r['order_id']}" if r.get("order_id") else None,
                      trade_id=f"k{k}{r['trade_id']}" if r.get("trade_id") else None) for r in ep]
    return book(rows)
