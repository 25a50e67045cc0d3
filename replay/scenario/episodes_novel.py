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

Registration (``EPISODE_TYPES`` in ``episodes.py`` and ``ALL_EPISODE_TYPES`` in ``config.py``
are owned elsewhere): ``register()`` adds the type at run time, for benchmarks; the
permanent registration is the two-line patch in ``bench/bench_behaviour.py``'s docstring.

>>> from replay.scenario import ScenarioConfig, simulate
>>> with registered():
...     sc = simulate(ScenarioConfig(seed=3, minutes=6, events_per_second=100, episode_types=(NAME,)))
>>> [(e.type, len(e.order_ids) >= FLICKER_N.lo) for e in sc.episodes]
[('quote_flickering', True)]
>>> from replay.scenario import config
>>> NAME in config.ALL_EPISODE_TYPES  # registered() put the generator back as it was
False
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .config import NS, SHARED, Range
from .episode_kit import SIDE_NAMES, account_ids, aggressive, avoid_mask, lots, owner_ids, place, resting, \
    shared_touch, typical_usd
from .flow import BUY

NAME = "quote_flickering"
# Ranges (config.EpisodeConfig is owned by the generator's author: they move there with the patch)
FLICKER_DURATION_S = Range(30, 90)
FLICKER_N = Range(15, 40)  # orders flashed, one live at a time
FLICKER_LIFE_S = Range(0.05, 0.5)  # placed -> cancelled
FLICKER_SIZE_MULTIPLE = Range(0.5, 2.0)  # each order, x typical
FLICKER_N_EXEC = Range(1, 2)  # ordinary trades on the other side
FLICKER_PER_MINUTE = 1 / 10


def inject_quote_flickering(m, rng, slot):
    """One flickering episode on a free stretch of one instrument (``None`` when there is no room)."""
    o = m.pick_owner(rng, lambda o: True)
    if o is None:
        return None
    acct = int(rng.choice(m.pop.accounts_of(o)))
    dur = FLICKER_DURATION_S.draw(rng)
    placed = place(m, rng, slot, dur, FLICKER_DURATION_S.lo)
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
    m.label_orders(ep, [acct], resting_only=True)

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


def episode_type():
    """The registry entry (an ``episodes.EpisodeType``), built lazily: ``episodes`` imports this module's peers."""
    from .episode_kit import MARKET
    from .episodes import EpisodeType
    mid = (FLICKER_DURATION_S.lo + FLICKER_DURATION_S.hi) / 2
    return EpisodeType(NAME, inject_quote_flickering, MARKET, lambda c: FLICKER_PER_MINUTE,
                       lambda c: FLICKER_DURATION_S.lo, False, typical_s=lambda c: mid)


def register() -> None:
    """Add ``quote_flickering`` to the generator at run time (idempotent): config names and the registry.

    It goes before the owner-trade types, which read prices as they inject (as ``episodes`` orders them).
    """
    from . import config, episodes, market
    if NAME in config.ALL_EPISODE_TYPES:
        return
    config.ALL_EPISODE_TYPES = config.ALL_EPISODE_TYPES + (NAME,)
    types = list(episodes.EPISODE_TYPES)
    at = next(i for i, t in enumerate(types) if t.name == "wash_trade")
    types.insert(at, episode_type())
    episodes.EPISODE_TYPES = market.EPISODE_TYPES = tuple(types)


@contextmanager
def registered():
    """``register()`` for the duration of a block, then the generator's registry as it was."""
    from . import config, episodes, market
    saved = config.ALL_EPISODE_TYPES, episodes.EPISODE_TYPES, market.EPISODE_TYPES
    register()
    try:
        yield
    finally:
        config.ALL_EPISODE_TYPES, episodes.EPISODE_TYPES, market.EPISODE_TYPES = saved
