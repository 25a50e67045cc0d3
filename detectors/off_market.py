"""Off-market trades and trade-throughs: a trade priced outside the cross-venue reference band.

For a trade on venue V the band comes from the *other* venues' latest observations that
are fresh (at most ``max_staleness_ms`` older than the trade): a venue's top-of-book
quote gives its bid and ask; a venue with no fresh quote gives the median of its last
``ref_trades`` fresh trade prices as both (a median, so one odd print on a venue does not
become the yardstick for every other venue's trades).  The band is [best bid, best offer] across them.  A trade beyond it by more than
``band_bps`` (measured from the breached edge) is off-market; against a quote it is a
trade-through (the buyer could have bought cheaper, the seller sold dearer, on another
venue).  The trade's own venue never enters its band.

A price the whole market moves to is news, not an off-market print, so a trade is only
flagged if it is *still* outside the band built from the other venues' latest observations
``confirm_ms`` later.  That is decided on event time — at the first event later than
trade + ``confirm_ms``, or at flush — so alerts do not depend on batching.

Confirmed trades on one venue less than ``burst_gap_ms`` apart form one alert (a sustained
gap is one finding, not hundreds), raised at the first and revised (same id) as trades
join.  State per instrument: each venue's latest quote and last trades, the trades awaiting
confirmation (at most ``confirm_ms`` worth) and one open burst per venue.

>>> from tests.conftest import events
>>> t = events(ts=[0.0, 1.0, 1.2, 5.0], kind=["quote", "trade", "quote", "quote"], venue=["REFX", "SHARED", "REFX", "REFX"],
...     instrument=["BTC/USDT"] * 4, bid=[100.0, None, 100.0, 100.0], ask=[100.54, None, 100.54, 100.54],
...     price=[None, 101.40, None, None], qty=[None, 1.0, None, None], trade_id=[None, "S-BTC-1", None, None])
>>> d = OffMarket()
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]
['SHARED trade S-BTC-1 at 101.40 is 85.5 bps above the best offer across venues (REFX ask 100.54): trade-through, still off-market 2s later (band 50 bps)']
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector
from surveil.alerts import Alert, Severity, evidence_id
from surveil.schemas import EVENT_SCHEMA, Kind, to_rows

NEVER = np.iinfo(np.int64).min // 2
MAX_TRADES_IN_EVIDENCE = 10  # a burst's first trades; the peak and the last one are always added


@dataclass
class _Obs:  # one venue's latest quote (bid, ask) or trade (price, price)
    bid: float
    ask: float
    ts_ns: int
    row: pa.Table


@dataclass
class _Ref:  # one edge of the band as a trade saw it
    venue: str
    what: str  # "bid" | "ask" | "recent-trade price"
    price: float
    row: pa.Table


@dataclass
class _Flagged:  # a trade outside the band when it printed
    ts_ns: int
    venue: str
    price: float
    trade_id: str
    distance_bps: float
    above: bool
    edge: _Ref  # the edge it broke through
    other: _Ref  # the opposite edge
    row: pa.Table
    after_bps: float = float("nan")


@dataclass
class _Burst:
    first: _Flagged
    peak: _Flagged
    last: _Flagged
    trades: list[pa.Table]
    count: int = 1


@dataclass
class OffMarketState:
    quotes: dict[str, _Obs] = field(default_factory=dict)  # venue -> latest quote
    trades: dict[str, list[_Obs]] = field(default_factory=dict)  # venue -> its last ref_trades trades
    pending: list[_Flagged] = field(default_factory=list)  # awaiting confirmation, in time order
    bursts: dict[str, _Burst] = field(default_factory=dict)  # venue -> open burst


def _distance(p, lo, hi):
    """bps beyond the band [lo, hi] (0 inside it, or without a band), and whether above it."""
    with np.errstate(invalid="ignore"):
        d = np.fmax((p - hi) / hi, (lo - p) / lo) * 1e4
    return np.where(np.isnan(d), 0.0, d), p > hi


class _Book:
    """Every venue's references as of every prefix of one batch, built with forward fills.

    Column ``p`` of each (venue x n+1) array holds what the state plus rows ``[0, p)`` had
    seen; column 0 is the state alone.  Quotes: the latest bid, ask and time.  Trades: the
    last ``r`` prices and times per venue (``tp[j]`` is the j-th latest), whose median is a
    venue's reference when it has no fresh quote - so one odd print does not become the
    yardstick every other venue's trades are measured against.
    """

    def __init__(self, state, events, ts, price, is_quote, r, stale_ns):
        n, self.events, self.state, self.stale = events.num_rows, events, state, stale_ns
        self.venues = sorted(set(state.quotes) | set(state.trades) | {p.venue for p in state.pending}
                             | set(events.column("venue").unique().to_pylist()))
        self.code = pc.index_in(events.column("venue"), value_set=pa.array(self.venues, pa.string())).to_numpy(
            zero_copy_only=False)
        K, ar = len(self.venues), np.arange(n)
        bid, ask = (pc.fill_null(events.column(c), np.nan).to_numpy() for c in ("bid", "ask"))
        self.qb, self.qa = np.full((K, n + 1), np.nan), np.full((K, n + 1), np.nan)
        self.qt, self.qi = np.full((K, n + 1), NEVER, np.int64), np.full((K, n + 1), -1, np.int64)
        self.tp, self.tt = np.full((r, K, n + 1), np.nan), np.full((r, K, n + 1), NEVER, np.int64)
        self.tn = np.zeros((K, n + 1), np.int64)  # trades (held + batch) a venue has had by each prefix
        self.hist = []  # per venue: (held trades, batch row of each later trade, all prices, all times)
        for k, v in enumerate(self.venues):
            mine = self.code == k
            self.qi[k, 1:] = np.maximum.accumulate(np.where(is_quote & mine, ar, -1))
            have, q = self.qi[k] >= 0, state.quotes.get(v)
            for out, src, held in ((self.qb, bid, q and q.bid), (self.qa, ask, q and q.ask), (self.qt, ts, q and q.ts_ns)):
                out[k, have] = src[self.qi[k, have]]
                if held is not None:
                    out[k, ~have] = held
            held, rows = state.trades.get(v, []), np.flatnonzero(~is_quote & mine)
            P = np.concatenate(([o.bid for o in held], price[rows]))
            T = np.concatenate(([o.ts_ns for o in held], ts[rows])).astype(np.int64)
            self.tn[k] = len(held) + np.concatenate(([0], np.cumsum(~is_quote & mine)))
            for j in range(r):
                e = self.tn[k] - 1 - j
                ok = e >= 0
                self.tp[j, k, ok], self.tt[j, k, ok] = P[e[ok]], T[e[ok]]
            self.hist.append((held, rows, P, T))

    def _trade_ref(self, pos, t0):
        """Median of each venue's fresh recent trade prices, (r, K, m) -> (K, m); NaN without any."""
        tv = np.where(self.tt[:, :, pos] >= t0 - self.stale, self.tp[:, :, pos], np.nan)
        srt, cnt = np.sort(tv, axis=0), (~np.isnan(tv)).sum(axis=0)
        lo = np.take_along_axis(srt, np.maximum(cnt - 1, 0)[None] // 2, axis=0)[0]
        hi = np.take_along_axis(srt, np.minimum(cnt // 2, len(tv) - 1)[None], axis=0)[0]
        return np.where(cnt > 0, (lo + hi) / 2, np.nan), tv

    def band(self, pos, own, t0):
        """The band the other venues' fresh references give trades at prefix ``pos``, on venue ``own``, at time ``t0``."""
        m = len(pos)
        fq = self.qt[:, pos] >= t0 - self.stale
        med = self._trade_ref(pos, t0)[0]
        b = np.where(fq, self.qb[:, pos], med)
        a = np.where(fq, self.qa[:, pos], med)
        b[own, np.arange(m)] = a[own, np.arange(m)] = np.nan
        bk = np.argmax(np.where(np.isnan(b), -np.inf, b), axis=0)
        ak = np.argmin(np.where(np.isnan(a), np.inf, a), axis=0)
        bb, ba = b[bk, np.arange(m)], a[ak, np.arange(m)]
        crossed = bb > ba  # the other venues disagree among themselves: anything between them is in the band
        return (np.where(crossed, ba, bb), np.where(crossed, bb, ba), np.where(crossed, ak, bk),
                np.where(crossed, bk, ak), crossed, fq)

    def ref(self, k: int, pos: int, quote: bool, ask_side: bool, t0: int) -> _Ref:
        """One band edge with its evidence row: the quote, or the recent trade nearest the median."""
        v = self.venues[k]
        if quote:
            i = int(self.qi[k, pos])
            return _Ref(v, "ask" if ask_side else "bid", float((self.qa if ask_side else self.qb)[k, pos]),
                        self.events.take([i]) if i >= 0 else self.state.quotes[v].row)
        med, tv = self._trade_ref(np.array([pos]), t0)
        j = int(np.argmin(np.where(np.isnan(tv[:, k, 0]), np.inf, np.abs(tv[:, k, 0] - med[k, 0]))))
        return _Ref(v, "recent-trade price", float(med[k, 0]), self._trade_row(k, int(self.tn[k, pos]) - 1 - j))

    def _trade_row(self, k: int, e: int) -> pa.Table:
        held, rows = self.hist[k][:2]
        return held[e].row if e < len(held) else self.events.take([int(rows[e - len(held)])])

    def keep_latest(self, state) -> None:
        n = self.qi.shape[1] - 1
        for k, v in enumerate(self.venues):
            if self.qi[k, n] >= 0:
                state.quotes[v] = _Obs(float(self.qb[k, n]), float(self.qa[k, n]), int(self.qt[k, n]),
                                       self.events.take([int(self.qi[k, n])]))
            held, rows, P, T = self.hist[k]
            if len(rows):
                keep = range(max(0, len(P) - self.tp.shape[0]), len(P))
                state.trades[v] = [_Obs(float(P[e]), float(P[e]), int(T[e]), self._trade_row(k, e)) for e in keep]


def _fmt(p: float) -> str:
    return f"{p:,.2f}" if abs(p) >= 1 else f"{p:.6g}"


class OffMarket(Detector):
    name = "off_market"
    version = "1.0"
    key_columns = ("instrument",)
    description = "A trade priced outside the other venues' best bid/offer (or recent prices) by more than X bps."
    param_docs = {
        "band_bps": ("bps", "how far beyond the other venues' best bid/offer a trade must print"),
        "max_staleness_ms": ("ms", "a venue's quote or last trade older than this (at the trade) is not a reference"),
        "confirm_ms": ("ms", "the trade must still be outside the band this long after it (else the market moved)"),
        "burst_gap_ms": ("ms", "off-market trades on one venue closer than this form one alert"),
        "ref_trades": ("trades", "a venue without a fresh quote is referenced by the median of its last N fresh trades"),
    }

    def __init__(self, band_bps: float = 50.0, max_staleness_ms: int = 5_000, confirm_ms: int = 2_000,
                 burst_gap_ms: int = 60_000, ref_trades: int = 3):
        if band_bps <= 0 or max_staleness_ms <= 0 or confirm_ms < 0 or burst_gap_ms < 0 or ref_trades < 1:
            raise ValueError("band_bps, max_staleness_ms > 0, confirm_ms, burst_gap_ms >= 0 and ref_trades >= 1 required")
        self.band_bps = float(band_bps)
        self.max_staleness_ms = int(max_staleness_ms)
        self.confirm_ms = int(confirm_ms)
        self.burst_gap_ms = int(burst_gap_ms)
        self.ref_trades = int(ref_trades)

    def select(self, events: pa.Table) -> pa.Table:
        kind = events.column("kind")
        # fill_null before combining: a quote's null price (or a trade's null bid) must not null the row out
        pos = lambda c: pc.fill_null(pc.greater(events.column(c), 0), False)  # noqa: E731
        trade = pc.and_(pc.equal(kind, Kind.TRADE.value), pos("price"))
        quote = pc.and_(pc.equal(kind, Kind.QUOTE.value), pc.and_(pos("bid"), pos("ask")))
        return events.filter(pc.fill_null(pc.or_(trade, quote), False))

    def new_state(self) -> OffMarketState:
        return OffMarketState()

    def is_idle(self, state: OffMarketState, now_ns: int) -> bool:
        # Idle when no reference could still enter a band, no trade awaits its verdict and
        # no later trade could join a burst: dropping the state then changes nothing.
        stale, gap = self.max_staleness_ms * 1_000_000, self.burst_gap_ms * 1_000_000
        return (not state.pending and all(now_ns - b.last.ts_ns > gap for b in state.bursts.values())
                and all(now_ns - o.ts_ns > stale for o in (*state.quotes.values(), *(t[-1] for t in state.trades.values()))))

    def update(self, state: OffMarketState, events: pa.Table) -> list[Alert]:
        return self._process(state, events, final=False) if events.num_rows else []

    def flush(self, state: OffMarketState) -> list[Alert]:
        return self._process(state, EVENT_SCHEMA.empty_table(), final=True) if state.pending else []

    def _process(self, state: OffMarketState, events: pa.Table, final: bool) -> list[Alert]:
        n = events.num_rows
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        price = pc.fill_null(events.column("price"), np.nan).to_numpy()
        is_quote = np.asarray(pc.equal(events.column("kind"), Kind.QUOTE.value).to_numpy(zero_copy_only=False), bool)
        book = _Book(state, events, ts, price, is_quote, self.ref_trades, self.max_staleness_ms * 1_000_000)
        code, venues = book.code, book.venues

        # 1. trades outside the band when they printed
        trades = np.flatnonzero(~is_quote)
        lo, hi, lo_k, hi_k, crossed, fq = book.band(trades + 1, code[trades], ts[trades])
        dist, above = _distance(price[trades], lo, hi)
        cand = np.flatnonzero(dist > self.band_bps)
        rows, c_ts = trades[cand], ts[trades[cand]]

        def flagged(c: int) -> _Flagged:  # materialise candidate c: only for trades kept as evidence or pending
            i, j = int(rows[c]), int(cand[c])
            ek, ok_ = (hi_k[j], lo_k[j]) if above[j] else (lo_k[j], hi_k[j])
            e_ask = bool(above[j]) != bool(crossed[j])
            return _Flagged(int(ts[i]), venues[code[i]], float(price[i]), events.column("trade_id")[i].as_py() or "(no id)",
                            float(dist[j]), bool(above[j]), book.ref(int(ek), i + 1, bool(fq[ek, j]), e_ask, int(ts[i])),
                            book.ref(int(ok_), i + 1, bool(fq[ok_, j]), not e_ask, int(ts[i])), events.take([i]))

        # 2. the verdict, confirm_ms later: decidable once an event later than that has been seen
        confirm = self.confirm_ms * 1_000_000
        old_h = np.array([p.ts_ns + confirm for p in state.pending], np.int64)
        horizon = np.concatenate((old_h, c_ts + confirm))
        pos = np.searchsorted(ts, horizon, side="right")
        decided = np.full(len(horizon), True) if final else pos < n
        old_code = np.array([venues.index(p.venue) for p in state.pending], np.int64)
        t0 = np.concatenate(([p.ts_ns for p in state.pending], c_ts)).astype(np.int64)
        own = np.concatenate((old_code, code[rows])).astype(np.int64)
        px = np.concatenate(([p.price for p in state.pending], price[rows]))
        a_lo, a_hi, *_ = book.band(pos[decided], own[decided], t0[decided])
        after = np.zeros(len(horizon))
        after[decided] = _distance(px[decided], a_lo, a_hi)[0]
        confirmed = decided & (after > self.band_bps)

        # 3. bursts, in time order (decided trades always precede undecided ones)
        out: dict[str, Alert] = {}
        dirty: set[str] = set()
        npend, gap = len(state.pending), self.burst_gap_ms * 1_000_000
        for x in np.flatnonzero(confirmed):
            f = state.pending[x] if x < npend else flagged(int(x - npend))
            f.after_bps = float(after[x])
            b = state.bursts.get(f.venue)
            if b is None or f.ts_ns - b.last.ts_ns > gap:
                if b is not None and f.venue in dirty:
                    a = self._alert(b)
                    out[a.alert_id] = a
                state.bursts[f.venue] = _Burst(f, f, f, [f.row])
            else:
                b.count, b.last = b.count + 1, f
                b.peak = f if f.distance_bps > b.peak.distance_bps else b.peak
                if len(b.trades) < MAX_TRADES_IN_EVIDENCE:
                    b.trades.append(f.row)
            dirty.add(f.venue)
        state.pending = ([p for p, d in zip(state.pending, decided[:npend]) if not d]
                         + [flagged(c) for c in np.flatnonzero(~decided[npend:])])
        for v in sorted(dirty):
            a = self._alert(state.bursts[v])
            out[a.alert_id] = a
        # 4. keep each venue's latest quote and trades; drop bursts no trade can join any more
        book.keep_latest(state)
        if n:
            for v in [v for v, b in state.bursts.items() if ts[-1] - b.last.ts_ns > gap + confirm]:
                del state.bursts[v]
        return list(out.values())

    def _alert(self, b: _Burst) -> Alert:
        f, pk = b.first, b.peak
        instrument = f.row.column("instrument")[0].as_py()
        quoted = f.edge.what != "recent-trade price"
        side = (("above the best offer" if f.above else "below the best bid") if quoted
                else ("above the highest recent price" if f.above else "below the lowest recent price"))
        kind = "trade-through" if quoted else "off-market"
        summary = (f"{f.venue} trade {f.trade_id} at {_fmt(f.price)} is {f.distance_bps:.1f} bps {side} across venues "
                   f"({f.edge.venue} {f.edge.what} {_fmt(f.edge.price)}): {kind}, still off-market "
                   f"{self.confirm_ms / 1000:g}s later (band {self.band_bps:g} bps)")
        if b.count > 1:
            summary += (f"; {b.count} off-market trades on {f.venue} over {(b.last.ts_ns - f.ts_ns) / 1e9:.0f}s, "
                        f"up to {pk.distance_bps:.1f} bps")
        ratio = pk.distance_bps / self.band_bps
        severity = Severity.HIGH if ratio >= 4 else Severity.MEDIUM if ratio >= 2 else Severity.LOW
        parts = [f.row, f.edge.row, f.other.row, *b.trades, pk.row, pk.edge.row, b.last.row]
        seen: dict[str, pa.Table] = {}
        for r in parts:
            seen.setdefault(evidence_id(to_rows(r)[0]), r)
        return Alert.build(
            detector=self.name, version=self.version, key=instrument, window_start_ns=f.ts_ns,
            window_end_ns=b.last.ts_ns, opening_evidence=[evidence_id(to_rows(f.row)[0])],
            evidence=pa.concat_tables(seen.values()), severity=severity, score=round(pk.distance_bps, 6),
            instrument=instrument, venues=sorted({f.venue, f.edge.venue, f.other.venue, pk.edge.venue}),
            owners=[], accounts=[], summary=summary, params=self.params(),
            metrics={"distance_bps": round(f.distance_bps, 6), "distance_after_bps": round(f.after_bps, 6),
                     "peak_distance_bps": round(pk.distance_bps, 6), "peak_ts_ns": pk.ts_ns,
                     "side": "above" if f.above else "below", "reference_kind": kind,
                     "reference_venue": f.edge.venue, "reference_price": f.edge.price,
                     "band_low": min(f.edge.price, f.other.price), "band_high": max(f.edge.price, f.other.price),
                     "trades": b.count, "duration_s": round((b.last.ts_ns - f.ts_ns) / 1e9, 3)},
        )
