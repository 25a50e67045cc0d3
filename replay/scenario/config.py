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

    def __post_init__(self):
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
