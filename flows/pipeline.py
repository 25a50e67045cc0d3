"""The surveil dataflow: inputs → one event-time timeline → enrichment → detectors → the store.

``flows/`` is the only package that knows Bytewax (``flows/live.py`` holds the live inputs),
but for ``connectors/kafka.py``, whose source *is* Bytewax's Kafka connector.  Each step wraps plain Python from
``surveil/``, ``replay/`` and ``detectors/``; every arrow carries Arrow tables, never
one Python object per event.  Step ids are stable: they name the dead letters a
step produces and the alerts' detectors.

    read ─┬─ events ── event_time ──┬─ ordered ── enrich ──┬─ route_<det> ── detect_<det> ──┐
          │                         └─ late ───────────────┼────────────────────────────────┤
          └─ dead letters ─────────────────────────────────┴─ (refused) ────────────────────┴─ store

Detector state is sharded: ``route_<det>`` splits a batch by the detector's key and
sends each shard its keys' rows *and the watermark*, even when it has no rows,
so every shard can evict idle keys by event time (bounded memory) — Bytewax's own
per-key state would only ever see keys that receive items.
"""
from __future__ import annotations

import pickle
import time
import weakref
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import bytewax.operators as op
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from detectors import stages
from detectors.base import Detector, split_by_key
from flows import live
from flows.live import STOP
from replay.merge import InputSpec, Pacer, merge_inputs, prefetch
from surveil import metrics
from surveil.refdata import RefData, enrich
from surveil.schemas import Feed, Kind, dead_letters, to_rows
from surveil.store import Store
from surveil.timeline import Deduplicator, Timeline

STORE_KEY = "store"
PICKLE = pickle.HIGHEST_PROTOCOL


@dataclass(frozen=True)
class PipelineConfig:
    """How events move: lateness, pairing, batching and sharding (all validated at construction)."""

    max_lateness_ms: int = 5_000
    pair_window_ms: int = 1_000
    batch_rows: int = 65_536
    shards: int = 8
    speed: float | None = None  # replay pacing: None = as fast as possible, N = N× real time
    # live inputs: when no input has delivered for this long (wall clock), release every held event
    idle_release_ms: int | None = None
    dedup_window_ms: int = 10_000  # a trade id / exec id seen again within this much event time is a duplicate
    # live inputs: released events are sent on together at most this often (None: at once, as replay does)
    emit_interval_ms: int | None = None
    # recovery on: stateful steps hand Bytewax their state at every epoch.  Off, they hand it nothing: Bytewax
    # asks for snapshots whether or not it keeps them, and copying every detector's state each epoch cost the
    # daemon a third of its time at 10k events/s
    snapshots: bool = False

    def __post_init__(self):
        if self.batch_rows < 1 or self.shards < 1:
            raise ValueError("batch_rows and shards must be >= 1")
        for name in ("idle_release_ms", "emit_interval_ms"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


# -- input -------------------------------------------------------------------------------
class _ReplayPartition(StatefulSourcePartition):
    def __init__(self, inputs: list[InputSpec], cfg: PipelineConfig, emitted: int, progress):
        self._emitted = emitted
        # merged a batch ahead: the merge's sort and gather (Arrow, GIL released) overlap the dataflow
        self._items = prefetch(merge_inputs(inputs, batch_rows=cfg.batch_rows, skip_rows=emitted))
        self._pacer = Pacer(cfg.speed)
        self._progress = progress

    def next_batch(self) -> list:
        if STOP.is_set():  # SIGTERM: end the input so everything downstream flushes
            raise StopIteration
        try:
            kind, table = next(self._items)
        except StopIteration:
            raise StopIteration from None
        if kind == "events":
            self._pacer.wait_for(table.column("ts")[0].value)
            self._emitted += table.num_rows
            if self._progress:
                self._progress(table.num_rows)
        return [(kind, table)]

    def snapshot(self) -> int:
        return self._emitted


class ReplaySource(FixedPartitionedSource):
    """Files of any supported format, merged in event time; resumes by skipping rows already emitted."""

    def __init__(self, inputs: list[InputSpec], cfg: PipelineConfig, progress=None):
        self.inputs, self.cfg, self.progress = inputs, cfg, progress

    def list_parts(self) -> list[str]:
        return ["replay"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        return _ReplayPartition(self.inputs, self.cfg, resume_state or 0, self.progress)


# -- stateful steps ------------------------------------------------------------------------
def _duplicates(table: pa.Table, dups: list[tuple[int, str]]) -> pa.Table:
    rows = table.take(pa.array([i for i, _ in dups], pa.int64()))
    return dead_letters("dedup", "event_time", [
        (reason, f"src {s} row {q}", orjson.dumps(r)) for (_, reason), s, q, r in zip(
            dups, rows.column("src").to_pylist(), rows.column("src_seq").to_pylist(), to_rows(rows))],
        time.time_ns())


RECHECK = timedelta(milliseconds=20)  # an idle release deferred for a busy worker is looked at again after this


class _TimelineLogic(StatefulBatchLogic):
    """The one event-time timeline.  Live, it also coalesces: transports deliver small batches
    and every batch costs each detector a fixed overhead, so released events are held back up
    to ``emit_interval_ms`` (or until ``batch_rows`` are ready) and sent on as one batch."""

    def __init__(self, cfg: PipelineConfig, resume: bytes | None):
        tl_state, dedup_state, pending = pickle.loads(resume) if resume else (None, None, [])
        self.snapshots = cfg.snapshots
        self.tl = Timeline(cfg.max_lateness_ms, cfg.pair_window_ms, state=tl_state)
        self.dedup = Deduplicator(cfg.dedup_window_ms, dedup_state) if cfg.dedup_window_ms else None
        self.idle = timedelta(milliseconds=cfg.idle_release_ms) if cfg.idle_release_ms else None
        self.interval = timedelta(milliseconds=cfg.emit_interval_ms) if cfg.emit_interval_ms else None
        self.batch_rows = cfg.batch_rows
        self.last_input = datetime.now(timezone.utc)
        self.recheck = self.last_input  # idle deferred until the inputs have been polled (on_notify)
        self.pending: list[pa.Table] = pending  # released, not yet sent on (part of the snapshot: never lost)
        self.pending_since = self.last_input

    def _released(self, table: pa.Table, out: list) -> None:
        if table.num_rows == 0:
            return
        if self.interval is None:
            out.append(("ordered", (self.tl.watermark_ns, table)))
            return
        if not self.pending:
            self.pending_since = datetime.now(timezone.utc)
        self.pending.append(table)
        if sum(t.num_rows for t in self.pending) >= self.batch_rows:
            self._emit(out)

    def _emit(self, out: list) -> None:
        if self.pending:
            out.append(("ordered", (self.tl.watermark_ns, pa.concat_tables(self.pending))))
            self.pending = []

    def on_batch(self, values: list[pa.Table]):
        out = []
        for table in values:
            if self.dedup:
                fresh, dups = self.dedup.split(table)
                if dups:
                    out.append(("dead", _duplicates(table, dups)))
                table = fresh
            ordered, late = self.tl.push(table)
            if late.num_rows:
                out.append(("late", late))
            self._released(ordered, out)
        self.last_input = datetime.now(timezone.utc)
        metrics.HELD_EVENTS.set(self.tl.held)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        times = []
        if self.idle and self.tl.held:
            times.append(max(self.last_input + self.idle, self.recheck))
        if self.pending:
            times.append(self.pending_since + self.interval)
        return min(times) if times else None

    def on_notify(self):
        out: list = []
        now = datetime.now(timezone.utc)
        if self.idle and self.tl.held and now >= self.last_input + self.idle:
            if live.all_polled_empty_since(self.last_input.timestamp()) is False:
                # the worker was busy, not the market quiet: look again once the inputs are polled
                self.recheck = now + RECHECK
            else:
                self._released(self.tl.release_idle(), out)
        if self.pending and now >= self.pending_since + self.interval:
            self._emit(out)
        metrics.HELD_EVENTS.set(self.tl.held)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self):
        out: list = []
        self._released(self.tl.flush(), out)
        self._emit(out)
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        # pickled now, not deep-copied: the state goes on changing after this returns, and pickle is the faster copy
        if not self.snapshots:
            return None
        return pickle.dumps((self.tl.state, self.dedup.state if self.dedup else None, self.pending), PICKLE)


SWEEP_EVERY_NS = 1_000_000_000
_SHARDS: dict[str, weakref.WeakSet] = {}  # detector -> its live shards in this process (for the state gauge)


class _DetectorShard(StatefulBatchLogic):
    """Per-key states of one detector for the keys hashed to this shard."""

    def __init__(self, det: Detector, resume: bytes | None, snapshots: bool):
        self.det, self.snapshots = det, snapshots
        self.states: dict[str, Any] = pickle.loads(resume) if resume else {}
        self.last_sweep = -(2**62)
        if det.name not in _SHARDS:
            shards = _SHARDS[det.name] = weakref.WeakSet()
            metrics.STATE_KEYS.labels(detector=det.name).set_function(lambda: sum(len(s.states) for s in shards))
        _SHARDS[det.name].add(self)

    def on_batch(self, values):
        alerts, dead = [], []
        for watermark, parts in values:
            for key, table in parts:
                state = self.states.get(key)
                if state is None:
                    state = self.states[key] = self.det.new_state()
                try:
                    alerts.extend(self.det.update(state, table))
                except Exception as e:  # noqa: BLE001 — a detector bug must not stop surveillance of every other key
                    # The key's state may be half-updated: start it afresh, and keep the rows as a dead letter.
                    self.states[key] = self.det.new_state()
                    dead.append(dead_letters(f"key {key}", f"detect_{self.det.name}", [
                        (f"{type(e).__name__}: {e}", f"{table.num_rows} rows from ts {table.column('ts')[0].value}",
                         orjson.dumps(to_rows(table)))], watermark))
            # a sweep per second of event time, not per batch: is_idle is safe whenever it runs, and
            # small live batches would otherwise pay a pass over every key each time
            if watermark >= self.last_sweep + SWEEP_EVERY_NS:
                self.last_sweep = watermark
                for k in [k for k, s in self.states.items() if self.det.is_idle(s, watermark)]:
                    del self.states[k]
        out = [("alerts", alerts)] if alerts else []
        return out + [("dead", d) for d in dead], StatefulBatchLogic.RETAIN

    def on_eof(self):
        alerts = [a for key in sorted(self.states) for a in self.det.flush(self.states[key])]
        return ([("alerts", alerts)] if alerts else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        return pickle.dumps(self.states, PICKLE) if self.snapshots else None


def _router(det: Detector, shards: int):
    def route(item: tuple[int, pa.Table]) -> Iterable[tuple[str, tuple[int, list]]]:
        watermark, events = item
        by_shard: dict[int, list] = {s: [] for s in range(shards)}
        for key, part in split_by_key(det.select(events), det.key_columns):
            by_shard[zlib.adler32(key.encode()) % shards].append((key, part))
        return [(str(s), (watermark, parts)) for s, parts in by_shard.items()]
    return route


# -- output ---------------------------------------------------------------------------------
@dataclass
class StoreTarget:
    db_path: str
    archive_dir: str | None = None
    run_id: str | None = None
    command: str = "replay"
    inputs: list[str] = field(default_factory=list)
    fingerprint: str = ""
    ref_dir: str | None = None
    # called with the open Store in the process that writes it (the daemon serves queries from
    # there: DuckDB allows one writing process); returns a function that stops what it started
    on_open: Callable[[Store], Callable[[], None]] | None = None


class _StorePartition(StatefulSinkPartition):
    def __init__(self, target: StoreTarget):
        self.store = Store(target.db_path, target.archive_dir, target.run_id)
        self._stop_serving = target.on_open(self.store) if target.on_open else None
        self.store.start_run(target.command, target.inputs, target.fingerprint)
        if target.ref_dir:
            self.store.write_reference(RefData.load(target.ref_dir))
        self.events_in = 0
        self.derived = 0

    def write_batch(self, items: list[tuple[str, Any]]) -> None:
        # every detector's alerts in these items go in one transaction: a commit per detector per
        # batch was a tenth of the live daemon's time with the whole suite on
        alerts = [a for tag, payload in items if tag == "alerts" for a in payload]
        if alerts:
            self.store.write_alerts(alerts)
            now = time.time()
            for a in alerts:
                metrics.ALERTS.labels(detector=a.detector).inc()
                metrics.ALERT_LATENCY.observe(max(0.0, now - a.window_end_ns / 1e9))
        for tag, payload in items:
            if tag == "archive":
                self.store.archive(payload)
                # trades rebuilt from FIX fill pairs are derived, not read: keep "events in" = rows decoded
                derived = pc.sum(pc.and_(pc.equal(payload.column("feed"), Feed.FIX.value),
                                         pc.equal(payload.column("kind"), Kind.TRADE.value))).as_py() or 0
                self.derived += derived
                self.events_in += payload.num_rows - derived
                newest_recv = pc.max(payload.column("recv_ts")).value
                if newest_recv is not None:
                    metrics.BATCH_LATENCY.observe(max(0.0, time.time() - newest_recv / 1e9))
            elif tag == "dead":
                self.store.write_dead_letters(payload)
                for step, n in Counter(payload.column("step_id").to_pylist()).items():
                    metrics.DEAD_LETTERS.labels(step=step).inc(n)
            elif tag == "late":
                self.store.write_late(payload)
                self.events_in += payload.num_rows
                metrics.LATE_EVENTS.inc(payload.num_rows)
        metrics.STORE_LAST_WRITE.set(time.time())

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.store.finish_run("ok", self.events_in, self.derived)
        if self._stop_serving:
            self._stop_serving()
        self.store.close()


class StoreSink(FixedPartitionedSink):
    """One partition: DuckDB allows one writing process per file."""

    def __init__(self, target: StoreTarget):
        self.target = target

    def list_parts(self) -> list[str]:
        return [STORE_KEY]

    def build_part(self, step_id: str, for_part: str, resume_state: None):
        return _StorePartition(self.target)


# -- the dataflow ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Input:
    """One input of the dataflow: a Bytewax source whose items are ``("events"|"dead", table)``, or
    raw items (Kafka messages) that ``decode_batch`` turns into those, a whole batch at a time."""

    step_id: str
    source: Any
    decode_batch: Callable[[list], list[tuple[str, pa.Table]]] | None = None


def build_flow(source, ref: RefData, detectors: list[Detector], sink, cfg: PipelineConfig = PipelineConfig(),
               name: str = "surveil", alert_sinks: dict[str, Any] | None = None) -> Dataflow:
    """``source``: one source of ``("events"|"dead", table)`` items (step ``read``), or a list of :class:`Input`.

    ``alert_sinks`` (step id -> Bytewax sink) also receive every alert revision, one ``Alert`` per item.
    """
    flow = Dataflow(name)
    streams = []
    for inp in (source if isinstance(source, list) else [Input("read", source)]):
        s = op.input(inp.step_id, flow, inp.source)
        streams.append(op.flat_map_batch(f"decode_{inp.step_id}", s, inp.decode_batch) if inp.decode_batch else s)
    raw = streams[0] if len(streams) == 1 else op.merge("inputs", *streams)
    is_events = op.branch("split_decoder_dead_letters", raw, lambda item: item[0] == "events")
    events = op.map("events", is_events.trues, lambda item: item[1])
    decoder_dead = op.map("decoder_dead_letters", is_events.falses, lambda item: ("dead", item[1]))

    timeline = op.stateful_batch("event_time", op.key_on("one_timeline", events, lambda _: "timeline"),
                                 lambda resume: _TimelineLogic(cfg, resume))
    timeline = op.map("drop_timeline_key", timeline, lambda kv: kv[1])
    is_ordered = op.branch("split_late", timeline, lambda item: item[0] == "ordered")
    late = is_ordered.falses  # ("late", table)

    def enrich_step(item):
        watermark, table = item[1]
        ok, refused = enrich(table, ref)
        out = [("ordered", (watermark, ok))]
        if refused.num_rows:
            rows = refused.to_pylist()
            raw_rows = table.take(pa.array([r["index"] for r in rows], pa.int64()))
            out.append(("dead", dead_letters(
                "enrich", "enrich", [(r["reason"], f"src {s} row {q}", orjson.dumps(x))
                                     for r, s, q, x in zip(rows, raw_rows.column("src").to_pylist(),
                                                           raw_rows.column("src_seq").to_pylist(), to_rows(raw_rows))],
                watermark)))
        return out

    enriched_all = op.flat_map("enrich", is_ordered.trues, enrich_step)
    is_ok = op.branch("split_enrich_refused", enriched_all, lambda item: item[0] == "ordered")
    enriched = op.map("enriched", is_ok.trues, lambda item: item[1])  # (watermark, table)

    alert_streams = []
    for det in stages(detectors):  # order patterns sharing a book run as one stage
        routed = op.flat_map(f"route_{det.name}", enriched, _router(det, cfg.shards))
        found = op.stateful_batch(f"detect_{det.name}", routed, lambda resume, det=det: _DetectorShard(det, resume, cfg.snapshots))
        alert_streams.append(op.map(f"alerts_{det.name}", found, lambda kv: kv[1]))  # ("alerts"|"dead", payload)

    archive = op.map("archive", enriched, lambda item: ("archive", item[1]))
    to_store = op.merge("to_store", archive, late, decoder_dead, is_ok.falses, *alert_streams)
    op.output("store", op.key_on("store_key", to_store, lambda _: STORE_KEY), sink)
    if alert_sinks and alert_streams:
        all_alerts = op.flat_map("each_alert", op.merge("found", *alert_streams),
                                 lambda item: item[1] if item[0] == "alerts" else [])
        for step_id, alert_sink in alert_sinks.items():
            op.output(step_id, all_alerts, alert_sink)
    return flow


def run(flow: Dataflow, *, workers: int = 1, epoch_interval: timedelta | None = None, recovery_config=None,
        process_id: int | None = None, addresses: list[str] | None = None) -> None:
    """Run in this process with ``workers`` threads; with ``addresses`` (every process's host:port)
    and ``process_id``, as one process of a Bytewax cluster."""
    from bytewax._bytewax import cli_main

    cli_main(flow, workers_per_process=workers, process_id=process_id, addresses=addresses,
             epoch_interval=epoch_interval, recovery_config=recovery_config)
