"""Abnormal price and volume moves of a whole market against rolling, time-of-day-aware baselines.

Trades of one instrument on all venues are cut into fixed event-time buckets of ``bucket_ms``.
A bucket closes when a trade of a later bucket arrives (or at flush) and gives two features:

- its log volume, all venues together (volumes are heavy-tailed; on a log scale a z-score
  means the same for any lot size);
- the market's return: each venue's VWAP change since its previous traded bucket (divided by
  the square root of the buckets between, so a quiet spell is not a jump), and of those the
  smallest when all venues agree on the direction, else none.  A VWAP, so one odd print is not
  a move (that is off_market's finding); the smallest, so one venue moving alone is not the
  market moving.  When the venues part by more than ``min_return_bps`` the bucket is one
  venue's affair - a dislocation, a pump on one venue (other detectors' findings) - and
  neither its price nor its volume alerts here.

Only these features reach river: an exponentially weighted mean and variance
(``river.stats.EWMean`` / ``EWVar``, fading factor ``baseline_alpha``) per time-of-day slot of
``slot_minutes`` (UTC) plus one overall baseline, the recent regime.  A bucket is abnormal only
if it is against *both* (the slot's once it has ``min_buckets`` buckets): a regular busy hour
is normal for its slot, a market-wide busy day for the recent regime.  Volume alerts at z >=
``volume_z`` and >= ``min_volume_multiple`` x the typical (geometric mean) volume; price at
|z| >= ``return_z`` and |return| >= ``min_return_bps``.  Nothing alerts until the overall
baseline has ``min_buckets`` buckets.  Buckets without trades are not features (for a thinly
traded instrument every traded minute would look busy).  Each abnormal bucket is one alert.

A trade more than ``max_gap_ms`` after the previous one starts afresh (the old baseline no
longer describes the market; the bucket left open before the gap is dropped unscored), which
is what lets ``is_idle`` evict a quiet instrument without changing any later alert.

>>> from tests.conftest import events
>>> ts = [m * 60 + s for m in range(25) for s in (10, 40)] + [25 * 60 + s for s in range(0, 60, 6)] + [26 * 60]
>>> n = len(ts)
>>> qty = [1.0 + m % 3 / 10 for m in range(25) for _ in (0, 1)] + [2.0] * 10 + [1.0]  # 25 quiet minutes, a busy one
>>> t = events(ts=ts, kind=["trade"] * n, venue=["A", "B"] * (n // 2) + ["A"], instrument=["X"] * n,
...     price=[100.0] * n, qty=qty, trade_id=[str(i) for i in range(n)])
>>> d = AbnormalMove()
>>> for a in d.update(d.new_state(), d.select(t)):
...     print(a.summary)  # doctest: +NORMALIZE_WHITESPACE
X abnormal volume in the 60s from 1970-01-01 00:25:00 UTC: price +0.00% across venues (A +0.00%, B +0.00%;
z +0.0 against recent σ 0.0 bps per bucket); volume 20 = 9.4x recent (z 29.6) and 9.4x usual for 00:00-01:00 UTC
(z 29.6); 10 trades on A, B
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from river import stats

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

ROLES = ("first", "last", "high", "low", "largest")  # the bucket trades kept as evidence
ID_COLUMNS = ["kind", "venue", "trade_id", "exec_id", "instrument", "venue_symbol", "ts", "src", "src_seq"]
KEEP_COLUMNS = list(EVIDENCE_COLUMNS) + ["venue_symbol"]


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
        self.vol_mean.update(math.log(volume))
        self.vol_var.update(math.log(volume))
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
    vol: dict = field(default_factory=dict)  # venue -> quantity traded
    notional: dict = field(default_factory=dict)  # venue -> sum of price x quantity
    trades: int = 0
    high_px: float = -math.inf
    low_px: float = math.inf
    largest_qty: float = -math.inf
    rows: dict = field(default_factory=dict)  # role -> row index in the current batch, or a one-row table


@dataclass
class AbnormalState:
    slots: list  # one _Baseline (or None until used) per time-of-day slot: fixed length
    overall: _Baseline
    bucket: _Bucket | None = None
    prev: dict = field(default_factory=dict)  # venue -> (VWAP, bucket id) of the last closed bucket it traded in
    last_ts_ns: int | None = None


class AbnormalMove(Detector):
    name = "abnormal_move"
    version = "1.0"
    key_columns = ("instrument",)
    description = "A whole market's price move or volume in a bucket far outside its time-of-day and recent norms."
    param_docs = {
        "bucket_ms": ("ms", "event-time bucket over which trades are aggregated (across venues)"),
        "slot_minutes": ("minutes", "time-of-day slot (UTC) with its own baseline; must divide 1440"),
        "baseline_alpha": ("fraction", "weight of each new bucket in the exponentially weighted baselines"),
        "min_buckets": ("buckets", "buckets a baseline needs before it is used (warm-up)"),
        "return_z": ("standard deviations", "|z| of the bucket's return that makes a price move abnormal"),
        "volume_z": ("standard deviations", "z of the bucket's log volume that makes volume abnormal"),
        "min_return_bps": ("bps", "smallest |return| that can alert; venues parting by more make no market move"),
        "min_volume_multiple": ("x typical volume",
                                "smallest multiple of the baseline's typical (geometric mean) volume that can alert"),
        "max_gap_ms": ("ms", "a trade this long after the previous one resets the baselines"),
    }

    def __init__(self, bucket_ms: int = 60_000, slot_minutes: int = 60, baseline_alpha: float = 0.05,
                 min_buckets: int = 20, return_z: float = 5.0, volume_z: float = 4.0, min_return_bps: float = 90.0,
                 min_volume_multiple: float = 4.0, max_gap_ms: int = 86_400_000):
        if bucket_ms <= 0 or slot_minutes <= 0 or 1440 % slot_minutes or not 0 < baseline_alpha <= 1:
            raise ValueError("bucket_ms > 0, slot_minutes dividing 1440 and 0 < baseline_alpha <= 1 required")
        if min_buckets < 2 or return_z <= 0 or volume_z <= 0 or min_return_bps < 0 or min_volume_multiple < 0 \
                or max_gap_ms <= bucket_ms:
            raise ValueError("min_buckets >= 2, thresholds > 0, minimums >= 0 and max_gap_ms > bucket_ms required")
        self.bucket_ms, self.slot_minutes = int(bucket_ms), int(slot_minutes)
        self.baseline_alpha = float(baseline_alpha)
        self.min_buckets, self.return_z, self.volume_z = int(min_buckets), float(return_z), float(volume_z)
        self.min_return_bps, self.min_volume_multiple = float(min_return_bps), float(min_volume_multiple)
        self.max_gap_ms = int(max_gap_ms)

    def select(self, events: pa.Table) -> pa.Table:
        ok = pc.and_(pc.fill_null(pc.greater(events.column("price"), 0), False),
                     pc.fill_null(pc.greater(events.column("qty"), 0), False))
        return keep_rows(events, pc.fill_null(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value), ok), False),
                         ("venue_symbol",))

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
        bucket_of = ts // (self.bucket_ms * 1_000_000)
        prev = np.concatenate(([ts[0] if state.last_ts_ns is None else state.last_ts_ns], ts))
        resets = set(np.flatnonzero(np.diff(prev) > self.max_gap_ms * 1_000_000).tolist())
        out = []
        # runs of rows in one bucket (and between resets): the loop is per bucket, not per trade
        cuts = sorted(set(np.flatnonzero(np.diff(bucket_of)) + 1) | resets | {0})
        for s, e in zip(map(int, cuts), map(int, cuts[1:] + [n])):
            if s in resets:
                fresh = self.new_state()
                state.slots, state.overall, state.bucket, state.prev = fresh.slots, fresh.overall, None, {}
            bk = state.bucket
            if bk is not None and bk.id != bucket_of[s]:
                out += self._close(state, bk, events)
                bk = None
            if bk is None:
                bk = state.bucket = _Bucket(int(bucket_of[s]))
                bk.rows["first"] = s
            q, vs = qty[s:e], venue[s:e]
            for v in sorted(set(vs.tolist())):
                # sequential sums (accumulate, not pairwise sum) so any batching adds in the same order
                m = vs == v
                bk.vol[v] = float(np.add.accumulate(np.concatenate(([bk.vol.get(v, 0.0)], q[m])))[-1])
                bk.notional[v] = float(np.add.accumulate(np.concatenate(([bk.notional.get(v, 0.0)],
                                                                         price[s:e][m] * q[m])))[-1])
            bk.trades += e - s
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
        # the open bucket's evidence rows outlive the batch: one take for them all, narrowed to the evidence
        # columns (a slice of the batch would pin all of it)
        rows = state.bucket.rows
        idx = sorted({h for h in rows.values() if not isinstance(h, pa.Table)})
        if idx:
            taken = events.select(KEEP_COLUMNS).take(idx)
            rows.update({r: taken.slice(idx.index(h), 1) for r, h in rows.items() if not isinstance(h, pa.Table)})
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
        venues = sorted(bk.vol)
        volume = sum(bk.vol[v] for v in venues)
        vwaps = {v: bk.notional[v] / bk.vol[v] for v in venues}
        # each venue's return since its previous traded bucket (per sqrt(bucket) between them); the market's is
        # the smallest when all agree on the direction, else none: one venue moving alone is a dislocation or
        # that venue's own affair (price_dislocation, pump detectors), not the market moving
        moves = {v: (math.log(vwaps[v] / state.prev[v][0]), bk.id - state.prev[v][1])
                 for v in venues if v in state.prev}
        ret = ret_n = None
        split = 0.0  # how far the venues' moves diverge
        if moves:
            signs = {math.copysign(1, r) for r, _ in moves.values()}
            ret, gap = min(moves.values(), key=lambda m: abs(m[0])) if len(signs) == 1 else (0.0, 1)
            ret_n = ret / math.sqrt(gap)
            split = max(r for r, _ in moves.values()) - min(r for r, _ in moves.values())
        k = self._slot(bk.id)
        slot = state.slots[k] = state.slots[k] or _Baseline.new(self.baseline_alpha)
        alerts = []
        # warm-up: the overall baseline has seen min_buckets buckets; and venues whose prices part by more than a
        # market move would be (min_return_bps) make it one venue's affair, its volume surge included (a pump)
        if state.overall.n_vol >= self.min_buckets and split * 1e4 <= self.min_return_bps:
            # (name, log-volume z, typical volume, return z, return sd) under each warmed-up baseline
            looks = [(name, _z(math.log(volume), b.vol_mean.get(), b.vol_var.get()), math.exp(b.vol_mean.get()),
                      _z(ret_n, b.ret_mean.get(), b.ret_var.get()) if b.n_ret >= self.min_buckets and ret_n is not None
                      else 0.0, math.sqrt(max(b.ret_var.get(), 0.0)))
                     for name, b in (("recent", state.overall), (self._slot_name(k), slot))
                     if b.n_vol >= self.min_buckets]
            # abnormal only if so under every baseline: the one where it looks least unusual decides
            vol = min(looks, key=lambda x: x[1])
            mult = volume / vol[2]
            vol_abn = vol[1] >= self.volume_z and mult >= self.min_volume_multiple
            rz = min(looks, key=lambda x: abs(x[3]))
            ret_abn = ret is not None and abs(rz[3]) >= self.return_z and abs(ret) * 1e4 >= self.min_return_bps
            if vol_abn or ret_abn:
                alerts.append(self._alert(bk, events, volume, ret, moves, looks, vol, mult, rz, vol_abn, ret_abn))
        slot.learn(volume, ret_n)
        state.overall.learn(volume, ret_n)
        state.prev.update({v: (vwaps[v], bk.id) for v in venues})
        return alerts

    def _slot_name(self, k: int) -> str:
        a, b = k * self.slot_minutes, (k + 1) * self.slot_minutes % 1440
        return f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d} UTC"

    def _alert(self, bk, events, volume, ret, moves, looks, vol, mult, rz, vol_abn, ret_abn) -> Alert:
        seen: dict[str, pa.Table] = {}
        for h in (bk.rows[r] for r in ROLES if r in bk.rows):
            row = h if isinstance(h, pa.Table) else events.select(KEEP_COLUMNS).take([int(h)])
            seen.setdefault(evidence_id(to_rows(row.select(ID_COLUMNS))[0]), row)
        opening = next(iter(seen))  # the bucket's first trade
        instrument = seen[opening].column("instrument")[0].as_py()
        start = bk.id * self.bucket_ms * 1_000_000
        when = datetime.fromtimestamp(start / 1e9, timezone.utc)
        what = " and ".join(w for w, f in (("price move", ret_abn), ("volume", vol_abn)) if f)
        base = lambda name: "recent" if name == "recent" else f"usual for {name}"  # noqa: E731
        vol_txt = " and ".join(f"{volume / m:.1f}x {base(n)} (z {z:.1f})" for n, z, m, _, _ in looks)
        each = ", ".join(f"{v} {r * 100 + 0.0:+.2f}%" for v, (r, _) in sorted(moves.items()))
        price_txt = ("no earlier price" if ret is None else f"price {ret * 100 + 0.0:+.2f}% across venues ({each}; "
                     f"z {rz[3]:+.1f} against {base(rz[0])} σ {rz[4] * 1e4:.1f} bps per bucket)")
        summary = (f"{instrument} abnormal {what} in the {self.bucket_ms / 1000:g}s from {when:%Y-%m-%d %H:%M:%S} UTC: "
                   f"{price_txt}; volume {volume:,.6g} = {vol_txt}; {bk.trades} trades on {', '.join(sorted(bk.vol))}")
        score = max(abs(rz[3]) / self.return_z if ret_abn else 0.0, vol[1] / self.volume_z if vol_abn else 0.0)
        severity = Severity.HIGH if (vol_abn and ret_abn) or score >= 2 else Severity.MEDIUM
        return Alert.build(
            detector=self.name, version=self.version, key=instrument, window_start_ns=start,
            window_end_ns=start + self.bucket_ms * 1_000_000, opening_evidence=[opening],
            evidence=pa.concat_tables(seen.values()), severity=severity, score=round(min(score, 1e6), 6),
            instrument=instrument, venues=sorted(bk.vol), owners=[], accounts=[], summary=summary,
            params=self.params(),
            metrics={"return_bps": None if ret is None else round(ret * 1e4, 6), "return_z": round(rz[3], 6),
                     "venue_return_bps": {v: round(r * 1e4, 6) for v, (r, _) in moves.items()},
                     "return_baseline": rz[0], "return_baseline_sd_bps": round(rz[4] * 1e4, 6), "volume": volume,
                     "volume_z": round(vol[1], 6), "volume_multiple": round(min(mult, 1e9), 6),
                     "volume_baseline": vol[0], "baseline_volume_mean": vol[2], "trades": bk.trades,
                     "price_abnormal": ret_abn, "volume_abnormal": vol_abn},
        )
