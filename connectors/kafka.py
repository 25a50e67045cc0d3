"""Kafka: a pre-flight broker check, Bytewax's Kafka source, a batch decoder and an alert sink.

Reading goes through Bytewax's own connector (:class:`bytewax.connectors.kafka.KafkaSource`):
one source partition per Kafka partition, offsets kept in Bytewax recovery snapshots (no
consumer-group commits).  Two things it does not do by itself are added here:

* an unreachable broker at start makes it hang in ``list_parts``: :func:`check_brokers` asks
  for the cluster's metadata with a deadline and raises :class:`KafkaUnavailable` naming the
  brokers and the timeout; :func:`kafka_source` lists partitions through it too;
* with ``raise_on_errors=False`` (consumer errors become ``KafkaError`` items, hence dead
  letters, instead of crashing the daemon) Bytewax's partition takes the offset of an error
  item as the last one read; an error carries ``OFFSET_INVALID`` (-1001), so the snapshot
  would become -1000 (``OFFSET_STORED``) and a restart would resume wherever the ignored
  consumer group points.  The snapshot here advances on messages only.

Payloads (:func:`decode_kafka_batch`): ``json`` — one canonical JSON event per message, decoded
like one line of a canonical JSONL file; ``fix`` — one FIX 4.4 message per message, decoded
like one line of a drop-copy log.  ``src_seq`` packs partition and offset
(``partition << 40 | offset``): re-reading a topic gives the same numbering, whatever the
batch boundaries.  ``recv_ts`` is the message's Kafka timestamp (the moment it entered our
transport), the local receipt time when the broker gives none.  One ``src`` per topic: two
topics under one ``src`` could repeat a (partition, offset) pair.

>>> pack_seq(3, 17) == (3 << 40) | 17, unpack_seq(pack_seq(3, 17))
(True, (3, 17))
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
import orjson
import pyarrow as pa
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from surveil.alerts import Alert, Severity
from surveil.schemas import TS, Feed

from ._chunks import FixBlocks, json_rows
from ._events import Context, Decoded, DeadRow, dead_only

__all__ = ["FORMATS", "KafkaUnavailable", "alert_message", "alert_sink", "check_brokers", "decode_kafka_batch",
           "kafka_source", "pack_seq", "unpack_seq"]

log = logging.getLogger(__name__)

FORMATS = ("json", "fix")
_FEED = {"json": Feed.CANONICAL.value, "fix": Feed.FIX.value}
_OFFSET_BITS = 40  # 1.1e12 messages per partition before the partition field is reached
_STARTING = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}


class KafkaUnavailable(RuntimeError):
    """The brokers did not answer in time, or a topic the daemon reads does not exist."""


def pack_seq(partition: int, offset: int) -> int:
    """``src_seq`` of the message at ``offset`` in ``partition``: orders by partition, then offset."""
    return (int(partition) << _OFFSET_BITS) | int(offset)


def unpack_seq(seq: int) -> tuple[int, int]:
    return seq >> _OFFSET_BITS, seq & ((1 << _OFFSET_BITS) - 1)


def _config(brokers: Sequence[str], extra_config: dict | None) -> dict:
    if isinstance(brokers, str):
        raise TypeError("brokers must be a list of host:port strings, not one string")
    # librdkafka logs every failed connection attempt (every ~50 ms) to stderr by default
    return {"bootstrap.servers": ",".join(brokers), "logger": log, **(extra_config or {})}


# -- pre-flight ----------------------------------------------------------------------------

def check_brokers(brokers: list[str], topics: list[str], timeout_s: float,
                  extra_config: dict | None = None) -> dict[str, int]:
    """Partitions per topic, or :class:`KafkaUnavailable` within about ``timeout_s`` seconds.

    Asks for the whole cluster's metadata (not per topic), so a broker that auto-creates
    topics does not create a misspelt one.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive (got {timeout_s})")
    admin = AdminClient(_config(brokers, extra_config))
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as e:
        raise KafkaUnavailable(f"Kafka brokers {','.join(brokers)} did not answer within {timeout_s:g} s: "
                               f"{e.args[0].str() if e.args else e}") from e
    out = {}
    for topic in topics:
        meta = md.topics.get(topic)
        if meta is None:
            raise KafkaUnavailable(f"Kafka topic {topic!r} does not exist on brokers {','.join(brokers)}")
        if meta.error is not None:
            raise KafkaUnavailable(f"Kafka topic {topic!r} on brokers {','.join(brokers)}: {meta.error.str()}")
        out[topic] = len(meta.partitions)
    return out


# -- source --------------------------------------------------------------------------------

class _Partition(StatefulSourcePartition):
    """Bytewax's Kafka partition, with a snapshot that only message offsets advance."""

    def __init__(self, inner: StatefulSourcePartition, resume_state: int | None):
        self._inner = inner
        self._next = resume_state

    def next_batch(self) -> list:
        batch = self._inner.next_batch()
        for item in batch:
            if isinstance(item, KafkaSourceMessage) and item.offset is not None and item.offset >= 0:
                self._next = item.offset + 1
        return batch

    def next_awake(self):
        return self._inner.next_awake()

    def snapshot(self) -> int | None:
        return self._next

    def close(self) -> None:
        self._inner.close()


class SurveilKafkaSource(KafkaSource):
    """:class:`KafkaSource` that lists partitions with a deadline and snapshots safely."""

    def __init__(self, brokers, topics, *, timeout_s: float, **kw):
        super().__init__(brokers, topics, **kw)
        self._timeout_s = timeout_s

    def list_parts(self) -> list[str]:
        parts = check_brokers(list(self._brokers), list(self._topics), self._timeout_s, self._add_config)
        return [f"{i}-{topic}" for topic, n in parts.items() for i in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        return _Partition(super().build_part(step_id, for_part, resume_state), resume_state)


# How long a fetch may wait on partitions with nothing new (librdkafka's default is 500 ms).  A
# broker answers at once when data is there (fetch.min.bytes 1), but librdkafka's mock cluster
# only at this deadline, which put ~300 ms into every event's path in the daemon bench; 10 ms
# bounds both, at the cost of at most 100 fetch requests a second per broker on an idle topic.
FETCH_DEFAULTS = {"fetch.wait.max.ms": 10}


def kafka_source(brokers: list[str], topics: list[str], *, starting_offset: str | int = "earliest",
                 batch_size: int = 1000, extra_config: dict | None = None, tail: bool = True,
                 timeout_s: float = 10.0) -> KafkaSource:
    """A Bytewax Kafka source of ``KafkaSourceMessage`` / ``KafkaError`` items.

    ``starting_offset``: ``"earliest"``, ``"latest"`` or an offset, used when no recovery
    snapshot says where to resume.  ``tail=False`` ends at each partition's end (tests,
    backfills).  ``timeout_s`` bounds the metadata request that lists partitions.
    """
    if isinstance(starting_offset, str):
        if starting_offset not in _STARTING:
            raise ValueError(f"starting_offset must be 'earliest', 'latest' or an offset (got {starting_offset!r})")
        starting_offset = _STARTING[starting_offset]
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive (got {batch_size})")
    cfg = {"logger": log, **FETCH_DEFAULTS, **(extra_config or {})}
    return SurveilKafkaSource(list(brokers), list(topics), timeout_s=timeout_s, tail=tail,
                              starting_offset=starting_offset, add_config=cfg, batch_size=batch_size,
                              raise_on_errors=False)


# -- decoding ------------------------------------------------------------------------------

def _recv_ns(msg: Any, now_ns: int) -> int:
    ts = getattr(msg, "timestamp", None)
    if ts and ts[0] != 0 and ts[1] is not None and ts[1] >= 0:  # (TIMESTAMP_NOT_AVAILABLE, -1) otherwise
        return ts[1] * 1_000_000
    return now_ns


def decode_kafka_batch(messages: list, *, fmt: str, src: int, venue: str | None = None) -> list[tuple[str, pa.Table]]:
    """A batch of source items → ``[("events", table), ("dead", table)]`` (empty tables left out).

    For ``op.flat_map_batch``; never raises on bad input: consumer errors, empty messages and
    payloads that do not decode become dead letters (position ``topic:partition:offset``,
    raw = the payload).  ``venue`` fills events whose payload names none.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown Kafka payload format {fmt!r}; expected one of {', '.join(FORMATS)}")
    now = time.time_ns()
    by_topic: dict[str | None, list] = {}
    for item in messages:
        msg = item.msg if hasattr(item, "err") else item
        by_topic.setdefault(msg.topic, []).append(item)
    out: list[tuple[str, pa.Table]] = []
    for topic, items in by_topic.items():
        d = _decode_topic(items, topic, fmt, src, venue, now)
        if d.events.num_rows:
            out.append(("events", d.events))
        if d.dead.num_rows:
            out.append(("dead", d.dead))
    return out


def _decode_topic(items: list, topic: str | None, fmt: str, src: int, venue: str | None, now: int) -> Decoded:
    ctx = Context(source=f"kafka:{topic}", step_id=f"decode.kafka.{fmt}", feed=_FEED[fmt], src=src, recv_ts_ns=now)
    dead: list[DeadRow] = []
    recv: dict[str, int] = {}  # position -> receipt time, for dead letters
    good: list[tuple[int, str, bytes, int]] = []  # seq, position, payload, recv_ts
    last_seq = -1
    for item in items:
        is_error = hasattr(item, "err")
        msg = item.msg if is_error else item
        ok_pos = msg.partition is not None and msg.offset is not None and msg.offset >= 0
        seq = pack_seq(msg.partition, msg.offset) if ok_pos else last_seq  # errors sort after what preceded
        last_seq = seq
        pos = f"{topic}:{msg.partition}:{msg.offset}" if ok_pos else f"{topic}:{msg.partition}:-"
        value = msg.value if isinstance(msg.value, bytes) else b""
        recv[pos] = _recv_ns(msg, now)
        if is_error:
            dead.append(DeadRow(seq, f"Kafka consumer error: {item.err.str() if hasattr(item.err, 'str') else item.err}",
                                pos, value))
        elif not value.strip():
            dead.append(DeadRow(seq, "empty message", pos, value))
        elif fmt == "fix" and b"\n" in value.rstrip(b"\r\n"):
            dead.append(DeadRow(seq, "FIX message contains a line feed (one message per Kafka message)", pos, value))
        else:
            good.append((seq, pos, value, recv[pos]))
    if not good:
        return _with_receipt(dead_only(ctx, dead), recv, None)
    seqs = np.array([g[0] for g in good], np.int64)
    if fmt == "json":
        decoded = json_rows([g[2] for g in good], seqs, [g[1] for g in good].__getitem__, ctx, venue)
    else:
        decoded = _fix(good, seqs, ctx, venue)
    if dead:
        decoded = Decoded(decoded.events, pa.concat_tables([dead_only(ctx, dead).dead, decoded.dead]))
    return _with_receipt(decoded, recv, (seqs, np.array([g[3] for g in good], np.int64)))


def _fix(good: list, seqs: np.ndarray, ctx: Context, venue: str | None) -> Decoded:
    """FIX messages as the lines of one block; line i is message i (none is blank, none has LF)."""
    block = b"".join(g[2].rstrip(b"\r\n") + b"\n" for g in good)
    out, _ = FixBlocks(ctx, venue=venue).decode_block(block, 1, 0)
    ev = out.events
    if ev.num_rows:
        ev = ev.set_column(ev.schema.get_field_index("src_seq"), "src_seq",
                           pa.array(seqs[ev.column("src_seq").to_numpy()], pa.int64()))
    dead = out.dead
    if dead.num_rows:  # "line k" -> the k-th message's Kafka position
        where = [good[int(p.split()[1]) - 1][1] for p in dead.column("position").to_pylist()]
        dead = dead.set_column(dead.schema.get_field_index("position"), "position", pa.array(where, pa.string()))
    return Decoded(ev, dead)


def _with_receipt(d: Decoded, recv: dict[str, int], seq_recv: tuple[np.ndarray, np.ndarray] | None) -> Decoded:
    """Receipt times per message: events' ``recv_ts`` and dead letters' ``recv_ts``."""
    ev, dead = d.events, d.dead
    if ev.num_rows and seq_recv is not None:
        seqs, recv_ns = seq_recv
        order = np.argsort(seqs, kind="stable")
        at = order[np.searchsorted(seqs, ev.column("src_seq").to_numpy(), sorter=order)]
        ev = ev.set_column(ev.schema.get_field_index("recv_ts"), "recv_ts", pa.array(recv_ns[at], pa.int64()).cast(TS))
    if dead.num_rows:
        times = [recv.get(p, 0) for p in dead.column("position").to_pylist()]
        dead = dead.set_column(0, "recv_ts", pa.array(times, pa.int64()).cast(TS))
        order = np.argsort([_seq_of(p) for p in dead.column("position").to_pylist()], kind="stable")
        dead = dead.take(pa.array(order))
    return Decoded(ev, dead)


def _seq_of(position: str) -> int:
    _, part, off = position.rsplit(":", 2)
    try:
        return pack_seq(int(part), int(off))
    except ValueError:
        return -1


# -- alert sink ----------------------------------------------------------------------------

def alert_message(alert: Alert) -> tuple[bytes, bytes]:
    """(key, value) of an alert on the alert topic: key = alert id (compaction keeps the latest).

    >>> import pyarrow as pa
    >>> a = Alert.build(detector="wash_trade", version="1", key="G1", window_start_ns=1, window_end_ns=2,
    ...     opening_evidence=["t1"], evidence=pa.table({}), severity=Severity.HIGH, score=0.9,
    ...     instrument="BTC/USDT", venues=["SHARED"], owners=["O1"], accounts=["A1"], summary="s", params={"n": 2})
    >>> k, v = alert_message(a)
    >>> k == a.alert_id.encode(), orjson.loads(v)["window"], orjson.loads(v)["severity"]
    (True, {'end_ns': 2, 'start_ns': 1}, 'high')
    """
    body = {
        "alert_id": alert.alert_id, "detector": alert.detector, "detector_version": alert.detector_version,
        "key": alert.key, "instrument": alert.instrument, "severity": Severity(alert.severity).value,
        "score": float(alert.score), "window": {"start_ns": alert.window_start_ns, "end_ns": alert.window_end_ns},
        "summary": alert.summary, "venues": sorted(alert.venues), "owners": sorted(alert.owners),
        "accounts": sorted(alert.accounts), "params": alert.params, "evidence_count": alert.evidence.num_rows,
    }
    return alert.alert_id.encode(), orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
                                                 default=str)


class _AlertPartition(StatelessSinkPartition):
    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float):
        self._producer, self._topic, self._flush_timeout_s = producer, topic, flush_timeout_s
        self._failed: list[str] = []

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._failed.append(f"{msg.key()!r}: {err.str()}")

    def write_batch(self, items: list) -> None:
        for item in items:
            for alert in ([item] if isinstance(item, Alert) else item):
                key, value = alert_message(alert)
                while True:
                    try:
                        self._producer.produce(self._topic, value=value, key=key, on_delivery=self._delivered)
                        break
                    except BufferError:  # local queue full: let deliveries drain, then retry
                        self._producer.poll(0.1)
            self._producer.poll(0)
        self._flush()

    def _flush(self) -> None:
        # at-least-once: the batch counts as written only once the broker has it; otherwise the
        # dataflow fails and recovery replays the epoch (the alert id key makes repeats harmless)
        left = self._producer.flush(self._flush_timeout_s)
        if left or self._failed:
            failed, self._failed = self._failed, []
            raise RuntimeError(f"alert sink: {left} alert(s) not delivered to Kafka topic {self._topic!r} within "
                               f"{self._flush_timeout_s:g} s; failures: {failed[:5]}")

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)


class AlertSink(DynamicSink):
    """Alerts (or lists of alerts) to one Kafka topic, keyed by alert id."""

    def __init__(self, brokers: list[str], topic: str, extra_config: dict | None = None, flush_timeout_s: float = 30.0):
        self._config = _config(brokers, extra_config)
        self._topic, self._flush_timeout_s = topic, flush_timeout_s

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertPartition:
        return _AlertPartition(Producer(self._config), self._topic, self._flush_timeout_s)


def alert_sink(brokers: list[str], topic: str, extra_config: dict | None = None) -> AlertSink:
    return AlertSink(list(brokers), topic, extra_config)
