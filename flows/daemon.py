"""``surveil run``: the replay dataflow fed by live transports, with recovery, metrics and clean shutdown.

    [[sources]] ─ fix / tail / websocket ─ FeedSource (one partition per feed) ─┐
               └ kafka ─ Bytewax KafkaSource ─ decode (a batch at a time) ──────┴─ the dataflow of
                                                                                  flows/pipeline.py

Order of a start: validate the configuration (``--check`` stops there), check every Kafka
cluster answers within its timeout (Bytewax's Kafka source would hang), create the
recovery partitions if missing, start the metrics endpoint, install the signal handlers,
then run.  SIGTERM or SIGINT ends every input (``flows.live.STOP``): the timeline releases
what it holds, detectors flush, the store commits its last alerts, the process exits 0.

Recovery (``[recovery] dir``): Bytewax snapshots every ``snapshot_interval_ms`` — feed
positions (FIX sequence numbers, file offsets, Kafka offsets), the timeline's held events,
every detector's per-key state.  After a crash the dataflow resumes from the last snapshot
and re-reads what followed it; alert ids are content hashes and the store upserts by id,
so the alerts equal those of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import sys
import time
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Callable

import orjson

from detectors import build_detectors
from flows.live import STOP, FeedSource, Stoppable, WsFeed, counted, forget_polls
from flows.pipeline import Input, StoreSink, StoreTarget, build_flow, run
from surveil import metrics
from surveil.daemon_config import DaemonConfig, SourceConfig, pipeline_config
from surveil.refdata import RefData
from surveil.store import Store

log = logging.getLogger("surveil.daemon")


KAFKA_BATCH = 10_000  # messages per read: each batch costs the dataflow a fixed overhead


class StartupError(RuntimeError):
    """The daemon cannot start: a source is unreachable or misconfigured; the message says which and why."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers and ``jq`` read without parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger("surveil")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _feed_factory(src: SourceConfig) -> Callable[[], Any]:
    o = src.options
    if src.type == "fix":
        from connectors.fix.session import FixAcceptor

        host, _, port = o["listen"].rpartition(":")
        return partial(FixAcceptor, host, int(port), sessions=list(o["sessions"]), our_comp_id=o["our_comp_id"],
                       heartbeat_s=o["heartbeat_s"], src_base=src.src_base, name=src.name)
    if src.type == "tail":
        from connectors.tail import TailFeed

        return partial(TailFeed, o["directory"], o["pattern"], fmt=o["format"] or None, src_base=src.src_base,
                       name=src.name, venue=o["venue"] or None)
    if src.type == "websocket":
        return partial(WsFeed, o["venue"], list(o["symbols"]), url=o["url"] or None, src=src.src_base,
                       options=o["options"] or None)
    raise ValueError(f"{src.type} is not a polled feed")


def build_inputs(cfg: DaemonConfig) -> list[Input]:
    """The dataflow's inputs: one FeedSource for every polled feed, one input per Kafka source."""
    inputs = []
    feeds = {s.name: _feed_factory(s) for s in cfg.sources if s.type != "kafka"}
    if feeds:
        inputs.append(Input("feeds", FeedSource(feeds)))
    for s in (s for s in cfg.sources if s.type == "kafka"):
        from connectors.kafka import decode_kafka_batch, kafka_source

        o = s.options
        for i, topic in enumerate(o["topics"]):  # one src per topic: (partition, offset) repeats across topics
            source = kafka_source(o["brokers"], [topic], starting_offset=o["starting_offset"], batch_size=KAFKA_BATCH,
                                  extra_config=o["config"] or None, timeout_s=o["connect_timeout_s"])
            step = f"kafka_{s.name}_{i}".replace("-", "_")
            inputs.append(Input(step, Stoppable(source, s.name),
                                counted(s.name, partial(decode_kafka_batch, fmt=o["format"], src=s.src_base + i))))
    return inputs


def preflight(cfg: DaemonConfig) -> None:
    """Fail fast, with the reason, on what would otherwise hang or fail later."""
    for s in cfg.sources:
        if s.type == "kafka":
            from connectors.kafka import check_brokers

            try:
                check_brokers(s.options["brokers"], s.options["topics"], s.options["connect_timeout_s"],
                              s.options["config"] or None)
            except Exception as e:  # noqa: BLE001 — any failure to reach Kafka stops the start, with its reason
                raise StartupError(f"source {s.name}: {e}") from e
        elif s.type == "fix":  # the port must be free now, not after the dataflow has started
            host, _, port = s.options["listen"].rpartition(":")
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, int(port)))
                except OSError as e:
                    raise StartupError(f"source {s.name}: cannot listen on {s.options['listen']}: {e}") from None
        elif s.type == "tail" and not Path(s.options["directory"]).is_dir():
            raise StartupError(f"source {s.name}: directory {s.options['directory']} does not exist")


def _serve_dashboard(cfg: DaemonConfig, store_con) -> Callable[[], None]:
    """The dashboard and SQL console, served from this process over cursors of its connection."""
    from dashboards.app import create_app, start_server

    host, _, port = cfg.dashboard_address.rpartition(":")
    app = create_app(store_con.cursor, token=cfg.dashboard_token, archive_dir=cfg.archive, db_label=Path(cfg.db).name)
    server = start_server(app, host=host, port=int(port), token=cfg.dashboard_token)
    log.info("dashboard serving", extra={"fields": {"address": cfg.dashboard_address}})
    return server.stop


def _dashboard_hooks(cfg: DaemonConfig, clustered: bool):
    """(stop function now, or a hook for the store partition).

    DuckDB allows one writing process per file but many connections inside it (they share
    one database instance).  Alone, the daemon opens the store now and serves at once, even
    before the first event; in a cluster only the process that builds the store partition
    (Bytewax places it) may open the file, so it serves from there when it does.
    """
    if not cfg.dashboard_address:
        return None, None
    if clustered:
        return None, lambda store: _serve_dashboard(cfg, store.con)
    import duckdb

    Store(cfg.db, cfg.archive).close()  # the schema, before the first query
    con = duckdb.connect(cfg.db)
    stop = _serve_dashboard(cfg, con)

    def stop_and_close():
        stop()
        con.close()
    return stop_and_close, None


def _install_signal_handlers() -> None:
    def stop(signum, _frame):
        if STOP.is_set():  # a second signal: the operator wants out now
            log.warning("second signal: exiting without flushing")
            raise SystemExit(130)
        log.info("stopping: ending inputs, flushing alerts", extra={"fields": {"signal": signal.Signals(signum).name}})
        STOP.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def run_daemon(cfg: DaemonConfig, *, workers: int = 1, process_id: int | None = None,
               addresses: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT (after ``preflight``); returns the exit status."""
    from bytewax.recovery import RecoveryConfig, init_db_dir

    ref = RefData.load(cfg.ref_dir)
    detectors = build_detectors(cfg.detectors)
    pcfg = dataclasses.replace(pipeline_config(cfg), snapshots=bool(cfg.recovery_dir))
    forget_polls()
    stop_dashboard, on_open = _dashboard_hooks(cfg, clustered=addresses is not None)
    target = StoreTarget(cfg.db, cfg.archive, uuid.uuid4().hex[:16], "run", [s.name for s in cfg.sources],
                         "", cfg.ref_dir, on_open=on_open)
    alert_sinks = {}
    if cfg.alerts_kafka:
        from connectors.kafka import alert_sink

        k = cfg.alerts_kafka
        alert_sinks["alerts_kafka"] = alert_sink(k["brokers"], k["topic"], k.get("config") or None)
    flow = build_flow(build_inputs(cfg), ref, detectors, StoreSink(target), pcfg, alert_sinks=alert_sinks)

    recovery = None
    if cfg.recovery_dir:
        rdir = Path(cfg.recovery_dir)
        if not rdir.is_dir() or not any(rdir.iterdir()):
            rdir.mkdir(parents=True, exist_ok=True)
            init_db_dir(rdir, 1)
        recovery = RecoveryConfig(rdir)

    server = None
    started = time.time()
    if cfg.metrics_address:
        host, _, port = cfg.metrics_address.rpartition(":")
        port = int(port) + (process_id or 0) if int(port) else 0  # one endpoint per process of a cluster
        server = metrics.MetricsServer(f"{host}:{port}", lambda: metrics.health_report(cfg.stall_s, started)).start()
        log.info("metrics serving", extra={"fields": {"address": "%s:%d" % server.address}})
    _install_signal_handlers()
    log.info("surveillance running", extra={"fields": {
        "sources": [s.name for s in cfg.sources], "detectors": [d.name for d in detectors], "db": cfg.db,
        "workers": workers, "process_id": process_id, "recovery": cfg.recovery_dir}})
    try:
        run(flow, workers=workers, process_id=process_id, addresses=addresses,
            epoch_interval=timedelta(milliseconds=cfg.snapshot_interval_ms), recovery_config=recovery)
    finally:
        if server:
            server.close()
        if stop_dashboard:
            stop_dashboard()
    log.info("surveillance stopped", extra={"fields": {"uptime_s": round(time.time() - started, 3)}})
    return 0
