"""Look-alikes of the extra types: legitimate activity that shares a surface feature with them.

Each label carries ``params.mimics``: the detectors it is meant to fool (none should alert).

- ``market_maker_quoting``: a market maker posts 2-6 small orders a second at the touch on
  both sides for 30-120 s and cancels 92-98% of them (the rest are filled): a high cancel
  ratio and message rate with no large orders and no one-sided intent (spoofing, layering,
  excessive messaging; its rate is ordinary next to its own quoting baseline).
- ``cross_venue_arbitrage``: REFX moves 10-30 bps first; an arbitrageur buys (sells) 2-6
  times on SHARED within seconds, and SHARED follows over 2-10 s: same-direction trades
  ahead of a SHARED move, caused by the other venue (front running, momentum ignition).
- ``honest_large_order``: a 10-50x typical order that trades in full (never cancelled),
  with no injected trading by others around it, moving SHARED 5-20 bps for good (REFX
  catching up in 5-30 s), like the large trade of a front-running episode (front running,
  spoofing, layering).
- ``news_jump``: SHARED and REFX step 0.5-0.8% together within 0.5-3 s on 1.5-3x volume for
  30-60 s: below ``abnormal_move``'s range, and no venue is ever out of line with the other
  (off-market, price dislocation, abnormal move, marking the close).
- ``dual_platform_trader``: an owner with accounts on both platforms trades 2-6 times on
  either one against other owners and cancels 1-3 normal-sized orders after 5-60 s
  (cross-venue spoofing and layering: no large orders, nothing opposite a cancel).
"""
from __future__ import annotations

import numpy as np

from .config import LOOKALIKE_TARGETS, NS, REFX, SHARED
from .episode_kit import (SIDE_NAMES, account_ids, aggressive, avoid_mask, bps_ticks, either, lasting_move, lots,
                          more_volume, owner_ids, passive, place, resting, shared_touch, sign_of, typical_usd)
from .flow import BUY, SELL
from .population import ARBITRAGEUR, HK, MARKET_MAKER, OV

NEWS_QUIET_S = 30.0  # kept free before a news jump, so "before" prices are clean


def _mimics(name: str) -> list[str]:
    extra = {"news_jump": ["price_dislocation"]}  # also a price move that is not a dislocation
    return sorted(set(LOOKALIKE_TARGETS[name]) | set(extra.get(name, [])))


def _role_account(m, rng, role: int) -> tuple[int, int] | None:
    pop = m.pop
    owners = np.flatnonzero(pop.owner_role == role)
    if not len(owners):
        return None
    o = int(rng.choice(owners))
    return o, int(rng.choice(pop.accounts_of(o)))


def inject_market_maker_quoting(m, rng, slot):
    ec = m.cfg.episodes
    who = _role_account(m, rng, MARKET_MAKER)
    placed = place(m, rng, slot, ec.mm_quoting_duration_s.draw(rng), ec.mm_quoting_duration_s.lo)
    if who is None or placed is None:
        return None
    o, acct = who
    inst, t0, dur_ns = placed
    t1 = t0 + dur_ns
    rate, share = ec.mm_quoting_rate.draw(rng), ec.mm_quoting_cancel_share.draw(rng)
    n_q = max(20, int(round(rate * dur_ns / NS)))
    n_f = max(1, int(round(n_q * (1 - share) / share)))
    ep = m.new_episode("market_maker_quoting", inst, [SHARED], owner_ids(m, [o]), account_ids(m, [acct]), t0, t1, {
        "n_orders": n_q + n_f, "n_cancelled": n_q, "n_fills": n_f, "cancel_ratio": round(n_q / (n_q + n_f), 4),
        "order_rate_per_s": round((n_q + n_f) * NS / dur_ns, 3), "duration_s": round(dur_ns / NS, 3),
        "mimics": _mimics("market_maker_quoting"),
    })
    m.label_orders(ep, [acct])

    def build():
        idx = m.index_of(ep)
        ts = np.sort(rng.integers(t0, t1 - 3 * NS, n_q)).astype(np.int64)
        mid, bid, ask = shared_touch(m, inst, ts)
        side = (rng.random(n_q) < 0.5).astype(np.int8)
        qty = lots(m, inst, rng.uniform(0.2, 1.0, n_q) * typical_usd(m, inst), mid)
        life = (rng.uniform(0.2, 3.0, n_q) * NS).astype(np.int64)
        amend = rng.random(n_q) < m.cfg.flow.p_amend
        amend_at = np.where(amend, ts + (life * rng.uniform(0.2, 0.8, n_q)).astype(np.int64), -1)
        px = np.where(side == BUY, bid, ask)
        amend_px = np.where(amend, np.where(side == BUY, px - 1, px + 1), -1)
        amend_qty = np.where(amend, np.maximum(1, np.rint(qty * rng.uniform(0.5, 1.5, n_q))), -1).astype(np.int64)
        m.passive_orders.append(resting(m, inst, ts, side, px, qty, acct, life, idx, amend_at, amend_px, amend_qty))
        fts = np.sort(rng.integers(t0, t1, n_f)).astype(np.int64)
        fside = (rng.random(n_f) < 0.5).astype(np.int8)
        avoid = avoid_mask(m, [o], m.used_owners)
        for s in (BUY, SELL):
            if (fside == s).any():
                m.shared_trades.append(passive(m, rng, inst, fts[fside == s], acct, s, None, idx, avoid,
                                               lead_s=rng.uniform(0.2, 2.0, int((fside == s).sum())),
                                               clip_sigmas=1.0))

    m.defer(build)
    return ep


def inject_cross_venue_arbitrage(m, rng, slot):
    ec = m.cfg.episodes
    who = _role_account(m, rng, ARBITRAGEUR)
    conv = ec.arb_converge_s.draw(rng)
    placed = place(m, rng, slot, conv + 10, conv + 10)
    if who is None or placed is None:
        return None
    o, acct = who
    inst, w0, _ = placed
    t0 = w0 + 5 * NS
    gap = sign_of(rng) * ec.arb_gap_bps.draw(rng)
    # REFX jumps first; SHARED converges to it over a few seconds (both for good).
    m.prices.add_impact(inst, (REFX,), [t0, t0 + 200_000_000], [0.0, gap], hold=True)
    m.prices.add_impact(inst, (SHARED,), [t0 + 300_000_000, t0 + int(conv * NS)], [0.0, gap], hold=True)
    n = ec.arb_n_trades.draw_int(rng)
    ts = np.sort(t0 + (rng.uniform(0.1, 0.8 * conv, n) * NS).astype(np.int64))
    side = BUY if gap > 0 else SELL  # SHARED is the cheap venue after REFX jumps up
    ep = m.new_episode("cross_venue_arbitrage", inst, [SHARED, REFX], owner_ids(m, [o]), account_ids(m, [acct]),
                       int(ts[0]), int(ts[-1]), {
                           "gap_bps": round(abs(gap), 3), "side": SIDE_NAMES[side], "refx_move_ns": int(t0),
                           "converge_s": round(conv, 3), "n_trades": n, "mimics": _mimics("cross_venue_arbitrage"),
                       })
    m.label_orders(ep, [acct])

    def build():
        idx = m.index_of(ep)
        mid = shared_touch(m, inst, ts)[0]
        qty = lots(m, inst, rng.uniform(1.0, 3.0, n) * typical_usd(m, inst), mid)
        m.shared_trades.append(aggressive(m, rng, inst, ts, acct, side, qty, idx, avoid_mask(m, [o], m.used_owners)))

    m.defer(build)
    return ep


def inject_honest_large_order(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    o = m.pick_owner(rng, lambda o: True)
    before, after = ec.front_lead_s.hi, ec.front_unwind_s.hi  # the whole span a front-runner would use
    placed = place(m, rng, slot, before + after, before + after)
    if o is None or placed is None:
        return None
    inst, w0, _ = placed
    t = w0 + int(before * NS)
    acct = int(rng.choice(pop.accounts_of(o)))
    side = BUY if rng.random() < 0.5 else SELL
    how = m.next_variant("honest_large_order", ("aggressive", "passive"), rng)
    impact = ec.front_impact_bps.draw(rng)
    follow = lasting_move(m, rng, inst, t, impact if side == BUY else -impact)
    m.used_owners.add(o)
    ep = m.new_episode("honest_large_order", inst, [SHARED], owner_ids(m, [o]), account_ids(m, [acct]), t, t, {
        "side": SIDE_NAMES[side], "execution": how, "impact_bps": round(impact, 3), "refx_follow_s": round(follow, 3),
        "mimics": _mimics("honest_large_order"),
    })
    m.label_orders(ep, [acct])

    def build():
        idx = m.index_of(ep)
        mult = ec.large_order_multiple.draw(rng)
        mid = shared_touch(m, inst, [t])[0]
        qty = lots(m, inst, [mult * typical_usd(m, inst)], mid)
        build_one = aggressive if how == "aggressive" else passive
        m.shared_trades.append(build_one(m, rng, inst, np.array([t]), acct, side, qty, idx,
                                         avoid_mask(m, [o], m.used_owners)))
        ep.params.update({"size_multiple": round(mult, 3), "typical_notional_usd": typical_usd(m, inst)})

    m.defer(build)
    return ep


def inject_news_jump(m, rng, slot):
    ec = m.cfg.episodes
    ramp, vol_s = ec.news_ramp_s.draw(rng), ec.news_volume_s.draw(rng)
    placed = place(m, rng, slot, NEWS_QUIET_S + ramp + vol_s, NEWS_QUIET_S + ramp + vol_s)
    if placed is None:
        return None
    inst, w0, dur_ns = placed
    t0 = w0 + int(NEWS_QUIET_S * NS)
    t1 = w0 + dur_ns
    jump = sign_of(rng) * ec.news_jump_pct.draw(rng)
    mult = ec.news_volume_multiple.draw(rng)
    m.prices.add_impact(inst, (SHARED, REFX), [t0, t0 + int(ramp * NS)], [0.0, jump * 100], hold=True)
    ep = m.new_episode("news_jump", inst, [SHARED, REFX], [], [], t0, t1, {
        "jump_pct": round(jump, 4), "ramp_s": round(ramp, 3), "volume_multiple": round(mult, 3),
        "volume_s": round(vol_s, 3), "mimics": _mimics("news_jump"),
    })
    m.label_orders(ep, [])
    m.defer(lambda: more_volume(m, rng, inst, t0, t1, mult, 0.7 if jump > 0 else 0.3, (SHARED, REFX)))
    return ep


def inject_dual_platform_trader(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    o = m.pick_owner(rng, lambda o: {HK, OV} <= set(pop.account_platform[pop.accounts_of(o)].tolist()))
    placed = place(m, rng, slot, ec.dual_duration_s.draw(rng), ec.dual_duration_s.lo)
    if o is None or placed is None:
        return None
    inst, t0, dur_ns = placed
    t1 = t0 + dur_ns
    accts = pop.accounts_of(o)
    hk = int(rng.choice(accts[pop.account_platform[accts] == HK]))
    ov = int(rng.choice(accts[pop.account_platform[accts] == OV]))
    n_tr, n_cx = ec.dual_n_trades.draw_int(rng), ec.dual_n_cancelled.draw_int(rng)
    m.used_owners.add(o)
    ep = m.new_episode("dual_platform_trader", inst, [SHARED], owner_ids(m, [o]), account_ids(m, [hk, ov]), t0, t1, {
        "n_trades": n_tr, "n_cancelled": n_cx, "duration_s": round(dur_ns / NS, 3),
        "mimics": _mimics("dual_platform_trader"),
    })
    m.label_orders(ep, [hk, ov])

    def build():
        idx = m.index_of(ep)
        avoid = avoid_mask(m, [o], m.used_owners)
        ts = np.sort(np.concatenate([[t0], rng.integers(t0, t1, n_tr - 1)])).astype(np.int64)
        on = np.where(np.arange(n_tr) % 2 == 0, hk, ov)  # both platforms in turn
        sides = (rng.random(n_tr) < 0.5).astype(np.int8)
        for a in (hk, ov):
            for s in (BUY, SELL):
                sel = (on == a) & (sides == s)
                if sel.any():
                    m.shared_trades.extend(either(m, rng, inst, ts[sel], a, s, None, idx, avoid))
        cts = np.sort(rng.integers(t0, t1 - 5 * NS, n_cx)).astype(np.int64)
        mid, bid, ask = shared_touch(m, inst, cts)
        side = (rng.random(n_cx) < 0.5).astype(np.int8)
        away = bps_ticks(m, inst, mid, rng.uniform(2, 10, n_cx))
        px = np.where(side == BUY, bid - away, ask + away)
        qty = lots(m, inst, rng.uniform(0.5, 2.0, n_cx) * typical_usd(m, inst), mid)
        life = np.minimum(rng.uniform(5, 60, n_cx) * NS, t1 - cts).astype(np.int64)
        acct = np.where(rng.random(n_cx) < 0.5, hk, ov)
        m.passive_orders.append(resting(m, inst, cts, side, px, qty, acct, life, idx))

    m.defer(build)
    return ep


__all__ = ["inject_market_maker_quoting", "inject_cross_venue_arbitrage", "inject_honest_large_order",
           "inject_news_jump", "inject_dual_platform_trader", "NEWS_QUIET_S"]
