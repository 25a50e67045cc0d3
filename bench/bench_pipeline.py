"""End-to-end throughput and memory: canonical Parquet → dataflow → detectors → DuckDB + archive.

    python bench/bench_pipeline.py                  # 5M+ events (60 minutes at ~1400 events/s)
    python bench/bench_pipeline.py --minutes 5      # quick look
    python bench/bench_pipeline.py --detectors all  # every registered detector, not the foundation's two

Prints events/s for the Arrow-batch pipeline, the same pipeline fed one Python dict
per event (the baseline, on a prefix of the same events, in the same run), their
ratio, and each run's peak RSS.  Each measured run is its own child process, so
its peak RSS is its own.  Figures only: no assertion on speed.

By default the detectors are the foundation's two (``wash_trade``, ``price_dislocation``): this
is the foundation's end-to-end figure, the one its targets are set for.  The whole suite's cost
against it is ``bench/bench_suite_throughput.py``'s.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import FOUNDATION, detector_config, peak_rss_mb  # noqa: E402


def _arrow_run(market: str, db: str, which: str, batch_rows: int, shards: int) -> dict:
    from flows.jobs import run_replay
    from flows.pipeline import PipelineConfig
    from replay.merge import InputSpec

    inputs = [InputSpec(str(p)) for p in sorted(Path(market, "canonical").glob("*.parquet"))]
    s = run_replay(inputs, db_path=db, ref_dir=Path(market, "ref"), cfg=PipelineConfig(batch_rows=batch_rows, shards=shards),
                   detector_config=detector_config(which))
    return {"events": s.events, "seconds": s.seconds, "alerts": s.alerts,
            "rss_mb": peak_rss_mb()}


def _dict_run(market: str, db: str, which: str, n: int, shards: int) -> dict:
    """The same dataflow, its source emitting one Python dict per event (converted to a 1-row batch)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bytewax.inputs import DynamicSource, StatelessSourcePartition

    from detectors import build_detectors
    from flows.pipeline import PipelineConfig, StoreSink, StoreTarget, build_flow, run
    from surveil.refdata import RefData
    from surveil.schemas import EVENT_SCHEMA, sort_events, to_rows

    tables = [pq.read_table(p) for p in sorted(Path(market, "canonical").glob("*.parquet"))]
    rows = to_rows(sort_events(pa.concat_tables(tables)).slice(0, n))
    del tables

    class Part(StatelessSourcePartition):
        def __init__(self):
            self.it = iter(rows)

        def next_batch(self):
            d = next(self.it)  # StopIteration ends the input
            return [("events", pa.Table.from_pylist([d], schema=EVENT_SCHEMA))]

    class Source(DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            return Part()

    cfg = PipelineConfig(batch_rows=1, shards=shards)
    flow = build_flow(Source(), RefData.load(Path(market, "ref")), build_detectors(detector_config(which)),
                      StoreSink(StoreTarget(db)), cfg)
    t0 = time.perf_counter()
    run(flow)
    return {"events": len(rows), "seconds": time.perf_counter() - t0,
            "rss_mb": peak_rss_mb()}


_CHILDREN = {"arrow": _arrow_run, "dict": _dict_run}


def child(name: str, *args) -> dict:
    """Run one measurement in a fresh interpreter, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "--child", name, *map(str, args)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=float, default=1420, help="events per second in the generated market")
    ap.add_argument("--batch-rows", type=int, default=65_536)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--baseline-events", type=int, default=20_000)
    ap.add_argument("--detectors", choices=("foundation", "all"), default="foundation",
                    help="the foundation's two detectors (default) or every registered one")
    ap.add_argument("--workdir", help="keep the generated market here (default: a temporary directory)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, market, db, which, *rest = args.child
        print(json.dumps(_CHILDREN[name](market, db, which, *map(int, rest))))
        return

    from replay.scenario import generate

    work = Path(args.workdir or tempfile.mkdtemp(prefix="surveil-bench-"))
    market = work / "market"
    t0 = time.perf_counter()
    if not (market / "labels.json").exists():
        generate(market, seed=1, minutes=args.minutes, events_per_second=args.rate, formats=("canonical",))
    print(f"market: {market} (generated in {time.perf_counter() - t0:.1f}s)")

    for old in ("arrow.duckdb", "dict.duckdb"):  # each measurement starts from an empty store
        for path in work.glob(old + "*"):
            path.unlink()
        shutil.rmtree(work / old.replace(".duckdb", ".archive"), ignore_errors=True)
    arrow = child("arrow", str(market), str(work / "arrow.duckdb"), args.detectors, args.batch_rows, args.shards)
    base = child("dict", str(market), str(work / "dict.duckdb"), args.detectors, args.baseline_events, args.shards)
    a_rate = arrow["events"] / arrow["seconds"]
    b_rate = base["events"] / base["seconds"]
    print(f"\n{'pipeline':<38}{'events':>12}{'seconds':>10}{'events/s':>14}{'peak RSS MB':>14}")
    print(f"{'Arrow batches of ' + str(args.batch_rows) + ' rows':<38}{arrow['events']:>12,}{arrow['seconds']:>10.2f}"
          f"{a_rate:>14,.0f}{arrow['rss_mb']:>14,.0f}")
    print(f"{'one Python dict per event (baseline)':<38}{base['events']:>12,}{base['seconds']:>10.2f}"
          f"{b_rate:>14,.0f}{base['rss_mb']:>14,.0f}")
    print(f"\nratio Arrow / per-event: {a_rate / b_rate:,.1f}×   alerts: {arrow['alerts']}   shards: {args.shards}   "
          f"detectors: {', '.join(FOUNDATION) if args.detectors == 'foundation' else 'all registered'}")


if __name__ == "__main__":
    main()
