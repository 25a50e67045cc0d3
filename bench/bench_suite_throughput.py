"""Throughput of the whole detector suite against the foundation's two detectors, same replay.

    python bench/bench_suite_throughput.py                 # 60 min × 400 events/s, every episode type (~1.4M events)
    python bench/bench_suite_throughput.py --minutes 30    # quicker

One generated market (``--episodes all``: every labelled type and look-alike, so each
detector has work to do), replayed end to end (canonical Parquet -> dataflow -> detectors ->
DuckDB + archive, ``flows.jobs.run_replay``) twice: with only ``wash_trade`` and
``price_dislocation`` (the foundation) and with every registered detector.  Both runs are
children of one bench process, one after the other, so they share the machine's conditions;
each child's peak RSS (``VmHWM``, bench/_common.py) is its own.  ``--repeat`` alternates the pair
and keeps each side's best, which damps the noise of a shared machine.  Target: suite /
foundation events/s >= 0.5.
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

from _common import detector_config, peak_rss_mb  # noqa: E402

TARGET_RATIO = 0.5


def _run(market: str, db: str, which: str) -> dict:
    from detectors import build_detectors
    from flows.jobs import run_replay
    from replay.merge import InputSpec

    config = detector_config(which)
    inputs = [InputSpec(str(p)) for p in sorted(Path(market, "canonical").glob("*.parquet"))]
    s = run_replay(inputs, db_path=db, ref_dir=Path(market, "ref"), detector_config=config)
    detectors = sorted(d.name for d in build_detectors(config))  # what ran (some are off by default)
    return {"events": s.events, "seconds": s.seconds, "alerts": s.alerts, "detectors": detectors,
            "rss_mb": peak_rss_mb()}


def child(market: Path, work: Path, which: str, k: int) -> dict:
    """One replay in a fresh interpreter (its own peak RSS) into an empty store."""
    db = work / f"{which}{k}.duckdb"
    for p in work.glob(db.name + "*"):
        p.unlink()
    shutil.rmtree(work / f"{which}{k}.archive", ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, "--child", str(market), str(db), which], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    for p in work.glob(db.name + "*"):  # disk stays one store at a time
        p.unlink()
    shutil.rmtree(work / f"{which}{k}.archive", ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=float, default=400, help="events per second in the generated market")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two runs this many times; best of each")
    ap.add_argument("--workdir", help="keep the generated market here (default: a temporary directory)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_run(*args.child)))
        return

    from replay.scenario import generate

    work = Path(args.workdir or tempfile.mkdtemp(prefix="surveil-suite-"))
    market = work / "market"
    try:
        t0 = time.perf_counter()
        if not (market / "labels.json").exists():
            generate(market, seed=args.seed, minutes=args.minutes, events_per_second=args.rate,
                     formats=("canonical",), episode_types="all")
        print(f"market: {market} ({args.minutes:g} min, --episodes all, ready in {time.perf_counter() - t0:.1f}s)",
              flush=True)
        best: dict[str, dict] = {}
        for k in range(args.repeat):
            for which in ("foundation", "suite"):
                r = child(market, work, which, k)
                r["rate"] = r["events"] / r["seconds"]
                print(f"  run {k + 1} {which}: {r['events']:,} events in {r['seconds']:.1f}s = {r['rate']:,.0f} events/s, "
                      f"peak RSS {r['rss_mb']:,.0f} MB, {r['alerts']} alerts", flush=True)
                if which not in best or r["rate"] > best[which]["rate"]:
                    best[which] = r
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    f, s = best["foundation"], best["suite"]
    print(f"\n{'replay':<12}{'detectors':>10}{'events':>12}{'seconds':>10}{'events/s':>12}{'peak RSS MB':>13}{'alerts':>8}")
    for name, r in (("foundation", f), ("suite", s)):
        print(f"{name:<12}{len(r['detectors']):>10}{r['events']:>12,}{r['seconds']:>10.2f}{r['rate']:>12,.0f}"
              f"{r['rss_mb']:>13,.0f}{r['alerts']:>8}")
    ratio = s["rate"] / f["rate"]
    print(f"\nsuite / foundation throughput: {ratio:.2f}  (target >= {TARGET_RATIO}: "
          f"{'ok' if ratio >= TARGET_RATIO else 'MISS'})")
    print(f"suite: {', '.join(s['detectors'])}")


if __name__ == "__main__":
    main()
