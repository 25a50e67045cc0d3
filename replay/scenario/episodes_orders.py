"""Order-book episodes: spoofing, layering, and excessive messaging (quote stuffing).

Spoofing and layering share one shape: an owner rests large orders near the touch on one
side of SHARED (spoofing: 1-3 orders on one or two price levels; layering: 3-8 on successive
levels), executes on the *other* side within seconds (taking liquidity, or through a small
resting order that a background trader fills), then cancels every large order, unfilled, 1-30 s after placing it
and always after the execution.  Variant ``cross_venue``: the large orders go through the
owner's account on one platform and the execution through its account on the other (both
route to SHARED; REFX has no accounts, so a SHARED-spoof/REFX-execution pair cannot be seen).

The label's ``order_ids`` are the large orders only; ``trade_ids`` the execution.

Excessive messaging: an owner with an ordinary activity level sends new / amend / cancel
messages at 20-100x its own background rate (all instruments) for 10-120 s, with at most a
couple of trades.  Its ``order_ids`` are all of the owner's orders in the window.
"""
from __future__ import annotations

import numpy as np

from .config import NS, SHARED
from .episode_kit import (SIDE_NAMES, account_ids, aggressive, avoid_mask, bps_ticks, lots, owner_ids, passive,
                          place, resting, shared_touch, to_price, typical_usd)
from .flow import BUY, _rates
from .population import HK, OV, TRADER

SPOOF_VARIANTS = ("same_platform", "cross_venue")
EXECUTIONS = ("aggressive", "passive")
PRE_S = 3.0  # room before the first large order for a passive execution order placed earlier


def _both_platforms(m, o: int) -> bool:
    pop = m.pop
    return {HK, OV} <= set(pop.account_platform[pop.accounts_of(o)].tolist())


def _spoofer(m, rng, variant: str):
    """(owner, account of the large orders, account of the execution)."""
    pop = m.pop
    o = m.pick_owner(rng, (lambda o: _both_platforms(m, o)) if variant == "cross_venue" else (lambda o: True))
    if o is None:
        return None
    accts = pop.accounts_of(o)
    if variant == "cross_venue":
        p = int(rng.integers(2))
        return o, int(rng.choice(accts[pop.account_platform[accts] == p])), \
            int(rng.choice(accts[pop.account_platform[accts] != p]))
    a = int(rng.choice(accts))
    return o, a, a


def _resting_episode(m, rng, slot, type_name: str, layered: bool):
    ec = m.cfg.episodes
    variant = m.next_variant(type_name, SPOOF_VARIANTS, rng)
    execution = m.next_variant(type_name + ":execution", EXECUTIONS, rng)
    who = _spoofer(m, rng, variant)
    if who is None:
        return None
    o, spoof_acct, exec_acct = who
    n = (ec.layer_n_orders if layered else ec.spoof_n_orders).draw_int(rng)
    exec_delay = ec.spoof_exec_delay_s.draw(rng)
    n_exec = ec.spoof_n_exec.draw_int(rng)
    exec_at = exec_delay + np.concatenate([[0.0], np.sort(rng.uniform(0.05, 1.0, n_exec - 1))])
    # The large orders go in within a fraction of a second, before the execution ...
    stagger = np.sort(rng.uniform(0.0, min(0.5 if layered else 0.3, 0.8 * exec_delay), n))
    stagger[0] = 0.0
    # ... and each is cancelled 1-30 s after it was placed, always after the (last) execution.
    life = rng.uniform(np.maximum(ec.spoof_life_s.lo, exec_at[-1] - stagger + 0.1), ec.spoof_life_s.hi)
    lead = rng.uniform(0.1, exec_delay + 2.0, n_exec)  # passive execution: its order rests this long
    span = float((stagger + life).max())
    placed = place(m, rng, slot, PRE_S + span, PRE_S + span)
    if placed is None:
        return None
    inst, w0, _ = placed
    t0 = w0 + int(PRE_S * NS)
    order_ts = t0 + (stagger * NS).astype(np.int64)
    life_ns = (life * NS).astype(np.int64)
    exec_ts = t0 + (exec_at * NS).astype(np.int64)
    start = int(order_ts[0])
    if execution == "passive":  # the resting execution order's ``new`` (see flow.shared_trades)
        start = min(start, int((exec_ts - (lead * NS).astype(np.int64) - 1_000_000).min()))
    side = BUY if rng.random() < 0.5 else 1 - BUY
    m.used_owners.add(o)
    ep = m.new_episode(type_name, inst, [SHARED], owner_ids(m, [o]), account_ids(m, [spoof_acct, exec_acct]),
                       start, int((order_ts + life_ns).max()), {
                           "variant": variant, "execution": execution, "side": SIDE_NAMES[side],
                           "execution_side": SIDE_NAMES[1 - side], "n_orders": n, "n_exec_trades": n_exec,
                           "exec_delay_s": round(exec_delay, 3), "life_s": [round(float(x), 3) for x in life],
                           "order_platform": m.platform_of(spoof_acct), "execution_platform": m.platform_of(exec_acct),
                       })
    # a spoof on two levels plus one more order of the owner's is a ladder too: either alert is right
    m.label_orders(ep, [spoof_acct], resting_only=True, related=["spoofing" if layered else "layering"])

    def build():
        idx = m.index_of(ep)
        mid, bid, ask = shared_touch(m, inst, order_ts)
        typical = typical_usd(m, inst)
        mult = (ec.layer_size_multiple if layered else ec.spoof_size_multiple)
        size = np.array([mult.draw(rng) for _ in range(n)])
        if layered:  # one order per level, the first near the touch, each further level one step deeper
            depth_bps = ec.spoof_depth_bps.draw(rng)
            step_bps = ec.layer_step_bps.draw(rng)
            away = bps_ticks(m, inst, mid[0], depth_bps) + np.arange(n) * bps_ticks(m, inst, mid[0], step_bps)
            ep.params["step_bps"] = round(step_bps, 3)
            # levels counted from the touch when the first order went in, so they stay distinct
            px = np.where(side == BUY, bid[0] - away, ask[0] + away)
        else:  # at most two price levels (more is layering), counted from the touch at the first order
            levels = np.array([ec.spoof_depth_bps.draw(rng) for _ in range(min(n, 2))])
            depth_bps = levels[rng.integers(0, len(levels), n)]
            away = bps_ticks(m, inst, mid[0], depth_bps)
            px = np.where(side == BUY, bid[0] - away, ask[0] + away)
        qty = lots(m, inst, size * typical, mid)
        m.passive_orders.append(resting(m, inst, order_ts, side, px, qty, spoof_acct, life_ns, idx))
        exec_qty = lots(m, inst, rng.uniform(0.5, 2.0, n_exec) * typical, mid[0])
        avoid = avoid_mask(m, [o], m.used_owners)
        if execution == "aggressive":
            m.shared_trades.append(aggressive(m, rng, inst, exec_ts, exec_acct, 1 - side, exec_qty, idx, avoid))
        else:
            m.shared_trades.append(passive(m, rng, inst, exec_ts, exec_acct, 1 - side, exec_qty, idx, avoid,
                                           lead_s=lead))
        ep.params.update({
            "typical_notional_usd": typical, "size_multiple": [round(float(x), 3) for x in size],
            "depth_bps": round(float(np.mean(depth_bps)), 3),
            "prices": [to_price(m, inst, p) for p in px],
        })

    m.defer(build)
    return ep


def inject_spoofing(m, rng, slot):
    return _resting_episode(m, rng, slot, "spoofing", layered=False)


def inject_layering(m, rng, slot):
    return _resting_episode(m, rng, slot, "layering", layered=True)


def baseline_messages(m) -> np.ndarray:
    """Each owner's expected background order messages per second, all instruments.

    A taker's order is two messages (new, fill); a maker's two plus a cancel of the rest
    when its order was bigger than the fill.  (Arbitrageurs take a few per cent of the
    takers' share: left out, so the baseline errs high and the multiple low.)
    """
    pop, fc = m.pop, m.cfg.flow
    rate = _rates(m.cfg)["shared"]
    per_acct = np.zeros(pop.n_accounts)
    np.add.at(per_acct, pop.taker_pool, 2.0 * rate * pop.taker_weight)
    np.add.at(per_acct, pop.maker_pool, (2.0 + fc.p_maker_remainder) * rate * pop.maker_weight)
    return np.bincount(pop.account_owner, weights=per_acct, minlength=len(pop.owner_ids))


def inject_excessive_messaging(m, rng, slot):
    ec, pop = m.cfg.episodes, m.pop
    base = baseline_messages(m)
    # An ordinary, reasonably active trader: its own baseline is what the burst is measured against.
    median = float(np.median(base[pop.owner_role == TRADER]))
    o = m.pick_owner(rng, lambda o: base[o] >= median)
    if o is None:
        return None
    placed = place(m, rng, slot, ec.messaging_duration_s.draw(rng), ec.messaging_duration_s.lo)
    if placed is None:
        return None
    inst, t0, dur_ns = placed
    t1 = t0 + dur_ns
    acct = int(rng.choice(pop.accounts_of(o)))
    target = ec.messaging_multiple.draw(rng)
    per_order = 2.0 + ec.messaging_p_amend  # new + cancel, sometimes an amend
    n_orders = max(5, int(round(target * base[o] * dur_ns / NS / per_order)))
    n_trades = ec.messaging_n_trades.draw_int(rng)
    m.used_owners.add(o)
    w = np.array([s.weight for s in m.cfg.instruments])
    ep = m.new_episode("excessive_messaging", inst, [SHARED], owner_ids(m, [o]), account_ids(m, [acct]), t0, t1, {
        "duration_s": round(dur_ns / NS, 3), "target_multiple": round(target, 3),
        "baseline_msgs_per_s": round(float(base[o]), 6),
        "baseline_msgs_per_s_instrument": round(float(base[o] * w[inst] / w.sum()), 6),
        "n_orders": n_orders, "n_trades": n_trades, "platform": m.platform_of(acct),
    })
    m.label_orders(ep, [acct])

    def build():
        idx = m.index_of(ep)
        ts = np.sort(rng.integers(t0, t1 - 20_000_000, n_orders)).astype(np.int64)
        ts[0] = t0
        mid, bid, ask = shared_touch(m, inst, ts)
        side = (rng.random(n_orders) < 0.5).astype(np.int8)
        behind = rng.integers(0, 3, n_orders)  # at the touch or a tick or two behind: never marketable
        px = np.where(side == BUY, bid - behind, ask + behind)
        qty = lots(m, inst, rng.uniform(0.1, 1.0, n_orders) * typical_usd(m, inst), mid)
        life = np.minimum((ec.messaging_order_life_s.lo + rng.random(n_orders) * (
            ec.messaging_order_life_s.hi - ec.messaging_order_life_s.lo)) * NS, t1 - ts).astype(np.int64)
        amend = rng.random(n_orders) < ec.messaging_p_amend
        amend_at = np.where(amend, ts + (life * rng.uniform(0.2, 0.8, n_orders)).astype(np.int64), -1)
        amend_px = np.where(amend, np.where(side == BUY, px - 1, px + 1), -1)
        amend_qty = np.where(amend, np.maximum(1, np.rint(qty * rng.uniform(0.5, 1.5, n_orders))), -1)
        m.passive_orders.append(resting(m, inst, ts, side, px, qty, acct, life, idx, amend_at, amend_px,
                                        amend_qty.astype(np.int64)))
        if n_trades:
            tts = np.sort(rng.integers(t0, t1, n_trades)).astype(np.int64)
            m.shared_trades.append(aggressive(m, rng, inst, tts, acct, (rng.random() < 0.5) * 1, None, idx,
                                              avoid_mask(m, [o], m.used_owners), clip_sigmas=1.5))
        n_msgs = 2 * n_orders + int(amend.sum()) + 2 * n_trades
        ep.params.update({"n_amends": int(amend.sum()), "n_messages": n_msgs,
                          "msgs_per_s": round(n_msgs * NS / dur_ns, 3),
                          "rate_multiple": round(n_msgs * NS / dur_ns / float(base[o]), 3)})

    m.defer(build)
    return ep


__all__ = ["inject_spoofing", "inject_layering", "inject_excessive_messaging", "baseline_messages"]
