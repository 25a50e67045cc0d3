"""Detection quality against labelled scenarios: precision, recall and F1 per detector.

    python bench/bench_accuracy.py                 # 5 seeds × 30 minutes
    python bench/bench_accuracy.py --seeds 10 --minutes 60

Each seed is a fresh market (with its look-alikes: brief spikes, small sustained gaps,
owners active on both platforms, unlinked owners trading repeatedly with each other),
replayed from its canonical Parquet through the full dataflow; alerts are matched to
``labels.json`` by ``replay.evaluate``.  Also prints the alerts raised on the
look-alikes, which count as false positives.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.jobs import run_replay  # noqa: E402
from replay.evaluate import _matches, alerts_from_db, load_labels, score  # noqa: E402
from replay.merge import InputSpec  # noqa: E402
from replay.scenario import generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=400, help="events per second in each market")
    args = ap.parse_args()

    totals: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    lookalike_hits: dict[str, int] = defaultdict(int)
    events = 0
    with tempfile.TemporaryDirectory(prefix="surveil-accuracy-") as tmp:
        for seed in range(args.seeds):
            market = Path(tmp, f"seed{seed}")
            generate(market, seed=seed, minutes=args.minutes, events_per_second=args.rate, formats=("canonical",))
            db = market / "s.duckdb"
            s = run_replay([InputSpec(str(p)) for p in sorted((market / "canonical").glob("*.parquet"))],
                           db_path=db, ref_dir=market / "ref")
            events += s.events
            labels = load_labels(market / "labels.json")
            alerts = alerts_from_db(db)
            for det, sc in score(alerts, labels).items():
                for k in ("alerts", "episodes", "true_alerts", "found"):
                    totals[det][k] += sc[k]
            for lk in labels.get("lookalikes", []):
                hit = [a for a in alerts if _matches(a, {**lk, "type": a["detector"]}, 0)
                       and not any(_matches(a, ep, 60 * 10**9) for ep in labels["episodes"])]
                lookalike_hits[lk["type"]] += len(hit)
            print(f"seed {seed}: {s.events:,} events, {len(alerts)} alerts", flush=True)

    print(f"\n{args.seeds} seeds × {args.minutes:g} minutes, {events:,} events")
    print(f"{'detector':<20}{'episodes':>9}{'alerts':>8}{'precision':>11}{'recall':>8}{'F1':>7}")
    for det, t in sorted(totals.items()):
        p = t["true_alerts"] / t["alerts"] if t["alerts"] else float("nan")
        r = t["found"] / t["episodes"] if t["episodes"] else float("nan")
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        print(f"{det:<20}{t['episodes']:>9}{t['alerts']:>8}{p:>11.3f}{r:>8.3f}{f1:>7.3f}")
    print("\nalerts on look-alikes (false positives):", dict(lookalike_hits) or "none")


if __name__ == "__main__":
    main()
