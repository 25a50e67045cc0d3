"""Columnar specifications of what happens in the market, and the vectorised background flow.

A *spec batch* is a dict of equal-length numpy arrays, one row per trade or order.  The
background makes millions of rows at once; episodes add a handful of rows through the same
builders, so they look like the background.  ``assemble`` turns spec batches into events.

Spec kinds and their fields (prices in integer ticks, quantities in integer lots, times in ns):

- ``SHARED_TRADE``: one match in the shared book (one trade, the maker's and the taker's
  ``new``, two ``fill``s, and when the resting order was bigger, a ``cancel`` of the rest);
- ``PASSIVE_ORDER``: an order that rests and never trades (``new``, maybe one ``amend``, then
  a ``cancel`` after ``life`` ns; or a lone ``reject``): market makers' quotes in the
  background, and the building block of spoofing, layering and quote-stuffing episodes;
- ``REFX_TRADE`` and ``REFX_QUOTE``: the public reference venue's tape and top of book.

>>> b = make_batch(REFX_TRADE, ts=[1, 2], inst=[0, 0], px=[10, 11], qty=[1, 1], aggr=[BUY, SELL])
>>> len(b["ts"]), b["episode"].tolist()
(2, [-1, -1])
"""
from __future__ import annotations

import numpy as np

from .config import NS, REFX, SHARED, Listing
from .population import MARKET_MAKER, draw_accounts
from .prices import touch_ticks

BUY, SELL = 0, 1

SHARED_TRADE = {
    "ts": np.int64, "inst": np.int16, "px": np.int64, "qty": np.int64, "aggr": np.int8,
    "maker": np.int32, "taker": np.int32, "maker_lead": np.int64, "maker_extra": np.int64,
    "cancel_delay": np.int64, "taker_market": np.bool_, "taker_slip": np.int64, "episode": np.int32,
}
PASSIVE_ORDER = {
    "ts": np.int64, "inst": np.int16, "side": np.int8, "px": np.int64, "qty": np.int64, "acct": np.int32,
    "life": np.int64, "amend_at": np.int64, "amend_px": np.int64, "amend_qty": np.int64,
    "reject": np.bool_, "episode": np.int32,
}
REFX_TRADE = {"ts": np.int64, "inst": np.int16, "px": np.int64, "qty": np.int64, "aggr": np.int8,
              "episode": np.int32}
REFX_QUOTE = {"ts": np.int64, "inst": np.int16, "bid": np.int64, "ask": np.int64, "bid_qty": np.int64,
              "ask_qty": np.int64}
_DEFAULTS = {"episode": -1, "maker_extra": 0, "cancel_delay": 0, "taker_market": False, "taker_slip": 0,
             "amend_at": -1, "amend_px": -1, "amend_qty": -1, "reject": False}


def make_batch(kind: dict, **cols) -> dict[str, np.ndarray]:
    n = len(cols["ts"])
    out = {}
    for name, dtype in kind.items():
        if name in cols:
            arr = np.asarray(cols[name], dtype=dtype)
            if arr.ndim == 0:
                arr = np.full(n, arr, dtype=dtype)
        elif name in _DEFAULTS:
            arr = np.full(n, _DEFAULTS[name], dtype=dtype)
        else:
            raise ValueError(f"missing spec field {name!r}")
        if len(arr) != n:
            raise ValueError(f"spec field {name!r} has {len(arr)} rows, expected {n}")
        out[name] = arr
    return out


def concat_batches(kind: dict, batches: list[dict]) -> dict[str, np.ndarray]:
    if not batches:
        return {name: np.empty(0, dtype=dtype) for name, dtype in kind.items()}
    return {name: np.concatenate([b[name] for b in batches]).astype(dtype, copy=False)
            for name, dtype in kind.items()}


# ---- building blocks shared by background and episodes -------------------------------------

def arrival_times(rng, activity: np.ndarray, start_ns: int, end_ns: int, rate_per_s: float,
                  us_aligned: bool = False) -> np.ndarray:
    """Sorted arrival times: Poisson per second with the instrument's activity multiplier."""
    dur = end_ns - start_ns
    n_sec = -(-dur // NS)
    sec_len = np.minimum(NS, dur - np.arange(n_sec, dtype=np.int64) * NS)
    counts = rng.poisson(rate_per_s * activity[:n_sec] * (sec_len / NS))
    sec = np.repeat(np.arange(n_sec, dtype=np.int64), counts)
    off = (rng.random(len(sec)) * sec_len[sec]).astype(np.int64)
    if us_aligned:
        off -= off % 1000
    return np.sort(start_ns + sec * NS + off)


def draw_lots(rng, n: int, price: np.ndarray, listing: Listing, median_usd: float | None = None,
              sigma: float | None = None, clip_sigmas: float | None = None) -> np.ndarray:
    """Quantities in lots from a lognormal notional (clip_sigmas trims to 'normal-looking' sizes)."""
    median = listing.median_notional_usd if median_usd is None else median_usd
    sig = listing.notional_sigma if sigma is None else sigma
    z = rng.standard_normal(n)
    if clip_sigmas is not None:
        z = np.clip(z, -clip_sigmas, clip_sigmas)
    notional = np.clip(median * np.exp(sig * z), 5.0, 2e6)
    return np.maximum(1, np.rint(notional / price * 10.0 ** listing.lot_decimals)).astype(np.int64)


def taker_prices(rng, mid: np.ndarray, aggr: np.ndarray, listing: Listing, p_deep: float = 0.25) -> np.ndarray:
    """Trade prices in ticks: the aggressor pays the touch, sometimes walks a little deeper."""
    bid, ask = touch_ticks(mid, listing.half_spread_bps, listing.tick_decimals)
    deep_bps = np.where(rng.random(len(mid)) < p_deep, rng.exponential(0.5, len(mid)), 0.0)
    extra = np.rint(mid * deep_bps * 1e-4 * 10.0 ** listing.tick_decimals).astype(np.int64)
    return np.where(aggr == BUY, ask + extra, np.maximum(1, bid - extra))


def shared_trades(m, rng, inst: int, ts: np.ndarray, maker: np.ndarray, taker: np.ndarray, aggr: np.ndarray,
                  *, qty: np.ndarray | None = None, maker_lead_s: np.ndarray | None = None,
                  maker_extra: np.ndarray | None = None, episode=-1, clip_sigmas: float | None = None,
                  px: np.ndarray | None = None):
    """SHARED trade specs priced at the touch of SHARED's mid at each time (or at ``px`` ticks).

    ``episode`` is one episode index for every row, or one per row.
    """
    fc = m.cfg.flow
    listing = m.cfg.instruments[inst].shared
    n = len(ts)
    mid = m.prices.mid(inst, SHARED, ts)
    px = taker_prices(rng, mid, aggr, listing) if px is None else np.asarray(px, dtype=np.int64)
    if qty is None:
        qty = draw_lots(rng, n, mid, listing, clip_sigmas=clip_sigmas)
    if maker_lead_s is None:
        is_mm = m.pop.owner_role[m.pop.account_owner[maker]] == MARKET_MAKER
        maker_lead_s = rng.exponential(np.where(is_mm, fc.mm_maker_lead_s, fc.other_maker_lead_s))
    lead = np.minimum((np.asarray(maker_lead_s) * NS).astype(np.int64) + 1_000_000, ts - m.cfg.start_ns)
    if maker_extra is None:
        has_rest = rng.random(n) < fc.p_maker_remainder
        maker_extra = np.where(has_rest, np.maximum(1, np.rint(qty * rng.uniform(0.2, 2.0, n))), 0)
    cancel_delay = (rng.exponential(fc.remainder_cancel_s, n) * NS).astype(np.int64) + 10_000_000
    return make_batch(
        SHARED_TRADE, ts=ts, inst=np.full(n, inst), px=px, qty=qty, aggr=aggr, maker=maker, taker=taker,
        maker_lead=lead, maker_extra=maker_extra, cancel_delay=cancel_delay,
        taker_market=rng.random(n) < fc.p_market_order, taker_slip=rng.integers(0, 5, n),
        episode=np.full(n, episode) if np.ndim(episode) == 0 else episode,
    )


# ---- background ------------------------------------------------------------------------

def _rates(cfg) -> dict[str, float]:
    """Items per second (all instruments) for each stream, from the event budget."""
    fc = cfg.flow
    shares = {"shared": fc.shared_trade_share, "mm": fc.mm_order_share,
              "refx_trade": fc.refx_trade_share, "refx_quote": fc.refx_quote_share}
    total = sum(shares.values())
    per_item = {"shared": 5.0 + fc.p_maker_remainder, "mm": 2.0 * (2.0 + fc.p_amend),
                "refx_trade": 1.0, "refx_quote": 1.0}
    return {k: cfg.events_per_second * v / total / per_item[k] for k, v in shares.items()}


def background(m, rng) -> None:
    """All background flow, instrument by instrument, into the market's spec lists."""
    cfg, fc, pop = m.cfg, m.cfg.flow, m.pop
    rates = _rates(cfg)
    weights = np.array([s.weight for s in cfg.instruments])
    weights = weights / weights.sum()
    for inst, spec in enumerate(cfg.instruments):
        act = m.prices.activity[inst]
        w = weights[inst]
        # SHARED matches: noise traders and arbitrageurs take from market makers and resting traders.
        ts = arrival_times(rng, act, cfg.start_ns, cfg.end_ns, rates["shared"] * w)
        n = len(ts)
        gap = m.prices.gap_bps(inst, ts)
        p_arb = np.minimum(fc.max_arb_share, 0.02 + np.abs(gap) / 40.0) if len(pop.arb_accounts) else np.zeros(n)
        is_arb = rng.random(n) < p_arb
        # SHARED cheap relative to REFX (gap > 0): arbitrageurs buy on SHARED.
        aggr = np.where(is_arb, np.where(gap > 0, BUY, SELL), (rng.random(n) < 0.5).astype(np.int8))
        taker = draw_accounts(rng, pop.taker_pool, pop.taker_weight, n)
        if len(pop.arb_accounts):
            taker = np.where(is_arb, pop.arb_accounts[rng.integers(0, len(pop.arb_accounts), n)], taker)
        taker = m.keep_quiet(inst, ts, taker, aggr, ~is_arb)
        maker = draw_accounts(rng, pop.maker_pool, pop.maker_weight, n)
        bad = pop.linked(maker, taker)
        while bad.any():  # never match an owner (or a linked group) with itself in the background
            maker[bad] = draw_accounts(rng, pop.maker_pool, pop.maker_weight, int(bad.sum()))
            bad = pop.linked(maker, taker)
        m.shared_trades.append(shared_trades(m, rng, inst, ts, maker, taker, aggr.astype(np.int8)))

        # Market makers' two-sided quotes, most of them cancelled.
        listing = spec.shared
        ts = arrival_times(rng, act, cfg.start_ns, cfg.end_ns, rates["mm"] * w)
        n = len(ts)
        mid = m.prices.mid(inst, SHARED, ts)
        bid, ask = touch_ticks(mid, listing.half_spread_bps, listing.tick_decimals)
        scale = 10.0 ** listing.tick_decimals
        acct = pop.mm_accounts[rng.integers(0, len(pop.mm_accounts), n)]
        ts2 = np.concatenate([ts, ts])
        side = np.concatenate([np.full(n, BUY), np.full(n, SELL)])
        depth = np.rint(np.concatenate([mid, mid]) * rng.uniform(0, fc.mm_quote_depth_bps, 2 * n) * 1e-4 * scale)
        px = np.where(side == BUY, np.concatenate([bid, bid]) - depth, np.concatenate([ask, ask]) + depth)
        px = np.maximum(px, 1).astype(np.int64)
        qty = draw_lots(rng, 2 * n, np.concatenate([mid, mid]), listing, fc.mm_median_notional_usd, 0.8)
        life = (rng.exponential(fc.mm_quote_life_s, 2 * n) * NS).astype(np.int64) + 5_000_000
        amend = rng.random(2 * n) < fc.p_amend
        amend_at = np.where(amend, ts2 + (life * rng.uniform(0.1, 0.9, 2 * n)).astype(np.int64), -1)
        shift = np.rint(np.concatenate([mid, mid]) * rng.uniform(0, 3, 2 * n) * 1e-4 * scale).astype(np.int64)
        amend_px = np.where(side == BUY, px - shift, px + shift)
        amend_qty = np.maximum(1, np.rint(qty * rng.uniform(0.5, 1.5, 2 * n))).astype(np.int64)
        m.passive_orders.append(make_batch(
            PASSIVE_ORDER, ts=ts2, inst=np.full(2 * n, inst), side=side, px=px, qty=qty,
            acct=np.concatenate([acct, acct]),
            life=life, amend_at=amend_at, amend_px=np.where(amend, amend_px, -1),
            amend_qty=np.where(amend, amend_qty, -1), reject=rng.random(2 * n) < fc.p_reject,
        ))

        # REFX public tape and top of book (whole microseconds, like a tardis file).
        ts = arrival_times(rng, act, cfg.start_ns, cfg.end_ns, rates["refx_trade"] * w, us_aligned=True)
        n = len(ts)
        mid = m.prices.mid(inst, REFX, ts)
        aggr = (rng.random(n) < 0.5).astype(np.int8)
        m.refx_trades.append(make_batch(
            REFX_TRADE, ts=ts, inst=np.full(n, inst), px=taker_prices(rng, mid, aggr, spec.refx),
            qty=draw_lots(rng, n, mid, spec.refx), aggr=aggr,
        ))
        if rates["refx_quote"] > 0:
            ts = arrival_times(rng, act, cfg.start_ns, cfg.end_ns, rates["refx_quote"] * w, us_aligned=True)
            n = len(ts)
            mid = m.prices.mid(inst, REFX, ts)
            bid, ask = touch_ticks(mid, spec.refx.half_spread_bps, spec.refx.tick_decimals)
            m.refx_quotes.append(make_batch(
                REFX_QUOTE, ts=ts, inst=np.full(n, inst), bid=bid, ask=ask,
                bid_qty=draw_lots(rng, n, mid, spec.refx, 20_000.0, 1.0),
                ask_qty=draw_lots(rng, n, mid, spec.refx, 20_000.0, 1.0),
            ))
