"""Kafka without recovery: a restart re-reads the topic from the start and the store, upserting by
alert id, ends with the same alerts — none duplicated.  With recovery, the offsets live in the
snapshots and a restart reads on from them.

librdkafka's mock cluster keeps only a few MB per partition (older messages are dropped from
its log), so this market is small: 90 seconds at 150 events/s."""
from __future__ import annotations

import logging
import signal

import pytest
from confluent_kafka import Producer

from confluent_kafka import Consumer, TopicPartition

from tests.daemon.harness import Daemon, free_port, http_get, metric, query, wait_until, write_config
from tests.daemon.test_recovery import ALERTS_SQL, market_file


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return market_file(tmp_path_factory.mktemp("kafka-market"), seed=2, minutes=1.5, events_per_second=150)


@pytest.fixture(scope="module")
def topic(market):
    root, incoming, newest = market
    producer = Producer({"test.mock.num.brokers": 1, "logger": logging.getLogger("test.kafka"),
                         "queue.buffering.max.messages": 1_000_000})
    broker = next(iter(producer.list_topics(timeout=5).brokers.values()))
    addr = f"{broker.host}:{broker.port}"
    with open(incoming / "market.jsonl", "rb") as f:
        lines = f.read().splitlines()
    for line in lines:
        producer.produce("market", value=line, partition=0)
    assert producer.flush(30) == 0
    c = Consumer({"bootstrap.servers": addr, "group.id": "check"})
    assert c.get_watermark_offsets(TopicPartition("market", 0), timeout=5) == (0, len(lines)), \
        "the mock cluster dropped messages: make the market smaller"
    c.close()
    yield producer, addr


def _run(root, addr, name, newest, recovery: bool) -> tuple[list, float]:
    mport = free_port()
    sections = {"store": {"db": f"{name}.duckdb"}, "reference": {"dir": "m/ref"},
                "pipeline": {"max_lateness_ms": 1000, "idle_release_ms": 600_000},
                "metrics": {"address": f"127.0.0.1:{mport}"}}
    if recovery:
        sections["recovery"] = {"dir": f"{name}-recovery", "snapshot_interval_ms": 300}
    cfg = write_config(root / f"{name}.toml", sections, [
        {"name": "market", "type": "kafka", "brokers": [addr], "topics": ["market"], "format": "json"}])
    d = Daemon(cfg).start()
    text = wait_until(lambda: (lambda r: r[1].decode() if r[0] == 200 and metric(
        r[1].decode(), "surveil_source_newest_event_timestamp_seconds") >= newest - 1e-6 else None)(
        http_get(f"http://127.0.0.1:{mport}/metrics")), 180, "the whole topic", d)
    assert d.stop(signal.SIGTERM) == 0, d.output()[-2000:]
    return query(root / f"{name}.duckdb", ALERTS_SQL), metric(text, "surveil_events_in_total")


def test_restart_without_recovery_rereads_and_duplicates_nothing(market, topic):
    root, incoming, newest = market
    _, addr = topic
    first, n1 = _run(root, addr, "kafka", newest, recovery=False)
    again, n2 = _run(root, addr, "kafka", newest, recovery=False)
    assert len(first) >= 1 and again == first and n2 == n1


def test_with_recovery_a_restart_reads_on_from_the_snapshot_offsets(market, topic):
    root, incoming, newest = market
    producer, addr = topic
    first, n1 = _run(root, addr, "kafkarec", newest, recovery=True)
    # a restart with nothing new on the topic reads nothing again: offsets came back from the snapshot
    mport = free_port()
    cfg = root / "kafkarec.toml"
    cfg.write_text(cfg.read_text().replace(cfg.read_text().split('address = "')[1].split('"')[0], f"127.0.0.1:{mport}"))
    d = Daemon(cfg).start()
    wait_until(lambda: http_get(f"http://127.0.0.1:{mport}/health")[0] == 200, 60, "restart", d)
    producer.produce("market", value=b'{"kind": "trade"}', partition=0)  # one new (bad) message
    producer.flush(10)
    text = wait_until(lambda: (lambda r: r[1].decode() if r[0] == 200 and metric(
        r[1].decode(), "surveil_decode_errors_total") >= 1 else None)(
        http_get(f"http://127.0.0.1:{mport}/metrics")), 60, "the new message", d)
    assert metric(text, "surveil_events_in_total") == 0  # nothing before it was read again
    assert d.stop(signal.SIGTERM) == 0
    assert query(root / "kafkarec.duckdb", ALERTS_SQL) == first
