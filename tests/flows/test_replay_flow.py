"""The whole dataflow, in-process: files → timeline → enrichment → detectors → DuckDB."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.jobs import run_replay
from flows.pipeline import PipelineConfig
from replay.evaluate import alerts_from_db, load_labels, score
from replay.merge import InputSpec
from replay.scenario import generate
from surveil.store import connect_readonly


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    out = tmp_path_factory.mktemp("market")
    generate(out, seed=5, minutes=3, events_per_second=60)
    return out


def canonical(market):
    return [InputSpec(str(p)) for p in sorted((market / "canonical").glob("*.parquet"))]


def wire(market):
    return [InputSpec(str(p)) for p in sorted((market / "fix").glob("*.fix")) + sorted((market / "tardis").glob("*.csv"))]


def replay(market, inputs, db, **cfg):
    workers = cfg.pop("workers", 1)
    return run_replay(inputs, db_path=db, ref_dir=market / "ref", cfg=PipelineConfig(**cfg), workers=workers)


def alert_rows(db):
    con = connect_readonly(db)
    try:
        alerts = con.execute("SELECT alert_id, detector, instrument, epoch_ns(window_start), epoch_ns(window_end), "
                             "summary, evidence_count FROM alerts ORDER BY alert_id").fetchall()
        evidence = con.execute("SELECT alert_id, epoch_ns(ts), venue, trade_id FROM alert_evidence "
                               "ORDER BY ALL").fetchall()
    finally:
        con.close()
    return alerts, evidence


@pytest.fixture(scope="module")
def reference(market, tmp_path_factory):
    db = tmp_path_factory.mktemp("ref") / "ref.duckdb"
    summary = replay(market, canonical(market), db)
    return db, summary


def test_every_labelled_episode_is_found_and_nothing_else(market, reference):
    db, summary = reference
    scores = score(alerts_from_db(db), load_labels(market / "labels.json"))
    for detector in ("wash_trade", "price_dislocation"):
        assert scores[detector]["recall"] == 1.0, scores
        assert scores[detector]["precision"] == 1.0, scores
    assert summary.dead_letters == 0 and summary.late_events == 0


@pytest.mark.parametrize("batch_rows", [31, 97, 10_000])  # (row-at-a-time is in the detector contract)
def test_same_alert_ids_whatever_the_batch_size(market, reference, tmp_path, batch_rows):
    db, _ = reference
    replay(market, canonical(market), tmp_path / "b.duckdb", batch_rows=batch_rows)
    assert alert_rows(tmp_path / "b.duckdb") == alert_rows(db)


def test_two_workers_give_the_same_alerts(market, reference, tmp_path):
    db, _ = reference
    replay(market, canonical(market), tmp_path / "w2.duckdb", workers=2)
    assert alert_rows(tmp_path / "w2.duckdb") == alert_rows(db)


def test_a_second_replay_adds_no_alert_and_no_archived_event(market, reference, tmp_path):
    db = tmp_path / "twice.duckdb"
    first = replay(market, canonical(market), db)
    second = replay(market, canonical(market), db)
    assert first.alerts == second.alerts > 0
    con = connect_readonly(db)
    try:
        assert con.execute("SELECT count(*) FROM alerts").fetchone()[0] == first.alerts
        archived = con.execute("SELECT (SELECT count(*) FROM trades) + (SELECT count(*) FROM orders) "
                               "+ (SELECT count(*) FROM quotes)").fetchone()[0]
    finally:
        con.close()
    assert archived == first.events == second.events


def test_fix_drop_copies_and_tardis_csv_give_the_same_alerts_as_canonical(market, reference, tmp_path):
    """Trades rebuilt by pairing both platforms' FIX fills agree with the canonical trades."""
    db, ref_summary = reference
    s = replay(market, wire(market), tmp_path / "wire.duckdb")
    labels = load_labels(market / "labels.json")
    assert s.dead_letters == 0
    assert s.events == sum(labels["events"]["fix"].values()) + sum(labels["events"]["tardis"].values())
    assert s.derived == labels["events"]["SHARED"]["trade"]
    assert alert_rows(tmp_path / "wire.duckdb")[0] == alert_rows(db)[0]
    con = connect_readonly(tmp_path / "wire.duckdb")
    try:
        one_sided = con.execute("SELECT count(*) FROM trades WHERE venue = 'SHARED' "
                                "AND (buy_account IS NULL OR sell_account IS NULL)").fetchone()[0]
        shared = con.execute("SELECT count(*) FROM trades WHERE venue = 'SHARED'").fetchone()[0]
    finally:
        con.close()
    assert one_sided == 0 and shared == labels["events"]["SHARED"]["trade"]


def test_disorder_within_the_lateness_changes_nothing(market, reference, tmp_path):
    """REFX's rows shuffled within 2-second blocks (a venue feed out of order) give the same alerts."""
    db, _ = reference
    refx = pq.read_table(market / "canonical" / "REFX.parquet")
    ts = refx.column("ts").cast(pa.int64()).to_numpy()
    rng = np.random.default_rng(0)
    block = (ts - ts[0]) // 2_000_000_000
    order = np.lexsort((rng.random(len(ts)), block))
    shuffled = refx.take(pa.array(order)).drop_columns(["src_seq"])
    pq.write_table(shuffled, tmp_path / "REFX.parquet")
    inputs = [InputSpec(str(market / "canonical" / "SHARED.parquet")), InputSpec(str(tmp_path / "REFX.parquet"))]
    s = replay(market, inputs, tmp_path / "disorder.duckdb", max_lateness_ms=3_000)
    assert s.late_events == 0
    got, ref = alert_rows(tmp_path / "disorder.duckdb")[0], alert_rows(db)[0]
    assert [(a[1], a[2], a[3]) for a in got] == [(a[1], a[2], a[3]) for a in ref]


def test_events_beyond_the_lateness_are_kept_as_late_and_archived(market, tmp_path):
    """A feed that re-sends its first five events after the rest: they are late, recorded, and archived."""
    from bytewax.testing import TestingSource, run_main

    from connectors import decode_file
    from detectors import build_detectors
    from flows.pipeline import StoreSink, StoreTarget, build_flow
    from surveil.refdata import RefData

    refx = pa.concat_tables(d.events for d in decode_file(market / "canonical" / "REFX.parquet", src=1))
    items = [("events", refx), ("events", refx.slice(0, 5))]
    db = tmp_path / "late.duckdb"
    flow = build_flow(TestingSource(items), RefData.load(market / "ref"), build_detectors(),
                      StoreSink(StoreTarget(str(db))), PipelineConfig())
    run_main(flow)
    con = connect_readonly(db)
    try:
        late = con.execute("SELECT count(*), min(late_by_ms) FROM late_events").fetchone()
        archived = con.execute("SELECT (SELECT count(*) FROM trades) + (SELECT count(*) FROM quotes)").fetchone()[0]
    finally:
        con.close()
    assert late[0] == 5 and late[1] > 5_000
    assert archived == refx.num_rows + 5


def test_bad_input_becomes_dead_letters_and_the_rest_still_replays(market, reference, tmp_path):
    bad = tmp_path / "broken.fix"
    good = (market / "fix" / "HKVATP.fix").read_bytes().splitlines(keepends=True)
    corrupted = good[3].replace(b"\x0110=", b"\x0110=9")  # wrong checksum
    bad.write_bytes(b"".join(good[:3]) + corrupted + b"8=FIX.4.4\x019=5\x01garbage\n" + b"".join(good[4:]))
    inputs = [InputSpec(str(bad)), InputSpec(str(market / "fix" / "OVSAFF.fix"))] + \
        [InputSpec(str(p)) for p in sorted((market / "tardis").glob("*.csv"))]
    s = replay(market, inputs, tmp_path / "bad.duckdb")
    con = connect_readonly(tmp_path / "bad.duckdb")
    try:
        rows = con.execute("SELECT step_id, reason, raw FROM dead_letters ORDER BY position").fetchall()
    finally:
        con.close()
    assert s.dead_letters == 2 and len(rows) == 2
    assert any("CheckSum" in r[1] for r in rows) and any(r[2].startswith(b"8=FIX.4.4\x019=5") for r in rows)
    assert s.alerts >= 1


def test_a_failing_detector_leaves_a_dead_letter_and_the_others_keep_working(market, tmp_path):
    from bytewax.testing import TestingSource, run_main

    from connectors import decode_file
    from detectors import build_detectors
    from detectors.wash_trade import WashTrade
    from flows.pipeline import StoreSink, StoreTarget, build_flow
    from surveil.refdata import RefData

    class Broken(WashTrade):
        name = "broken"

        def update(self, state, events):
            raise ZeroDivisionError("a bug")

    items = [("events", d.events) for d in decode_file(market / "canonical" / "SHARED.parquet")]
    items += [("events", d.events) for d in decode_file(market / "canonical" / "REFX.parquet", src=1)]
    db = tmp_path / "broken.duckdb"
    flow = build_flow(TestingSource(items), RefData.load(market / "ref"), build_detectors() + [Broken()],
                      StoreSink(StoreTarget(str(db))), PipelineConfig(max_lateness_ms=10**9))
    run_main(flow)
    con = connect_readonly(db)
    try:
        dead = con.execute("SELECT DISTINCT step_id, reason FROM dead_letters").fetchall()
        detectors = {r[0] for r in con.execute("SELECT DISTINCT detector FROM alerts").fetchall()}
    finally:
        con.close()
    assert dead == [("detect_broken", "ZeroDivisionError: a bug")]
    assert detectors == {"wash_trade", "price_dislocation"}
