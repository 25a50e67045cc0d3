"""``python -m replay.scenario OUT_DIR [--seed N] [--minutes M] [--eps E] [--formats canonical,fix,tardis]
[--episodes default|all|TYPE,...] [--lookalikes TYPE,...|none]``.

``--episodes all`` is the detector benchmark's market: every type of the catalogue, each on
its own stretch of an instrument's time (give it 30 minutes or more so every type fits).
"""
from __future__ import annotations

import argparse
import sys
import time

from . import FORMATS, generate
from .config import DEFAULT_START


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replay.scenario", description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--eps", type=float, default=1500, help="events per second (all venues and kinds)")
    ap.add_argument("--start", default=DEFAULT_START)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--episodes", default="default", help="default, all, or a comma-separated list of types")
    ap.add_argument("--lookalikes", default=None, help="comma-separated look-alike types, all or none "
                    "(default: those of the chosen episode types)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    s = generate(args.out_dir, seed=args.seed, minutes=args.minutes, events_per_second=args.eps, start=args.start,
                 formats=tuple(f for f in args.formats.split(",") if f), episode_types=args.episodes,
                 lookalike_types=args.lookalikes)
    wall = time.perf_counter() - t0
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in s.seconds.items())
    print(f"{s.n_events:,} events in {wall:.2f}s ({s.n_events / wall:,.0f} events/s; {stages})")
    print(f"counts: {s.counts}")
    print(f"episodes: {len(s.episodes)}, look-alikes: {len(s.lookalikes)} -> {s.out_dir / 'labels.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
