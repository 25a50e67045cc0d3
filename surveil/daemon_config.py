"""The daemon's configuration: one TOML file, validated whole before anything starts.

```toml
[store]
db = "surveil.duckdb"            # alerts, evidence, dead letters; events archived beside it
[reference]
dir = "ref"                      # instruments.csv, accounts.csv, owner_links.csv
[pipeline]
max_lateness_ms = 500            # disorder tolerated across sources ...
max_skew_ms = 250                # ... plus twice the clock skew allowed between venues
idle_release_ms = 1000           # no input this long, every source polled empty since: release what is held
emit_interval_ms = 50            # released events go on to detectors together, at most this often
[recovery]
dir = "recovery"                 # Bytewax recovery partitions (omit: no snapshots)
snapshot_interval_ms = 2000
[metrics]
address = "127.0.0.1:9108"       # /metrics (Prometheus) and /health
[dashboard]
address = "127.0.0.1:8765"       # the daemon serves the dashboard and SQL itself (one DuckDB writer)

[[sources]]                      # FIX 4.4 drop copy acceptor, one session per platform
name = "dropcopy"
type = "fix"
listen = "127.0.0.1:9878"
sessions = ["HKVATP", "OVSAFF"]

[[sources]]
name = "orders"
type = "kafka"
brokers = ["127.0.0.1:9092"]
topics = ["orders"]
format = "json"                  # json (canonical events) | fix

[[sources]]
name = "binance"
type = "websocket"
venue = "BINANCE"
symbols = ["BTCUSDT"]

[[sources]]
name = "files"
type = "tail"
directory = "incoming"
pattern = "*.jsonl"

[detectors.wash_trade]
window_gap_ms = 300000
```
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.base import value_fits
from surveil.config import ConfigError, check_detectors, check_pipeline, read_toml

_SOURCE_KEYS: dict[str, tuple[dict[str, type], dict[str, Any]]] = {
    # type: (required {key: type}, optional {key: default})
    "fix": ({"listen": str, "sessions": list}, {"our_comp_id": "SURVEIL", "heartbeat_s": 30}),
    "kafka": ({"brokers": list, "topics": list, "format": str},
              {"connect_timeout_s": 10.0, "starting_offset": "earliest", "config": {}}),
    "websocket": ({"venue": str, "symbols": list}, {"url": "", "options": {}}),
    "tail": ({"directory": str}, {"pattern": "*", "format": "", "venue": ""}),
}
_KAFKA_FORMATS = ("json", "fix")
SRC_STRIDE = 1000  # source i numbers its inputs (FIX sessions, tailed files) from i * SRC_STRIDE


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str
    index: int
    options: dict[str, Any]

    @property
    def src_base(self) -> int:
        return self.index * SRC_STRIDE


@dataclass(frozen=True)
class DaemonConfig:
    path: str
    db: str
    archive: str | None
    ref_dir: str | None
    sources: tuple[SourceConfig, ...]
    pipeline: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)
    max_skew_ms: int = 250
    recovery_dir: str | None = None
    snapshot_interval_ms: int = 2000
    metrics_address: str | None = None
    stall_s: float = 30.0
    dashboard_address: str | None = None
    dashboard_token: str | None = None
    alerts_kafka: dict[str, Any] | None = None


def _table(raw: dict, name: str, where: str) -> dict:
    v = raw.get(name, {})
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return v


def _check_keys(section: dict, allowed: dict[str, type], where: str) -> None:
    for k, v in section.items():
        if k not in allowed:
            raise ConfigError(f"{where} has no setting {k!r}; settings: {', '.join(allowed)}")
        want = allowed[k]
        if not value_fits(v, want):
            raise ConfigError(f"{where} {k} must be {want.__name__}, got {v!r}")


def _address(v: str, where: str) -> str:
    host, _, port = v.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where} must be host:port, got {v!r}")
    return v


def _source(i: int, s: Any, base: Path, p: Path) -> SourceConfig:
    where = f"{p}: [[sources]] #{i + 1}"
    if not isinstance(s, dict):
        raise ConfigError(f"{where} must be a table")
    name, typ = s.get("name"), s.get("type")
    if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
        raise ConfigError(f"{where}: name must be a word (letters, digits, - and _), got {name!r}")
    if typ not in _SOURCE_KEYS:
        raise ConfigError(f"{where} ({name}): type must be one of {', '.join(_SOURCE_KEYS)}, got {typ!r}")
    required, optional = _SOURCE_KEYS[typ]
    opts = {k: v for k, v in s.items() if k not in ("name", "type")}
    missing = sorted(set(required) - set(opts))
    if missing:
        raise ConfigError(f"{where} ({name}, {typ}) needs {', '.join(missing)}")
    _check_keys(opts, {**required, **{k: type(v) for k, v in optional.items()}}, f"{where} ({name}, {typ})")
    opts = {**optional, **opts}
    if typ == "fix":
        _address(opts["listen"], f"{where} ({name}) listen")
        if not opts["sessions"] or not all(isinstance(x, str) and x for x in opts["sessions"]):
            raise ConfigError(f"{where} ({name}): sessions must list the platforms' SenderCompIDs")
    elif typ == "kafka":
        if opts["format"] not in _KAFKA_FORMATS:
            raise ConfigError(f"{where} ({name}): format must be one of {', '.join(_KAFKA_FORMATS)}")
        if not opts["brokers"] or not opts["topics"]:
            raise ConfigError(f"{where} ({name}): brokers and topics must not be empty")
    elif typ == "websocket":
        from connectors.ws import VENUES

        if opts["venue"] not in VENUES:
            raise ConfigError(f"{where} ({name}): venue must be one of {', '.join(sorted(VENUES))}")
    elif typ == "tail":
        opts["directory"] = str((base / opts["directory"]).resolve())
    return SourceConfig(name, typ, i, opts)


def load_daemon_config(path: str | Path) -> DaemonConfig:
    """Read and validate the daemon's TOML file; every error names the file, section and setting."""
    p = Path(path)
    raw = read_toml(p)
    known = ("store", "reference", "pipeline", "recovery", "metrics", "dashboard", "sources", "alerts_kafka",
             "detectors")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{p}: unknown section(s) {', '.join(unknown)}; known: {', '.join(known)}")
    base = p.resolve().parent

    def rel(v: str | None) -> str | None:
        return str((base / v).resolve()) if v else None

    store = _table(raw, "store", str(p))
    _check_keys(store, {"db": str, "archive": str}, f"{p}: [store]")
    if "db" not in store:
        raise ConfigError(f"{p}: [store] db is required (the DuckDB file alerts are written to)")
    ref = _table(raw, "reference", str(p))
    _check_keys(ref, {"dir": str}, f"{p}: [reference]")
    if ref.get("dir") and not (base / ref["dir"]).is_dir():
        raise ConfigError(f"{p}: [reference] dir {rel(ref['dir'])} is not a directory")

    pipeline = dict(_table(raw, "pipeline", str(p)))
    skew = pipeline.pop("max_skew_ms", 250)
    if not isinstance(skew, int) or isinstance(skew, bool) or skew < 0:
        raise ConfigError(f"{p}: [pipeline] max_skew_ms must be a non-negative int, got {skew!r}")
    pipeline.setdefault("idle_release_ms", 1000)
    pipeline.setdefault("emit_interval_ms", 50)
    pipeline.setdefault("shards", 2)  # fixed for the life of a recovery directory: state is stored per shard
    check_pipeline(pipeline, f"{p}: [pipeline]")

    recovery = _table(raw, "recovery", str(p))
    _check_keys(recovery, {"dir": str, "snapshot_interval_ms": int}, f"{p}: [recovery]")
    metrics = _table(raw, "metrics", str(p))
    _check_keys(metrics, {"address": str, "stall_s": float}, f"{p}: [metrics]")
    dash = _table(raw, "dashboard", str(p))
    _check_keys(dash, {"address": str, "token": str}, f"{p}: [dashboard]")
    alerts_kafka = raw.get("alerts_kafka")
    if alerts_kafka is not None:
        _check_keys(alerts_kafka, {"brokers": list, "topic": str, "config": dict}, f"{p}: [alerts_kafka]")
        if not alerts_kafka.get("brokers") or not alerts_kafka.get("topic"):
            raise ConfigError(f"{p}: [alerts_kafka] needs brokers and topic")

    sources_raw = raw.get("sources", [])
    if not isinstance(sources_raw, list) or not sources_raw:
        raise ConfigError(f"{p}: at least one [[sources]] entry is required")
    sources = tuple(_source(i, s, base, p) for i, s in enumerate(sources_raw))
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{p}: source names must be unique: {', '.join(dup)}")
    detectors = _table(raw, "detectors", str(p))
    check_detectors(detectors, str(p))
    interval = recovery.get("snapshot_interval_ms", 2000)
    if interval <= 0:
        raise ConfigError(f"{p}: [recovery] snapshot_interval_ms must be positive")
    for where, addr in (("[metrics] address", metrics.get("address")), ("[dashboard] address", dash.get("address"))):
        if addr:
            _address(addr, f"{p}: {where}")
    return DaemonConfig(
        path=str(p), db=rel(store["db"]), archive=rel(store.get("archive")), ref_dir=rel(ref.get("dir")),
        sources=sources, pipeline=pipeline, detectors=detectors, max_skew_ms=skew,
        recovery_dir=rel(recovery.get("dir")), snapshot_interval_ms=interval,
        metrics_address=metrics.get("address"), stall_s=float(metrics.get("stall_s", 30.0)),
        dashboard_address=dash.get("address"), dashboard_token=dash.get("token"), alerts_kafka=alerts_kafka)


def pipeline_config(cfg: DaemonConfig):
    """The dataflow's settings: lateness widened by twice the skew (one venue ahead, one behind)."""
    from flows.pipeline import PipelineConfig

    settings = dict(cfg.pipeline)
    settings["max_lateness_ms"] = settings.get("max_lateness_ms", 500) + 2 * cfg.max_skew_ms
    return dataclasses.replace(PipelineConfig(), **settings)
