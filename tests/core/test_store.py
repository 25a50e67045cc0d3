"""The DuckDB store: upsert by alert id, evidence replaced with its alert, dead letters, archive views."""
import duckdb
import pyarrow as pa
import pytest

from detectors.wash_trade import WashTrade
from surveil.schemas import dead_letters
from surveil.store import Store, connect_readonly
from tests.conftest import events


def wash_alerts(n_trades: int):
    t = events(ts=[float(i) for i in range(n_trades)], kind=["trade"] * n_trades, venue=["SHARED"] * n_trades,
               instrument=["BTC/USDT"] * n_trades, price=[100.0] * n_trades, qty=[1.0] * n_trades,
               trade_id=[f"t{i}" for i in range(n_trades)], buy_account=["a"] * n_trades, sell_account=["b"] * n_trades,
               buy_owner=["O1"] * n_trades, sell_owner=["O1"] * n_trades, buy_group=["O1"] * n_trades, sell_group=["O1"] * n_trades)
    d = WashTrade()
    return t, d.update(d.new_state(), d.select(t))


def test_upsert_keeps_one_row_per_alert_with_the_latest_evidence(tmp_path):
    _, [short] = wash_alerts(2)
    _, [long] = wash_alerts(4)
    assert short.alert_id == long.alert_id
    s = Store(tmp_path / "s.duckdb")
    s.write_alerts([short])
    s.write_alerts([long])
    s.write_alerts([long])  # a second replay of the same events
    rows = s.con.execute("SELECT alert_id, evidence_count FROM alerts").fetchall()
    assert rows == [(long.alert_id, 4)]
    assert s.con.execute("SELECT count(*) FROM alert_evidence").fetchone()[0] == 4
    s.close()


def test_evidence_keeps_nanoseconds(tmp_path):
    t, [a] = wash_alerts(1)
    s = Store(tmp_path / "s.duckdb")
    s.write_alerts([a])
    got = s.con.execute("SELECT epoch_ns(ts) FROM alert_evidence").fetchone()[0]
    assert got == t.column("ts").cast(pa.int64())[0].as_py()
    s.close()


def test_dead_letters_keep_reason_and_raw_bytes(tmp_path):
    s = Store(tmp_path / "s.duckdb")
    s.write_dead_letters(dead_letters("f.fix", "decode.fix", [("CheckSum mismatch", "line 3", b"8=FIX.4.4\x019=5")], 7))
    assert s.con.execute("SELECT step_id, reason, position, raw FROM dead_letters").fetchall() == [
        ("decode.fix", "CheckSum mismatch", "line 3", b"8=FIX.4.4\x019=5")]
    s.close()


def test_archive_views_and_supersession_of_an_identical_replay(tmp_path):
    t, _ = wash_alerts(3)
    for _ in range(2):  # the same input replayed twice
        s = Store(tmp_path / "s.duckdb")
        s.start_run("replay", ["x"], fingerprint="same-input")
        s.archive(t)
        s.finish_run("ok", t.num_rows)
        s.close()
    con = connect_readonly(tmp_path / "s.duckdb")
    assert con.execute("SELECT count(*) FROM trades").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM runs WHERE superseded_by IS NOT NULL").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM alerts")  # read-only for investigators
    con.close()
