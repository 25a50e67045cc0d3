"""Scale-out on Bytewax's own cluster: 2 worker threads, and 2 processes on loopback, give the
alerts of 1 worker on the same input (same ids, windows, summaries)."""
from __future__ import annotations

import signal

from tests.daemon.harness import Daemon, free_port, http_get, metric, query, wait_until, write_config
from tests.daemon.test_recovery import ALERTS_SQL, market  # noqa: F401 — the shared module fixture


def _config(root, incoming, name: str, mport: int):
    return write_config(root / f"{name}.toml", {
        "store": {"db": f"{name}.duckdb"},
        "reference": {"dir": "m/ref"},
        "pipeline": {"max_lateness_ms": 1000, "idle_release_ms": 600_000},
        "metrics": {"address": f"127.0.0.1:{mport}"},
    }, [{"name": "files", "type": "tail", "directory": str(incoming), "pattern": "*.jsonl", "format": "jsonl"}])


def _newest(ports: list[int]) -> float:
    best = 0.0
    for p in ports:
        code, body = http_get(f"http://127.0.0.1:{p}/metrics")
        if code == 200:
            best = max(best, metric(body.decode(), "surveil_source_newest_event_timestamp_seconds"))
    return best


def _run(root, incoming, newest, name: str, *, processes: int = 1, workers: int = 1) -> list[tuple]:
    base = free_port()
    while any(free_port() == base + i for i in range(1, processes)):  # best effort: a run of free ports
        base = free_port()
    cfg = _config(root, incoming, name, base)
    if processes == 1:
        daemons = [Daemon(cfg, "--workers", str(workers)).start()]
    else:
        addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
        daemons = [Daemon(cfg, "--workers", str(workers), "--process-id", str(i), "--addresses", addresses,
                          log=root / f"{name}-{i}.log").start() for i in range(processes)]
    ports = [base + i for i in range(processes)]
    wait_until(lambda: _newest(ports) >= newest - 1e-6, 180, f"{name} to read the whole file", daemons[0])
    for d in daemons:
        d.proc.send_signal(signal.SIGTERM)
    for d in daemons:
        assert d.proc.wait(60) == 0, d.output()[-2000:]
    return query(root / f"{name}.duckdb", ALERTS_SQL)


def test_two_workers_and_two_processes_give_the_alerts_of_one(market):  # noqa: F811
    root, incoming, newest = market
    one = _run(root, incoming, newest, "one")
    assert len(one) >= 2
    assert _run(root, incoming, newest, "threads", workers=2) == one
    assert _run(root, incoming, newest, "procs", processes=2) == one
