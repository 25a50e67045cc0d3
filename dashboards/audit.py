"""Alert dispositions and their append-only, hash-chained audit log.

An alert's status is never stored as a mutable field: it is the ``to_status`` of the
alert's latest audit entry (``open`` when it has none), read through the view
``alert_status``.  So the only write the dashboard ever makes is one ``INSERT`` into
``audit_log``, in :func:`append_audit` — there is no UPDATE or DELETE anywhere in the
product, and the SQL console refuses every write.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's own
fields, so editing, deleting or reordering any entry (with DuckDB's CLI, say) breaks the
chain from that row on, which :func:`verify_audit_chain` reports.  Truncating the newest
entries leaves a valid shorter chain: the ``head`` hash that verification returns is what
a supervisor records elsewhere (a report, a ticket) to pin the log's extent.

>>> import duckdb
>>> con = duckdb.connect()
>>> ensure_tables(con)
>>> e = record_disposition(con, "a1", "under_review", actor="kim", note="looking at the fills")
>>> (e.from_status, e.to_status, e.seq)
('open', 'under_review', 1)
>>> verify_audit_chain(con).ok
True
>>> _ = con.execute("UPDATE audit_log SET note = 'nothing to see' WHERE seq = 1")
>>> verify_audit_chain(con).broken_at
1
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import orjson

OPEN = "open"
UNDER_REVIEW = "under_review"
ESCALATED = "escalated"
CLOSED_TP = "closed_true_positive"
CLOSED_FP = "closed_false_positive"
STATUSES = (OPEN, UNDER_REVIEW, ESCALATED, CLOSED_TP, CLOSED_FP)
STATUS_LABELS = {OPEN: "open", UNDER_REVIEW: "under review", ESCALATED: "escalated",
                 CLOSED_TP: "closed: true positive", CLOSED_FP: "closed: false positive"}
# Where an alert may go from each status.  A closed alert can only be reopened for review,
# so a closure is never silently turned into the opposite closure.
TRANSITIONS = {
    OPEN: (UNDER_REVIEW,),
    UNDER_REVIEW: (ESCALATED, CLOSED_TP, CLOSED_FP),
    ESCALATED: (UNDER_REVIEW, CLOSED_TP, CLOSED_FP),
    CLOSED_TP: (UNDER_REVIEW,),
    CLOSED_FP: (UNDER_REVIEW,),
}
GENESIS = "0" * 64
MAX_NOTE_CHARS = 10_000

_DDL = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, actor VARCHAR NOT NULL, action VARCHAR NOT NULL,
    alert_id VARCHAR NOT NULL, from_status VARCHAR NOT NULL, to_status VARCHAR NOT NULL, note VARCHAR NOT NULL,
    prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL);
CREATE VIEW IF NOT EXISTS alert_status AS
    SELECT alert_id, arg_max(to_status, seq) AS status, max(ts) AS status_ts, arg_max(actor, seq) AS status_by,
           count(*) AS actions
    FROM audit_log GROUP BY alert_id;
"""
# One process appends at a time; DuckDB's primary key on seq catches a second process.
_LOCK = threading.Lock()


class DispositionError(ValueError):
    """A disposition the workflow does not allow (missing note, unknown alert, illegal transition)."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: datetime
    actor: str
    action: str
    alert_id: str
    from_status: str
    to_status: str
    note: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head: str  # hash of the newest entry (GENESIS for an empty log)
    broken_at: int | None = None  # seq of the first entry that fails
    reason: str = ""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the audit table and the status view if missing (idempotent; a no-op on a store that has them,
    so a read-only connection to such a store works)."""
    have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                      "current_schema() AND table_name IN ('audit_log', 'alert_status')").fetchall()}
    if have == {"audit_log", "alert_status"}:
        return
    try:
        con.execute(_DDL)
    except duckdb.InvalidInputException as e:
        raise RuntimeError("this surveil database has no audit log yet and the connection is read-only: open it "
                           "writable once (surveil dashboard --db FILE) to create it") from e


def entry_hash(prev_hash: str, seq: int, ts: datetime, actor: str, action: str, alert_id: str,
               from_status: str, to_status: str, note: str) -> str:
    """SHA-256 over the previous hash and a canonical JSON of the entry (time as integer µs UTC).

    >>> t = datetime(2026, 3, 2, tzinfo=timezone.utc)
    >>> h = entry_hash(GENESIS, 1, t, "kim", "disposition", "a", "open", "under_review", "n")
    >>> h == entry_hash(GENESIS, 1, t, "kim", "disposition", "a", "open", "under_review", "n ")
    False
    """
    micros = int(ts.timestamp()) * 1_000_000 + ts.microsecond
    body = orjson.dumps([prev_hash, seq, micros, actor, action, alert_id, from_status, to_status, note])
    return hashlib.sha256(body).hexdigest()


def current_status(con: duckdb.DuckDBPyConnection, alert_id: str) -> str:
    row = con.execute("SELECT status FROM alert_status WHERE alert_id = ?", [alert_id]).fetchone()
    return row[0] if row else OPEN


def record_disposition(con: duckdb.DuckDBPyConnection, alert_id: str, to_status: str, *, actor: str, note: str,
                       check_alert: bool = False) -> AuditEntry:
    """Move an alert to ``to_status`` with a note, appending the audit entry; the workflow is enforced here."""
    actor, note = (actor or "").strip(), (note or "").strip()
    if not actor:
        raise DispositionError("who is recording this? an analyst name is required")
    if not note:
        raise DispositionError("a note is required: say why, for the regulator reading this later")
    if len(note) > MAX_NOTE_CHARS:
        raise DispositionError(f"the note is longer than {MAX_NOTE_CHARS:,} characters")
    if to_status not in STATUSES:
        raise DispositionError(f"unknown status {to_status!r}; one of {', '.join(STATUSES)}")
    if check_alert and con.execute("SELECT count(*) FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()[0] == 0:
        raise DispositionError(f"no alert {alert_id!r}")
    with _LOCK:
        from_status = current_status(con, alert_id)
        if to_status not in TRANSITIONS[from_status]:
            allowed = ", ".join(TRANSITIONS[from_status])
            raise DispositionError(f"an alert that is {from_status} can move to {allowed}, not {to_status}")
        return append_audit(con, "disposition", alert_id, from_status, to_status, actor, note)


def append_audit(con: duckdb.DuckDBPyConnection, action: str, alert_id: str, from_status: str, to_status: str,
                 actor: str, note: str) -> AuditEntry:
    """The one writer of ``audit_log``: a single INSERT chained to the newest entry."""
    con.execute("BEGIN TRANSACTION")
    try:
        last = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        # microsecond precision: what TIMESTAMPTZ stores, so the hash recomputes from the row exactly
        ts = datetime.now(timezone.utc)
        h = entry_hash(prev, seq, ts, actor, action, alert_id, from_status, to_status, note)
        con.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [seq, ts, actor, action, alert_id, from_status, to_status, note, prev, h])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return AuditEntry(seq, ts, actor, action, alert_id, from_status, to_status, note, prev, h)


def audit_entries(con: duckdb.DuckDBPyConnection, alert_id: str | None = None, limit: int | None = None) -> list[AuditEntry]:
    sql = ("SELECT seq, ts, actor, action, alert_id, from_status, to_status, note, prev_hash, hash FROM audit_log"
           + (" WHERE alert_id = ?" if alert_id else "") + " ORDER BY seq DESC" + (f" LIMIT {int(limit)}" if limit else ""))
    rows = con.execute(sql, [alert_id] if alert_id else []).fetchall()
    return [AuditEntry(*r) for r in rows]


def verify_audit_chain(con: duckdb.DuckDBPyConnection) -> ChainReport:
    """Recompute every hash in order; the first entry that does not match (or a gap in seq) breaks the chain."""
    rows = con.execute("SELECT seq, ts, actor, action, alert_id, from_status, to_status, note, prev_hash, hash "
                       "FROM audit_log ORDER BY seq").fetchall()
    prev, expected_seq = GENESIS, 1
    for r in rows:
        e = AuditEntry(*r)
        if e.seq != expected_seq:
            return ChainReport(False, len(rows), prev, e.seq, f"entry {expected_seq} is missing (next is {e.seq})")
        if e.prev_hash != prev:
            return ChainReport(False, len(rows), prev, e.seq, "its previous-hash does not match the entry before it")
        h = entry_hash(prev, e.seq, e.ts, e.actor, e.action, e.alert_id, e.from_status, e.to_status, e.note)
        if h != e.hash:
            return ChainReport(False, len(rows), prev, e.seq, "its content no longer matches its hash (edited)")
        prev, expected_seq = e.hash, e.seq + 1
    return ChainReport(True, len(rows), prev)
