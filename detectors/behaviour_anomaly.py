"""Behavioural anomalies: owners (and markets) whose window of activity departs from what is usual.

The rule detectors catch the patterns someone wrote down; this one learns, as the stream
flows, what owners' behaviour in an instrument normally looks like and flags what departs
from it.  Rows of one instrument (every venue) are cut into event-time windows of
``window_ms``; a window closes when a row of a later window arrives (or at flush) and gives
the behaviour features of ``detectors._features``: one vector per owner active in it
(order-to-trade ratio, cancel rate and latency, cancels against its own trades, trading with
itself, linked owners or back and forth with one counterparty, platform mix, aggressiveness,
position build-up and reversal, participation, P&L, price deviation, how fast its aggressive
orders walked the price, message rate) and one for the instrument itself.

**Keyed by instrument, scored per owner.**  One owner sees a handful of windows in a run, too
few for a model of its own; so each owner's vector is scored against three baselines, river
anomaly detectors all, and the *smallest* surprise counts, as in ``abnormal_move``:

- the population of owners trading the instrument (``_RobustPopulation``): each window's median
  and MAD of every feature, exponentially weighted over windows (``population_alpha``).  Robust,
  because a few market makers quote and cancel all day and would otherwise set the spread;
- the same window's other owners (the same median and MAD, of this window alone, once it has
  ``MIN_CROSS_SECTION`` owners): when a pump or a news jump makes the whole crowd trade harder,
  the crowd is not a crowd of suspects; the instrument's own window says the market moved;
- once the owner has ``own_min_windows`` windows, its own history: exponentially weighted mean
  and variance (river's ``EWMean`` / ``EWVar`` formulas, winsorised, ``own_alpha``), one row per owner.

A market maker's message rate is extreme for the population but usual for itself; a trader who
suddenly spoofs is unusual for all three.  A feature's surprise is its z-score, one-sided (every
feature is oriented so that larger is stranger) with a floor on each feature's spread
(``SPREAD_FLOOR``: a zero-inflated feature such as trading with itself has no spread at all);
an owner window's score is the length of its vector of positive surprises (one feature far
off, or several fairly far: spoofing moves cancel rate, cancels against its trades and
order-to-trade ratio together), and the alert names the features that contributed most, with
their values and the baseline's usual value.  The instrument's own window (trades, volume,
return, gap between venues, messages, net flow between the platforms) is scored against the
rolling median and quartiles of its last ``market_history`` windows (``_RollingScorer``)
and alerts, naming no owner, at ``market_min_score``.  An instrument with no shared-book trades
(a coin watched on a public venue's tape) is its public trades' market, and its return is not
surprising below ``TICK_FLOOR`` price ticks (a thin coin's tick can be 40 bps of its price).

**Adaptive threshold.**  An owner window alerts when its score is at least ``min_score`` and
at least the ``threshold_quantile`` of the owner scores since the last reset (river's P²
``stats.Quantile``, trusted once it rests on enough scores): a market where odd windows are
common raises its own bar.  Windows that alert are not learnt into the population and market
baselines (they stay clean of what they flagged); an owner's own history learns them, winsorised,
so an owner who keeps doing the same thing is flagged in its first windows, not in every one.

**Warm-up and drift.**  Nothing alerts before the instrument has ``warmup_windows`` windows (and
``own_min_windows``, so the regulars have their own history before anyone is judged).
River's ``drift.PageHinkley`` watches the instrument's log trade count per window (ADWIN, tried
first, needs some 30 windows of history to see a doubling: too slow for minute windows); when it
detects a regime change (the market's activity doubled, say) the population and market baselines start afresh
and the warm-up runs again, so the new regime is learnt in ``warmup_windows`` windows (the
adaptation period) instead of being flagged window after window.

All state is river objects and plain data: it pickles, and since features are computed over
whole windows the alerts do not depend on how rows were batched.  A row more than
``max_gap_ms`` after the previous one starts afresh (which lets ``is_idle`` evict the key).

>>> d = BehaviourAnomaly()
>>> d.key_columns, d.warmup_windows
(('instrument',), 1)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from river import stats
from river.base import AnomalyDetector

from detectors._features import (MARKET_FEATURES, MESSAGE_ACTIONS, OWNER_FEATURES, market_features, owner_features,
                                 recent_news, split_window)
from detectors.base import Detector, keep_rows
from surveil.alerts import Alert, Severity, evidence_id
from surveil.schemas import Kind, to_rows

if TYPE_CHECKING:
    from river.drift import PageHinkley

KEEP_EXTRA = ("buy_group", "sell_group")  # besides the evidence columns (keep_rows)
ID_COLUMNS = ["kind", "venue", "trade_id", "exec_id", "instrument", "ts", "src", "src_seq"]
# Floors on each feature's spread (its unit): below them a difference is not a surprise.
SPREAD_FLOOR = {
    "msg_rate": 0.5, "order_to_trade": 0.5, "cancel_rate": 0.15, "fast_cancel_share": 0.15,
    "cancel_to_trade_qty": 0.5, "opposite_cancel": 0.25, "self_share": 0.02,
    "group_share": 0.02, "platform_mix": 0.1, "aggressiveness": 0.2, "position_build": 1.0, "position_reversal": 0.5,
    "counterparty_round_trip": 0.2, "exclusive_round_trip": 0.1, "participation": 0.05, "realised_spread": 0.15,
    "price_dev_bps": 2.5, "push_bps": 2.0,
    "log_trades": 0.25, "log_volume": 0.25, "return_bps": 5.0, "venue_gap_bps": 3.0, "log_messages": 0.25,
    "platform_net": 0.5,
}
FLOORS = np.array([SPREAD_FLOOR[f] for f in OWNER_FEATURES])
TOP_FEATURES = 3  # features an alert names
# A value learnt into an owner's own mean and variance is first pulled to within CLIP spreads of it (a
# winsorised update): one odd window below the bar must not widen the owner's spread for good.
CLIP = 3.0
TICK_FLOOR = 2.0  # the market's return spread is at least this many ticks
MIN_CROSS_SECTION = 10  # owners a window needs before it is a population of its own
DRIFT_DELTA = 0.2  # Page-Hinkley: changes of log trade count smaller than this per window are noise


def _combine(z: np.ndarray) -> np.ndarray:
    """A row's score: the length of its positive surprises (one feature far off, or several fairly far).

    >>> _combine(np.array([[3.0, 4.0, -9.0]])).tolist()
    [5.0]
    """
    return np.sqrt((np.maximum(z, 0.0) ** 2).sum(axis=1)) if len(z) else np.zeros(0)


class _RollingScorer(AnomalyDetector):
    """A river anomaly detector for the instrument's own windows: per feature, the median and lower quartile
    of the last ``history`` windows learnt (river's ``stats.RollingQuantile``); a window's surprise is its
    distance above the median in standard deviations read off the *lower* half, (median - q25) / 0.674,
    or off the interquartile range, (q75 - q25) / 1.349, when that is wider (see ``zscores``).

    Robust, where an exponentially weighted variance is not: the edge windows of a dislocation (partly
    dislocated, below the bar) would each widen a variance for good, until a later dislocation looked usual.
    Every feature is oriented so that larger is stranger, so what a busy run of episodes contaminates is the
    upper half; the lower half still says how much ordinary windows differ.

    >>> s = _RollingScorer(("log_trades", "venue_gap_bps"), 30)
    >>> for v in (1.0, 1.2, 0.8, 1.1, 0.9):
    ...     s.learn_one({"log_trades": v, "venue_gap_bps": 2.0})
    >>> s.learn_one({"log_trades": 1.0, "venue_gap_bps": 90.0})  # a dislocation's edge window, learnt
    >>> round(s.score_one({"log_trades": 1.0, "venue_gap_bps": 120.0}), 1)  # the next one still stands out
    39.3
    """

    def __init__(self, features: tuple[str, ...], history: int):
        self.features = features
        self.median = [stats.RollingQuantile(0.5, history) for _ in features]
        self.lower = [stats.RollingQuantile(0.25, history) for _ in features]
        self.upper = [stats.RollingQuantile(0.75, history) for _ in features]
        self.floor = np.array([SPREAD_FLOOR.get(f, 1e-9) for f in features])
        self.n = 0

    def learn_one(self, x: dict) -> None:
        for f, m, lo, hi in zip(self.features, self.median, self.lower, self.upper):
            m.update(x[f])
            lo.update(x[f])
            hi.update(x[f])
        self.n += 1

    def zscores(self, x: dict, floor: np.ndarray | None = None) -> dict[str, float]:
        if not self.n:
            return dict.fromkeys(self.features, 0.0)
        center = np.array([m.get() for m in self.median])
        lower = np.array([q.get() for q in self.lower])
        # the interquartile range too: a zero-inflated or tick-bound feature (most minutes of a thin coin trade
        # once, at the last price) has no lower half at all, and its usual steps would all look like surprises
        iqr = np.array([q.get() for q in self.upper]) - lower
        scale = np.maximum(np.maximum((center - lower) / 0.6745, iqr / 1.349), self.floor if floor is None else floor)
        z = (np.array([x[f] for f in self.features]) - center) / scale
        return dict(zip(self.features, z.tolist()))

    def score_one(self, x: dict) -> float:
        return float(_combine(np.array([list(self.zscores(x).values())]))[0])

    def usual(self, feature: str) -> float:
        return float(self.median[self.features.index(feature)].get() or 0.0)


class _RobustPopulation(AnomalyDetector):
    """The owners of a window as one sample: exponentially weighted median and MAD of each feature.

    Robust, because a handful of market makers trade and cancel all day: with a mean and variance
    they would set the population's spread, and a spoofer's one large cancel would look ordinary.
    Each window's median and scaled MAD (1.4826 x median absolute deviation) update the baseline
    with weight ``alpha``; the spread never goes below the feature's floor.

    >>> p = _RobustPopulation(("a",), 0.5)
    >>> p.learn_many(np.array([[1.0], [1.0], [2.0], [100.0]]))  # one extreme owner does not move it much
    >>> p.usual("a"), p.zscores_many(np.array([[3.0]])).round(2).tolist()
    (1.5, [[2.02]])
    """

    def __init__(self, features: tuple[str, ...], alpha: float):
        self.features, self.alpha = features, alpha
        self.center = np.zeros(len(features))
        self.scale = np.zeros(len(features))
        self.floor = np.array([SPREAD_FLOOR.get(f, 1e-9) for f in features])
        self.n = 0  # windows learnt

    def learn_many(self, xs: np.ndarray) -> None:
        if not len(xs):
            return
        med = np.median(xs, axis=0)
        mad = 1.4826 * np.median(np.abs(xs - med), axis=0)
        if self.n == 0:
            self.center, self.scale = med, mad
        else:
            self.center = self.center + self.alpha * (med - self.center)
            self.scale = self.scale + self.alpha * (mad - self.scale)
        self.n += 1

    def zscores_many(self, xs: np.ndarray) -> np.ndarray:
        return (xs - self.center) / np.maximum(self.scale, self.floor)

    def learn_one(self, x: dict) -> None:
        self.learn_many(np.array([[x[f] for f in self.features]]))

    def score_one(self, x: dict) -> float:
        return float(_combine(self.zscores_many(np.array([[x[f] for f in self.features]])))[0])

    def usual(self, feature: str) -> float:
        return float(self.center[self.features.index(feature)])


@dataclass
class BehaviourState:
    population: _RobustPopulation | None = None
    market: _RollingScorer | None = None
    scores: stats.Quantile | None = None  # owner-window scores since the start or the last drift: adaptive threshold
    drift: PageHinkley | None = None
    level: float | None = None  # recent log trade count per window (what the drift detector's input is clipped to)
    own: dict = field(default_factory=dict)  # owner -> row of the own_* arrays (its own baseline)
    own_mean: np.ndarray = field(default_factory=lambda: np.zeros((0, len(OWNER_FEATURES))))
    own_var: np.ndarray = field(default_factory=lambda: np.zeros((0, len(OWNER_FEATURES))))
    own_n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    own_last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # window it was last seen
    rows: list = field(default_factory=list)  # pa.Tables of the open window
    window_id: int | None = None
    news: pa.Table | None = None  # recent ``new`` orders (cancel latency across a window edge)
    prev_vwap: float | None = None
    tick_bps: float | None = None  # smallest price step seen between the market's trades, in bps of the price
    has_book: bool = False  # shared-book trades seen: until then the market vector reads the public trades
    scored: int = 0  # owner windows in ``scores``
    windows: int = 0  # windows closed since the start or the last drift
    drifts: int = 0
    last_ts_ns: int | None = None


class BehaviourAnomaly(Detector):
    name = "behaviour_anomaly"
    version = "1.0"
    key_columns = ("instrument",)
    description = ("An owner's (or a market's) behaviour in a window far from what river baselines learnt "
                   "for the instrument's population and for the owner itself.")
    param_docs = {
        "window_ms": ("ms", "event-time window over which behaviour features are computed"),
        "warmup_windows": ("windows", "windows an instrument needs (after its start or a drift) before alerts "
                                       "(at least own_min_windows)"),
        "min_score": ("standard deviations", "smallest feature surprise (z) that can alert"),
        "market_min_score": ("standard deviations", "smallest surprise of the instrument's own features that alerts"),
        "threshold_quantile": ("fraction", "an owner window must also score at this quantile of all scores so far"),
        "population_alpha": ("fraction", "weight of each window in the population baseline"),
        "market_history": ("windows", "windows of the instrument's own baseline (rolling median and quartiles)"),
        "own_alpha": ("fraction", "weight of each window in an owner's own baseline"),
        "own_min_windows": ("windows", "windows of an owner before its own baseline is used"),
        "owner_ttl_windows": ("windows", "an owner's own baseline is dropped after this many windows without it"),
        "fast_cancel_ms": ("ms", "a cancel this soon after the order's new counts as fast"),
        "drift_threshold": ("log trade count", "Page-Hinkley threshold on the cumulative shift of the log trade "
                                               "count per window that declares a new regime"),
        "max_evidence": ("rows", "evidence rows kept per alert (the owner's first in the window)"),
        "max_gap_ms": ("ms", "a row this long after the previous one resets the instrument's baselines"),
    }

    def __init__(self, window_ms: int = 60_000, warmup_windows: int = 1, min_score: float = 8.0,
                 market_min_score: float = 8.0, threshold_quantile: float = 0.999, population_alpha: float = 0.1,
                 market_history: int = 30,
                 own_alpha: float = 0.2, own_min_windows: int = 1, owner_ttl_windows: int = 30,
                 fast_cancel_ms: int = 1_000, drift_threshold: float = 5.0, max_evidence: int = 50,
                 max_gap_ms: int = 3_600_000):
        if window_ms <= 0 or warmup_windows < 1 or min_score <= 0 or market_min_score <= 0:
            raise ValueError("window_ms > 0, warmup_windows >= 1 and scores > 0 required")
        if not 0 < threshold_quantile < 1 or not 0 < population_alpha <= 1 or not 0 < own_alpha <= 1:
            raise ValueError("threshold_quantile in (0, 1) and alphas in (0, 1] required")
        if market_history < 4 or own_min_windows < 1 or owner_ttl_windows < 1 or fast_cancel_ms <= 0 or drift_threshold <= 0 \
                or max_evidence < 1 or max_gap_ms <= window_ms:
            raise ValueError("market_history >= 4, positive windows, fast_cancel_ms, max_evidence, drift_threshold "
                             "and max_gap_ms > window_ms required")
        self.window_ms, self.warmup_windows = int(window_ms), int(warmup_windows)
        self.min_score, self.market_min_score = float(min_score), float(market_min_score)
        self.threshold_quantile = float(threshold_quantile)
        self.population_alpha, self.own_alpha = float(population_alpha), float(own_alpha)
        self.market_history = int(market_history)
        self.own_min_windows, self.owner_ttl_windows = int(own_min_windows), int(owner_ttl_windows)
        self.fast_cancel_ms, self.drift_threshold = int(fast_cancel_ms), float(drift_threshold)
        self.max_evidence, self.max_gap_ms = int(max_evidence), int(max_gap_ms)

    # -- the contract ---------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        # few compute calls: this runs on every batch (positive price and quantity are checked per window)
        keep = pc.or_kleene(pc.equal(events.column("kind"), Kind.TRADE.value),
                            pc.is_in(events.column("action"), pa.array(MESSAGE_ACTIONS)))
        return keep_rows(events, keep, KEEP_EXTRA)

    def new_state(self) -> BehaviourState:
        return BehaviourState()  # the models are made when the first window closes (states are made often)

    def _models(self, state: BehaviourState) -> None:
        if state.population is None:
            state.population = _RobustPopulation(OWNER_FEATURES, self.population_alpha)
            state.market = _RollingScorer(MARKET_FEATURES, self.market_history)
            state.scores, state.scored = stats.Quantile(self.threshold_quantile), 0
        if state.drift is None:
            from river.drift import PageHinkley  # here: river.drift imports scipy.stats (a second at every start)

            state.drift = PageHinkley(min_instances=max(self.warmup_windows, 3), delta=DRIFT_DELTA,
                                      threshold=self.drift_threshold, mode="both")

    def is_idle(self, state: BehaviourState, now_ns: int) -> bool:
        # any later row would reset the state (max_gap_ms), so dropping it changes nothing
        return state.last_ts_ns is None or now_ns - state.last_ts_ns > self.max_gap_ms * 1_000_000

    def update(self, state: BehaviourState, events: pa.Table) -> list[Alert]:
        n = events.num_rows
        if n == 0:
            return []
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        first, last = int(ts.min()), int(ts.max())
        prev_ts = first if state.last_ts_ns is None else state.last_ts_ns
        window = first // (self.window_ms * 1_000_000)
        if (last // (self.window_ms * 1_000_000) == window and state.window_id in (None, window)
                and max(last, prev_ts) - min(first, prev_ts) <= self.max_gap_ms * 1_000_000):
            # most batches: every row in the open window, and no gap (the rows and the last one are within one)
            state.window_id = window
            state.rows.append(events)
            state.last_ts_ns = int(ts[-1])
            return []
        wid = ts // (self.window_ms * 1_000_000)
        prev = np.concatenate(([ts[0] if state.last_ts_ns is None else state.last_ts_ns], ts))
        resets = set(np.flatnonzero(np.diff(prev) > self.max_gap_ms * 1_000_000).tolist())
        cuts = sorted(set((np.flatnonzero(np.diff(wid)) + 1).tolist()) | resets | {0})
        out: list[Alert] = []
        # the loop is per window run, not per event
        for s, e in zip(cuts, cuts[1:] + [n]):
            if s in resets:  # the open window is dropped unscored, as eviction would have done
                fresh = self.new_state()
                for f in BehaviourState.__dataclass_fields__:
                    setattr(state, f, getattr(fresh, f))
            if state.window_id is not None and state.window_id != int(wid[s]):
                out += self._close(state)
            state.window_id = int(wid[s])
            state.rows.append(events.slice(s, e - s))
        state.last_ts_ns = int(ts[-1])
        return out

    def flush(self, state: BehaviourState) -> list[Alert]:
        return self._close(state) if state.rows else []

    # -- one window ------------------------------------------------------------------------
    def _close(self, state: BehaviourState) -> list[Alert]:
        window = pa.concat_tables(state.rows).combine_chunks()
        state.rows = []
        self._models(state)
        wid = state.window_id
        start = wid * self.window_ms * 1_000_000
        end = start + self.window_ms * 1_000_000
        parts = split_window(window)
        ow = owner_features(parts, state.news, window_ms=self.window_ms, fast_cancel_ms=self.fast_cancel_ms)
        state.news = recent_news(window, end, self.fast_cancel_ms)
        state.has_book = state.has_book or parts.book.num_rows > 0
        mf, state.prev_vwap = market_features(parts, state.prev_vwap, public_only=not state.has_book)
        # an owner is judged only once the regulars (market makers) can have their own history
        warm = state.windows >= max(self.warmup_windows, self.own_min_windows)
        alerts = []
        # the instrument's own window
        mz = state.market.zscores(mf, self._market_floor(state, parts.num("book" if state.has_book else "public",
                                                                           "price")))
        m_score = float(_combine(np.array([list(mz.values())]))[0])
        if warm and state.market.n >= self.warmup_windows and m_score >= self.market_min_score:
            alerts.append(self._alert(window, start, end, None, mf, mz, m_score, self.market_min_score,
                                      state, "instrument"))
        else:
            state.market.learn_one(mf)
        # each owner: scored against the baselines as they were, then (if normal) learnt
        X = ow.values
        z, scores, basis, rows = self._owner_z(state, ow)
        learn = np.ones(len(ow.owners), bool)
        for i, owner in enumerate(ow.owners):
            threshold = self._threshold(state)
            if warm and state.population.n > 0 and scores[i] >= threshold:
                x = dict(zip(OWNER_FEATURES, X[i].tolist()))
                zi = dict(zip(OWNER_FEATURES, z[i].tolist()))
                alerts.append(self._alert(window, start, end, owner, x, zi, float(scores[i]),
                                          threshold, state, basis[i], int(ow.trades[i]), int(ow.messages[i])))
                learn[i] = False
            state.scores.update(float(scores[i]))
            state.scored += 1
        state.population.learn_many(X[learn])
        # an owner's own history learns every window, the flagged ones too (winsorised): what an owner keeps doing
        # window after window is its normal, and should stop looking new once flagged
        self._learn_own(state, ow.owners, X, np.ones(len(ow.owners), bool), rows, wid)
        state.windows += 1
        # the detector sees the log trade count clipped to 1 around its recent level: a burst of a few minutes
        # (a pump, an abnormal move: alerts of their own) is not a new regime; a lasting doubling is
        x = mf["log_trades"]
        level = x if state.level is None else state.level
        clipped = min(max(x, level - 1.0), level + 1.0)
        state.level = level + 0.1 * (clipped - level)
        state.drift.update(clipped)
        if state.drift.drift_detected:
            # a new regime: population and market baselines start afresh and warm up again
            state.population = state.market = state.scores = None
            state.windows = 0
            state.drifts += 1
        return alerts

    @staticmethod
    def _market_floor(state: BehaviourState, p: np.ndarray) -> np.ndarray:
        """The market features' spread floors, the return's raised to ``TICK_FLOOR`` ticks of the smallest price
        step seen (``p``: the market's trade prices in the window): a price moves by whole ticks, and on a coin
        whose tick is 40 bps one tick up is no surprise."""
        step = np.diff(p)
        moved = step != 0
        if moved.any():
            tick = float((np.abs(step[moved]) / p[1:][moved] * 1e4).min())
            state.tick_bps = tick if state.tick_bps is None else min(state.tick_bps, tick)
        floor = state.market.floor
        if state.tick_bps:
            floor = floor.copy()
            i = MARKET_FEATURES.index("return_bps")
            floor[i] = max(floor[i], TICK_FLOOR * state.tick_bps)
        return floor

    def _owner_z(self, state: BehaviourState, ow) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Each owner's surprises (the smallest of the three baselines'), scores, basis, own-baseline rows."""
        X = ow.values
        z = state.population.zscores_many(X) if state.population.n else np.zeros_like(X)
        label = "population"
        if len(X) >= MIN_CROSS_SECTION:
            # ... and against this window's own owners: when a pump or a news jump makes everyone trade more,
            # the bystanders are not anomalous, only the crowd is (the instrument's window says so)
            now = _RobustPopulation(OWNER_FEATURES, 1.0)
            now.learn_many(X)
            z = np.minimum(z, now.zscores_many(X))
            label = "population, the window's owners"
        basis = [label] * len(ow.owners)
        rows = np.array([state.own.get(o, -1) for o in ow.owners], np.int64)
        has_own = rows >= 0
        has_own[has_own] = state.own_n[rows[has_own]] >= self.own_min_windows
        if has_own.any():
            r = rows[has_own]
            oz = (X[has_own] - state.own_mean[r]) / np.maximum(np.sqrt(np.maximum(state.own_var[r], 0.0)), FLOORS)
            z[has_own] = np.minimum(z[has_own], oz)
            for i in np.flatnonzero(has_own).tolist():
                basis[i] = f"{label} and own history"
        return z, _combine(z), basis, rows

    def _threshold(self, state: BehaviourState) -> float:
        # the score quantile is trusted once it rests on enough scores to hold 10 above it
        if state.scored * (1 - self.threshold_quantile) < 10:
            return self.min_score
        return max(self.min_score, state.scores.get())

    def _learn_own(self, state: BehaviourState, owners: list[str], X: np.ndarray, learn: np.ndarray,
                   rows: np.ndarray, wid: int) -> None:
        """Each owner's own baseline learns its window (unless it alerted); owners long unseen are dropped."""
        a = self.own_alpha
        old = learn & (rows >= 0)
        r = rows[old]
        sd = np.maximum(np.sqrt(np.maximum(state.own_var[r], 0.0)), FLOORS)
        d = np.clip(X[old] - state.own_mean[r], -CLIP * sd, CLIP * sd)  # winsorised (CLIP)
        state.own_mean[r] += a * d
        state.own_var[r] = (1 - a) * (state.own_var[r] + a * d * d)
        state.own_n[r] += 1
        new = learn & (rows < 0)
        for i in np.flatnonzero(new).tolist():
            state.own[owners[i]] = len(state.own)
        state.own_mean = np.vstack([state.own_mean, X[new]])
        state.own_var = np.vstack([state.own_var, np.zeros_like(X[new])])
        state.own_n = np.concatenate([state.own_n, np.ones(int(new.sum()), np.int64)])
        state.own_last = np.concatenate([state.own_last, np.full(int(new.sum()), wid, np.int64)])
        seen = np.array([state.own.get(o, -1) for o in owners], np.int64)
        state.own_last[seen[seen >= 0]] = wid
        # bounded memory: an owner not seen for owner_ttl_windows loses its own baseline
        keep = wid - state.own_last <= self.owner_ttl_windows
        if not keep.all():
            names = [o for o, i in state.own.items() if keep[i]]
            idx = np.array([state.own[o] for o in names], np.int64)
            state.own = {o: j for j, o in enumerate(names)}
            state.own_mean, state.own_var = state.own_mean[idx], state.own_var[idx]
            state.own_n, state.own_last = state.own_n[idx], state.own_last[idx]

    def _alert(self, window, start, end, owner, x, z, score, threshold, state, basis,
               trades=0, messages=0) -> Alert:
        instrument = window.column("instrument")[0].as_py()
        if owner is None:
            ev = window.filter(pc.equal(window.column("kind"), Kind.TRADE.value))
            mask = None
        else:
            mask = pc.or_kleene(pc.or_kleene(pc.equal(window.column("buy_owner"), owner),
                                             pc.equal(window.column("sell_owner"), owner)),
                                pc.equal(window.column("owner"), owner))
            ev = window.filter(pc.fill_null(mask, False))
        # the owner's accounts: of its orders, and of its side of its trades
        accounts = set() if owner is None else {
            a for c, o in (("account", "owner"), ("buy_account", "buy_owner"), ("sell_account", "sell_owner"))
            for a, who in zip(ev.column(c).to_pylist(), ev.column(o).to_pylist()) if a and who == owner}
        ev = ev.slice(0, self.max_evidence)
        opening = [evidence_id(r) for r in to_rows(ev.slice(0, 3).select(ID_COLUMNS))]
        scorer = state.market if owner is None else state.population
        top = sorted(z, key=lambda f: (-z[f], f))[:TOP_FEATURES]
        top_rows = [{"feature": f, "value": round(x[f], 6), "usual": round(scorer.usual(f), 6),
                     "z": round(z[f], 3)} for f in top]
        when = lambda t: datetime.fromtimestamp(t / 1e9, timezone.utc).strftime("%H:%M:%S")  # noqa: E731
        why = ", ".join(f"{r['feature']} {r['value']:.3g} (usual {r['usual']:.3g}, z {r['z']:.1f})" for r in top_rows)
        who = f"{owner} behaviour" if owner else "market behaviour"
        activity = f"; {trades} trade legs, {messages} order messages" if owner else ""
        summary = (f"{who} anomaly in {instrument} {when(start)}-{when(end)} UTC: score {score:.1f} "
                   f"(threshold {threshold:.1f}, against {basis}); most unusual: {why}{activity}")
        venues = sorted(set(pc.drop_null(ev.column("venue")).to_pylist()))
        severity = Severity.HIGH if score >= 2 * threshold else Severity.MEDIUM
        return Alert.build(
            detector=self.name, version=self.version, key=f"{instrument}|{owner or ''}", window_start_ns=start,
            window_end_ns=end, opening_evidence=opening, evidence=ev, severity=severity,
            score=round(min(score, 1e6), 6), instrument=instrument, venues=venues,
            owners=[owner] if owner else [], accounts=sorted(accounts), summary=summary, params=self.params(),
            metrics={"score": round(score, 6), "threshold": round(threshold, 6), "basis": basis,
                     "top_features": top_rows, "features": {f: round(v, 6) for f, v in x.items()},
                     "windows_seen": state.windows, "drift_resets": state.drifts,
                     "trade_legs": trades, "order_messages": messages},
        )
