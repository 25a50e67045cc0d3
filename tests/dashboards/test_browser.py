"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

An analyst's path on a replayed market: filter the blotter, open an alert, see the price
chart drawn with the evidence marked, record a disposition, read it back in the audit log.
Screenshots of each step go to tests/artifacts/ (the alert detail also to
dashboards/screenshot-alert-detail.png, which the README shows).
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import duckdb
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium absent: apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db_copy):
    import uvicorn

    from dashboards.app import check_bind, create_app

    con = duckdb.connect(str(db_copy))
    app = create_app(con.cursor, db_label=db_copy.name, refresh_ms=500)
    port = free_port()
    check_bind("127.0.0.1", None)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", con
    srv.should_exit = True
    thread.join(10)
    con.close()


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_analyst_filters_opens_an_alert_records_a_disposition_and_reads_the_audit_log(server, page):
    url, con = server
    page.goto(url + "/")
    every = page.locator("#blotter tbody tr").count()
    assert every == con.execute("SELECT count(*) FROM alerts").fetchone()[0] >= 4
    # live refresh: the page polls the JSON endpoint and says so
    page.wait_for_function("document.getElementById('refreshed').textContent.startsWith('refreshed')", timeout=10_000)
    shot(page, "1-blotter")

    page.select_option("select[name=detector]", "spoofing")
    page.click("#apply")
    page.wait_for_url("**detector=spoofing**")
    rows = page.locator("#blotter tbody tr")
    n = con.execute("SELECT count(*) FROM alerts WHERE detector = 'spoofing'").fetchone()[0]
    assert rows.count() == n >= 1 and n < every
    assert all(rows.nth(i).locator("td").nth(6).inner_text() == "spoofing" for i in range(n))  # after score, triage
    shot(page, "2-blotter-filtered")

    alert_id = rows.first.get_attribute("data-id")
    rows.first.locator("td.wrap a").click()
    page.wait_for_url(f"**/alert/{alert_id}")
    chart = page.locator("#price-chart svg")
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 200
    assert page.locator("#price-chart svg polyline.venue-line").count() >= 1
    markers = page.locator("#price-chart svg .evidence-marker")
    priced = con.execute("SELECT count(*) FROM alert_evidence WHERE alert_id = ? AND price IS NOT NULL",
                         [alert_id]).fetchone()[0]
    assert markers.count() == priced > 0
    for i in range(markers.count()):  # every marker drawn inside the plot, not off the edge
        m = markers.nth(i).bounding_box()
        assert m and box["x"] <= m["x"] <= box["x"] + box["width"] and box["y"] <= m["y"] <= box["y"] + box["height"]
    assert page.locator("#lifecycle-chart svg .evidence-order").count() >= 1
    assert page.locator("#status").inner_text() == "open"
    shot(page, "3-alert-detail")
    page.screenshot(path=str(REPO / "dashboards" / "screenshot-alert-detail.png"), full_page=False)

    # no note: refused, nothing recorded
    page.fill("#actor", "kim.analyst")
    page.select_option("#to_status", "under_review")
    page.click("#record")
    assert "a note is required" in page.locator("#error").inner_text()
    assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0
    page.fill("#actor", "kim.analyst")
    page.fill("#note", "Large sell order pulled 16s after a small buy on the other platform; pulling the book.")
    page.click("#record")
    page.wait_for_url("**recorded=1**")
    assert page.locator("#status").inner_text() == "under review"
    assert "pulling the book" in page.locator("#alert-audit").inner_text()
    shot(page, "4-disposition-recorded")

    page.click("text=Audit log")
    page.wait_for_url("**/audit")
    assert "Hash chain verified: 1 entries" in page.locator("#chain").inner_text()
    row = page.locator("#audit tbody tr").first.inner_text()
    assert "kim.analyst" in row and alert_id in row and "under review" in row and "pulling the book" in row
    shot(page, "5-audit-log")
    entry = con.execute("SELECT actor, alert_id, from_status, to_status FROM audit_log").fetchall()
    assert entry == [("kim.analyst", alert_id, "open", "under_review")]
