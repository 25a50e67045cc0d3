"""The shared market model episodes inject into, and ``simulate``: config -> in-memory scenario.

Randomness comes from one ``numpy.random.Generator(PCG64(...))`` per component, each seeded
from ``(seed, crc32(component name))``: the run is deterministic for a seed, and adding an
episode type later does not change the background of existing seeds.

>>> sc = simulate(ScenarioConfig(seed=1, minutes=2, events_per_second=300))
>>> sc.shared.schema == EVENT_SCHEMA, sc.shared.num_rows > 0, sc.refx.num_rows > 0
(True, True, True)
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import EVENT_SCHEMA

from .assemble import assemble_refx, assemble_shared
from .config import PLATFORMS, REFX, SHARED, ScenarioConfig, fixings_ns
from .episodes import EPISODE_TYPES, Episode, Scheduler, episode_count
from .episodes_platform import extra_tables
from .flow import background
from .population import TRADER, Population, build_population, draw_accounts
from .prices import PriceModel, touch_ticks


PRICE_MOVERS = ("price_dislocation", "pump_and_dump", "momentum_ignition", "marking_the_close", "abnormal_move",
                "off_market")


def component_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])))


class Market:
    """Population, prices, scheduler and the spec lists every generator appends to."""

    def __init__(self, cfg: ScenarioConfig):
        self.cfg = cfg
        self.pop: Population = build_population(component_rng(cfg.seed, "population"), cfg.population,
                                                cfg.flow.mm_maker_share)
        self.prices = PriceModel(component_rng(cfg.seed, "prices"), cfg)
        self.scheduler = Scheduler(cfg.start_ns, cfg.end_ns, cfg.guard_ns, cfg.exclusive)
        self.shared_trades: list[dict] = []
        self.passive_orders: list[dict] = []
        self.refx_trades: list[dict] = []
        self.refx_quotes: list[dict] = []
        self.all_episodes: list[tuple[Episode, bool]] = []  # (episode, is_lookalike)
        self.used_owners: set[int] = set()
        self._variants: dict[str, list[str]] = {}
        self._inst_pref: list[int] = list(range(len(cfg.instruments)))
        self._lookalike = False
        self._deferred: list = []  # builds of the extra types, run once every price impact is in
        self.order_specs: dict[int, tuple[set[int], bool]] = {}  # episode index -> (accounts, resting only)
        # (owner, instrument, start_ns, end_ns, side): the owner takes no background liquidity that way then
        self.quiet: list[tuple[int, int, int, int, int]] = []

    # ---- helpers for injection functions ------------------------------------------------
    def instrument_order(self, rng) -> list[int]:
        """Instruments to try, the preferred one (rotating per episode type) first."""
        first = self._inst_pref[0]
        rest = [int(i) for i in rng.permutation(len(self.cfg.instruments)) if i != first]
        return [first] + rest

    def next_variant(self, type_name: str, variants: tuple[str, ...], rng) -> str:
        queue = self._variants.setdefault(type_name, [])
        if not queue:
            queue.extend(variants[i] for i in rng.permutation(len(variants)))
        return queue.pop(0)

    def pick_owner(self, rng, predicate) -> int | None:
        """A trader not used by an earlier owner episode that satisfies ``predicate``."""
        pop = self.pop
        cands = [o for o in np.flatnonzero(pop.owner_role == TRADER).tolist()
                 if o not in self.used_owners and predicate(o)]
        if not cands:
            cands = [o for o in np.flatnonzero(pop.owner_role == TRADER).tolist() if predicate(o)]
        return int(cands[int(rng.integers(len(cands)))]) if cands else None

    def pick_counterparty(self, rng, owners: list[int], platform: int | None = None) -> int:
        """An account of a trader unlinked to every owner in ``owners``, optionally on a platform."""
        pop = self.pop
        for _ in range(1000):
            a = int(pop.taker_pool[rng.integers(len(pop.taker_pool))])
            if platform is not None and pop.account_platform[a] != platform:
                continue
            o = int(pop.account_owner[a])
            if o in self.used_owners or any(pop.owner_linked(o, x) for x in owners):
                continue
            return a
        raise RuntimeError("no unlinked counterparty found")

    def platform_of(self, acct: int) -> str:
        return PLATFORMS[int(self.pop.account_platform[acct])]

    def new_episode(self, type_name, inst, venues, owners, accounts, start_ns, end_ns, params) -> Episode:
        ep = Episode("", type_name, self.cfg.instruments[inst].instrument, venues, owners, accounts,
                     int(start_ns), int(end_ns), params)
        self.all_episodes.append((ep, self._lookalike))
        return ep

    def index_of(self, ep: Episode) -> int:
        return next(i for i, (e, _) in enumerate(self.all_episodes) if e is ep)

    def defer(self, build) -> None:
        """Run ``build()`` after every type has placed its windows (and price impacts)."""
        self._deferred.append(build)

    def keep_quiet(self, inst: int, ts: np.ndarray, taker: np.ndarray, aggr: np.ndarray,
                   free: np.ndarray) -> np.ndarray:
        """Background takers (where ``free``) redrawn where an episode keeps their owner from taking that way
        then (``quiet``).  Own random stream: the background's own draws stay as they are."""
        pop, rng = self.pop, None
        for o, i, t0, t1, side in self.quiet:
            if i != inst:
                continue
            bad = free & (pop.account_owner[taker] == o) & (ts >= t0) & (ts <= t1) & (aggr == side)
            if bad.any() and rng is None:  # the first redraw: its stream, and the copy the redraws go into
                rng, taker = component_rng(self.cfg.seed, f"background:quiet:{inst}"), taker.copy()
            while bad.any():
                taker[bad] = draw_accounts(rng, pop.taker_pool, pop.taker_weight, int(bad.sum()))
                bad &= pop.account_owner[taker] == o
        return taker

    def label_orders(self, ep: Episode, accounts, resting_only: bool = False, related=()) -> None:
        """The label lists the episode's orders of ``accounts`` (only resting-only ones if asked)."""
        self.order_specs[self.index_of(ep)] = ({int(a) for a in accounts}, resting_only)
        ep.order_ids = []
        ep.related_types = list(related)

    # ---- episodes ------------------------------------------------------------------------
    def inject_episodes(self) -> None:
        cfg = self.cfg
        n_inst = len(cfg.instruments)
        for t in EPISODE_TYPES:
            n = episode_count(t, cfg)
            if n == 0:
                continue
            rng = component_rng(cfg.seed, f"episode:{t.name}")
            pref = [int(i) for i in rng.permutation(n_inst)]
            self._lookalike = t.lookalike
            span = cfg.duration_ns
            for k in range(n):
                self._inst_pref = pref[k % n_inst:] + pref[:k % n_inst]
                slot = (cfg.start_ns + span * k // n, cfg.start_ns + span * (k + 1) // n)
                if t.inject(self, rng, slot) is None:  # slot full: anywhere in the run
                    t.inject(self, rng, (cfg.start_ns, cfg.end_ns))
        self._lookalike = False
        for build in self._deferred:
            build()


@dataclass
class Scenario:
    config: ScenarioConfig
    shared: pa.Table  # EVENT_SCHEMA, venue SHARED, time-sorted
    refx: pa.Table  # EVENT_SCHEMA, venue REFX, time-sorted
    shared_aux: pa.Table  # order qty / order price / cum qty per SHARED row (for the FIX drop copy)
    population: Population
    episodes: list[Episode]
    lookalikes: list[Episode]
    # inputs beyond the two venues, by canonical file name (episodes_platform: ANCHORS, SETTLEMENTS);
    # empty unless a type that needs them is chosen
    extra: dict[str, pa.Table] = field(default_factory=dict)

    def counts(self) -> dict:
        out = {}
        for venue, t in ((SHARED, self.shared), (REFX, self.refx)):
            vc = pc.value_counts(t.column("kind")).to_pylist()
            out[venue] = {d["values"]: int(d["counts"]) for d in sorted(vc, key=lambda d: d["values"])}
        out["total"] = self.shared.num_rows + self.refx.num_rows
        return out

    def labels(self) -> dict:
        cfg = self.config
        out = {
            "seed": int(cfg.seed), "minutes": cfg.minutes, "events_per_second": cfg.events_per_second,
            "start_ns": cfg.start_ns, "end_ns": cfg.end_ns, "events": self.counts(),
            "episodes": [e.label() for e in self.episodes],
            "lookalikes": [e.label() for e in self.lookalikes],
        }
        if cfg.exclusive:  # the extra keys only when extra types are chosen: today's labels stay as they are
            out["episode_types"] = list(cfg.episode_types)
            out["lookalike_types"] = list(cfg.resolved_lookalike_types)
        if "marking_the_close" in cfg.episode_types:
            out["fixings_ns"] = fixings_ns(cfg)
        return out


# How far through REFX's best bid/offer an episode's SHARED print must be, and half of it beyond SHARED's own, for the
# episode to hold an off-market print (off_market's default limit through a quote; its own-venue share is half).
OFF_MARKET_THROUGH_BPS = 25.0


def off_market_prints(m: Market, shared: pa.Table, ep_trades: dict[int, list[str]]) -> set[int]:
    """Indices of episodes with a SHARED trade out of line with both venues' markets as the price model has them.

    A round trip's return leg at its first leg's price after the market has moved, say, is an off-market
    print whatever else it is: an off_market alert on it is right.  The yardstick is the model's touch
    (not what a detector sees): beyond REFX's by more than ``OFF_MARKET_THROUGH_BPS``, and beyond SHARED's
    own by half that, on the same side (a venue that moves as a whole, a pump, is not off its market).
    """
    wanted = {tid: i for i, ids in ep_trades.items() for tid in ids}
    if not wanted:
        return set()
    trades = shared.filter(pc.and_(pc.equal(shared.column("kind"), "trade"),
                                   pc.is_in(shared.column("trade_id"), pa.array(list(wanted), pa.string()))))
    ts = trades.column("ts").cast(pa.int64()).to_numpy()
    price = trades.column("price").to_numpy()
    inst_of = {spec.instrument: k for k, spec in enumerate(m.cfg.instruments)}
    inst = np.array([inst_of[x] for x in trades.column("instrument").to_pylist()], np.int64)
    ep = np.array([wanted[x] for x in trades.column("trade_id").to_pylist()], np.int64)
    # per venue (REFX, SHARED): signed bps beyond its touch, + above the ask, - below the bid, 0 inside
    beyond = np.zeros((2, len(ts)))
    for k, spec in enumerate(m.cfg.instruments):
        sel = inst == k
        for row, venue, listing in ((0, REFX, spec.refx), (1, SHARED, spec.shared)):
            if not sel.any():
                continue
            scale = 10.0 ** listing.tick_decimals
            bid, ask = touch_ticks(m.prices.mid(k, venue, ts[sel]), listing.half_spread_bps, listing.tick_decimals)
            p = price[sel] * scale
            beyond[row, sel] = np.where(p > ask, (p / ask - 1) * 1e4, np.where(p < bid, (p / bid - 1) * 1e4, 0.0))
    up = (beyond[0] > OFF_MARKET_THROUGH_BPS) & (beyond[1] > OFF_MARKET_THROUGH_BPS / 2)
    down = (beyond[0] < -OFF_MARKET_THROUGH_BPS) & (beyond[1] < -OFF_MARKET_THROUGH_BPS / 2)
    return set(ep[up | down].tolist())


def simulate(cfg: ScenarioConfig) -> Scenario:
    m = Market(cfg)
    m.inject_episodes()
    background(m, component_rng(cfg.seed, "background"))
    shared, aux, ep_trades, ep_orders = assemble_shared(m, component_rng(cfg.seed, "latency:shared"))
    refx = assemble_refx(m, component_rng(cfg.seed, "latency:refx"))
    off_market = off_market_prints(m, shared, ep_trades) if "off_market" in cfg.episode_types else set()
    episodes, lookalikes = [], []
    ordered = sorted(range(len(m.all_episodes)),
                     key=lambda i: (m.all_episodes[i][0].start_ns, m.all_episodes[i][0].instrument))
    for i in ordered:
        ep, is_look = m.all_episodes[i]
        ep.trade_ids = ep_trades.get(i, [])
        if i in m.order_specs:
            accts, resting_only = m.order_specs[i]
            ep.order_ids = sorted({oid for oid, a, resting in ep_orders.get(i, [])
                                   if a in accts and (resting or not resting_only)})
        elif cfg.exclusive:  # one label layout when the extra types are on (the default's stays as it is)
            ep.order_ids = sorted({oid for oid, _, _ in ep_orders.get(i, [])})
            ep.related_types = list(ep.related_types or [])
        if "reference_deviation" in cfg.episode_types and ep.type in PRICE_MOVERS:
            # with anchors in the market, an episode that moves one venue's price away from the
            # underlying is also, rightly, a deviation from the anchor
            ep.related_types = sorted(set(ep.related_types or []) | {"reference_deviation"})
        if i in off_market and ep.type != "off_market" and not is_look:
            # one of its trades printed off both venues' markets (off_market_prints): an off_market alert is right
            ep.related_types = sorted(set(ep.related_types or []) | {"off_market"})
        (lookalikes if is_look else episodes).append(ep)
    for prefix, eps in (("EP", episodes), ("LA", lookalikes)):
        for k, ep in enumerate(eps, 1):
            ep.episode_id = f"{prefix}-{k:03d}"
    return Scenario(cfg, shared, refx, aux, m.pop, episodes, lookalikes, extra_tables(m))
