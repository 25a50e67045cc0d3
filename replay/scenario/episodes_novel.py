"""A manipulation pattern no rule detector is written for: quote flickering.

An owner flashes ordinary-sized orders (0.5-2x typical) at the touch of one side of SHARED,
one at a time, each cancelled 50-500 ms after it was placed, 15-40 times in 30-90 s; while
the flicker makes that side look deeper and keeps re-appearing, the owner trades one or two
ordinary trades on the *other* side.  Each order is normal in size (the spoofing rule wants
several times the typical size), one price level at a time (the layering rule wants several),
and the message rate is a few times the owner's usual, not the 20-100x of quote stuffing:
every rule that looks at one of these dimensions stays quiet.  What gives it away is the
*combination* in one window - nearly every order cancelled within a second, cancels on the
side opposite to the owner's trading, an order-to-trade ratio far above the owner's own -
which is what ``behaviour_anomaly`` scores.

It is registered like the rest of the catalogue (``config.ALL_EPISODE_TYPES``,
``episodes.EPISODE_TYPES``), so ``--episodes all`` and ``--episodes quote_flickering`` inject it.
No rule detector carries its name: its label names ``behaviour_anomaly`` in ``related_types`` (the
detector that may rightly fire on it), and ``bench/bench_behaviour.py`` scores it for that detector.

>>> from replay.scenario import ScenarioConfig, simulate
>>> sc = simulate(ScenarioConfig(seed=3, minutes=6, events_per_second=100, episode_types=(NAME,)))
>>> [(e.type, len(e.order_ids) >= FLICKER_N.lo, e.related_types) for e in sc.episodes]
[('quote_flickering', True, ['behaviour_anomaly'])]
"""
from __future__ import annotations

import numpy as np

from .config import NS, SHARED, Range
from .episode_kit import SIDE_NAMES, account_ids, aggressive, avoid_mask, lots, owner_ids, place, resting, \
    shared_touch, typical_usd
from .flow import BUY

NAME = "quote_flickering"
EXPECTED_DETECTOR = "behaviour_anomaly"
# Its ranges stay here, beside the one function that draws them (config.EpisodeConfig holds the rule types')
FLICKER_DURATION_S = Range(30, 90)
FLICKER_N = Range(15, 40)  # orders flashed, one live at a time
FLICKER_LIFE_S = Range(0.05, 0.5)  # placed -> cancelled
FLICKER_SIZE_MULTIPLE = Range(0.5, 2.0)  # each order, x typical
FLICKER_N_EXEC = Range(1, 2)  # ordinary trades on the other side
FLICKER_PER_MINUTE = 1 / 10
# Not before this far into the run (or a third of a short one): whatever is to find it needs a baseline of
# ordinary behaviour first, as abnormal_move waits for its detector's (EpisodeConfig.abnormal_warmup_s)
FLICKER_EARLIEST_S = 300


def inject_quote_flickering(m, rng, slot):
    """One flickering episode on a free stretch of one instrument (``None`` when there is no room)."""
    o = m.pick_owner(rng, lambda o: True)
    if o is None:
        return None
    acct = int(rng.choice(m.pop.accounts_of(o)))
    dur = FLICKER_DURATION_S.draw(rng)
    earliest = m.cfg.start_ns + int(min(FLICKER_EARLIEST_S, m.cfg.minutes * 20) * NS)
    placed = place(m, rng, slot, dur, FLICKER_DURATION_S.lo, earliest)
    if placed is None:
        return None
    inst, t0, dur_ns = placed
    n = FLICKER_N.draw_int(rng)
    # one order live at a time: each placed at a random point of its own slice of the window
    edges = t0 + (np.arange(n + 1) * dur_ns // n).astype(np.int64)
    life_ns = (rng.uniform(FLICKER_LIFE_S.lo, FLICKER_LIFE_S.hi, n) * NS).astype(np.int64)
    room = np.maximum(edges[1:] - edges[:-1] - life_ns - 1, 1)
    order_ts = edges[:-1] + (rng.random(n) * room).astype(np.int64)
    n_exec = FLICKER_N_EXEC.draw_int(rng)
    exec_ts = np.sort(rng.integers(t0 + dur_ns // 3, t0 + dur_ns, n_exec)).astype(np.int64)
    side = BUY if rng.random() < 0.5 else 1 - BUY
    m.used_owners.add(o)
    ep = m.new_episode(NAME, inst, [SHARED], owner_ids(m, [o]), account_ids(m, [acct]), int(order_ts[0]),
                       int(max((order_ts + life_ns).max(), exec_ts.max())), {
                           "side": SIDE_NAMES[side], "execution_side": SIDE_NAMES[1 - side], "n_orders": n,
                           "n_exec_trades": n_exec, "life_ms": [round(float(x) / 1e6, 1) for x in life_ns],
                           "platform": m.platform_of(acct),
                       })
    # no rule detector is named after it: the learning detector is the one that may rightly fire on it
    m.label_orders(ep, [acct], resting_only=True, related=(EXPECTED_DETECTOR,))

    def build():
        idx = m.index_of(ep)
        mid, bid, ask = shared_touch(m, inst, order_ts)
        px = np.where(side == BUY, bid, ask)  # at the touch: the flicker is what the book shows
        size = rng.uniform(FLICKER_SIZE_MULTIPLE.lo, FLICKER_SIZE_MULTIPLE.hi, n)
        qty = lots(m, inst, size * typical_usd(m, inst), mid)
        m.passive_orders.append(resting(m, inst, order_ts, side, px, qty, acct, life_ns, idx))
        exec_qty = lots(m, inst, rng.uniform(0.5, 1.5, n_exec) * typical_usd(m, inst), mid[0])
        m.shared_trades.append(aggressive(m, rng, inst, exec_ts, acct, 1 - side, exec_qty, idx,
                                          avoid_mask(m, [o], m.used_owners)))
        ep.params.update({"typical_notional_usd": typical_usd(m, inst),
                          "size_multiple": [round(float(x), 3) for x in size]})

    m.defer(build)
    return ep
