"""Collusive round trips: two owners trade the same size back and forth at the same price.

A sells to B, then B sells about the same quantity back to A at about the same price (one
round trip), and again: neither ends up with a position, yet volume prints.  Per pair of owners
(any accounts, either platform) and instrument, the detector keeps the pair's current *run* of
round trips.  Each trade of the pair that reverses the pair's previous trade (the previous buyer
now sells) within ``window_ms`` of it continues the run: either it opens a round trip, or it closes
the open one — when it is within ``max_price_diff_bps`` of that round trip's opening price and
within ``max_size_diff_ratio`` of its size.  Round trips are matched one by one, so one round trip
may be of another size than the one before (colluders vary their sizes); a closing leg that does
not match, a trade in the same direction as the pair's previous one, or a pause longer than
``window_ms`` ends the run (the trade then opens a new one).  From ``min_round_trips`` round trips
in a run it alerts, revised (same id) as the run grows.

The repetition is the evidence: two owners who happen to trade with each other repeatedly do
so at sizes of their own, and one matching reversal is chance; owners who only trade in one
direction never reverse.  Chance runs come mostly from a taker bouncing off one market
maker's quotes, the maker resting in every trade, so a run in which one owner rested
throughout (or the aggressor is unknown) needs ``min_round_trips_one_maker``; colluders
taking turns to rest and to hit need ``min_round_trips``.  Trades within one owner or one linked group
are wash trades (``detectors/wash_trade.py``) and are left out here.

>>> import pyarrow as pa
>>> from surveil.schemas import EVENT_SCHEMA
>>> legs = [("A", "B", 100.0, 1.0, "buy"), ("B", "A", 100.01, 1.02, "sell"), ("A", "B", 100.0, 0.99, "sell"),
...         ("B", "A", 100.02, 1.0, "buy")]
>>> rows = [dict(ts=i * 30 * 10**9, kind="trade", venue="SHARED", instrument="BTC/USDT", trade_id=f"t{i}", price=p,
...              qty=q, side=a, sell_owner=s, buy_owner=b, sell_group=s, buy_group=b)
...         for i, (s, b, p, q, a) in enumerate(legs)]
>>> t = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
>>> d = RoundTrip()
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]  # doctest: +NORMALIZE_WHITESPACE
['A and B traded BTC/USDT back and forth: 4 trades, 2 round trips in 90s on SHARED, 0.99-1.02 at 100-100.02
  (each back within 2.0 bps and 2% of the way out), both resting in turn; A sold 2 times, B sold 2 times']
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector
from surveil.alerts import EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Kind

MS = 1_000_000
MAX_EVIDENCE_LEGS = 50  # a run's later trades still count, but its evidence stops growing
# Trade columns of the evidence (order columns are null on trades); instrument is the key.  A trade is
# read as a tuple of these (a dict per trade cost more than the rest of the detector: only the few
# trades of an alert's evidence ever become dicts).
ROW_COLUMNS = ("ts", "kind", "venue", "src", "src_seq", "trade_id", "side", "price", "qty", "buy_account",
               "sell_account", "buy_platform", "sell_platform", "buy_owner", "sell_owner")
TS, VENUE, SIDE, PRICE, QTY, BUY_ACCOUNT, SELL_ACCOUNT, BUY_OWNER, SELL_OWNER = (
    ROW_COLUMNS.index(c) for c in ("ts", "venue", "side", "price", "qty", "buy_account", "sell_account",
                                   "buy_owner", "sell_owner"))


@dataclass
class _Run:
    """A pair's current run of round trips (the trades since it began, each reversing the one before)."""
    first_ns: int
    last: tuple  # the latest trade's row
    open_leg: tuple | None  # a round trip's opening trade, waiting for the trade that closes it
    rows: list[tuple] = field(default_factory=list)  # evidence, up to MAX_EVIDENCE_LEGS
    legs: int = 1
    trips: int = 0
    sold: dict = field(default_factory=dict)  # owner -> trades it sold in
    makers: set = field(default_factory=set)  # owners that rested (were hit) in some trade
    max_price_bps: float = 0.0  # the largest gap between a round trip's two legs
    max_size_diff: float = 0.0
    lo_px: float = 0.0
    hi_px: float = 0.0
    lo_qty: float = 0.0
    hi_qty: float = 0.0

    @classmethod
    def start(cls, r: tuple) -> "_Run":
        return cls(r[TS], r, r, [r], sold={r[SELL_OWNER]: 1}, makers={_maker(r)},
                   lo_px=r[PRICE], hi_px=r[PRICE], lo_qty=r[QTY], hi_qty=r[QTY])

    def add(self, r: tuple) -> None:
        self.last = r
        self.makers.add(_maker(r))
        self.legs += 1
        self.sold[r[SELL_OWNER]] = self.sold.get(r[SELL_OWNER], 0) + 1
        self.lo_px, self.hi_px = min(self.lo_px, r[PRICE]), max(self.hi_px, r[PRICE])
        self.lo_qty, self.hi_qty = min(self.lo_qty, r[QTY]), max(self.hi_qty, r[QTY])
        if len(self.rows) < MAX_EVIDENCE_LEGS:
            self.rows.append(r)


@dataclass
class RoundTripState:
    last_ns: int = 0
    sweep_ns: int = 0
    # (owner, owner) sorted -> the current run, or its one trade while nothing reversed it (most pairs' trades
    # never are: a _Run for each would cost more than the rest of the detector)
    chains: dict[tuple[str, str], _Run | tuple] = field(default_factory=dict)


def _last(chain: _Run | tuple) -> tuple:
    """The pair's latest trade: a run's last, or the lone trade itself."""
    return chain if isinstance(chain, tuple) else chain.last


def _maker(r: tuple) -> str | None:
    """The owner whose resting order the trade hit (None when the aggressor side is unknown)."""
    side = r[SIDE]
    return r[SELL_OWNER] if side == "buy" else r[BUY_OWNER] if side == "sell" else None


class RoundTrip(Detector):
    name = "round_trip"
    version = "1.1"
    key_columns = ("instrument",)
    description = ("Two owners (of different groups) trade back and forth: A sells to B, B sells about the same "
                   "size back to A at about the same price, round trip after round trip.")
    param_docs = {
        "window_ms": ("ms", "a trade reverses the pair's previous one (continuing the run) only this soon after it"),
        "max_price_diff_bps": ("bps", "price difference between a round trip's closing trade and its opening one"),
        "max_size_diff_ratio": ("share of the larger qty", "size difference between a round trip's closing trade "
                                                          "and its opening one"),
        "min_round_trips": ("round trips", "round trips in a row before it alerts, when each owner rested an order "
                                           "the other hit"),
        "min_round_trips_one_maker": ("round trips", "round trips in a row before it alerts when one owner rested "
                                                     "in every trade (or the aggressor is unknown)"),
    }

    def __init__(self, window_ms: int = 180_000, max_price_diff_bps: float = 15.0, max_size_diff_ratio: float = 0.1,
                 min_round_trips: int = 2, min_round_trips_one_maker: int = 3):
        if window_ms <= 0 or max_price_diff_bps < 0 or not 0 <= max_size_diff_ratio < 1:
            raise ValueError("window_ms must be > 0, max_price_diff_bps >= 0, max_size_diff_ratio in [0, 1)")
        if not 1 <= min_round_trips <= min_round_trips_one_maker:
            raise ValueError("need 1 <= min_round_trips <= min_round_trips_one_maker")
        self.window_ms = int(window_ms)
        self.max_price_diff_bps = float(max_price_diff_bps)
        self.max_size_diff_ratio = float(max_size_diff_ratio)
        self.min_round_trips = int(min_round_trips)
        self.min_round_trips_one_maker = int(min_round_trips_one_maker)

    def select(self, events: pa.Table) -> pa.Table:
        buyer, seller = events.column("buy_owner"), events.column("sell_owner")
        both = pc.and_(pc.is_valid(buyer), pc.is_valid(seller))
        # an owner without a group is its own group
        apart = pc.not_equal(pc.coalesce(events.column("buy_group"), buyer),
                             pc.coalesce(events.column("sell_group"), seller))
        mask = pc.and_(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value), both), apart)
        # only the columns read (splitting by key and taking rows cost per column)
        return events.select(list(ROW_COLUMNS) + ["instrument"]).filter(pc.fill_null(mask, False))

    def new_state(self) -> RoundTripState:
        return RoundTripState()

    def is_idle(self, state: RoundTripState, now_ns: int) -> bool:
        # No run can be continued any more: a new state would read the next trades the same.
        return now_ns - state.last_ns > self.window_ms * MS

    def update(self, state: RoundTripState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        instrument = events.column("instrument")[0].as_py()
        window = self.window_ms * MS
        # the run as it stood at each of its round trips past the bar; built into alerts once per batch (a run
        # of hundreds of trips in one batch would otherwise build its evidence table hundreds of times)
        due: dict[tuple, tuple[_Run, bool]] = {}
        columns = [events.column(c) for c in ROW_COLUMNS]
        columns[TS] = columns[TS].cast(pa.int64())
        for r in zip(*(c.to_pylist() for c in columns)):
            ts = state.last_ns = r[TS]
            if not r[PRICE] or not r[QTY]:
                continue
            b, s = r[BUY_OWNER], r[SELL_OWNER]
            pair = (b, s) if b < s else (s, b)
            ch = state.chains.get(pair)
            prev = None if ch is None else _last(ch)
            if prev is None or s != prev[BUY_OWNER] or ts - prev[TS] > window:
                state.chains[pair] = r  # no reversal of the pair's previous trade: a new run may start here
                continue
            if isinstance(ch, tuple):  # the lone trade is reversed: a run, that trade its open leg
                ch = state.chains[pair] = _Run.start(ch)
            if ch.open_leg is None:  # the run goes on: this trade opens its next round trip
                ch.add(r)
                ch.open_leg = r
                continue
            gaps = self._closes(ch.open_leg, r)
            if gaps is None:  # a reversal at another size or price: no round trip, a new run from here
                state.chains[pair] = r
                continue
            ch.add(r)
            ch.open_leg = None
            ch.trips += 1
            ch.max_price_bps, ch.max_size_diff = max(ch.max_price_bps, gaps[0]), max(ch.max_size_diff, gaps[1])
            # A taker bouncing off one market maker's quotes matches by chance far more often
            # than two owners who take turns resting and hitting: it needs more evidence.
            turns = len(ch.makers - {None}) == 2
            if ch.trips >= (self.min_round_trips if turns else self.min_round_trips_one_maker):
                due[(pair, ch.first_ns)] = (replace(ch, rows=list(ch.rows), sold=dict(ch.sold),
                                                    makers=set(ch.makers)), turns)
        if state.last_ns >= state.sweep_ns:
            # memory only: a run past the window is replaced by the pair's next trade anyway
            old = state.last_ns - window
            state.chains = {k: c for k, c in state.chains.items() if _last(c)[TS] >= old}
            state.sweep_ns = state.last_ns + window // 4
        return [self._alert(ch, pair, instrument, turns) for (pair, _), (ch, turns) in due.items()]

    def _closes(self, leg: tuple, r: tuple) -> tuple[float, float] | None:
        """(price gap bps, size gap) when ``r`` closes the round trip ``leg`` opened, else None."""
        price_bps = abs(r[PRICE] - leg[PRICE]) / leg[PRICE] * 1e4
        size_diff = abs(r[QTY] - leg[QTY]) / max(r[QTY], leg[QTY])
        # (float slack: sizes and prices are whole lots and ticks, a ratio of them need not be exact)
        if price_bps > self.max_price_diff_bps + 1e-9 or size_diff > self.max_size_diff_ratio + 1e-12:
            return None
        return price_bps, size_diff

    def _alert(self, ch: _Run, pair: tuple[str, str], instrument: str, turns: bool) -> Alert:
        a, b = pair
        trips = ch.trips
        secs = (ch.last[TS] - ch.first_ns) / 1e9
        venues = sorted({r[VENUE] for r in ch.rows})
        accounts = sorted({x for r in ch.rows for x in (r[BUY_ACCOUNT], r[SELL_ACCOUNT]) if x})
        sold = ", ".join(f"{o} sold {n} time{'s' if n > 1 else ''}" for o, n in sorted(ch.sold.items()))
        summary = (f"{a} and {b} traded {instrument} back and forth: {ch.legs} trades, {trips} round trips in "
                   f"{secs:.0f}s on {'/'.join(venues)}, {ch.lo_qty:.10g}-{ch.hi_qty:.10g} at "
                   f"{ch.lo_px:.10g}-{ch.hi_px:.10g} "
                   f"(each back within {ch.max_price_bps:.1f} bps and {ch.max_size_diff:.0%} of the way out), "
                   f"{'both resting in turn' if turns else 'one side resting throughout'}; {sold}")
        notional = sum(r[PRICE] * r[QTY] for r in ch.rows)
        severity = Severity.HIGH if trips >= 4 else Severity.MEDIUM if trips >= 3 or turns else Severity.LOW
        rows = [dict(zip(ROW_COLUMNS, r), instrument=instrument) for r in ch.rows]
        evidence = pa.Table.from_pylist(rows, schema=EVIDENCE_SCHEMA)
        return Alert.build(
            detector=self.name, version=self.version, key=f"{a}|{b}|{instrument}", window_start_ns=ch.first_ns,
            window_end_ns=ch.last[TS], opening_evidence=[evidence_id(rows[0])],  # the run's first trade
            evidence=evidence, severity=severity,
            score=float(trips), instrument=instrument, venues=venues, owners=[a, b], accounts=accounts,
            summary=summary, params=self.params(),
            metrics={"trades": ch.legs, "round_trips": trips, "both_rested": turns, "duration_s": round(secs, 3),
                     "max_price_diff_bps": round(ch.max_price_bps, 6), "max_size_diff": round(ch.max_size_diff, 6),
                     "notional": round(notional, 8)},
        )
