"""Reference deviation: an anchored instrument trading away from its anchor beyond a band, on any venue.

Some instruments have an external anchor: a stablecoin its peg, a tokenised fund its published
NAV, a tokenised security its underlying's price.  Anchors arrive as ``reference`` events
(``surveil.schemas``: ``price`` = the anchor value, ``venue`` = its source, ``instrument`` set
directly) in the same timeline as the trades; a fixed peg can instead be a parameter,
``pegs = "USDT/USD=1.0,USDC/USD=1.0"``.  A reference event overrides the peg while it is no
older than ``max_anchor_age_ms``.

Every trade (its price) and top-of-book quote (its mid) of an anchored instrument is compared
with the anchor in force at its time: the deviation is ``price / anchor - 1`` in basis points.
Per venue, an episode opens at the first observation outside ``band_bps`` and closes at the
first one back inside (or when the anchor goes stale).  It alerts once its outside
observations span ``min_duration_ms`` — so one stray print, or a wobble that returns inside
the band, does not — and the alert is revised (same id) with the peak and the end when it
closes.  Evidence: the anchor, the first outside observation, the peak one, the closing one.

>>> from tests.conftest import events
>>> ts = [0, 10, 20, 30, 40, 50, 60, 70, 80]
>>> px = [1.000, 0.9990, 0.9930, 0.9920, 0.9925, 0.9910, 0.9935, 0.9940, 0.9995]
>>> n = len(ts)
>>> t = events(ts=ts, kind=["trade"] * n, venue=["SHARED"] * n, instrument=["USDT/USD"] * n, price=px,
...     qty=[1000.0] * n, trade_id=[f"t{i}" for i in range(n)])
>>> d = ReferenceDeviation(pegs="USDT/USD=1.0", band_bps=50, min_duration_ms=30_000)
>>> [a.summary for a in d.update(d.new_state(), d.select(t))][-1]  # doctest: +NORMALIZE_WHITESPACE
'USDT/USD on SHARED traded below its anchor 1 (peg) by up to 90.0 bps for 50s (band 50 bps for 30s); 6 observations outside'
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

MS = 1_000_000
_KINDS = pa.array([Kind.TRADE.value, Kind.QUOTE.value, Kind.REFERENCE.value])
_REF, _QUOTE = Kind.REFERENCE.value, Kind.QUOTE.value
PEG_SOURCE = "peg"  # how a parameter peg is named as an anchor's source


def parse_pegs(text: str) -> dict[str, float]:
    """``"USDT/USD=1.0, USDC/USD=1"`` -> ``{"USDT/USD": 1.0, "USDC/USD": 1.0}``.

    >>> parse_pegs("USDT/USD=1.0, USDC/USD=1"), parse_pegs("")
    ({'USDT/USD': 1.0, 'USDC/USD': 1.0}, {})
    >>> parse_pegs("USDT/USD")
    Traceback (most recent call last):
    ...
    ValueError: pegs: expected INSTRUMENT=VALUE, got 'USDT/USD'
    """
    out = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        inst, eq, value = item.partition("=")
        try:
            v = float(value) if eq else float("nan")
        except ValueError:
            v = float("nan")
        if not inst.strip() or not v > 0:
            raise ValueError(f"pegs: expected INSTRUMENT=VALUE, got {item!r}")
        out[inst.strip()] = v
    return out


@dataclass
class _Anchor:
    value: float
    ts_ns: int
    source: str
    row: dict  # the reference event (evidence)


@dataclass
class _Episode:
    start_ns: int
    last_ns: int
    opening: dict
    peak: dict
    peak_bps: float
    anchor: _Anchor
    n_outside: int = 1
    alerted: bool = False


@dataclass
class DeviationState:
    anchor: _Anchor | None = None  # latest reference event of the instrument
    episodes: dict = field(default_factory=dict)  # venue -> _Episode
    last_ns: int = 0


class ReferenceDeviation(Detector):
    name = "reference_deviation"
    version = "1.0"
    key_columns = ("instrument",)
    description = ("An instrument with an external anchor (stablecoin peg, tokenised fund NAV, underlying price) "
                   "trades on some venue away from the anchor beyond a band for longer than T.")
    param_docs = {
        "band_bps": ("bps", "an observation deviates when |price / anchor - 1| exceeds this"),
        "min_duration_ms": ("ms", "a venue's outside observations must span this long before it alerts"),
        "max_anchor_age_ms": ("ms", "a reference event older than this no longer anchors (the peg, if any, "
                                    "takes over)"),
        "pegs": ("INSTRUMENT=value list", "fixed anchors, e.g. 'USDT/USD=1.0,USDC/USD=1.0', in each instrument's "
                                          "quote currency"),
    }

    def __init__(self, band_bps: float = 50.0, min_duration_ms: int = 60_000, max_anchor_age_ms: int = 172_800_000,
                 pegs: str = "USDT/USD=1.0,USDC/USD=1.0"):
        if band_bps <= 0 or min_duration_ms < 0 or max_anchor_age_ms <= 0:
            raise ValueError("band_bps and max_anchor_age_ms must be > 0, min_duration_ms >= 0")
        self.band_bps = float(band_bps)
        self.min_duration_ms = int(min_duration_ms)
        self.max_anchor_age_ms = int(max_anchor_age_ms)
        self.pegs = str(pegs)
        self._pegs = parse_pegs(self.pegs)

    # -- contract ---------------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        keep = pc.and_(pc.is_in(events.column("kind"), _KINDS), pc.is_valid(events.column("instrument")))
        return keep_rows(events, pc.fill_null(keep, False), ("bid", "ask"))

    def new_state(self) -> DeviationState:
        return DeviationState()

    def is_idle(self, state: DeviationState, now_ns: int) -> bool:
        anchor_gone = state.anchor is None or now_ns - state.anchor.ts_ns > self.max_anchor_age_ms * MS
        return not state.episodes and anchor_gone

    def update(self, state: DeviationState, events: pa.Table) -> list[Alert]:
        n = events.num_rows
        if n == 0:
            return []
        instrument = events.column("instrument")[0].as_py()
        kind = events.column("kind")
        is_ref = np.asarray(pc.equal(kind, _REF).to_numpy(zero_copy_only=False), dtype=bool)
        peg = self._pegs.get(instrument)
        if state.anchor is None and peg is None and not is_ref.any():
            state.last_ns = events.column("ts")[-1].value
            return []  # no anchor: the common case of an unanchored instrument, at the cost of one column read
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        is_quote = np.asarray(pc.equal(kind, _QUOTE).to_numpy(zero_copy_only=False), dtype=bool)
        bid = pc.fill_null(events.column("bid"), np.nan).to_numpy()
        ask = pc.fill_null(events.column("ask"), np.nan).to_numpy()
        price = np.where(is_quote, (bid + ask) / 2, pc.fill_null(events.column("price"), np.nan).to_numpy())
        # The anchor in force at each row: the latest reference row so far (forward fill), else the state's.
        idx = np.maximum.accumulate(np.where(is_ref, np.arange(n), -1))
        a_val = np.where(idx >= 0, price[np.maximum(idx, 0)], state.anchor.value if state.anchor else np.nan)
        a_ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], state.anchor.ts_ns if state.anchor else 0)
        fresh = (ts - a_ts <= self.max_anchor_age_ms * MS) & ~np.isnan(a_val)
        if peg is not None:
            a_val = np.where(fresh, a_val, peg)
            fresh = np.ones(n, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = (price / a_val - 1.0) * 1e4
        obs = ~is_ref & ~np.isnan(price) & (price > 0)
        outside = obs & fresh & (np.abs(np.nan_to_num(dev)) > self.band_bps)
        closes = obs & ~outside  # an observation inside the band (or without anchor) ends its venue's episode
        venue = events.column("venue").to_numpy(zero_copy_only=False)
        out: dict[str, Alert] = {}
        rows_cache: dict[int, dict] = {}

        def row(i: int) -> dict:
            if i not in rows_cache:
                rows_cache[i] = to_rows(events.slice(i, 1))[0]
            return rows_cache[i]

        def anchor_at(i: int) -> _Anchor:
            j = idx[i]
            if j >= 0 and fresh[i] and (peg is None or ts[i] - ts[j] <= self.max_anchor_age_ms * MS):
                r = row(int(j))
                return _Anchor(float(price[j]), int(ts[j]), r["venue"], r)
            if state.anchor is not None and ts[i] - state.anchor.ts_ns <= self.max_anchor_age_ms * MS:
                return state.anchor
            return _Anchor(float(peg), 0, PEG_SOURCE, {})

        # Walk only the rows that matter: outside observations and the first closing row of an open episode.
        interesting = np.flatnonzero(outside | closes)
        for v in sorted(set(venue[interesting].tolist())) if len(interesting) else []:
            rows_v = interesting[venue[interesting] == v]
            out_v, close_v = outside[rows_v], closes[rows_v]
            ep = state.episodes.get(v)
            # segments: consecutive outside rows; a closing row ends the open episode
            flips = np.flatnonzero(np.diff(np.concatenate(([ep is not None], out_v)).astype(np.int8)))
            bounds = list(flips) + [len(rows_v)]
            pos = 0
            for cut in bounds:
                if pos < cut and out_v[pos]:  # rows_v[pos:cut] are outside
                    seg = rows_v[pos:cut]
                    if ep is None:
                        i0 = int(seg[0])
                        ep = state.episodes[v] = _Episode(int(ts[i0]), int(ts[i0]), row(i0), row(i0),
                                                          float(dev[i0]), anchor_at(i0), n_outside=0)
                    k = int(seg[np.argmax(np.abs(dev[seg]))])
                    if abs(dev[k]) > abs(ep.peak_bps):
                        ep.peak_bps, ep.peak = float(dev[k]), row(k)
                    ep.n_outside += len(seg)
                    ep.last_ns = int(ts[seg[-1]])
                    if ep.last_ns - ep.start_ns >= self.min_duration_ms * MS:
                        ep.alerted = True
                        a = self._alert(ep, instrument, v, ep.last_ns, closing=None)
                        out[a.alert_id] = a
                elif pos < cut and close_v[pos] and ep is not None:  # the first row back inside closes it
                    i = int(rows_v[pos])
                    if ep.alerted:
                        a = self._alert(ep, instrument, v, int(ts[i]), closing=row(i))
                        out[a.alert_id] = a
                    del state.episodes[v]
                    ep = None
                pos = cut
        last_ref = np.flatnonzero(is_ref)
        if len(last_ref):
            j = int(last_ref[-1])
            r = row(j)
            state.anchor = _Anchor(float(price[j]), int(ts[j]), r["venue"], r)
        state.last_ns = int(ts[-1])
        return list(out.values())

    def flush(self, state: DeviationState) -> list[Alert]:
        out = []
        for v, ep in sorted(state.episodes.items()):
            if ep.alerted:
                out.append(self._alert(ep, ep.opening["instrument"], v, ep.last_ns, closing=None))
        return out

    def _alert(self, ep: _Episode, instrument: str, venue: str, end_ns: int, closing: dict | None) -> Alert:
        secs = (ep.last_ns - ep.start_ns) / 1e9
        anchor = ep.anchor
        direction = "above" if ep.peak_bps > 0 else "below"
        src = anchor.source if anchor.source != PEG_SOURCE else PEG_SOURCE
        summary = (f"{instrument} on {venue} traded {direction} its anchor {anchor.value:.10g} ({src}) by up to "
                   f"{abs(ep.peak_bps):.1f} bps for {secs:.0f}s (band {self.band_bps:g} bps for "
                   f"{self.min_duration_ms / 1000:g}s); {ep.n_outside} observations outside")
        ratio = abs(ep.peak_bps) / self.band_bps
        severity = Severity.HIGH if ratio >= 4 else Severity.MEDIUM if ratio >= 2 else Severity.LOW
        rows = ([anchor.row] if anchor.row else []) + [ep.opening] + ([ep.peak] if ep.peak is not ep.opening else [])
        rows += [closing] if closing is not None else []
        evidence = pa.Table.from_pylist([{**r, "instrument": instrument} for r in rows], schema=EVIDENCE_SCHEMA)
        return Alert.build(
            detector=self.name, version=self.version, key=f"{instrument}|{venue}", window_start_ns=ep.start_ns,
            window_end_ns=end_ns, opening_evidence=[evidence_id(ep.opening)], evidence=evidence, severity=severity,
            score=round(abs(ep.peak_bps), 6), instrument=instrument, venues=[venue], owners=[], accounts=[],
            summary=summary, params=self.params(),
            metrics={"peak_deviation_bps": round(ep.peak_bps, 6), "anchor": anchor.value, "anchor_source": src,
                     "anchor_ts_ns": anchor.ts_ns, "duration_s": round(secs, 3), "observations_outside": ep.n_outside,
                     "closed": closing is not None},
        )
