"""Labelled episodes and look-alikes, one injection function per type over the shared market.

An injection function has the signature ``inject(m: Market, rng, slot: (lo_ns, hi_ns)) ->
Episode | None``: it draws its parameters, asks the scheduler for a free window on an
instrument, changes the market (REFX offsets through ``m.prices.add_offset``, trades through
``m.shared_trades``, resting orders through ``m.passive_orders``, price paths through
``m.prices.add_impact``) and returns its label.  ``EPISODE_TYPES`` lists them with their family (episodes of one family
never overlap on one instrument), their rate per minute and whether they are manipulation
(``episodes`` in labels.json) or a look-alike that must not alert (``lookalikes``).

To add a type: write ``inject_<type>``, register an ``EpisodeType`` (price-family types
first, since REFX offsets must exist before background prices are drawn) and add its name to
``config.ALL_EPISODE_TYPES`` or ``ALL_LOOKALIKE_TYPES``.

The rest of the detector catalogue lives in ``episodes_orders`` (spoofing, layering,
excessive messaging), ``episodes_trades`` (round trip, front running, momentum ignition,
marking the close), ``episodes_market`` (pump and dump, off-market, abnormal move),
``episodes_platform`` (reference deviation, settlement exposure, with their look-alikes) and
``lookalikes``.  Those types place their window and register price impacts at once, and
defer building their orders and trades (``Market.defer``) until every impact is known.
``ScenarioConfig.episode_types`` / ``lookalike_types`` choose what is injected; the
default is today's market, unchanged.  With any extra type the scheduler is *exclusive*:
no two episodes (of any type, labelled or look-alike) share an instrument's time, so an
alert can be attributed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import episodes_market as em
from . import episodes_novel as en
from . import episodes_orders as eo
from . import episodes_platform as ep_
from . import episodes_trades as et
from . import lookalikes as la
from .config import ALL_EPISODE_TYPES, ALL_LOOKALIKE_TYPES, NS, REFX, SHARED, Range
from .episode_kit import MARKET
from .episode_kit import owner_trades as _owner_trades
from .episode_kit import spread_times as _spread_times
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
    order_ids: list[str] | None = None  # the extra types only (today's labels stay as they are)
    related_types: list[str] | None = None  # other detectors that may rightly fire on it (extra types)

    def label(self) -> dict:
        out = {
            "episode_id": self.episode_id, "type": self.type, "instrument": self.instrument,
            "venues": list(self.venues), "owners": sorted(self.owners), "accounts": sorted(self.accounts),
            "start_ns": int(self.start_ns), "end_ns": int(self.end_ns), "params": self.params,
            "trade_ids": list(self.trade_ids),
        }
        if self.order_ids is not None:
            out["order_ids"] = list(self.order_ids)
        if self.related_types is not None:
            out["related_types"] = list(self.related_types)
        return out


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

    Exclusive: every family shares the time, and a window goes into a free gap.

    >>> x = Scheduler(0, 100 * NS, guard_ns=5 * NS, exclusive=True)
    >>> x.reserve("f", 0, 40 * NS, 50 * NS), x.free("g", 0, 52 * NS, 60 * NS), x.free("g", 0, 56 * NS, 60 * NS)
    (True, False, True)
    >>> _, s0, d = x.place(rng, "g", 30 * NS, (0, 100 * NS), [0])  # only after the busy window is there room
    >>> s0 > 55 * NS, d // NS
    (True, 30)
    """

    def __init__(self, start_ns: int, end_ns: int, guard_ns: int, exclusive: bool = False):
        self.start_ns, self.end_ns, self.guard_ns = start_ns, end_ns, guard_ns
        self.exclusive = exclusive
        self.busy: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def _spans(self, family: str, inst: int) -> list[tuple[int, int]]:
        if not self.exclusive:
            return self.busy.get((family, inst), [])
        return [w for (_, i), ws in self.busy.items() if i == inst for w in ws]

    def free(self, family: str, inst: int, s: int, e: int) -> bool:
        g = self.guard_ns
        return all(e + g < bs or be + g < s for bs, be in self._spans(family, inst))

    def reserve(self, family: str, inst: int, s: int, e: int) -> bool:
        """Take exactly ``[s, e]`` on ``inst`` if it is free (fixed-time episodes)."""
        if s < self.start_ns or e > self.end_ns or not self.free(family, inst, s, e):
            return False
        self.busy.setdefault((family, inst), []).append((int(s), int(e)))
        return True

    def _gaps(self, inst: int, lo: int, hi: int) -> list[tuple[int, int]]:
        """Free ``[a, b]`` stretches of ``[lo, hi]`` on ``inst`` (guards already taken off)."""
        g, out, cur = self.guard_ns, [], lo
        for bs, be in sorted(self._spans("", inst)):
            if bs - g - 1 > cur:
                out.append((cur, min(bs - g - 1, hi)))
            cur = max(cur, be + g + 1)
        if cur < hi:
            out.append((cur, hi))
        return [(a, b) for a, b in out if b > a]

    def _place_in_gaps(self, rng, family, dur_ns, lo, top, insts, min_dur_ns):
        # Random tries miss the room left in a crowded exclusive run; the gaps are exact.
        for need in dict.fromkeys((dur_ns, max(min_dur_ns or dur_ns, 1))):
            for inst in dict.fromkeys(insts):
                gaps = [(a, b) for a, b in self._gaps(inst, lo, top) if b - a >= need]
                if not gaps:
                    continue
                room = np.array([b - a - need + 1 for a, b in gaps], dtype=np.float64)
                a, b = gaps[int(rng.choice(len(gaps), p=room / room.sum()))]
                d = min(dur_ns, b - a)
                s = int(rng.integers(a, b - d + 1))
                self.busy.setdefault((family, inst), []).append((s, s + d))
                return inst, s, d
        return None

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
        if self.exclusive:
            return self._place_in_gaps(rng, family, dur_ns, lo, top, insts, min_dur_ns)
        for k in range(tries):
            inst = insts[k % len(insts)]
            s = int(rng.integers(lo, top - dur_ns + 1))
            if self.free(family, inst, s, s + dur_ns):
                self.busy.setdefault((family, inst), []).append((s, s + dur_ns))
                return inst, s, dur_ns
        return None


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
    typical_s: Callable | None = None  # EpisodeConfig -> usual time taken (exclusive capacity planning)


def _mid(r: Range) -> float:
    return (r.lo + r.hi) / 2


def _extra(name, inject, per_minute, min_s, typical_s, lookalike=False) -> EpisodeType:
    return EpisodeType(name, inject, MARKET, per_minute, min_s, lookalike, typical_s=typical_s)


EPISODE_TYPES: tuple[EpisodeType, ...] = (
    # REFX-offset family first: offsets must exist before any REFX price is drawn.
    EpisodeType("price_dislocation", inject_price_dislocation, REFX_OFFSET, lambda c: c.dislocation_per_minute,
                lambda c: c.dislocation_duration_s.lo, False, True, lambda c: _mid(c.dislocation_duration_s)),
    EpisodeType("small_gap", inject_small_gap, REFX_OFFSET, lambda c: c.small_gap_per_minute,
                lambda c: c.small_gap_duration_s.lo, True, False, lambda c: _mid(c.small_gap_duration_s)),
    EpisodeType("price_spike", inject_price_spike, REFX_OFFSET, lambda c: c.spike_per_minute,
                lambda c: c.spike_duration_s.lo, True, False, lambda c: _mid(c.spike_duration_s)),
    # The extra types (off by default) place their windows and price impacts here, before any
    # type below reads a price; fixed-time and long ones first, while the instruments are free.
    _extra("marking_the_close", et.inject_marking_the_close, lambda c: c.marking_per_minute,
           lambda c: c.marking_lead_s.lo + c.marking_revert_s.lo,
           lambda c: _mid(c.marking_lead_s) + _mid(c.marking_revert_s)),
    _extra("pump_and_dump", em.inject_pump_and_dump, lambda c: c.pump_per_minute,
           lambda c: c.pump_accumulate_s.lo + c.pump_surge_s.lo + c.pump_dump_s.lo,
           lambda c: _mid(c.pump_accumulate_s) + _mid(c.pump_surge_s) + _mid(c.pump_dump_s)),
    _extra("abnormal_move", em.inject_abnormal_move, lambda c: c.abnormal_per_minute,
           lambda c: c.abnormal_duration_s.lo, lambda c: _mid(c.abnormal_duration_s)),
    _extra("round_trip", et.inject_round_trip, lambda c: c.round_trip_per_minute,
           lambda c: c.round_trip_n.lo * c.round_trip_leg_s.lo + (c.round_trip_n.lo - 1) * c.round_trip_pause_s.lo,
           lambda c: _mid(c.round_trip_n) * (45 + _mid(c.round_trip_pause_s))),
    _extra("front_running", et.inject_front_running, lambda c: c.front_per_minute,
           lambda c: c.front_lead_s.lo + c.front_unwind_s.lo, lambda c: _mid(c.front_lead_s) + _mid(c.front_unwind_s)),
    _extra("momentum_ignition", et.inject_momentum_ignition, lambda c: c.ignition_per_minute,
           lambda c: c.ignition_burst_s.lo + c.ignition_reverse_delay_s.lo + c.ignition_decay_s.lo,
           lambda c: _mid(c.ignition_burst_s) + _mid(c.ignition_reverse_delay_s) + _mid(c.ignition_decay_s)),
    _extra("excessive_messaging", eo.inject_excessive_messaging, lambda c: c.messaging_per_minute,
           lambda c: c.messaging_duration_s.lo, lambda c: _mid(c.messaging_duration_s)),
    _extra("spoofing", eo.inject_spoofing, lambda c: c.spoof_per_minute, lambda c: c.spoof_life_s.lo,
           lambda c: _mid(c.spoof_life_s) + 3),
    _extra("layering", eo.inject_layering, lambda c: c.layer_per_minute, lambda c: c.spoof_life_s.lo,
           lambda c: _mid(c.spoof_life_s) + 3),
    _extra("off_market", em.inject_off_market, lambda c: c.off_market_per_minute, lambda c: 2 * em.PRINT_QUIET_S,
           lambda c: 2 * em.PRINT_QUIET_S),
    _extra("reference_deviation", ep_.inject_reference_deviation, lambda c: c.reference_per_minute,
           lambda c: c.reference_duration_s.lo, lambda c: _mid(c.reference_duration_s)),
    _extra("settlement_exposure", ep_.inject_settlement_exposure, lambda c: c.settlement_per_minute,
           lambda c: c.surge_duration_s.lo, lambda c: (_mid(c.surge_duration_s) + 2.5 * c.settlement_cycle_s) / 2),
    # their look-alikes next: settlement windows sit on cycle boundaries, hard to find in a full run
    _extra("peg_wobble", ep_.inject_peg_wobble, lambda c: c.wobble_per_minute, lambda c: c.excursion_duration_s.lo,
           lambda c: (_mid(c.wobble_duration_s) + _mid(c.excursion_duration_s)) / 2, True),
    _extra("two_way_flow", ep_.inject_two_way_flow, lambda c: c.two_way_per_minute, lambda c: c.surge_duration_s.lo,
           lambda c: _mid(c.surge_duration_s), True),
    _extra("delayed_settlement", ep_.inject_delayed_settlement, lambda c: c.delayed_per_minute,
           lambda c: c.settlement_delay_s.lo + 10, lambda c: _mid(c.settlement_delay_s) + 10, True),
    _extra("news_jump", la.inject_news_jump, lambda c: c.news_per_minute,
           lambda c: la.NEWS_QUIET_S + c.news_ramp_s.lo + c.news_volume_s.lo,
           lambda c: la.NEWS_QUIET_S + _mid(c.news_ramp_s) + _mid(c.news_volume_s), True),
    _extra("honest_large_order", la.inject_honest_large_order, lambda c: c.large_per_minute,
           lambda c: c.front_lead_s.hi + c.front_unwind_s.hi, lambda c: c.front_lead_s.hi + c.front_unwind_s.hi, True),
    _extra("cross_venue_arbitrage", la.inject_cross_venue_arbitrage, lambda c: c.arb_per_minute,
           lambda c: c.arb_converge_s.lo + 10, lambda c: _mid(c.arb_converge_s) + 10, True),
    _extra("market_maker_quoting", la.inject_market_maker_quoting, lambda c: c.mm_quoting_per_minute,
           lambda c: c.mm_quoting_duration_s.lo, lambda c: _mid(c.mm_quoting_duration_s), True),
    _extra("dual_platform_trader", la.inject_dual_platform_trader, lambda c: c.dual_per_minute,
           lambda c: c.dual_duration_s.lo, lambda c: _mid(c.dual_duration_s), True),
    # The novel pattern no rule is written for (behaviour_anomaly's to find); places its window, defers its orders.
    _extra(en.NAME, en.inject_quote_flickering, lambda c: en.FLICKER_PER_MINUTE, lambda c: en.FLICKER_DURATION_S.lo,
           lambda c: _mid(en.FLICKER_DURATION_S)),
    # Owner types that read prices as they inject.
    EpisodeType("wash_trade", inject_wash_trade, OWNER_TRADES, lambda c: c.wash_per_minute,
                lambda c: c.wash_duration_s.lo, False, True, lambda c: _mid(c.wash_duration_s)),
    EpisodeType("cross_platform_activity", inject_cross_platform_activity, OWNER_TRADES,
                lambda c: c.cross_platform_per_minute, lambda c: c.cross_platform_duration_s.lo, True, False,
                lambda c: _mid(c.cross_platform_duration_s)),
    EpisodeType("repeat_counterparties", inject_repeat_counterparties, OWNER_TRADES,
                lambda c: c.repeat_pair_per_minute, lambda c: c.repeat_pair_duration_s.lo, True, False,
                lambda c: _mid(c.repeat_pair_duration_s)),
)
_NAMES = [t.name for t in EPISODE_TYPES]
assert sorted(_NAMES) == sorted(ALL_EPISODE_TYPES + ALL_LOOKALIKE_TYPES), "registry and config disagree"
assert all(t.lookalike == (t.name in ALL_LOOKALIKE_TYPES) for t in EPISODE_TYPES)


def enabled(t: EpisodeType, cfg) -> bool:
    return t.name in (cfg.resolved_lookalike_types if t.lookalike else cfg.episode_types)


def density(cfg) -> float:
    """Rate multiplier in an exclusive run: the chosen types' usual time fits ``exclusive_fill``.

    >>> from replay.scenario.config import ScenarioConfig
    >>> density(ScenarioConfig()), 0 < density(ScenarioConfig(episode_types="all")) < 1
    (1.0, True)
    """
    if not cfg.exclusive:
        return 1.0
    ec = cfg.episodes
    demand = sum(t.per_minute(ec) * (t.typical_s(ec) + 2 * cfg.guard_s) for t in EPISODE_TYPES if enabled(t, cfg))
    capacity = 60.0 * len(cfg.instruments) * ec.exclusive_fill
    return min(1.0, capacity / demand) if demand > 0 else 1.0


def episode_count(t: EpisodeType, cfg) -> int:
    """How many episodes of a type a run of ``cfg.minutes`` gets (0 when the type is not chosen).

    >>> from replay.scenario.config import ScenarioConfig
    >>> [episode_count(EPISODE_TYPES[0], ScenarioConfig(minutes=m)) for m in (5, 10, 60)]
    [1, 2, 8]
    >>> spoof = next(t for t in EPISODE_TYPES if t.name == "spoofing")
    >>> episode_count(spoof, ScenarioConfig(minutes=60)), episode_count(spoof, ScenarioConfig(minutes=60,
    ...     episode_types=("spoofing",)))
    (0, 6)
    """
    if not enabled(t, cfg):
        return 0
    ec = cfg.episodes
    rate = t.per_minute(ec)
    if cfg.exclusive:
        rate *= density(cfg)
    n = max(1, int(round(cfg.minutes * rate)))
    if t.labelled_minimum and cfg.minutes >= ec.min_each_from_minutes:
        n = max(n, 2)
    capacity = int(math.floor(cfg.minutes * 60 / (t.min_duration_s(ec) + 2 * cfg.guard_s + 10)))
    return min(n, capacity)


__all__ = ["Episode", "EpisodeType", "EPISODE_TYPES", "Scheduler", "episode_count", "enabled", "density"]
