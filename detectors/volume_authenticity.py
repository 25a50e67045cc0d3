"""Volume authenticity: the statistical footprints of fabricated volume, per venue, instrument and UTC day.

A platform about to share its book with an affiliate (and while it does) wants to know whether the
affiliate's volume is traded by people or printed by a bot.  Three forensics on trade sizes (``qty``):

* **First digit (Benford).**  Sizes spread over several decades have first-digit shares
  ``log10(1 + 1/d)``.  Chi-square statistic and p-value (scipy) are reported, but with thousands of
  trades any real deviation gives p≈0, so the score uses Nigrini's MAD (mean absolute deviation of
  the nine shares: <0.006 close, <0.012 acceptable, <0.015 marginal, above: nonconformity), less
  the MAD sampling noise alone gives a Benford sample of n trades, 0.235/sqrt(n) (0.0105 at n=500:
  Nigrini's bounds assume large samples).  Single-instrument days on the Binance tapes have a
  median MAD of 0.021 (p95 0.05): a day's sizes bunch on popular order sizes, so only a gross
  misfit (uniform first digits give 0.06) scores fully.
* **Round sizes.**  *Resolution* δ = 10^j0: the finest decimal step the day's sizes use (j0: the
  smallest step at or below which ≥1% of trades lie — robust to a stray odd size; it is the lot).
  *Round unit* U = 10^max(M, j0+1), M the median decade (floor log10) of sizes: round means "a whole
  multiple of the typical size's decade", kept one decade above the lot so not every size is round.
  Round share r = trades that are multiples of U / trades ≥ U.  A continuous size distribution
  rounded to the lot hits a multiple of U once in U/δ lots, r0 = δ/U; the score uses the excess
  ``(r - r0) / (1 - r0)``: the share of sizes not forced round by the lot that are round anyway.
  People like round sizes too (real tapes: median 0.03, p99 0.25, Binance BTCUSDT futures 0.30),
  so only bot-like lot recycling (most sizes round) counts.  Too *few* round sizes is reported
  (``round_ratio`` r/r0) but not scored: genuine small-cap tapes sit near r0 as well.
* **Tail.**  Hill estimator of the power-law exponent on the top k sizes,
  ``alpha = k / sum(ln(x_i / x_(k+1)))``.  Genuine size tails are power laws with alpha ~1–3; uniform
  or capped bot sizes give a thin tail (alpha large), a few identical clip sizes at the top give
  alpha → ∞ (capped at 100), a handful of giant prints give alpha < 1.

Each is mapped to [0,1] by a linear ramp between a "genuine" and a "fabricated" bound; the score is
their mean, so one odd statistic (a narrow genuine size range fails Benford) cannot alert alone.

State per (venue, instrument) is O(1): the current day's digit counts, decade and step histograms,
the top ``tail_k``+1 sizes and the ``max_evidence_rows`` largest trades — never the trades.  The
verdict is taken at fixed trade counts of the day (``min_trades``, then every
``check_every_trades``), never at batch ends or at the day's close: the engine may drop a finished
day on the watermark (``is_idle``) before a next-day event would close it, so a close-time verdict
would depend on batching.  Once a day alerts, every update re-issues the alert (same id) with the
day's running figures, so its last revision holds the whole day.

>>> import numpy as np
>>> from surveil.schemas import conform
>>> n = 600
>>> t = conform(pa.table({"ts": pa.array(np.arange(n) * 10**9, pa.int64()), "kind": ["trade"] * n,
...     "venue": ["AFF"] * n, "instrument": ["X/USDT"] * n, "price": [1.0] * n,
...     "qty": [float(q) for q in np.resize([100, 200, 500, 1000, 250, 137], n)], "trade_id": [str(i) for i in range(n)]}))
>>> d = VolumeAuthenticity()
>>> [a] = d.update(d.new_state(), d.select(t))
>>> a.summary.split(":")[0], a.metrics["round_share"], a.evidence.num_rows
('AFF X/USDT 1970-01-01', 0.6667, 20)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

DAY_NS = 86_400 * 10**9
BENFORD = np.log10(1 + 1 / np.arange(1, 10))
_EXP = 12  # decades and steps are clipped to [-12, 12]: sizes outside 1e-12..1e12 do not occur
_SIG = 9  # sizes are read to 9 significant digits: float noise (0.1+0.2) must not look like a fine lot
ALPHA_CAP = 100.0
_POW10 = 10 ** np.arange(1, _SIG, dtype=np.int64)
MAD_NOISE = float(np.mean(np.sqrt(BENFORD * (1 - BENFORD))) * math.sqrt(2 / math.pi))  # E[MAD]·sqrt(n) = 0.235


@dataclass
class VolumeState:
    day: int = -1  # UTC day number (ts // DAY_NS) being accumulated
    n: int = 0
    first_ns: int = 0
    last_ns: int = 0
    opening: str = ""  # evidence id of the day's first trade: names the alert
    venue: str = ""
    instrument: str = ""
    digits: list = field(default_factory=lambda: [0] * 9)
    decades: dict = field(default_factory=dict)  # floor(log10 qty) -> trades
    steps: dict = field(default_factory=dict)  # j: qty is a multiple of 10^j, not 10^(j+1) -> trades
    tail: list = field(default_factory=list)  # the tail_k+1 largest sizes, descending
    top_keys: list = field(default_factory=list)  # sort keys of the largest trades, descending...
    top_rows: pa.Table | None = None  # ...and those trades (the evidence), same order
    fired_n: int = 0  # trade count at the checkpoint that first passed min_score (0: not yet)
    peak_n: int = 0  # checkpoint with the highest score so far, and that score
    peak_score: float = 0.0


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def size_parts(qty: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First digit, decade and step (qty is a multiple of 10^step) of each size.

    >>> [a.tolist() for a in size_parts(np.array([1998.0, 0.132, 1000.0, 0.1 + 0.2]))]
    [[1, 1, 1, 3], [3, -1, 3, -1], [0, -3, 3, -1]]
    """
    m = np.floor(np.log10(qty)).astype(np.int64)
    mant = np.round(qty / 10.0 ** m, _SIG - 1)
    m = np.where(mant >= 10, m + 1, np.where(mant < 1, m - 1, m))  # log10 off by one ulp
    mant = np.round(qty / 10.0 ** m, _SIG - 1)
    ints = np.rint(mant * 10 ** (_SIG - 1)).astype(np.int64)  # 9 significant digits as an integer
    zeros = (ints[:, None] % _POW10 == 0).sum(axis=1)  # trailing zeros (in one pass: batches may be small)
    return (ints // 10 ** (_SIG - 1)).clip(1, 9), m.clip(-_EXP, _EXP), (m - (_SIG - 1) + zeros).clip(-_EXP, _EXP)


class VolumeAuthenticity(Detector):
    name = "volume_authenticity"
    version = "1.0"
    key_columns = ("venue", "instrument")
    description = ("Trade sizes of a venue/instrument/UTC day that look fabricated: first digits off Benford, "
                   "bot-like round lots, an implausible size tail.")
    param_docs = {
        "min_score": ("score 0-1", "combined score (mean of the three components) at which a day alerts"),
        "min_trades": ("trades", "trades a venue/instrument needs in a UTC day before it is judged"),
        "check_every_trades": ("trades", "after min_trades the day is re-judged every this many trades"),
        "tail_k": ("trades", "largest sizes the Hill tail estimate uses (at most a tenth of the day's trades)"),
        "mad_low": ("digit share", "Benford MAD above its noise 0.235/sqrt(n) scored 0 (Nigrini nonconformity: 0.015)"),
        "mad_high": ("digit share", "Benford MAD above its noise scored 1 (uniform first digits: 0.06)"),
        "round_excess_low": ("share of trades", "round-size excess (r-r0)/(1-r0) scored 0"),
        "round_excess_high": ("share of trades", "round-size excess scored 1"),
        "alpha_low": ("tail exponent", "Hill alpha below this starts to score (giant prints); 1 at half of it"),
        "alpha_high": ("tail exponent", "Hill alpha above this starts to score (thin tail); 1 at twice it"),
        "max_evidence_rows": ("trades", "largest trades of the day kept as evidence"),
    }

    def __init__(self, min_score: float = 0.5, min_trades: int = 500, check_every_trades: int = 100,
                 tail_k: int = 100, mad_low: float = 0.015, mad_high: float = 0.06,
                 round_excess_low: float = 0.4, round_excess_high: float = 0.7,
                 alpha_low: float = 0.8, alpha_high: float = 4.0, max_evidence_rows: int = 20):
        if not 0 < min_score <= 1 or min_trades < 1 or check_every_trades < 1 or tail_k < 2 or max_evidence_rows < 1:
            raise ValueError("min_score in (0,1], min_trades, check_every_trades, max_evidence_rows >= 1, tail_k >= 2")
        if not (0 <= mad_low < mad_high and 0 <= round_excess_low < round_excess_high <= 1
                and 0 < alpha_low < alpha_high):
            raise ValueError("each low bound must be below its high bound (round excess within 0..1, alphas > 0)")
        self.min_score, self.min_trades = float(min_score), int(min_trades)
        self.check_every_trades = int(check_every_trades)
        self.tail_k, self.max_evidence_rows = int(tail_k), int(max_evidence_rows)
        self.mad_low, self.mad_high = float(mad_low), float(mad_high)
        self.round_excess_low, self.round_excess_high = float(round_excess_low), float(round_excess_high)
        self.alpha_low, self.alpha_high = float(alpha_low), float(alpha_high)

    def select(self, events: pa.Table) -> pa.Table:
        qty = events.column("qty")
        mask = pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                       pc.and_(pc.greater(qty, 0.0), pc.is_finite(qty)))
        return keep_rows(events, pc.fill_null(mask, False), ("venue_symbol",))

    def new_state(self) -> VolumeState:
        return VolumeState()

    def is_idle(self, state: VolumeState, now_ns: int) -> bool:
        # Past the day's midnight nothing can join it: every alert it earns was already issued.
        return state.n == 0 or now_ns >= (state.day + 1) * DAY_NS

    def update(self, state: VolumeState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        qty = events.column("qty").to_numpy()
        digit, decade, step = size_parts(qty)
        day = ts // DAY_NS
        src = pc.fill_null(events.column("src"), -1).to_numpy()
        seq = pc.fill_null(events.column("src_seq"), -1).to_numpy()
        out: dict[str, Alert] = {}
        bounds = np.flatnonzero(np.diff(day)) + 1
        for lo, hi in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(day)]))):
            d = int(day[lo])
            if d < state.day:  # older than the open day: impossible after the event-time merge
                continue
            if d != state.day:
                self._open(state, d, events, int(lo), int(ts[lo]))
            pos, n0 = int(lo), state.n
            while pos < hi:  # cut the rows at the checkpoints so the verdict never depends on batching
                cp = self.min_trades if state.n < self.min_trades else state.n + self.check_every_trades - (
                    (state.n - self.min_trades) % self.check_every_trades)
                end = min(int(hi), pos + cp - state.n)
                self._add(state, pos, end, qty, digit, decade, step, ts)
                pos = end
                if state.n == cp:
                    score = self.report(state)["score"]
                    if score > state.peak_score:
                        state.peak_n, state.peak_score = state.n, score
                    if score >= self.min_score and not state.fired_n:
                        state.fired_n = state.n
            self._keep_largest(state, events, int(lo), int(hi), n0, qty, ts, src, seq)
            if state.fired_n:
                a = self._alert(state)
                out[a.alert_id] = a
        return list(out.values())

    def flush(self, state: VolumeState) -> list[Alert]:
        return [self._alert(state)] if state.fired_n else []  # the revision the last update issued

    # -- accumulation ------------------------------------------------------------------------------
    def _open(self, state: VolumeState, day: int, events: pa.Table, i: int, ts: int) -> None:
        row = to_rows(events.slice(i, 1))[0]
        # every field back to its default: nothing of the old day survives
        state.__init__(day=day, first_ns=ts, opening=evidence_id(row), venue=row["venue"] or "",
                       instrument=row["instrument"] or row["venue_symbol"] or "")

    def _add(self, state, lo, hi, qty, digit, decade, step, ts) -> None:
        state.n += hi - lo
        state.last_ns = int(ts[hi - 1])
        for k, c in enumerate(np.bincount(digit[lo:hi], minlength=10)[1:]):
            state.digits[k] += int(c)
        for hist, col in ((state.decades, decade), (state.steps, step)):
            counts = np.bincount(col[lo:hi] + _EXP, minlength=2 * _EXP + 1)
            for v in np.flatnonzero(counts):
                hist[int(v) - _EXP] = hist.get(int(v) - _EXP, 0) + int(counts[v])
        q = qty[lo:hi]
        keep = self.tail_k + 1
        cand = q if len(q) <= keep else np.partition(q, len(q) - keep)[-keep:]
        state.tail = sorted(state.tail + cand.tolist(), reverse=True)[:keep]

    def _keep_largest(self, state, events, lo, hi, n0, qty, ts, src, seq) -> None:
        # Evidence: the largest trades of the day; ties go to the earlier trade (the position in the
        # day breaks exact ties).  A set function of the day's rows, so it needs no checkpoints.
        q, m = qty[lo:hi], self.max_evidence_rows
        order = np.lexsort((np.arange(hi - lo), seq[lo:hi], src[lo:hi], ts[lo:hi], -q))[:m]

        def key(j: int) -> tuple:
            return float(q[j]), -int(ts[lo + j]), -int(src[lo + j]), -int(seq[lo + j]), -(n0 + int(j))
        if len(state.top_keys) == m and key(order[0]) <= state.top_keys[-1]:
            return  # nothing in these rows beats the current evidence (their best is order[0])
        cands = [(key(j), i) for i, j in enumerate(order)]
        old = [(k, i) for i, k in enumerate(state.top_keys)]
        best = sorted(old + [(k, len(old) + i) for k, i in cands], reverse=True)[:m]
        pool = events.select(list(EVIDENCE_COLUMNS)).take(pa.array(lo + order, pa.int64()))  # slim: state pickles
        if state.top_rows is not None:
            pool = pa.concat_tables([state.top_rows, pool])
        state.top_keys = [k for k, _ in best]
        state.top_rows = pool.take(pa.array([i for _, i in best], pa.int64())).combine_chunks()

    # -- statistics --------------------------------------------------------------------------------
    def report(self, state: VolumeState) -> dict:
        """The day's statistics and score (the figures an alert carries; the bench prints them)."""
        n = state.n
        digits = np.asarray(state.digits, dtype=float)
        shares = digits / n
        mad = float(np.abs(shares - BENFORD).mean())
        mad_excess = mad - MAD_NOISE / math.sqrt(n)
        chi2 = float(((digits - BENFORD * n) ** 2 / (BENFORD * n)).sum())
        from scipy.special import chdtrc  # here, not at import: half a second every process would pay at start

        p = float(chdtrc(8, chi2))  # = scipy.stats.chisquare's p (8 dof), minus its ms of overhead
        # round sizes: resolution from the step histogram, round unit from the median decade
        cum, j0 = 0, None
        for j in sorted(state.steps):
            cum += state.steps[j]
            if cum >= 0.01 * n:
                j0 = j
                break
        cum, mdec = 0, None
        for m in sorted(state.decades):
            cum += state.decades[m]
            if cum * 2 >= n:
                mdec = m
                break
        u = max(mdec, j0 + 1)
        eligible = sum(c for m, c in state.decades.items() if m >= u)
        rounds = sum(c for j, c in state.steps.items() if j >= u)
        r0 = 10.0 ** (j0 - u)
        r = rounds / eligible if eligible else 0.0
        excess = (r - r0) / (1 - r0)
        # tail: Hill on the top k (at most a tenth of the day, so a short day is not all "tail")
        k = min(self.tail_k, max(2, n // 10), len(state.tail) - 1)
        top = np.asarray(state.tail[: k + 1])
        logs = float(np.log(top[:k] / top[k]).sum())
        alpha = min(ALPHA_CAP, k / logs) if logs > 0 else ALPHA_CAP
        s_benford = _ramp(mad_excess, self.mad_low, self.mad_high)
        s_round = _ramp(excess, self.round_excess_low, self.round_excess_high)
        s_tail = max(_ramp(alpha, self.alpha_high, 2 * self.alpha_high),
                     _ramp(-alpha, -self.alpha_low, -self.alpha_low / 2))
        return {"trades": n, "chi2": round(chi2, 4), "p_value": p, "mad": round(mad, 6),
                "mad_excess": round(mad_excess, 6), "resolution": 10.0 ** j0, "round_unit": 10.0 ** u,
                "round_share": round(r, 4), "round_expected": r0, "round_ratio": round(r / r0, 3),
                "round_excess": round(excess, 4),
                "hill_alpha": round(alpha, 4), "hill_k": k, "score_benford": round(s_benford, 4),
                "score_round": round(s_round, 4), "score_tail": round(s_tail, 4),
                "score": round((s_benford + s_round + s_tail) / 3, 4)}

    def _alert(self, state: VolumeState) -> Alert:
        r = self.report(state)
        day = datetime.fromtimestamp(state.day * 86_400, timezone.utc).date().isoformat()
        peak = f", peak {state.peak_score:.2f} at {state.peak_n:,}" if state.peak_score > r["score"] else ""
        tail = f"{r['hill_alpha']:.2f}" if r["hill_alpha"] < ALPHA_CAP else "capped (top sizes identical)"
        summary = (f"{state.venue} {state.instrument} {day}: sizes look fabricated (score {r['score']:.2f} over "
                   f"{r['trades']:,} trades{peak}): Benford MAD {r['mad']:.3f} (chi2 {r['chi2']:.0f}, p {r['p_value']:.1e}), "
                   f"{r['round_share']:.0%} of sizes round at {r['round_unit']:g} (continuous: {r['round_expected']:.1%}), "
                   f"tail alpha {tail} on top {r['hill_k']}")
        top = max(r["score"], state.peak_score)  # the day so far may have diluted what a checkpoint saw
        severity = Severity.HIGH if top >= 0.8 else Severity.MEDIUM if top >= 0.65 else Severity.LOW
        return Alert.build(
            detector=self.name, version=self.version, key=f"{state.venue}|{state.instrument}",
            window_start_ns=state.day * DAY_NS, window_end_ns=state.last_ns, opening_evidence=[state.opening],
            evidence=state.top_rows, severity=severity, score=top,
            instrument=state.instrument, venues=[state.venue], owners=[], accounts=[], summary=summary,
            params=self.params(),
            metrics={**r, "fired_at_trades": state.fired_n, "peak_score": state.peak_score,
                     "peak_at_trades": state.peak_n},
        )
