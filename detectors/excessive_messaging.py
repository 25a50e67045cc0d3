"""Excessive messaging (quote stuffing): an owner's order-message rate far above its own baseline and the venue's norm.

Order events of a venue are cut into fixed event-time windows of ``window_ms``.  In each
window the detector counts, per beneficial owner (all its accounts, both platforms), its
order *messages* (new, amend, cancel) and its *fills*.  A window closes when an order event of
a later window arrives (or at flush).  The owner's window is excessive when all of these hold:

- its message rate is at least ``min_messages_per_s`` (an absolute floor, 3/s by default: 15
  messages in a window, more than a trader at a keyboard keeps up; a burst of a few messages
  from a quiet owner is no flood, whatever the multiple - a layering ladder of eight orders and
  a few of its cancels, or a flickering quote at 2-3/s, is another pattern's business);
- the rate is ``owner_multiple`` x the owner's own baseline: an exponentially weighted mean
  of its messages per window over the venue's history (time constant ``baseline_ms``, windows
  without messages counting as zero, bias-corrected for the time the venue has been watched
  (at least ``min_history_ms``), so an owner first seen in a burst has a baseline of zero);
- the rate is ``venue_multiple`` x the venue's norm: the median baseline of the owners seen on
  the venue, so an active owner's ordinary day is not a flood;
- its order-to-trade ratio (messages per fill, fills counted as one at least) is at least
  ``min_order_trade_ratio``: a flood of orders that trade is activity, not stuffing;
- the venue has been watched for ``min_history_ms`` (before that no baseline means anything):
  a window excessive in the warm-up is kept (its counts and first messages) and judged again,
  against the baselines and norm the warm-up built, when the first warm window closes - a
  flood in a venue's first minute alerts then, with its own start and end.

An excessive window (in the warm-up too) is not folded into the owner's baseline, so a long
flood cannot raise its own bar.  The price: an owner that floods from the very first window
(rate, multiple and ratio all excessive, no fills to speak of) keeps a zero baseline and alerts
once warm - which is what such an owner looks like on every measure here.

A market maker who quotes fast, cancels nearly every quote and trades rarely passes the floor
and the ratio, but quotes at its *own* usual pace: its baseline holds it back.  Consecutive
excessive windows of one owner make one episode and one alert (revised with the same id as
the episode grows) naming the instrument most of its messages were on, with the owner's
first messages of each excessive window as evidence.

Measured with ``bench/bench_accuracy.py --only layering,excessive_messaging`` (30-minute
markets at 400 events/s, every episode type and look-alike): with a 2/s floor and nothing
judged in the warm-up, seeds 0-9 precision 0.818, recall 0.9 (a flood 14 s into a market
missed; a layering ladder's 11 messages and a 2.6/s flickering quote alerted); now seeds 0-9
and 20-29 precision 1.0, recall 1.0, clean markets 0 alerts.

>>> from tests.conftest import events
>>> quiet = [(float(t), "Q") for t in range(0, 300, 5)]  # Q sends one message every 5 s ...
>>> flood = [(300 + k * 0.05, "Q") for k in range(200)]  # ... then 20 a second for 10 s
>>> ts, own = zip(*(quiet + flood))
>>> n = len(ts)
>>> t = events(ts=list(ts), kind=["order"] * n, venue=["SHARED"] * n, instrument=["BTC/USDT"] * n,
...     owner=list(own), account=["HK-Q"] * n, platform=["HKVATP"] * n, order_id=[f"o{i // 2}" for i in range(n)],
...     action=["new", "cancel"] * (n // 2), side=["buy"] * n, price=[100.0] * n, qty=[1.0] * n)
>>> d, s = ExcessiveMessaging(), ExcessiveMessaging().new_state()
>>> alerts = d.update(s, d.select(t)) + d.flush(s)  # the second window closes at the end of input
>>> len({a.alert_id for a in alerts}), alerts[-1].summary  # doctest: +NORMALIZE_WHITESPACE
(1,
'Q sent 200 order messages on SHARED in 10s (20.0/s, 100x its baseline 0.20/s, 100x the venue norm
  0.20/s) with 0 fills (order-to-trade ratio 200), mostly BTC/USDT')
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Action, Kind, to_rows

MS = 1_000_000
_MESSAGES = pa.array([Action.NEW.value, Action.AMEND.value, Action.CANCEL.value])
_COUNTED = pa.array([Action.NEW.value, Action.AMEND.value, Action.CANCEL.value, Action.FILL.value])
EVIDENCE_PER_WINDOW = 10  # first messages of each excessive window kept as evidence
MAX_EVIDENCE = 60
MIN_BASELINE = 1e-9  # an owner whose baseline decayed below this (messages per window) is forgotten
KEEP = list(EVIDENCE_COLUMNS)


@dataclass
class _Episode:
    start_w: int  # first excessive window
    last_w: int
    opening: list[str]
    messages: int = 0
    fills: int = 0
    by_instrument: dict = field(default_factory=dict)  # instrument -> messages
    peak_owner_x: float = 0.0
    peak_venue_x: float = 0.0
    baseline_per_s: float = 0.0  # at the first excessive window
    norm_per_s: float = 0.0
    # the first MAX_EVIDENCE messages of its windows' samples, in the evidence schema: every revision of
    # the alert reuses it as it is
    evidence: pa.Table = field(default_factory=EVIDENCE_SCHEMA.empty_table)
    accounts: set = field(default_factory=set)  # of those messages


@dataclass
class MessagingState:
    first_w: int | None = None  # first window the venue was watched
    window: int | None = None  # the open window
    counts: dict = field(default_factory=dict)  # (owner, instrument) -> [messages, fills] in the open window
    rows: list = field(default_factory=list)  # the open window's rows (tables), for evidence
    baselines: dict = field(default_factory=dict)  # owner -> [ewma of messages per window, window it is as of]
    episodes: dict = field(default_factory=dict)  # owner -> _Episode (open)
    # owner -> warm-up windows excessive when they closed, judged again once the venue is warm:
    # [(window, messages, fills, {instrument: messages}, evidence rows (table))], emptied then
    pending: dict = field(default_factory=dict)
    last_ns: int = 0


def _pair_counts(events: pa.Table, cuts: np.ndarray) -> list[list[tuple[tuple[str, str], int, int]]]:
    """Per run of rows ``cuts[k]:cuts[k + 1]`` (one window each): ((owner, instrument), messages, fills)
    of every pair in it.  One numpy grouping for the whole batch: a pyarrow group-by per window
    costs a millisecond or two of fixed overhead, and small batches hold a window or two each.

    >>> t = pa.table({"owner": ["A", "B", "A", "A"], "instrument": ["X", None, "X", "X"],
    ...               "action": ["new", "cancel", "fill", "new"]})
    >>> _pair_counts(t, np.array([0, 3, 4]))
    [[(('A', 'X'), 1, 1), (('B', ''), 1, 0)], [(('A', 'X'), 1, 0)]]
    """
    fill = pc.equal(events.column("action"), Action.FILL.value).combine_chunks().to_numpy(zero_copy_only=False)
    owner = pc.dictionary_encode(events.column("owner")).combine_chunks()
    inst = pc.dictionary_encode(pc.fill_null(events.column("instrument"), "")).combine_chunks()
    owners, insts = owner.dictionary.to_pylist(), inst.dictionary.to_pylist()
    run = np.repeat(np.arange(len(cuts) - 1), np.diff(cuts))
    key = (run * len(owners) + owner.indices.to_numpy()) * len(insts) + inst.indices.to_numpy()
    keys, group = np.unique(key, return_inverse=True)
    fills = np.bincount(group[fill], minlength=len(keys))
    messages = np.bincount(group, minlength=len(keys)) - fills
    pair, run = keys % (len(owners) * len(insts)), keys // (len(owners) * len(insts))
    rows = [((owners[p // len(insts)], insts[p % len(insts)]), m, f)
            for p, m, f in zip(pair.tolist(), messages.tolist(), fills.tolist())]
    bounds = np.searchsorted(run, np.arange(len(cuts))).tolist()
    return [rows[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


class ExcessiveMessaging(Detector):
    name = "excessive_messaging"
    version = "1.1"
    key_columns = ("venue",)
    description = ("An owner's order-message rate (new, amend, cancel) far above its own baseline and the venue's "
                   "norm, with a high order-to-trade ratio: quote stuffing.")
    param_docs = {
        "window_ms": ("ms", "message rates are counted over fixed event-time windows of this length"),
        "baseline_ms": ("ms", "time constant of the owner's exponentially weighted baseline message rate"),
        "owner_multiple": ("x owner baseline", "the window's rate is at least this multiple of the owner's own "
                                               "baseline rate"),
        "venue_multiple": ("x venue norm", "... and of the venue's norm (median baseline of the owners seen on it)"),
        "min_messages_per_s": ("messages/s", "... and at least this many messages per second"),
        "min_order_trade_ratio": ("messages per fill", "... with at least this many messages per fill (one fill "
                                                       "at least)"),
        "min_history_ms": ("ms", "nothing alerts until the venue has been watched this long (baselines need a past)"),
    }

    def __init__(self, window_ms: int = 5_000, baseline_ms: int = 1_800_000, owner_multiple: float = 10.0,
                 venue_multiple: float = 10.0, min_messages_per_s: float = 3.0, min_order_trade_ratio: float = 10.0,
                 min_history_ms: int = 60_000):
        if window_ms <= 0 or baseline_ms < window_ms:
            raise ValueError("window_ms must be > 0 and baseline_ms >= window_ms")
        if min_history_ms < 0:
            raise ValueError("min_history_ms must be >= 0")
        if owner_multiple <= 1 or venue_multiple < 0 or min_messages_per_s <= 0 or min_order_trade_ratio < 0:
            raise ValueError("owner_multiple must be > 1, min_messages_per_s > 0, venue_multiple and "
                             "min_order_trade_ratio >= 0")
        self.window_ms = int(window_ms)
        self.baseline_ms = int(baseline_ms)
        self.owner_multiple = float(owner_multiple)
        self.venue_multiple = float(venue_multiple)
        self.min_messages_per_s = float(min_messages_per_s)
        self.min_order_trade_ratio = float(min_order_trade_ratio)
        self.min_history_ms = int(min_history_ms)
        self._alpha = self.window_ms / self.baseline_ms  # EWMA weight of one window

    # -- contract ---------------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        """Owners' order events that are messages (new, amend, cancel) or fills."""
        keep = pc.and_(pc.equal(events.column("kind"), Kind.ORDER.value), pc.is_valid(events.column("owner")))
        keep = pc.and_(keep, pc.is_in(events.column("action"), _COUNTED))
        return keep_rows(events, pc.fill_null(keep, False))

    def new_state(self) -> MessagingState:
        return MessagingState()

    def is_idle(self, state: MessagingState, now_ns: int) -> bool:
        # After ~40 time constants every baseline has decayed to nothing: a fresh state reads alike.
        return not state.episodes and not state.counts and now_ns - state.last_ns > 40 * self.baseline_ms * MS

    def update(self, state: MessagingState, events: pa.Table) -> list[Alert]:
        n = events.num_rows
        if n == 0:
            return []
        venue = events.column("venue")[0].as_py()
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        w = ts // (self.window_ms * MS)
        cuts = np.concatenate(([0], np.flatnonzero(np.diff(w)) + 1, [n]))
        kept = events.select(KEEP)
        out: dict[str, Alert] = {}
        for s, e, pairs in zip(cuts[:-1], cuts[1:], _pair_counts(events, cuts)):
            win = int(w[s])
            if state.window is not None and win != state.window:
                for a in self._close(state, venue, win):
                    out[a.alert_id] = a
            if state.first_w is None:
                state.first_w = win
            state.window = win
            for pair, m, f in pairs:
                c = state.counts.setdefault(pair, [0, 0])
                c[0] += m
                c[1] += f
            state.rows.append(kept.slice(int(s), int(e - s)))
        state.last_ns = int(ts[-1])
        return list(out.values())

    def flush(self, state: MessagingState) -> list[Alert]:
        if state.window is None or not state.rows:
            return []
        venue = state.rows[0].column("venue")[0].as_py()
        return self._close(state, venue, state.window + 1)

    # -- windows ------------------------------------------------------------------------------
    def _baselines(self, state: MessagingState, win: int) -> dict[str, float]:
        """Every owner's baseline, messages per window, as of the window before ``win`` (bias-corrected).

        Vectorised over the owners (every window reads all of them for the venue norm), with the
        same float operations, in the same order, as one owner's ``level * keep ** age / corr``:
        the powers come from Python's ``**`` (per distinct age), not numpy's, so every bit agrees."""
        # Bias-corrected for the windows observed before this one, but never for fewer than the
        # warm-up: a mean over two or three windows would let the first messages of a flood
        # (before it is excessive) lift the bar it is then measured against.
        watched = max(win - state.first_w, -(-self.min_history_ms // self.window_ms))
        if watched <= 0 or not state.baselines:
            return dict.fromkeys(state.baselines, 0.0)
        keep_a = 1 - self._alpha
        n = len(state.baselines)
        level = np.fromiter((b[0] for b in state.baselines.values()), np.float64, n)
        age = win - 1 - np.fromiter((b[1] for b in state.baselines.values()), np.int64, n)
        ages, which = np.unique(age, return_inverse=True)
        decay = np.array([keep_a ** a for a in ages.tolist()])[which]
        return dict(zip(state.baselines, (level * decay / (1 - keep_a ** watched)).tolist()))

    def _close(self, state: MessagingState, venue: str, next_w: int) -> list[Alert]:
        win = state.window
        per_owner: dict[str, list] = {}
        for (o, i), (m, f) in sorted(state.counts.items()):
            p = per_owner.setdefault(o, [0, 0, {}])
            p[0] += m
            p[1] += f
            if m:
                p[2][i] = p[2].get(i, 0) + m
        secs = self.window_ms / 1000
        base = self._baselines(state, win)
        norm = float(np.median(list(base.values()))) / secs if base else 0.0
        alerts = []
        warm = (win - state.first_w) * self.window_ms >= self.min_history_ms
        if warm and state.pending:
            alerts += self._judge_pending(state, venue, base, norm)
        excessive = {}  # owner -> its baseline per second, in per_owner's order
        for o, (m, f, _) in per_owner.items():
            rate = m / secs
            own = base.get(o, 0.0) / secs
            if (rate >= self.min_messages_per_s and rate >= self.owner_multiple * own
                    and rate >= self.venue_multiple * norm and m / max(f, 1) >= self.min_order_trade_ratio):
                excessive[o] = own  # judged in the warm-up too: a flood then must not become the baseline
        samples = self._samples(state, excessive)
        for o, (m, f, by_inst) in per_owner.items():
            if o in excessive:
                if warm:
                    alerts.append(self._extend(state, o, venue, win, m, f, by_inst, excessive[o], norm, samples[o]))
                else:  # no baseline means anything yet: judged again once the venue is warm
                    state.pending.setdefault(o, []).append((win, m, f, by_inst, samples[o]))
            else:
                state.episodes.pop(o, None)
        for o in [o for o, ep in state.episodes.items() if ep.last_w != win]:
            del state.episodes[o]  # an owner silent in this window ends its episode
        # Fold the window into the baselines (after judging it: a window is measured against its
        # past).  An excessive window leaves the owner's baseline where it was, so a flood cannot
        # raise its own bar within minutes; a lasting change of pace reads as one long episode.
        keep_a = 1 - self._alpha
        for o, (m, _, _) in per_owner.items():
            b = state.baselines.setdefault(o, [0.0, win - 1])
            decayed = b[0] * keep_a ** (win - 1 - b[1])
            b[0] = decayed if o in excessive else decayed * keep_a + self._alpha * m
            b[1] = win
        if next_w % 64 == 0:  # now and then, forget owners whose baseline has decayed to nothing
            for o in [o for o, b in state.baselines.items() if b[0] * keep_a ** (next_w - b[1]) < MIN_BASELINE]:
                del state.baselines[o]
        state.counts, state.rows = {}, []
        return list({a.alert_id: a for a in alerts}.values())  # the latest revision of each

    @staticmethod
    def _samples(state: MessagingState, owners) -> dict[str, pa.Table]:
        """Each of ``owners``' first EVIDENCE_PER_WINDOW messages of the open window: one take for all
        of them (a filter of the window's rows per owner costs a pass over them each).

        >>> t = pa.table({"owner": ["A", "B", "A", "C", "B", "A"], "x": [0, 1, 2, 3, 4, 5]})
        >>> got = ExcessiveMessaging._samples(MessagingState(rows=[t.slice(0, 2), t.slice(2)]), {"A": 0.0, "B": 0.0})
        >>> {o: got[o].column("x").to_pylist() for o in sorted(got)}
        {'A': [0, 2, 5], 'B': [1, 4]}
        """
        if not owners:
            return {}
        rows = pa.concat_tables(state.rows)
        enc = pc.dictionary_encode(rows.column("owner")).combine_chunks()
        names = enc.dictionary.to_pylist()
        codes = enc.indices.to_numpy()
        hit = np.flatnonzero(np.isin(codes, [k for k, o in enumerate(names) if o in owners]))
        order = hit[np.argsort(codes[hit], kind="stable")]  # grouped by owner, in event order within each
        grouped = codes[order]
        first = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        picked = order[rank < EVIDENCE_PER_WINDOW]
        taken, grouped = rows.take(picked), codes[picked]
        bounds = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1], True]).tolist()
        return {names[grouped[lo]]: taken.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])}

    def _judge_pending(self, state: MessagingState, venue: str, base: dict, norm: float) -> list[Alert]:
        """The warm-up's excessive windows, judged again against the baselines and norm the
        warm-up built (a flood in the first minute of a venue is still a flood).  In the warm-up
        they were measured against baselines of a few windows, which let too many through."""
        secs = self.window_ms / 1000
        alerts = []
        for o in sorted(state.pending):
            own = base.get(o, 0.0) / secs
            for win, m, f, by_inst, sample in state.pending[o]:
                rate = m / secs
                if rate >= self.owner_multiple * own and rate >= self.venue_multiple * norm:
                    alerts.append(self._extend(state, o, venue, win, m, f, by_inst, own, norm, sample))
        state.pending = {}
        return alerts

    def _extend(self, state, owner, venue, win, m, f, by_inst, own, norm, sample: pa.Table) -> Alert:
        ep = state.episodes.get(owner)
        if ep is None or ep.last_w != win - 1:  # consecutive excessive windows make one episode
            opening = sorted(evidence_id(r) for r in to_rows(sample.slice(0, 3)))
            ep = state.episodes[owner] = _Episode(win, win, opening, baseline_per_s=own, norm_per_s=norm)
        ep.last_w = win
        ep.messages += m
        ep.fills += f
        for i, k in by_inst.items():
            ep.by_instrument[i] = ep.by_instrument.get(i, 0) + k
        rate = m / (self.window_ms / 1000)
        ep.peak_owner_x = max(ep.peak_owner_x, rate / own if own else float("inf"))
        ep.peak_venue_x = max(ep.peak_venue_x, rate / norm if norm else float("inf"))
        if ep.evidence.num_rows < MAX_EVIDENCE:
            more = sample.slice(0, MAX_EVIDENCE - ep.evidence.num_rows).cast(EVIDENCE_SCHEMA)
            ep.evidence = pa.concat_tables([ep.evidence, more]).combine_chunks()
            ep.accounts.update(a for a in more.column("account").to_pylist() if a)
        return self._alert(ep, owner, venue)

    def _alert(self, ep: _Episode, owner: str, venue: str) -> Alert:
        w_ns = self.window_ms * MS
        start, end = ep.start_w * w_ns, (ep.last_w + 1) * w_ns
        secs = (end - start) / 1e9
        rate = ep.messages / secs
        instrument = max(sorted(ep.by_instrument), key=lambda i: ep.by_instrument[i]) or None
        otr = ep.messages / max(ep.fills, 1)
        summary = (f"{owner} sent {ep.messages:,} order messages on {venue} in {secs:.0f}s ({rate:.1f}/s, "
                   f"{rate / ep.baseline_per_s if ep.baseline_per_s else float('inf'):.0f}x its baseline "
                   f"{ep.baseline_per_s:.2f}/s, {rate / ep.norm_per_s if ep.norm_per_s else float('inf'):.0f}x the "
                   f"venue norm {ep.norm_per_s:.2f}/s) with {ep.fills} fills (order-to-trade ratio {otr:.0f}), "
                   f"mostly {instrument}")
        multiple = min(ep.peak_owner_x, ep.peak_venue_x)
        severity = Severity.HIGH if multiple >= 50 else Severity.MEDIUM if multiple >= 20 else Severity.LOW
        return Alert.build(
            detector=self.name, version=self.version, key=f"{owner}|{venue}", window_start_ns=start,
            window_end_ns=end, opening_evidence=ep.opening, evidence=ep.evidence, severity=severity,
            score=round(min(multiple, 1e6), 6), instrument=instrument, venues=[venue], owners=[owner],
            accounts=sorted(ep.accounts), summary=summary,
            params=self.params(),
            metrics={"messages": ep.messages, "fills": ep.fills, "duration_s": round(secs, 3),
                     "messages_per_s": round(rate, 6), "baseline_per_s": round(ep.baseline_per_s, 6),
                     "venue_norm_per_s": round(ep.norm_per_s, 6), "order_trade_ratio": round(otr, 6),
                     "peak_owner_multiple": round(min(ep.peak_owner_x, 1e9), 6),
                     "by_instrument": dict(sorted(ep.by_instrument.items()))},
        )
