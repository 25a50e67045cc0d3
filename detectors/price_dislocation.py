"""Cross-venue price dislocation: one instrument's price on two venues apart by more than X bps for longer than T.

Each trade (its price) and each top-of-book quote (its mid) is a price
observation for its venue.  At every observation the detector compares the
latest *fresh* observation of every venue (not older than ``max_staleness_ms``):
the gap is ``(highest - lowest) / mid`` in basis points.  A dislocation episode
opens when the gap exceeds ``threshold_bps`` and closes at the first observation
where it no longer does.  It alerts once it has lasted ``min_duration_ms`` — at
that moment, so the analyst need not wait for it to end — and the alert is
revised (same id) with the end, the peak gap and its venues when it closes.

The per-venue "latest observation" is computed for the whole batch at once with
a running maximum of row indices (a forward fill), so the Python loop runs only
over the few rows where an episode opens or closes.

>>> import pyarrow as pa
>>> from surveil.schemas import conform
>>> s = 1_000_000_000
>>> t = conform(pa.table({"ts": pa.array([0, 1 * s, 2 * s, 40 * s, 41 * s], pa.int64()), "kind": ["trade"] * 5,
...     "venue": ["A", "B", "B", "B", "B"], "instrument": ["X"] * 5, "price": [100.0, 100.0, 101.0, 101.0, 100.0],
...     "qty": [1.0] * 5, "trade_id": list("abcde")}))
>>> d = PriceDislocation(threshold_bps=50, min_duration_ms=30_000, max_staleness_ms=60_000)
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]
['X: B above A by up to 99.5 bps for 39s (threshold 50 bps for 30s)']
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

# what update reads: evidence rows (and the ids alerts name them by), bid and ask


@dataclass
class _Obs:
    price: float
    ts_ns: int
    row: pa.Table  # the one observation row, kept as evidence


@dataclass
class _Episode:
    start_ns: int
    opening: list[pa.Table]
    peak_bps: float
    peak_ns: int
    peak_rows: list[pa.Table]
    high_venue: str
    low_venue: str
    alerted: bool = False
    last_ns: int = 0


@dataclass
class DislocationState:
    last: dict[str, _Obs] = field(default_factory=dict)  # venue -> latest observation
    episode: _Episode | None = None


class PriceDislocation(Detector):
    name = "price_dislocation"
    version = "1.0"
    key_columns = ("instrument",)
    description = "The same instrument's price on two venues diverges by more than X bps for longer than T."
    param_docs = {
        "threshold_bps": ("bps", "gap between the highest and lowest venue price, relative to their mid"),
        "min_duration_ms": ("ms", "how long the gap must last before it alerts"),
        "max_staleness_ms": ("ms", "a venue's latest price older than this is left out of the comparison"),
    }

    def __init__(self, threshold_bps: float = 50.0, min_duration_ms: int = 30_000, max_staleness_ms: int = 10_000):
        if threshold_bps <= 0 or min_duration_ms < 0 or max_staleness_ms <= 0:
            raise ValueError("threshold_bps and max_staleness_ms must be > 0, min_duration_ms >= 0")
        self.threshold_bps = float(threshold_bps)
        self.min_duration_ms = int(min_duration_ms)
        self.max_staleness_ms = int(max_staleness_ms)

    def select(self, events: pa.Table) -> pa.Table:
        kind = events.column("kind")
        has_quote = pc.and_(pc.equal(kind, Kind.QUOTE.value),
                            pc.and_(pc.is_valid(events.column("bid")), pc.is_valid(events.column("ask"))))
        keep = pc.fill_null(pc.or_(pc.equal(kind, Kind.TRADE.value), has_quote), False)
        return keep_rows(events, keep, ("venue_symbol", "bid", "ask"))

    def new_state(self) -> DislocationState:
        return DislocationState()

    def is_idle(self, state: DislocationState, now_ns: int) -> bool:
        stale = self.max_staleness_ms * 1_000_000
        return state.episode is None and all(now_ns - o.ts_ns > stale for o in state.last.values())

    def update(self, state: DislocationState, events: pa.Table) -> list[Alert]:
        n = events.num_rows
        if n == 0:
            return []
        ts = events.column("ts").to_numpy().view(np.int64)  # datetime64[ns] -> ns, without a copy
        is_quote = pc.equal(events.column("kind"), Kind.QUOTE.value).to_numpy(zero_copy_only=False)
        # float columns convert with nulls as NaN; select() keeps only quotes with both sides and trades
        price = np.where(is_quote, (events.column("bid").to_numpy() + events.column("ask").to_numpy()) / 2,
                         events.column("price").to_numpy())
        enc = pc.dictionary_encode(events.column("venue")).combine_chunks()
        names = enc.dictionary.to_pylist()
        venues = sorted(set(state.last) | set(names))
        code = np.array([venues.index(v) for v in names], np.int64)[enc.indices.to_numpy()]
        stale = self.max_staleness_ms * 1_000_000
        # per venue: forward-filled latest price and its time at every row
        K, arange = len(venues), np.arange(n)
        vp = np.full((K, n), np.nan)
        vt = np.full((K, n), np.iinfo(np.int64).min // 2, dtype=np.int64)
        last_idx = np.empty((K, n), dtype=np.int64)
        for k, v in enumerate(venues):
            idx = last_idx[k] = np.maximum.accumulate(np.where(code == k, arange, -1))
            f = int(np.searchsorted(idx, 0))  # rows [f, n) have seen venue k in this batch (idx is non-decreasing)
            vp[k, f:], vt[k, f:] = price[idx[f:]], ts[idx[f:]]
            if f and v in state.last:
                vp[k, :f], vt[k, :f] = state.last[v].price, state.last[v].ts_ns
        fresh = (ts[None, :] - vt <= stale) & ~np.isnan(vp)
        hi_m = np.where(fresh, vp, -np.inf)
        lo_m = np.where(fresh, vp, np.inf)
        hi_k, lo_k = hi_m.argmax(axis=0), lo_m.argmin(axis=0)
        hi, lo = hi_m[hi_k, arange], lo_m[lo_k, arange]
        valid = fresh.sum(axis=0) >= 2
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.where(valid, (hi - lo) / ((hi + lo) / 2) * 1e4, 0.0)
        over = gap > self.threshold_bps

        def obs_row(k: int, i: int) -> int | pa.Table:
            """Venue k's observation as of row i: its batch row number (taken later, with others), else the state's."""
            j = int(last_idx[k, i])
            return j if j >= 0 else state.last[venues[k]].row

        def settle(*lists: list) -> None:
            """Batch row numbers in these lists -> their rows, all in one take (slices of a small table, not of the
            batch, which they would pin)."""
            want = sorted({x for rs in lists for x in rs if isinstance(x, int)})
            if want:  # (select() has narrowed the columns to what evidence reads: a take costs per column)
                taken = events.take(want)
                at = {j: taken.slice(p, 1) for p, j in enumerate(want)}
                for rs in lists:
                    rs[:] = [at[x] if isinstance(x, int) else x for x in rs]

        out: dict[str, Alert] = {}
        dur = self.min_duration_ms * 1_000_000
        instrument = None
        # walk only the rows where the over/under state flips, plus alert crossings
        flips = np.flatnonzero(np.diff(np.concatenate(([state.episode is not None], over))))
        cuts = list(flips) + [n]
        pos = 0
        for cut in cuts:
            ep = state.episode
            if ep is not None and pos < cut:  # rows [pos, cut) are all over the threshold
                seg = gap[pos:cut]
                j = pos + int(seg.argmax())
                if seg[j - pos] > ep.peak_bps:
                    ep.peak_bps, ep.peak_ns = float(seg[j - pos]), int(ts[j])
                    ep.peak_rows = [obs_row(hi_k[j], j), obs_row(lo_k[j], j)]
                ep.last_ns = int(ts[cut - 1])
                if not ep.alerted and ts[cut - 1] - ep.start_ns >= dur:
                    ep.alerted = True
                    crossing = pos + int(np.argmax(ts[pos:cut] - ep.start_ns >= dur))
                    settle(ep.opening, ep.peak_rows)
                    instrument = instrument or events.column("instrument")[0].as_py()
                    a = self._alert(ep, instrument, int(ts[crossing]), closed=False)
                    out[a.alert_id] = a
            if cut == n:
                break
            if ep is not None:  # row `cut` closes the episode
                if ep.alerted or ts[cut] - ep.start_ns >= dur:
                    ep.alerted = True
                    closing = [int(cut)]
                    settle(ep.opening, ep.peak_rows, closing)
                    instrument = instrument or events.column("instrument")[0].as_py()
                    a = self._alert(ep, instrument, int(ts[cut]), closed=True, closing=closing[0])
                    out[a.alert_id] = a
                state.episode = None
                pos = cut + 1
            else:  # row `cut` opens one
                i = cut
                opening = [obs_row(hi_k[i], i), obs_row(lo_k[i], i)]
                state.episode = _Episode(int(ts[i]), opening, float(gap[i]), int(ts[i]), list(opening),
                                         venues[hi_k[i]], venues[lo_k[i]], last_ns=int(ts[i]))
                pos = cut
        # each venue's latest observation, and the open episode's rows, into the state: one take for all
        latest = [(v, int(last_idx[k, n - 1])) for k, v in enumerate(venues) if last_idx[k, n - 1] >= 0]
        kept = [j for _, j in latest]
        ep = state.episode
        settle(kept, *((ep.opening, ep.peak_rows) if ep is not None else ()))
        for (v, j), row in zip(latest, kept):
            state.last[v] = _Obs(float(price[j]), int(ts[j]), row)
        return list(out.values())

    def flush(self, state: DislocationState) -> list[Alert]:
        ep = state.episode
        if ep is None or not ep.alerted:
            return []
        instrument = ep.opening[0].column("instrument")[0].as_py()
        return [self._alert(ep, instrument, ep.last_ns, closed=False)]

    def _alert(self, ep: _Episode, instrument: str, end_ns: int, *, closed: bool,
               closing: pa.Table | None = None) -> Alert:
        secs = (end_ns - ep.start_ns) / 1e9
        state = "" if closed else " (still open)"
        summary = (f"{instrument}: {ep.high_venue} above {ep.low_venue} by up to {ep.peak_bps:.1f} bps for "
                   f"{secs:.0f}s{state} (threshold {self.threshold_bps:g} bps for {self.min_duration_ms / 1000:g}s)")
        ratio = ep.peak_bps / self.threshold_bps
        severity = Severity.HIGH if ratio >= 4 else Severity.MEDIUM if ratio >= 2 else Severity.LOW
        rows = ep.opening + ep.peak_rows + ([closing] if closing is not None else [])
        return Alert.build(
            detector=self.name, version=self.version, key=instrument, window_start_ns=ep.start_ns,
            window_end_ns=end_ns, opening_evidence=[evidence_id(to_rows(r)[0]) for r in ep.opening],
            evidence=pa.concat_tables(rows), severity=severity, score=round(ep.peak_bps, 6), instrument=instrument,
            venues=sorted({ep.high_venue, ep.low_venue}), owners=[], accounts=[], summary=summary,
            params=self.params(),
            metrics={"peak_gap_bps": round(ep.peak_bps, 6), "peak_ts_ns": ep.peak_ns, "duration_s": round(secs, 3),
                     "high_venue": ep.high_venue, "low_venue": ep.low_venue, "closed": closed},
        )
