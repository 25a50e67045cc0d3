"""Pump and dump: a venue's price surges on heavy volume, then collapses (instrument level, owners not needed).

Trades of one instrument are cut, per venue, into event-time buckets of ``bucket_ms``; a bucket
closes when a trade of a later bucket arrives (or at flush) and gives its VWAP and quantity.
A *surge* opens when a closed bucket's VWAP is ``min_rise_pct`` or more above the lowest VWAP of
the venue's buckets in the last ``lookback_ms`` and the quantity traded over the last
``volume_window_ms`` is ``volume_multiple`` x the venue's usual (an exponentially weighted mean
over the buckets before that window, outside surges, after ``min_buckets`` of warm-up).  The surge's *peak* follows
the VWAP up; the *dump* is the VWAP falling back by ``min_retrace_share`` of the rise within
``dump_window_ms`` of the peak.  One alert per surge, at the dump.

What keeps look-alikes out: a news-driven jump is a fraction of ``min_rise_pct`` and holds; an
abnormal market-wide move holds (no dump); a dislocation or a brief spike on one venue comes
without the volume.  Nothing here needs owners, so the detector reads public tapes (pumps on
exchanges that publish only trades) as well as the shared book.

Who pumped: ``group_id`` attribution (net buying before the surge, net selling into it, by
linked owner group) is measured on the shared book in ``tests/detectors/test_pump_and_dump.py``
but is not reported here: on the scenario market a pumping group's own trades are a fraction
of a percent of the volume and of its members' usual trading, so naming a group would name the
wrong one more often than the right one.  The alert names the venue and the figures; the
investigator's query on the window names the traders.

>>> from tests.conftest import events
>>> ts = [float(t) for t in range(0, 1800, 5)] + [1800 + t / 4 for t in range(240)] + [1860 + t for t in range(60)]
>>> px = [100.0] * 360 + [100.0 + t / 24 for t in range(240)] + [110.0 - t / 6 for t in range(60)]
>>> n = len(ts)
>>> t = events(ts=ts, kind=["trade"] * n, venue=["V"] * n, instrument=["X/USDT"] * n, price=px, qty=[1.0] * n,
...     trade_id=[str(i) for i in range(n)])
>>> d, state = PumpAndDump(), PumpAndDump().new_state()
>>> [a.summary for a in d.update(state, d.select(t)) + d.flush(state)]  # doctest: +NORMALIZE_WHITESPACE
['X/USDT pumped and dumped on V: VWAP +9.3% in 70s (100 to 109.25) on 7x usual volume, then fell back 54%
  of the rise within 30s of the peak']
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

MS = 1_000_000
ROW_COLUMNS = list(EVIDENCE_COLUMNS)


@dataclass
class _Bucket:
    id: int
    qty: float = 0.0
    notional: float = 0.0
    trades: int = 0
    first: object = None  # its first trade (row dict; row number while read)
    high: object = None  # its highest-priced trade (the earliest of ties)
    high_px: float = 0.0


@dataclass
class _Surge:
    low: tuple  # (bucket id, VWAP, first-trade row) of the lowest bucket before it
    peak: tuple  # (bucket id, VWAP, highest trade row)
    volume_multiple: float
    opened: int  # bucket id that opened it


@dataclass
class _Venue:
    bucket: _Bucket | None = None
    # (bucket id, VWAP, first-trade row) within lookback, VWAPs increasing: the first is the lowest (the
    # latest of equal lows: the rise's start) — a sliding-window minimum in O(1) per bucket
    closed: deque = field(default_factory=deque)
    usual_qty: float = 0.0  # EW mean quantity per bucket (buckets with trades)
    n_usual: int = 0
    recent_qty: deque = field(default_factory=deque)  # (bucket id, qty) within the volume window
    surge: _Surge | None = None


@dataclass
class PumpState:
    last_ns: int = 0
    venues: dict = field(default_factory=dict)  # venue -> _Venue


class PumpAndDump(Detector):
    name = "pump_and_dump"
    version = "1.0"
    key_columns = ("instrument",)
    description = ("A venue's price surges far above its recent low on many times its usual volume, then "
                   "collapses back: the pump and the dump (instrument level; reads public tapes too).")
    param_docs = {
        "bucket_ms": ("ms", "event-time bucket of trades per venue (VWAP and quantity)"),
        "lookback_ms": ("ms", "the rise is measured from the lowest bucket VWAP within this time"),
        "min_rise_pct": ("%", "VWAP rise over that low that makes a surge"),
        "volume_window_ms": ("ms", "quantity traded over this time is compared with the usual ..."),
        "volume_multiple": ("x usual volume", "... and must be this multiple of the usual per-bucket quantity"),
        "baseline_alpha": ("fraction", "weight of each bucket in the usual quantity (buckets outside surges)"),
        "min_buckets": ("buckets", "buckets of warm-up before the usual quantity counts"),
        "min_retrace_share": ("share of the rise", "the dump: VWAP falls back by this share of the rise ..."),
        "dump_window_ms": ("ms", "... within this time of the peak, or the surge ends without alert"),
    }

    def __init__(self, bucket_ms: int = 10_000, lookback_ms: int = 1_800_000, min_rise_pct: float = 4.5,
                 volume_window_ms: int = 120_000, volume_multiple: float = 3.0, baseline_alpha: float = 0.02,
                 min_buckets: int = 30, min_retrace_share: float = 0.5, dump_window_ms: int = 300_000):
        if bucket_ms <= 0 or lookback_ms < bucket_ms or volume_window_ms < bucket_ms or dump_window_ms < bucket_ms:
            raise ValueError("bucket_ms > 0 and lookback_ms, volume_window_ms, dump_window_ms >= bucket_ms required")
        if min_rise_pct <= 0 or volume_multiple <= 0 or not 0 < baseline_alpha <= 1 or min_buckets < 1 \
                or not 0 < min_retrace_share <= 1:
            raise ValueError("min_rise_pct, volume_multiple > 0, 0 < baseline_alpha <= 1, min_buckets >= 1 and "
                             "0 < min_retrace_share <= 1 required")
        self.bucket_ms, self.lookback_ms, self.min_rise_pct = int(bucket_ms), int(lookback_ms), float(min_rise_pct)
        self.volume_window_ms, self.volume_multiple = int(volume_window_ms), float(volume_multiple)
        self.baseline_alpha, self.min_buckets = float(baseline_alpha), int(min_buckets)
        self.min_retrace_share, self.dump_window_ms = float(min_retrace_share), int(dump_window_ms)

    def select(self, events: pa.Table) -> pa.Table:
        ok = pc.and_(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                             pc.greater(events.column("price"), 0)), pc.greater(events.column("qty"), 0))
        return keep_rows(events, pc.fill_null(ok, False))

    def new_state(self) -> PumpState:
        return PumpState()

    def is_idle(self, state: PumpState, now_ns: int) -> bool:
        # Past the lookback a venue's history is gone; an open bucket or surge still owes its verdict.
        return now_ns - state.last_ns > self.lookback_ms * MS and not any(
            v.surge is not None or v.bucket is not None for v in state.venues.values())

    def flush(self, state: PumpState) -> list[Alert]:
        out = []
        for name in sorted(state.venues):
            v = state.venues[name]
            if v.bucket is not None:
                out += self._close(v, name, v.bucket)
                v.bucket = None
        return out

    def update(self, state: PumpState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        # Per venue, runs of rows in one bucket are summed with numpy; Python then walks buckets, not rows
        # (public tapes hold millions of trades).  The few rows kept (each bucket's first and highest
        # trade) are read in one take.
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        px = events.column("price").to_numpy(zero_copy_only=False)
        qty = events.column("qty").to_numpy(zero_copy_only=False)
        enc = pc.dictionary_encode(pc.fill_null(events.column("venue"), "")).combine_chunks()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        width = self.bucket_ms * MS
        bucket_ids = ts // width
        state.last_ns = int(ts[-1])
        # rows grouped by venue (event order kept), then cut where the bucket changes: one run per bucket
        order = np.argsort(codes, kind="stable")
        c_o, b_o, p_o, q_o = codes[order], bucket_ids[order], px[order], qty[order]
        starts = np.flatnonzero(np.concatenate(([True], (np.diff(c_o) != 0) | (np.diff(b_o) != 0))))
        lengths = np.diff(np.append(starts, len(order)))
        run_qty = np.add.reduceat(q_o, starts)
        run_notional = np.add.reduceat(p_o * q_o, starts)
        run_max = np.maximum.reduceat(p_o, starts)
        pos = np.arange(len(order))
        at_max = np.where(p_o == np.repeat(run_max, lengths), pos, len(order))
        high = order[np.minimum.reduceat(at_max, starts)]  # the earliest of a run's highest trades
        venues = enc.dictionary.to_pylist()
        runs = list(zip([venues[c] for c in c_o[starts]], b_o[starts].tolist(), run_qty.tolist(),
                        run_notional.tolist(), lengths.tolist(), order[starts].tolist(), high.tolist()))
        keep = sorted({r[5] for r in runs} | {r[6] for r in runs})
        row = dict(zip(keep, to_rows(events.select(ROW_COLUMNS).take(pa.array(keep, pa.int64())))))
        out: list[Alert] = []
        for venue, bid, q, notional, n, first, high in runs:
            v = state.venues.get(venue)
            if v is None:
                v = state.venues[venue] = _Venue()
            bk = v.bucket
            if bk is None or bk.id != bid:
                if bk is not None:
                    out += self._close(v, venue, bk)
                bk = v.bucket = _Bucket(bid, first=row[first], high=row[high], high_px=float(px[high]))
            elif px[high] > bk.high_px:
                bk.high, bk.high_px = row[high], float(px[high])
            bk.qty += q
            bk.notional += notional
            bk.trades += n
        return out

    def _close(self, v: _Venue, venue: str, bk: _Bucket) -> list[Alert]:
        vwap = bk.notional / bk.qty
        per_window = max(self.volume_window_ms // self.bucket_ms, 1)
        v.recent_qty.append((bk.id, bk.qty))
        while v.recent_qty[0][0] <= bk.id - per_window:
            # the usual learns buckets as they leave the volume window, so it describes the time before the
            # window being judged; and only outside surges
            _, q = v.recent_qty.popleft()
            if v.surge is None:
                v.usual_qty = q if not v.n_usual else v.usual_qty + self.baseline_alpha * (q - v.usual_qty)
                v.n_usual += 1
        while v.closed and v.closed[0][0] <= bk.id - self.lookback_ms // self.bucket_ms:
            v.closed.popleft()  # v.closed keeps only buckets that can still be the low: its first is the lowest
        out = []
        s = v.surge
        if s is not None:
            if vwap > s.peak[1]:
                s.peak = (bk.id, vwap, bk.high)
            elif (s.peak[1] - vwap) >= self.min_retrace_share * (s.peak[1] - s.low[1]):
                out.append(self._alert(s, venue, bk, vwap))
                v.surge = None
            elif bk.id - s.peak[0] > self.dump_window_ms // self.bucket_ms:
                v.surge = None  # the price stayed up: a repricing, not a dump
        elif v.n_usual >= self.min_buckets and v.closed:
            low = v.closed[0]
            rise = vwap / low[1] - 1.0
            volume = sum(q for _, q in v.recent_qty)
            multiple = volume / (v.usual_qty * per_window)
            if rise * 100 >= self.min_rise_pct and multiple >= self.volume_multiple:
                v.surge = _Surge(low, (bk.id, vwap, bk.high), multiple, bk.id)
        while v.closed and v.closed[-1][1] >= vwap:  # a later bucket as low or lower: the earlier can't be the low
            v.closed.pop()
        v.closed.append((bk.id, vwap, bk.first))
        return out

    def _alert(self, s: _Surge, venue: str, bk: _Bucket, vwap: float) -> Alert:
        rows = [s.low[2], s.peak[2], bk.first]
        instrument = rows[0].get("instrument")
        seen = {}
        for r in rows:
            seen.setdefault(evidence_id(r), r)
        evidence = pa.Table.from_pylist(list(seen.values()), schema=EVIDENCE_SCHEMA)
        rise = s.peak[1] / s.low[1] - 1.0
        back = (s.peak[1] - vwap) / (s.peak[1] - s.low[1])
        w = self.bucket_ms / 1000
        summary = (f"{instrument} pumped and dumped on {venue}: VWAP {rise * 100:+.1f}% in "
                   f"{(s.peak[0] - s.low[0]) * w:.0f}s ({s.low[1]:.6g} to {s.peak[1]:.6g}) on "
                   f"{s.volume_multiple:.0f}x usual volume, then fell back {back:.0%} of the rise within "
                   f"{(bk.id - s.peak[0]) * w:.0f}s of the peak")
        score = rise * 100 / self.min_rise_pct
        severity = Severity.HIGH if score >= 2 else Severity.MEDIUM
        return Alert.build(
            detector=self.name, version=self.version, key=f"{instrument}|{venue}",
            window_start_ns=s.low[0] * self.bucket_ms * MS, window_end_ns=(bk.id + 1) * self.bucket_ms * MS,
            opening_evidence=[evidence_id(s.low[2])], evidence=evidence, severity=severity, score=round(score, 6),
            instrument=instrument, venues=[venue], owners=[], accounts=[], summary=summary, params=self.params(),
            metrics={"rise_pct": round(rise * 100, 6), "low_vwap": s.low[1], "peak_vwap": s.peak[1],
                     "dump_vwap": vwap, "retrace_share": round(back, 6), "volume_multiple": round(s.volume_multiple, 6),
                     "rise_s": (s.peak[0] - s.low[0]) * w, "dump_s": (bk.id - s.peak[0]) * w},
        )
