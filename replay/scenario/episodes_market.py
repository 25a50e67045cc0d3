"""Market-wide episodes: pump and dump, off-market prints and trade-throughs, abnormal moves.

- ``pump_and_dump``: a linked owner group (``owner_links.csv``) buys 10-40 times over 5-20
  minutes (SHARED drifts up 0.3-1.5%); then SHARED surges 5-30% within 1-3 minutes on
  5-20x its baseline quantity per second (background traders chasing it), while the group
  sells into the surge through resting orders; it dumps the rest aggressively as the price
  collapses back over 1-3 minutes.  ``trade_ids`` are the group's trades only.
- ``off_market``: one SHARED print 100-500 bps from both venues' prevailing prices
  (variants ``fat_finger``: one owner's order against a background trader; ``prearranged``:
  two owners, both labelled), or ``trade_through``: a SHARED print 30-100 bps through REFX's
  best bid/offer while REFX is quiet.  The print sits alone in a 20 s quiet window.
- ``abnormal_move``: both venues move 1-4% together within 10-60 s and stay there, on 5-20x
  each venue's trade count, for a 1-3 minute window, with no owner behind it.  Not before
  ``abnormal_warmup_s`` (20 minutes: abnormal_move's 20 one-minute buckets of baseline), or half
  the run when that leaves no room for a 3-minute episode, so a detector has a baseline to compare against.
"""
from __future__ import annotations

import numpy as np

from .config import NS, REFX, SHARED
from .episode_kit import (SIDE_NAMES, account_ids, aggressive, avoid_mask, draw, extra_count, fit, lots,
                          more_volume, owner_ids, passive, place, shared_mid, sign_of, to_price, typical_usd, unlink)
from .episodes_trades import split
from .flow import BUY, SELL, shared_trades
from .prices import touch_ticks

PRINT_QUIET_S = 10.0  # each side of an off-market print


# ---- pump and dump ------------------------------------------------------------------------------

def _chasers(m, rng, inst, t0, t1, n, p_buy, avoid) -> dict:
    """Background traders piling in (or out): more trades, none of them the group's."""
    ts = np.sort(rng.integers(t0, t1, n)).astype(np.int64)
    aggr = np.where(rng.random(n) < p_buy, BUY, SELL).astype(np.int8)
    taker = draw(m, rng, "taker", n, avoid)
    maker = unlink(m, rng, draw(m, rng, "maker", n, avoid), taker, np.ones(n, bool), avoid)
    return shared_trades(m, rng, inst, ts, maker, taker, aggr)


def inject_pump_and_dump(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    groups = [g for g in range(len(pop.group_ids))
              if not any(o in m.used_owners for o in np.flatnonzero(pop.owner_group == g).tolist())]
    if not groups:
        return None
    rs = [ec.pump_accumulate_s, ec.pump_surge_s, ec.pump_dump_s]
    parts = [r.draw(rng) for r in rs]
    placed = place(m, rng, slot, sum(parts), sum(r.lo for r in rs))
    if placed is None:
        return None
    inst, t0, dur_ns = placed
    acc_s, surge_s, dump_s = fit(parts, [r.lo for r in rs], dur_ns / NS)
    g = groups[int(rng.integers(len(groups)))]
    members = np.flatnonzero(pop.owner_group == g)
    accts = np.flatnonzero(np.isin(pop.account_owner, members)).astype(np.int32)
    t_s = t0 + int(acc_s * NS)
    t_p = t_s + int(surge_s * NS)
    t_e = t0 + dur_ns
    acc_rise, rise = ec.pump_accumulate_rise_pct.draw(rng), ec.pump_rise_pct.draw(rng)
    m.prices.add_impact(inst, (SHARED,), [t0, t_s, t_p, t_e], [0.0, acc_rise * 100, rise * 100, 0.0])
    mult = ec.pump_volume_multiple.draw(rng)
    n_acc = ec.pump_n_accumulate_trades.draw_int(rng)
    m.used_owners.update(members.tolist())
    ep = m.new_episode("pump_and_dump", inst, [SHARED], owner_ids(m, members), account_ids(m, accts), t0, t_e, {
        "group_id": pop.group_ids[g], "accumulate_s": round(acc_s, 3), "surge_s": round(surge_s, 3),
        "dump_s": round(dump_s, 3), "surge_start_ns": int(t_s), "peak_ns": int(t_p),
        "accumulate_rise_pct": round(acc_rise, 3), "rise_pct": round(rise, 3), "volume_multiple": round(mult, 3),
        "n_accumulate_trades": n_acc,
    })
    m.label_orders(ep, accts, related=("abnormal_move", "price_dislocation"))

    def build():
        idx = m.index_of(ep)
        avoid = avoid_mask(m, members, m.used_owners)
        typical = typical_usd(m, inst)
        # 1. the group accumulates, mostly taking liquidity
        ts = np.sort(np.concatenate([[t0], rng.integers(t0, t_s, n_acc - 1)])).astype(np.int64)
        who = accts[rng.integers(0, len(accts), n_acc)]
        qty = lots(m, inst, rng.uniform(1.0, 3.0, n_acc) * typical, shared_mid(m, inst, ts))
        take = rng.random(n_acc) < 0.7
        for mask, build_one in ((take, aggressive), (~take, passive)):
            for a in np.unique(who[mask]).tolist():
                sel = mask & (who == a)
                m.shared_trades.append(build_one(m, rng, inst, ts[sel], a, BUY, qty[sel], idx, avoid))
        bought = int(qty.sum())
        sold = int(bought * ec.pump_sell_ratio.draw(rng))
        # 2. the group sells into the surge through resting orders, and dumps the rest
        for (lo, hi, share, seller) in ((t_s, t_p, 0.7, passive), (t_p, t_e, 0.3, aggressive)):
            k = max(2, int(round(n_acc * share)))
            ts = np.sort(rng.integers(lo, hi, k)).astype(np.int64)
            who = accts[rng.integers(0, len(accts), k)]
            q = split(rng, max(1, int(sold * share)), k)
            for a in np.unique(who).tolist():
                sel = who == a
                m.shared_trades.append(seller(m, rng, inst, ts[sel], a, SELL, q[sel], idx, avoid))
        # 3. everyone else chases the surge and runs in the collapse (quantity ~ multiple x baseline)
        for lo, hi, mul, p_buy, lift in ((t_s, t_p, mult, 0.85, (acc_rise + rise) / 200),
                                         (t_p, t_e, mult / 2, 0.2, rise / 200)):
            n = extra_count(m, inst, "shared", lo, hi, mul * (1 + lift))
            if n > 0:
                m.shared_trades.append(_chasers(m, rng, inst, lo, hi, n, p_buy, avoid))
        ep.params.update({"bought_lots": bought, "sold_lots": sold,
                          "lot_size": m.cfg.instruments[inst].shared.lot_size, "typical_notional_usd": typical})

    m.defer(build)
    return ep


# ---- off-market prints --------------------------------------------------------------------------

OFF_VARIANTS = ("fat_finger", "prearranged", "trade_through")


def inject_off_market(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    variant = m.next_variant("off_market", OFF_VARIANTS, rng)
    o = m.pick_owner(rng, lambda o: True)
    if o is None:
        return None
    placed = place(m, rng, slot, 2 * PRINT_QUIET_S, 2 * PRINT_QUIET_S)
    if placed is None:
        return None
    inst, w0, _ = placed
    t = w0 + int(PRINT_QUIET_S * NS)
    acct = int(rng.choice(pop.accounts_of(o)))
    other = m.pick_counterparty(rng, [o]) if variant == "prearranged" else None
    owners = [o] if other is None else [o, int(pop.account_owner[other])]
    side = BUY if rng.random() < 0.5 else SELL
    dist = (ec.trade_through_bps if variant == "trade_through" else ec.off_market_bps).draw(rng)
    m.used_owners.update(owners)
    ep = m.new_episode("off_market", inst, [SHARED] if variant != "trade_through" else [SHARED, REFX],
                       owner_ids(m, owners), account_ids(m, [acct] + ([] if other is None else [other])), t, t,
                       {"variant": variant, "side": SIDE_NAMES[side], "target_bps": round(dist, 3)})
    m.label_orders(ep, [acct] + ([] if other is None else [other]))

    def build():
        idx = m.index_of(ep)
        spec = m.cfg.instruments[inst]
        scale = 10.0 ** spec.shared.tick_decimals
        mid = float(shared_mid(m, inst, [t])[0])
        rmid = m.prices.mid(inst, REFX, np.array([t]))
        rb, ra = (to_price(m, inst, x[0], REFX) for x in touch_ticks(rmid, spec.refx.half_spread_bps,
                                                                        spec.refx.tick_decimals))
        sgn = 1 if side == BUY else -1
        if variant == "trade_through":  # through REFX's offer (a buy) or bid (a sell)
            target = (ra if side == BUY else rb) * (1 + sgn * dist * 1e-4)
        else:
            target = mid * (1 + sgn * dist * 1e-4)
        px = int(np.ceil(target * scale)) if side == BUY else int(np.floor(target * scale))
        ts = np.array([t], dtype=np.int64)
        if other is None:
            m.shared_trades.append(aggressive(m, rng, inst, ts, acct, side, None, idx,
                                              avoid_mask(m, owners, m.used_owners), px=np.array([px]),
                                              clip_sigmas=1.5))
        else:
            m.shared_trades.append(shared_trades(
                m, rng, inst, ts, np.array([other], np.int32), np.array([acct], np.int32),
                np.array([side], np.int8), px=np.array([px]), maker_lead_s=rng.uniform(0.2, 5.0, 1),
                maker_extra=np.zeros(1, np.int64), episode=idx, clip_sigmas=1.5))
        price = px / scale
        edge = ra if side == BUY else rb
        ep.params.update({
            "price": price, "shared_mid": round(mid, 8), "refx_bid": rb, "refx_ask": ra,
            "distance_bps": round(abs(price / mid - 1) * 1e4, 3),
            "refx_distance_bps": round(sgn * (price / edge - 1) * 1e4, 3),
        })

    m.defer(build)
    return ep


# ---- abnormal move ------------------------------------------------------------------------------

def inject_abnormal_move(m, rng, slot):
    cfg, ec = m.cfg, m.cfg.episodes
    # after the warm-up when the run has room for the longest episode after it; a shorter run, after its half
    warmup = ec.abnormal_warmup_s
    if warmup + ec.abnormal_duration_s.hi > cfg.minutes * 60:
        warmup = cfg.minutes * 30
    earliest = cfg.start_ns + int(warmup * NS)
    placed = place(m, rng, slot, ec.abnormal_duration_s.draw(rng), ec.abnormal_duration_s.lo, earliest)
    if placed is None:
        return None
    inst, t0, dur_ns = placed
    move = sign_of(rng) * ec.abnormal_move_pct.draw(rng)
    ramp = min(ec.abnormal_ramp_s.draw(rng), dur_ns / NS)
    mult = ec.abnormal_volume_multiple.draw(rng)
    # Both venues, the same step: the whole market moves, it is not one venue's doing.
    m.prices.add_impact(inst, (SHARED, REFX), [t0, t0 + int(ramp * NS)], [0.0, move * 100], hold=True)
    ep = m.new_episode("abnormal_move", inst, [SHARED, REFX], [], [], t0, t0 + dur_ns, {
        "move_pct": round(move, 4), "direction": "up" if move > 0 else "down", "ramp_s": round(ramp, 3),
        "volume_multiple": round(mult, 3), "duration_s": round(dur_ns / NS, 3),
    })
    m.label_orders(ep, [])

    def build():
        more_volume(m, rng, inst, t0, t0 + dur_ns, mult, 0.7 if move > 0 else 0.3, (SHARED, REFX))

    m.defer(build)
    return ep


__all__ = ["inject_pump_and_dump", "inject_off_market", "inject_abnormal_move", "PRINT_QUIET_S"]
