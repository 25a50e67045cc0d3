"""Configuration of the synthetic market: venues, instruments, population, flow, episodes.

Everything the generator draws is bounded by a range in this module, so the detector
author can read the defaults from one place.  Tick and lot sizes are powers of ten
(``10**-decimals``): a price is an integer number of ticks, and ``ticks / 10**d`` is the
double nearest the decimal, so every text format round-trips exactly.

>>> cfg = ScenarioConfig(seed=3, minutes=10)
>>> cfg.end_ns - cfg.start_ns == 600 * 10**9
True
>>> [i.instrument for i in cfg.instruments]
['BTC/USDT', 'ETH/USDT', 'SOL/USDT']
>>> cfg.instruments[0].shared.tick_size, cfg.instruments[0].refx.venue_symbol
(0.1, 'BTCUSDT')
>>> parse_start_ns("2026-03-02T00:00:00Z")
1772409600000000000
>>> ScenarioConfig().episode_types, ScenarioConfig().exclusive
(('price_dislocation', 'wash_trade'), False)
>>> ScenarioConfig(episode_types=("spoofing",)).resolved_lookalike_types
('market_maker_quoting', 'honest_large_order', 'dual_platform_trader')
>>> [f // NS % 3600 for f in fixings_ns(ScenarioConfig(minutes=12))]
[300, 600]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

# Venues and platforms.  SHARED is the one order book HKVATP and OVSAFF both route to.
SHARED = "SHARED"
REFX = "REFX"
HKVATP = "HKVATP"
OVSAFF = "OVSAFF"
PLATFORMS = (HKVATP, OVSAFF)  # index = platform code used in the arrays
JURISDICTION = {HKVATP: "HK", OVSAFF: "overseas"}
ACCOUNT_PREFIX = {HKVATP: "HK-A", OVSAFF: "OV-B"}
FIX_TARGET = "SURVEIL"

DEFAULT_START = "2026-03-02T00:00:00Z"
NS = 1_000_000_000
SECONDS_PER_YEAR = 365.0 * 86400.0


def parse_start_ns(start: str | int | datetime) -> int:
    """ISO-8601 text (``Z`` or offset; naive means UTC), a datetime, or ns since epoch."""
    if isinstance(start, int):
        return start
    dt = start if isinstance(start, datetime) else datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


@dataclass(frozen=True)
class Listing:
    """One instrument's listing on one venue."""

    venue: str
    venue_symbol: str
    tick_decimals: int  # tick size = 10**-tick_decimals
    lot_decimals: int  # lot size = 10**-lot_decimals
    half_spread_bps: float  # typical distance from mid to the touch
    median_notional_usd: float  # trade size distribution (lognormal)
    notional_sigma: float

    @property
    def tick_size(self) -> float:
        return 1.0 / 10**self.tick_decimals

    @property
    def lot_size(self) -> float:
        return 1.0 / 10**self.lot_decimals


@dataclass(frozen=True)
class InstrumentSpec:
    instrument: str  # canonical, e.g. "BTC/USDT"
    code: str  # short code used in ids, e.g. "BTC"
    start_price: float
    vol_annual: float  # annualised volatility of the common fair price
    weight: float  # share of all activity
    shared: Listing
    refx: Listing
    refx_trade_id_base: int  # REFX trade ids are numeric, like a big exchange's


DEFAULT_INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    InstrumentSpec("BTC/USDT", "BTC", 87_250.0, 0.55, 0.50,
                   Listing(SHARED, "BTC-USDT", 1, 5, 0.6, 1_500.0, 1.4),
                   Listing(REFX, "BTCUSDT", 1, 3, 0.3, 3_000.0, 1.5), 4_100_000_000),
    InstrumentSpec("ETH/USDT", "ETH", 3_050.0, 0.70, 0.30,
                   Listing(SHARED, "ETH-USDT", 2, 4, 0.8, 1_200.0, 1.4),
                   Listing(REFX, "ETHUSDT", 2, 3, 0.4, 2_500.0, 1.5), 2_700_000_000),
    InstrumentSpec("SOL/USDT", "SOL", 142.5, 0.90, 0.20,
                   Listing(SHARED, "SOL-USDT", 2, 2, 1.5, 800.0, 1.3),
                   Listing(REFX, "SOLUSDT", 2, 2, 0.8, 1_500.0, 1.4), 900_000_000),
)


@dataclass(frozen=True)
class PopulationConfig:
    n_owners: int = 240
    n_market_makers: int = 6
    n_arbitrageurs: int = 4
    n_groups: int = 10  # linked-owner groups among the other owners, 2-3 owners each
    p_both_platforms: float = 0.25  # noise owners with an account on each platform
    p_hk_only: float = 0.40  # the rest are overseas-only
    p_second_account: float = 0.12  # a second account on one of the owner's platforms
    p_corporate: float = 0.2


@dataclass(frozen=True)
class FlowConfig:
    """Shares of the event budget and the shape of background flow."""

    shared_trade_share: float = 0.42  # trade + 2 news + 2 fills (+ remainder cancels)
    mm_order_share: float = 0.30  # market makers' two-sided quotes: new (+amend) + cancel
    refx_trade_share: float = 0.18
    refx_quote_share: float = 0.10  # 0 disables REFX quotes
    activity_sigma: float = 0.4  # lognormal OU multiplier of the arrival rates, per second
    activity_tau_s: float = 60.0
    venue_dev_bps: float = 2.0  # std of each venue's deviation from the fair price
    venue_dev_cap_bps: float = 6.0  # background |deviation| never exceeds this
    venue_dev_tau_s: float = 8.0  # arbitrageurs pull deviations back on this time scale
    p_market_order: float = 0.3  # taker orders; the rest are marketable IOC limits
    p_maker_remainder: float = 0.3  # resting order bigger than the fill; rest cancelled
    mm_maker_share: float = 0.75  # share of resting (maker) volume from market makers
    mm_maker_lead_s: float = 1.5  # mean time a maker order rests before it is hit
    other_maker_lead_s: float = 20.0
    remainder_cancel_s: float = 2.0
    mm_quote_life_s: float = 3.0  # mean life of a market maker's cancelled quote
    mm_quote_depth_bps: float = 15.0  # quotes are placed up to this far behind the touch
    mm_median_notional_usd: float = 5_000.0
    p_amend: float = 0.15
    p_reject: float = 0.002
    max_arb_share: float = 0.35  # share of SHARED takers that are arbitrageurs at a wide gap
    shared_latency_us: float = 400.0  # mean drop-copy delay (recv_ts - ts)
    refx_latency_us: float = 5_000.0  # mean public-feed delay


# Episode types.  Today's default market has exactly the first two and the first four look-alikes;
# ``episodes.EPISODE_TYPES`` registers an injection function for every name here.
DEFAULT_EPISODE_TYPES = ("price_dislocation", "wash_trade")
ALL_EPISODE_TYPES = DEFAULT_EPISODE_TYPES + (
    "spoofing", "layering", "round_trip", "front_running", "marking_the_close", "pump_and_dump",
    "momentum_ignition", "excessive_messaging", "off_market", "abnormal_move",
    "reference_deviation", "settlement_exposure", "quote_flickering")
DEFAULT_LOOKALIKE_TYPES = ("small_gap", "price_spike", "cross_platform_activity", "repeat_counterparties")
ALL_LOOKALIKE_TYPES = DEFAULT_LOOKALIKE_TYPES + (
    "market_maker_quoting", "cross_venue_arbitrage", "honest_large_order", "news_jump", "dual_platform_trader",
    "peg_wobble", "two_way_flow", "delayed_settlement")
# Which detectors a look-alike is meant to fool (also chooses the look-alikes of a type selection).
LOOKALIKE_TARGETS = {
    "small_gap": ("price_dislocation",),
    "price_spike": ("price_dislocation",),
    "cross_platform_activity": ("wash_trade",),
    "repeat_counterparties": ("wash_trade", "round_trip"),
    "market_maker_quoting": ("spoofing", "layering", "excessive_messaging"),
    "cross_venue_arbitrage": ("front_running", "momentum_ignition"),
    "honest_large_order": ("front_running", "spoofing", "layering"),
    "news_jump": ("off_market", "abnormal_move", "marking_the_close"),
    "dual_platform_trader": ("spoofing", "layering"),
    "peg_wobble": ("reference_deviation",),
    "two_way_flow": ("settlement_exposure",),
    "delayed_settlement": ("settlement_exposure",),
}


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    def draw(self, rng) -> float:
        return float(rng.uniform(self.lo, self.hi))

    def draw_int(self, rng) -> int:
        return int(rng.integers(int(self.lo), int(self.hi) + 1))


@dataclass(frozen=True)
class EpisodeConfig:
    """Ranges of the labelled episodes and look-alikes (read by detector defaults)."""

    # labelled manipulation
    wash_n_trades: Range = Range(2, 8)
    wash_duration_s: Range = Range(10, 120)
    wash_per_minute: float = 1 / 7.5
    dislocation_gap_bps: Range = Range(90, 400)  # realised gap stays > 80 bps after spreads
    dislocation_duration_s: Range = Range(45, 300)
    dislocation_per_minute: float = 1 / 7.5
    # look-alikes (must not alert)
    spike_gap_bps: Range = Range(80, 200)
    spike_duration_s: Range = Range(2, 10)
    spike_per_minute: float = 1 / 5
    small_gap_bps: Range = Range(15, 30)
    small_gap_duration_s: Range = Range(45, 300)
    small_gap_per_minute: float = 1 / 10
    cross_platform_n_trades: Range = Range(2, 6)
    cross_platform_duration_s: Range = Range(10, 60)
    cross_platform_per_minute: float = 1 / 7.5
    repeat_pair_n_trades: Range = Range(3, 8)
    repeat_pair_duration_s: Range = Range(10, 120)
    repeat_pair_per_minute: float = 1 / 7.5
    guard_s: float = 20.0  # quiet time kept between episodes of one family on one instrument
    min_each_from_minutes: int = 10  # from this run length, at least 2 of each labelled type

    # ---- the rest of the detector catalogue (off by default: ScenarioConfig.episode_types) ----
    # "typical" size = the instrument's SHARED median trade notional (Listing.median_notional_usd).
    # spoofing: 1-3 large orders near the touch, an execution on the other side, then cancels
    spoof_n_orders: Range = Range(1, 3)
    spoof_size_multiple: Range = Range(5, 20)  # each order, x typical
    spoof_depth_bps: Range = Range(0.5, 5)  # behind the touch, so the orders never trade
    spoof_exec_delay_s: Range = Range(0.2, 5)  # first spoof order -> execution on the other side
    spoof_life_s: Range = Range(1, 30)  # order placed -> cancelled (always after the execution)
    spoof_n_exec: Range = Range(1, 2)  # execution trades, 0.5-2x typical each
    spoof_per_minute: float = 1 / 10
    # layering: 3-8 orders on successive price levels of one side
    layer_n_orders: Range = Range(3, 8)
    layer_size_multiple: Range = Range(3, 10)  # each order, x typical
    layer_step_bps: Range = Range(1, 4)  # between levels (at least one tick)
    layer_per_minute: float = 1 / 10
    # round trip: unlinked A sells to B, B sells back at a similar price and size, 3-6 times
    round_trip_n: Range = Range(3, 6)
    round_trip_leg_s: Range = Range(10, 120)  # A->B to B->A
    round_trip_pause_s: Range = Range(2, 20)  # B->A to the next A->B
    round_trip_price_bps: float = 5.0  # |return price / first price - 1|
    round_trip_size_pct: float = 10.0  # |return qty / first qty - 1|
    round_trip_per_minute: float = 1 / 10
    # front running: same-direction trades before another owner's large trade, unwound after
    front_lead_s: Range = Range(1, 30)
    front_unwind_s: Range = Range(10, 120)
    front_victim_multiple: Range = Range(10, 50)  # the large trade, x typical
    front_size_multiple: Range = Range(1, 5)  # the front-runner's position, x typical
    front_n_trades: Range = Range(1, 3)  # each way
    front_impact_bps: Range = Range(5, 20)  # permanent move of SHARED after the large trade
    front_per_minute: float = 1 / 10
    # marking the close: aggressive trades before a fixing push SHARED's price
    fixing_every_s: float = 300.0  # fixings on multiples of this (UTC clock) ...
    fixing_times: tuple = ()  # ... unless listed here (ISO text or ns)
    marking_lead_s: Range = Range(60, 300)  # first trade .. fixing
    marking_move_bps: Range = Range(30, 150)  # SHARED move from window start to the fixing
    marking_n_trades: Range = Range(5, 20)  # normal-sized aggressive trades (small volume)
    marking_revert_s: Range = Range(10, 60)  # price back to fair after the fixing
    marking_per_minute: float = 1 / 10
    # pump and dump: a linked group accumulates, SHARED surges on volume, the group sells, collapse
    pump_accumulate_s: Range = Range(300, 1200)
    pump_surge_s: Range = Range(60, 180)
    pump_dump_s: Range = Range(60, 180)
    pump_accumulate_rise_pct: Range = Range(0.3, 1.5)  # drift while the group accumulates
    pump_rise_pct: Range = Range(5, 30)  # SHARED at the peak vs the start
    pump_volume_multiple: Range = Range(5, 20)  # SHARED quantity per second in the surge vs its average
    pump_n_accumulate_trades: Range = Range(10, 40)
    pump_sell_ratio: Range = Range(0.8, 1.2)  # group's sales (70% into the surge, 30% in the dump) / its buying
    pump_per_minute: float = 1 / 30
    # momentum ignition: a burst of aggressive orders moves SHARED, the owner then trades against it
    ignition_n_orders: Range = Range(5, 20)
    ignition_burst_s: Range = Range(1, 5)
    ignition_move_bps: Range = Range(20, 80)
    ignition_reverse_delay_s: Range = Range(1, 60)  # burst end -> first opposite trade
    ignition_n_reverse: Range = Range(1, 4)
    ignition_decay_s: Range = Range(20, 120)  # price back to fair after the opposite trading starts
    ignition_per_minute: float = 1 / 10
    # excessive messaging: new/amend/cancel at 20-100x the owner's own baseline message rate
    messaging_multiple: Range = Range(20, 100)  # vs the owner's baseline over all instruments
    messaging_duration_s: Range = Range(10, 120)
    messaging_order_life_s: Range = Range(0.02, 1.0)
    messaging_p_amend: float = 0.3
    messaging_n_trades: Range = Range(0, 2)
    messaging_per_minute: float = 1 / 10
    # off-market prints and trade-throughs on SHARED
    off_market_bps: Range = Range(100, 500)  # from both venues' prevailing prices
    trade_through_bps: Range = Range(30, 100)  # through REFX's best bid/offer
    off_market_per_minute: float = 1 / 10
    # abnormal move: both venues, price and volume, no manipulation behind it
    abnormal_duration_s: Range = Range(60, 180)
    abnormal_move_pct: Range = Range(1, 4)
    abnormal_ramp_s: Range = Range(10, 60)  # the move happens over this, then holds
    abnormal_volume_multiple: Range = Range(5, 20)  # each venue's trade count vs its run average
    abnormal_warmup_s: float = 1200.0  # not before (or half the run): baselines need history
    abnormal_per_minute: float = 1 / 15
    # look-alikes of the types above
    mm_quoting_duration_s: Range = Range(30, 120)
    mm_quoting_rate: Range = Range(2, 6)  # small orders per second at the touch
    mm_quoting_cancel_share: Range = Range(0.92, 0.98)
    mm_quoting_per_minute: float = 1 / 15
    arb_gap_bps: Range = Range(10, 30)  # REFX moves first, SHARED follows
    arb_converge_s: Range = Range(2, 10)
    arb_n_trades: Range = Range(2, 6)
    arb_per_minute: float = 1 / 15
    large_order_multiple: Range = Range(10, 50)  # as front_victim_multiple
    large_per_minute: float = 1 / 15
    news_jump_pct: Range = Range(0.5, 0.8)  # both venues, same step (below abnormal_move_pct)
    news_ramp_s: Range = Range(0.5, 3)
    news_volume_multiple: Range = Range(1.5, 3)  # for news_volume_s after the jump
    news_volume_s: Range = Range(30, 60)
    news_per_minute: float = 1 / 15
    dual_duration_s: Range = Range(30, 120)
    dual_n_trades: Range = Range(2, 6)
    dual_n_cancelled: Range = Range(1, 3)  # normal-sized orders, cancelled after 5-60 s
    dual_per_minute: float = 1 / 15
    # reference deviation (episodes_platform): a venue away from the INDEX anchor, and look-alikes
    anchor_every_s: float = 5.0  # reference events of every instrument's underlying price
    reference_bps: Range = Range(80, 300)  # detector band: 50 bps
    reference_duration_s: Range = Range(90, 300)  # detector duration: 60 s
    reference_per_minute: float = 1 / 10
    wobble_bps: Range = Range(15, 35)  # inside the band ...
    wobble_duration_s: Range = Range(120, 360)
    excursion_duration_s: Range = Range(5, 30)  # ... or beyond it, briefly
    wobble_per_minute: float = 1 / 10
    # settlement exposure (episodes_platform): HKVATP <-> OVSAFF obligations on SHARED
    settlement_cycle_s: float = 300.0  # settlement events a few seconds after each boundary
    settlement_reserve: float = 50_000_000.0  # the detector's default reserve fund (quote currency)
    surge_n_trades: Range = Range(30, 80)
    surge_duration_s: Range = Range(60, 180)
    surge_reserve_multiple: Range = Range(0.6, 1.5)  # one-way notional / reserve
    settlement_per_minute: float = 1 / 10
    two_way_per_minute: float = 1 / 15
    settlement_delay_s: Range = Range(30, 200)  # a late settlement still inside the 600 s deadline
    delayed_per_minute: float = 1 / 15
    exclusive_fill: float = 0.5  # with the extra types: planned share of each instrument's time
    exclusive_guard_s: float = 60.0  # ... and quiet time between any two episodes on one instrument
    # (replay.evaluate matches alerts with 60 s of slack: an alert then points at one episode)


@dataclass(frozen=True)
class ScenarioConfig:
    seed: int = 0
    minutes: float = 10
    events_per_second: float = 1500
    start: str | int = DEFAULT_START
    instruments: tuple[InstrumentSpec, ...] = DEFAULT_INSTRUMENTS
    population: PopulationConfig = field(default_factory=PopulationConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    episode_types: tuple[str, ...] = DEFAULT_EPISODE_TYPES  # or "all"
    lookalike_types: tuple[str, ...] | None = None  # None: the look-alikes of the chosen types

    def __post_init__(self):
        object.__setattr__(self, "episode_types", _type_names(self.episode_types, ALL_EPISODE_TYPES,
                                                              DEFAULT_EPISODE_TYPES, "episode"))
        if self.lookalike_types is not None:
            object.__setattr__(self, "lookalike_types", _type_names(self.lookalike_types, ALL_LOOKALIKE_TYPES,
                                                                    DEFAULT_LOOKALIKE_TYPES, "look-alike"))
        if self.minutes <= 0:
            raise ValueError(f"minutes must be positive (got {self.minutes})")
        if self.events_per_second <= 0:
            raise ValueError(f"events_per_second must be positive (got {self.events_per_second})")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer (got {self.seed!r})")

    @property
    def start_ns(self) -> int:
        return parse_start_ns(self.start)

    @property
    def duration_ns(self) -> int:
        return int(round(self.minutes * 60 * NS))

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def resolved_lookalike_types(self) -> tuple[str, ...]:
        if self.lookalike_types is not None:
            return self.lookalike_types
        return tuple(t for t in ALL_LOOKALIKE_TYPES if set(LOOKALIKE_TARGETS[t]) & set(self.episode_types))

    @property
    def guard_s(self) -> float:
        ec = self.episodes
        return ec.exclusive_guard_s if self.exclusive else ec.guard_s

    @property
    def guard_ns(self) -> int:
        return int(self.guard_s * NS)

    @property
    def exclusive(self) -> bool:
        """Any type beyond today's default: then no two episodes share an instrument's time."""
        legacy = set(DEFAULT_EPISODE_TYPES) | set(DEFAULT_LOOKALIKE_TYPES)
        return not set(self.episode_types) | set(self.resolved_lookalike_types) <= legacy


def _type_names(value, known: tuple[str, ...], default: tuple[str, ...], what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        named = {"all": known, "default": default, "none": ()}
        value = named[value] if value in named else tuple(v.strip() for v in value.split(",") if v.strip())
    names = tuple(dict.fromkeys(value))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {what} type(s) {unknown}; choose from {list(known)}")
    return names


def fixings_ns(cfg: ScenarioConfig) -> list[int]:
    """Reference-price fixing times inside the run (start excluded, end included)."""
    ec = cfg.episodes
    if ec.fixing_times:
        times = sorted(parse_start_ns(t) for t in ec.fixing_times)
    else:
        every = int(round(ec.fixing_every_s * NS))
        first = (cfg.start_ns // every + 1) * every
        times = list(range(first, cfg.end_ns + 1, every))
    return [t for t in times if cfg.start_ns < t <= cfg.end_ns]
