"""Owner trading episodes: round trips, front running, momentum ignition, marking the close.

- ``round_trip``: two *unlinked* owners A and B; A sells to B, then within 10-120 s B sells
  back to A at the first price +-5 bps and the first size +-10%; 3-6 such round trips.
  (Linked owners trading with each other are ``wash_trade``'s ``linked_group`` variant.)
- ``front_running``: an owner trades 1-3 times in the direction of another (unlinked)
  owner's large trade (10-50x typical) 1-30 s before it and unwinds 10-120 s after it;
  the large trade moves SHARED 5-20 bps for good (REFX catches up in 5-30 s).  Variants: the two owners' accounts on
  the same platform or on different ones.  ``owners`` is the front-runner; the large
  trade's owner and account are in ``params``; ``trade_ids`` has both owners' trades.
- ``momentum_ignition``: 5-20 aggressive orders by one owner within 1-5 s move SHARED
  20-80 bps; 1-60 s later the owner trades against the move, and the price fades back.  When
  a fixing falls while the move stands, the episode also marks that fixing (``related_types``
  lists ``marking_the_close``).
- ``marking_the_close``: one owner's 5-20 aggressive, normal-sized trades in the 1-5
  minutes before a fixing (``fixings_ns`` in labels.json) push SHARED 30-150 bps, the
  push accelerating into the fixing; the price returns 10-60 s after it.

Price moves are SHARED impacts (``PriceModel.add_impact``): REFX does not follow a transient
move made on SHARED, so a large one can also show as a price dislocation (``related_types``).
"""
from __future__ import annotations

import numpy as np

from .config import NS, SHARED, fixings_ns
from .episode_kit import (MARKET, SIDE_NAMES, account_ids, aggressive, avoid_mask, either, fit, lasting_move, lots,
                          owner_ids, place, shared_mid, spread_times, typical_usd)
from .flow import BUY, SELL, shared_trades


def split(rng, total, k: int) -> np.ndarray:
    """``total`` lots in k parts of at least one lot each (the total grows to k if smaller).

    >>> int(split(np.random.default_rng(0), 10, 3).sum()), split(np.random.default_rng(0), 1, 2).tolist()
    (10, [1, 1])
    """
    total = max(int(total), k)
    w = rng.uniform(0.5, 1.5, k)
    parts = 1 + np.floor((total - k) * w / w.sum()).astype(np.int64)
    parts[0] += total - parts.sum()
    return parts


def _direction(rng) -> int:
    return BUY if rng.random() < 0.5 else SELL


# ---- round trip -------------------------------------------------------------------------------

def _pair_trades(m, rng, idx, inst, ts, buyer, seller, px=None, qty=None) -> dict:
    n = len(ts)
    buyer_rests = rng.random(n) < 0.5
    maker = np.where(buyer_rests, buyer, seller).astype(np.int32)
    taker = np.where(buyer_rests, seller, buyer).astype(np.int32)
    aggr = np.where(buyer_rests, SELL, BUY).astype(np.int8)
    return shared_trades(m, rng, inst, ts, maker, taker, aggr, qty=qty, px=px, maker_lead_s=rng.uniform(0.2, 5.0, n),
                         maker_extra=np.zeros(n, np.int64), episode=idx, clip_sigmas=1.5)


def inject_round_trip(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    a_owner = m.pick_owner(rng, lambda o: True)
    if a_owner is None:
        return None
    a = int(rng.choice(pop.accounts_of(a_owner)))
    b = m.pick_counterparty(rng, [a_owner])
    b_owner = int(pop.account_owner[b])
    n = ec.round_trip_n.draw_int(rng)
    leg_r, pause_r = ec.round_trip_leg_s, ec.round_trip_pause_s
    legs = np.exp(rng.uniform(np.log(leg_r.lo), np.log(leg_r.hi), n))  # log-uniform: mostly quick round trips
    pauses = rng.uniform(pause_r.lo, pause_r.hi, n - 1)
    los = [leg_r.lo] * n + [pause_r.lo] * (n - 1)
    parts = list(legs) + list(pauses)
    placed = place(m, rng, slot, sum(parts), sum(los))
    if placed is None:
        return None
    inst, t0, dur_ns = placed
    parts = fit(parts, los, dur_ns / NS)
    legs, pauses = np.array(parts[:n]), np.array(parts[n:] + [0.0])
    starts = np.concatenate([[0.0], np.cumsum(legs + pauses)[:-1]])
    out_ts = t0 + (starts * NS).astype(np.int64)
    back_ts = np.minimum(t0 + ((starts + legs) * NS).astype(np.int64), t0 + dur_ns)
    m.used_owners.update([a_owner, b_owner])
    ep = m.new_episode("round_trip", inst, [SHARED], owner_ids(m, [a_owner, b_owner]), account_ids(m, [a, b]),
                       int(out_ts[0]), int(back_ts[-1]), {
                           "n_round_trips": n, "leg_s": [round(float(x), 3) for x in (back_ts - out_ts) / NS],
                           "duration_s": round(float(back_ts[-1] - out_ts[0]) / NS, 3),
                           "seller_first": pop.owner_ids[a_owner], "linked": False,
                           "platforms": sorted({m.platform_of(a), m.platform_of(b)}),
                       })
    m.label_orders(ep, [a, b])

    def build():
        idx = m.index_of(ep)
        out = _pair_trades(m, rng, idx, inst, out_ts, b, a)  # A -> B: A sells to B
        listing = m.cfg.instruments[inst].shared
        tick_bps = 1e4 / out["px"]  # rounding to a tick must not push the price past the tolerance
        d_bps = rng.uniform(-1, 1, n) * np.maximum(ec.round_trip_price_bps - tick_bps, 0.0)
        back_px = np.rint(out["px"] * (1 + d_bps * 1e-4)).astype(np.int64)
        q = out["qty"]
        tol = ec.round_trip_size_pct / 100
        back_qty = np.clip(np.rint(q * rng.uniform(1 - tol, 1 + tol, n)), np.ceil(q * (1 - tol)),
                           np.floor(q * (1 + tol))).astype(np.int64)
        back = _pair_trades(m, rng, idx, inst, back_ts, a, b, px=back_px, qty=np.maximum(back_qty, 1))  # B -> A
        m.shared_trades.extend([out, back])
        ep.params.update({
            "price_diff_bps": [round(float(x), 3) for x in (back_px / out["px"] - 1) * 1e4],
            "size_diff_pct": [round(float(x), 3) for x in (back["qty"] / q - 1) * 100],
            "tick_size": listing.tick_size,
        })

    m.defer(build)
    return ep


# ---- front running ------------------------------------------------------------------------

FRONT_VARIANTS = ("same_platform", "cross_platform")


def inject_front_running(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    variant = m.next_variant("front_running", FRONT_VARIANTS, rng)
    f_owner = m.pick_owner(rng, lambda o: True)
    if f_owner is None:
        return None
    f_acct = int(rng.choice(pop.accounts_of(f_owner)))
    f_plat = int(pop.account_platform[f_acct])
    v_acct = m.pick_counterparty(rng, [f_owner], platform=f_plat if variant == "same_platform" else 1 - f_plat)
    v_owner = int(pop.account_owner[v_acct])
    lead, unwind = ec.front_lead_s.draw(rng), ec.front_unwind_s.draw(rng)
    placed = place(m, rng, slot, lead + unwind, lead + unwind)
    if placed is None:
        return None
    inst, t0, _ = placed
    tv = t0 + int(lead * NS)
    n_f, n_u = ec.front_n_trades.draw_int(rng), ec.front_n_trades.draw_int(rng)
    front_ts = np.sort(tv - (np.concatenate([[lead], rng.uniform(1.0, lead, n_f - 1)]) * NS).astype(np.int64))
    unwind_ts = np.sort(tv + (np.concatenate([[unwind], rng.uniform(1.0, unwind, n_u - 1)]) * NS).astype(np.int64))
    side = _direction(rng)
    impact = ec.front_impact_bps.draw(rng)
    # The large trade moves SHARED for good (it carried information): what the front-runner bets on.
    follow = lasting_move(m, rng, inst, tv, impact if side == BUY else -impact)
    m.used_owners.update([f_owner, v_owner])
    ep = m.new_episode("front_running", inst, [SHARED], owner_ids(m, [f_owner]), account_ids(m, [f_acct]),
                       int(front_ts[0]), int(unwind_ts[-1]), {
                           "variant": variant, "side": SIDE_NAMES[side], "lead_s": round(lead, 3),
                           "unwind_s": round(unwind, 3), "impact_bps": round(impact, 3),
                           "refx_follow_s": round(follow, 3),
                           "n_front_trades": n_f, "n_unwind_trades": n_u, "large_trade_ns": int(tv),
                           "victim_owner": pop.owner_ids[v_owner], "victim_account": pop.account_ids[v_acct],
                           "front_platform": m.platform_of(f_acct), "victim_platform": m.platform_of(v_acct),
                       })
    m.label_orders(ep, [f_acct])

    def build():
        idx = m.index_of(ep)
        typical = typical_usd(m, inst)
        mid = shared_mid(m, inst, [tv])[0]
        v_mult, f_mult = ec.front_victim_multiple.draw(rng), ec.front_size_multiple.draw(rng)
        avoid = avoid_mask(m, [f_owner, v_owner], m.used_owners)
        f_qty = lots(m, inst, f_mult * typical, mid)
        m.shared_trades.append(aggressive(m, rng, inst, front_ts, f_acct, side, split(rng, f_qty, n_f), idx, avoid))
        m.shared_trades.append(aggressive(m, rng, inst, np.array([tv]), v_acct, side,
                                          lots(m, inst, [v_mult * typical], mid), idx, avoid))
        m.shared_trades.extend(either(m, rng, inst, unwind_ts, f_acct, 1 - side, split(rng, f_qty, n_u), idx, avoid))
        ep.params.update({"victim_size_multiple": round(v_mult, 3), "front_size_multiple": round(f_mult, 3),
                          "typical_notional_usd": typical})

    m.defer(build)
    return ep


# ---- momentum ignition ----------------------------------------------------------------------

def inject_momentum_ignition(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    o = m.pick_owner(rng, lambda o: True)
    if o is None:
        return None
    acct = int(rng.choice(pop.accounts_of(o)))
    n, n_rev = ec.ignition_n_orders.draw_int(rng), ec.ignition_n_reverse.draw_int(rng)
    burst, delay = ec.ignition_burst_s.draw(rng), ec.ignition_reverse_delay_s.draw(rng)
    move, decay = ec.ignition_move_bps.draw(rng), ec.ignition_decay_s.draw(rng)
    rev_span = rng.uniform(0.5, 5.0)
    total = burst + delay + max(rev_span, decay)
    placed = place(m, rng, slot, total, total)
    if placed is None:
        return None
    inst, t0, _ = placed
    side = _direction(rng)
    t_peak, t_rev = t0 + int(burst * NS), t0 + int((burst + delay) * NS)
    burst_ts = spread_times(rng, t0, t_peak - t0, n)  # the first at the start, the last at the peak
    rev_ts = np.sort(np.concatenate([[t_rev], t_rev + rng.integers(0, int(rev_span * NS), n_rev - 1)])).astype(np.int64)
    signed = move if side == BUY else -move
    # The burst moves SHARED; the move holds until the owner trades against it, then fades.
    m.prices.add_impact(inst, (SHARED,), [t0, t_peak, t_rev, t_rev + int(decay * NS)], [0.0, signed, signed, 0.0])
    m.used_owners.add(o)
    # A burst whose move still stands at a reference-price fixing and fades after it also marks that
    # fixing: marking_the_close naming the igniter there is right, not a false positive.
    at_fixing = any(t0 < f < t_rev + int(decay * NS) for f in fixings_ns(m.cfg))
    ep = m.new_episode("momentum_ignition", inst, [SHARED], owner_ids(m, [o]), account_ids(m, [acct]),
                       int(burst_ts[0]), int(rev_ts[-1]), {
                           "side": SIDE_NAMES[side], "n_orders": n, "burst_s": round(burst, 3),
                           "move_bps": round(move, 3), "reverse_delay_s": round(delay, 3), "n_reverse": n_rev,
                           "decay_s": round(decay, 3), "peak_ns": int(t_peak), "reverse_ns": int(t_rev),
                       })
    m.label_orders(ep, [acct], related=("price_dislocation", "abnormal_move")
                   + (("marking_the_close",) if at_fixing else ()))

    def build():
        idx = m.index_of(ep)
        avoid = avoid_mask(m, [o], m.used_owners)
        mid = shared_mid(m, inst, burst_ts)
        qty = lots(m, inst, rng.uniform(0.5, 2.0, n) * typical_usd(m, inst), mid)
        m.shared_trades.append(aggressive(m, rng, inst, burst_ts, acct, side, qty, idx, avoid))
        back = split(rng, max(1, int(qty.sum() * rng.uniform(0.5, 1.0))), n_rev)
        m.shared_trades.extend(either(m, rng, inst, rev_ts, acct, 1 - side, np.maximum(back, 1), idx, avoid))

    m.defer(build)
    return ep


# ---- marking the close ------------------------------------------------------------------------

def inject_marking_the_close(m, rng, slot):
    cfg, ec, pop = m.cfg, m.cfg.episodes, m.pop
    lo_run, hi_run = cfg.start_ns + 5 * NS, cfg.end_ns - 5 * NS
    o = m.pick_owner(rng, lambda o: True)
    if o is None:
        return None
    lead, revert = ec.marking_lead_s.draw(rng), ec.marking_revert_s.draw(rng)
    cands = [(f, i) for f in fixings_ns(cfg) if slot[0] < f <= slot[1] for i in m.instrument_order(rng)]
    placed = None
    for k in rng.permutation(len(cands)).tolist():
        f, inst = cands[k]
        # Shorter lead / reversion where the run's edges leave less room (but never below the range).
        lead_k = min(lead, (f - lo_run) / NS)
        revert_k = min(revert, (hi_run - f) / NS)
        if lead_k < ec.marking_lead_s.lo or revert_k < ec.marking_revert_s.lo:
            continue
        if m.scheduler.reserve(MARKET, inst, f - int(lead_k * NS), f + int(revert_k * NS)):
            placed = (f, inst, lead_k, revert_k)
            break
    if placed is None:
        return None
    f, inst, lead, revert = placed
    acct = int(rng.choice(pop.accounts_of(o)))
    side = _direction(rng)
    move = ec.marking_move_bps.draw(rng)
    signed = move if side == BUY else -move
    start = f - int(lead * NS)
    m.prices.add_impact(inst, (SHARED,), [start, start + int(lead * NS / 2), f, f + int(revert * NS)],
                        [0.0, 0.3 * signed, signed, 0.0])
    n = ec.marking_n_trades.draw_int(rng)
    # More of the trades close to the fixing, where they move the reference price most.
    u = np.concatenate([[1.0], rng.uniform(0.02, 1.0, n - 1)])
    ts = np.sort(f - (lead * u ** 2 * NS).astype(np.int64))
    m.used_owners.add(o)
    # One who pushes the price into the fixing does not hit the other side there meanwhile (that would undo
    # the push): its everyday flow that way pauses for the campaign, the rest of its trading goes on.
    m.quiet.append((o, inst, start, f, 1 - side))
    ep = m.new_episode("marking_the_close", inst, [SHARED], owner_ids(m, [o]), account_ids(m, [acct]), start, f, {
        "fixing_ns": int(f), "side": SIDE_NAMES[side], "lead_s": round(lead, 3), "move_bps": round(move, 3),
        "revert_s": round(revert, 3), "n_trades": n, "platform": m.platform_of(acct),
    })
    m.label_orders(ep, [acct], related=("price_dislocation", "abnormal_move"))

    def build():
        idx = m.index_of(ep)
        m.shared_trades.append(aggressive(m, rng, inst, ts, acct, side, None, idx,
                                          avoid_mask(m, [o], m.used_owners), clip_sigmas=1.5))

    m.defer(build)
    return ep


__all__ = ["inject_round_trip", "inject_front_running", "inject_momentum_ignition", "inject_marking_the_close"]
