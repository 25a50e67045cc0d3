"""Gap accounting and de-duplication by the venue's own numbering.

Two kinds of numbering are tracked:

* **trade ids**, contiguous within a key (a symbol and stream kind), that survive a reconnect:
  a jump forward is a gap (trades lost, typically while disconnected); an id seen before is a
  duplicate (a snapshot or ``last_match`` replayed after a reconnect) and is dropped, so each
  trade reaches the batch once;
* **per-connection message sequence numbers** (Coinbase Advanced Trade ``sequence_num``), which
  restart with every connection: a jump is a lost message.

Duplicates are recognised by membership in a bounded window of recently seen ids, not by
``id <= last``: a venue that renumbers (or sends an old trade late) must not make every later
trade look like a duplicate and vanish.  Such a backward id is kept and reported
(``out_of_order``).  Memory is bounded: one window per key, and keys are the subscribed symbols.

>>> g = GapTracker(venue="X")
>>> [r.seq_lo for r in g.admit(_rows(1, 2, 3))[0]], g.admit(_rows(2, 3, 4, 7))[1][0]["missing"]
([1, 2, 3], 2)
>>> g.duplicates
2
"""
from __future__ import annotations

from collections import deque
from typing import Any

from ._message import TradeRow

WINDOW = 4096  # ids remembered per key: covers any snapshot a venue replays on subscribe


class _Key:
    __slots__ = ("last", "seen", "order", "fresh")

    def __init__(self) -> None:
        self.last = -1
        self.seen: set[int] = set()
        self.order: deque[int] = deque()
        self.fresh = False  # no id seen on the current connection yet

    def remember(self, n: int) -> None:
        self.seen.add(n)
        self.order.append(n)
        if len(self.order) > WINDOW:
            self.seen.discard(self.order.popleft())


class GapTracker:
    def __init__(self, venue: str):
        self.venue = venue
        self._keys: dict[str, _Key] = {}
        self._conn_seq: dict[str, int] = {}
        self.connection = 0
        self.duplicates = 0
        self.gaps = 0
        self.missing = 0

    def new_connection(self) -> None:
        """Sequence numbers restart; trade ids carry on, and the next gap is marked after_reconnect."""
        self.connection += 1
        self._conn_seq.clear()
        for k in self._keys.values():
            k.fresh = True

    def _gap(self, kind: str, key: str, expected: int, got: int, recv_ts_ns: int, **extra: Any) -> dict:
        missing = got - expected
        self.gaps += 1
        self.missing += max(missing, 0)
        return {"kind": kind, "venue": self.venue, "key": key, "expected": expected, "got": got,
                "missing": missing, "connection": self.connection, "recv_ts": recv_ts_ns, **extra}

    def sequence(self, stream: str, n: int, recv_ts_ns: int) -> dict | None:
        """Check one per-connection message number; a gap report or None."""
        last = self._conn_seq.get(stream)
        self._conn_seq[stream] = n if last is None else max(last, n)
        if last is not None and n > last + 1:
            return self._gap("sequence", stream, last + 1, n, recv_ts_ns)
        return None

    def admit(self, rows: list[TradeRow], recv_ts_ns: int = 0) -> tuple[list[TradeRow], list[dict]]:
        """The rows to keep (duplicates dropped, message order kept) and the gaps they reveal."""
        gaps: list[dict] = []
        keep = [True] * len(rows)
        # account in id order: a venue may list a message's trades newest first
        order = sorted((i for i, r in enumerate(rows) if r.seq_key is not None), key=lambda i: rows[i].seq_lo)
        for i in order:
            r = rows[i]
            k = self._keys.get(r.seq_key)
            if k is None:
                k = self._keys[r.seq_key] = _Key()
            if r.seq_hi in k.seen:
                keep[i] = False
                self.duplicates += 1
                continue
            if k.last >= 0 and r.seq_lo > k.last + 1:
                gaps.append(self._gap("trade_id", r.seq_key, k.last + 1, r.seq_lo, recv_ts_ns, after_reconnect=k.fresh))
            elif k.last >= 0 and r.seq_hi <= k.last:
                gaps.append(self._gap("out_of_order", r.seq_key, k.last + 1, r.seq_lo, recv_ts_ns))
            k.fresh = False
            k.last = max(k.last, r.seq_hi)
            k.remember(r.seq_hi)
        if all(keep):
            return rows, gaps
        return [r for r, k in zip(rows, keep) if k], gaps

    def snapshot(self) -> dict[str, int]:
        """Last id per key: what a restart needs to resume accounting."""
        return {key: k.last for key, k in self._keys.items()}


def _rows(*ids: int) -> list[TradeRow]:
    return [TradeRow(0, "S", 1.0, 1.0, None, str(n), seq_key="S", seq_lo=n, seq_hi=n) for n in ids]
