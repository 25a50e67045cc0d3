"""connectors.kafka against librdkafka's built-in mock cluster (a real Kafka protocol endpoint).

A producer configured with ``test.mock.num.brokers`` starts an in-process cluster on loopback;
its metadata gives the bootstrap address every other client (Bytewax's source included) uses.
The mock cluster auto-creates a topic (4 partitions) on the first produce to it.
"""
from __future__ import annotations

import logging
import socket
import time
import uuid

import bytewax.operators as op
import orjson
import pyarrow as pa
import pytest
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError

from connectors import decode_file
from connectors.fix import encode_message
from connectors.kafka import (KafkaUnavailable, alert_sink, check_brokers, decode_kafka_batch, kafka_source,
                              pack_seq)
from surveil.alerts import Alert, Severity
from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA

T0_MS = 1_704_447_000_000  # 2024-01-05 09:30:00 UTC, the Kafka timestamp of the first message
LOG = logging.getLogger("test.kafka")


@pytest.fixture(scope="module")
def cluster():
    producer = Producer({"test.mock.num.brokers": 1, "logger": LOG})
    broker = next(iter(producer.list_topics(timeout=5).brokers.values()))
    yield producer, f"{broker.host}:{broker.port}"
    producer.flush(5)


def topic() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def produce(producer: Producer, name: str, messages: list[tuple[int, bytes]]) -> None:
    """(partition, value) pairs; message i gets Kafka timestamp T0_MS + i."""
    for i, (part, value) in enumerate(messages):
        producer.produce(name, value=value, partition=part, timestamp=T0_MS + i)
    assert producer.flush(5) == 0


def run(addr: str, name: str, fmt: str, src: int = 7, batch_size: int = 1000) -> tuple[pa.Table, pa.Table]:
    """A real dataflow: Kafka source → flat_map_batch(decode) → collecting sink, to the topic's end."""
    out: list = []
    flow = Dataflow("kafka_test")
    msgs = op.input("kafka_in", flow, kafka_source([addr], [name], tail=False, batch_size=batch_size, timeout_s=5))
    decoded = op.flat_map_batch("decode", msgs, lambda batch: decode_kafka_batch(batch, fmt=fmt, src=src))
    op.output("collect", decoded, TestingSink(out))
    run_main(flow)
    for kind, table in out:
        assert table.schema == (EVENT_SCHEMA if kind == "events" else DEAD_LETTER_SCHEMA)
    ev = pa.concat_tables([t for k, t in out if k == "events"] or [EVENT_SCHEMA.empty_table()])
    dead = pa.concat_tables([t for k, t in out if k == "dead"] or [DEAD_LETTER_SCHEMA.empty_table()])
    # partitions are read concurrently: put rows in (partition, offset) order to compare
    return ev.sort_by("src_seq"), dead.sort_by("position")


def ints(table: pa.Table, column: str) -> list[int]:
    return table.column(column).cast(pa.int64()).to_pylist()


def trade(i: int, **extra) -> bytes:
    return orjson.dumps({"kind": "trade", "ts": 1_704_447_000_000_000_000 + i, "venue": "SHARED",
                         "venue_symbol": "BTC-USDT", "instrument": "BTC/USDT", "price": 42_000.0 + i, "qty": 0.5,
                         "side": "buy", "trade_id": f"T{i}", **extra})


def test_canonical_json_and_bad_payloads_through_a_dataflow(cluster):
    producer, addr = cluster
    name = topic()
    messages = [(0, trade(0)), (1, trade(1)), (0, b"{not json"), (0, trade(2)), (1, b"[1, 2]"), (0, b""),
                (1, trade(3, qty=0)), (1, b'{\n  "kind": "quote", "ts": 5, "venue": "OKX",\n  "venue_symbol": "X",'
                                          b' "bid": 1.0, "ask": 2.0}')]
    produce(producer, name, messages)
    ev, dead = run(addr, name, "json")

    assert ev.column("trade_id").to_pylist() == ["T0", "T2", "T1", None]
    assert ev.column("kind").to_pylist() == ["trade", "trade", "trade", "quote"]
    # partition 0 offsets 0 and 2, partition 1 offsets 0 and 3
    assert ev.column("src_seq").to_pylist() == [pack_seq(0, 0), pack_seq(0, 2), pack_seq(1, 0), pack_seq(1, 3)]
    assert set(ev.column("src").to_pylist()) == {7}
    assert ev.column("feed").to_pylist() == ["canonical"] * 4
    # recv_ts = the Kafka timestamp of each message (message index i → T0_MS + i)
    assert ints(ev, "recv_ts") == [(T0_MS + i) * 1_000_000 for i in (0, 3, 1, 7)]
    assert ints(ev, "ts")[:3] == [1_704_447_000_000_000_000 + i for i in (0, 2, 1)]

    rows = list(zip(*(dead.column(c).to_pylist() for c in ("position", "reason", "raw", "step_id", "source"))))
    assert [r[:1] + r[2:] for r in rows] == [
        (f"{name}:0:1", b"{not json", "decode.kafka.json", f"kafka:{name}"),
        (f"{name}:0:3", b"", "decode.kafka.json", f"kafka:{name}"),
        (f"{name}:1:1", b"[1, 2]", "decode.kafka.json", f"kafka:{name}"),
        (f"{name}:1:2", trade(3, qty=0), "decode.kafka.json", f"kafka:{name}"),
    ]
    reasons = [r[1] for r in rows]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1:] == ["empty message", "expected a JSON object, got list", "qty must be positive (got 0.0)"]
    assert ints(dead, "recv_ts") == [(T0_MS + i) * 1_000_000 for i in (2, 5, 4, 6)]


def test_rereading_gives_identical_rows_whatever_the_batch_size(cluster):
    producer, addr = cluster
    name = topic()
    produce(producer, name, [(i % 3, trade(i)) for i in range(40)] + [(1, b"nope")])
    ev1, dead1 = run(addr, name, "json", batch_size=1000)
    ev2, dead2 = run(addr, name, "json", batch_size=3)
    assert ev1.num_rows == 40 and dead1.num_rows == 1
    assert ev1.equals(ev2)
    assert dead1.drop_columns(["recv_ts"]).equals(dead2.drop_columns(["recv_ts"]))
    assert ev1.column("src_seq").to_pylist() == sorted(set(ev1.column("src_seq").to_pylist()))


BASE = {35: "8", 49: "PLATA", 56: "SURVEIL", 34: "1", 52: "20240105-09:30:00.500", 1: "ACC1", 11: "CL1",
        37: "ORD1", 17: "EX1", 150: "0", 39: "0", 55: "BTC/USDT", 207: "SHARED", 54: "1", 38: "2", 40: "2",
        44: "100.5", 59: "1", 151: "2", 60: "20240105-09:30:00.250"}


def er(**changes) -> bytes:
    fields = dict(BASE)
    fields.update({int(k[1:]): v for k, v in changes.items()})
    return encode_message(list(fields.items()))


def test_fix_messages_decode_like_the_same_lines_of_a_drop_copy_log(cluster, tmp_path):
    producer, addr = cluster
    name = topic()
    bad_checksum = er(t17="EX9").replace(b"\x0110=", b"\x0110=9")
    payloads = [er(), er(t17="EX2", t150="F", t39="2", t32="2", t31="100.5", t880="M1", t1057="Y"),
                encode_message([(35, "0"), (49, "PLATA"), (56, "SURVEIL")]),  # heartbeat: skipped, no row
                bad_checksum, er(t17="EX3", t54="9"), er(t17="EX4") + b"\r\n",
                b"8=FIX.4.4\x019=5\x01\n35=8\x01"]
    produce(producer, name, [(0, p) for p in payloads])
    ev, dead = run(addr, name, "fix", src=2)

    # the same messages as lines of a file, through the file decoder
    log = tmp_path / "dropcopy.fix"
    log.write_bytes(b"".join(p.rstrip(b"\r\n") + b"\n" for p in payloads[:-1]))
    ref = pa.concat_tables([d.events for d in decode_file(log, "fix", src=2)])
    ref_dead = pa.concat_tables([d.dead for d in decode_file(log, "fix", src=2)])
    same = [c for c in EVENT_SCHEMA.names if c not in ("src_seq", "recv_ts")]
    assert ev.num_rows == 3 and ev.select(same).equals(ref.select(same))
    assert ev.column("src_seq").to_pylist() == [pack_seq(0, o) for o in (0, 1, 5)]
    assert ev.column("exec_id").to_pylist() == ["EX1", "EX2", "EX4"]
    assert ints(ev, "recv_ts") == [(T0_MS + o) * 1_000_000 for o in (0, 1, 5)]
    assert dead.column("position").to_pylist() == [f"{name}:0:3", f"{name}:0:4", f"{name}:0:6"]
    assert dead.column("reason").to_pylist()[:2] == ref_dead.column("reason").to_pylist()
    assert dead.column("reason")[2].as_py().startswith("FIX message contains a line feed")
    assert dead.column("raw").to_pylist() == [bad_checksum, payloads[4], payloads[6]]


def test_consumer_errors_become_dead_letters_not_crashes():
    # what Bytewax's source emits with raise_on_errors=False (the kafka_source setting)
    err = KafkaError(ConfluentKafkaError(ConfluentKafkaError._TRANSPORT),
                     KafkaSourceMessage(key=None, value=None, topic="t", partition=0, offset=-1001,
                                        timestamp=(0, -1)))
    ok = KafkaSourceMessage(key=None, value=trade(1), topic="t", partition=0, offset=4, timestamp=(1, T0_MS))
    out = dict(decode_kafka_batch([ok, err], fmt="json", src=1))
    assert out["events"].column("src_seq").to_pylist() == [4]
    assert out["dead"].column("position").to_pylist() == ["t:0:-"]
    assert out["dead"].column("reason")[0].as_py().startswith("Kafka consumer error: ")


def test_source_snapshot_resumes_after_the_last_message(cluster):
    producer, addr = cluster
    name = topic()
    produce(producer, name, [(0, trade(i)) for i in range(3)])
    source = kafka_source([addr], [name], tail=False, timeout_s=5)
    assert sorted(source.list_parts()) == [f"{i}-{name}" for i in range(4)]

    def drain(resume):
        part = source.build_part("kafka_in", f"0-{name}", resume)
        got, deadline = [], time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    got += part.next_batch()
                except StopIteration:
                    return got, part.snapshot()
        finally:
            part.close()
        raise AssertionError("partition end not reached")

    first, snap = drain(None)
    assert [m.offset for m in first] == [0, 1, 2] and snap == 3
    produce(producer, name, [(0, trade(i)) for i in range(3, 5)])
    second, snap2 = drain(snap)  # a restart from the snapshot reads only what came after
    assert [m.offset for m in second] == [3, 4] and snap2 == 5
    assert [orjson.loads(m.value)["trade_id"] for m in second] == ["T3", "T4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_brokers_fail_within_the_timeout(cluster):
    dead = f"127.0.0.1:{free_port()}"
    t = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=rf"{dead}.*within 0.5 s"):
        check_brokers([dead], ["trades"], 0.5)
    assert time.monotonic() - t < 2.5
    with pytest.raises(KafkaUnavailable, match=rf"{dead}.*within 0.5 s"):  # the source lists parts the same way
        kafka_source([dead], ["trades"], timeout_s=0.5).list_parts()
    _, addr = cluster
    with pytest.raises(KafkaUnavailable, match="topic 'no-such-topic' does not exist"):
        check_brokers([addr], ["no-such-topic"], 5)


def alert(n: int, summary: str) -> Alert:
    return Alert.build(detector="wash_trade", version="1", key=f"G{n}", window_start_ns=10 * n, window_end_ns=10 * n + 5,
                       opening_evidence=[f"SHARED/t/{n}"], evidence=pa.table({}), severity=Severity.HIGH, score=0.75,
                       instrument="BTC/USDT", venues=["SHARED"], owners=["O2", "O1"], accounts=["A1"],
                       summary=summary, params={"min_qty": 0.5})


def test_alert_sink_round_trip(cluster):
    producer, addr = cluster
    name = topic()
    a1, a2, a1b = alert(1, "first"), alert(2, "second"), alert(1, "first, revised")
    flow = Dataflow("alerts_out")
    op.output("kafka_alerts", op.input("alerts", flow, TestingSource([a1, [a2, a1b]])), alert_sink([addr], name))
    run_main(flow)

    consumer = Consumer({"bootstrap.servers": addr, "group.id": "test", "enable.partition.eof": True, "logger": LOG})
    parts = check_brokers([addr], [name], 5)[name]
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(parts)])
    got, eof, deadline = [], 0, time.monotonic() + 10
    while eof < parts and time.monotonic() < deadline:
        for m in consumer.consume(100, 0.2):
            if m.error() is None:
                got.append((m.key(), orjson.loads(m.value())))
            elif m.error().code() == ConfluentKafkaError._PARTITION_EOF:
                eof += 1
    consumer.close()
    assert eof == parts
    # same key → same partition, so the revision follows the original in the log
    assert [k for k, _ in got if k == a1.alert_id.encode()] == [a1.alert_id.encode()] * 2
    latest = {k: v for k, v in got}
    assert set(latest) == {a1.alert_id.encode(), a2.alert_id.encode()}
    v = latest[a1.alert_id.encode()]
    assert v["summary"] == "first, revised" and v["alert_id"] == a1.alert_id
    assert {k: v[k] for k in ("detector", "instrument", "severity", "window", "owners", "params")} == {
        "detector": "wash_trade", "instrument": "BTC/USDT", "severity": "high",
        "window": {"start_ns": 10, "end_ns": 15}, "owners": ["O1", "O2"], "params": {"min_qty": 0.5}}
