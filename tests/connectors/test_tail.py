"""connectors.tail: files growing while the feed polls them, restarts, rotation, new files.

A writer appends in pieces (records split across writes) between polls; what the feed returns
over all polls must equal what :func:`connectors.decode_file` makes of the finished file.
"""
from __future__ import annotations

import os
import pickle

import orjson
import pyarrow as pa
import pytest

from connectors import decode_file
from connectors.fix import encode_message
from connectors.tail import TailFeed
from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA


def trade(i: int, **extra) -> bytes:
    return orjson.dumps({"kind": "trade", "ts": 1_704_447_000_000_000_000 + i, "venue": "SHARED",
                         "venue_symbol": "BTC-USDT", "price": 42_000.0 + i, "qty": 0.5, "side": "sell",
                         "trade_id": f"T{i}", **extra}) + b"\n"


BASE = {35: "8", 49: "PLATA", 56: "SURVEIL", 34: "1", 52: "20240105-09:30:00.500", 1: "ACC1", 11: "CL1",
        37: "ORD1", 17: "EX1", 150: "0", 39: "0", 55: "BTC/USDT", 207: "SHARED", 54: "1", 38: "2", 40: "2",
        44: "100.5", 59: "1", 151: "2", 60: "20240105-09:30:00.250"}


def er(i: int, **changes) -> bytes:
    fields = {**BASE, 17: f"EX{i}", 11: f"CL{i}"}
    fields.update({int(k[1:]): v for k, v in changes.items()})
    return encode_message(list(fields.items()), b"|") + b"\n"


class Collected:
    """Every item a feed returned, joined."""

    def __init__(self):
        self.events: list[pa.Table] = []
        self.dead: list[pa.Table] = []

    def add(self, items) -> int:
        for kind, table in items:
            assert table.schema == (EVENT_SCHEMA if kind == "events" else DEAD_LETTER_SCHEMA)
            (self.events if kind == "events" else self.dead).append(table)
        return sum(t.num_rows for k, t in items if k == "events")

    def table(self) -> pa.Table:
        return pa.concat_tables(self.events or [EVENT_SCHEMA.empty_table()])

    def dead_table(self) -> pa.Table:
        return pa.concat_tables(self.dead or [DEAD_LETTER_SCHEMA.empty_table()])


def whole_file(path, fmt: str, src: int) -> tuple[pa.Table, pa.Table]:
    chunks = list(decode_file(path, fmt, src=src))
    return (pa.concat_tables([c.events for c in chunks] or [EVENT_SCHEMA.empty_table()]),
            pa.concat_tables([c.dead for c in chunks] or [DEAD_LETTER_SCHEMA.empty_table()]))


def append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def reasons(table: pa.Table) -> list[str]:
    return table.column("reason").to_pylist()


@pytest.mark.parametrize("fmt", ["jsonl", "fix"])
def test_growing_file_gives_what_the_finished_file_decodes_to(tmp_path, fmt):
    path = tmp_path / f"feed.{fmt}"
    make = trade if fmt == "jsonl" else er
    bad = b"{oops\n" if fmt == "jsonl" else b"8=FIX.4.4|9=5|35=8|10=000|\n"
    records = [make(i) for i in range(6)]
    feed = TailFeed(str(tmp_path), f"*.{fmt}", src_base=4)  # format detected from the first line
    feed.start()
    got = Collected()
    assert feed.poll() == []  # no file yet

    append(path, records[0] + records[1][:25])  # the second record is half-written
    assert got.add(feed.poll()) == 1
    assert feed.poll() == []  # nothing new: the half record still waits
    append(path, records[1][25:-1])  # all but its LF
    assert got.add(feed.poll()) == 0
    append(path, b"\n" + b"\n" + bad + records[2] + records[3][:10])  # LF ends it; a blank line; a bad line
    assert got.add(feed.poll()) == 2
    append(path, records[3][10:] + records[4] + records[5])
    assert got.add(feed.poll()) == 3

    ref, ref_dead = whole_file(path, fmt, src=4)
    assert got.table().equals(ref)  # same rows, src, src_seq, recv_ts
    assert ref.num_rows == 6 and set(ref.column("src").to_pylist()) == {4}
    assert got.dead_table().drop_columns(["recv_ts", "step_id"]).equals(ref_dead.drop_columns(["recv_ts", "step_id"]))
    assert got.dead_table().column("position").to_pylist() == ["line 4"] and ref_dead.num_rows == 1
    assert feed.snapshot()["files"][path.name]["offset"] == path.stat().st_size
    s = feed.stats()
    assert (s["events"], s["dead"], s["bytes"], s["files"]) == (6, 1, path.stat().st_size, 1)
    feed.close()


def test_snapshot_and_resume_lose_and_repeat_nothing(tmp_path):
    path = tmp_path / "orders.fix"
    records = [er(i, t34=str(i)) for i in range(10)]
    append(path, b"".join(records[:3]) + records[3][:30])
    got = Collected()
    feed = TailFeed(str(tmp_path), "*.fix", fmt="fix", src_base=1, name="dropcopy")
    feed.start()
    got.add(feed.poll())
    snap = pickle.loads(pickle.dumps(feed.snapshot()))  # what recovery stores
    feed.close()
    assert snap["files"]["orders.fix"]["offset"] == len(b"".join(records[:3]))

    append(path, records[3][30:] + b"".join(records[4:8]))  # written while the daemon was down
    feed = TailFeed(str(tmp_path), "*.fix", fmt="fix", src_base=1, name="dropcopy")
    feed.start(resume=snap)
    got.add(feed.poll())
    append(path, b"".join(records[8:]))
    got.add(feed.poll())
    feed.close()

    ref, _ = whole_file(path, "fix", src=1)
    assert got.table().equals(ref)
    assert got.table().column("exec_id").to_pylist() == [f"EX{i}" for i in range(10)]
    assert got.table().column("src_seq").to_pylist() == list(range(10))


def test_truncated_file_is_reread_after_a_notice(tmp_path):
    path = tmp_path / "a.jsonl"
    append(path, trade(0) + trade(1) + trade(2))
    feed = TailFeed(str(tmp_path), "*.jsonl", fmt="jsonl")
    feed.start()
    got = Collected()
    got.add(feed.poll())
    with open(path, "wb") as f:  # truncated in place and rewritten, shorter
        f.write(trade(10))
    got.add(feed.poll())
    feed.close()
    assert got.table().column("trade_id").to_pylist() == ["T0", "T1", "T2", "T10"]
    assert got.table().column("src_seq").to_pylist() == [0, 1, 2, 3]  # counting goes on: no repeats
    dead = got.dead_table()
    assert dead.num_rows == 1 and dead.column("source").to_pylist() == [str(path)]
    assert reasons(dead)[0].startswith(f"file shrank from {3 * len(trade(0))} to {len(trade(10))} bytes")
    assert feed.stats()["truncations"] == 1


@pytest.mark.parametrize("pattern", ["*.jsonl", "*"])
def test_rotation_by_rename_drains_the_old_file_and_reads_the_new_one(tmp_path, pattern):
    path = tmp_path / "trades.jsonl"
    append(path, trade(0))
    feed = TailFeed(str(tmp_path), pattern, fmt="jsonl", src_base=20)
    feed.start()
    got = Collected()
    got.add(feed.poll())
    append(path, trade(1) + trade(2)[:9])  # written just before rotation, never polled under the old name
    os.rename(path, tmp_path / "trades.jsonl.1")
    append(path, trade(3))  # the new file under the old name
    got.add(feed.poll())
    append(tmp_path / "trades.jsonl.1", b"")  # nothing more arrives in the rotated file
    append(path, trade(4))
    got.add(feed.poll())
    feed.close()

    ev = got.table()
    assert ev.column("trade_id").to_pylist() == ["T0", "T1", "T3", "T4"]  # T1 not lost, nothing twice
    assert set(ev.column("src").to_pylist()) == {20}  # the name's src; src_seq keeps counting
    assert ev.column("src_seq").to_pylist() == [0, 1, 2, 3]
    r = reasons(got.dead_table())
    assert r == ["incomplete last record when the file was rotated",
                 "file replaced (rotated); reading the new file from the start"]
    assert got.dead_table().column("raw")[0].as_py() == trade(2)[:9]
    assert feed.stats()["rotations"] == 1


def test_rotation_while_stopped_continues_the_renamed_file(tmp_path):
    path = tmp_path / "trades.jsonl"
    append(path, trade(0) + trade(1))
    feed = TailFeed(str(tmp_path), "*", fmt="jsonl")
    feed.start()
    got = Collected()
    got.add(feed.poll())
    snap = feed.snapshot()
    feed.close()
    append(path, trade(2))
    os.rename(path, tmp_path / "trades.jsonl.1")
    append(path, trade(3))
    feed = TailFeed(str(tmp_path), "*", fmt="jsonl")
    feed.start(resume=snap)
    got.add(feed.poll())
    feed.close()
    ev = got.table()
    assert sorted(ev.column("trade_id").to_pylist()) == ["T0", "T1", "T2", "T3"]  # none lost, none twice
    by_id = dict(zip(ev.column("trade_id").to_pylist(), zip(ev.column("src").to_pylist(), ev.column("src_seq").to_pylist())))
    assert by_id["T2"] == (1, 2)  # the renamed file is a new name (src 1) that goes on where the old one stood
    assert by_id["T3"][0] == 0  # the new file keeps the name's src


def test_new_files_are_picked_up_in_name_order(tmp_path):
    append(tmp_path / "b.jsonl", trade(0))
    feed = TailFeed(str(tmp_path), "*.jsonl", src_base=100)
    feed.start()
    got = Collected()
    got.add(feed.poll())
    append(tmp_path / "d.jsonl", trade(2))
    append(tmp_path / "c.jsonl", trade(1))
    append(tmp_path / "ignored.txt", trade(9))
    got.add(feed.poll())
    ev = got.table()
    assert ev.column("trade_id").to_pylist() == ["T0", "T1", "T2"]
    assert ev.column("src").to_pylist() == [100, 101, 102]  # indexes by first sight, then by name
    assert sorted(feed.snapshot()["files"]) == ["b.jsonl", "c.jsonl", "d.jsonl"]

    append(tmp_path / "e.jsonl", b"not a known format\n")
    items = feed.poll()
    assert [k for k, _ in items] == ["dead"]
    assert "cannot tell the format" in reasons(items[0][1])[0]
    append(tmp_path / "e.jsonl", trade(5))
    assert feed.poll() == []  # reported once; the file is left alone until replaced
    feed.close()


def test_max_items_bounds_a_poll_and_the_rest_follows(tmp_path):
    for name in "abcd":
        append(tmp_path / f"{name}.jsonl", trade(ord(name)) + b"[]\n")
    feed = TailFeed(str(tmp_path), "*.jsonl")
    feed.start()
    first, second = feed.poll(max_items=4), feed.poll(max_items=4)
    assert len(first) == 4 and len(second) == 4 and feed.poll() == []
    srcs = [t.column("src")[0].as_py() for k, t in first + second if k == "events"]
    assert srcs == [0, 1, 2, 3]
    feed.close()
