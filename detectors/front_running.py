"""Front running: an owner trades ahead of another owner's large trade, the same way, and unwinds after it.

Per instrument, a trade is *large* when its quantity is at least ``large_multiple`` x the
venue's typical traded size (median of its trades with owners in the last ``typical_window_ms``)
and its aggressor side names an owner (the "victim").  Large trades are common on a busy venue,
and busy owners trade both ways around every one of them, so a large trade is only examined once
it has proved to be the kind a front-runner bets on — one that moved the price, as news to the
market:

- its venue's price level over the ``jump_ms`` after it (median of the trades there) stands at
  least ``min_move_bps`` its way from the level before it (median of the last ``level_trades``);
- the move was the trade's doing: the other venues (the reference market, public tapes included)
  moved at least ``min_move_bps`` less than the venue over the same ``jump_ms``.

The move is *confirmed* as one for good when it held as a step: ``hold_ms`` after the large trade
the venue's move is within a factor 1 / ``min_follow_share`` of it either way (a move that fades
carried no information, one that runs on is a trend the large trade joined), and the other venues
have followed by at least ``min_follow_share`` of it (a move of one venue alone fades back to
theirs); with no other venue's trades around it the large trade is judged on its own venue alone.
Over ``hold_ms`` the market's own drift is of the size of a 5-20 bps step, and can hide a step
that did hold, so an unconfirmed move is not dismissed: it needs a stronger match (below).

``unwind_ms`` after the large trade it is decided (or at end of input).  Each other owner — not
the victim, not in its linked group — is named when, on the large trade's venue:

- it took liquidity the victim's way in the ``lead_ms`` before (aggressive trades): some of
  those trades, at most ``max_trades`` of them, make a position of at least
  ``min_position_multiple`` x the typical size;
- within ``unwind_ms`` after the large trade, at most ``max_trades`` of its trades the other way
  close exactly that position (their quantities sum to it within ``unwind_tolerance`` of it): a
  front-runner goes flat, while a busy owner's flow both ways only matches by accident — so the
  match must be unlikely by chance: the subset pairs tried, times the width of a match (the
  venue's size increment, read off its traded sizes, or the tolerance) over the position, at
  most ``max_chance_matches`` — at most ``strong_chance_matches`` when the move is unconfirmed.
  The pairs tried are the front subsets large enough to be a position times the subsets back
  (an owner whose fewest possible pairs already exceed the bound is dropped before any sums);
  front trades already in an alert are not matched again to a later large trade.  The
  position is matched trade by trade rather than netted, because a front-runner may be a busy
  trader whose unrelated trades surround the episode;
- at an average price at least ``min_profit_bps`` better than it paid, and by at most
  ``max_gain_multiple`` x the large trade's move: a gain far beyond the step came from a market
  that ran on (an abnormal move, a trend), not from trading ahead of the large trade.

One large trade is front-run by one owner: when several owners qualify around it, only the one
whose match is least likely by chance is named.

Measured with ``bench/bench_accuracy.py --only front_running`` (30-minute markets at 400 events/s
with every episode type and look-alike): seeds 0-9 (tuned on) precision 0.89, recall 0.80 (version
3.0: 0.70 and 0.70; the two false alerts it lost were gains of 5x and 36x the move during other
events), 1 alert on 3 clean markets (0.46 per million events); unseen seeds 20-29 precision 0.78,
recall 0.70 (3.0: 0.70 and 0.70).  Misses: a 5 bps step drowned by a drift the other way (the
front-runner lost money), and steps the market's drift over ``hold_ms`` hides — with
``strong_chance_matches`` 0.01 the latter are named when the match is unlikely enough (seeds 0-9:
recall 0.90), but that examines the owners of every large trade that jumped: 40 s of CPU against
2.6 s on one market, so it is off by default.

Decisions use event time and the rows up to each large trade's horizon only, so alerts do not
depend on batching.  Only matched candidates build an alert.  State per instrument: each
venue's typical size, the last ``lead_ms`` (and any undecided large trade's span)
of trades, the undecided large trades.

>>> from tests.conftest import events
>>> bg = [(float(i), "buy" if i % 2 else "sell", 100.0, 1 + (i % 3 - 1) / 100, "B", "S") for i in range(30)]
>>> ep = [(40.0, "buy", 100.0, 2.0, "FR", "S"), (45.0, "buy", 100.0, 20.0, "BIG", "S"),  # front trade, large trade
...       (46.0, "sell", 100.2, 1.0, "B", "S"), (50.0, "sell", 100.2, 1.0, "B", "S"),  # the price steps up ...
...       (60.0, "sell", 100.2, 2.0, "B", "FR")]  # ... and holds; the unwind
>>> rows = bg + ep
>>> n = len(rows)
>>> t = events(ts=[r[0] for r in rows], kind=["trade"] * n, venue=["SHARED"] * n, instrument=["BTC/USDT"] * n,
...            side=[r[1] for r in rows], price=[r[2] for r in rows], qty=[r[3] for r in rows],
...            buy_owner=[r[4] for r in rows], sell_owner=[r[5] for r in rows], buy_group=[r[4] for r in rows],
...            sell_group=[r[5] for r in rows], trade_id=[f"t{i}" for i in range(n)])
>>> d = FrontRunning()
>>> [a.summary for a in d.update(d.new_state(), d.select(t)) + d.flush(d.new_state())]
[]
>>> s = d.new_state(); _ = d.update(s, d.select(t)); [a.summary for a in d.flush(s)]  # doctest: +NORMALIZE_WHITESPACE
['FR front-ran BIG in BTC/USDT on SHARED: bought 2 (2x typical 1) in the 5.0s before BIG bought 20 (20x typical),
  which moved the price +20.0 bps for good; sold 2 (100% of it) 15.0s after it, 20.0 bps better than it paid']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from math import comb

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors._orders import MIN_TYPICAL_SAMPLES, RollingQuantile
from detectors.base import Detector
from surveil.alerts import EVIDENCE_COLUMNS, Alert, Severity, evidence_id
from surveil.schemas import Kind, Side, to_rows

MS = 1_000_000
BUY, SELL = Side.BUY.value, Side.SELL.value
KEEP = tuple(c for c in EVIDENCE_COLUMNS if c != "instrument") + ("buy_group", "sell_group")
ARRAYS = ("ts", "venue", "side", "price", "qty", "buy_owner", "sell_owner", "buy_group", "sell_group")


@dataclass
class FrontState:
    last_ns: int = 0
    instrument: str = ""
    typical: dict = field(default_factory=dict)  # venue -> RollingQuantile of traded sizes
    rows: pa.Table | None = None  # recent trades (KEEP columns), event order
    arrays: dict = field(default_factory=dict)  # the same rows' ARRAYS columns as numpy arrays (read by decisions),
    # with the aggressor's owner ("aggr") and the venue's code ("vcode")
    venue_codes: dict = field(default_factory=dict)  # venue -> its small-int code
    owner_codes: dict = field(default_factory=dict)  # owner -> its int code (bounded by the owners in reference data)
    pending: list = field(default_factory=list)  # undecided large trades: (ts, row position in `rows` order, typical)
    claimed: set = field(default_factory=set)  # seqs of front trades already in an alert
    seq: int = 0  # rows ever appended: a pending row's position is seq-based, stable under trimming
    base: int = 0  # seq of rows[0]


def _np(t: pa.Table, c: str) -> np.ndarray:
    col = t.column(c)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.asarray(pc.fill_null(col, "").to_numpy(zero_copy_only=False), dtype=object)
    return pc.fill_null(col, 0).to_numpy(zero_copy_only=False)


def _subset_sums(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of every non-empty subset of at most ``k`` of ``q``, and each subset as a bit mask.

    >>> s, m = _subset_sums(np.array([1.0, 2.0, 4.0]), 2)
    >>> sorted(zip(s.tolist(), m.tolist()))
    [(1.0, 1), (2.0, 2), (3.0, 3), (4.0, 4), (5.0, 5), (6.0, 6)]
    """
    sums, masks = [], []
    for r in range(1, min(k, len(q)) + 1):
        idx = _combos(len(q), r)
        sums.append(q[idx].sum(1))
        masks.append((np.int64(1) << idx).sum(1))
    return np.concatenate(sums), np.concatenate(masks)


@lru_cache(maxsize=256)
def _combos(n: int, r: int) -> np.ndarray:
    return np.array(list(combinations(range(n), r)), dtype=np.int64).reshape(-1, r)


def _size_step(qty: np.ndarray) -> float:
    """The venue's size increment (lot), read off its traded sizes: the smallest gap between two of them.

    >>> _size_step(np.array([0.5, 0.75, 2.0, 0.5]))
    0.25
    """
    u = np.unique(qty[qty > 0])
    d = np.diff(u)
    d = d[d > 1e-9 * u[1:]]  # float noise in sizes that are the same number of lots
    return float(d.min()) if len(d) else float(u[0]) if len(u) else 1.0


def _median(x: np.ndarray) -> float:
    """Median of a few prices (faster than ``np.median`` on a handful).

    >>> _median(np.array([3.0, 1.0, 2.0])), _median(np.array([4.0, 1.0]))
    (2.0, 2.5)
    """
    v = sorted(x.tolist())
    m = len(v) // 2
    return float(v[m]) if len(v) % 2 else (v[m - 1] + v[m]) / 2


def _members(mask: int) -> np.ndarray:
    return np.flatnonzero([(int(mask) >> j) & 1 for j in range(int(mask).bit_length())])


class FrontRunning(Detector):
    name = "front_running"
    version = "3.1"
    key_columns = ("instrument",)
    description = ("An owner builds a one-sided position just before another (unlinked) owner's large trade the "
                   "same way, the large trade moves the price for good (the other venues follow), and the owner "
                   "unwinds the position at a profit after it.")
    param_docs = {
        "large_multiple": ("x typical size", "a trade is large from this multiple of its venue's typical traded size"),
        "min_move_bps": ("bps", "the venue's price level over the jump_ms after the large trade, its way, beyond the "
                                "level before it (the large trade moved the price), and beyond the other venues' "
                                "move over the same time"),
        "jump_ms": ("ms", "how soon after the large trade its move is measured"),
        "hold_ms": ("ms", "how long after the large trade the move must hold, and the other venues have followed it"),
        "lead_ms": ("ms", "how long before the large trade the front-runner's trades count"),
        "unwind_ms": ("ms", "how long after the large trade the position must be unwound"),
        "min_position_multiple": ("x typical size", "the position built ahead (aggressive trades the large trade's "
                                                    "way, net of trades the other way)"),
        "max_trades": ("trades", "the position is built, and unwound, in at most this many trades each way"),
        "max_chance_matches": ("matches", "the expected number of chance matches among the trade subsets tried "
                                          "(sums spread over the position's size in steps of the venue's size "
                                          "increment, the smallest gap between its traded sizes) must be at most this"),
        "unwind_tolerance": ("share of position", "the trades back sum to the position to within this share"),
        "min_profit_bps": ("bps", "the unwinding trades' average price beats the position's by this much"),
        "max_gain_multiple": ("x the move", "the gain is at most this multiple of the large trade's move (a gain far "
                                            "beyond the step came from a market that ran on, not from the large "
                                            "trade)"),
        "strong_chance_matches": ("matches", "a match this unlikely by chance (at most this many expected) is named "
                                             "without the hold and follow confirmation of the move, which the "
                                             "market's own drift over hold_ms can hide (0, the default: never; "
                                             "0.01 finds one more episode in ten seeds but searches the owners "
                                             "of every large trade that jumped, ~15x the detector's time)"),
        "typical_window_ms": ("ms", "how far back the venue's typical traded size is measured"),
        "level_trades": ("trades", "the price level before the large trade is the median of this many trades"),
        "min_follow_share": ("share of the move", "hold_ms after the large trade its venue's move must be within a "
                                                  "factor 1 / this of the move it made (a step, not a fade or a "
                                                  "trend), and the other venues must have followed by at least this "
                                                  "share of it (judged on its venue alone when no other venue traded)"),
    }

    def __init__(self, large_multiple: float = 10.0, min_move_bps: float = 5.0, hold_ms: int = 30_000,
                 lead_ms: int = 30_000, unwind_ms: int = 120_000, min_position_multiple: float = 1.0,
                 max_trades: int = 3, unwind_tolerance: float = 0.0, max_chance_matches: float = 0.1,
                 min_profit_bps: float = 2.0, typical_window_ms: int = 300_000, level_trades: int = 5,
                 min_follow_share: float = 0.3, jump_ms: int = 3_000, max_gain_multiple: float = 4.0,
                 strong_chance_matches: float = 0.0):
        if large_multiple <= 1 or min(lead_ms, unwind_ms, hold_ms, typical_window_ms, jump_ms) <= 0:
            raise ValueError("large_multiple must be > 1; lead_ms, unwind_ms, hold_ms, typical_window_ms, jump_ms > 0")
        if not jump_ms <= hold_ms <= unwind_ms:
            raise ValueError("need jump_ms <= hold_ms <= unwind_ms (the decision is unwind_ms after the large trade)")
        if not 0 <= min_follow_share <= 1:
            raise ValueError("min_follow_share must be in [0, 1]")
        if min_position_multiple <= 0 or not 1 <= max_trades <= 5 or not 0 <= unwind_tolerance < 1:
            raise ValueError("min_position_multiple must be > 0, max_trades in [1, 5], unwind_tolerance in [0, 1)")
        if min_move_bps < 0 or level_trades < 1 or max_chance_matches <= 0:
            raise ValueError("min_move_bps must be >= 0, level_trades >= 1, max_chance_matches > 0")
        if max_gain_multiple <= 0 or strong_chance_matches < 0:
            raise ValueError("max_gain_multiple must be > 0, strong_chance_matches >= 0")
        self.large_multiple = float(large_multiple)
        self.min_move_bps = float(min_move_bps)
        self.hold_ms = int(hold_ms)
        self.lead_ms = int(lead_ms)
        self.unwind_ms = int(unwind_ms)
        self.min_position_multiple = float(min_position_multiple)
        self.max_trades = int(max_trades)
        self.unwind_tolerance = float(unwind_tolerance)
        self.max_chance_matches = float(max_chance_matches)
        self.min_profit_bps = float(min_profit_bps)
        self.typical_window_ms = int(typical_window_ms)
        self.level_trades = int(level_trades)
        self.min_follow_share = float(min_follow_share)
        self.jump_ms = int(jump_ms)
        self.max_gain_multiple = float(max_gain_multiple)
        self.strong_chance_matches = float(strong_chance_matches)

    # -- contract ---------------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        """Priced trades on every venue: those with owners can be large trades or front-runners' trades,
        the others (public tapes) show whether the other venues followed a large trade's move."""
        return events.filter(pc.fill_null(pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                                                  pc.greater(events.column("price"), 0)), False))

    def new_state(self) -> FrontState:
        return FrontState()

    def is_idle(self, state: FrontState, now_ns: int) -> bool:
        return not state.pending and now_ns - state.last_ns > max(self.typical_window_ms,
                                                                 self.lead_ms) * MS

    def update(self, state: FrontState, events: pa.Table) -> list[Alert]:
        if not events.num_rows:
            return []
        instrument = state.instrument = events.column("instrument")[0].as_py()
        part = events.select(list(KEEP))
        new = {c: _np(part, c) for c in ARRAYS}
        ts, venue, qty = new["ts"], new["venue"], new["qty"]
        side, bo, so = new["side"], new["buy_owner"], new["sell_owner"]
        victim = new["aggr"] = np.where(side == BUY, bo, np.where(side == SELL, so, ""))
        names, inv = np.unique(venue, return_inverse=True)  # venues as small ints: cheap to compare
        new["vcode"] = np.array([state.venue_codes.setdefault(v, len(state.venue_codes)) for v in names.tolist()],
                                dtype=np.int32)[inv.reshape(-1)]
        # the typical size is a rolling median over the trades with owners, row by row (cheap);
        # everything else is vectorised
        for i in np.flatnonzero((bo != "") | (so != "")).tolist():
            t, v, q = int(ts[i]), venue[i], float(qty[i])
            typ = state.typical.get(v)
            if typ is None:
                typ = state.typical[v] = RollingQuantile(self.typical_window_ms * MS)
            typical = typ.quantile(t, min_samples=MIN_TYPICAL_SAMPLES)
            if victim[i] and typical and q >= self.large_multiple * typical:
                state.pending.append((t, state.seq + i, typical))
            if q > 0:
                typ.add(t, q)
        codes = state.owner_codes
        for c, col in (("bo_c", bo), ("so_c", so)):  # owners as ints: grouping a span by owner is then vectorised
            new[c] = np.array([codes.setdefault(o, len(codes)) if o else -1 for o in col.tolist()], dtype=np.int64)
        state.seq += len(ts)
        state.rows = part if state.rows is None else pa.concat_tables([state.rows, part])
        state.arrays = new if not state.arrays else {c: np.concatenate([state.arrays[c], new[c]]) for c in new}
        state.last_ns = int(ts[-1])
        out = self._decide(state, instrument, int(ts[-1]), final=False)
        self._trim(state)
        return out

    def flush(self, state: FrontState) -> list[Alert]:
        if state.rows is None or not state.pending:
            return []
        return self._decide(state, state.instrument, state.last_ns, final=True)

    # -- steps ------------------------------------------------------------------------------
    def _trim(self, state: FrontState) -> None:
        keep_from = state.last_ns - (self.lead_ms) * MS
        if state.pending:
            keep_from = min(keep_from, state.pending[0][0] - (self.lead_ms) * MS)
        ts = state.arrays["ts"]
        k = int(np.searchsorted(ts, keep_from, side="left"))
        if k:
            state.rows = state.rows.slice(k)  # chunks and all: copying the rows each batch costs more
            state.arrays = {c: a[k:] for c, a in state.arrays.items()}
            state.base += k
            state.claimed = {q for q in state.claimed if q >= state.base}

    def _decide(self, state: FrontState, instrument: str, now: int, final: bool) -> list[Alert]:
        horizon = self.unwind_ms * MS
        due = [p for p in state.pending if final or p[0] + horizon < now]
        if not due:
            return []
        state.pending = [p for p in state.pending if not (final or p[0] + horizon < now)]
        rows = state.rows
        a = state.arrays
        out = []
        for t, seq, typical in due:
            i = seq - state.base
            # one large trade is front-run by one owner: of several exact unwinds around it, the least
            # likely by chance is named (the others are what busy owners' flow matches by chance)
            for f in sorted(self._examine(a, i, typical), key=lambda f: (f[7], f[0]))[:1]:
                claimed = {state.base + int(j) for j in f[1]}
                if claimed & state.claimed:  # these front trades already explain an earlier large trade
                    continue
                state.claimed |= claimed
                out.append(self._alert(rows, a, i, typical, instrument, *f))
        return out

    def _examine(self, a: dict, i: int, typical: float) -> list[tuple]:
        ts, t = a["ts"], int(a["ts"][i])
        same = a["vcode"] == a["vcode"][i]
        side = a["side"][i]
        sign = 1.0 if side == BUY else -1.0
        # 1. the large trade moved its venue: the level over the jump_ms after it against the level before
        lo_i = int(np.searchsorted(ts, t - self.lead_ms * MS, side="left"))
        hi_i = int(np.searchsorted(ts, t + self.unwind_ms * MS, side="right"))
        j_i = int(np.searchsorted(ts, t + self.jump_ms * MS, side="right"))
        h_i = int(np.searchsorted(ts, t + self.hold_ms * MS, side="right"))
        px = a["price"]
        before = np.flatnonzero(same[:i])[-self.level_trades:]
        jumped = i + 1 + np.flatnonzero(same[i + 1:j_i])
        held = np.flatnonzero(same[:h_i])[-self.level_trades:]
        if not len(before) or not len(jumped) or held[-1] <= i:
            return []
        level = _median(px[before])
        move = (_median(px[jumped]) / level - 1) * 1e4 * sign
        if move < self.min_move_bps:
            return []
        # ... and for good, as a step: its level hold_ms later is within a factor 1 / min_follow_share of
        # the move either way (a move that fades was no lasting information, one that runs on is a trend)
        held_move = (_median(px[held]) / level - 1) * 1e4 * sign
        confirmed = self.min_follow_share * move <= held_move <= move / max(self.min_follow_share, 1e-9)
        # ... and it was that trade's doing, news to the other venues: they had not moved with the venue
        # over the jump (a move every venue makes at once is the market's), and hold_ms later they had
        # followed (a move of the venue alone fades back to theirs)
        ref_before = np.flatnonzero(~same[:i])[-self.level_trades:]
        ref_jump = i + 1 + np.flatnonzero(~same[i + 1:j_i])
        ref_held = np.flatnonzero(~same[:h_i])[-self.level_trades:]
        follow = None
        if len(ref_before) and len(ref_held) and ref_held[-1] > i:
            ref_level = _median(px[ref_before])
            if len(ref_jump) and move - (_median(px[ref_jump]) / ref_level - 1) * 1e4 * sign < self.min_move_bps:
                return []
            follow = (_median(px[ref_held]) / ref_level - 1) * 1e4 * sign
            confirmed = confirmed and follow >= self.min_follow_share * held_move
        # unconfirmed, only a match that is very unlikely by chance is named
        max_chance = self.max_chance_matches if confirmed else min(self.strong_chance_matches, self.max_chance_matches)
        if max_chance <= 0:
            return []
        # 2. the owners that took liquidity the victim's way in the lead
        victim = a["aggr"][i]
        vgroup = a["buy_group"][i] if side == BUY else a["sell_group"][i]
        mine, theirs = ("buy_owner", "sell_owner") if side == BUY else ("sell_owner", "buy_owner")
        mine_g = "buy_group" if side == BUY else "sell_group"
        lead = np.arange(lo_i, i)
        took = lead[same[lead] & (a["side"][lead] == side)]
        aft = np.arange(i + 1, hi_i)
        aft = aft[same[aft]]
        found = []
        # only owners that traded both ways can have built and closed a position; each owner's trades are
        # grouped in one pass over the span (a scan of the span per owner costs far more)
        mine_c, theirs_c = ("bo_c", "so_c") if side == BUY else ("so_c", "bo_c")
        took_c, aft_c = a[mine_c][took], a[theirs_c][aft]
        both = np.intersect1d(took_c, aft_c)
        both = both[both >= 0]
        if not len(both):
            return []
        # the venue's size increment, over the large trade's span (batch-proof)
        step = _size_step(a["qty"][lo_i:hi_i][same[lo_i:hi_i]])
        qty = a["qty"]
        for oc in both.tolist():
            fr_all = took[took_c == oc][-8:]  # bounds the search; the nearest trades count
            o = a[mine][fr_all[0]]
            if o == victim or (vgroup and a[mine_g][fr_all[0]] == vgroup):
                continue
            back_all = aft[aft_c == oc][:24]
            # the fewest pairs it could try (one position, every subset back) over the largest position
            # bound the chance from below: a busy owner's flow is dropped before any subsets are summed
            n_back = sum(comb(len(back_all), r) for r in range(1, self.max_trades + 1))
            if n_back * step / np.sort(qty[fr_all])[-self.max_trades:].sum() > max_chance:
                continue
            # 3. a position of at most max_trades of them, closed by at most max_trades trades back
            fs, fi = _subset_sums(qty[fr_all], self.max_trades)
            us, ui = _subset_sums(qty[back_all], self.max_trades)
            ok = fs >= self.min_position_multiple * typical
            fs, fi = fs[ok], fi[ok]
            if not len(fs) or not len(us):
                continue
            pairs = len(fs) * len(us)  # the pairs tried: front subsets that make a position, times subsets back
            order = np.argsort(us)
            us, ui = us[order], ui[order]
            k = np.clip(np.searchsorted(us, fs), 1, len(us) - 1) if len(us) > 1 else np.zeros(len(fs), int)
            near = np.where(np.abs(us[k] - fs) <= np.abs(us[k - 1] - fs), k, k - 1) if len(us) > 1 else k
            gap = np.abs(us[near] - fs) / fs
            match = np.flatnonzero(gap <= self.unwind_tolerance + 1e-9)  # float sums of exact lots
            if not len(match):
                continue
            m = match[np.argmax(fs[match])]  # the largest matched position
            # How many of the subset pairs tried would match this closely by chance, were their sums
            # spread over the position's size in steps of the venue's size increment: a busy
            # owner's many trades both ways offer many pairs, so its match proves less.
            chance = pairs * max(2 * self.unwind_tolerance * fs[m], step) / fs[m]
            if chance > max_chance:
                continue
            fr = fr_all[_members(fi[m])]
            closing = back_all[_members(ui[near[m]])]
            position, unwound = float(fs[m]), float(us[near[m]])
            got = float((px[closing] * a["qty"][closing]).sum() / unwound)
            paid = float((px[fr] * a["qty"][fr]).sum() / position)
            profit = (got / paid - 1) * 1e4 * sign
            if not self.min_profit_bps <= profit <= self.max_gain_multiple * move:
                continue
            found.append((o, fr, closing, position, unwound, move, profit, chance, follow, confirmed))
        return found

    def _alert(self, rows: pa.Table, a: dict, i: int, typical: float, instrument: str, owner: str, fr: np.ndarray,
               closing: np.ndarray, position: float, unwound: float, move: float, profit: float,
               chance: float, follow: float | None, confirmed: bool) -> Alert:
        fr, closing = np.sort(fr), np.sort(closing)
        side, venue, large_qty = a["side"][i], a["venue"][i], float(a["qty"][i])
        victim = a["aggr"][i]
        idx = np.concatenate([fr, [i], closing])
        ev = rows.take(pa.array(idx))
        ev = ev.append_column("instrument", pa.array([instrument] * len(idx), pa.string()))
        ev_rows = to_rows(ev)
        opening = sorted(evidence_id(r) for r in ev_rows[: len(fr) + 1])
        acct, back = ("buy_account", "sell_account") if side == BUY else ("sell_account", "buy_account")
        mine = "buy_owner" if side == BUY else "sell_owner"
        accounts = sorted({r[acct] for r in ev_rows[: len(fr)] if r[acct]}
                          | {r[back] for r in ev_rows[len(fr) + 1:] if r[back] and r[mine] != owner})
        built = float(a["qty"][fr].sum())
        t_large = int(a["ts"][i])
        lead_s = (t_large - int(a["ts"][fr[0]])) / 1e9
        after_s = (int(a["ts"][closing[-1]]) - t_large) / 1e9
        verb, back_verb = ("bought", "sold") if side == BUY else ("sold", "bought")
        summary = (f"{owner} front-ran {victim} in {instrument} on {venue}: {verb} {built:.10g} "
                   f"({built / typical:.0f}x typical {typical:.10g}) in the {lead_s:.1f}s before {victim} "
                   f"{verb} {large_qty:.10g} ({large_qty / typical:.0f}x typical), which moved the price "
                   f"{'+' if side == BUY else '-'}{move:.1f} bps {'for good' if confirmed else '(not confirmed as lasting)'}; {back_verb} {unwound:.10g} "
                   f"({unwound / position:.0%} of it) {after_s:.1f}s after it, {profit:.1f} bps better than it paid")
        severity = Severity.HIGH if profit >= 10 else Severity.MEDIUM if profit >= 5 else Severity.LOW
        return Alert.build(
            detector=self.name, version=self.version, key=f"{owner}|{instrument}",
            window_start_ns=int(a["ts"][fr[0]]), window_end_ns=int(a["ts"][closing[-1]]), opening_evidence=opening,
            evidence=ev, severity=severity, score=round(profit, 6), instrument=instrument, venues=[venue],
            owners=[owner], accounts=accounts, summary=summary, params=self.params(),
            metrics={"victim": victim, "side": side, "position_qty": position, "front_qty": built,
                     "large_qty": large_qty, "typical_qty": typical, "unwound_qty": unwound,
                     "move_bps": round(float(move), 6), "lead_s": round(lead_s, 3), "unwind_s": round(after_s, 3),
                     "profit_bps": round(profit, 6), "chance_matches": round(float(chance), 6),
                     "other_venues_bps": None if follow is None else round(float(follow), 6),
                     "move_confirmed": bool(confirmed)},
        )
