"""Momentum ignition: one owner's burst of aggressive trades moves the price, then it trades against the move.

Per instrument (the key), trades are read in event order.  An owner's *burst* is ``min_trades``
or more aggressive trades on one side (the owner is the aggressor: buyer of a buy-aggressor
trade, seller of a sell-aggressor one) on one venue, each within ``burst_ms`` of the previous one
(one that runs on for more than twice ``burst_ms`` is a sustained campaign, not a burst).  The
burst *moved the price* when, from the last price on that venue before its first trade to the
most extreme price traded there (by anyone) since, the price went ``min_move_bps`` or more in the
burst's direction.  The owner then *trades against the move*: within ``reverse_ms`` after the
burst's last trade its trades on the other side — aggressive or resting, any account, either
platform — add up to ``min_reverse_share`` of the burst's quantity.  One alert per burst, raised
when its reversal window closes (a later trade of the instrument, or the end of input) if, besides:

- the owner's opposite trading came to at most ``max_reverse_share`` of the burst: an unwind of
  roughly the burst's size, not an owner who simply trades a lot both ways;
- the burst was the owner's: at least ``min_volume_share`` of the venue's aggressive quantity on
  that side from its first to its last trade;
- it was out of character (``max_usual_trades``) and started the move rather than joined one: the
  venue moved less than ``max_prior_move_bps`` its way in the 10 s before, and was not already that
  far out of line with the other venues that way;
- it took the venue out of line with the other venues (the reference market: every other venue's
  trades of the instrument, public tapes included): at the owner's first opposite trade the venue's
  extreme stands ``min_move_bps`` or more beyond their price level (the median of their last 5
  trades) in the burst's direction.

What keeps look-alikes out:

- a move every venue makes (news, an abnormal move) leaves the venue in line with the others;
- an arbitrageur buying on SHARED after another venue moved (cross-venue arbitrage) brings SHARED
  back in line with the other venue, and keeps what it bought;
- traders chasing a pump or someone else's ignition buy in bursts into a move they did not make:
  a small share of the aggressive flow, on a venue already out of line or already moving;
- a front-runner trades once or twice before someone else's large trade: no burst;
- an owner marking a fixing pushes the price but does not turn round within ``reverse_ms``;
- an ordinary active trader's trades switch sides at random: a one-sided run of ``min_trades``
  that moves the price by ``min_move_bps`` and is then reversed in size is rare noise, and a heavy
  trader's opposite trading dwarfs its "burst" (``max_reverse_share``).

Public tapes (no owners) cannot show *whose* burst it was: only trades with owners make bursts;
public trades are the yardstick of the venue's move.  With no other venue's trades in the 10 s
before the burst or its first reversal the burst is judged on its own venue alone.

>>> from tests.conftest import events
>>> ts = [float(i) for i in range(10)] + [10.0, 10.5, 11.0, 11.5, 12.0] + [20.0, 25.0]
>>> px = [100.0] * 10 + [100.05, 100.1, 100.15, 100.2, 100.25] + [100.2, 100.1]
>>> n = len(ts)
>>> buyer = ["B"] * 10 + ["IG"] * 5 + ["MM", "MM"]
>>> seller = ["S"] * 10 + ["MM"] * 5 + ["IG", "X"]
>>> t = events(ts=ts, kind=["trade"] * n, venue=["SHARED"] * n, instrument=["X/USDT"] * n, price=px,
...     qty=[1.0] * 15 + [2.0, 1.0], side=["buy"] * 15 + ["buy", "sell"], trade_id=[f"t{i}" for i in range(n)],
...     buy_owner=buyer, sell_owner=seller)
>>> d, state = MomentumIgnition(), MomentumIgnition().new_state()
>>> d.update(state, d.select(t))  # the reversal window is still open
[]
>>> [a.summary for a in d.flush(state)]  # doctest: +NORMALIZE_WHITESPACE
['IG ignited momentum in X/USDT on SHARED: 5 aggressive buys of 5 in 2.0s moved the price +25 bps
  (100 to 100.25), then sold 2 (40% of the burst) 8.0s later']
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Kind, Side, to_rows

MS = 1_000_000
BUY, SELL = Side.BUY.value, Side.SELL.value
SIDES = frozenset((BUY, SELL))
ACTIVITY_TAU_NS = 300 * 10**9  # time constant of an owner's usual aggressive-trading rate
CALM_NS = 10 * 10**9  # how far before a burst the price must have been calm
LEVEL_TRADES = 5  # a venue's price level: the median of its last this many trades (within CALM_NS)
MAX_REVERSE_EVIDENCE = 50  # burst and reversal trades kept per burst (the summary still counts them all)
# what the loop reads, and the evidence columns (instrument is the key)
ROW_COLUMNS = [c for c in EVIDENCE_COLUMNS if c != "instrument"]


@dataclass
class _Burst:
    side: str
    owner: str
    venue: str
    p0: float  # the venue's last price before the burst
    instrument: str = ""
    times: list = field(default_factory=list)  # ts of each burst trade
    rows: list = field(default_factory=list)  # the burst's aggressive trades (row dicts; row numbers while read)
    qty: float = 0.0
    extreme: float = 0.0  # most extreme price on the venue since the burst began, in its direction
    reverse: list = field(default_factory=list)
    n_reverse: int = 0
    reverse_qty: float = 0.0
    first_reverse_ns: int = 0
    move_bps: float = 0.0  # fixed at the first reversal trade
    prior_move_bps: float = 0.0  # the venue's move in the burst's direction in the calm_ms before it
    usual: float = 0.0  # the owner's usual aggressive trades per burst_ms (before the burst)
    sustained: bool = False  # the owner went on trading that way past 2 x burst_ms: a campaign, not a burst
    side_qty0: float = 0.0  # the venue's aggressive quantity on the burst's side before its first trade ...
    side_qty1: float = 0.0  # ... and after its last one

    @property
    def last_ns(self) -> int:
        return self.times[-1]


@dataclass
class IgnitionState:
    last_ns: int = 0
    last_px: dict = field(default_factory=dict)  # venue -> last traded price
    runs: dict = field(default_factory=dict)  # owner -> deque of (ts, qty, price before, ..., row seq): its one-way run
    open: dict = field(default_factory=dict)  # owner -> _Burst waiting for, or in, its reversal window
    expire_ns: int = 0  # no open burst's reversal window ends before this
    rising: dict = field(default_factory=dict)  # owner -> its open burst not yet reversed (its move still grows)
    activity: dict = field(default_factory=dict)  # owner -> (decayed count of its aggressive trades, at ts)
    side_qty: dict = field(default_factory=dict)  # (venue, aggressor side) -> aggressive quantity traded so far
    # Both kept a chunk per batch (see _drop_before, _joined): appending to one array or table per batch
    # copies (or re-lists) everything kept, every batch, and most are never read.
    tape: list = field(default_factory=list)  # (ts, price, venue) arrays of every venue's recent trades, owners
    # or not: price levels
    owned: list = field(default_factory=list)  # (ts, table) of trades with owners (evidence columns) back to the
    # oldest open run or burst
    owned_base: int = 0  # seq of owned's first row (a row's seq: its number among all owned rows ever read)
    owned_seq: int = 0


def _drop_before(chunks: list[tuple], keep_ns: int) -> int:
    """Drop the rows before ``keep_ns`` from the front of ``chunks`` (per batch, in time order: a tuple of
    the rows' times and of arrays or tables of them, row for row); returns how many were dropped.

    >>> chunks = [(np.array([1, 2]), np.array([10., 20.])), (np.array([3, 4]), np.array([30., 40.]))]
    >>> _drop_before(chunks, 4), chunks
    (3, [(array([4]), array([40.]))])
    """
    dropped = 0
    while chunks:
        k = int(np.searchsorted(chunks[0][0], keep_ns, side="left"))
        if k < len(chunks[0][0]):
            if k:
                chunks[0] = tuple(x[k:] for x in chunks[0])
            return dropped + k
        dropped += k
        chunks.pop(0)
    return dropped


def _joined(chunks: list[tuple]) -> tuple:
    """``chunks`` as one chunk, joined once and kept so (bursts read the tape a few times each)."""
    if len(chunks) > 1:
        chunks[:] = [tuple(pa.concat_tables(c) if isinstance(c[0], pa.Table) else np.concatenate(c)
                           for c in zip(*chunks))]
    return chunks[0]


class MomentumIgnition(Detector):
    name = "momentum_ignition"
    version = "1.1"
    key_columns = ("instrument",)
    description = ("A burst of one owner's aggressive trades on one side moves its venue's price out of line with "
                   "the other venues, then the same owner (any account, either platform) trades against the move.")
    param_docs = {
        "min_trades": ("trades", "aggressive trades on one side an owner's burst needs ..."),
        "burst_ms": ("ms", "... within this time"),
        "min_move_bps": ("bps", "price move on the venue, from before the burst to its extreme until the owner "
                                "turns, in the burst's direction; the extreme must also stand this far beyond the "
                                "other venues' price level when the owner turns"),
        "max_usual_trades": ("trades per burst_ms", "the owner's usual rate of aggressive trades before the burst "
                                                    "(exponentially weighted over ~5 min) must be below this: the "
                                                    "burst is out of character, not a busy trader's routine"),
        "max_prior_move_bps": ("bps", "the venue's price moved less than this in the burst's direction in the 10 s "
                                      "before it, and stood less than this beyond the other venues' level that way: "
                                      "the owner started the move rather than joined one"),
        "reverse_ms": ("ms", "the owner's trades on the other side count within this time after the burst"),
        "min_reverse_share": ("share of burst qty", "the owner's opposite trades must add up to at least this "
                                                    "share of the burst's quantity ..."),
        "max_reverse_share": ("share of burst qty", "... and at most this share (more is an owner trading both "
                                                    "ways all along, not unwinding a burst)"),
        "min_volume_share": ("share of venue qty", "the burst's share of the venue's aggressive quantity on its side "
                                                   "from its first to its last trade (the burst drove the flow)"),
    }

    def __init__(self, min_trades: int = 5, burst_ms: int = 5_000, min_move_bps: float = 20.0,
                 max_usual_trades: float = 0.5, max_prior_move_bps: float = 15.0, reverse_ms: int = 90_000,
                 min_reverse_share: float = 0.3, max_reverse_share: float = 2.0, min_volume_share: float = 0.1):
        if min_trades < 2 or burst_ms <= 0 or reverse_ms <= 0:
            raise ValueError("min_trades must be >= 2, burst_ms and reverse_ms > 0")
        if max_usual_trades <= 0 or max_prior_move_bps <= 0:
            raise ValueError("max_usual_trades and max_prior_move_bps must be > 0")
        if not 0 <= min_volume_share <= 1:
            raise ValueError("min_volume_share must be in [0, 1]")
        if min_move_bps <= 0 or not 0 < min_reverse_share <= max_reverse_share:
            raise ValueError("min_move_bps must be > 0 and 0 < min_reverse_share <= max_reverse_share")
        self.min_trades = int(min_trades)
        self.burst_ms = int(burst_ms)
        self.min_move_bps = float(min_move_bps)
        self.reverse_ms = int(reverse_ms)
        self.max_usual_trades = float(max_usual_trades)
        self.max_prior_move_bps = float(max_prior_move_bps)
        self.min_reverse_share = float(min_reverse_share)
        self.max_reverse_share = float(max_reverse_share)
        self.min_volume_share = float(min_volume_share)

    def select(self, events: pa.Table) -> pa.Table:
        """Priced trades on every venue: those with owners can make bursts, the public tapes of the
        other venues are the reference the burst's venue is measured against."""
        ok = pc.and_(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                             pc.greater(events.column("price"), 0)), pc.greater(events.column("qty"), 0))
        return keep_rows(events, pc.fill_null(ok, False))  # the evidence columns hold all it reads

    def new_state(self) -> IgnitionState:
        return IgnitionState()

    def is_idle(self, state: IgnitionState, now_ns: int) -> bool:
        # An open burst still owes its verdict (given at the next trade or at flush); otherwise, past both
        # windows (and the calm look-back of the price levels) no run can grow and nothing kept is read
        # again: a later trade reads as in a new state but for the venue's last price.
        return not state.open and now_ns - state.last_ns > self.burst_ms * MS + CALM_NS

    def flush(self, state: IgnitionState) -> list[Alert]:
        out = [a for a in (self._close(state, b) for b in state.open.values()) if a is not None]
        state.open.clear()
        state.rising.clear()
        return out

    def update(self, state: IgnitionState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        self._record(state, events)
        instrument = events.column("instrument")[0].as_py()
        owned = pc.or_(pc.is_valid(events.column("buy_owner")), pc.is_valid(events.column("sell_owner")))
        events = events.select(ROW_COLUMNS)
        if not pc.all(owned).as_py():
            events = events.filter(owned)
        out: list[Alert] = []
        if events.num_rows:
            base = state.owned_seq
            state.owned.append((events.column("ts").cast(pa.int64()).to_numpy(), events))
            state.owned_seq += events.num_rows
            out = self._read(state, events, instrument, base)
        self._trim(state)
        return out

    def _resolve(self, state: IgnitionState, lists: list[list]) -> None:
        """Row seqs in ``lists`` become the rows themselves (dicts), in one take."""
        idx = sorted({x for lst in lists for x in lst if isinstance(x, int)})
        if not idx:
            return
        owned = _joined(state.owned)[1]
        got = dict(zip(idx, to_rows(owned.take(pa.array([x - state.owned_base for x in idx])))))
        for lst in lists:
            lst[:] = [got[x] if isinstance(x, int) else x for x in lst]

    def _record(self, state: IgnitionState, events: pa.Table) -> None:
        """Every trade of the batch onto the tape (vectorised): the venues' price levels at any time."""
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        px = events.column("price").to_numpy()
        venue = events.column("venue").to_numpy(zero_copy_only=False)
        state.tape.append((ts, px, venue))
        state.last_ns = int(ts[-1])

    def _trim(self, state: IgnitionState) -> None:
        # levels look back calm_ms before a burst's first trade; a run is at most burst_ms old
        gap = self.burst_ms * MS
        keep = state.last_ns - gap - CALM_NS
        if state.open:
            keep = min(keep, min(b.times[0] for b in state.open.values()) - CALM_NS)
        _drop_before(state.tape, keep)
        if state.owned:
            # A run's trades are at most burst_ms older than the instrument's latest trade when next read;
            # an open burst's rows are read (as seqs) until its verdict: most bursts fail it, so their rows
            # are only ever taken for an alert.
            keep = state.last_ns - gap
            if state.open:
                keep = min(keep, min(b.times[0] for b in state.open.values()))
            state.owned_base += _drop_before(state.owned, keep)

    def _first_price(self, state: IgnitionState, venue: str, from_ns: int) -> float | None:
        """The venue's first trade price at or after ``from_ns`` (the start of the calm look-back)."""
        ts, px, ven = _joined(state.tape)
        lo = int(np.searchsorted(ts, from_ns, side="left"))
        step = 64  # the first trade on the venue is near: compare growing blocks, not the whole tape after lo
        while lo < len(ts):
            hit = np.flatnonzero(ven[lo:lo + step] == venue)
            if len(hit):
                return float(px[lo + hit[0]])
            lo, step = lo + step, step * 4
        return None

    def _level(self, state: IgnitionState, at_ns: int, venue: str, same: bool) -> float | None:
        """Median of the last LEVEL_TRADES trades before ``at_ns`` (within calm_ms) on ``venue`` — or,
        with ``same`` false, on every other venue: the reference market."""
        ts, px, ven = _joined(state.tape)
        hi = int(np.searchsorted(ts, at_ns, side="left"))
        lo = int(np.searchsorted(ts, at_ns - CALM_NS, side="left"))
        on = (ven[lo:hi] == venue) if same else (ven[lo:hi] != venue)
        p = px[lo:hi][on][-LEVEL_TRADES:]
        return float(np.median(p)) if len(p) else None

    def _read(self, state: IgnitionState, events: pa.Table, instrument: str, base: int) -> list[Alert]:
        """The owner trades of one batch, in event order; ``base`` is the seq of its first row."""
        cols = [events.column(c) for c in ("venue", "price", "qty", "side", "buy_owner", "sell_owner")]
        ts_l = events.column("ts").cast(pa.int64()).to_pylist()
        out: list[Alert] = []
        gap, window, calm = self.burst_ms * MS, self.reverse_ms * MS, CALM_NS
        side_qty = state.side_qty
        opened, rising, last_px, activity, runs = state.open, state.rising, state.last_px, state.activity, state.runs
        for i, (ts, venue, px, qty, side, buyer, seller) in enumerate(zip(ts_l, *(c.to_pylist() for c in cols)), base):
            prev = last_px.get(venue, px)
            last_px[venue] = px
            if opened:
                if ts > state.expire_ns:  # reversal windows that closed: their verdicts
                    for owner in sorted(o for o, b in opened.items() if ts - b.last_ns > window):
                        rising.pop(owner, None)
                        a = self._close(state, opened.pop(owner))
                        if a is not None:
                            out.append(a)
                    state.expire_ns = min((b.last_ns + window for b in opened.values()), default=0)
                for b in rising.values():  # the price the bursts made, up to their first reversal
                    if b.venue == venue:
                        b.extreme = max(b.extreme, px) if b.side == BUY else min(b.extreme, px)
                b = opened.get(buyer)
                if b is not None and b.side != BUY:
                    self._reverse(state, b, i, ts, qty)
                b = opened.get(seller)
                if b is not None and b.side != SELL:
                    self._reverse(state, b, i, ts, qty)
            if side is None or side not in SIDES:
                continue
            key = (venue, side)
            before = side_qty.get(key, 0.0)  # the venue's aggressive flow that way, this trade excluded
            side_qty[key] = before + qty
            if buyer == seller:
                continue
            owner = buyer if side == BUY else seller
            if not owner:
                continue
            b = opened.get(owner)
            if b is not None and b.side == side and not b.n_reverse and ts - b.last_ns <= gap:
                # Buying (selling) on for twice as long as a burst takes is a sustained campaign; within
                # that, a busy owner's stray trade either side of its burst does not make one.
                if ts - b.times[0] > 2 * gap:
                    b.sustained = True
                if len(b.rows) < MAX_REVERSE_EVIDENCE:
                    b.rows.append(i)  # the open burst goes on: more of the same aggressive trading
                b.times.append(ts)
                b.qty += qty
                b.side_qty1 = before + qty
                continue
            count, at = activity.get(owner, (0.0, ts))
            usual = count * math.exp((at - ts) / ACTIVITY_TAU_NS)
            activity[owner] = (usual + 1.0, ts)
            run = runs.get(owner)
            if run is None or run[0][4] != side or run[0][5] != venue:
                run = runs[owner] = deque()
            while run and run[0][0] < ts - gap:
                run.popleft()
            run.append((ts, qty, prev, px, side, venue, usual, before, i))
            if len(run) >= self.min_trades and owner not in opened:
                t0, p0 = run[0][0], run[0][2]
                b = opened[owner] = rising[owner] = _Burst(side, owner, venue, p0, instrument)
                calm_px = self._first_price(state, venue, t0 - calm) or p0
                b.prior_move_bps = (1.0 if side == BUY else -1.0) * (p0 / calm_px - 1.0) * 1e4
                b.usual = run[0][6] * gap / ACTIVITY_TAU_NS
                b.side_qty0, b.side_qty1 = run[0][7], before + qty
                for t, q, _, p, _, _, _, _, r in run:
                    b.times.append(t)
                    b.rows.append(r)
                    b.qty += q
                    b.extreme = p if not b.extreme else max(b.extreme, p) if side == BUY else min(b.extreme, p)
                del runs[owner]
                state.expire_ns = min(state.expire_ns, ts + window) if len(opened) > 1 else ts + window
        # runs past the burst window can never grow: forget them (bounded state)
        last = ts_l[-1]
        for owner in [o for o, r in state.runs.items() if last - r[-1][0] > gap]:
            del state.runs[owner]
        return out

    def _reverse(self, state: IgnitionState, b: _Burst, i: int, ts: int, qty: float) -> None:
        if not b.n_reverse:
            state.rising.pop(b.owner, None)  # its move is fixed now
            b.first_reverse_ns = ts
            sign = 1.0 if b.side == BUY else -1.0
            b.move_bps = sign * (b.extreme / b.p0 - 1.0) * 1e4
        b.n_reverse += 1
        b.reverse_qty += qty
        if len(b.reverse) < MAX_REVERSE_EVIDENCE:
            b.reverse.append(i)

    def _close(self, state: IgnitionState, b: _Burst) -> Alert | None:
        share = b.reverse_qty / b.qty
        if not b.n_reverse or b.move_bps < self.min_move_bps or not \
                self.min_reverse_share <= share <= self.max_reverse_share or b.usual >= self.max_usual_trades \
                or b.prior_move_bps >= self.max_prior_move_bps or b.sustained:
            return None
        flow = b.side_qty1 - b.side_qty0
        volume_share = b.qty / flow if flow > 0 else 1.0
        if volume_share < self.min_volume_share:
            return None
        # Against the other venues: the burst must take its venue out of line with them in its direction,
        # from in line (a move every venue makes, or a venue catching up with the others, is no ignition).
        sign = 1.0 if b.side == BUY else -1.0
        v0 = self._level(state, b.times[0], b.venue, same=True)
        r0 = self._level(state, b.times[0], b.venue, same=False)
        r1 = self._level(state, b.first_reverse_ns, b.venue, same=False)
        ref = None
        if v0 is not None and r0 is not None and r1 is not None:
            ref = (sign * (v0 / r0 - 1.0) * 1e4, sign * (b.extreme / r1 - 1.0) * 1e4)
            if ref[0] >= self.max_prior_move_bps or ref[1] < self.min_move_bps:
                return None
        self._resolve(state, [b.rows, b.reverse])
        return self._alert(b, b.instrument, share, volume_share, ref)

    def _alert(self, b: _Burst, instrument: str, share: float, volume_share: float,
               ref: tuple[float, float] | None) -> Alert:
        rows = b.rows + b.reverse
        evidence = pa.Table.from_pylist([{**r, "instrument": instrument} for r in rows], schema=EVIDENCE_SCHEMA)
        start = b.times[0]
        other = SELL if b.side == BUY else BUY
        accounts = sorted({r[f"{b.side}_account"] for r in b.rows if r[f"{b.side}_account"]}
                          | {r[f"{other}_account"] for r in b.reverse if r[f"{other}_account"]})
        summary = (f"{b.owner} ignited momentum in {instrument} on {b.venue}: {len(b.times)} aggressive {b.side}s of "
                   f"{b.qty:.10g} in {(b.last_ns - start) / 1e9:.1f}s moved the price {b.move_bps:+.0f} bps "
                   f"({b.p0:.10g} to {b.extreme:.10g}), then {'sold' if other == SELL else 'bought'} "
                   f"{b.reverse_qty:.10g} ({share:.0%} of the burst) "
                   f"{(b.first_reverse_ns - b.last_ns) / 1e9:.1f}s later")
        score = b.move_bps / self.min_move_bps * min(share, 1.0)
        severity = Severity.HIGH if b.move_bps >= 3 * self.min_move_bps and share >= 0.5 else \
            Severity.MEDIUM if b.move_bps >= 2 * self.min_move_bps else Severity.LOW
        return Alert.build(
            detector=self.name, version=self.version, key=f"{b.owner}|{instrument}", window_start_ns=start,
            window_end_ns=max(r["ts"] for r in rows),
            opening_evidence=[evidence_id(r) for r in b.rows[:self.min_trades]],
            evidence=evidence, severity=severity, score=round(score, 6), instrument=instrument,
            venues=sorted({r["venue"] for r in rows}), owners=[b.owner], accounts=accounts, summary=summary,
            params=self.params(),
            metrics={"burst_trades": len(b.times), "burst_qty": b.qty, "burst_s": (b.last_ns - start) / 1e9,
                     "move_bps": round(b.move_bps, 6), "price_before": b.p0, "price_extreme": b.extreme,
                     "reverse_trades": b.n_reverse, "reverse_qty": b.reverse_qty, "reverse_share": round(share, 6),
                     "reverse_delay_s": (b.first_reverse_ns - b.last_ns) / 1e9,
                     "prior_move_bps": round(b.prior_move_bps, 6), "usual_trades": round(b.usual, 6),
                     "volume_share": round(volume_share, 6),
                     "gap_before_bps": None if ref is None else round(ref[0], 6),
                     "gap_after_bps": None if ref is None else round(ref[1], 6)},
        )
