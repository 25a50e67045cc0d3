"""Building blocks the episode types share: placement, sizes, counterparties, trades, resting orders.

Everything here produces spec batches (``flow``) with the same builders as the background,
so an episode's orders and trades look like everyone else's apart from what makes them an
episode.  Sizes are expressed as multiples of the instrument's *typical* size, the SHARED
median trade notional (``Listing.median_notional_usd``).

>>> spread_times(np.random.default_rng(0), 100, 50, 3).tolist()[::2]
[100, 150]
"""
from __future__ import annotations

import numpy as np

from .config import NS, REFX, SHARED
from .flow import BUY, PASSIVE_ORDER, REFX_TRADE, SELL, _rates, draw_lots, make_batch, shared_trades, taker_prices
from .population import draw_accounts
from .prices import touch_ticks

MARKET = "market"  # scheduler family of the extra types (their runs are exclusive anyway)
SIDE_NAMES = ("buy", "sell")


def spread_times(rng, start: int, dur_ns: int, n: int) -> np.ndarray:
    """n trade times: the first at start, the last at start + dur, the rest in between."""
    if n == 1:
        return np.array([start], dtype=np.int64)
    mid = np.sort(rng.integers(start + 1, start + dur_ns, n - 2)) if n > 2 else np.empty(0, np.int64)
    return np.concatenate([[start], mid, [start + dur_ns]]).astype(np.int64)


def owner_trades(m, rng, ep_index: int, inst: int, ts, buyers, sellers) -> dict:
    """Trades between given accounts, each side resting or aggressing at random, normal sizes."""
    n = len(ts)
    buyers, sellers = np.asarray(buyers, np.int32), np.asarray(sellers, np.int32)
    buyer_rests = rng.random(n) < 0.5
    maker = np.where(buyer_rests, buyers, sellers)
    taker = np.where(buyer_rests, sellers, buyers)
    aggr = np.where(buyer_rests, SELL, BUY).astype(np.int8)
    return shared_trades(m, rng, inst, ts, maker, taker, aggr, maker_lead_s=rng.uniform(0.2, 5.0, n),
                         maker_extra=np.zeros(n, np.int64), episode=ep_index, clip_sigmas=1.5)


# ---- placement ----------------------------------------------------------------------------

def place(m, rng, slot, dur_s: float, min_dur_s: float, earliest_ns: int | None = None):
    """(instrument, start, duration ns) of a free window, or None."""
    lo = slot[0] if earliest_ns is None else max(slot[0], earliest_ns)
    if lo >= slot[1]:
        return None
    return m.scheduler.place(rng, MARKET, int(dur_s * NS), (lo, slot[1]), m.instrument_order(rng),
                             int(min_dur_s * NS))


def fit(parts: list[float], los: list[float], total: float) -> list[float]:
    """Shrink drawn durations to ``total`` by taking the excess over their minimums proportionally.

    >>> fit([100.0, 50.0], [60.0, 10.0], 110.0)
    [80.0, 30.0]
    """
    extra = sum(p - lo for p, lo in zip(parts, los))
    room = total - sum(los)
    if extra <= room:
        return list(parts)
    f = max(room, 0.0) / extra if extra > 0 else 0.0
    return [lo + (p - lo) * f for p, lo in zip(parts, los)]


def lasting_move(m, rng, inst: int, t: int, bps: float) -> float:
    """SHARED steps ``bps`` just after ``t`` for good; REFX catches up within 5-30 s (arbitrage).

    A lasting SHARED-only step would leave a gap that grows with every such episode; here the
    gap closes, as it does when arbitrageurs work.  Returns the catch-up time in seconds.
    """
    follow = float(rng.uniform(5.0, 30.0))
    m.prices.add_impact(inst, (SHARED,), [t + 1_000_000, t + 500_000_000], [0.0, bps], hold=True)
    m.prices.add_impact(inst, (REFX,), [t + 500_000_000, t + int(follow * NS)], [0.0, bps], hold=True)
    return follow


def sign_of(rng) -> int:
    return 1 if rng.random() < 0.5 else -1


# ---- sizes and prices ---------------------------------------------------------------------

def typical_usd(m, inst: int) -> float:
    return m.cfg.instruments[inst].shared.median_notional_usd


def lots(m, inst: int, usd, price) -> np.ndarray:
    """Quantity in SHARED lots (at least one) of ``usd`` notional at ``price``."""
    dec = m.cfg.instruments[inst].shared.lot_decimals
    return np.maximum(1, np.rint(np.asarray(usd, dtype=np.float64) / np.asarray(price) * 10.0 ** dec)).astype(np.int64)


def shared_mid(m, inst: int, ts) -> np.ndarray:
    return m.prices.mid(inst, SHARED, np.asarray(ts, dtype=np.int64))


def shared_touch(m, inst: int, ts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mid, best bid ticks, best ask ticks) on SHARED at each time."""
    listing = m.cfg.instruments[inst].shared
    mid = shared_mid(m, inst, ts)
    bid, ask = touch_ticks(mid, listing.half_spread_bps, listing.tick_decimals)
    return mid, bid, ask


def bps_ticks(m, inst: int, mid, bps) -> np.ndarray:
    """``bps`` of ``mid`` in SHARED ticks, at least one."""
    scale = 10.0 ** m.cfg.instruments[inst].shared.tick_decimals
    return np.maximum(1, np.rint(np.asarray(mid) * np.asarray(bps) * 1e-4 * scale)).astype(np.int64)


def to_price(m, inst: int, ticks: int, venue: str = SHARED) -> float:
    spec = m.cfg.instruments[inst]
    listing = spec.shared if venue == SHARED else spec.refx
    return int(ticks) / 10.0 ** listing.tick_decimals


# ---- who trades ---------------------------------------------------------------------------

def avoid_mask(m, owners, extra_owners=()) -> np.ndarray:
    """Accounts a counterparty must not be: of the owners, their linked groups and ``extra_owners``."""
    pop = m.pop
    owners = [int(o) for o in owners]
    groups = {int(pop.owner_group[o]) for o in owners} - {-1}
    bad_owner = np.isin(np.arange(len(pop.owner_ids)), owners + [int(o) for o in extra_owners])
    if groups:
        bad_owner |= np.isin(pop.owner_group, list(groups))
    return bad_owner[pop.account_owner]


def draw(m, rng, pool: str, n: int, avoid: np.ndarray | None = None) -> np.ndarray:
    """n accounts from the background's taker or maker pool (same weights), none in ``avoid``."""
    pop = m.pop
    accts, w = (pop.taker_pool, pop.taker_weight) if pool == "taker" else (pop.maker_pool, pop.maker_weight)
    out = draw_accounts(rng, accts, w, n).astype(np.int32)
    if avoid is not None:
        bad = avoid[out]
        while bad.any():
            out[bad] = draw_accounts(rng, accts, w, int(bad.sum()))
            bad = avoid[out]
    return out


def unlink(m, rng, makers: np.ndarray, takers: np.ndarray, redraw: np.ndarray, avoid=None) -> np.ndarray:
    """Makers redrawn (where ``redraw``) until no trade matches an owner or group with itself."""
    makers = makers.copy()
    bad = m.pop.linked(makers, takers) & redraw
    while bad.any():
        makers[bad] = draw(m, rng, "maker", int(bad.sum()), avoid)
        bad = m.pop.linked(makers, takers) & redraw
    return makers


def aggressive(m, rng, inst, ts, acct, side, qty=None, episode=-1, avoid=None, **kw) -> dict:
    """``acct`` takes liquidity (buys at the ask / sells at the bid) from background makers."""
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    taker = np.broadcast_to(np.asarray(acct, np.int32), (n,)).copy()
    maker = unlink(m, rng, draw(m, rng, "maker", n, avoid), taker, np.ones(n, bool), avoid)
    aggr = np.broadcast_to(np.asarray(side, np.int8), (n,)).copy()
    return shared_trades(m, rng, inst, ts, maker, taker, aggr, qty=qty, episode=episode,
                         maker_extra=kw.pop("maker_extra", np.zeros(n, np.int64)), **kw)


def passive(m, rng, inst, ts, acct, side, qty=None, episode=-1, avoid=None, lead_s=None, **kw) -> dict:
    """``acct`` rests an order on ``side`` (for ``lead_s``) that a background taker fills."""
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    maker = np.broadcast_to(np.asarray(acct, np.int32), (n,)).copy()
    taker = draw(m, rng, "taker", n, avoid)
    bad = m.pop.linked(maker, taker)
    while bad.any():
        taker[bad] = draw(m, rng, "taker", int(bad.sum()), avoid)
        bad = m.pop.linked(maker, taker)
    aggr = (1 - np.broadcast_to(np.asarray(side, np.int8), (n,))).astype(np.int8)
    lead = rng.uniform(0.2, 3.0, n) if lead_s is None else np.broadcast_to(np.asarray(lead_s, float), (n,))
    return shared_trades(m, rng, inst, ts, maker, taker, aggr, qty=qty, episode=episode, maker_lead_s=lead,
                         maker_extra=np.zeros(n, np.int64), **kw)


def either(m, rng, inst, ts, acct, side, qty=None, episode=-1, avoid=None) -> list[dict]:
    """Each trade aggressive or passive at random (the owner's side is ``side``)."""
    ts = np.asarray(ts, dtype=np.int64)
    qty = None if qty is None else np.asarray(qty, dtype=np.int64)
    agg = rng.random(len(ts)) < 0.5
    out = []
    for mask, build in ((agg, aggressive), (~agg, passive)):
        if mask.any():
            out.append(build(m, rng, inst, ts[mask], acct, side, None if qty is None else qty[mask], episode, avoid))
    return out


def resting(m, inst, ts, side, px, qty, acct, life_ns, episode, amend_at=None, amend_px=None,
            amend_qty=None) -> dict:
    """Orders that rest and never trade: ``new`` (+ one ``amend``) then ``cancel`` after ``life_ns``."""
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    cols = dict(ts=ts, inst=np.full(n, inst), side=side, px=px, qty=qty, acct=acct, life=life_ns, episode=episode)
    if amend_at is not None:
        cols.update(amend_at=amend_at, amend_px=amend_px, amend_qty=amend_qty)
    return make_batch(PASSIVE_ORDER, **cols)


# ---- the rest of the market -----------------------------------------------------------------

def expected_count(m, inst: int, stream: str, t0: int, t1: int, local: bool = True) -> float:
    """Background items of ``stream`` ("shared" trades, "refx_trade") expected on ``inst`` in [t0, t1).

    ``local``: at the activity level of that stretch; otherwise at the run's average level.
    """
    cfg = m.cfg
    w = np.array([s.weight for s in cfg.instruments])
    act = m.prices.activity[inst]
    a, b = (t0 - cfg.start_ns) // NS, -(-(t1 - cfg.start_ns) // NS)
    mean_act = float(act[max(a, 0): max(b, a + 1)].mean()) if local else 1.0
    return _rates(cfg)[stream] * w[inst] / w.sum() * mean_act * (t1 - t0) / NS


def extra_count(m, inst: int, stream: str, t0: int, t1: int, multiple: float) -> int:
    """Trades to add so [t0, t1) has ``multiple`` x the run's average count (what a baseline sees)."""
    want = expected_count(m, inst, stream, t0, t1, local=False) * multiple
    return max(0, int(round(want - expected_count(m, inst, stream, t0, t1))))


def crowd(m, rng, inst: int, t0: int, t1: int, n: int, p_buy: float, avoid=None) -> dict:
    """n more SHARED trades in [t0, t1) among background traders (a busier market, not an owner)."""
    ts = np.sort(rng.integers(t0, t1, n)).astype(np.int64)
    aggr = np.where(rng.random(n) < p_buy, BUY, SELL).astype(np.int8)
    taker = draw(m, rng, "taker", n, avoid)
    maker = unlink(m, rng, draw(m, rng, "maker", n, avoid), taker, np.ones(n, bool), avoid)
    return shared_trades(m, rng, inst, ts, maker, taker, aggr)


def refx_crowd(m, rng, inst: int, t0: int, t1: int, n: int, p_buy: float) -> dict:
    """n more REFX public trades in [t0, t1), whole microseconds like the rest of its tape."""
    ts = np.sort(rng.integers(t0 // 1000, t1 // 1000, n)).astype(np.int64) * 1000
    listing = m.cfg.instruments[inst].refx
    mid = m.prices.mid(inst, REFX, ts)
    aggr = np.where(rng.random(n) < p_buy, BUY, SELL).astype(np.int8)
    return make_batch(REFX_TRADE, ts=ts, inst=np.full(n, inst), px=taker_prices(rng, mid, aggr, listing),
                      qty=draw_lots(rng, n, mid, listing), aggr=aggr)


def more_volume(m, rng, inst: int, t0: int, t1: int, multiple: float, p_buy: float, venues=(SHARED,),
                avoid=None) -> None:
    """Add trades so each venue's trade count in [t0, t1) is about ``multiple`` x its average."""
    if SHARED in venues:
        n = extra_count(m, inst, "shared", t0, t1, multiple)
        if n > 0:
            m.shared_trades.append(crowd(m, rng, inst, t0, t1, n, p_buy, avoid))
    if REFX in venues:
        n = extra_count(m, inst, "refx_trade", t0, t1, multiple)
        if n > 0:
            m.refx_trades.append(refx_crowd(m, rng, inst, t0, t1, n, p_buy))


def owner_ids(m, owners) -> list[str]:
    return [m.pop.owner_ids[int(o)] for o in owners]


def account_ids(m, accts) -> list[str]:
    return sorted({m.pop.account_ids[int(a)] for a in accts})


def platforms(m, accts) -> list[str]:
    return sorted({m.platform_of(int(a)) for a in accts})
