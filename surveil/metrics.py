"""Operational metrics (Prometheus text format) and a health endpoint for the daemon.

The dataflow's steps update these as batches pass — per batch, never per event, so a
replay pays nothing noticeable for them.  ``serve(address)`` exposes ``/metrics``
(prometheus_client's own exposition) and ``/health`` (JSON: ``ok`` while every source
has delivered or polled within its stall limit and the store is writing) on a thread.

>>> EVENTS_IN.labels(source="doc", venue="X").inc(3)
>>> b'surveil_events_in_total{source="doc",venue="X"} 3.0' in generate_latest()
True
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client import generate_latest as _generate_latest

EVENTS_IN = Counter("surveil_events_in", "Events decoded, by source and venue", ["source", "venue"])
DECODE_ERRORS = Counter("surveil_decode_errors", "Messages or rows a source could not decode", ["source"])
DEAD_LETTERS = Counter("surveil_dead_letters", "Dead-letter rows stored, by the step that refused them", ["step"])
LATE_EVENTS = Counter("surveil_late_events", "Events behind the watermark, stored in late_events")
ALERTS = Counter("surveil_alerts", "Alert revisions committed, by detector", ["detector"])
WATERMARK_DELAY = Gauge("surveil_watermark_delay_seconds",
                        "Wall clock minus the newest event time a source has delivered", ["source"])
NEWEST_EVENT = Gauge("surveil_source_newest_event_timestamp_seconds", "Newest event time a source has delivered",
                     ["source"])
SOURCE_LAST_POLL = Gauge("surveil_source_last_poll_timestamp_seconds", "When a source was last polled", ["source"])
HELD_EVENTS = Gauge("surveil_timeline_held_events", "Events held by the event-time timeline awaiting the watermark")
STATE_KEYS = Gauge("surveil_detector_state_keys", "Per-key states held in this process, by detector", ["detector"])
_LATENCY_BUCKETS = (.005, .01, .02, .03, .05, .075, .1, .15, .2, .25, .3, .4, .5, .75, 1, 2.5, 5, 10, 30)
BATCH_LATENCY = Histogram("surveil_batch_latency_seconds",
                          "Receipt of a batch's newest event to its rows being stored", buckets=_LATENCY_BUCKETS)
ALERT_LATENCY = Histogram("surveil_alert_latency_seconds",
                          "Event time of an alert's newest evidence to the alert being committed (live: ~ receipt "
                          "to commit)", buckets=_LATENCY_BUCKETS)
STORE_LAST_WRITE = Gauge("surveil_store_last_write_timestamp_seconds", "When the store last committed a batch")


def generate_latest() -> bytes:
    return _generate_latest(REGISTRY)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # scrapes every few seconds must not flood the logs
        pass


class MetricsServer:
    """``/metrics`` and ``/health`` on ``host:port`` (port 0: any free port), served from a daemon thread."""

    def __init__(self, address: str, health: Callable[[], dict[str, Any]]):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"metrics address must be host:port, got {address!r}")
        metrics_app = make_wsgi_app(REGISTRY)

        def app(environ, start_response):
            if environ.get("PATH_INFO") == "/health":
                body = health()
                status = "200 OK" if body.get("status") == "ok" else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [orjson.dumps(body)]
            return metrics_app(environ, start_response)

        self._server: WSGIServer = make_server(host, int(port), app, handler_class=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def health_report(stall_s: float, started: float) -> dict[str, Any]:
    """``ok`` while every source this process reads was polled within ``stall_s`` (a wedged worker
    stops polling); also how long since the store last committed and how many events the timeline holds."""
    now = time.time()
    polls = {s.labels["source"]: s.value for m in SOURCE_LAST_POLL.collect() for s in m.samples}
    stalled = sorted(src for src, t in polls.items() if now - t > stall_s)
    last_write = STORE_LAST_WRITE._value.get()
    return {"status": "ok" if not stalled else "degraded", "uptime_s": round(now - started, 3),
            "sources": sorted(polls), "stalled_sources": stalled,
            "store_last_write_age_s": round(now - last_write, 3) if last_write else None,
            "held_events": HELD_EVENTS._value.get()}
