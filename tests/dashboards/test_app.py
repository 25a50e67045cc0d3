"""The dashboard over HTTP, on a real replayed store: blotter, detail, disposition, audit, SQL console, export."""
from __future__ import annotations

import csv
import io
import re
import zipfile

import duckdb
import pyarrow.parquet as pq
import pytest

from dashboards import audit
from dashboards.app import UnsafeBindError, check_bind, create_app, serve


def alerts(con, where="true"):
    return con.execute(f"SELECT alert_id, detector, severity, instrument, evidence_count FROM alerts WHERE {where} "
                       "ORDER BY alert_id").fetchall()


def test_blotter_lists_every_alert_and_each_filter_narrows_it(client, con):
    every = alerts(con)
    assert len(every) >= 4
    r = client.get("/")
    assert r.status_code == 200
    assert sorted(re.findall(r'<tr data-id="([0-9a-f]{24})"', r.text)) == [a[0] for a in every]
    data = client.get("/api/alerts").json()
    assert data["total"] == len(every)
    for key, column in (("detector", 1), ("severity", 2), ("instrument", 3)):
        value = every[0][column]
        want = sorted(a[0] for a in every if a[column] == value)
        got = client.get("/api/alerts", params={key: value}).json()
        assert sorted(x["alert_id"] for x in got["rows"]) == want, key
        assert got["total"] == len(want)
    owner, oid = con.execute("SELECT owners[1], alert_id FROM alerts WHERE len(owners) > 0 LIMIT 1").fetchone()
    got = client.get("/api/alerts", params={"owner": owner}).json()["rows"]
    assert oid in {x["alert_id"] for x in got} and all(owner in x["owners"] for x in got)
    # a venue no alert names, and a time window after every alert: nothing
    assert client.get("/api/alerts", params={"venue": "NOWHERE"}).json()["total"] == 0
    assert client.get("/api/alerts", params={"since": "2100-01-01"}).json()["total"] == 0
    assert client.get("/api/alerts", params={"since": "yesterday"}).status_code == 400


def test_blotter_sorts_and_filters_by_disposition_status(client, con):
    rows = client.get("/api/alerts", params={"sort": "score", "dir": "asc"}).json()["rows"]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores)
    rows = client.get("/api/alerts", params={"sort": "time"}).json()["rows"]
    starts = [r["start_ns"] for r in rows]
    assert starts == sorted(starts, reverse=True)
    target = rows[0]["alert_id"]
    audit.record_disposition(con, target, "under_review", actor="kim", note="pulling the order book")
    got = client.get("/api/alerts", params={"status": "under_review"}).json()["rows"]
    assert [r["alert_id"] for r in got] == [target]
    assert target not in {r["alert_id"] for r in client.get("/api/alerts", params={"status": "open"}).json()["rows"]}


def _close(con, alert_id: str, true_positive: bool) -> None:
    audit.record_disposition(con, alert_id, "under_review", actor="kim", note="reviewing the evidence")
    audit.record_disposition(con, alert_id, "closed_true_positive" if true_positive else "closed_false_positive",
                             actor="kim", note="confirmed with the order book" if true_positive else "market maker")


def test_blotter_sorts_by_the_triage_score_learnt_from_dispositions(client, con):
    from surveil.triage import alert_rows, triage

    # before any disposition: every alert neutral, and the blotter says so; the detector's own score breaks the tie
    r = client.get("/", params={"sort": "triage"})
    assert "triage: neutral: no dispositions yet" in r.text
    data = client.get("/api/alerts", params={"sort": "triage"}).json()
    assert data["triage"]["learnt_from"] == 0 and {x["triage"] for x in data["rows"]} == {0.5}
    assert {x["triage_reason"] for x in data["rows"]} == {"no dispositions yet"}
    scores = [x["score"] for x in data["rows"]]
    assert scores == sorted(scores, reverse=True)
    # analysts close all but one of a detector's alerts as true positives, and all but one of another's as false
    per = con.execute("SELECT detector, list(alert_id ORDER BY alert_id) FROM alerts GROUP BY detector "
                      "HAVING count(*) >= 2 ORDER BY count(*) DESC, detector").fetchall()
    assert len(per) >= 2, per
    (good, good_ids), (bad, bad_ids) = per[0], per[1]
    decided = []
    for ids, verdict in ((good_ids, True), (bad_ids, False)):
        for a in ids[:-1]:
            _close(con, a, verdict)
            decided.append((a, verdict))
    # one more closed as a false positive and then reopened for review: undecided again, not learnt from
    reopened = bad_ids[-1]
    _close(con, reopened, False)
    audit.record_disposition(con, reopened, "under_review", actor="lee", note="the fills look prearranged after all")
    data = client.get("/api/alerts", params={"sort": "triage"}).json()
    n = len(decided)
    assert data["triage"]["learnt_from"] == n and data["triage"]["summary"].startswith(f"learnt from {n} dispositions")
    rows = data["rows"]
    got = [x["triage"] for x in rows]
    assert got == sorted(got, reverse=True) and len(set(got)) > 2
    # the scores are the triage model's on the store's alerts and the closures still standing
    want = {s.alert_id: s.score for s in triage(alert_rows(con), decided)}
    assert {x["alert_id"]: x["triage"] for x in rows} == want
    score = {x["alert_id"]: x["triage"] for x in rows}
    assert min(score[a] for a, y in decided if y) > max(score[a] for a, y in decided if not y), (good, bad)
    assert all(x["triage_reason"].startswith(f"learnt from {n} dispositions") for x in rows)
    # ascending is the reverse; the page shows the same order, the score and the model's summary
    asc = client.get("/api/alerts", params={"sort": "triage", "dir": "asc"}).json()["rows"]
    assert [x["triage"] for x in asc] == sorted(got)
    page = client.get("/", params={"sort": "triage"}).text
    assert f"triage: learnt from {n} dispositions" in page
    assert re.findall(r'<tr data-id="([0-9a-f]{24})"', page) == [x["alert_id"] for x in rows]
    first = rows[0]
    assert f'<td class="num triage" title="{first["triage_reason"]}">{first["triage"]:.2f}</td>' in page


def test_alert_detail_draws_the_price_chart_with_every_evidence_event_marked(client, con):
    for alert_id, detector, _, instrument, n_evidence in alerts(con):
        r = client.get(f"/alert/{alert_id}")
        assert r.status_code == 200
        svg = re.search(r'<div class="chart-wrap" id="price-chart">(<svg.*?</svg>)', r.text, re.S).group(1)
        priced = con.execute("SELECT count(*) FROM alert_evidence WHERE alert_id = ? AND price IS NOT NULL",
                             [alert_id]).fetchone()[0]
        assert svg.count('class="evidence-marker') == priced > 0
        # a line per venue that traded the instrument in the window, an axis with UTC times
        assert 'class="venue-line" data-venue="SHARED"' in svg
        assert re.search(r">\d\d:\d\d(:\d\d)?</text>", svg) and "time (UTC)" in svg
        assert 'class="alert-window"' in svg
        assert r.text.count("<tr>") >= n_evidence  # the evidence table
        params = con.execute("SELECT params FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()[0]
        for name in re.findall(r'"(\w+)":', params):
            assert f'<td class="mono">{name}</td>' in r.text
        if detector in ("spoofing", "layering"):
            assert 'class="chart lifecycle-chart"' in r.text and 'evidence-order' in r.text
    assert client.get("/alert/000000000000000000000000").status_code == 404


def test_disposition_needs_a_note_follows_the_workflow_and_lands_in_the_audit_log(client, con):
    alert_id = alerts(con)[0][0]
    r = client.post(f"/alert/{alert_id}/disposition", data={"actor": "kim", "to_status": "under_review", "note": "  "})
    assert r.status_code == 400 and "a note is required" in r.text
    r = client.post(f"/alert/{alert_id}/disposition", data={"actor": "kim", "to_status": "closed_true_positive",
                                                           "note": "obvious"})
    assert r.status_code == 400 and "can move to under_review, not closed_true_positive" in r.text
    assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0
    r = client.post(f"/alert/{alert_id}/disposition", follow_redirects=False,
                    data={"actor": "kim", "to_status": "under_review", "note": "checking the fills"})
    assert r.status_code == 303
    r = client.post(f"/alert/{alert_id}/disposition",
                    data={"actor": "lee", "to_status": "escalated", "note": "same owner on both sides, refer to MLRO"})
    assert r.status_code == 200 and 'id="status">escalated' in r.text
    rows = con.execute("SELECT seq, actor, alert_id, from_status, to_status, note FROM audit_log ORDER BY seq").fetchall()
    assert rows == [(1, "kim", alert_id, "open", "under_review", "checking the fills"),
                    (2, "lee", alert_id, "under_review", "escalated", "same owner on both sides, refer to MLRO")]
    page = client.get("/audit").text
    assert "Hash chain verified: 2 entries" in page and "refer to MLRO" in page
    assert client.get("/api/audit/verify").json()["ok"] is True
    assert client.post("/alert/nope/disposition", data={"actor": "kim", "to_status": "under_review",
                                                         "note": "x"}).status_code == 404
    assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 2


def test_chain_verification_detects_an_edited_a_deleted_and_a_rewritten_row(con):
    audit.ensure_tables(con)
    ids = [a[0] for a in alerts(con)[:3]]
    for i in ids:
        audit.record_disposition(con, i, "under_review", actor="kim", note=f"review {i}")
        audit.record_disposition(con, i, "closed_false_positive", actor="kim", note="market maker hedging")
    assert audit.verify_audit_chain(con).ok
    snapshot = con.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()

    def restore():
        con.execute("DELETE FROM audit_log")
        con.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", snapshot)
        assert audit.verify_audit_chain(con).ok

    con.execute("UPDATE audit_log SET to_status = 'closed_true_positive' WHERE seq = 4")
    report = audit.verify_audit_chain(con)
    assert (report.ok, report.broken_at) == (False, 4) and "edited" in report.reason
    restore()
    con.execute("DELETE FROM audit_log WHERE seq = 3")
    assert audit.verify_audit_chain(con).broken_at == 4
    restore()
    # a forger who recomputes the edited row's own hash still breaks the next row's link
    e = audit.audit_entries(con)[-2]  # seq 2
    forged = audit.entry_hash(e.prev_hash, e.seq, e.ts, e.actor, e.action, e.alert_id, e.from_status,
                              "closed_true_positive", e.note)
    con.execute("UPDATE audit_log SET to_status = 'closed_true_positive', hash = ? WHERE seq = 2", [forged])
    assert audit.verify_audit_chain(con).broken_at == 3


def test_the_audit_page_reports_a_tampered_log(client, con):
    alert_id = alerts(con)[0][0]
    audit.record_disposition(con, alert_id, "under_review", actor="kim", note="first look")
    con.execute("UPDATE audit_log SET actor = 'someone else'")
    r = client.get("/audit")
    assert "Hash chain BROKEN at entry 1" in r.text
    assert client.get("/api/audit/verify").json()["broken_at"] == 1


@pytest.mark.parametrize("sql, refused", [
    ("INSERT INTO audit_log SELECT * FROM audit_log", "INSERT"),
    ("UPDATE audit_log SET note = 'x'", "UPDATE"),
    ("DELETE FROM alerts", "DELETE"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("DROP TABLE alerts", "DROP"),
    ("ATTACH 'other.duckdb' AS o", "ATTACH"),
    ("COPY alerts TO 'alerts.csv'", "COPY"),
    ("EXPORT DATABASE 'dump'", "EXPORT"),
    ("SET threads = 1", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("INSTALL httpfs", "INSTALL/LOAD"),
    ("LOAD httpfs", "INSTALL/LOAD"),
    ("EXPLAIN ANALYZE DELETE FROM alerts", "DELETE"),
    ("SELECT 1; DELETE FROM alerts", "one statement at a time"),
])
def test_sql_console_refuses_anything_that_is_not_a_read(client, con, sql, refused):
    before = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    r = client.post("/sql", data={"query": sql})
    assert r.status_code == 400
    assert refused in r.text and ("read-only" in r.text or "one statement" in r.text)
    assert client.post("/sql", json={"query": sql}, headers={"Accept": "application/json"}).json()["error"]
    assert con.execute("SELECT count(*) FROM alerts").fetchone()[0] == before
    assert "other.duckdb" not in [r[0] for r in con.execute("SELECT path FROM duckdb_databases()").fetchall()]


def test_sql_console_runs_reads_and_saved_investigations(client, con):
    r = client.post("/sql", json={"query": "SELECT detector, count(*) AS n FROM alerts GROUP BY ALL ORDER BY 1"},
                    headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert r.json()["rows"] == [list(x) for x in con.execute(
        "SELECT detector, count(*) FROM alerts GROUP BY ALL ORDER BY 1").fetchall()]
    alert_id = con.execute("SELECT alert_id FROM alerts WHERE detector = 'spoofing' LIMIT 1").fetchone()[0]
    r = client.get("/sql", params={"saved": "order_lifecycle", "p_alert_id": alert_id})
    assert r.status_code == 200 and 'id="result"' in r.text
    n = con.execute(__import__("dashboards").saved("order_lifecycle")[0], {"alert_id": alert_id}).fetchall()
    assert len(n) > 0 and r.text.count("<tr>") == len(n) + 1


def test_owner_view_shows_accounts_on_each_platform_links_and_alert_history(client, con):
    owner, alert_id = con.execute("SELECT owners[1], alert_id FROM alerts WHERE len(owners) > 0 "
                                  "ORDER BY detector = 'wash_trade' DESC, alert_id LIMIT 1").fetchone()
    r = client.get(f"/owner/{owner}")
    assert r.status_code == 200
    for platform, account in con.execute("SELECT platform, account FROM ref_accounts WHERE owner_id = ?", [owner]).fetchall():
        assert f"<td>{platform}</td><td class=\"mono\">{account}</td>" in r.text
    assert f'/alert/{alert_id}"' in r.text
    group = con.execute("SELECT group_id FROM ref_owner_links WHERE owner_id = ?", [owner]).fetchone()
    if group:
        for (other,) in con.execute("SELECT owner_id FROM ref_owner_links WHERE group_id = ? AND owner_id <> ?",
                                    [group[0], owner]).fetchall():
            assert f"/owner/{other}" in r.text
    assert client.get("/owner/NOBODY").status_code == 404


def test_case_export_writes_a_self_contained_report_and_the_evidence(client, con):
    ids = [a[0] for a in alerts(con)[:2]]
    audit.record_disposition(con, ids[0], "under_review", actor="kim", note="for the STR")
    r = client.post("/export", data={"ids": ids, "format": "zip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(z.namelist()) == sorted(["report.html", "evidence.csv", "evidence.parquet", "alerts.csv", "audit.csv",
                                           "manifest.json"])
    html = z.read("report.html").decode()
    assert html.count('class="chart price-chart"') == 2 and "for the STR" in html
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="?http', html)  # nothing fetched from anywhere
    expected = con.execute("SELECT count(*) FROM alert_evidence WHERE list_contains(?, alert_id)", [ids]).fetchone()[0]
    table = pq.read_table(io.BytesIO(z.read("evidence.parquet")))
    assert table.num_rows == expected and set(table.column("alert_id").to_pylist()) == set(ids)
    rows = list(csv.DictReader(io.StringIO(z.read("evidence.csv").decode())))
    assert len(rows) == expected
    audit_rows = list(csv.DictReader(io.StringIO(z.read("audit.csv").decode())))
    assert [a["note"] for a in audit_rows] == ["for the STR"]


def test_case_export_to_a_directory(con, tmp_path):
    from dashboards.export import export_case
    from dashboards.queries import Sources

    audit.ensure_tables(con)
    alert_id = alerts(con)[0][0]
    out = export_case(con, Sources(), [alert_id], tmp_path / "case")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.html", "evidence.csv", "evidence.parquet", "alerts.csv", "audit.csv", "manifest.json"])
    assert pq.read_table(out / "evidence.parquet").num_rows == alerts(con)[0][4]
    with pytest.raises(ValueError, match="no alert"):
        export_case(con, Sources(), ["missing"], tmp_path / "none")


def test_a_non_loopback_bind_without_a_token_is_refused(con):
    app = create_app(con.cursor)
    for host in ("0.0.0.0", "192.168.1.20", "::", "dashboard.example"):
        with pytest.raises(UnsafeBindError, match="without a token"):
            serve(app, host=host, port=0)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, None)
    check_bind("0.0.0.0", "s3cret")


def test_with_a_token_every_request_must_carry_it(con):
    from starlette.testclient import TestClient

    with TestClient(create_app(con.cursor, token="s3cret")) as c:
        assert c.get("/").status_code == 401
        assert c.get("/api/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/alerts", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/?token=s3cret", follow_redirects=False)
        assert r.status_code == 303 and "token" not in r.headers["location"]
        assert c.get("/api/alerts").status_code == 200  # the cookie now carries it


def test_a_read_only_connection_serves_pages_once_the_tables_exist(db_copy):
    w = duckdb.connect(str(db_copy))
    audit.ensure_tables(w)
    w.close()
    ro = duckdb.connect(str(db_copy), read_only=True)
    from starlette.testclient import TestClient

    with TestClient(create_app(ro.cursor)) as c:
        assert c.get("/").status_code == 200
    ro.close()


def test_in_daemon_mode_a_new_alert_shows_in_the_blotter_at_once(db_copy):
    """Hosted in the writer's process on cursors of the store's own connection: no second writer, no delay."""
    from starlette.testclient import TestClient

    from surveil.alerts import Alert, EVIDENCE_SCHEMA, Severity
    from surveil.store import Store

    store = Store(db_copy, archive_dir=db_copy.with_suffix(".archive"), run_id="daemon-test")
    try:
        with TestClient(create_app(store.con.cursor)) as c:
            before = c.get("/api/alerts").json()["total"]
            alert = Alert.build(detector="wash_trade", version="1.0", key="O9999", window_start_ns=10**18,
                                window_end_ns=10**18 + 5 * 10**9, opening_evidence=["x/t/1"],
                                evidence=EVIDENCE_SCHEMA.empty_table(), severity=Severity.HIGH, score=1.0,
                                instrument="BTC/USDT", venues=["SHARED"], owners=["O9999"], accounts=["HK-X"],
                                summary="injected while the dashboard serves", params={"min_trades": 2})
            store.write_alerts([alert])
            rows = c.get("/api/alerts", params={"owner": "O9999"}).json()
            assert rows["total"] == 1 and rows["rows"][0]["alert_id"] == alert.alert_id
            assert c.get("/api/alerts").json()["total"] == before + 1
            r = c.post(f"/alert/{alert.alert_id}/disposition",
                       data={"actor": "kim", "to_status": "under_review", "note": "seen live"})
            assert r.status_code == 200
    finally:
        store.close()
