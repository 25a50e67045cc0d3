"""Volume-authenticity statistics of the real trade tapes, per venue, instrument and UTC day.

    python bench/bench_volume_authenticity.py                  # every day with >= 50 trades
    python bench/bench_volume_authenticity.py --alerts-only
    python bench/bench_volume_authenticity.py --min-score 0.4 --min-trades 300

Reads ../shared/data: the Binance SYM/BTC ccxt tapes of pump-trades-moura and pump-trades-pugoev
(venue BINANCE) and the tardis trade CSVs of exchange-msg-samples.  Each (venue, instrument, day)
is fed through ``VolumeAuthenticity.update`` on a fresh state in chunks of 5,000 trades (days are
independent, so this is what the streaming run sees at the day's last trade) and its
``report`` printed.  Tapes overlap (two windows around pumps of the same coin): a day present in
several tapes is taken from the one holding most of its trades.  ``pump`` marks the day of the
announced pump-and-dump (from the file name).  Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import decode_file  # noqa: E402
from detectors.volume_authenticity import DAY_NS, VolumeAuthenticity  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def inputs() -> list[tuple[Path, str | None, str | None]]:
    """(file, venue to pass the decoder, pump day 'YYYY-MM-DD' or None)."""
    out = []
    for folder in ("pump-trades-moura", "pump-trades-pugoev"):
        for p in sorted((DATA / folder / "trades").glob("*.csv.gz")):
            out.append((p, "BINANCE", p.name.split("_")[1]))
    for p in sorted((DATA / "exchange-msg-samples" / "tardis-csv").glob("*trades*")):
        out.append((p, None, None))
    return out


def trades_of(path: Path, venue: str | None) -> pa.Table:
    det = VolumeAuthenticity()
    parts = [det.select(d.events) for d in decode_file(path, venue=venue)]
    t = pa.concat_tables(parts)
    # tardis rows carry no canonical instrument (no reference data here): key on the venue symbol
    inst = pc.coalesce(t.column("instrument"), t.column("venue_symbol"))
    t = t.set_column(t.schema.get_field_index("instrument"), "instrument", inst)
    return t.take(pc.sort_indices(t, [("ts", "ascending"), ("src_seq", "ascending")]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts-only", action="store_true")
    ap.add_argument("--show-min-trades", type=int, default=50, help="print days with at least this many trades")
    ap.add_argument("--min-score", type=float, default=None)
    ap.add_argument("--min-trades", type=int, default=None)
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not present (the real tapes live in ../shared/data, absent from a user's clone)")
        return
    kw = {k: v for k, v in (("min_score", args.min_score), ("min_trades", args.min_trades)) if v is not None}
    det = VolumeAuthenticity(**kw)
    t0 = time.perf_counter()
    days: dict[tuple[str, str, int], dict] = {}
    total = 0
    for path, venue, pump in inputs():
        t = trades_of(path, venue)
        total += t.num_rows
        day = t.column("ts").cast(pa.int64()).to_numpy() // DAY_NS
        keys = pc.binary_join_element_wise(t.column("venue"), t.column("instrument"), "|").to_numpy(zero_copy_only=False)
        for key in np.unique(keys):
            for d in np.unique(day[keys == key]):
                rows = t.filter(pa.array((keys == key) & (day == d)))
                st, alerts = det.new_state(), []
                for s in range(0, rows.num_rows, 5000):
                    alerts = det.update(st, rows.slice(s, 5000)) or alerts
                if st.n < 10:
                    continue
                v, inst = str(key).split("|", 1)
                dstr = np.datetime64(int(d) * 86_400, "s").astype("datetime64[D]").astype(str)
                prev = days.get((v, inst, int(d)))
                if prev is None or st.n > prev["trades"]:
                    days[(v, inst, int(d))] = {**det.report(st), "alert": bool(alerts), "pump": dstr == pump,
                                               "day": dstr, "file": path.name,
                                               "peak": st.peak_score, "fired_at": st.fired_n}
    secs = time.perf_counter() - t0

    hdr = (f"{'venue':<16}{'instrument':<12}{'day':<11}{'trades':>7}{'chi2':>9}{'p':>9}{'MAD':>7}{'round':>7}"
           f"{'expect':>8}{'unit':>8}{'alpha':>7}{'sB':>5}{'sR':>5}{'sT':>5}{'score':>6}{'peak':>6}  flags")
    print(hdr)
    for (v, inst, _), r in sorted(days.items()):
        if r["trades"] < args.show_min_trades or (args.alerts_only and not r["alert"]):
            continue
        alert = f"ALERT@{r['fired_at']}" if r["alert"] else ""
        flags = " ".join(f for f, on in ((alert, r["alert"]), ("pump", r["pump"]),
                                         ("(few)", r["trades"] < det.min_trades)) if on)
        print(f"{v:<16}{inst:<12}{r['day']:<11}{r['trades']:>7}{r['chi2']:>9.1f}{r['p_value']:>9.1e}{r['mad']:>7.4f}"
              f"{r['round_share']:>7.3f}{r['round_expected']:>8.4f}{r['round_unit']:>8g}{r['hill_alpha']:>7.2f}"
              f"{r['score_benford']:>5.2f}{r['score_round']:>5.2f}{r['score_tail']:>5.2f}{r['score']:>6.3f}{r['peak']:>6.2f}"
              f"  {flags}")

    judged = [r for r in days.values() if r["trades"] >= det.min_trades]
    if not judged:
        print("no day reached min_trades")
        return
    q = lambda name: np.percentile([r[name] for r in judged], [1, 5, 50, 95, 99])  # noqa: E731
    alerts = [r for r in judged if r["alert"]]
    pumps = [r for r in judged if r["pump"]]
    print(f"\n{total:,} trades, {len(days)} venue/instrument/days ({len(judged)} with >= {det.min_trades} trades), "
          f"{len(alerts)} alerts ({sum(r['pump'] for r in alerts)} on the {len(pumps)} pump days; "
          f"{sum(r['score'] < det.min_score for r in alerts)} fired on an intraday stretch the whole day dilutes), "
          f"{secs:.1f}s")
    for name in ("mad", "mad_excess", "round_excess", "round_ratio", "hill_alpha", "score"):
        print(f"  {name:<13}" + "".join(f" {lab} {v:9.4f}" for lab, v in zip(("p1", "p5", "median", "p95", "p99"), q(name))))
    print(f"  Nigrini first-digit MAD classes: "
          + ", ".join(f"{lab} {sum(lo <= r['mad'] < hi for r in judged)}" for lab, lo, hi in
                      (("close", 0, .006), ("acceptable", .006, .012), ("marginal", .012, .015), ("nonconforming", .015, 9))))
    print(f"  parameters: {det!r}")


if __name__ == "__main__":
    main()
