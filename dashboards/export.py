"""Case export: alerts → a self-contained HTML report plus their evidence as CSV and Parquet.

What a suspicious-transaction report needs attached: the report (charts inline as SVG,
styles inline, no link out), every evidence row with its alert id, the alerts with the
parameters that fired, the audit trail of their dispositions, and a manifest with the
SHA-256 of each file so the package can be shown unaltered later.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dashboards import audit
from dashboards.charts import lifecycle_chart, price_chart
from dashboards.queries import Sources, alert_detail, fmt_ts
from dashboards.render import render

FILES = ("report.html", "evidence.csv", "evidence.parquet", "alerts.csv", "audit.csv", "manifest.json")


def alert_charts(d) -> tuple[str, str]:
    """The detail page's two SVGs for one alert."""
    a = d.alert
    price = price_chart(d.prices, d.evidence, d.window, (a["start_ns"], a["end_ns"]),
                        title=f"{a['instrument'] or ''} trades on every venue, {fmt_ts(d.window[0])} → "
                              f"{fmt_ts(d.window[1])} UTC")
    life = lifecycle_chart(d.lifecycle, (a["start_ns"], a["end_ns"])) if d.lifecycle else ""
    return price, life


def report_html(con: duckdb.DuckDBPyConnection, src: Sources, alert_ids: list[str], *, actor: str = "",
                db_label: str = "") -> str:
    cases = []
    for aid in alert_ids:
        d = alert_detail(con, src, aid)
        if d is None:
            raise ValueError(f"no alert {aid!r}")
        price, life = alert_charts(d)
        cases.append((d, price, life, audit.audit_entries(con, aid)))
    return render("report.html", cases=cases, chain=audit.verify_audit_chain(con), actor=actor, db_label=db_label,
                  generated=fmt_ts(datetime.now(timezone.utc)), root="", css_extra="")


def case_files(con: duckdb.DuckDBPyConnection, src: Sources, alert_ids: list[str], *, actor: str = "",
               db_label: str = "") -> dict[str, bytes]:
    """Every file of the case package, by name."""
    ids = list(dict.fromkeys(a for a in alert_ids if a))
    if not ids:
        raise ValueError("choose at least one alert to export")
    files: dict[str, bytes] = {"report.html": report_html(con, src, ids, actor=actor, db_label=db_label).encode()}
    evidence = con.sql("SELECT alert_id, * EXCLUDE (alert_id) FROM alert_evidence WHERE list_contains(?, alert_id) "
                           "ORDER BY alert_id, ts, src, src_seq", params=[ids]).to_arrow_table()
    files["evidence.csv"] = _csv(evidence)
    buf = io.BytesIO()
    pq.write_table(evidence, buf, compression="zstd")
    files["evidence.parquet"] = buf.getvalue()
    alerts = con.sql("SELECT a.* EXCLUDE (params, metrics), CAST(a.params AS VARCHAR) AS params, "
                         "CAST(a.metrics AS VARCHAR) AS metrics, coalesce(s.status, 'open') AS status FROM alerts a "
                         "LEFT JOIN alert_status s USING (alert_id) WHERE list_contains(?, a.alert_id) "
                         "ORDER BY a.window_start", params=[ids]).to_arrow_table()
    files["alerts.csv"] = _csv(alerts)
    trail = con.sql("SELECT * FROM audit_log WHERE list_contains(?, alert_id) ORDER BY seq",
                    params=[ids]).to_arrow_table()
    files["audit.csv"] = _csv(trail)
    manifest = {"generated_utc": fmt_ts(datetime.now(timezone.utc)), "prepared_by": actor, "alerts": ids,
                "evidence_rows": evidence.num_rows,
                "sha256": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}}
    files["manifest.json"] = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    return files


def export_case(con: duckdb.DuckDBPyConnection, src: Sources, alert_ids: list[str], out: str | Path, *,
                as_zip: bool = False, actor: str = "", db_label: str = "") -> Path:
    """Write the case package to a directory, or to one zip file (``out`` is then the zip's path)."""
    files = case_files(con, src, alert_ids, actor=actor, db_label=db_label)
    out = Path(out)
    if as_zip:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zip_bytes(files))
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return out


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _csv(table: pa.Table) -> bytes:
    # CSV has no list type: lists (venues, owners) become JSON text, readable in a spreadsheet
    cols = []
    for col in table.columns:
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pa.array([None if v is None else orjson.dumps(v).decode() for v in col.to_pylist()], pa.string())
        cols.append(col)
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(cols, names=table.column_names), buf)
    return buf.getvalue()
