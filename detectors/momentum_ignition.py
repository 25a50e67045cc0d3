"""Momentum ignition: one owner's burst of aggressive trades moves the price, then it trades against the move.

Per instrument (the key), trades whose sides carry owners are read in event order.  An owner's
*burst* is ``min_trades`` or more aggressive trades on one side (the owner is the aggressor:
buyer of a buy-aggressor trade, seller of a sell-aggressor one), each within ``burst_ms`` of the
previous one.  The burst *moved the price* when, from the last price on that venue before its
first trade to the most extreme price traded there (by anyone) since, the price went
``min_move_bps`` or more in the burst's direction.  The owner then *trades against the move*:
within ``reverse_ms`` after the burst's last trade its trades on the other side — aggressive or
resting, any account, either platform — add up to ``min_reverse_share`` of the burst's quantity.
One alert per burst, raised when its reversal window closes (a later trade of the instrument, or
the end of input) if the owner's opposite trading came to between ``min_reverse_share`` and
``max_reverse_share`` of the burst: an unwind of roughly the burst's size, not an owner who simply
trades a lot both ways.

What keeps look-alikes out:

- an arbitrageur buying on SHARED after another venue moved (cross-venue arbitrage) keeps what it
  bought: no trading against the move;
- a front-runner trades once or twice before someone else's large trade: no burst;
- an owner marking a fixing pushes the price but does not turn round within ``reverse_ms``;
- an ordinary active trader's trades switch sides at random: a one-sided run of ``min_trades``
  that moves the price by ``min_move_bps`` and is then reversed in size is rare noise, and a heavy trader's opposite trading dwarfs its "burst" (``max_reverse_share``);
- traders chasing a pump buy in bursts into a move they did not make; their opposite trading, as
  the makers they also are, runs to many times their buying.

Public tapes (no owners) cannot show *whose* burst it was, so this detector reads only trades
with owners; ``abnormal_move`` and ``pump_and_dump`` read public tapes.

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

import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector
from surveil.alerts import EVIDENCE_COLUMNS, EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Kind, Side, to_rows

MS = 1_000_000
BUY, SELL = Side.BUY.value, Side.SELL.value
ACTIVITY_TAU_NS = 300 * 10**9  # time constant of an owner's usual aggressive-trading rate
CALM_NS = 10 * 10**9  # how far before a burst the price must have been calm
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
    sustained: bool = False  # the owner went on trading that way past burst_ms: a campaign, not a burst

    @property
    def last_ns(self) -> int:
        return self.times[-1]


@dataclass
class IgnitionState:
    last_ns: int = 0
    last_px: dict = field(default_factory=dict)  # venue -> last traded price
    runs: dict = field(default_factory=dict)  # owner -> deque of (ts, qty, price before, row) of its one-sided run
    open: dict = field(default_factory=dict)  # owner -> _Burst waiting for, or in, its reversal window
    expire_ns: int = 0  # no open burst's reversal window ends before this
    recent: dict = field(default_factory=dict)  # venue -> deque of (ts, price) over the last calm_ms
    activity: dict = field(default_factory=dict)  # owner -> (decayed count of its aggressive trades, at ts)


class _Rows:
    """A batch's rows for evidence: kept as row numbers while read, turned into dicts when kept."""

    def __init__(self, events: pa.Table):
        self.events = events

    def resolve(self, lists: list[list]) -> None:
        idx = sorted({x for lst in lists for x in lst if isinstance(x, int)})
        if not idx:
            return
        got = dict(zip(idx, to_rows(self.events.select(ROW_COLUMNS).take(idx))))
        for lst in lists:
            lst[:] = [got[x] if isinstance(x, int) else x for x in lst]


class MomentumIgnition(Detector):
    name = "momentum_ignition"
    version = "1.0"
    key_columns = ("instrument",)
    description = ("A burst of one owner's aggressive trades on one side moves the price, then the same owner "
                   "(any account, either platform) trades against the move.")
    param_docs = {
        "min_trades": ("trades", "aggressive trades on one side an owner's burst needs ..."),
        "burst_ms": ("ms", "... within this time"),
        "min_move_bps": ("bps", "price move on the venue, from before the burst to its extreme until the owner "
                                "turns, in the burst's direction"),
        "max_usual_trades": ("trades per burst_ms", "the owner's usual rate of aggressive trades before the burst "
                                                    "(exponentially weighted over ~5 min) must be below this: the "
                                                    "burst is out of character, not a busy trader's routine"),
        "max_prior_move_bps": ("bps", "the venue's price moved less than this in the burst's direction in the 10 s "
                                      "before it: the owner started the move rather than joined one"),
        "reverse_ms": ("ms", "the owner's trades on the other side count within this time after the burst"),
        "min_reverse_share": ("share of burst qty", "the owner's opposite trades must add up to at least this "
                                                    "share of the burst's quantity ..."),
        "max_reverse_share": ("share of burst qty", "... and at most this share (more is an owner trading both "
                                                    "ways all along, not unwinding a burst)"),
    }

    def __init__(self, min_trades: int = 5, burst_ms: int = 5_000, min_move_bps: float = 20.0,
                 max_usual_trades: float = 0.5, max_prior_move_bps: float = 15.0, reverse_ms: int = 90_000, min_reverse_share: float = 0.3, max_reverse_share: float = 2.0):
        if min_trades < 2 or burst_ms <= 0 or reverse_ms <= 0:
            raise ValueError("min_trades must be >= 2, burst_ms and reverse_ms > 0")
        if max_usual_trades <= 0 or max_prior_move_bps <= 0:
            raise ValueError("max_usual_trades and max_prior_move_bps must be > 0")
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

    def select(self, events: pa.Table) -> pa.Table:
        """Priced trades with at least one owner (public tapes name no one)."""
        ok = pc.and_(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                             pc.greater(events.column("price"), 0)), pc.greater(events.column("qty"), 0))
        owned = pc.or_(pc.is_valid(events.column("buy_owner")), pc.is_valid(events.column("sell_owner")))
        return events.filter(pc.fill_null(pc.and_(ok, owned), False))

    def new_state(self) -> IgnitionState:
        return IgnitionState()

    def is_idle(self, state: IgnitionState, now_ns: int) -> bool:
        # An open burst still owes its verdict (given at the next trade or at flush); otherwise, past both
        # windows no run can grow, and a later trade reads as in a new state but for the venue's last price.
        return not state.open and now_ns - state.last_ns > self.burst_ms * MS

    def flush(self, state: IgnitionState) -> list[Alert]:
        out = [a for a in (self._close(b) for b in state.open.values()) if a is not None]
        state.open.clear()
        return out

    def update(self, state: IgnitionState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        instrument = events.column("instrument")[0].as_py()
        cols = [events.column(c) for c in ("venue", "price", "qty", "side", "buy_owner", "sell_owner")]
        ts_l = events.column("ts").cast(pa.int64()).to_pylist()
        rows = _Rows(events)
        out: list[Alert] = []
        gap, window, calm = self.burst_ms * MS, self.reverse_ms * MS, CALM_NS
        for i, (ts, venue, px, qty, side, buyer, seller) in enumerate(zip(ts_l, *(c.to_pylist() for c in cols))):
            state.last_ns = ts
            prev = state.last_px.get(venue, px)
            state.last_px[venue] = px
            recent = state.recent.get(venue)
            if recent is None:
                recent = state.recent[venue] = deque()
            while recent and recent[0][0] < ts - calm:
                recent.popleft()
            calm_px = recent[0][1] if recent else prev
            recent.append((ts, px))
            if state.open:
                if ts > state.expire_ns:  # reversal windows that closed: their verdicts
                    for owner in sorted(o for o, b in state.open.items() if ts - b.last_ns > window):
                        rows.resolve([state.open[owner].rows, state.open[owner].reverse])
                        a = self._close(state.open.pop(owner))
                        if a is not None:
                            out.append(a)
                    state.expire_ns = min((b.last_ns + window for b in state.open.values()), default=0)
                for b in state.open.values():  # the price the bursts made, up to their first reversal
                    if b.venue == venue and not b.n_reverse:
                        b.extreme = max(b.extreme, px) if b.side == BUY else min(b.extreme, px)
                for owner, own_side in ((buyer, BUY), (seller, SELL)):
                    b = state.open.get(owner) if owner else None
                    if b is not None and b.side != own_side:
                        self._reverse(b, i, ts, qty)
            if side not in (BUY, SELL) or buyer == seller:
                continue
            owner = buyer if side == BUY else seller
            if not owner:
                continue
            b = state.open.get(owner)
            if b is not None and b.side == side and not b.n_reverse and ts - b.last_ns <= gap:
                if ts - b.times[0] > gap:  # buying (selling) on past burst_ms is a sustained campaign
                    b.sustained = True
                if len(b.rows) < MAX_REVERSE_EVIDENCE:
                    b.rows.append(i)  # the open burst goes on: more of the same aggressive trading
                b.times.append(ts)
                b.qty += qty
                continue
            count, at = state.activity.get(owner, (0.0, ts))
            usual = count * math.exp((at - ts) / ACTIVITY_TAU_NS)
            state.activity[owner] = (usual + 1.0, ts)
            run = state.runs.get(owner)
            if run is None or run[0][4] != side or run[0][5] != venue:
                run = state.runs[owner] = deque()
            while run and run[0][0] < ts - gap:
                run.popleft()
            run.append((ts, qty, prev, px, side, venue, calm_px, usual, i))
            if len(run) >= self.min_trades and owner not in state.open:
                b = state.open[owner] = _Burst(side, owner, venue, run[0][2], instrument)
                b.prior_move_bps = (1.0 if side == BUY else -1.0) * (run[0][2] / run[0][6] - 1.0) * 1e4
                b.usual = run[0][7] * gap / ACTIVITY_TAU_NS
                for t, q, _, p, _, _, _, _, r in run:
                    b.times.append(t)
                    b.rows.append(r)
                    b.qty += q
                    b.extreme = p if not b.extreme else max(b.extreme, p) if side == BUY else min(b.extreme, p)
                del state.runs[owner]
                state.expire_ns = min(state.expire_ns, ts + window) if len(state.open) > 1 else ts + window
        # runs past the burst window can never grow: forget them (bounded state)
        for owner in [o for o, r in state.runs.items() if state.last_ns - r[-1][0] > gap]:
            del state.runs[owner]
        # rows kept past this batch become plain dicts (nothing pins the batch), in one take
        keep = [b.rows for b in state.open.values()] + [b.reverse for b in state.open.values()]
        runs = {o: [e[-1] for e in r] for o, r in state.runs.items()}
        rows.resolve(keep + list(runs.values()))
        for o, r in state.runs.items():
            state.runs[o] = deque(e[:-1] + (row,) for e, row in zip(r, runs[o]))
        return out

    def _reverse(self, b: _Burst, i: int, ts: int, qty: float) -> None:
        if not b.n_reverse:
            b.first_reverse_ns = ts
            sign = 1.0 if b.side == BUY else -1.0
            b.move_bps = sign * (b.extreme / b.p0 - 1.0) * 1e4
        b.n_reverse += 1
        b.reverse_qty += qty
        if len(b.reverse) < MAX_REVERSE_EVIDENCE:
            b.reverse.append(i)

    def _close(self, b: _Burst) -> Alert | None:
        share = b.reverse_qty / b.qty
        if not b.n_reverse or b.move_bps < self.min_move_bps or not \
                self.min_reverse_share <= share <= self.max_reverse_share or b.usual >= self.max_usual_trades \
                or b.prior_move_bps >= self.max_prior_move_bps or b.sustained:
            return None
        return self._alert(b, b.instrument, share)

    def _alert(self, b: _Burst, instrument: str, share: float) -> Alert:
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
            window_end_ns=max(r["ts"] for r in rows), opening_evidence=[evidence_id(r) for r in b.rows[:self.min_trades]],
            evidence=evidence, severity=severity, score=round(score, 6), instrument=instrument,
            venues=sorted({r["venue"] for r in rows}), owners=[b.owner], accounts=accounts, summary=summary,
            params=self.params(),
            metrics={"burst_trades": len(b.times), "burst_qty": b.qty, "burst_s": (b.last_ns - start) / 1e9,
                     "move_bps": round(b.move_bps, 6), "price_before": b.p0, "price_extreme": b.extreme,
                     "reverse_trades": b.n_reverse, "reverse_qty": b.reverse_qty, "reverse_share": round(share, 6),
                     "reverse_delay_s": (b.first_reverse_ns - b.last_ns) / 1e9,
                     "prior_move_bps": round(b.prior_move_bps, 6), "usual_trades": round(b.usual, 6)},
        )
