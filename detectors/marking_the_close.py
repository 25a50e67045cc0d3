"""Marking the close: one owner's aggressive, one-sided trading into a reference-price fixing.

Fixings are the multiples of ``fixing_every_ms`` on the UTC clock and/or the daily times in
``fixing_times_utc``.  For each fixing F the detector looks at the ``window_ms`` before it
and, per owner and venue, at the owner's *aggressive* trades (the owner is the aggressor
side's owner).  An owner alerts at F when

- it took liquidity at least ``min_trades`` times on one side, that side being at least
  ``min_side_share`` of its aggressive trades in the window;
- its venue's price (median of the venue's last ``level_trades`` trades) moved at least
  ``min_move_bps`` its way from just before its first trade to the fixing;
- the other venues did not move with it: the move beyond theirs (excess) is also at least
  ``min_move_bps`` — a news jump moves every venue, a marked close only the one marked;
- the move is out of proportion to the volume: at least ``min_bps_per_typical`` bps per
  typical-sized trade's worth (median traded size on the venue in the window) of the
  owner's volume — an honest large order moves the price a little for a lot of volume.

The verdict is reached at the first trade of the instrument at or after F (event time), so
alerts do not depend on batching.  State per instrument: the trades (time, price, size) of
at most two windows, per-owner tallies of the current window, and the candidate rows kept as
evidence (Arrow, narrowed).

>>> from tests.conftest import events
>>> F = 1_800  # a fixing every 30 minutes: 00:30 UTC is one
>>> ts = [F - 200.0 + i for i in range(0, 100, 5)] + [F - 60.0 + 10 * k for k in range(6)] + [F + 1.0]
>>> n = len(ts)
>>> px = [100.0] * 20 + [100.0 + 0.1 * (k + 1) for k in range(6)] + [100.0]
>>> side = ["buy", "sell"] * 10 + ["buy"] * 6 + ["sell"]
>>> buyer = ["X"] * 20 + ["M1"] * 6 + ["Y"]
>>> t = events(ts=ts, kind=["trade"] * n, venue=["SHARED"] * n, instrument=["BTC/USDT"] * n, price=px,
...            qty=[1.0] * n, side=side, buy_owner=buyer, sell_owner=["Z"] * n, trade_id=[f"t{i}" for i in range(n)])
>>> d = MarkingTheClose(fixing_every_ms=1_800_000)
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]  # doctest: +NORMALIZE_WHITESPACE
['M1 marked the 00:30:00 UTC fixing of BTC/USDT on SHARED: 6 aggressive buys (6, 6x typical trade 1) in the
  60s before it moved the price +40.0 bps (other venues: none), 6.7 bps per typical trade; 6 of its 6 aggressive
  trades on that side (chance 0.016)']
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector
from surveil.alerts import EVIDENCE_COLUMNS, Alert, Severity, evidence_id
from surveil.schemas import Kind, Side, to_rows

MS = 1_000_000
DAY_NS = 86_400 * 10**9
ID_COLUMNS = ["kind", "venue", "trade_id", "exec_id", "instrument", "ts", "src", "src_seq"]


@dataclass
class _Tally:  # one owner's aggressive trades on one venue and side in the current window
    n: int = 0
    qty: float = 0.0
    first_ns: int = 0


@dataclass
class MarkState:
    last_ns: int = 0
    fixing: int | None = None  # the fixing the current window leads to
    hist: dict = field(default_factory=dict)  # venue -> list of (ts, price, qty) array chunks
    tallies: dict = field(default_factory=dict)  # (owner, venue, side) -> _Tally
    rows: list = field(default_factory=list)  # window trades with an aggressor owner (evidence candidates)


def _binomial_tail(k: int, n: int) -> float:
    """P(at least k of n fair coin flips land one given way).

    >>> _binomial_tail(5, 5), _binomial_tail(1, 1)
    (0.03125, 0.5)
    """
    return sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n


def _parse_times(text: str) -> list[int]:
    """Daily times 'HH:MM[:SS]' → ns after midnight UTC.

    >>> _parse_times("16:00, 08:30:15")
    [30615000000000, 57600000000000]
    """
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        bits = part.split(":")
        if not 2 <= len(bits) <= 3 or not all(b.isdigit() for b in bits):
            raise ValueError(f"fixing time {part!r} is not HH:MM or HH:MM:SS")
        h, m, s = (int(b) for b in bits + ["0"] * (3 - len(bits)))
        if h > 23 or m > 59 or s > 59:
            raise ValueError(f"fixing time {part!r} out of range")
        out.append(((h * 60 + m) * 60 + s) * 10**9)
    return sorted(out)


class MarkingTheClose(Detector):
    name = "marking_the_close"
    version = "1.0"
    key_columns = ("instrument",)
    description = ("One owner's aggressive one-sided trades in the minutes before a reference-price fixing that "
                   "move its venue's price, but not the other venues', out of proportion to their volume.")
    param_docs = {
        "fixing_every_ms": ("ms", "fixings at every multiple of this on the UTC clock (0: none)"),
        "fixing_times_utc": ("HH:MM[:SS], comma-separated", "daily fixing times (UTC), besides fixing_every_ms"),
        "window_ms": ("ms", "how long before a fixing an owner's trades count"),
        "min_trades": ("trades", "aggressive trades on one side an owner needs in the window"),
        "min_side_share": ("share of trades", "that side's share of the owner's aggressive trades in the window"),
        "min_move_bps": ("bps", "the venue's move the owner's way from its first trade to the fixing, and that "
                                "move beyond the other venues' moves, must each reach this"),
        "min_bps_per_typical": ("bps per typical trade", "the move per typical-sized trade's worth of the owner's "
                                                         "volume (out of proportion to it)"),
        "max_side_pvalue": ("probability", "the owner's one-sidedness must be at most this likely by chance (binomial, "
                                           "even odds); per fixing and venue only the least likely owner is named"),
        "level_trades": ("trades", "a venue's price level is the median of its last this many trades"),
    }

    def __init__(self, fixing_every_ms: int = 300_000, fixing_times_utc: str = "", window_ms: int = 300_000,
                 min_trades: int = 4, min_side_share: float = 0.8, min_move_bps: float = 20.0,
                 min_bps_per_typical: float = 1.0, max_side_pvalue: float = 0.02,
                 level_trades: int = 5):
        if fixing_every_ms < 0 or window_ms <= 0 or min_trades < 1 or level_trades < 1:
            raise ValueError("fixing_every_ms must be >= 0, window_ms > 0, min_trades and level_trades >= 1")
        if not 0.5 <= min_side_share <= 1 or min_move_bps <= 0 or min_bps_per_typical < 0:
            raise ValueError("min_side_share must be in [0.5, 1], min_move_bps > 0, min_bps_per_typical >= 0")
        if not 0 < max_side_pvalue <= 1:
            raise ValueError("max_side_pvalue must be in (0, 1]")
        self._daily = _parse_times(fixing_times_utc)
        if not fixing_every_ms and not self._daily:
            raise ValueError("no fixings: set fixing_every_ms or fixing_times_utc")
        self.fixing_every_ms = int(fixing_every_ms)
        self.fixing_times_utc = str(fixing_times_utc)
        self.window_ms = int(window_ms)
        self.min_trades = int(min_trades)
        self.min_side_share = float(min_side_share)
        self.min_move_bps = float(min_move_bps)
        self.min_bps_per_typical = float(min_bps_per_typical)
        self.max_side_pvalue = float(max_side_pvalue)
        self.level_trades = int(level_trades)

    def next_fixing(self, ts: int) -> int:
        """The first fixing strictly after ``ts`` (a trade at a fixing counts towards the next)."""
        cands = []
        if self.fixing_every_ms:
            every = self.fixing_every_ms * MS
            cands.append((ts // every + 1) * every)
        if self._daily:
            day = ts - ts % DAY_NS
            cands.append(next((day + t for t in self._daily if day + t > ts), day + DAY_NS + self._daily[0]))
        return min(cands)

    # -- contract ---------------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        """Trades with a price (every venue's: the others are the yardstick)."""
        return events.filter(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                                     pc.is_valid(events.column("price"))))

    def new_state(self) -> MarkState:
        return MarkState()

    def is_idle(self, state: MarkState, now_ns: int) -> bool:
        # Levels look back at most one window before an owner's first trade: past two windows of
        # silence, and with no tallies waiting for their fixing, a fresh state reads the same.
        return not state.tallies and now_ns - state.last_ns > 2 * self.window_ms * MS

    def update(self, state: MarkState, events: pa.Table) -> list[Alert]:
        n = events.num_rows
        if not n:
            return []
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        out: list[Alert] = []
        i = 0
        while i < n:
            if state.fixing is None:
                state.fixing = self.next_fixing(int(ts[i]))
            f = state.fixing
            j = int(np.searchsorted(ts, f, side="left"))
            if j > i:
                self._take(state, events.slice(i, j - i), ts[i:j], f)
            if j < n:  # a trade at or past the fixing: the window is complete
                out += self._evaluate(state, f, events.column("instrument")[0].as_py())
                state.fixing = self.next_fixing(int(ts[j]))
                self._trim(state, state.fixing - 2 * self.window_ms * MS)
            i = j
        state.last_ns = int(ts[-1])
        return out

    # -- steps ------------------------------------------------------------------------------
    def _take(self, state: MarkState, part: pa.Table, ts: np.ndarray, f: int) -> None:
        keep_from = f - 2 * self.window_ms * MS  # older trades can never be a level this fixing reads
        venues = part.column("venue").to_numpy(zero_copy_only=False)
        px, qty = part.column("price").to_numpy(), pc.fill_null(part.column("qty"), 0.0).to_numpy()
        recent = ts >= keep_from
        for v in np.unique(venues[recent]).tolist():
            m = recent & (venues == v)
            state.hist.setdefault(v, []).append((ts[m], px[m], qty[m]))
        # aggressive trades with an owner, inside the window
        side = pc.fill_null(part.column("side"), "")
        owner = pc.if_else(pc.equal(side, Side.BUY.value), part.column("buy_owner"),
                           pc.if_else(pc.equal(side, Side.SELL.value), part.column("sell_owner"), pa.scalar(None, pa.string())))
        mask = pc.and_(pc.is_valid(owner), pa.array(ts >= f - self.window_ms * MS))
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():
            return
        t = pa.table({"owner": owner, "venue": part.column("venue"), "side": side, "qty": part.column("qty"),
                      "ts": pa.array(ts)}).filter(mask)
        g = t.group_by(["owner", "venue", "side"], use_threads=False).aggregate(
            [("qty", "sum"), ("qty", "count"), ("ts", "min")])
        for o, v, s, q, c, t0 in zip(*(g.column(k).to_pylist() for k in
                                       ("owner", "venue", "side", "qty_sum", "qty_count", "ts_min"))):
            tally = state.tallies.get((o, v, s))
            if tally is None:
                tally = state.tallies[(o, v, s)] = _Tally(first_ns=t0)
            tally.n += c
            tally.qty += q or 0.0
        rows = part.filter(mask).select(list(EVIDENCE_COLUMNS))
        state.rows.append(rows.append_column("_owner", t.column("owner")))

    def _trim(self, state: MarkState, keep_from: int) -> None:
        state.tallies, state.rows = {}, []
        for v in list(state.hist):
            t, p, q = (np.concatenate(c) for c in zip(*state.hist[v]))
            k = t >= keep_from
            if k.any():
                state.hist[v] = [(t[k], p[k], q[k])]
            else:
                del state.hist[v]

    def _evaluate(self, state: MarkState, f: int, instrument: str) -> list[Alert]:
        if not state.tallies:
            return []
        hist = {v: tuple(np.concatenate(c) for c in zip(*chunks)) for v, chunks in state.hist.items()}
        window = self.window_ms * MS

        def level(v: str, at: int) -> float | None:  # median of the venue's last trades before `at`
            t, p, _ = hist[v]
            hi = int(np.searchsorted(t, at, side="left"))
            lo = max(int(np.searchsorted(t, at - window, side="left")), hi - self.level_trades)
            return float(np.median(p[lo:hi])) if hi > lo else None

        out, found = [], {}
        by_owner: dict = {}
        for (o, v, s), tally in state.tallies.items():
            by_owner.setdefault((o, v), {})[s] = tally
        for (o, v), sides in sorted(by_owner.items()):
            side, tally = max(sides.items(), key=lambda kv: (kv[1].n, kv[1].qty, kv[0]))
            total = sum(x.n for x in sides.values())
            if side not in (Side.BUY.value, Side.SELL.value) or tally.n < self.min_trades:
                continue
            if tally.n < self.min_side_share * total:
                continue
            sign = 1.0 if side == Side.BUY.value else -1.0
            start, close = level(v, tally.first_ns), level(v, f)
            if start is None or close is None:
                continue
            move = (close / start - 1) * 1e4 * sign
            if move < self.min_move_bps:
                continue
            others = {}
            for w in hist:
                if w != v:
                    a, b = level(w, tally.first_ns), level(w, f)
                    if a is not None and b is not None:
                        others[w] = (b / a - 1) * 1e4 * sign
            excess = move - max(max(others.values(), default=0.0), 0.0)
            if excess < self.min_move_bps:
                continue
            t, _, q = hist[v]
            in_window = q[(t >= f - window) & (t < f)]
            typical = float(np.median(in_window)) if len(in_window) else 0.0
            units = tally.qty / typical if typical > 0 else float("inf")
            per_unit = move / units if units > 0 else float("inf")
            if per_unit < self.min_bps_per_typical:
                continue
            pval = _binomial_tail(tally.n, total)
            if pval > self.max_side_pvalue:
                continue
            found.setdefault(v, []).append((pval, -tally.n, o, side, tally, move, others, typical, per_unit))
        # Other takers on the move's side look one-sided too by chance: per venue only the owner whose
        # one-sidedness is least likely by chance is named (the market-wide move is one finding).
        for v, cands in sorted(found.items()):
            pval, _, o, side, tally, move, others, typical, per_unit = min(cands, key=lambda c: c[:3])
            out.append(self._alert(state, o, v, side, tally, f, instrument, move, others, typical, per_unit, pval))
        return out

    def _alert(self, state: MarkState, owner: str, venue: str, side: str, tally: _Tally, f: int, instrument: str,
               move: float, others: dict, typical: float, per_unit: float, pval: float) -> Alert:
        rows = pa.concat_tables(state.rows)
        mask = pc.and_(pc.and_(pc.equal(rows.column("_owner"), owner), pc.equal(rows.column("venue"), venue)),
                       pc.equal(rows.column("side"), side))
        ev = rows.filter(mask).drop_columns(["_owner"])
        ids = sorted(evidence_id(r) for r in to_rows(ev.select(ID_COLUMNS)))
        ev_rows = to_rows(ev.select(["buy_account", "sell_account"]))
        acct_col = "buy_account" if side == Side.BUY.value else "sell_account"
        accounts = sorted({r[acct_col] for r in ev_rows if r[acct_col]})
        clock = time.strftime("%H:%M:%S", time.gmtime(f // 10**9))
        lead_s = (f - tally.first_ns) / 1e9
        total = sum(t.n for (o, v, _), t in state.tallies.items() if o == owner and v == venue)
        ref = ", ".join(f"{w} {m:+.1f} bps" for w, m in sorted(others.items())) or "none"
        sign = "+" if side == Side.BUY.value else "-"
        summary = (f"{owner} marked the {clock} UTC fixing of {instrument} on {venue}: {tally.n} aggressive "
                   f"{side}s ({tally.qty:.10g}, {tally.qty / typical if typical else 0:.0f}x typical trade "
                   f"{typical:.10g}) in the {lead_s:.0f}s before it moved the price {sign}{abs(move):.1f} bps "
                   f"(other venues: {ref}), {per_unit:.1f} bps per typical trade; {tally.n} of its {total} aggressive trades "
                   f"on that side (chance {pval:.2g})")
        severity = Severity.HIGH if move >= 3 * self.min_move_bps else (
            Severity.MEDIUM if move >= 1.5 * self.min_move_bps else Severity.LOW)
        return Alert.build(
            detector=self.name, version=self.version, key=f"{owner}|{instrument}", window_start_ns=tally.first_ns,
            window_end_ns=f, opening_evidence=ids, evidence=ev, severity=severity, score=round(move, 6),
            instrument=instrument, venues=sorted({venue, *others}), owners=[owner], accounts=accounts,
            summary=summary, params=self.params(),
            metrics={"fixing_ns": f, "side": side, "trades": tally.n, "qty": tally.qty, "typical_qty": typical,
                     "move_bps": round(move, 6), "other_venues_bps": {w: round(m, 6) for w, m in others.items()},
                     "bps_per_typical": round(per_unit, 6), "side_pvalue": pval, "lead_s": round(lead_s, 3)},
        )
