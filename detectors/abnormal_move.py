"""Abnormal price and volume moves against a rolling, time-of-day-aware baseline.

Trades of one instrument, across all venues (one market, as an investor sees it), are cut
into fixed event-time buckets of ``bucket_ms``.  A bucket closes when a trade of a later
bucket arrives (or at flush) and gives two features: its volume (sum of quantities) and
its return, the log change of its VWAP from the previous traded bucket's, divided by
the square root of the buckets between them (so a move over a quiet spell is not
mistaken for a jump).  VWAP, not the last print, so one odd trade on one venue (the
off-market detector's business) does not make a move.  Buckets without trades are not
features: for a thinly traded instrument every traded minute would otherwise look busy.

Only these features reach river: an exponentially weighted mean and variance
(``river.stats.EWMean`` / ``EWVar``, fading factor ``baseline_alpha``) per time-of-day slot
of ``slot_minutes`` (UTC), plus one overall baseline, the recent regime.  A bucket is
abnormal when it is far out against *both* the overall baseline and — once that slot has
``min_buckets`` buckets — its slot's: a regular busy hour is normal for its slot, a
market-wide busy day is normal for the recent regime.  Volume alerts when z >=
``volume_z`` and volume >= ``min_volume_multiple`` x the baseline mean; price when |z| >=
``return_z`` and |return| >= ``min_return_bps``.  Nothing alerts before the overall
baseline has ``min_buckets`` buckets.  Each abnormal bucket is one alert.

A trade more than ``max_gap_ms`` after the previous one starts afresh (the old baseline no
longer describes the market; the bucket left open before the gap is dropped unscored), which
is what lets ``is_idle`` evict a quiet instrument without changing any later alert.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from river import stats

from detectors.base import Detector
from surveil.alerts import Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

ROLES = ("first", "last", "high", "low", "largest")  # the bucket trades kept as evidence


@dataclass
class _Baseline:
    """River statistics of closed buckets' volume and (per-bucket) return."""

    vol_mean: stats.EWMean
    vol_var: stats.EWVar
    ret_mean: stats.EWMean
    ret_var: stats.EWVar
    n_vol: int = 0
    n_ret: int = 0

    @classmethod
    def new(cls, alpha: float) -> "_Baseline":
        return cls(stats.EWMean(alpha), stats.EWVar(alpha), stats.EWMean(alpha), stats.EWVar(alpha))

    def learn(self, volume: float, ret: float | None) -> None:
        self.vol_mean.update(volume)
        self.vol_var.update(volume)
        self.n_vol += 1
        if ret is not None:
            self.ret_mean.update(ret)
            self.ret_var.update(ret)
            self.n_ret += 1


def _z(x: float, mean: float, var: float) -> float:
    # a floor on the spread keeps z finite (JSON has no infinity) when the baseline never varied
    return (x - mean) / max(math.sqrt(max(var, 0.0)), abs(mean) * 1e-6, 1e-12)


@dataclass
class _Bucket:
    id: int  # bucket start // bucket_ms
    volume: float = 0.0
    notional: float = 0.0
    trades: int = 0
    venues: set = field(default_factory=set)
    high_px: float = -math.inf
    low_px: float = math.inf
    largest_qty: float = -math.inf
    rows: dict = field(default_factory=dict)  # role -> row index in the current batch, or a one-row table


@dataclass
class AbnormalState:
    slots: list  # one _Baseline (or None until used) per time-of-day slot: fixed length
    overall: _Baseline
    bucket: _Bucket | None = None
    prev_vwap: float | None = None  # the last closed bucket's VWAP, and its bucket id
    prev_id: int | None = None
    last_ts_ns: int | None = None


class AbnormalMove(Detector):
    name = "abnormal_move"
    version = "1.0"
    key_columns = ("instrument",)
    description = "A bucket's price move or volume far outside the instrument's time-of-day and recent baselines."
    param_docs = {
        "bucket_ms": ("ms", "event-time bucket over which trades are aggregated (across venues)"),
        "slot_minutes": ("minutes", "time-of-day slot (UTC) with its own baseline; must divide 1440"),
        "baseline_alpha": ("fraction", "weight of each new bucket in the exponentially weighted baselines"),
        "min_buckets": ("buckets", "buckets a baseline needs before it is used (warm-up)"),
        "return_z": ("standard deviations", "|z| of the bucket's return that makes a price move abnormal"),
        "volume_z": ("standard deviations", "z of the bucket's volume that makes volume abnormal"),
        "min_return_bps": ("bps", "smallest |return| that can alert, however quiet the baseline"),
        "min_volume_multiple": ("x baseline mean", "smallest volume multiple that can alert"),
        "max_gap_ms": ("ms", "a trade this long after the previous one resets the baselines"),
    }

    def __init__(self, bucket_ms: int = 60_000, slot_minutes: int = 60, baseline_alpha: float = 0.05,
                 min_buckets: int = 20, return_z: float = 5.0, volume_z: float = 5.0, min_return_bps: float = 30.0,
                 min_volume_multiple: float = 3.0, max_gap_ms: int = 86_400_000):
        if bucket_ms <= 0 or slot_minutes <= 0 or 1440 % slot_minutes or not 0 < baseline_alpha <= 1:
            raise ValueError("bucket_ms > 0, slot_minutes dividing 1440 and 0 < baseline_alpha <= 1 required")
        if min_buckets < 2 or return_z <= 0 or volume_z <= 0 or min_return_bps < 0 or min_volume_multiple < 0 \
                or max_gap_ms <= bucket_ms:
            raise ValueError("min_buckets >= 2, thresholds > 0, minimums >= 0 and max_gap_ms > bucket_ms required")
        self.bucket_ms, self.slot_minutes, self.baseline_alpha = int(bucket_ms), int(slot_minutes), float(baseline_alpha)
        self.min_buckets, self.return_z, self.volume_z = int(min_buckets), float(return_z), float(volume_z)
        self.min_return_bps, self.min_volume_multiple = float(min_return_bps), float(min_volume_multiple)
        self.max_gap_ms = int(max_gap_ms)

    def select(self, events: pa.Table) -> pa.Table:
        ok = pc.and_(pc.fill_null(pc.greater(events.column("price"), 0), False),
                     pc.fill_null(pc.greater(events.column("qty"), 0), False))
        return events.filter(pc.fill_null(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value), ok), False))

    def new_state(self) -> AbnormalState:
        return AbnormalState([None] * (1440 // self.slot_minutes), _Baseline.new(self.baseline_alpha))

    def is_idle(self, state: AbnormalState, now_ns: int) -> bool:
        # Any later trade would reset the state (max_gap_ms), so dropping it changes nothing.
        return state.last_ts_ns is None or now_ns - state.last_ts_ns > self.max_gap_ms * 1_000_000

    def update(self, state: AbnormalState, events: pa.Table) -> list[Alert]:
        n = events.num_rows
        if n == 0:
            return []
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        price, qty = events.column("price").to_numpy(), events.column("qty").to_numpy()
        venue = events.column("venue").to_numpy(zero_copy_only=False)
        bid = ts // (self.bucket_ms * 1_000_000)
        prev = np.concatenate(([ts[0] if state.last_ts_ns is None else state.last_ts_ns], ts))
        resets = set(np.flatnonzero(np.diff(prev) > self.max_gap_ms * 1_000_000).tolist())
        out = []
        # runs of rows in one bucket (and between resets): the loop is per bucket, not per trade
        cuts = sorted(set(np.flatnonzero(np.diff(bid)) + 1) | resets | {0})
        for s, e in zip(cuts, cuts[1:] + [n]):
            if s in resets:
                fresh = self.new_state()
                state.slots, state.overall, state.bucket = fresh.slots, fresh.overall, None
                state.prev_vwap = state.prev_id = None
            bk = state.bucket
            if bk is not None and bk.id != bid[s]:
                out += self._close(state, bk, events)
                bk = None
            if bk is None:
                bk = state.bucket = _Bucket(int(bid[s]))
                bk.rows["first"] = s
            q = qty[s:e]
            # sequential sums (accumulate, not pairwise sum) so any batching adds in the same order
            bk.volume = float(np.add.accumulate(np.concatenate(([bk.volume], q)))[-1])
            bk.notional = float(np.add.accumulate(np.concatenate(([bk.notional], price[s:e] * q)))[-1])
            bk.trades += e - s
            bk.venues.update(set(venue[s:e].tolist()))
            bk.rows["last"] = e - 1
            # strictly better replaces: ties keep the earliest trade, whatever the batching
            j = s + int(np.argmax(price[s:e]))
            if price[j] > bk.high_px:
                bk.high_px, bk.rows["high"] = float(price[j]), j
            j = s + int(np.argmin(price[s:e]))
            if price[j] < bk.low_px:
                bk.low_px, bk.rows["low"] = float(price[j]), j
            j = s + int(np.argmax(q))
            if q[j - s] > bk.largest_qty:
                bk.largest_qty, bk.rows["largest"] = float(q[j - s]), j
        state.last_ts_ns = int(ts[-1])
        bk = state.bucket
        bk.rows = {r: events.take([h]) if isinstance(h, int) else h for r, h in bk.rows.items()}
        return out

    def flush(self, state: AbnormalState) -> list[Alert]:
        if state.bucket is None:
            return []
        bk, state.bucket = state.bucket, None
        return self._close(state, bk, None)

    def _slot(self, bucket_id: int) -> int:
        return int(bucket_id * self.bucket_ms // (self.slot_minutes * 60_000)) % (1440 // self.slot_minutes)

    def _close(self, state: AbnormalState, bk: _Bucket, events: pa.Table | None) -> list[Alert]:
        """Score a closed bucket against the baselines as they were, then teach them the bucket."""
        vwap = bk.notional / bk.volume
        ret = ret_n = None
        if state.prev_vwap is not None:
            ret = math.log(vwap / state.prev_vwap)
            ret_n = ret / math.sqrt(bk.id - state.prev_id)
        k = self._slot(bk.id)
        slot = state.slots[k] = state.slots[k] or _Baseline.new(self.baseline_alpha)
        ov, m = state.overall, self.min_buckets
        # the binding baseline is the one under which the bucket looks least unusual
        vol = [(_z(bk.volume, b.vol_mean.get(), b.vol_var.get()), b.vol_mean.get(), name)
               for b, name in ((ov, "recent"), (slot, "time-of-day")) if b.n_vol >= m]
        rets = [(_z(ret_n, b.ret_mean.get(), b.ret_var.get()), math.sqrt(max(b.ret_var.get(), 0.0)), name)
                for b, name in ((ov, "recent"), (slot, "time-of-day")) if b.n_ret >= m and ret_n is not None]
        alerts = []
        if ov.n_vol >= m:  # warm-up: the overall baseline has seen min_buckets buckets
            zv, vmean, vname = min(vol)
            mult = bk.volume / vmean if vmean > 0 else math.inf
            vol_abn = zv >= self.volume_z and mult >= self.min_volume_multiple
            zr, rsd, rname = min(rets, key=lambda r: abs(r[0])) if rets else (0.0, 0.0, "")
            ret_abn = bool(rets) and abs(zr) >= self.return_z and abs(ret) * 1e4 >= self.min_return_bps
            if vol_abn or ret_abn:
                alerts.append(self._alert(bk, k, events, vwap, ret, zr, rsd, rname, zv, vmean, vname, mult,
                                          vol_abn, ret_abn))
        slot.learn(bk.volume, ret_n)
        ov.learn(bk.volume, ret_n)
        state.prev_vwap, state.prev_id = vwap, bk.id
        return alerts

    def _alert(self, bk, k, events, vwap, ret, zr, rsd, rname, zv, vmean, vname, mult, vol_abn, ret_abn) -> Alert:
        rows = [events.take([h]) if isinstance(h, int) else h for h in (bk.rows[r] for r in ROLES if r in bk.rows)]
        seen: dict[str, pa.Table] = {}
        for r in rows:
            seen.setdefault(evidence_id(to_rows(r)[0]), r)
        first = seen[next(iter(seen))]
        instrument = first.column("instrument")[0].as_py()
        start = bk.id * self.bucket_ms * 1_000_000
        end = start + self.bucket_ms * 1_000_000
        when = datetime.fromtimestamp(start / 1e9, timezone.utc)
        slot_from = k * self.slot_minutes
        slot_txt = f"{slot_from // 60:02d}:{slot_from % 60:02d} UTC slot"
        what = " and ".join(w for w, f in (("price move", ret_abn), ("volume", vol_abn)) if f)
        price_txt = (f"price {ret * 100:+.2f}% (z {zr:+.1f}, {rname} baseline σ {rsd * 1e4:.1f} bps per bucket)"
                     if ret is not None else "no earlier price")
        base_txt = slot_txt if vname == "time-of-day" else "recent"
        summary = (f"{instrument} abnormal {what} in the {self.bucket_ms / 1000:g}s from {when:%Y-%m-%d %H:%M:%S} UTC: "
                   f"{price_txt}; volume {bk.volume:,.4g} = {mult:.1f}x the {base_txt} baseline {vmean:,.4g} "
                   f"(z {zv:.1f}); {bk.trades} trades on {', '.join(sorted(bk.venues))}")
        score = max(abs(zr) / self.return_z if ret_abn else 0.0, zv / self.volume_z if vol_abn else 0.0)
        severity = Severity.HIGH if (vol_abn and ret_abn) or score >= 2 else Severity.MEDIUM
        return Alert.build(
            detector=self.name, version=self.version, key=instrument, window_start_ns=start, window_end_ns=end,
            opening_evidence=[evidence_id(to_rows(first)[0])], evidence=pa.concat_tables(seen.values()),
            severity=severity, score=round(min(score, 1e6), 6), instrument=instrument, venues=sorted(bk.venues),
            owners=[], accounts=[], summary=summary, params=self.params(),
            metrics={"return_bps": None if ret is None else round(ret * 1e4, 6), "return_z": round(zr, 6),
                     "return_baseline": rname, "volume": bk.volume, "volume_z": round(zv, 6),
                     "volume_multiple": round(min(mult, 1e9), 6), "volume_baseline": vname,
                     "baseline_volume_mean": vmean, "vwap": vwap, "trades": bk.trades, "slot": k,
                     "price_abnormal": ret_abn, "volume_abnormal": vol_abn},
        )
