"""The learning detectors on labelled markets: behaviour_anomaly's precision and recall, drift, triage, determinism.

    python bench/bench_behaviour.py                       # 3 seeds x 30 minutes, all parts
    python bench/bench_behaviour.py --seeds 5 --minutes 60 --parts accuracy,clean

Parts (each replays generated markets through the full dataflow, ``flows.jobs.run_replay``):

- ``accuracy``: markets with every episode type (``episode_types="all"``, the novel
  ``quote_flickering`` of ``replay/scenario/episodes_novel.py`` included), once with only
  ``behaviour_anomaly`` on and once with only the rule detectors.  Prints behaviour_anomaly's
  recall per episode type and precision (an alert is true when it overlaps an episode on its
  instrument, naming one of its owners if it names any; the same matching as ``replay.evaluate``,
  whatever the episode's type), the share of the episodes the rules find that it finds too, and
  for the novel type its recall next to how many of its owners any rule detector alerted on.
- ``clean``: a market without episodes or look-alikes: behaviour_anomaly alerts per million events.
- ``drift``: a clean market whose event rate and volatility double halfway: alerts per 5 minutes (each listed)
  and when the drift detector re-based the baselines.
- ``triage``: analysts' dispositions on the rule and behaviour alerts of all seeds but the last
  (true when the alert matches an episode; the chosen detector's alerts on look-alikes false)
  teach ``surveil.triage``; precision@k on the last seed's alerts before and after.
- ``determinism``: the same market replayed with 1 and 2 workers gives the same alert ids and scores.

behaviour_anomaly is off by default (``detectors.OFF_BY_DEFAULT``): the behaviour runs switch it on
(``{"behaviour_anomaly": {}}``) and every rule detector off.  ``quote_flickering`` is part of the
generator's catalogue, so ``episode_types="all"`` markets have it; no rule detector is named after it.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import detectors  # noqa: E402
from detectors.behaviour_anomaly import BehaviourAnomaly  # noqa: E402
from flows.jobs import run_replay  # noqa: E402
from replay.evaluate import _matches, alerts_from_db, load_labels  # noqa: E402
from replay.merge import InputSpec  # noqa: E402
from replay.scenario import ScenarioConfig, generate  # noqa: E402
from replay.scenario.episodes_novel import NAME as NOVEL  # noqa: E402
from surveil.store import connect_readonly  # noqa: E402
from surveil.triage import load_alerts, precision_at_k, rank, triage  # noqa: E402

BA = BehaviourAnomaly.name
TOL_NS = 60 * 10**9
RULES = [n for n in detectors.REGISTRY if n != BA]
ONLY_BA = {**{n: False for n in RULES}, BA: {}}  # off by default: switched on explicitly
ONLY_RULES = {BA: False}


def inputs(market: Path) -> list[InputSpec]:
    return [InputSpec(str(p)) for p in sorted((market / "canonical").glob("*.parquet"))]


def hit(alert: dict, ep: dict) -> bool:
    """The alert points at the episode, whatever detector raised it (replay.evaluate's matching)."""
    return _matches(alert, {**ep, "type": alert["detector"]}, TOL_NS)


def replay(market: Path, db: Path, config: dict, workers: int = 1):
    return run_replay(inputs(market), db_path=db, ref_dir=market / "ref", detector_config=config, workers=workers)


def part_accuracy(tmp: Path, args) -> list[tuple[Path, dict]]:
    per = defaultdict(lambda: [0, 0, 0])  # type -> episodes, found by behaviour, found by rules
    alerts_n = true_n = look_n = events = rule_found = both = novel_any_rule = 0
    runs = []
    for seed in range(args.seeds):
        m = tmp / f"all{seed}"
        generate(m, seed=seed, minutes=args.minutes, events_per_second=args.rate, formats=("canonical",),
                 episode_types="all")
        labels = load_labels(m / "labels.json")
        s = replay(m, m / "ba.duckdb", ONLY_BA)
        replay(m, m / "rules.duckdb", ONLY_RULES)
        events += s.events
        ba, rules = alerts_from_db(m / "ba.duckdb"), alerts_from_db(m / "rules.duckdb")
        for ep in labels["episodes"]:
            got, ruled = any(hit(a, ep) for a in ba), any(_matches(a, ep, TOL_NS) for a in rules)
            t = per[ep["type"]]
            t[0] += 1
            t[1] += got
            t[2] += ruled
            rule_found += ruled
            both += ruled and got
            # the novel type: does any rule detector at all (whatever its name) alert on its owner then?
            novel_any_rule += ep["type"] == NOVEL and any(a["owners"] and hit(a, ep) for a in rules)
        for a in ba:
            alerts_n += 1
            if any(hit(a, ep) for ep in labels["episodes"]):
                true_n += 1
            elif any(hit(a, lk) for lk in labels["lookalikes"]):
                look_n += 1
        runs.append((m, labels))
        print(f"  seed {seed}: {s.events:,} events, {len(ba)} behaviour alerts ({s.seconds:.1f}s), "
              f"{len(rules)} rule alerts", flush=True)
    print(f"\naccuracy: {args.seeds} seeds x {args.minutes:g} min, {events:,} events, rules off")
    print(f"{'episode type':<22}{'episodes':>9}{'behaviour recall':>18}{'rules recall':>14}")
    for t, (n, got, ruled) in sorted(per.items()):
        # the novel type is there for behaviour_anomaly alone; a catalogue type may lack its rule detector today
        note = ("  (novel: no rule is written for it; behaviour_anomaly's alone)" if t == NOVEL else
                "  (no rule detector of this name registered)" if t not in detectors.REGISTRY else "")
        print(f"{t:<22}{n:>9}{got / n:>18.2f}{ruled / n:>14.2f}{note}")
    print(f"behaviour_anomaly precision {true_n}/{alerts_n} = {true_n / max(alerts_n, 1):.2f} "
          f"({look_n} alerts on look-alikes, {alerts_n - true_n - look_n} elsewhere)")
    print(f"episodes the rules find that behaviour_anomaly finds: {both}/{rule_found} = "
          f"{both / max(rule_found, 1):.2f} (target >= 0.70)")
    n, got, ruled = per.get(NOVEL, [0, 0, 0])
    print(f"novel {NOVEL}: behaviour recall {got}/{n}; episodes whose owner any rule detector alerted on: "
          f"{novel_any_rule}/{n}")
    return runs


def part_clean(tmp: Path, args) -> None:
    m = tmp / "clean"
    generate(m, seed=100, minutes=args.minutes, events_per_second=args.rate, formats=("canonical",),
             episode_types="none")
    s = replay(m, m / "ba.duckdb", ONLY_BA)
    print(f"\nclean market: {s.events:,} events, {s.alerts} behaviour alerts = "
          f"{s.alerts / s.events * 1e6:.1f} per million events (target <= 20)")


def _second_half(first: Path, cfg: ScenarioConfig) -> ScenarioConfig:
    """The same population, twice the event rate and volatility, prices continuing where the first half ended."""
    t = pq.read_table(first / "canonical" / "SHARED.parquet", columns=["kind", "instrument", "price"])
    t = t.filter(pc.equal(t.column("kind"), "trade"))
    last = {}
    for inst, px in zip(t.column("instrument").to_pylist(), t.column("price").to_pylist()):
        last[inst] = px
    insts = tuple(dataclasses.replace(i, start_price=last.get(i.instrument, i.start_price),
                                      vol_annual=2 * i.vol_annual) for i in cfg.instruments)
    return dataclasses.replace(cfg, instruments=insts, events_per_second=2 * cfg.events_per_second,
                               start=cfg.end_ns)


def part_drift(tmp: Path, args) -> None:
    half = args.minutes / 2
    a_cfg = ScenarioConfig(seed=200, minutes=half, events_per_second=args.rate, episode_types="none")
    a = tmp / "drift_a"
    generate(a, config=a_cfg, formats=("canonical",))
    b = tmp / "drift_b"
    generate(b, config=_second_half(a, a_cfg), formats=("canonical",))
    m = tmp / "drift"
    (m / "canonical").mkdir(parents=True, exist_ok=True)
    ids = ("trade_id", "order_id", "buy_order_id", "sell_order_id", "exec_id", "client_order_id")
    for venue in ("SHARED", "REFX"):
        ta, tb = pq.read_table(a / "canonical" / f"{venue}.parquet"), pq.read_table(b / "canonical" / f"{venue}.parquet")
        for c in ids:  # the second half's ids must not repeat the first half's
            i = tb.schema.get_field_index(c)
            tb = tb.set_column(i, c, pc.binary_join_element_wise(pa.scalar("h2-"), tb.column(c), ""))
        pq.write_table(pa.concat_tables([ta, tb]), m / "canonical" / f"{venue}.parquet")
    (m / "ref").symlink_to(a / "ref")
    s = replay(m, m / "ba.duckdb", ONLY_BA)
    con = connect_readonly(m / "ba.duckdb")
    try:
        rows = con.execute("SELECT epoch_ns(window_start), summary FROM alerts ORDER BY 1").fetchall()
        starts = [r[0] for r in rows]
        resets = con.execute("SELECT max(CAST(json_extract(metrics, '$.drift_resets') AS INT)) FROM alerts").fetchone()
    finally:
        con.close()
    det = BehaviourAnomaly()
    change = a_cfg.end_ns
    bucket = 5 * 60 * 10**9
    counts = defaultdict(int)
    for t in starts:
        counts[(t - a_cfg.start_ns) // bucket] += 1
    n_buckets = int(args.minutes * 60 * 10**9 // bucket)
    print(f"\ndrift: {s.events:,} events; event rate and volatility x2 at minute {half:g}; "
          f"adaptation period = warm-up of {det.warmup_windows} x {det.window_ms // 1000}s windows after Page-Hinkley "
          f"fires; drift resets seen in alerts: {resets[0] if resets and resets[0] is not None else 'n/a'}")
    print("alerts per 5 min: " + " ".join(f"{counts.get(k, 0)}" + ("|" if (k + 1) * bucket == change - a_cfg.start_ns
                                                                      else "") for k in range(n_buckets)))
    before = sum(1 for t in starts if t < change) / half
    after = [t for t in starts if t >= change]
    spike_end = max(after) if after else change
    print(f"alerts per minute before the change {before:.2f}; after it {len(after) / half:.2f} "
          f"(last one {(spike_end - change) / 60e9:.1f} min after the change)")
    for t, summary in rows:
        print(f"  +{(t - change) / 60e9:5.1f} min: {summary[:150]}")


def part_triage(runs: list[tuple[Path, dict]], args) -> None:
    if len(runs) < 2:
        print("\ntriage: needs --seeds >= 2")
        return
    rows_by_seed, truth_by_seed = [], []
    for m, labels in runs:
        rows = load_alerts(m / "ba.duckdb") + load_alerts(m / "rules.duckdb")
        truth = {}
        for r in rows:
            a = {**r, "owners": r["owners"] or []}
            truth[r["alert_id"]] = any(_matches(a, ep, TOL_NS) if r["detector"] != BA else hit(a, ep)
                                       for ep in labels["episodes"])
        rows_by_seed.append(rows)
        truth_by_seed.append((truth, labels))
    # the detector whose look-alike alerts the analysts keep dismissing: the one with most of them
    looks = defaultdict(int)
    for rows, (truth, labels) in zip(rows_by_seed, truth_by_seed):
        for r in rows:
            a = {**r, "owners": r["owners"] or []}
            if not truth[r["alert_id"]] and any(hit(a, lk) for lk in labels["lookalikes"]):
                looks[r["detector"]] += 1
    target = max(looks, key=looks.get) if looks else BA
    train = [r for rows in rows_by_seed[:-1] for r in rows]
    dispositions = [(r["alert_id"], truth_by_seed[i][0][r["alert_id"]])
                    for i, rows in enumerate(rows_by_seed[:-1]) for r in rows]
    test, test_truth = rows_by_seed[-1], truth_by_seed[-1][0]
    by_score = {r["alert_id"]: r["score"] for r in test}
    before = rank(triage(test, []), by_score)
    after = rank([s for s in triage(train + test, dispositions) if s.alert_id in test_truth], by_score)
    print(f"\ntriage: {len(dispositions)} dispositions from {len(runs) - 1} seed(s) "
          f"({sum(y for _, y in dispositions)} true; most dismissed look-alikes: {target}, {looks.get(target, 0)}); "
          f"scored {len(test)} alerts of the last seed ({sum(test_truth.values())} true)")
    for k in (5, 10, 20):
        print(f"  precision@{k}: before {precision_at_k(before, test_truth, k):.2f}  "
              f"after {precision_at_k(after, test_truth, k):.2f}")
    t_ids = [r["alert_id"] for r in test if r["detector"] == target]
    if t_ids:
        sub_truth = {a: test_truth[a] for a in t_ids}
        k = min(5, len(t_ids))
        pb = precision_at_k([a for a in before if a in sub_truth], sub_truth, k)
        pa_ = precision_at_k([a for a in after if a in sub_truth], sub_truth, k)
        print(f"  {target} alerts only (k={k}): before {pb:.2f}  after {pa_:.2f}")


def part_determinism(tmp: Path, args) -> None:
    m = tmp / "det"
    generate(m, seed=300, minutes=min(args.minutes, 15), events_per_second=args.rate, formats=("canonical",),
             episode_types="all")
    got = []
    for w in (1, 2):
        db = m / f"w{w}.duckdb"
        replay(m, db, ONLY_BA, workers=w)
        con = connect_readonly(db)
        try:
            got.append(con.execute("SELECT alert_id, score, summary FROM alerts ORDER BY alert_id").fetchall())
        finally:
            con.close()
    print(f"\ndeterminism: {len(got[0])} alerts with 1 worker, {len(got[1])} with 2; identical ids, scores "
          f"and summaries: {got[0] == got[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=400, help="events per second in each market")
    ap.add_argument("--parts", default="accuracy,clean,drift,triage,determinism")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="surveil-behaviour-") as d:
        tmp = Path(d)
        runs = part_accuracy(tmp, args) if parts & {"accuracy", "triage"} else []
        if "clean" in parts:
            part_clean(tmp, args)
        if "drift" in parts:
            part_drift(tmp, args)
        if "triage" in parts:
            part_triage(runs, args)
        if "determinism" in parts:
            part_determinism(tmp, args)
    print(f"\n({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
