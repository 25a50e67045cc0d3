"""`surveil run --check` and the daemon's configuration: clear errors before anything starts; clock skew."""
from __future__ import annotations

import socket
import time

import pyarrow as pa
import pytest

from surveil.cli import main
from surveil.config import ConfigError
from surveil.daemon_config import load_daemon_config, pipeline_config
from surveil.schemas import conform
from surveil.timeline import Timeline
from tests.daemon.harness import free_port, write_config

TAIL = {"name": "files", "type": "tail", "directory": ".", "pattern": "*.jsonl"}


def _cfg(tmp_path, sections=None, sources=None):
    return write_config(tmp_path / "s.toml", {"store": {"db": "s.duckdb"}, **(sections or {})},
                        [TAIL] if sources is None else sources)


@pytest.mark.parametrize("sections, sources, message", [
    ({}, [], "at least one [[sources]]"),
    ({}, [{"name": "x", "type": "carrier-pigeon"}], "type must be one of fix, kafka, websocket, tail"),
    ({}, [{"name": "x", "type": "fix", "listen": "9878", "sessions": ["HKVATP"]}], "listen must be host:port"),
    ({}, [{"name": "x", "type": "kafka", "brokers": ["b:1"], "topics": ["t"]}], "needs format"),
    ({}, [{"name": "x", "type": "kafka", "brokers": ["b:1"], "topics": ["t"], "format": "xml"}], "format must be"),
    ({}, [{"name": "x", "type": "websocket", "venue": "NYSE", "symbols": ["A"]}], "venue must be one of"),
    ({}, [TAIL, TAIL], "source names must be unique"),
    ({"pipeline": {"max_lateness_ms": "soon"}}, None, "max_lateness_ms must be int"),
    ({"pipeline": {"max_skew_ms": -1}}, None, "max_skew_ms must be a non-negative int"),
    ({"detectors": {"wash_trade": {"window_gap_ms": "x"}}}, None, "wash_trade.window_gap_ms must be int"),
    ({"detectors": {"telepathy": {}}}, None, "unknown detector"),
    ({"metrics": {"address": "nowhere"}}, None, "must be host:port"),
    ({"colour": {"x": 1}}, None, "unknown section(s) colour"),
])
def test_invalid_configuration_is_a_clear_error(tmp_path, sections, sources, message):
    with pytest.raises(ConfigError, match=None) as e:
        load_daemon_config(_cfg(tmp_path, sections, sources))
    assert message in str(e.value) and "s.toml" in str(e.value)


def test_check_refuses_an_unreachable_kafka_within_its_timeout(tmp_path, capsys):
    port = free_port()  # nothing listens there
    cfg = _cfg(tmp_path, sources=[{"name": "k", "type": "kafka", "brokers": [f"127.0.0.1:{port}"], "topics": ["t"],
                                   "format": "json", "connect_timeout_s": 1.0}])
    t0 = time.monotonic()
    assert main(["run", "--config", str(cfg), "--check"]) == 2
    assert time.monotonic() - t0 < 15
    assert "source k" in capsys.readouterr().err


def test_check_refuses_a_fix_port_in_use_and_accepts_a_good_file(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = _cfg(tmp_path, sources=[{"name": "fx", "type": "fix", "listen": f"127.0.0.1:{port}",
                                       "sessions": ["HKVATP"]}])
        assert main(["run", "--config", str(cfg), "--check"]) == 2
        assert "cannot listen" in capsys.readouterr().err
    assert main(["run", "--config", str(_cfg(tmp_path)), "--check"]) == 0
    assert "1 source(s): files (tail)" in capsys.readouterr().out


def test_a_venue_skewed_by_up_to_the_allowed_skew_keeps_its_events_in_order(tmp_path):
    """Lateness is widened by twice the skew: one venue's clock ahead by it, another's behind."""
    cfg = load_daemon_config(_cfg(tmp_path, {"pipeline": {"max_lateness_ms": 100, "max_skew_ms": 250}}))
    pc_ = pipeline_config(cfg)
    assert pc_.max_lateness_ms == 600
    ms = 1_000_000
    tl = Timeline(pc_.max_lateness_ms, 0)
    # true time t (ms); venue A stamps t + 250, venue B stamps t - 250 and arrives 90 ms late
    rows = [(t + 250, "A", i) for i, t in enumerate(range(0, 2000, 10))] + \
           [(t - 250, "B", 1000 + i) for i, t in enumerate(range(0, 2000, 10))]
    rows.sort(key=lambda r: r[0] + 250 if r[1] == "A" else r[0] + 250 + 90)  # arrival order
    late_total, released = 0, []
    for ts, venue, seq in rows:
        out, late = tl.push(conform(pa.table({"ts": pa.array([ts * ms], pa.int64()), "kind": ["trade"], "venue": [venue],
                                             "src": pa.array([0], pa.int32()), "src_seq": pa.array([seq], pa.int64())})))
        late_total += late.num_rows
        released += out.column("ts").cast(pa.int64()).to_pylist()
    # beyond the allowed skew (here 700 ms behind the newest): late, and so recorded, not silently reordered
    out, late = tl.push(conform(pa.table({"ts": pa.array([(2240 - 700) * ms], pa.int64()), "kind": ["trade"],
                                         "venue": ["B"], "src": pa.array([0], pa.int32()),
                                         "src_seq": pa.array([9999], pa.int64())})))
    assert late.num_rows == 1
    released += out.column("ts").cast(pa.int64()).to_pylist()
    released += tl.flush().column("ts").cast(pa.int64()).to_pylist()
    assert late_total == 0 and released == sorted(released) and len(released) == len(rows)
