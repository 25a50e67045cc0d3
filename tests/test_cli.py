"""The `surveil` command as a user runs it: demo, replay, alerts, sql, scenario, detectors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import shared_data


def surveil(*args, cwd=None, check=True):
    p = subprocess.run([sys.executable, "-m", "surveil.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"surveil {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_demo_generates_replays_and_shows_alerts(tmp_path):
    out = surveil("demo", "--minutes", 3, "--out", tmp_path / "demo").stdout
    assert "events/s" in out and "alert(s)" in out
    assert "wash_trade" in out and "price_dislocation" in out
    assert "surveil sql" in out
    labels = json.loads((tmp_path / "demo" / "market" / "labels.json").read_text())
    db = tmp_path / "demo" / "surveil.duckdb"
    n = int(surveil("sql", "SELECT count(*) AS n FROM alerts", "--db", db, "--csv").stdout.split()[-1])
    assert n == len(labels["episodes"])


def test_scenario_replay_alerts_and_sql(tmp_path):
    surveil("scenario", "generate", "--out", tmp_path / "m", "--seed", 2, "--minutes", 3, "--rate", 80)
    m = tmp_path / "m"
    out = surveil("replay", *sorted((m / "fix").glob("*.fix")), *sorted((m / "tardis").glob("*.csv")),
                  "--ref", m / "ref", "--db", tmp_path / "s.duckdb", "--no-progress").stdout
    assert "events/s" in out
    listing = surveil("alerts", "--db", tmp_path / "s.duckdb", "--detector", "wash_trade").stdout
    assert "wash_trade" in listing and "price_dislocation" not in listing
    alert_id = surveil("sql", "SELECT alert_id FROM alerts WHERE detector = 'wash_trade' LIMIT 1",
                       "--db", tmp_path / "s.duckdb", "--csv").stdout.split()[-1]
    detail = surveil("alerts", "--db", tmp_path / "s.duckdb", "--id", alert_id).stdout
    assert "evidence" in detail and "traded with itself" in detail
    csv_out = surveil("sql", "SELECT venue, count(*) AS n FROM trades GROUP BY venue ORDER BY venue",
                      "--db", tmp_path / "s.duckdb", "--csv").stdout.splitlines()
    assert csv_out[0] == "venue,n" and csv_out[1].startswith("REFX,") and csv_out[2].startswith("SHARED,")


def test_sql_is_read_only_and_errors_are_clear(tmp_path):
    surveil("scenario", "generate", "--out", tmp_path / "m", "--minutes", 1, "--rate", 50, "--formats", "canonical")
    db = tmp_path / "x.duckdb"
    surveil("replay", *sorted((tmp_path / "m" / "canonical").glob("*.parquet")), "--ref", tmp_path / "m" / "ref",
            "--db", db, "--no-progress")
    p = surveil("sql", "DELETE FROM alerts", "--db", db, check=False)
    assert p.returncode == 1 and "read-only" in p.stderr.lower()
    p = surveil("sql", "SELECT 1", "--db", tmp_path / "missing.duckdb", check=False)
    assert p.returncode == 2 and "no surveil database" in p.stderr
    p = surveil("replay", tmp_path / "nope.csv", "--db", db, check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_detectors_lists_parameters_with_units():
    out = surveil("detectors").stdout
    for word in ("wash_trade", "price_dislocation", "threshold_bps", "min_duration_ms", "bps", "ms"):
        assert word in out


def test_a_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[detectors.wash_trade]\nwindow_gap_ms = 'soon'\n")
    f = tmp_path / "t.csv"
    f.write_text("symbol,timestamp,datetime,side,price,amount,cost\nA/B,1,x,buy,1,1,1\n")
    p = surveil("replay", f, "--venue", "X", "--db", tmp_path / "c.duckdb", "--config", cfg, check=False)
    assert p.returncode == 2 and "wash_trade.window_gap_ms must be int" in p.stderr


def test_real_tapes_replay_and_every_row_is_accounted_for(tmp_path):
    """Every real trade tape under ../shared/data replays; events read + dead letters = data rows."""
    import gzip

    def data_rows(path):
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
            return sum(1 for line in f if line.strip()) - 1  # minus the header

    tapes = sorted(shared_data("pump-trades-moura", "trades").glob("*.csv.gz"))
    tapes += sorted(shared_data("pump-trades-pugoev", "trades").glob("*.csv.gz"))
    tardis = shared_data("exchange-msg-samples", "tardis-csv")
    tardis_files = [tardis / "binance-futures_trades_BTCUSDT_2020-02-22.csv.gz", tardis / "bitmex_trades_XBTUSD.csv",
                    tardis / "binance-futures_quotes_BTCUSDT_2020-02-22.csv.gz", tardis / "huobi-dm-swap_quotes_BTC-USD.csv"]
    db = tmp_path / "real.duckdb"
    # accounting is the point here, so the cheap foundation detectors only: the instrument-level
    # detectors' behaviour on these tapes is measured by bench/bench_real_pumps.py
    from detectors import REGISTRY
    cfg = tmp_path / "foundation.toml"
    cfg.write_text("".join(f"[detectors.{d}]\nenabled = false\n" for d in REGISTRY
                           if d not in ("wash_trade", "price_dislocation")))
    surveil("replay", *tapes, "--venue", "BINANCE", "--db", db, "--no-progress", "--config", cfg)
    surveil("replay", *tardis_files, "--db", db, "--no-progress", "--config", cfg)
    runs = surveil("sql", "SELECT events_in, dead_letters FROM runs ORDER BY started", "--db", db, "--csv").stdout.split()[1:]
    (tape_events, tape_dead), (tardis_events, tardis_dead) = [map(int, r.split(",")) for r in runs]
    assert tape_events + tape_dead == sum(map(data_rows, tapes)) > 4_000_000
    assert tardis_events + tardis_dead == sum(map(data_rows, tardis_files))


def test_saved_investigations_run_with_parameters(tmp_path):
    surveil("scenario", "generate", "--out", tmp_path / "m", "--seed", 2, "--minutes", 3, "--rate", 80,
            "--formats", "canonical")
    db = tmp_path / "s.duckdb"
    surveil("replay", *sorted((tmp_path / "m" / "canonical").glob("*.parquet")), "--ref", tmp_path / "m" / "ref",
            "--db", db, "--no-progress")
    listing = surveil("sql", "--list", "--db", db).stdout
    for name in ("owner_activity", "group_alerts", "order_lifecycle", "venue_prices"):
        assert name in listing
    alert_id, owner = surveil("sql", "SELECT alert_id, owners[1] FROM alerts WHERE detector = 'wash_trade' LIMIT 1",
                              "--db", db, "--csv").stdout.split()[-1].split(",")

    def rows(*args):
        return surveil("sql", *args, "--db", db, "--csv").stdout.splitlines()[1:]

    lifecycle = rows("--saved", "order_lifecycle", "--param", f"alert_id={alert_id}")
    assert lifecycle and all(f",{owner}," in r for r in lifecycle)
    activity = rows("--saved", "owner_activity", "--param", f"owner={owner}", "--param", "start=2026-03-02",
                    "--param", "end=2026-03-03")
    assert any(r.startswith("trade,") for r in activity) and any(r.startswith("order,") for r in activity)
    prices = rows("--saved", "venue_prices", "--param", f"alert_id={alert_id}")
    assert {r.split(",")[1] for r in prices} == {"REFX", "SHARED"}
    group = surveil("sql", f"SELECT group_id FROM ref_owner_links WHERE owner_id = '{owner}'", "--db", db,
                    "--csv").stdout.split()[1:]
    if group:
        assert alert_id in "\n".join(rows("--saved", "group_alerts", "--param", f"group={group[0]}"))
    p = surveil("sql", "--saved", "venue_prices", "--db", db, check=False)
    assert p.returncode == 2 and "--param alert_id=" in p.stderr
