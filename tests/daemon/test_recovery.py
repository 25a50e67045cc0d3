"""The daemon survives ``kill -9`` and stops cleanly on SIGTERM without losing or duplicating an alert.

A labelled market is written as one canonical JSONL file in a tailed directory; the daemon
reads it with Bytewax recovery on.  One run goes uninterrupted; another is killed with
SIGKILL at random points three times and restarted each time from its recovery snapshots.
Both end with SIGTERM (inputs end, held events released, detectors flushed) and must hold
the very same alerts — ids, windows and summaries — as each other and as a plain replay.
"""
from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from flows.jobs import run_replay
from replay.merge import InputSpec, merge_inputs
from replay.scenario import generate
from surveil.schemas import to_rows
from tests.daemon.harness import Daemon, free_port, http_get, metric, query, wait_until, write_config

ALERTS_SQL = "SELECT alert_id, detector, epoch_ns(window_start), epoch_ns(window_end), summary FROM alerts ORDER BY 1"


def market_file(root: Path, seed: int, minutes: float, events_per_second: float) -> tuple[Path, Path, float]:
    """A labelled market as one canonical JSONL file in global event-time order: the outcome then
    cannot depend on how reads of several files interleave.  (root, its directory, newest ts in s)."""
    generate(root / "m", seed=seed, minutes=minutes, events_per_second=events_per_second, formats=("canonical",))
    events = pa.concat_tables([t for kind, t in merge_inputs(
        [InputSpec(str(p)) for p in sorted((root / "m" / "canonical").glob("*.parquet"))]) if kind == "events"])
    incoming = root / "incoming"
    incoming.mkdir()
    with open(incoming / "market.jsonl", "wb") as f:
        for row in to_rows(events):
            f.write(orjson.dumps({k: v for k, v in row.items() if v is not None and k not in ("src", "src_seq")}) + b"\n")
    return root, incoming, events.column("ts")[-1].value / 1e9


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return market_file(tmp_path_factory.mktemp("market"), seed=3, minutes=4, events_per_second=600)


def _config(root: Path, incoming: Path, name: str, mport: int) -> Path:
    return write_config(root / f"{name}.toml", {
        "store": {"db": f"{name}.duckdb"},
        "reference": {"dir": "m/ref"},
        # no wall-clock idle release while the file is read: the outcome must not depend on timing
        "pipeline": {"max_lateness_ms": 1000, "idle_release_ms": 600_000},
        "recovery": {"dir": f"{name}-recovery", "snapshot_interval_ms": 300},
        "metrics": {"address": f"127.0.0.1:{mport}"},
    }, [{"name": "files", "type": "tail", "directory": str(incoming), "pattern": "*.jsonl", "format": "jsonl"}])


def _read_to_end(d: Daemon, mport: int, newest: float, timeout: float = 180) -> None:
    def at_end():
        code, body = http_get(f"http://127.0.0.1:{mport}/metrics")
        return code == 200 and metric(body.decode(), "surveil_source_newest_event_timestamp_seconds") >= newest - 1e-6
    wait_until(at_end, timeout, "the daemon to read the whole file", d)


def test_kill_9_three_times_loses_and_duplicates_no_alert(market):
    root, incoming, newest = market
    mport = free_port()
    calm = Daemon(_config(root, incoming, "calm", mport)).start()
    _read_to_end(calm, mport, newest)
    assert calm.stop(signal.SIGTERM) == 0, calm.output()[-2000:]
    expected = query(root / "calm.duckdb", ALERTS_SQL)
    assert len(expected) >= 2, "the market's labelled episodes raise alerts"

    rng = random.Random(11)
    cfg = _config(root, incoming, "killed", free_port())
    mport = int(cfg.read_text().split('address = "127.0.0.1:')[1].split('"')[0])
    for _ in range(3):
        d = Daemon(cfg).start()
        wait_until(lambda: http_get(f"http://127.0.0.1:{mport}/health")[0] == 200, 60, "the daemon to start", d)
        time.sleep(rng.uniform(0.2, 2.0))  # somewhere mid-file (or just after a snapshot)
        d.kill()
    d = Daemon(cfg).start()
    _read_to_end(d, mport, newest)
    assert d.stop(signal.SIGTERM) == 0, d.output()[-2000:]
    got = query(root / "killed.duckdb", ALERTS_SQL)
    assert got == expected
    assert len({r[0] for r in got}) == len(got)

    # and both equal a replay of the same file
    replayed = run_replay([InputSpec(str(incoming / "market.jsonl"))], db_path=root / "replay.duckdb",
                          ref_dir=root / "m" / "ref")
    assert replayed.alerts == len(expected)
    assert [r[1:] for r in query(root / "replay.duckdb", ALERTS_SQL)] == [r[1:] for r in expected]


def test_sigterm_flushes_held_events_and_exits_0(market):
    root, incoming, newest = market
    mport = free_port()
    cfg = _config(root, incoming, "term", mport)
    d = Daemon(cfg).start()
    _read_to_end(d, mport, newest)
    code, body = http_get(f"http://127.0.0.1:{mport}/metrics")
    held = metric(body.decode(), "surveil_timeline_held_events")
    assert held > 0, "with a long idle release the newest events wait for the watermark"
    assert d.stop(signal.SIGTERM) == 0
    out = d.output()
    assert '"msg":"stopping: ending inputs, flushing alerts"' in out and '"msg":"surveillance stopped"' in out
    (status, events_in), = query(root / "term.duckdb", "SELECT status, events_in FROM runs")
    lines = sum(1 for _ in open(incoming / "market.jsonl", "rb"))
    assert status == "ok" and events_in == lines  # every event archived, the held ones included


def test_a_quiet_market_does_not_hold_its_last_events(market):
    """Every source quiet for idle_release_ms: the timeline releases what it holds, without a signal."""
    root, incoming, newest = market
    mport = free_port()
    cfg = _config(root, incoming, "quiet", mport)
    cfg.write_text(cfg.read_text().replace("idle_release_ms = 600000", "idle_release_ms = 500"))
    d = Daemon(cfg).start()
    _read_to_end(d, mport, newest)

    def released():
        code, body = http_get(f"http://127.0.0.1:{mport}/metrics")
        return code == 200 and metric(body.decode(), "surveil_timeline_held_events") == 0
    wait_until(released, 30, "the held events to be released", d)
    assert d.stop(signal.SIGTERM) == 0
