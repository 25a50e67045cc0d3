"""SQL while the daemon runs: the daemon serves its own dashboard and SQL console (DuckDB allows
one writing process per file), and a second process queries it in a loop while the market is
still arriving.  Every alert committed becomes visible, none ever disappears, and the last
answer equals the database the daemon leaves behind.  ``surveil sql --url`` is that client."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import orjson

from tests.daemon.harness import ROOT, Daemon, free_port, http_get, metric, query, wait_until, write_config
from tests.daemon.test_recovery import market  # noqa: F401 — the shared module fixture

QUERIER = r"""
import sys, time, urllib.parse, urllib.request, orjson
url, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
import os
with open(out, "ab") as f:
    while not os.path.exists(stop):
        req = urllib.request.Request(url + "/sql", data=urllib.parse.urlencode(
            {"query": "SELECT alert_id FROM alerts ORDER BY 1"}).encode(), headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                rows = orjson.loads(r.read())["rows"]
            f.write(orjson.dumps({"t": time.time(), "ids": [r[0] for r in rows]}) + b"\n"); f.flush()
        except OSError:
            pass
        time.sleep(0.1)
"""


def test_a_second_process_sees_every_alert_while_the_daemon_ingests(market, tmp_path):  # noqa: F811
    root, incoming_full, newest = market
    lines = (incoming_full / "market.jsonl").read_bytes().splitlines(keepends=True)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    target = incoming / "market.jsonl"
    target.write_bytes(b"")
    mport, dport = free_port(), free_port()
    cfg = write_config(tmp_path / "live.toml", {
        "store": {"db": "live.duckdb"}, "reference": {"dir": str(root / "m" / "ref")},
        "pipeline": {"max_lateness_ms": 1000, "idle_release_ms": 600_000},
        "metrics": {"address": f"127.0.0.1:{mport}"}, "dashboard": {"address": f"127.0.0.1:{dport}"},
    }, [{"name": "files", "type": "tail", "directory": str(incoming), "pattern": "*.jsonl", "format": "jsonl"}])
    d = Daemon(cfg).start()
    url = f"http://127.0.0.1:{dport}"
    wait_until(lambda: http_get(url + "/healthz")[0] == 200, 60, "the daemon's dashboard", d)

    seen_log, stop_flag = tmp_path / "seen.jsonl", tmp_path / "stop"
    querier = subprocess.Popen([sys.executable, "-c", QUERIER, url, str(seen_log), str(stop_flag)], cwd=ROOT)

    def feed():  # the platform writes the market in ten pieces over a few seconds
        step = len(lines) // 10 + 1
        with open(target, "ab") as f:
            for i in range(0, len(lines), step):
                f.write(b"".join(lines[i:i + step]))
                f.flush()
                time.sleep(0.4)
    writer = threading.Thread(target=feed)
    writer.start()
    writer.join()

    def read_all():
        code, body = http_get(f"http://127.0.0.1:{mport}/metrics")
        return code == 200 and metric(body.decode(), "surveil_source_newest_event_timestamp_seconds") >= newest - 1e-6
    wait_until(read_all, 120, "the daemon to read the whole market", d)
    time.sleep(1.5)  # a few more queries after the last commit
    stop_flag.touch()
    querier.wait(30)

    # the CLI client against the running daemon, and a clear refusal of a write through it
    out = subprocess.run([sys.executable, "-m", "surveil", "sql", "--url", url, "--csv",
                          "SELECT count(*) AS n FROM alerts"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    refused = subprocess.run([sys.executable, "-m", "surveil", "sql", "--url", url, "DELETE FROM alerts"],
                             cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "read-only" in (refused.stderr + refused.stdout).lower(), refused
    assert d.stop(signal.SIGTERM) == 0, d.output()[-2000:]

    snapshots = [orjson.loads(x) for x in seen_log.read_bytes().splitlines()]
    assert len(snapshots) >= 10
    for before, after in zip(snapshots, snapshots[1:]):
        assert set(before["ids"]) <= set(after["ids"]), "an alert disappeared between two queries"
    grew = [len(s["ids"]) for s in snapshots]
    assert grew[0] < grew[-1], "alerts appeared while the querier watched"
    final = [r[0] for r in query(tmp_path / "live.duckdb", "SELECT alert_id FROM alerts ORDER BY 1")]
    assert snapshots[-1]["ids"] == final
    assert int(out.stdout.strip().splitlines()[-1]) == len(final)
