"""Decode throughput of every file decoder: ``python bench/bench_decoders.py [--scale 0.1]``.

Writes synthetic files of each format in a temporary directory (500k FIX ExecutionReports,
1M rows each of tardis trades, Binance and ccxt, smaller canonical files), decodes each with
``connectors.decode_file`` and prints events/s and MB/s (wall clock, and CPU time of this
process, which is steadier on a shared machine).  Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import gzip
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import decode_file  # noqa: E402
from connectors.fix import encode_message  # noqa: E402

T0_MS = 1_704_412_800_000  # 2024-01-05 00:00 UTC


def write_fix(path: Path, n: int) -> None:
    """Drop copy of two platforms: new / fill / cancel reports, ~2% heartbeats, µs times."""
    rnd = random.Random(1)
    lines = []
    t_us = T0_MS * 1000 + 9 * 3600 * 10**6
    for i in range(n):
        t_us += rnd.randrange(1, 8)  # a few hundred thousand reports per second of market time
        secs, us = divmod(t_us, 10**6)
        stamp = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(secs)) + ".%06d" % us
        if i % 50 == 49:
            lines.append(encode_message([(35, "0"), (49, "PLATA"), (56, "SURVEIL"), (34, str(i)), (52, stamp)]))
            continue
        exec_type = "0F4"[i % 3]
        fields = [(35, "8"), (49, "PLAT" + "AB"[i & 1]), (56, "SURVEIL"), (34, str(i)), (52, stamp),
                  (1, f"ACC{rnd.randrange(5000):05d}"), (11, f"CL{i}"), (37, f"ORD{i // 3}"), (17, f"EX{i}"),
                  (150, exec_type), (39, "0"), (55, "BTC/USDT"), (207, "XSHR"), (54, "12"[rnd.randrange(2)]),
                  (38, "%.4f" % (0.001 + rnd.random() * 3)), (40, "2"), (44, "%.2f" % (42000 + rnd.random() * 100)),
                  (59, "1"), (151, "1.0"), (60, stamp)]
        if exec_type == "F":
            fields += [(32, "0.1000"), (31, "42010.50"), (880, f"M{i}"), (1057, "YN"[i & 1]), (30, "XSHR")]
        lines.append(encode_message(fields))
    path.write_bytes(b"\n".join(lines) + b"\n")


def _columns(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t_ms = T0_MS + np.cumsum(rng.integers(0, 40, n))
    return {
        "t_ms": t_ms,
        "price": np.round(42000 + np.cumsum(rng.normal(0, 0.5, n)), 2),
        "qty": np.round(rng.exponential(0.05, n) + 0.0001, 4),
        "buy": rng.random(n) < 0.5,
    }


def write_tardis(path: Path, n: int, rng: np.random.Generator) -> None:
    c = _columns(n, rng)
    t_us = c["t_ms"] * 1000
    pv.write_csv(pa.table({
        "exchange": pa.array(["binance-futures"] * n), "symbol": pa.array(["BTCUSDT"] * n),
        "timestamp": t_us, "local_timestamp": t_us + rng.integers(50_000, 300_000, n),
        "id": np.arange(42_000_000, 42_000_000 + n), "side": np.where(c["buy"], "buy", "sell"),
        "price": c["price"], "amount": c["qty"],
    }), path, pv.WriteOptions(quoting_style="none"))


def write_binance(path: Path, n: int, rng: np.random.Generator) -> None:
    c = _columns(n, rng)
    pv.write_csv(pa.table({
        "id": np.arange(3_355_510_000, 3_355_510_000 + n), "price": c["price"], "qty": c["qty"],
        "quote_qty": np.round(c["price"] * c["qty"], 6), "time": c["t_ms"], "is_buyer_maker": ~c["buy"],
        "is_best_match": np.ones(n, dtype=bool),
    }), path, pv.WriteOptions(include_header=False, quoting_style="none"))


def write_ccxt(path: Path, n: int, rng: np.random.Generator) -> None:
    c = _columns(n, rng)
    iso = pa.array(c["t_ms"], pa.int64()).cast(pa.timestamp("ms")).cast(pa.string())
    pv.write_csv(pa.table({
        "symbol": pa.array(["BTC/USDT"] * n), "timestamp": c["t_ms"], "datetime": iso,
        "side": np.where(c["buy"], "buy", "sell"), "price": c["price"], "amount": c["qty"],
        "cost": np.round(c["price"] * c["qty"], 6),
    }), path, pv.WriteOptions(quoting_style="none"))


def canonical_table(n: int, rng: np.random.Generator) -> pa.Table:
    c = _columns(n, rng)
    return pa.table({
        "ts": c["t_ms"] * 1_000_000, "kind": pa.array(["trade"] * n), "venue": pa.array(["XSHR"] * n),
        "venue_symbol": pa.array(["BTC/USDT"] * n), "price": c["price"], "qty": c["qty"],
        "side": np.where(c["buy"], "buy", "sell"), "trade_id": pa.array(np.arange(n)).cast(pa.string()),
    })


def measure(path: Path, **kw) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    events = dead = 0
    for chunk in decode_file(path, **kw):
        events += chunk.events.num_rows
        dead += chunk.dead.num_rows
    if dead:
        print(f"  ({path.name}: {dead} dead letters)")
    return events, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every file's row count")
    ap.add_argument("--repeat", type=int, default=2, help="decode each file this many times, keep the best")
    args = ap.parse_args()
    size = lambda n: max(1000, int(n * args.scale))  # noqa: E731
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print(f"writing files in {d} ...", flush=True)
        cases = []
        write_fix(d / "dropcopy.fix", size(500_000))
        cases.append(("fix", d / "dropcopy.fix", {}))
        write_tardis(d / "tardis_trades.csv", size(1_000_000), rng)
        cases.append(("tardis", d / "tardis_trades.csv", {}))
        write_binance(d / "BTCUSDT-trades-2024-01-05.csv", size(1_000_000), rng)
        cases.append(("binance", d / "BTCUSDT-trades-2024-01-05.csv", {"venue": "binance"}))
        write_ccxt(d / "tape.csv", size(1_000_000), rng)
        cases.append(("ccxt", d / "tape.csv", {"venue": "binance"}))
        (d / "tape.csv.gz").write_bytes(gzip.compress((d / "tape.csv").read_bytes(), 6))
        cases.append(("ccxt (gzip)", d / "tape.csv.gz", {"venue": "binance"}))
        table = canonical_table(size(1_000_000), rng)
        pq.write_table(table, d / "events.parquet")
        cases.append(("canonical parquet", d / "events.parquet", {}))
        pv.write_csv(table, d / "events.csv", pv.WriteOptions(quoting_style="none"))
        cases.append(("canonical csv", d / "events.csv", {}))
        small = table.slice(0, size(200_000))
        (d / "events.jsonl").write_bytes(b"".join(
            b'{"ts":%d,"kind":"trade","venue":"XSHR","venue_symbol":"BTC/USDT","price":%r,"qty":%r,"side":"%s"}\n'
            % (r["ts"], r["price"], r["qty"], r["side"].encode()) for r in small.to_pylist()))
        cases.append(("canonical jsonl", d / "events.jsonl", {}))

        print(f"{'decoder':<20}{'events':>10}{'MB':>8}{'wall s':>8}{'events/s':>12}{'MB/s':>8}{'cpu events/s':>14}")
        for name, path, kw in cases:
            runs = [measure(path, **kw) for _ in range(args.repeat)]
            events, wall, cpu = min(runs, key=lambda r: r[1])
            cpu = min(r[2] for r in runs)
            mb = os.path.getsize(path) / 1e6
            print(f"{name:<20}{events:>10,}{mb:>8.1f}{wall:>8.2f}{events / wall:>12,.0f}{mb / wall:>8.1f}"
                  f"{events / max(cpu, 1e-9):>14,.0f}", flush=True)


if __name__ == "__main__":
    main()
