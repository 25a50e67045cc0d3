"""The dashboard's read-only SQL console.

The connection it runs on may be the daemon's own (writable) one, so read-only is
enforced on the statement, before DuckDB runs it: exactly one statement, whose type
DuckDB's own parser (``duckdb.extract_statements``) reports as a query —
SELECT/WITH/FROM/VALUES/DESCRIBE/SHOW/SUMMARIZE, or an EXPLAIN of one.  Everything else
(INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, ATTACH, DETACH, COPY, EXPORT, SET, PRAGMA,
CALL, INSTALL/LOAD, transactions) is refused with a clear error.  The query then runs
inside a transaction that is always rolled back, and is interrupted after a time limit.

>>> check_read_only("SELECT 1")
'SELECT 1'
>>> check_read_only("COPY alerts TO 'out.csv'")
Traceback (most recent call last):
...
dashboards.console.ReadOnlyError: the SQL console is read-only: COPY statements are refused (only SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN of those run here)
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import duckdb

_ALLOWED = "SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN of those"
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\b", re.IGNORECASE)
# what extract_statements calls the statements analysts type, for the error message
_NAMES = {"LOAD": "INSTALL/LOAD", "SET": "SET/USE/RESET", "CALL": "CALL/CHECKPOINT", "VARIABLE_SET": "SET VARIABLE"}


class ReadOnlyError(ValueError):
    """A statement the read-only console refuses."""


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple]
    truncated: bool
    seconds: float


def check_read_only(sql: str) -> str:
    """The one query in ``sql`` if it only reads, else ReadOnlyError saying what was refused."""
    if not sql or not sql.strip():
        raise ReadOnlyError("type a query")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise ReadOnlyError(f"SQL error: {str(e).splitlines()[0]}") from e
    if len(statements) != 1:
        raise ReadOnlyError(f"one statement at a time, please ({len(statements)} given)")
    st = statements[0]
    kind = st.type
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE executes its statement: look at what it explains
        inner = _EXPLAIN.sub("", st.query, count=1)
        check_read_only(inner)
        return st.query
    if kind != duckdb.StatementType.SELECT:
        name = _NAMES.get(kind.name, kind.name.replace("_", " "))
        raise ReadOnlyError(f"the SQL console is read-only: {name} statements are refused (only {_ALLOWED} run here)")
    return st.query


def run_query(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None, max_rows: int = 2000,
              timeout_s: float = 30.0) -> Result:
    """Run one read-only query: checked, in a transaction rolled back afterwards, interrupted after ``timeout_s``."""
    query = check_read_only(sql)
    timer = threading.Timer(timeout_s, con.interrupt)
    t0 = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    timer.start()
    try:
        rel = con.execute(query, params) if params else con.execute(query)
        if rel.description is None:
            return Result([], [], [], False, time.perf_counter() - t0)
        rows = rel.fetchmany(max_rows + 1)
        return Result([d[0] for d in rel.description], [str(d[1]) for d in rel.description], rows[:max_rows],
                      len(rows) > max_rows, time.perf_counter() - t0)
    except duckdb.InterruptException as e:
        raise ReadOnlyError(f"the query ran longer than {timeout_s:.0f}s and was stopped") from e
    except duckdb.Error as e:
        raise ReadOnlyError(f"SQL error: {e}") from e
    finally:
        timer.cancel()
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # the transaction was already aborted by the error
