"""Live inputs for the dataflow: polled feeds, Bytewax's Kafka source, and a stop switch.

Every live transport in ``connectors/`` (FIX acceptor, tailed files, WebSocket feeds) is
a *feed*: ``start(resume)``, ``poll(max_items) -> [("events"|"dead", table)]``,
``snapshot()`` (a picklable position covering exactly what ``poll`` returned),
``stats()`` and ``close()``.  :class:`FeedSource` gives each feed one partition of a
Bytewax source, so recovery snapshots carry the feeds' positions (FIX sequence numbers,
file offsets) and a restart resumes them.

Bytewax stops a dataflow only when every input reaches EOF; a signal otherwise ends the
process on the spot, losing what is buffered.  So SIGTERM/SIGINT set :data:`STOP`, and
every live partition — ours and the Kafka source, wrapped by :class:`Stoppable` — ends
its input at its next poll: the timeline releases what it holds, detectors flush, the
store commits, and the process exits 0.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

import pyarrow.compute as pc
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from surveil import metrics

STOP = threading.Event()


class Feed(Protocol):
    def start(self, resume: Any | None = None) -> None: ...
    def poll(self, max_items: int = 64) -> list[tuple[str, Any]]: ...
    def snapshot(self) -> Any: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


_newest: dict[str, float] = {}  # source -> newest event time delivered (s), never moving back

# Partition -> wall time (s) of its last poll that returned nothing, for the partitions of this
# process.  "Every input quiet" (the timeline's idle release) means each of them has come back
# empty since the last input: a worker busy in a long detector batch polls nothing either, and
# must not take its own stall for a quiet market (the events queued meanwhile would arrive late).
_empty_poll: dict[str, float] = {}


def polled(partition: str, got: bool) -> None:
    if got:
        _empty_poll.setdefault(partition, 0.0)
    else:
        _empty_poll[partition] = time.time()


def forget_polls() -> None:
    """A new run in this process: the partitions of an earlier one are gone."""
    _empty_poll.clear()


def all_polled_empty_since(t: float) -> bool | None:
    """Whether every live partition of this process came back empty after ``t``; None when this
    process has none (replay, or a cluster process whose partitions are all elsewhere)."""
    return all(v > t for v in _empty_poll.values()) if _empty_poll else None


def count_items(source: str, items: list[tuple[str, Any]]) -> None:
    """Per-batch metrics of what a source delivered: events by venue, decode errors, event-time delay."""
    newest = None
    for tag, payload in items:
        if tag == "events" and payload.num_rows:
            for v in pc.value_counts(pc.fill_null(payload.column("venue"), "?")).to_pylist():
                metrics.EVENTS_IN.labels(source=source, venue=v["values"]).inc(v["counts"])
            ts = pc.max(payload.column("ts")).value
            newest = ts if newest is None else max(newest, ts)
        elif tag == "dead":
            metrics.DECODE_ERRORS.labels(source=source).inc(payload.num_rows)
    now = time.time()
    metrics.SOURCE_LAST_POLL.labels(source=source).set(now)
    if newest is not None:
        metrics.WATERMARK_DELAY.labels(source=source).set(now - newest / 1e9)
        _newest[source] = max(newest / 1e9, _newest.get(source, 0.0))
        metrics.NEWEST_EVENT.labels(source=source).set(_newest[source])


def counted(source: str, decode_batch: Callable[[list], list]) -> Callable[[list], list]:
    """A batch decoder that also counts what it decoded (for inputs whose items are raw messages)."""
    def decode(batch: list) -> list:
        items = decode_batch(batch)
        count_items(source, items)
        return items
    return decode


class _FeedPartition(StatefulSourcePartition):
    def __init__(self, name: str, feed: Feed, resume: Any, poll_ms: float, max_items: int):
        self.name, self.feed, self.max_items = name, feed, max_items
        self.part = f"feed:{name}"  # its key among the partitions polled (idle release)
        self.idle = timedelta(milliseconds=poll_ms)
        self._busy = False
        feed.start(resume)

    def next_batch(self) -> list:
        if STOP.is_set():
            raise StopIteration
        items = [(tag, p) for tag, p in self.feed.poll(self.max_items) if tag in ("events", "dead")]
        count_items(self.name, items)
        self._busy = bool(items)
        polled(self.part, self._busy)
        return items

    def next_awake(self) -> datetime | None:
        # poll again at once while there is data; otherwise sleep a little instead of spinning
        return None if self._busy else datetime.now(timezone.utc) + self.idle

    def snapshot(self) -> Any:
        return self.feed.snapshot()

    def close(self) -> None:
        _empty_poll.pop(self.part, None)
        self.feed.close()


class FeedSource(FixedPartitionedSource):
    """One partition per named feed; ``factories`` build a fresh feed in the worker that owns it."""

    def __init__(self, factories: dict[str, Callable[[], Feed]], poll_ms: float = 5.0, max_items: int = 64):
        self.factories, self.poll_ms, self.max_items = factories, poll_ms, max_items

    def list_parts(self) -> list[str]:
        return sorted(self.factories)

    def build_part(self, step_id: str, for_part: str, resume_state: Any | None) -> _FeedPartition:
        return _FeedPartition(for_part, self.factories[for_part](), resume_state, self.poll_ms, self.max_items)


class _StoppablePartition(StatefulSourcePartition):
    def __init__(self, inner: StatefulSourcePartition, name: str, part: str):
        self.inner, self.name, self.part = inner, name, f"{name}:{part}"

    def next_batch(self) -> list:
        if STOP.is_set():
            raise StopIteration
        metrics.SOURCE_LAST_POLL.labels(source=self.name).set(time.time())
        batch = self.inner.next_batch()
        polled(self.part, bool(batch))
        return batch

    def next_awake(self):
        return self.inner.next_awake()

    def snapshot(self):
        return self.inner.snapshot()

    def close(self) -> None:
        _empty_poll.pop(self.part, None)
        self.inner.close()


class Stoppable(FixedPartitionedSource):
    """Any partitioned source (Bytewax's KafkaSource) made to end its input when :data:`STOP` is set."""

    def __init__(self, inner: FixedPartitionedSource, name: str):
        self.inner, self.name = inner, name

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any | None) -> _StoppablePartition:
        return _StoppablePartition(self.inner.build_part(step_id, for_part, resume_state), self.name, for_part)


class WsFeed:
    """A WebSocket venue feed (``connectors.ws``) as a feed: public data has no position to resume."""

    def __init__(self, venue: str, symbols: list[str], *, url: str | None = None, src: int = 0,
                 options: dict | None = None):
        from connectors.ws import ClientConfig, ThreadedFeed, WsClient

        self._client = WsClient(venue, symbols, url=url, options=options, config=ClientConfig(), src=src)
        self._feed = ThreadedFeed(self._client)

    def start(self, resume: Any | None = None) -> None:
        self._feed.start()

    def poll(self, max_items: int = 64) -> list[tuple[str, Any]]:
        return [(tag, p) for tag, p in self._feed.poll(max_items) if tag in ("events", "dead")]

    def snapshot(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        s = self._client.stats
        return {"connections": s.connections, "disconnects": s.disconnects, "messages": s.messages,
                "trades": s.trades, "dead": s.dead, "gaps": s.gaps, "missing": s.missing}

    def close(self) -> None:
        self._feed.close()
