"""Run ``surveil run`` as a real process for the daemon tests: config files, metrics, signals, the store.

The daemon runs as ``python -m surveil run`` (a subprocess, so signals and ``kill -9`` are real);
the test reads its ``/metrics`` and ``/health`` endpoints and, after it has stopped, its DuckDB file.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import duckdb

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def write_config(path: Path, sections: dict, sources: list[dict]) -> Path:
    lines = []
    for name, body in sections.items():
        if "." in name or not any(isinstance(v, dict) for v in body.values()):
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in body.items()]
        else:  # [detectors] with sub-tables
            for sub, params in body.items():
                lines.append(f"[{name}.{sub}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in params.items()]
        lines.append("")
    for s in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in s.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Daemon:
    def __init__(self, config: Path, *args: str, log: Path | None = None):
        self.config = config
        self.log = log or config.with_suffix(".log")
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "surveil", "run", "--config", str(self.config), *self.args],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet
        return 0, b""


def metric(text: str, name: str, **labels) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def wait_until(cond: Callable[[], object], timeout: float, what: str, daemon: Daemon | None = None, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"daemon exited ({daemon.proc.returncode}) while waiting for {what}:\n{daemon.output()[-3000:]}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f":\n{daemon.output()[-3000:]}" if daemon else ""))


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
