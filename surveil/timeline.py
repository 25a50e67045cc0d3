"""One event-time timeline from many inputs: bounded lateness, a watermark, and FIX fill pairing.

Inputs arrive roughly in event time (a k-way merge of files, or live feeds whose
clocks and networks disagree).  ``Timeline.push`` takes any batch and returns the
events it can now release in total order ``(ts, src, src_seq, kind)``, plus the
events that came too late.

Rules, all per row and so independent of how the input was cut into batches:

- an event is **late** when its ``ts`` is more than ``max_lateness_ms`` behind the
  largest ``ts`` seen before it; late events go to ``late_events`` (and the
  archive), never into the detectors;
- events are released sorted once the watermark ``max_seen - max_lateness`` passes
  them — except that a FIX fill is held until the watermark passes it by
  ``pair_window_ms`` more (below), and with it every later event, as releases stay in
  order.  A stream without fills waits for the lateness alone.  Everything released
  later sorts after everything released now, so the concatenation of all releases is
  one sorted sequence whatever the batch sizes.

FIX drop copies give each side of a match as its own fill, possibly on two
platforms' sessions.  A trade is rebuilt from the two fills sharing a TrdMatchID
(``trade_id``) within ``pair_window_ms`` of each other.  Holding releases back by
that window means that when a fill is released its partner, if it exists, has
already been seen: a fill whose partner never came becomes a one-sided trade
then and there — recorded, never dropped.

>>> import pyarrow as pa
>>> from surveil.schemas import conform
>>> tl = Timeline(max_lateness_ms=3000, pair_window_ms=0)
>>> s = 1_000_000_000
>>> out, late = tl.push(conform(pa.table({"ts": pa.array([5 * s, 3 * s, 9 * s, 1 * s], pa.int64()),
...     "kind": ["trade"] * 4, "src": pa.array([0] * 4, pa.int32()), "src_seq": pa.array([0, 1, 2, 3], pa.int64())})))
>>> out.column("src_seq").to_pylist(), late.column("src_seq").to_pylist()
([1, 0], [3])
>>> tl.flush().column("src_seq").to_pylist()
[2]
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import EVENT_SCHEMA, TS, Action, Feed, Kind, Side, empty_events, sort_events, to_rows

LATE_SCHEMA = EVENT_SCHEMA.append(pa.field("late_by_ms", pa.float64())).append(pa.field("watermark", EVENT_SCHEMA.field("ts").type))
_MIN = -(2**62)


@dataclass
class TimelineState:
    buffer: pa.Table = field(default_factory=empty_events)  # held events, sorted
    buffer_ts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # their ts, for binary search
    max_seen_ns: int = _MIN
    pending: dict[str, dict] = field(default_factory=dict)  # trade_id -> released fill awaiting its partner
    released_until_ns: int = _MIN
    fill_ts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # held FIX fills' ts, sorted


class Timeline:
    def __init__(self, max_lateness_ms: int = 5_000, pair_window_ms: int = 1_000, state: TimelineState | None = None):
        if max_lateness_ms < 0 or pair_window_ms < 0:
            raise ValueError("max_lateness_ms and pair_window_ms must be >= 0")
        self.lateness_ns = int(max_lateness_ms) * 1_000_000
        self.window_ns = int(pair_window_ms) * 1_000_000
        self.state = state or TimelineState()

    @property
    def watermark_ns(self) -> int:
        """Every event released from now on has ``ts >= watermark_ns``."""
        return self.state.released_until_ns

    def push(self, events: pa.Table) -> tuple[pa.Table, pa.Table]:
        st = self.state
        if events.num_rows == 0:
            return empty_events(), LATE_SCHEMA.empty_table()
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        before = np.maximum.accumulate(np.concatenate(([st.max_seen_ns], ts)))[:-1]
        # after an idle release the watermark can be ahead of ``max_seen - lateness``
        threshold = np.maximum(before - self.lateness_ns, st.released_until_ns)
        late_mask = ts < threshold
        st.max_seen_ns = max(st.max_seen_ns, int(ts.max()))
        late = LATE_SCHEMA.empty_table()
        if late_mask.any():
            late_events = events.filter(pa.array(late_mask))
            late = late_events.append_column("late_by_ms", pa.array((before[late_mask] - ts[late_mask]) / 1e6)) \
                .append_column("watermark", pa.array(threshold[late_mask]).cast(LATE_SCHEMA.field("watermark").type))
            events = events.filter(pa.array(~late_mask))
        self._hold(events)
        return self._release(self._release_point()), late

    def _release_point(self) -> int:
        """The watermark, held back to the first FIX fill the pair window still keeps waiting.

        Fills before ``watermark - pair_window`` go (their partners, if any, are in); so does
        everything before the first fill that must still wait — the other events need not wait
        for a partner, and a feed without fills (trades already paired, quotes) waits for the
        lateness alone.
        """
        st = self.state
        watermark = st.max_seen_ns - self.lateness_ns
        paired_until = watermark - self.window_ns
        waiting = st.fill_ts[np.searchsorted(st.fill_ts, paired_until, side="left"):]
        return watermark if len(waiting) == 0 else max(paired_until, min(watermark, int(waiting[0])))

    def flush(self) -> pa.Table:
        """Release everything held (end of input)."""
        return self._release(2**62)

    def release_idle(self) -> pa.Table:
        """Release everything held up to the newest event seen: every input has gone quiet.

        Live transports call this after an idle timeout so a quiet market does not hold
        its last events back; an event that arrives afterwards older than the newest seen
        is late (the watermark promise stands).
        """
        return self._release(self.state.max_seen_ns + 1) if self.state.buffer.num_rows else empty_events()

    @property
    def held(self) -> int:
        return self.state.buffer.num_rows

    def _hold(self, events: pa.Table) -> None:
        # The buffer is kept sorted, so a release is a zero-copy prefix slice found by
        # binary search; in-order input (the common case) is appended without re-sorting.
        st = self.state
        if events.num_rows == 0:
            return
        events = sort_events(events)
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        fills = ts[pc.fill_null(_fix_fills(events), False).to_numpy(zero_copy_only=False)]
        if len(fills):
            st.fill_ts = np.sort(np.concatenate((st.fill_ts, fills)))
        if st.buffer.num_rows == 0:
            st.buffer, st.buffer_ts = events, ts
        elif ts[0] > st.buffer_ts[-1] or (ts[0] == st.buffer_ts[-1] and _key(events, 0) >= _key(st.buffer, -1)):
            st.buffer = pa.concat_tables([st.buffer, events])
            st.buffer_ts = np.concatenate((st.buffer_ts, ts))
        else:
            st.buffer = sort_events(pa.concat_tables([st.buffer, events]))
            st.buffer_ts = st.buffer.column("ts").cast(pa.int64()).to_numpy()
        if st.buffer.column("ts").num_chunks > 32:  # many small batches would make every later step chunk-bound
            st.buffer = st.buffer.combine_chunks()

    def _release(self, until_ns: int) -> pa.Table:
        st = self.state
        if until_ns <= st.released_until_ns:
            return empty_events()
        st.released_until_ns = until_ns
        n = int(np.searchsorted(st.buffer_ts, until_ns, side="left"))
        if n == 0:
            return empty_events()
        chunk = st.buffer.slice(0, n)
        st.buffer, st.buffer_ts = st.buffer.slice(n), st.buffer_ts[n:]
        st.fill_ts = st.fill_ts[np.searchsorted(st.fill_ts, until_ns, side="left"):]
        trades = self._pair(chunk)
        return sort_events(pa.concat_tables([chunk, trades])) if trades.num_rows else chunk

    # -- FIX fill pairing -----------------------------------------------------------
    def _pair(self, chunk: pa.Table) -> pa.Table:
        fills = chunk.filter(pc.fill_null(_fix_fills(chunk), False))
        if fills.num_rows == 0:
            return empty_events()
        st = self.state
        # fills still held (not yet released) that a released fill may be waiting for
        # (only those already final — below the lateness watermark — so the outcome cannot depend on batching)
        final = st.buffer.slice(0, int(np.searchsorted(st.buffer_ts, st.max_seen_ns - self.lateness_ns, side="left")))
        held_ids = set(final.column("trade_id").filter(pc.fill_null(_fix_fills(final), False)).to_pylist())
        rows = to_rows(fills)
        later_in_chunk = Counter(f["trade_id"] for f in rows)
        trades = []
        for f in rows:
            tid = f["trade_id"]
            later_in_chunk[tid] -= 1
            other = st.pending.pop(tid, None)
            if other is not None and other["side"] != f["side"]:
                trades.append(_trade_from(other, f))
            elif other is None and (later_in_chunk[tid] > 0 or tid in held_ids):
                st.pending[tid] = f
            else:
                if other is not None:  # two fills on one side under one match id: keep both, unpaired
                    trades.append(_trade_from(other, None))
                trades.append(_trade_from(f, None))
        return pa.Table.from_pylist(trades, schema=EVENT_SCHEMA) if trades else empty_events()


def _fix_fills(table: pa.Table) -> pa.ChunkedArray:
    """Per row: a FIX fill with a match id (one side of a trade, to pair); null where unknown."""
    return pc.and_(pc.and_(pc.equal(table.column("feed"), Feed.FIX.value),
                           pc.equal(table.column("action"), Action.FILL.value)), pc.is_valid(table.column("trade_id")))


def _key(table: pa.Table, i: int) -> tuple:
    """The tie-break part of the sort key (after ts) of one row."""
    i = i % table.num_rows
    src, seq, kind = (table.column(c)[i].as_py() for c in ("src", "src_seq", "kind"))
    return (-1 if src is None else src, -1 if seq is None else seq, kind or "")


def _trade_from(a: dict, b: dict | None) -> dict:
    """A trade row from one or both sides' fills; the later fill gives its time and position."""
    last = a if b is None or (a["ts"], a["src"], a["src_seq"]) >= (b["ts"], b["src"], b["src_seq"]) else b
    sides = {f["side"]: f for f in (a, b) if f is not None}
    aggressor = next((f["side"] for f in (a, b) if f is not None and f.get("is_aggressor")), None)
    row = {k: last[k] for k in ("ts", "recv_ts", "feed", "src", "src_seq", "venue", "venue_symbol", "instrument",
                                 "price", "qty", "trade_id")}
    row["kind"] = Kind.TRADE.value
    row["side"] = aggressor
    for s in (Side.BUY.value, Side.SELL.value):
        f = sides.get(s)
        row[f"{s}_order_id"] = f["order_id"] if f else None
        row[f"{s}_account"] = f["account"] if f else None
        row[f"{s}_platform"] = f["platform"] if f else None
    return row


@dataclass
class DedupState:
    seen: set = field(default_factory=set)
    # the keys of ``seen`` in arrival order for eviction, one chunk per batch: [ts array, keys, first live]
    chunks: deque = field(default_factory=deque)
    max_seen_ns: int = _MIN


class Deduplicator:
    """Drops repeated trades (same venue and trade id) and order events (same platform and exec id).

    Resent FIX messages, overlapping WebSocket snapshots and a producer's retries deliver an
    event twice; the second copy must not count twice in volumes, wash-trade matching or
    message rates.  Keys are remembered for ``window_ms`` of event time, so memory is bounded
    by the event rate.  FIX fills are not checked by trade id: both sides of one match share
    it (they pair into one trade) — their exec ids are checked instead.

    >>> from surveil.schemas import conform
    >>> d = Deduplicator(10_000)
    >>> t = conform(pa.table({"ts": pa.array([1, 2, 3], pa.int64()).cast(TS), "kind": ["trade"] * 3,
    ...                       "venue": ["X"] * 3, "trade_id": ["a", "b", "a"]}))
    >>> fresh, dups = d.split(t)
    >>> fresh.column("trade_id").to_pylist(), dups
    (['a', 'b'], [(2, 'duplicate trade id a on venue X')])
    """

    def __init__(self, window_ms: int = 10_000, state: DedupState | None = None):
        self.window_ns = int(window_ms) * 1_000_000
        self.state = state or DedupState()

    def split(self, events: pa.Table) -> tuple[pa.Table, list[tuple[int, str]]]:
        """(the events seen for the first time, [(row index, reason)] of the repeats)."""
        st = self.state
        kind = events.column("kind")
        is_trade = pc.fill_null(pc.and_(pc.equal(kind, Kind.TRADE.value), pc.is_valid(events.column("trade_id"))), False)
        is_order = pc.fill_null(pc.and_(pc.equal(kind, Kind.ORDER.value), pc.is_valid(events.column("exec_id"))), False)
        keys = pc.if_else(is_trade, pc.binary_join_element_wise(pc.fill_null(events.column("venue"), ""),
                                                                events.column("trade_id"), "/t/"),
                          pc.if_else(is_order, pc.binary_join_element_wise(
                              pc.fill_null(events.column("platform"), ""), events.column("exec_id"), "/x/"), None))
        ts = events.column("ts").cast(pa.int64()).to_numpy()
        has_key = pc.is_valid(keys)
        rows = np.flatnonzero(has_key.to_numpy(zero_copy_only=False))
        batch = keys.filter(has_key).to_pylist()
        dups: list[tuple[int, str]] = []
        seen = st.seen
        if len(set(batch)) == len(batch) and seen.isdisjoint(batch):  # no repeat: the usual case, in C
            seen.update(batch)
            kept_ts, kept = ts[rows], batch
        else:
            fresh = np.ones(len(batch), dtype=bool)
            for j, k in enumerate(batch):
                if k in seen:
                    fresh[j] = False
                    venue_or_platform, kind_tag, ident = k.partition("/t/") if "/t/" in k else k.partition("/x/")
                    dups.append((int(rows[j]), f"duplicate trade id {ident} on venue {venue_or_platform}"
                                 if kind_tag == "/t/" else f"duplicate exec id {ident} from platform {venue_or_platform}"))
                else:
                    seen.add(k)
            kept_ts, kept = ts[rows[fresh]], [k for k, f in zip(batch, fresh) if f]
        if kept:
            st.chunks.append([kept_ts, kept, 0])
        if len(ts):
            st.max_seen_ns = max(st.max_seen_ns, int(ts.max()))
        self._evict(st.max_seen_ns - self.window_ns)
        if not dups:
            return events, dups
        mask = np.ones(events.num_rows, dtype=bool)
        mask[[i for i, _ in dups]] = False
        return events.filter(pa.array(mask)), dups

    def _evict(self, horizon: int) -> None:
        """Forget keys in arrival order up to the first one not older than ``horizon`` (as a
        per-key queue would: a key that arrived late behind a newer one waits for it)."""
        chunks, seen = self.state.chunks, self.state.seen
        while chunks:
            c_ts, c_keys, first = chunks[0]
            younger = np.flatnonzero(c_ts[first:] >= horizon)
            stop = first + int(younger[0]) if len(younger) else len(c_keys)
            seen.difference_update(c_keys[first:stop])
            if stop < len(c_keys):
                chunks[0][2] = stop
                return
            chunks.popleft()
