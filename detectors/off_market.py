"""Off-market prints and trade-throughs: a trade out of line with every venue's market, its own included.

The band a trade on venue V is held to comes from the *other* venues' observations that are
fresh (at most ``max_staleness_ms`` older than it): a top-of-book quote gives its bid and
ask; a venue without a fresh quote gives the median of its last ``ref_trades`` fresh trades
(a median, so one odd print does not become the yardstick for other venues' trades).  The
band is [best bid, best offer] across them.  How far beyond it a trade must print depends on
the edge it went through: a firm quote is an executable price, so printing through it by more
than ``through_bps`` is a trade-through; a recent-trade median is only an estimate of where a
venue trades (spread, noise), so a trade must be ``band_bps`` beyond it to be off-market.
Either way the trade must also be *odd*:

- it stands out from its own venue's level before it (median of that venue's last trades
  within ``level_lookback_ms``, else its quote's mid) by half that limit, *away from* the
  other venues: a print at the level its venue already trades at is that venue drifting away
  from the others (a dislocation, a pump: other detectors' findings), and a print between its
  venue's level and the others' band is its venue on its way back to them;
- ``confirm_ms`` later it is still outside the band the other venues then give (a price the
  whole market moves to is news, not an off-market print);
- and most of what its own venue showed in those ``confirm_ms`` (trades, quote mids) is not at
  the print's level or beyond it (else the venue itself moved there: a spike, a ramp, the
  start of a dislocation - an off-market print is one its own venue does not follow).

The verdict is reached on event time - at the first event later than trade + ``confirm_ms``,
or at flush - so alerts do not depend on batching.  Odd trades on one venue less than
``burst_gap_ms`` apart are one alert, raised at the first and revised (same id) as trades join;
its evidence is the first trade with the quotes or trades it was compared to, the most
distant one and the last.  State per instrument: each venue's latest quote and last trades,
the trades awaiting their verdict (at most ``confirm_ms`` worth) and one open burst per venue.

>>> from tests.conftest import events
>>> t = events(ts=[0.0, 1.0, 1.2, 5.0], kind=["quote", "trade", "quote", "quote"],
...     venue=["REFX", "SHARED", "REFX", "REFX"], instrument=["BTC/USDT"] * 4, bid=[100.0, None, 100.0, 100.0],
...     ask=[100.54, None, 100.54, 100.54], price=[None, 101.40, None, None], qty=[None, 1.0, None, None],
...     trade_id=[None, "S-BTC-1", None, None])
>>> d = OffMarket()
>>> for a in d.update(d.new_state(), d.select(t)):
...     print(a.summary)  # doctest: +NORMALIZE_WHITESPACE
SHARED trade S-BTC-1 at 101.40 is 85.5 bps above the best offer across venues (REFX ask 100.54):
trade-through, still off-market 2s later (limit 25 bps through a quote)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, Alert, Severity, evidence_id
from surveil.schemas import EVENT_SCHEMA, Kind, to_rows

NEVER = np.iinfo(np.int64).min // 2
TRADE_REF = "recent-trade price"
OWN_SHARE = 0.5  # x the limit that applies: how far a print must stand out from its own venue's level
ID_COLUMNS = ["kind", "venue", "trade_id", "exec_id", "instrument", "venue_symbol", "ts", "src", "src_seq"]
# what update reads: evidence rows (and the ids alerts name them by), bid and ask; rows kept past a batch are narrowed
# to these, so that every kept row has one schema
KEEP_EXTRA = ("venue_symbol", "bid", "ask")  # besides the evidence columns (keep_rows)
KEEP_COLUMNS = list(EVIDENCE_COLUMNS + KEEP_EXTRA)


@dataclass
class _Obs:  # a venue's quote (bid, ask) or trade (price, price)
    bid: float
    ask: float
    ts_ns: int
    rows: pa.Table  # the rows one batch kept (one take for all of them); this observation is row ``at``, sliced
    at: int = 0  # only when it becomes evidence (a slice per row kept would cost more than the take)

    @property
    def row(self) -> pa.Table:
        return self.rows.slice(self.at, 1)


@dataclass
class _Ref:  # one edge of the band as a trade saw it
    venue: str
    what: str  # "bid" | "ask" | TRADE_REF
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
    edge: _Ref  # the edge it went through
    other: _Ref
    row: pa.Table
    after_bps: float = float("nan")
    seen_after: int = 0  # its venue's trades and quotes within confirm_ms after it,
    near_after: int = 0  # and how many of them at its level or beyond it
    limit_bps: float = float("nan")  # through_bps (through a quote) or band_bps (beyond recent trades)


@dataclass
class _Burst:  # inside _process its trades may still be candidate numbers, materialised when alerted
    first: _Flagged | int
    peak: _Flagged | int
    last: _Flagged | int
    count: int = 1


@dataclass
class OffMarketState:
    quotes: dict[str, _Obs] = field(default_factory=dict)  # venue -> latest quote
    trades: dict[str, list[_Obs]] = field(default_factory=dict)  # venue -> its last ref_trades trades
    pending: list[_Flagged] = field(default_factory=list)  # awaiting their verdict, in time order
    bursts: dict[str, _Burst] = field(default_factory=dict)  # venue -> open burst


def _distance(p, lo, hi):
    """bps beyond the band [lo, hi] (0 inside it, or without a band), and whether above it."""
    with np.errstate(invalid="ignore"):
        d = np.fmax((p - hi) / hi, (lo - p) / lo) * 1e4
    return np.where(np.isnan(d), 0.0, d), p > hi


def _median(v):
    """Median along axis 0 ignoring NaN (NaN where all are): ``np.nanmedian`` without its warnings."""
    srt, cnt = np.sort(v, axis=0), (~np.isnan(v)).sum(axis=0)  # NaN sorts last
    flat, cols = srt.reshape(len(v), -1), np.arange(cnt.size)
    lo = flat[(np.maximum(cnt - 1, 0) // 2).ravel(), cols].reshape(cnt.shape)
    hi = flat[np.minimum(cnt // 2, len(v) - 1).ravel(), cols].reshape(cnt.shape)
    return np.where(cnt > 0, (lo + hi) / 2, np.nan)


class _Book:
    """Every venue's observations as of every prefix of one batch, built with forward fills.

    Column ``p`` of each (venue x n+1) array holds what the state plus rows ``[0, p)`` had seen
    (column 0: the state alone).  Quotes: latest bid, ask, time and row.  Trades: the last ``r``
    prices and times (``tp[j]``: the j-th latest) and how many the venue has had (``tn``).
    """

    def __init__(self, state, events, ts, price, is_quote, r, stale_ns):
        # select() has narrowed the columns already (a take costs per column); flush's empty table has them all
        self.events = events if events.column_names == KEEP_COLUMNS else events.select(KEEP_COLUMNS)
        n, self.state, self.stale = len(ts), state, stale_ns
        enc = pc.dictionary_encode(events.column("venue")).combine_chunks()
        names = enc.dictionary.to_pylist()
        self.venues = sorted(set(state.quotes) | set(state.trades) | {p.venue for p in state.pending} | set(names))
        self.code = np.array([self.venues.index(v) for v in names], np.int64)[enc.indices.to_numpy()] if n \
            else np.zeros(0, np.int64)
        K, ar = len(self.venues), np.arange(n)
        bid, ask = self.bid, self.ask = [events.column(c).to_numpy() for c in ("bid", "ask")]  # nulls: NaN
        mine = self.code[None, :] == np.arange(K)[:, None]  # venue x row
        quotes, trades = mine & is_quote, mine & ~is_quote
        # Quotes: forward fills of the latest quote's row, all venues at once; a prefix without a quote of its own
        # reads what the state held (NaN / NEVER if nothing)
        self.qi = np.full((K, n + 1), -1, np.int64)
        self.qi[:, 1:] = np.maximum.accumulate(np.where(quotes, ar, -1), axis=1)
        held_q = [state.quotes.get(v) for v in self.venues]
        have = self.qi >= 0
        at = np.maximum(self.qi, 0)
        for name, src, field_, none in (("qb", bid, "bid", np.nan), ("qa", ask, "ask", np.nan),
                                        ("qt", ts, "ts_ns", NEVER)):
            held = np.array([none if q is None else getattr(q, field_) for q in held_q], src.dtype)[:, None]
            setattr(self, name, np.where(have, src[at], held) if n else np.broadcast_to(held, have.shape).copy())
        # Trades: each venue's [r pads, held trades, batch trades] laid end to end; the j-th latest trade at each
        # prefix is one gather from them (a pad - NaN / NEVER - where the venue has not had that many)
        self.tn = np.empty((K, n + 1), np.int64)
        self.tn[:, 1:] = np.cumsum(trades, axis=1)
        self.hist, flat_p, flat_t, start = [], [], [], 0  # hist per venue: (held trades, batch rows, prices, times)
        offset = np.empty(K, np.int64)
        for k, v in enumerate(self.venues):
            held, rows = state.trades.get(v, []), np.flatnonzero(trades[k])
            P = np.concatenate((np.array([o.bid for o in held], np.float64), price[rows]))
            T = np.concatenate((np.array([o.ts_ns for o in held], np.int64), ts[rows]))  # int64 all along
            self.hist.append((held, rows, P, T))
            self.tn[k] += len(held)
            offset[k] = start + r - 1
            flat_p += [np.full(r, np.nan), P]
            flat_t += [np.full(r, NEVER, np.int64), T]
            start += r + len(P)
        self.tn[:, 0] = [len(h[0]) for h in self.hist]
        e = offset[None, :, None] + self.tn[None, :, :] - np.arange(r)[:, None, None]  # r x venue x prefix
        self.tp, self.tt = np.concatenate(flat_p)[e], np.concatenate(flat_t)[e]

    def _trade_ref(self, pos, t0):
        """Median of each venue's fresh recent trades, (K, m); NaN without any."""
        tv = np.where(self.tt[:, :, pos] >= t0 - self.stale, self.tp[:, :, pos], np.nan)
        return _median(tv), tv

    def level(self, pos, k, since):
        """Venue ``k``'s own level at prefix ``pos`` from what it showed since ``since``: median of its trades, else
        its quote's mid."""
        med = _median(np.where(self.tt[:, k, pos] >= since, self.tp[:, k, pos], np.nan))
        return np.where(np.isnan(med) & (self.qt[k, pos] >= since), (self.qb[k, pos] + self.qa[k, pos]) / 2, med)

    def band(self, pos, own, t0):
        """The band the venues other than ``own`` give a trade at prefix ``pos`` and time ``t0``."""
        m = np.arange(len(pos))
        fq = self.qt[:, pos] >= t0 - self.stale
        med = self._trade_ref(pos, t0)[0]
        b, a = np.where(fq, self.qb[:, pos], med), np.where(fq, self.qa[:, pos], med)
        b[own, m] = a[own, m] = np.nan
        bk = np.argmax(np.where(np.isnan(b), -np.inf, b), axis=0)
        ak = np.argmin(np.where(np.isnan(a), np.inf, a), axis=0)
        bb, ba = b[bk, m], a[ak, m]
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
        e, (held, rows) = int(self.tn[k, pos]) - 1 - j, self.hist[k][:2]
        return _Ref(v, TRADE_REF, float(med[k, 0]),
                    held[e].row if e < len(held) else self.events.take([int(rows[e - len(held)])]))

    def keep_latest(self, state) -> None:
        """Each venue's latest quote and last trades into the state: one take for all their rows, kept together in
        that small table (not slices of the batch, which they would pin)."""
        n, r = self.qi.shape[1] - 1, self.tp.shape[0]
        quote_at, new_trades, want = {}, {}, []
        for k in range(len(self.venues)):
            if self.qi[k, n] >= 0:
                quote_at[k] = len(want)
                want.append(int(self.qi[k, n]))
            held, rows, P, _ = self.hist[k]
            first = max(len(held), len(P) - r)  # the new trades among the last r
            if first < len(P):
                new_trades[k] = (first, len(want))
                want += rows[first - len(held):].tolist()
        if not want:
            return
        taken = self.events.take(want)
        for k, j in quote_at.items():
            state.quotes[self.venues[k]] = _Obs(float(self.qb[k, n]), float(self.qa[k, n]), int(self.qt[k, n]),
                                                taken, j)
        for k, (first, j) in new_trades.items():
            v, (held, _, P, T) = self.venues[k], self.hist[k]
            prices, times = P[first:].tolist(), T[first:].tolist()
            fresh = [_Obs(p, p, t, taken, j + x) for x, (p, t) in enumerate(zip(prices, times))]
            state.trades[v] = (held + fresh)[-r:]


def _fmt(p: float) -> str:
    return f"{p:,.2f}" if abs(p) >= 1 else f"{p:.6g}"


class OffMarket(Detector):
    name = "off_market"
    version = "1.0"
    key_columns = ("instrument",)
    description = "A trade out of line with the other venues' best bid/offer (or recent prices) and its own venue's."
    param_docs = {
        "through_bps": ("bps", "how far through another venue's fresh best bid/offer a trade must print "
                               "(a trade-through)"),
        "band_bps": ("bps", "how far beyond a venue's recent trade prices (a venue without a fresh quote) a trade "
                            "must print"),
        "max_staleness_ms": ("ms", "a venue's quote or trade older than this (at the trade) is not a reference"),
        "confirm_ms": ("ms", "the trade must still be out of line this long after it (else the market moved)"),
        "burst_gap_ms": ("ms", "off-market trades on one venue closer than this form one alert"),
        "ref_trades": ("trades", "a venue without a fresh quote is referenced by the median of its last N trades"),
        "level_lookback_ms": ("ms", "a venue's own trades (its last ref_trades) this recent set the level its print "
                                    "must stand out from"),
    }

    def __init__(self, through_bps: float = 25.0, band_bps: float = 50.0, max_staleness_ms: int = 5_000,
                 confirm_ms: int = 2_000, burst_gap_ms: int = 60_000, ref_trades: int = 5,
                 level_lookback_ms: int = 60_000):
        if through_bps <= 0 or band_bps <= 0 or max_staleness_ms <= 0 or confirm_ms < 0 or burst_gap_ms < 0 \
                or ref_trades < 1 or level_lookback_ms <= 0:
            raise ValueError("through_bps, band_bps, max_staleness_ms, level_lookback_ms > 0; confirm_ms, "
                             "burst_gap_ms >= 0; ref_trades >= 1 required")
        self.through_bps = float(through_bps)
        self.band_bps, self.max_staleness_ms, self.confirm_ms = float(band_bps), int(max_staleness_ms), int(confirm_ms)
        self.burst_gap_ms, self.ref_trades, self.level_lookback_ms = int(burst_gap_ms), int(ref_trades), \
            int(level_lookback_ms)

    def select(self, events: pa.Table) -> pa.Table:
        # Kleene logic: a quote's null price (or a trade's null bid) is false, not null; the filter drops nulls
        kind = events.column("kind")
        trade = pc.and_kleene(pc.equal(kind, Kind.TRADE.value), pc.greater(events.column("price"), 0))
        quote = pc.and_kleene(pc.and_kleene(pc.equal(kind, Kind.QUOTE.value), pc.greater(events.column("bid"), 0)),
                              pc.greater(events.column("ask"), 0))
        return keep_rows(events, pc.or_kleene(trade, quote), KEEP_EXTRA)

    def new_state(self) -> OffMarketState:
        return OffMarketState()

    def is_idle(self, state: OffMarketState, now_ns: int) -> bool:
        # Idle when no observation could still be a reference or a level, no trade awaits its verdict and no
        # later trade could join a burst: dropping the state then changes nothing.
        stale, gap = max(self.max_staleness_ms, self.level_lookback_ms) * 1_000_000, self.burst_gap_ms * 1_000_000
        latest = [*state.quotes.values(), *(t[-1] for t in state.trades.values())]
        return (not state.pending and all(now_ns - b.last.ts_ns > gap for b in state.bursts.values())
                and all(now_ns - o.ts_ns > stale for o in latest))

    def update(self, state: OffMarketState, events: pa.Table) -> list[Alert]:
        return self._process(state, events, final=False) if events.num_rows else []

    def flush(self, state: OffMarketState) -> list[Alert]:
        return self._process(state, EVENT_SCHEMA.empty_table(), final=True) if state.pending else []

    def _process(self, state: OffMarketState, events: pa.Table, final: bool) -> list[Alert]:
        n, P, out = events.num_rows, state.pending, {}
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        price = events.column("price").to_numpy()  # nulls: NaN
        is_quote = pc.equal(events.column("kind"), Kind.QUOTE.value).to_numpy(zero_copy_only=False)
        book = _Book(state, events, ts, price, is_quote, self.ref_trades, self.max_staleness_ms * 1_000_000)
        code, venues, confirm = book.code, book.venues, self.confirm_ms * 1_000_000
        if P or not is_quote.all():
            # 1. candidates: trades beyond the other venues' band by the limit of the edge they went through, that
            # stand out from their own venue's level away from the band
            tr = np.flatnonzero(~is_quote)
            lo, hi, lo_k, hi_k, crossed, fq = book.band(tr + 1, code[tr], ts[tr])
            dist, above = _distance(price[tr], lo, hi)
            limit = self._limit(fq, np.where(above, hi_k, lo_k))
            outside = np.flatnonzero(dist > limit)  # the own venue's level only for these (few): a median each
            t_o = tr[outside]
            lvl = book.level(t_o, code[t_o], ts[t_o] - self.level_lookback_ms * 1_000_000)
            with np.errstate(invalid="ignore"):
                jump = np.where(np.isnan(lvl), np.inf, np.where(above[outside], 1, -1) * (price[t_o] / lvl - 1) * 1e4)
            cand = outside[jump > limit[outside] * OWN_SHARE]
            rows, c_ts = tr[cand], ts[tr[cand]]
            # 2. the verdict, confirm_ms later: decidable once an event later than that has been seen
            # int64 throughout: with no pending trade, concatenating [] would go through float64 and round ns
            # times (to 256 ns) - a trade's own print then counted in its confirmation window
            t0 = np.concatenate((np.array([p.ts_ns for p in P], np.int64), c_ts))
            pos = np.searchsorted(ts, t0 + confirm, side="right")
            decided = np.full(len(t0), True) if final else pos < n
            own = np.concatenate(([venues.index(p.venue) for p in P], code[rows])).astype(np.int64)
            px = np.concatenate(([p.price for p in P], price[rows]))
            up = np.concatenate(([p.above for p in P], above[cand])).astype(bool)
            lim = np.concatenate(([p.limit_bps for p in P], limit[cand]))
            after, after_lim = np.zeros(len(t0)), np.full(len(t0), np.inf)
            if decided.any():
                a_lo, a_hi, a_lo_k, a_hi_k, _, a_fq = book.band(pos[decided], own[decided], t0[decided])
                after[decided], a_up = _distance(px[decided], a_lo, a_hi)
                after_lim[decided] = self._limit(a_fq, np.where(a_up, a_hi_k, a_lo_k))
            # what the own venue showed meanwhile at the print's level or beyond it (away from the band), counted
            # batch by batch (so batching cannot change the sums)
            seen, near = np.array([(p.seen_after, p.near_after) for p in P] + [(0, 0)] * len(cand),
                                  np.int64).reshape(-1, 2).T
            obs = np.where(is_quote, (book.bid + book.ask) / 2, price)
            for x in range(len(t0)):
                o_ts, o_px = ts[code == own[x]], obs[code == own[x]]
                a, b = np.searchsorted(o_ts, [t0[x], t0[x] + confirm], side="right")
                ahead_bps = (1 if up[x] else -1) * (o_px[a:b] / px[x] - 1) * 1e4  # > 0: further from the band
                seen[x], near[x] = seen[x] + b - a, near[x] + int((ahead_bps >= -lim[x] * OWN_SHARE).sum())
            for x, p in enumerate(P):
                p.seen_after, p.near_after, p.after_bps = int(seen[x]), int(near[x]), float(after[x])
            made: dict[int, _Flagged] = {}

            def flagged(c):  # materialise candidate c: rows are taken only for trades kept (evidence, pending)
                if isinstance(c, _Flagged):
                    return c
                if c not in made:
                    i, j, t, x = int(rows[c]), int(cand[c]), int(c_ts[c]), len(P) + c
                    ek, ok_ = (hi_k[j], lo_k[j]) if above[j] else (lo_k[j], hi_k[j])
                    e_ask = bool(above[j]) != bool(crossed[j])
                    made[c] = _Flagged(
                        t, venues[code[i]], float(price[i]), events.column("trade_id")[i].as_py() or "(no id)",
                        float(dist[j]), bool(above[j]), book.ref(int(ek), i + 1, bool(fq[ek, j]), e_ask, t),
                        book.ref(int(ok_), i + 1, bool(fq[ok_, j]), not e_ask, t), book.events.take([i]),
                        float(after[x]), int(seen[x]), int(near[x]), float(limit[j]))
                return made[c]

            # 3. bursts of confirmed trades, in time order (decided trades always precede undecided ones)
            confirmed = decided & (after > after_lim) & (2 * near <= seen)
            found = [P[x] if x < len(P) else int(x - len(P)) for x in np.flatnonzero(confirmed)]
            self._bursts(state, found, lambda f: (f.venue, f.ts_ns, f.distance_bps) if isinstance(f, _Flagged) else
                         (venues[code[rows[f]]], int(c_ts[f]), float(dist[cand[f]])), flagged, out)
            state.pending = [p for p, d in zip(P, decided) if not d] + [
                flagged(int(c)) for c in np.flatnonzero(~decided[len(P):])]
        # 4. keep each venue's latest quote and trades; drop bursts no trade can join any more
        book.keep_latest(state)
        gap = self.burst_gap_ms * 1_000_000
        for v in [v for v, b in state.bursts.items() if n and ts[-1] - b.last.ts_ns > gap + confirm]:
            del state.bursts[v]
        return list(out.values())

    def _limit(self, fresh_quote: np.ndarray, edge: np.ndarray) -> np.ndarray:
        """Per trade, the limit of the band edge it went through: ``through_bps`` for a venue's fresh quote,
        ``band_bps`` for its recent-trade median (``fresh_quote``: venues x trades; ``edge``: a venue per trade)."""
        quoted = fresh_quote[edge, np.arange(len(edge))]
        return np.where(quoted, self.through_bps, self.band_bps)

    def _bursts(self, state: OffMarketState, found: list, facts, flagged, out: dict) -> None:
        """Confirmed trades into per-venue bursts; each burst touched is (re-)alerted once, materialised."""
        gap, dirty = self.burst_gap_ms * 1_000_000, {}

        def emit(b: _Burst):
            b.first, b.peak, b.last = flagged(b.first), flagged(b.peak), flagged(b.last)
            a = self._alert(b)
            out[a.alert_id] = a

        for f in found:
            v, t, d = facts(f)
            b = state.bursts.get(v)
            if b is None or t - facts(b.last)[1] > gap:
                if v in dirty:
                    emit(dirty[v])  # its final revision: a new burst replaces it
                b = state.bursts[v] = _Burst(f, f, f)
            else:
                b.count, b.last = b.count + 1, f
                b.peak = f if d > facts(b.peak)[2] else b.peak
            dirty[v] = b
        for v in sorted(dirty):
            emit(dirty[v])

    def _alert(self, b: _Burst) -> Alert:
        f, pk = b.first, b.peak
        instrument = f.row.column("instrument")[0].as_py()
        quoted = f.edge.what != TRADE_REF
        side = (("above the best offer" if f.above else "below the best bid") if quoted
                else ("above the highest recent price" if f.above else "below the lowest recent price"))
        kind = "trade-through" if quoted else "off-market"
        summary = (f"{f.venue} trade {f.trade_id} at {_fmt(f.price)} is {f.distance_bps:.1f} bps {side} across venues "
                   f"({f.edge.venue} {f.edge.what} {_fmt(f.edge.price)}): {kind}, still off-market "
                   f"{self.confirm_ms / 1000:g}s later (limit {f.limit_bps:g} bps "
                   f"{'through a quote' if quoted else 'beyond recent prices'})")
        if b.count > 1:
            summary += (f"; {b.count} off-market trades on {f.venue} over {(b.last.ts_ns - f.ts_ns) / 1e9:.0f}s, "
                        f"up to {pk.distance_bps:.1f} bps")
        ratio = pk.distance_bps / pk.limit_bps
        severity = Severity.HIGH if ratio >= 4 else Severity.MEDIUM if ratio >= 2 else Severity.LOW
        rows = pa.concat_tables(x.row for x in (f, f.edge, f.other, pk, pk.edge, b.last))
        # evidence_id reads a few columns: converting only those, once for all rows, keeps revisions cheap
        ids = [evidence_id(r) for r in to_rows(rows.select(ID_COLUMNS))]
        first = {e: i for i, e in reversed(list(enumerate(ids)))}  # each row once, in order
        return Alert.build(
            detector=self.name, version=self.version, key=instrument, window_start_ns=f.ts_ns,
            window_end_ns=b.last.ts_ns, opening_evidence=[ids[0]], evidence=rows.take(sorted(first.values())),
            severity=severity, score=round(pk.distance_bps, 6), instrument=instrument,
            venues=sorted({f.venue, f.edge.venue, f.other.venue, pk.edge.venue}), owners=[], accounts=[],
            summary=summary, params=self.params(),
            metrics={"distance_bps": round(f.distance_bps, 6), "distance_after_bps": round(f.after_bps, 6),
                     "peak_distance_bps": round(pk.distance_bps, 6), "peak_ts_ns": pk.ts_ns,
                     "side": "above" if f.above else "below", "reference_kind": kind,
                     "reference_venue": f.edge.venue, "reference_price": f.edge.price,
                     "band_low": min(f.edge.price, f.other.price), "band_high": max(f.edge.price, f.other.price),
                     "limit_bps": f.limit_bps,
                     "venue_observations_after": f.seen_after, "venue_observations_at_its_level": f.near_after,
                     "trades": b.count, "duration_s": round((b.last.ts_ns - f.ts_ns) / 1e9, 3)},
        )
