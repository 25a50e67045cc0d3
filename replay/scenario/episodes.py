"""Labelled episodes and look-alikes, one injection function per type over the shared market.

An injection function has the signature ``inject(m: Market, rng, slot: (lo_ns, hi_ns)) ->
Episode | None``: it draws its parameters, asks the scheduler for a free window on an
instrument, changes the market (REFX offsets through ``m.prices.add_offset``, trades through
``m.shared_trades``; a future spoofing or layering type would add ``m.passive_orders``) and
returns its label.  ``EPISODE_TYPES`` lists them with their family (episodes of one family
never overlap on one instrument), their rate per minute and whether they are manipulation
(``episodes`` in labels.json) or a look-alike that must not alert (``lookalikes``).

To add a type: write ``inject_<type>``, register an ``EpisodeType`` (price-family types
first, since REFX offsets must exist before background prices are drawn).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import NS, REFX, SHARED, Range
from .flow import BUY, SELL, shared_trades
from .population import HK, OV

REFX_OFFSET = "refx_offset"  # families
OWNER_TRADES = "owner_trades"


@dataclass
class Episode:
    episode_id: str
    type: str
    instrument: str
    venues: list[str]
    owners: list[str]
    accounts: list[str]
    start_ns: int
    end_ns: int
    params: dict
    trade_ids: list[str] = field(default_factory=list)

    def label(self) -> dict:
        return {
            "episode_id": self.episode_id, "type": self.type, "instrument": self.instrument,
            "venues": list(self.venues), "owners": sorted(self.owners), "accounts": sorted(self.accounts),
            "start_ns": int(self.start_ns), "end_ns": int(self.end_ns), "params": self.params,
            "trade_ids": list(self.trade_ids),
        }


class Scheduler:
    """Non-overlapping windows per (family, instrument), with a quiet guard between them.

    >>> s = Scheduler(0, 100 * NS, guard_ns=5 * NS)
    >>> rng = np.random.default_rng(0)
    >>> a = s.place(rng, "f", 40 * NS, (0, 60 * NS), [0])
    >>> b = s.place(rng, "f", 40 * NS, (0, 60 * NS), [0])  # no room left in that slot on inst 0
    >>> a[2] // NS, b is None
    (40, True)
    >>> s.place(rng, "f", 90 * NS, (0, 100 * NS), [1])[2] // NS  # shortened to the room there is
    90
    >>> s.place(rng, "f", 200 * NS, (0, 100 * NS), [2], min_dur_ns=100 * NS) is None
    True
    """

    def __init__(self, start_ns: int, end_ns: int, guard_ns: int):
        self.start_ns, self.end_ns, self.guard_ns = start_ns, end_ns, guard_ns
        self.busy: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def free(self, family: str, inst: int, s: int, e: int) -> bool:
        g = self.guard_ns
        return all(e + g < bs or be + g < s for bs, be in self.busy.get((family, inst), []))

    def place(self, rng, family: str, dur_ns: int, slot: tuple[int, int], insts: list[int],
              min_dur_ns: int | None = None, tries: int = 40) -> tuple[int, int, int] | None:
        """(instrument, start, duration) of a free window inside ``slot``, tried on ``insts`` in order.

        A window longer than the slot is shortened to fit, but not below ``min_dur_ns``.
        """
        lo = max(slot[0], self.start_ns + 5 * NS)
        top = min(slot[1], self.end_ns - 5 * NS)
        dur_ns = min(dur_ns, top - lo)
        if dur_ns <= 0 or dur_ns < (min_dur_ns or 0):
            return None
        for k in range(tries):
            inst = insts[k % len(insts)]
            s = int(rng.integers(lo, top - dur_ns + 1))
            if self.free(family, inst, s, s + dur_ns):
                self.busy.setdefault((family, inst), []).append((s, s + dur_ns))
                return inst, s, dur_ns
        return None


def _spread_times(rng, start: int, dur_ns: int, n: int) -> np.ndarray:
    """n trade times: the first at start, the last at start + dur, the rest in between."""
    if n == 1:
        return np.array([start], dtype=np.int64)
    mid = np.sort(rng.integers(start + 1, start + dur_ns, n - 2)) if n > 2 else np.empty(0, np.int64)
    return np.concatenate([[start], mid, [start + dur_ns]]).astype(np.int64)


def _owner_trades(m, rng, ep_index: int, inst: int, ts, buyers, sellers) -> dict:
    """Trades between given accounts, each side resting or aggressing at random, normal sizes."""
    n = len(ts)
    buyers, sellers = np.asarray(buyers, np.int32), np.asarray(sellers, np.int32)
    buyer_rests = rng.random(n) < 0.5
    maker = np.where(buyer_rests, buyers, sellers)
    taker = np.where(buyer_rests, sellers, buyers)
    aggr = np.where(buyer_rests, SELL, BUY).astype(np.int8)
    return shared_trades(m, rng, inst, ts, maker, taker, aggr, maker_lead_s=rng.uniform(0.2, 5.0, n),
                         maker_extra=np.zeros(n, np.int64), episode=ep_index, clip_sigmas=1.5)


def _price_window(m, rng, slot, type_name: str, gap: Range, dur: Range, venues=(SHARED, REFX)):
    placed = m.scheduler.place(rng, REFX_OFFSET, int(dur.draw(rng) * NS), slot, m.instrument_order(rng),
                               int(dur.lo * NS))
    if placed is None:
        return None
    inst, start, dur_ns = placed
    end = start + dur_ns
    sign = 1.0 if rng.random() < 0.5 else -1.0
    bps = sign * round(gap.draw(rng), 2)
    m.prices.add_offset(inst, start, end, bps)
    return m.new_episode(type_name, inst, list(venues), [], [], start, end, {
        "gap_bps": abs(bps), "direction": "refx_above" if bps > 0 else "refx_below",
        "duration_s": round((end - start) / NS, 3), "refx_offset_bps": bps,
    })


# ---- labelled manipulation ----------------------------------------------------------------

def inject_price_dislocation(m, rng, slot):
    ec = m.cfg.episodes
    return _price_window(m, rng, slot, "price_dislocation", ec.dislocation_gap_bps, ec.dislocation_duration_s)


WASH_VARIANTS = ("cross_platform", "same_platform", "linked_group")


def inject_wash_trade(m, rng, slot):
    """One owner (or two owners of a linked group) on both sides of 2-8 trades in 10-120 s."""
    ec, pop = m.cfg.episodes, m.pop
    variant = m.next_variant("wash_trade", WASH_VARIANTS, rng)
    pair = None
    if variant == "cross_platform":
        o = m.pick_owner(rng, lambda o: {HK, OV} <= set(pop.account_platform[pop.accounts_of(o)].tolist()))
        if o is not None:
            accts = pop.accounts_of(o)
            pair = ([o], int(rng.choice(accts[pop.account_platform[accts] == OV])),
                    int(rng.choice(accts[pop.account_platform[accts] == HK])))
    elif variant == "same_platform":
        def two_on_one(o):
            plats = pop.account_platform[pop.accounts_of(o)]
            return len(plats) > len(set(plats.tolist()))
        o = m.pick_owner(rng, two_on_one)
        if o is not None:
            accts = pop.accounts_of(o)
            plats = pop.account_platform[accts]
            p = next(p for p in (HK, OV) if (plats == p).sum() >= 2)
            a, b = rng.choice(accts[plats == p], 2, replace=False)
            pair = ([o], int(a), int(b))
    else:
        groups = [g for g in range(len(pop.group_ids))
                  if not any(o in m.used_owners for o in np.flatnonzero(pop.owner_group == g))]
        if groups:
            g = groups[int(rng.integers(len(groups)))]
            o1, o2 = rng.choice(np.flatnonzero(pop.owner_group == g), 2, replace=False)
            pair = ([int(o1), int(o2)], int(rng.choice(pop.accounts_of(o1))), int(rng.choice(pop.accounts_of(o2))))
    if pair is None:
        return None
    owners, acct_a, acct_b = pair
    n_tr = ec.wash_n_trades.draw_int(rng)
    dur_ns = int(ec.wash_duration_s.draw(rng) * NS)
    min_dur_ns = int(ec.wash_duration_s.lo * NS)
    placed = m.scheduler.place(rng, OWNER_TRADES, dur_ns, slot, m.instrument_order(rng), min_dur_ns)
    if placed is None:
        return None
    inst, start, dur_ns = placed
    ts = _spread_times(rng, start, dur_ns, n_tr)
    # The owner alternates buying and selling, so its position stays flat.
    k = np.arange(n_tr)
    buyers = np.where(k % 2 == 0, acct_a, acct_b)
    sellers = np.where(k % 2 == 0, acct_b, acct_a)
    m.used_owners.update(owners)
    ep = m.new_episode("wash_trade", inst, [SHARED], [pop.owner_ids[o] for o in owners],
                       [pop.account_ids[acct_a], pop.account_ids[acct_b]], int(ts[0]), int(ts[-1]), {
                           "variant": variant, "n_trades": n_tr, "duration_s": round(float(ts[-1] - ts[0]) / NS, 3),
                           "platforms": sorted({m.platform_of(acct_a), m.platform_of(acct_b)}),
                       })
    m.shared_trades.append(_owner_trades(m, rng, m.index_of(ep), inst, ts, buyers, sellers))
    return ep


# ---- look-alikes (must not alert) -------------------------------------------------------

def inject_price_spike(m, rng, slot):
    ec = m.cfg.episodes
    return _price_window(m, rng, slot, "price_spike", ec.spike_gap_bps, ec.spike_duration_s)


def inject_small_gap(m, rng, slot):
    ec = m.cfg.episodes
    return _price_window(m, rng, slot, "small_gap", ec.small_gap_bps, ec.small_gap_duration_s)


def inject_cross_platform_activity(m, rng, slot):
    """An owner on both platforms buys on one and sells on the other, each time against other owners."""
    ec, pop = m.cfg.episodes, m.pop
    x = m.pick_owner(rng, lambda o: {HK, OV} <= set(pop.account_platform[pop.accounts_of(o)].tolist()))
    if x is None:
        return None
    ax = pop.accounts_of(x)
    x_hk = int(rng.choice(ax[pop.account_platform[ax] == HK]))
    x_ov = int(rng.choice(ax[pop.account_platform[ax] == OV]))
    y = m.pick_counterparty(rng, [x], platform=OV)
    z = m.pick_counterparty(rng, [x, pop.account_owner[y]], platform=HK)
    n_tr = ec.cross_platform_n_trades.draw_int(rng)
    dur_ns = int(ec.cross_platform_duration_s.draw(rng) * NS)
    min_dur_ns = int(ec.cross_platform_duration_s.lo * NS)
    placed = m.scheduler.place(rng, OWNER_TRADES, dur_ns, slot, m.instrument_order(rng), min_dur_ns)
    if placed is None:
        return None
    inst, start, dur_ns = placed
    ts = _spread_times(rng, start, dur_ns, n_tr)
    k = np.arange(n_tr)
    buyers = np.where(k % 2 == 0, x_hk, z)  # X buys on HKVATP from Y's overseas account ...
    sellers = np.where(k % 2 == 0, y, x_ov)  # ... and sells on OVSAFF to Z's HK account
    owners = [x, int(pop.account_owner[y]), int(pop.account_owner[z])]
    m.used_owners.add(x)
    ep = m.new_episode("cross_platform_activity", inst, [SHARED], [pop.owner_ids[o] for o in owners],
                       [pop.account_ids[a] for a in (x_hk, x_ov, y, z)], int(ts[0]), int(ts[-1]),
                       {"n_trades": n_tr, "duration_s": round(float(ts[-1] - ts[0]) / NS, 3),
                        "owner": pop.owner_ids[x]})
    m.shared_trades.append(_owner_trades(m, rng, m.index_of(ep), inst, ts, buyers, sellers))
    return ep


def inject_repeat_counterparties(m, rng, slot):
    """Two different, unlinked owners trade with each other repeatedly."""
    ec, pop = m.cfg.episodes, m.pop
    a_owner = m.pick_owner(rng, lambda o: True)
    if a_owner is None:
        return None
    a = int(rng.choice(pop.accounts_of(a_owner)))
    b = m.pick_counterparty(rng, [a_owner])
    n_tr = ec.repeat_pair_n_trades.draw_int(rng)
    dur_ns = int(ec.repeat_pair_duration_s.draw(rng) * NS)
    min_dur_ns = int(ec.repeat_pair_duration_s.lo * NS)
    placed = m.scheduler.place(rng, OWNER_TRADES, dur_ns, slot, m.instrument_order(rng), min_dur_ns)
    if placed is None:
        return None
    inst, start, dur_ns = placed
    ts = _spread_times(rng, start, dur_ns, n_tr)
    k = np.arange(n_tr)
    owners = [a_owner, int(pop.account_owner[b])]
    m.used_owners.update(owners)
    ep = m.new_episode("repeat_counterparties", inst, [SHARED], [pop.owner_ids[o] for o in owners],
                       [pop.account_ids[a], pop.account_ids[b]], int(ts[0]), int(ts[-1]),
                       {"n_trades": n_tr, "duration_s": round(float(ts[-1] - ts[0]) / NS, 3)})
    m.shared_trades.append(_owner_trades(m, rng, m.index_of(ep), inst, ts,
                                         np.where(k % 2 == 0, a, b), np.where(k % 2 == 0, b, a)))
    return ep


# ---- registry -----------------------------------------------------------------------------

@dataclass(frozen=True)
class EpisodeType:
    name: str
    inject: Callable
    family: str
    per_minute: Callable  # EpisodeConfig -> episodes per minute
    min_duration_s: Callable  # EpisodeConfig -> shortest duration (capacity check)
    lookalike: bool
    labelled_minimum: bool = False  # at least 2 once minutes >= EpisodeConfig.min_each_from_minutes


EPISODE_TYPES: tuple[EpisodeType, ...] = (
    # REFX-offset family first: offsets must exist before any REFX price is drawn.
    EpisodeType("price_dislocation", inject_price_dislocation, REFX_OFFSET, lambda c: c.dislocation_per_minute,
                lambda c: c.dislocation_duration_s.lo, False, True),
    EpisodeType("small_gap", inject_small_gap, REFX_OFFSET, lambda c: c.small_gap_per_minute,
                lambda c: c.small_gap_duration_s.lo, True),
    EpisodeType("price_spike", inject_price_spike, REFX_OFFSET, lambda c: c.spike_per_minute,
                lambda c: c.spike_duration_s.lo, True),
    EpisodeType("wash_trade", inject_wash_trade, OWNER_TRADES, lambda c: c.wash_per_minute,
                lambda c: c.wash_duration_s.lo, False, True),
    EpisodeType("cross_platform_activity", inject_cross_platform_activity, OWNER_TRADES,
                lambda c: c.cross_platform_per_minute, lambda c: c.cross_platform_duration_s.lo, True),
    EpisodeType("repeat_counterparties", inject_repeat_counterparties, OWNER_TRADES,
                lambda c: c.repeat_pair_per_minute, lambda c: c.repeat_pair_duration_s.lo, True),
)


def episode_count(t: EpisodeType, cfg) -> int:
    """How many episodes of a type a run of ``cfg.minutes`` gets.

    >>> from replay.scenario.config import ScenarioConfig
    >>> [episode_count(EPISODE_TYPES[0], ScenarioConfig(minutes=m)) for m in (5, 10, 60)]
    [1, 2, 8]
    """
    ec = cfg.episodes
    n = max(1, int(round(cfg.minutes * t.per_minute(ec))))
    if t.labelled_minimum and cfg.minutes >= ec.min_each_from_minutes:
        n = max(n, 2)
    capacity = int(math.floor(cfg.minutes * 60 / (t.min_duration_s(ec) + 2 * ec.guard_s + 10)))
    return min(n, capacity)


__all__ = ["Episode", "EpisodeType", "EPISODE_TYPES", "Scheduler", "episode_count"]
