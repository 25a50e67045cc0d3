"""The daemon fed at fixed rates from a local Kafka producer: latency to committed alert, sustained rate, RSS.

    python bench/bench_daemon.py                       # 10k and 50k events/s for 60 s each, then the max
    python bench/bench_daemon.py --rates 50000 --seconds 600   # the 10-minute RSS run
    python bench/bench_daemon.py --detectors foundation      # transports, timeline and store with two detectors

``--detectors foundation`` runs only ``wash_trade`` and ``price_dislocation``: the daemon's own
ceiling (Kafka, decoding, timeline, store) apart from what the rest of the suite costs.

A producer thread in this process writes canonical JSON trades to a topic of librdkafka's
mock cluster at a fixed rate, stamped with the wall clock (``ts`` = send time), for three
instruments on the shared book between accounts of both platforms; one trade a second is
a cross-platform self-match (a wash trade), so the ``wash_trade`` alert is revised once a
second.  ``surveil run`` (a child process, every detector on by default) reads the topic.  From its
``/metrics``:

* latency: ``surveil_alert_latency_seconds`` — the wash trade's send time (its event time)
  to the alert revision being committed to DuckDB; p50/p99 interpolated in the histogram's
  buckets, max bounded by the bucket holding it;
* batch latency: ``surveil_batch_latency_seconds`` — a batch's newest event received to its
  rows archived (every event's path through the dataflow, detectors or not);
* sustained rate: events the daemon decoded per second over the run, against the rate
  offered, and Kafka consumer lag at the end (``bytewax_kafka_consumer_lag``);
* RSS of the daemon process after warm-up and at the end (``/proc/<pid>/status``).

Lateness is 50 ms (one in-order source): the timeline holds each event that long before
detectors see it, which is part of the latency measured.
"""
from __future__ import annotations

import argparse
import csv
import logging
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.daemon.harness import Daemon, free_port, http_get, metric, write_config  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from _common import FOUNDATION  # noqa: E402

INSTRUMENTS = (("BTC-USDT", 60_000.0), ("ETH-USDT", 3_000.0), ("SOL-USDT", 150.0))


def write_ref(ref: Path, owners: int = 200) -> list[tuple[str, str]]:
    """Reference data: the shared book's instruments; every owner has one account on each platform."""
    ref.mkdir(parents=True)
    with open(ref / "instruments.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["venue", "venue_symbol", "instrument", "tick_size", "lot_size"])
        for sym, _ in INSTRUMENTS:
            w.writerow(["SHARED", sym, sym.replace("-", "/"), 0.01, 0.0001])
    accounts = []
    with open(ref / "accounts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["platform", "account", "owner_id"])
        for i in range(owners):
            for platform in ("HKVATP", "OVSAFF"):
                acct = f"{platform[:2]}-{i:05d}"
                w.writerow([platform, acct, f"O{i:05d}"])
                accounts.append((platform, acct))
    (ref / "owner_links.csv").write_text("owner_id,group_id\n")
    return accounts


class Producer(threading.Thread):
    """Canonical JSON trades at ``rate`` per second for ``seconds``; one wash trade a second."""

    def __init__(self, producer, topic: str, rate: int, seconds: float, accounts: list[tuple[str, str]]):
        super().__init__(daemon=True)
        self.p, self.topic, self.rate, self.seconds, self.accounts = producer, topic, rate, seconds, accounts
        self.sent = 0

    def run(self) -> None:
        n_acc = len(self.accounts)
        rng = random.Random(self.rate)
        t0 = time.perf_counter()
        tick = 0.01  # send in 10 ms slices
        per_tick = max(1, int(self.rate * tick))
        i = 0
        while (elapsed := time.perf_counter() - t0) < self.seconds:
            due = int(elapsed * self.rate) + per_tick
            now = time.time_ns()
            while self.sent < due:
                sym, px = INSTRUMENTS[i % 3]
                # random counterparties: a fixed stride would make the same pairs trade back and forth (round trips)
                bi, si = rng.randrange(n_acc), rng.randrange(n_acc)
                b, s = self.accounts[bi], self.accounts[si]
                if self.sent % self.rate == 0:  # once a second: both sides the same owner, across platforms
                    b, s = ("HKVATP", "HK-00007"), ("OVSAFF", "OV-00007")
                elif b[1][3:] == s[1][3:]:
                    s = self.accounts[(si + 2) % n_acc]  # another owner
                ev = {"kind": "trade", "ts": now, "venue": "SHARED", "venue_symbol": sym, "price": px + (i % 17) * 0.01,
                      "qty": 0.01 + (i % 5) * 0.01, "side": "buy" if i % 2 else "sell", "trade_id": f"T{i}",
                      "buy_platform": b[0], "buy_account": b[1], "sell_platform": s[0], "sell_account": s[1]}
                while True:
                    try:
                        # one partition: one in-order source, as the 50 ms lateness assumes (the mock cluster's
                        # topics have several, each read a batch at a time: events would arrive behind the watermark)
                        self.p.produce(self.topic, value=orjson.dumps(ev), partition=0)
                        break
                    except BufferError:
                        self.p.poll(0.01)
                self.sent += 1
                i += 1
            self.p.poll(0)
            time.sleep(max(0.0, t0 + (self.sent / self.rate) - time.perf_counter()))
        self.p.flush(30)


def histogram_quantiles(text: str, name: str, qs=(0.5, 0.99)) -> dict:
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = {"count": int(total)}
    for q in qs:
        target, prev_le, prev_n = q * total, 0.0, 0.0
        for le, n in buckets:
            if n >= target and total:
                frac = (target - prev_n) / (n - prev_n) if n > prev_n else 1.0
                out[f"p{int(q * 100)}"] = prev_le + (min(le, prev_le * 4 or 1) - prev_le) * frac if le == float("inf") \
                    else prev_le + (le - prev_le) * frac
                break
            prev_le, prev_n = le, n
    max_bucket = next((le for le, n in buckets if n >= total), None) if total else None
    out["max_le"] = max_bucket
    return out


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_rate(rate: int, seconds: float, kafka, addr: str, work: Path, accounts, which: str = "all") -> dict:
    from detectors import REGISTRY

    topic = f"bench-{rate}-{time.monotonic_ns()}"
    mport = free_port()
    sections = {
        "store": {"db": f"d{rate}.duckdb"}, "reference": {"dir": "ref"},
        "pipeline": {"max_lateness_ms": 50, "max_skew_ms": 0, "idle_release_ms": 200, "batch_rows": 8192},
        "metrics": {"address": f"127.0.0.1:{mport}"},
    }
    if which == "foundation":
        sections["detectors"] = {n: {"enabled": False} for n in REGISTRY if n not in FOUNDATION}
    cfg = write_config(work / f"d{rate}.toml", sections, [{"name": "kafka", "type": "kafka", "brokers": [addr], "topics": [topic], "format": "json"}])
    kafka.produce(topic, value=b"{}", partition=0)  # creates the topic (auto-create), a dead letter at offset 0
    kafka.flush(10)
    d = Daemon(cfg).start()
    try:
        end = time.monotonic() + 60
        while http_get(f"http://127.0.0.1:{mport}/health")[0] != 200:
            if time.monotonic() > end or not d.alive():
                raise RuntimeError(f"daemon did not start:\n{d.output()[-2000:]}")
            time.sleep(0.2)
        prod = Producer(kafka, topic, rate, seconds, accounts)
        t0 = time.monotonic()
        prod.start()
        time.sleep(min(10.0, seconds / 4))
        rss_start = rss_mb(d.proc.pid)
        prod.join()
        offered = prod.sent / (time.monotonic() - t0)
        # let the daemon drain for up to 30 s: what it has decoded by then over the whole span is the sustained rate
        drain_end = time.monotonic() + 30
        text = ""
        while time.monotonic() < drain_end:
            code, body = http_get(f"http://127.0.0.1:{mport}/metrics")
            text = body.decode() if code == 200 else text
            if metric(text, "surveil_events_in_total") >= prod.sent:
                break
            time.sleep(0.2)
        span = time.monotonic() - t0
        got = metric(text, "surveil_events_in_total")
        rss_end = rss_mb(d.proc.pid)
        lat = histogram_quantiles(text, "surveil_alert_latency_seconds")
        batch = histogram_quantiles(text, "surveil_batch_latency_seconds")
        return {"rate": rate, "offered": offered, "sent": prod.sent, "decoded": int(got),
                "sustained": got / max(span, 1e-9) if got < prod.sent else offered,
                "kept_up": got >= prod.sent, "lag_end": metric(text, "bytewax_kafka_consumer_lag"),
                "alerts": int(metric(text, "surveil_alerts_total")),
                "late": int(metric(text, "surveil_late_events_total")), "rss_start": rss_start, "rss_end": rss_end, **lat,
                "batch_p50": batch.get("p50", float("nan")), "batch_p99": batch.get("p99", float("nan"))}
    finally:
        if d.alive():
            d.stop(signal.SIGTERM, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="10000,50000", help="comma-separated events/s")
    ap.add_argument("--seconds", type=float, default=60.0, help="run length per rate")
    ap.add_argument("--detectors", choices=("all", "foundation"), default="all",
                    help="every detector (default) or the foundation's two")
    ap.add_argument("--max", action="store_true", help="also search the highest sustainable rate (doubling, then halving)")
    args = ap.parse_args()
    from confluent_kafka import Producer as KafkaProducer

    kafka = KafkaProducer({"test.mock.num.brokers": 1, "logger": logging.getLogger("bench.kafka"),
                           "queue.buffering.max.messages": 2_000_000, "linger.ms": 5})
    broker = next(iter(kafka.list_topics(timeout=10).brokers.values()))
    addr = f"{broker.host}:{broker.port}"
    work = Path(tempfile.mkdtemp(prefix="surveil-bench-daemon-"))
    accounts = write_ref(work / "ref")
    results = []
    try:
        rates = [int(r) for r in args.rates.split(",")]
        for rate in rates:
            results.append(run_rate(rate, args.seconds, kafka, addr, work, accounts, args.detectors))
            _print([results[-1]])
        if args.max:
            rate = max(rates)
            while results[-1]["kept_up"]:
                rate *= 2
                results.append(run_rate(rate, args.seconds, kafka, addr, work, accounts, args.detectors))
                _print([results[-1]])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nsummary, detectors: {args.detectors} (targets: 50,000 events/s sustained, p99 < 250 ms, RSS growth < 10%)")
    _print(results)


def _print(rows: list[dict]) -> None:
    print(f"{'offered/s':>10} {'sent':>9} {'decoded':>9} {'sustained/s':>11} {'kept up':>7} {'lag':>7} "
          f"{'alerts':>6} {'late':>7} {'p50 ms':>7} {'p99 ms':>7} {'max<=ms':>7} {'batch p50':>9} {'p99':>7} "
          f"{'RSS MB start':>12} {'end':>6} {'growth':>7}")
    for r in rows:
        growth = (r["rss_end"] / r["rss_start"] - 1) * 100 if r["rss_start"] else float("nan")
        print(f"{r['offered']:>10,.0f} {r['sent']:>9,} {r['decoded']:>9,} {r['sustained']:>11,.0f} "
              f"{'yes' if r['kept_up'] else 'NO':>7} {r['lag_end']:>7,.0f} {r['alerts']:>6} {r['late']:>7,} "
              f"{r.get('p50', float('nan')) * 1e3:>7.1f} {r.get('p99', float('nan')) * 1e3:>7.1f} "
              f"{(r['max_le'] or float('nan')) * 1e3:>7.0f} {r['batch_p50'] * 1e3:>9.1f} {r['batch_p99'] * 1e3:>7.1f} "
              f"{r['rss_start']:>12.0f} {r['rss_end']:>6.0f} {growth:>6.1f}%")


if __name__ == "__main__":
    main()
