"""Round trips: thresholds either side, who rested, look-alikes, and the contract market."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from detectors.round_trip import RoundTrip
from tests.detectors.test_spoofing import INST, alerts_of, book, trade


def legs(n: int = 4, t0: float = 10.0, gap: float = 20.0, qty=1.0, price=100.0, a: str = "A", b: str = "B",
         turns: bool = True, tag: str = "r") -> list[dict]:
    """``n`` trades alternating A->B, B->A; ``qty``/``price`` one value or one per trade.  With
    ``turns`` the owners rest in turn (the seller rests: the buyer aggresses), else A always rests."""
    qty = qty if isinstance(qty, list) else [qty] * n
    price = price if isinstance(price, list) else [price] * n
    rows = []
    for i in range(n):
        seller, buyer = (a, b) if i % 2 == 0 else (b, a)
        maker = seller if turns else a
        rows.append(trade(t0 + gap * i, f"{tag}{i}", buyer, seller, price[i], qty[i],
                          aggressor="buy" if maker == seller else "sell"))
    return rows


def test_two_round_trips_taking_turns_alert_with_every_trade():
    [a] = alerts_of(RoundTrip(), legs(4))
    assert a.owners == ["A", "B"] and a.metrics["round_trips"] == 2 and a.metrics["both_rested"]
    assert a.evidence.column("trade_id").to_pylist() == ["r0", "r1", "r2", "r3"]
    assert a.window_start_ns == 10 * 10**9 and a.window_end_ns == 70 * 10**9
    assert "A sold 2 times, B sold 2 times" in a.summary and a.params == RoundTrip().params()


def test_alert_is_revised_as_the_chain_grows():
    alerts = RoundTrip().update(RoundTrip().new_state(), RoundTrip().select(book(legs(6))))
    assert len({a.alert_id for a in alerts}) == 1 and alerts[-1].metrics["round_trips"] == 3


@pytest.mark.parametrize("n, fires", [(4, True), (3, False)])
def test_min_round_trips_threshold(n, fires):
    assert bool(alerts_of(RoundTrip(min_round_trips=2), legs(n))) is fires


@pytest.mark.parametrize("n, fires", [(6, True), (5, False)])
def test_one_owner_resting_throughout_needs_more_round_trips(n, fires):
    assert bool(alerts_of(RoundTrip(min_round_trips_one_maker=3), legs(n, turns=False))) is fires


@pytest.mark.parametrize("back_qty, fires", [(1.8, True), (1.79, False)])  # 10% / 10.5% below the way out
def test_size_threshold_per_round_trip(back_qty, fires):
    det = RoundTrip(max_size_diff_ratio=0.1)
    assert bool(alerts_of(det, legs(4, qty=[1.0, 0.95, 2.0, back_qty]))) is fires


def test_each_round_trip_may_have_a_size_of_its_own():
    # colluders vary their sizes from one round trip to the next; each comes back at its own size
    [a] = alerts_of(RoundTrip(), legs(6, qty=[1.0, 1.02, 2.5, 2.45, 0.4, 0.41]))
    assert a.metrics["round_trips"] == 3 and "0.4-2.5" in a.summary


def test_a_closing_leg_at_another_size_ends_the_run():
    # the second round trip comes back at half its size: no round trip, and a new run starts from there
    assert alerts_of(RoundTrip(), legs(6, qty=[1.0, 1.0, 2.0, 1.0, 1.0, 1.0])) == []  # one round trip either side
    [a] = alerts_of(RoundTrip(), legs(7, qty=[1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]))
    assert a.metrics["round_trips"] == 2 and a.evidence.column("trade_id").to_pylist() == ["r3", "r4", "r5", "r6"]


@pytest.mark.parametrize("last_price, fires", [(100.1, True), (100.1001, False)])  # 10 bps above the previous
def test_price_threshold(last_price, fires):
    det = RoundTrip(max_price_diff_bps=10.0)
    assert bool(alerts_of(det, legs(4, price=[100.0, 100.0, 100.0, last_price]))) is fires


@pytest.mark.parametrize("gap, fires", [(60.0, True), (60.001, False)])
def test_window_threshold(gap, fires):
    assert bool(alerts_of(RoundTrip(window_ms=60_000), legs(4, gap=gap))) is fires


def test_other_owners_trading_in_between_do_not_break_the_chain():
    rows = legs(4) + [trade(15.0 + 20 * i, f"o{i}", "C", "D", 100.0, 3.0, aggressor="buy") for i in range(4)]
    [a] = alerts_of(RoundTrip(), rows)
    assert a.owners == ["A", "B"]


def test_unlinked_owners_in_the_same_direction_only_do_not_alert():
    rows = [trade(10.0 + 10 * i, f"s{i}", "B", "A", 100.0, 1.0, aggressor="buy" if i % 2 else "sell") for i in range(8)]
    assert alerts_of(RoundTrip(), rows) == []


def test_a_same_direction_trade_restarts_the_chain():
    again = [trade(60.0, "x", "B", "A", 100.0, 1.0, aggressor="buy"),  # A sells to B twice in a row ...
             trade(80.0, "y", "A", "B", 100.0, 1.0, aggressor="buy")]  # ... so the chain is x, y: one round trip
    assert alerts_of(RoundTrip(), legs(3) + again) == []
    assert alerts_of(RoundTrip(), legs(3) + again[1:])  # without x: four trades in a row


def test_linked_owners_are_wash_trades_not_round_trips():
    rows = [dict(r, buy_group="G", sell_group="G") for r in legs(6)]
    assert alerts_of(RoundTrip(), rows) == []


def test_repeat_counterparties_at_their_own_sizes_do_not_alert():
    sizes = [1.0, 2.7, 0.4, 1.9, 0.8, 3.1, 1.2, 0.5]  # alternating, but every size of its own
    assert alerts_of(RoundTrip(), legs(8, qty=sizes)) == []


def test_public_trades_without_owners_are_ignored():
    rows = [dict(r, buy_owner=None, sell_owner=None, buy_group=None, sell_group=None) for r in legs(6)]
    assert RoundTrip().select(book(rows)).num_rows == 0


def test_state_is_idle_after_the_window():
    det = RoundTrip(window_ms=60_000)
    st = det.new_state()
    det.update(st, det.select(book(legs(2))))
    assert not det.is_idle(st, 90 * 10**9) and det.is_idle(st, 90 * 10**9 + 1)


# -- contract market --------------------------------------------------------------------
def contract_market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """Trades among traders and market makers at their own sizes, with a round-trip chain every
    300 s: 4-7 trades alternating between two owners at about one size and price."""
    rng = np.random.default_rng(seed)
    owners = [f"T{i}" for i in range(8)] + ["MM1", "MM2"]
    rows, px, btc = [], {INST: 100.0, "ETH/USDT": 50.0}, []
    for t in range(1, seconds, 2):  # background: a trade every 2 s, BTC and ETH in turn
        inst = INST if t % 4 == 1 else "ETH/USDT"
        px[inst] *= float(np.exp(rng.normal(0, 3e-4)))
        btc.append(px[INST])
        b, s = rng.choice(len(owners), 2, replace=False)
        rows.append(trade(t + rng.uniform(0, 1.5), f"t{t}", owners[b], owners[s], round(px[inst], 2),
                          round(float(rng.lognormal(0, 0.8)), 4), aggressor="buy" if rng.random() < 0.5 else "sell",
                          inst=inst))
    for k, t0 in enumerate(range(100, seconds - 200, 300)):
        n, base, mid = int(rng.integers(4, 8)), float(rng.uniform(0.5, 3)), btc[t0 // 2]
        rows += legs(n, t0=t0 + 0.5, gap=float(rng.uniform(5, 30)), a=f"RA{k % 3}", b=f"RB{k % 3}", tag=f"k{k}r",
                     qty=[round(base * rng.uniform(0.95, 1.05), 4) for _ in range(n)],
                     price=[round(mid * (1 + rng.uniform(-3, 3) * 1e-4), 2) for _ in range(n)])
    return book(rows)
