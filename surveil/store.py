"""The surveil store: DuckDB tables for alerts and what surrounds them, plus a Parquet archive of every event.

Tables (one DuckDB file, one writing process — the dataflow's store sink):

- ``alerts``: one row per alert id, upserted, so a revised alert (an episode that
  grew) replaces its earlier revision and a second replay of the same input adds
  nothing.  ``first_seen`` survives revisions.
- ``alert_evidence``: the trades and orders behind each alert (replaced with it).
- ``dead_letters``: input refused, with the step, reason and raw bytes.
- ``late_events``: events later than the allowed lateness (they are archived too).
- ``runs``: one row per run: inputs, counts, rate, status.

The archive is Parquet under ``<archive>/run=<run_id>/kind=<kind>/date=<YYYY-MM-DD>/venue=<venue>/``
with views ``trades``, ``orders`` and ``quotes`` over it.  A replay of exactly the
same inputs (same fingerprint) supersedes the earlier run's archive once it
finishes, so the views never count an event twice.

Everything is inserted from Arrow tables in one statement per batch: DuckDB reads
Arrow at millions of rows/s, whereas row-wise inserts manage a few thousand.
"""
from __future__ import annotations

import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from surveil.alerts import Alert, alerts_table
from surveil.schemas import KIND_COLUMNS, DEAD_LETTER_SCHEMA, EVENT_SCHEMA, Kind

_ROW_GROUP_ROWS = 128 * 1024
_LOW_CARDINALITY = ("kind", "feed", "venue", "venue_symbol", "instrument", "side", "action", "order_type",
                    "time_in_force", "platform", "buy_platform", "sell_platform")
_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY, detector VARCHAR, detector_version VARCHAR, alert_key VARCHAR,
    severity VARCHAR, score DOUBLE, instrument VARCHAR, venues VARCHAR[], owners VARCHAR[], accounts VARCHAR[],
    window_start TIMESTAMPTZ_NS, window_end TIMESTAMPTZ_NS, summary VARCHAR, params JSON, metrics JSON,
    evidence_count BIGINT, run_id VARCHAR, first_seen TIMESTAMPTZ, updated TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS alert_evidence (
    alert_id VARCHAR, ts TIMESTAMPTZ_NS, kind VARCHAR, venue VARCHAR, instrument VARCHAR, src INTEGER, src_seq BIGINT,
    trade_id VARCHAR, order_id VARCHAR, exec_id VARCHAR, side VARCHAR, action VARCHAR, price DOUBLE, qty DOUBLE,
    account VARCHAR, platform VARCHAR, owner VARCHAR, buy_account VARCHAR, sell_account VARCHAR,
    buy_platform VARCHAR, sell_platform VARCHAR, buy_owner VARCHAR, sell_owner VARCHAR);
CREATE TABLE IF NOT EXISTS dead_letters (
    run_id VARCHAR, recv_ts TIMESTAMPTZ_NS, source VARCHAR, step_id VARCHAR, reason VARCHAR, position VARCHAR, raw BLOB);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, command VARCHAR, inputs JSON, fingerprint VARCHAR, started TIMESTAMPTZ,
    finished TIMESTAMPTZ, status VARCHAR, events_in BIGINT, events_derived BIGINT, events_archived BIGINT,
    dead_letters BIGINT,
    late_events BIGINT, alerts BIGINT, seconds DOUBLE, archive VARCHAR, superseded_by VARCHAR);
"""


class Store:
    """The single writer of a surveil database and archive."""

    def __init__(self, db_path: str | Path, archive_dir: str | Path | None = None, run_id: str | None = None):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.archive_dir = Path(archive_dir) if archive_dir else self.db_path.with_suffix(".archive")
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self.con = duckdb.connect(str(self.db_path))
        self.con.execute(_DDL)
        # columns added after a database may have been created by an earlier version
        self.con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS events_derived BIGINT")
        late_cols = ", ".join(f"{f.name} {_duck_type(f.type)}" for f in EVENT_SCHEMA)
        self.con.execute(f"CREATE TABLE IF NOT EXISTS late_events (run_id VARCHAR, {late_cols}, "
                         "late_by_ms DOUBLE, watermark TIMESTAMPTZ_NS)")
        self._writers: dict[tuple[str, str, str], pq.ParquetWriter] = {}
        self._pending: dict[tuple[str, str, str], list[pa.Table]] = {}
        self._pending_rows: dict[tuple[str, str, str], int] = {}
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surveil-archive")
        self._io_pending: list[Future] = []
        self.counts = {"alerts": 0, "dead_letters": 0, "late_events": 0, "events_archived": 0}

    # -- writes ----------------------------------------------------------------------
    def write_alerts(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        latest: dict[str, Alert] = {}
        for a in alerts:  # the last revision of an id in this batch wins
            latest.pop(a.alert_id, None)
            latest[a.alert_id] = a
        table, evidence = alerts_table(list(latest.values()))
        table = table.append_column("run_id", pa.array([self.run_id] * table.num_rows, pa.string()))
        cols = table.column_names
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "alert_id")
        con = self.con
        con.execute("BEGIN")
        try:
            con.register("new_alerts", table)
            con.register("new_evidence", evidence)
            con.execute(f"INSERT INTO alerts ({', '.join(cols)}, first_seen, updated) "
                        f"SELECT *, now(), now() FROM new_alerts ON CONFLICT (alert_id) DO UPDATE SET {updates}, updated = now()")
            con.execute("DELETE FROM alert_evidence WHERE alert_id IN (SELECT alert_id FROM new_alerts)")
            ev_cols = ", ".join(evidence.column_names)
            con.execute(f"INSERT INTO alert_evidence ({ev_cols}) SELECT {ev_cols} FROM new_evidence")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("new_alerts")
            con.unregister("new_evidence")
        self.counts["alerts"] += len(latest)

    def write_dead_letters(self, dead: pa.Table) -> None:
        if dead.num_rows == 0:
            return
        dead = dead.select(DEAD_LETTER_SCHEMA.names)
        self._append("dead_letters", dead)
        self.counts["dead_letters"] += dead.num_rows

    def write_late(self, late: pa.Table) -> None:
        if late.num_rows == 0:
            return
        self._append("late_events", late)
        self.counts["late_events"] += late.num_rows
        self.archive(late.select(EVENT_SCHEMA.names))

    def _append(self, name: str, table: pa.Table) -> None:
        table = table.add_column(0, "run_id", pa.array([self.run_id] * table.num_rows, pa.string()))
        self.con.register("_append", table)
        try:
            self.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _append")
        finally:
            self.con.unregister("_append")

    def archive(self, events: pa.Table) -> None:
        """Append events to the Parquet archive, one file per kind, day and venue, in this run.

        The split and the encoding run on the archive thread (Arrow releases the GIL in
        both), overlapping the dataflow; at most a few batches wait, bounding memory.
        """
        if events.num_rows == 0:
            return
        self.counts["events_archived"] += events.num_rows
        self._io_pending.append(self._io.submit(self._archive, events))
        while len(self._io_pending) > 4:
            self._io_pending.pop(0).result()

    def _archive(self, events: pa.Table) -> None:
        day = events.column("ts").cast(pa.int64()).to_numpy() // 86_400_000_000_000
        kind = pc.dictionary_encode(events.column("kind")).combine_chunks()
        venue = pc.dictionary_encode(pc.fill_null(events.column("venue"), "unknown")).combine_chunks()
        group = (kind.indices.to_numpy(zero_copy_only=False).astype(np.int64) * len(venue.dictionary)
                 + venue.indices.to_numpy(zero_copy_only=False)) * (1 << 32) + (day - day.min())
        codes, inverse = np.unique(group, return_inverse=True)
        for g, code in enumerate(codes):
            part = events if len(codes) == 1 else events.filter(pa.array(inverse == g))
            k = kind.dictionary[int(code >> 32) // len(venue.dictionary)].as_py()
            v = venue.dictionary[int(code >> 32) % len(venue.dictionary)].as_py()
            date = np.datetime_as_string(np.datetime64(int(day.min() + (code & 0xFFFFFFFF)), "D"))
            part = part.select(list(KIND_COLUMNS[Kind(k)]) if k in Kind._value2member_map_ else EVENT_SCHEMA.names)
            key = (k, date, v)
            self._pending.setdefault(key, []).append(part)
            self._pending_rows[key] = self._pending_rows.get(key, 0) + part.num_rows
            if self._pending_rows[key] >= _ROW_GROUP_ROWS:
                self._write_part(key)

    def _write_part(self, key: tuple[str, str, str]) -> None:
        # Buffered to whole row groups: writing each (possibly one-row) batch as its own
        # row group would make the archive slow to read.
        parts = self._pending.pop(key, [])
        self._pending_rows.pop(key, None)
        if not parts:
            return
        table = pa.concat_tables(parts)
        w = self._writers.get(key)
        if w is None:
            kind, date, venue = key
            path = self.archive_dir / f"run={self.run_id}" / f"kind={kind}" / f"date={date}" / f"venue={_safe(venue)}" / "part-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            # dictionary-encode only the low-cardinality columns and keep statistics on ts alone:
            # ids (order, exec, trade) gain nothing from either and cost a third of the write time
            w = self._writers[key] = pq.ParquetWriter(
                path, table.schema, compression="snappy", write_statistics=["ts"],
                use_dictionary=[c for c in _LOW_CARDINALITY if c in table.column_names])
        w.write_table(table, row_group_size=_ROW_GROUP_ROWS)

    def write_reference(self, ref) -> None:
        """Keep the run's reference data beside the alerts (``ref_*`` tables), for joins in investigations."""
        tables = {
            "ref_instruments": pa.table({
                "venue": [i.venue for i in ref.instruments], "venue_symbol": [i.venue_symbol for i in ref.instruments],
                "instrument": [i.instrument for i in ref.instruments],
                "tick_size": pa.array([i.tick_size for i in ref.instruments], pa.float64()),
                "lot_size": pa.array([i.lot_size for i in ref.instruments], pa.float64())}),
            "ref_accounts": pa.table({
                "platform": [k[0] for k in ref.accounts], "account": [k[1] for k in ref.accounts],
                "owner_id": [v[0] for v in ref.accounts.values()], "owner_type": [v[1] for v in ref.accounts.values()],
                "jurisdiction": [v[2] for v in ref.accounts.values()]}),
            "ref_owner_links": pa.table({"owner_id": list(ref.owner_group), "group_id": list(ref.owner_group.values())}),
        }
        for name, table in tables.items():
            table = pa.Table.from_arrays([c.cast(pa.string()) if pa.types.is_null(c.type) else c for c in table.columns],
                                         names=table.column_names)
            self.con.register("_ref", table)
            try:
                self.con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _ref")
            finally:
                self.con.unregister("_ref")

    # -- runs ------------------------------------------------------------------------
    def start_run(self, command: str, inputs: list[str], fingerprint: str) -> None:
        self._started = time.time()
        self._fingerprint = fingerprint
        self.con.execute(
            "INSERT INTO runs (run_id, command, inputs, fingerprint, started, status, archive) "
            "VALUES (?, ?, ?, ?, now(), 'running', ?)",
            [self.run_id, command, orjson.dumps(inputs).decode(), fingerprint, str(self.archive_dir.resolve())])

    def finish_run(self, status: str, events_in: int, events_derived: int = 0) -> None:
        self.close_archive()
        secs = time.time() - getattr(self, "_started", time.time())
        c = self.counts
        # distinct alerts this run touched (the counter above counts revisions)
        c["alerts"] = self.con.execute("SELECT count(*) FROM alerts WHERE run_id = ?", [self.run_id]).fetchone()[0]
        self.con.execute(
            "UPDATE runs SET finished = now(), status = ?, events_in = ?, events_derived = ?, events_archived = ?, "
            "dead_letters = ?, late_events = ?, alerts = ?, seconds = ? WHERE run_id = ?",
            [status, events_in, events_derived, c["events_archived"], c["dead_letters"], c["late_events"], c["alerts"],
             secs, self.run_id])
        if status == "ok" and getattr(self, "_fingerprint", None):
            old = self.con.execute(
                "SELECT run_id FROM runs WHERE fingerprint = ? AND run_id <> ? AND superseded_by IS NULL",
                [self._fingerprint, self.run_id]).fetchall()
            for (rid,) in old:
                shutil.rmtree(self.archive_dir / f"run={rid}", ignore_errors=True)
                self.con.execute("UPDATE runs SET superseded_by = ? WHERE run_id = ?", [self.run_id, rid])
        refresh_views(self.con, self.archive_dir)

    def close_archive(self) -> None:
        for f in self._io_pending:
            f.result()  # re-raises a failed write here, before the run is marked ok
        self._io_pending.clear()
        for key in list(self._pending):
            self._write_part(key)
        for w in self._writers.values():
            w.close()
        self._writers.clear()

    def close(self) -> None:
        self.close_archive()
        self._io.shutdown()
        self.con.close()


def refresh_views(con: duckdb.DuckDBPyConnection, archive_dir: Path) -> None:
    """(Re)create the ``trades``/``orders``/``quotes`` views over whatever the archive holds."""
    for kind, view in ((Kind.TRADE, "trades"), (Kind.ORDER, "orders"), (Kind.QUOTE, "quotes"),
                       (Kind.REFERENCE, "anchors"), (Kind.SETTLEMENT, "settlements")):
        pattern = Path(archive_dir).resolve() / "run=*" / f"kind={kind.value}" / "**" / "*.parquet"
        if any(Path(archive_dir).glob(f"run=*/kind={kind.value}/*/*/*.parquet")):
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * EXCLUDE (run, kind) FROM "
                        f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)")
        else:
            cols = ", ".join(f"NULL::{_duck_type(EVENT_SCHEMA.field(c).type)} AS {c}" for c in KIND_COLUMNS[kind] if c != "kind")
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {cols} WHERE false")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ_NS"
    return {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
            pa.bool_(): "BOOLEAN", pa.binary(): "BLOB"}[t]


def connect_readonly(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    p = Path(db_path)
    if not p.exists():
        raise FileNotFoundError(f"no surveil database at {p} (run `surveil demo` or `surveil replay … --db {p}` first)")
    con = duckdb.connect(str(p), read_only=True)
    con.execute("SET TimeZone = 'UTC'")  # times are shown in UTC, whatever the analyst's machine uses
    return con
