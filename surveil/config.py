"""Typed configuration from one TOML file, validated before anything starts.

```toml
[pipeline]
max_lateness_ms = 5000     # events further behind the newest seen go to late_events
pair_window_ms = 1000      # FIX fills of one match must arrive within this of each other
batch_rows = 65536         # rows per Arrow batch on every arrow of the dataflow
shards = 8                 # detector state shards (spread over Bytewax workers)

[detectors.price_dislocation]
threshold_bps = 50.0
min_duration_ms = 30000

[detectors.wash_trade]
enabled = true
```
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors import build_detectors


class ConfigError(ValueError):
    """The configuration file is unreadable or holds an invalid setting; the message says which."""


@dataclass(frozen=True)
class SurveilConfig:
    pipeline: dict[str, Any] = field(default_factory=dict)
    detectors: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path | None) -> SurveilConfig:
    """Read and validate a TOML configuration (None: all defaults)."""
    if path is None:
        return SurveilConfig()
    p = Path(path)
    raw = read_toml(p)
    unknown = sorted(set(raw) - {"pipeline", "detectors"})
    if unknown:
        raise ConfigError(f"{p}: unknown section(s) {', '.join(unknown)}; known: pipeline, detectors")
    pipeline = raw.get("pipeline", {})
    check_pipeline(pipeline, f"{p}: [pipeline]")
    check_detectors(raw.get("detectors", {}), str(p))
    return SurveilConfig(pipeline=pipeline, detectors=raw.get("detectors", {}))


def read_toml(p: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e


def check_pipeline(pipeline: dict[str, Any], where: str) -> None:
    """Each [pipeline] setting is known and of its default's type, and the whole is valid."""
    from flows.pipeline import PipelineConfig  # the pipeline's own dataclass is the schema of [pipeline]

    fields = {f.name: f for f in dataclasses.fields(PipelineConfig)}
    for k, v in pipeline.items():
        if k not in fields:
            raise ConfigError(f"{where} has no setting {k!r}; settings: {', '.join(fields)}")
        default = fields[k].default
        if default is not None and not isinstance(v, type(default)) or isinstance(v, bool):
            raise ConfigError(f"{where} {k} must be {type(default).__name__}, got {v!r}")
    try:
        PipelineConfig(**pipeline)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def check_detectors(detectors: dict[str, Any], where: str) -> None:
    try:
        build_detectors(detectors)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from e
