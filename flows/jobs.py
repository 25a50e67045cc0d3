"""Jobs the CLI runs: a replay of files through the dataflow into a store."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from detectors import build_detectors
from flows.pipeline import PipelineConfig, ReplaySource, StoreSink, StoreTarget, build_flow, run
from replay.merge import InputSpec, fingerprint
from surveil.refdata import RefData
from surveil.store import connect_readonly


@dataclass
class RunSummary:
    run_id: str
    db_path: str
    events: int
    derived: int  # trades rebuilt from FIX fill pairs (not rows of any input)
    dead_letters: int
    late_events: int
    alerts: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def run_replay(inputs: list[InputSpec], *, db_path: str | Path, ref_dir: str | Path | None = None,
               cfg: PipelineConfig = PipelineConfig(), detector_config: dict | None = None, workers: int = 1,
               archive_dir: str | Path | None = None, progress: Callable[[int], None] | None = None,
               command: str = "replay") -> RunSummary:
    """Replay ``inputs`` (merged in event time) through the full dataflow into ``db_path``."""
    for spec in inputs:
        if not Path(spec.path).is_file():
            raise FileNotFoundError(f"input {spec.path} does not exist")
    ref = RefData.load(ref_dir)
    detectors = build_detectors(detector_config)
    run_id = uuid.uuid4().hex[:16]
    target = StoreTarget(str(db_path), str(archive_dir) if archive_dir else None, run_id, command,
                         [s.path for s in inputs], fingerprint(inputs), str(ref_dir) if ref_dir else None)
    flow = build_flow(ReplaySource(inputs, cfg, progress), ref, detectors, StoreSink(target), cfg)
    t0 = time.perf_counter()
    run(flow, workers=workers)
    seconds = time.perf_counter() - t0
    con = connect_readonly(db_path)
    try:
        events, derived, dead, late, alerts = con.execute(
            "SELECT events_in, events_derived, dead_letters, late_events, alerts FROM runs WHERE run_id = ?",
            [run_id]).fetchone()
    finally:
        con.close()
    return RunSummary(run_id, str(db_path), events, derived, dead, late, alerts, seconds)
