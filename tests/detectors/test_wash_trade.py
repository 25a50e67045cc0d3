from detectors.wash_trade import WashTrade
from tests.conftest import S, events


def trades(buy_groups, sell_groups, ts=None, buy_platforms=None, sell_platforms=None):
    n = len(buy_groups)
    return events(
        ts=ts or [float(i) for i in range(n)], kind=["trade"] * n, venue=["SHARED"] * n, instrument=["BTC/USDT"] * n,
        price=[100.0] * n, qty=[2.0] * n, trade_id=[f"t{i}" for i in range(n)],
        buy_account=[f"a-{g}" for g in buy_groups], sell_account=[f"b-{g}" for g in sell_groups],
        buy_platform=buy_platforms or ["HKVATP"] * n, sell_platform=sell_platforms or ["OVSAFF"] * n,
        buy_owner=buy_groups, sell_owner=sell_groups, buy_group=buy_groups, sell_group=sell_groups)


def alerts_of(det, table):
    return det.update(det.new_state(), det.select(table))


def test_cross_platform_self_match_alerts_with_both_accounts():
    [a] = alerts_of(WashTrade(), trades(["O1"], ["O1"]))
    assert a.owners == ["O1"] and a.accounts == ["HKVATP:a-O1", "OVSAFF:b-O1"]
    assert a.metrics["cross_platform_trades"] == 1 and "across platforms" in a.summary
    assert a.evidence.column("trade_id").to_pylist() == ["t0"]


def test_trades_between_different_owners_do_not_alert():
    assert alerts_of(WashTrade(), trades(["O1", "O2"], ["O2", "O1"])) == []


def test_linked_group_counts_as_one_owner():
    t = trades(["G1"], ["G1"])
    t = t.set_column(t.schema.get_field_index("sell_owner"), "sell_owner", [["O2"]])
    [a] = alerts_of(WashTrade(), t)
    assert a.owners == ["G1", "O2"] and "linked group G1" in a.summary


def test_window_gap_just_inside_joins_just_outside_splits():
    det = WashTrade(window_gap_ms=10_000)
    inside = alerts_of(det, trades(["O1", "O1"], ["O1", "O1"], ts=[0.0, 10.0]))
    outside = alerts_of(det, trades(["O1", "O1"], ["O1", "O1"], ts=[0.0, 10.001]))
    assert len(inside) == 1 and inside[0].metrics["trades"] == 2
    assert len(outside) == 2


def test_min_trades_threshold():
    assert alerts_of(WashTrade(min_trades=3), trades(["O1"] * 2, ["O1"] * 2)) == []
    [a] = alerts_of(WashTrade(min_trades=3), trades(["O1"] * 3, ["O1"] * 3))
    assert a.metrics["trades"] == 3


def test_revisions_keep_the_id_and_grow_the_evidence():
    det = WashTrade()
    st = det.new_state()
    t = det.select(trades(["O1"] * 3, ["O1"] * 3))
    first = det.update(st, t.slice(0, 1))[0]
    last = det.update(st, t.slice(1))[0]
    assert first.alert_id == last.alert_id and last.evidence.num_rows == 3
    assert det.is_idle(st, last.window_end_ns + det.window_gap_ms * 1_000_000 + 1)
    assert not det.is_idle(st, last.window_end_ns + S)


def test_evidence_keeps_the_first_trades_and_the_metrics_count_them_all():
    [a] = alerts_of(WashTrade(max_evidence=2), trades(["O1"] * 5, ["O1"] * 5))
    assert a.evidence.column("trade_id").to_pylist() == ["t0", "t1"]
    assert a.metrics["trades"] == 5 and "5 time(s)" in a.summary
    [b] = alerts_of(WashTrade(max_evidence=5), trades(["O1"] * 5, ["O1"] * 5))
    assert b.alert_id == a.alert_id and b.evidence.num_rows == 5
