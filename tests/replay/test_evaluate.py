"""Scoring alerts against labels at the edges: tolerance, owners, related types, look-alikes."""
from __future__ import annotations

import pytest

from replay.evaluate import classify, lookalike_hits, rates, score

S = 1_000_000_000


def ep(type_="spoofing", instrument="BTC/USDT", owners=("O1",), start=100, end=200, related=None):
    out = {"type": type_, "instrument": instrument, "owners": list(owners), "start_ns": start * S, "end_ns": end * S}
    if related is not None:
        out["related_types"] = list(related)
    return out


def alert(detector="spoofing", instrument="BTC/USDT", owners=("O1",), start=150, end=160):
    return {"detector": detector, "instrument": instrument, "owners": list(owners),
            "window_start_ns": int(start * S), "window_end_ns": int(end * S)}


@pytest.mark.parametrize("start,end,tol,want", [
    (40, 40, 60.0, "true"),             # ends exactly tolerance before the episode starts
    (39.999999999, 39.999999999, 60.0, "false"),  # one ns further out
    (260, 270, 60.0, "true"),           # starts exactly tolerance after the episode ends
    (260.000000001, 270, 60.0, "false"),
    (90, 95, 0.0, "false"),             # no slack: before the start misses
    (90, 100, 0.0, "true"),             # touching the start counts
])
def test_window_tolerance_edges(start, end, tol, want):
    labels = {"episodes": [ep()]}
    assert classify([alert(start=start, end=end)], labels, tolerance_s=tol) == [(want, None)]
    s = score([alert(start=start, end=end)], labels, tolerance_s=tol)["spoofing"]
    assert s["found"] == (want == "true") and s["true_alerts"] == (want == "true")


def test_owner_rules():
    labels = {"episodes": [ep(owners=("O1", "O2"))]}
    assert classify([alert(owners=("O2", "O9"))], labels)[0][0] == "true"  # one shared owner suffices
    assert classify([alert(owners=("O9",))], labels)[0][0] == "false"  # someone else's spoofing
    assert classify([alert(owners=())], labels)[0][0] == "true"  # an instrument-level alert names nobody
    no_owner_ep = {"episodes": [ep(owners=())]}
    assert classify([alert(owners=("O9",))], no_owner_ep)[0][0] == "true"


def test_type_and_instrument_must_agree():
    labels = {"episodes": [ep()]}
    assert classify([alert(detector="layering")], labels)[0][0] == "false"
    assert classify([alert(instrument="ETH/USDT")], labels)[0][0] == "false"


def test_related_alert_is_neither_true_nor_false():
    pump = ep("pump_and_dump", owners=("G1",), related=("abnormal_move", "price_dislocation"))
    labels = {"episodes": [pump]}
    alerts = [alert("abnormal_move", owners=()), alert("price_dislocation", owners=()),
              alert("off_market", owners=())]  # off_market is not related: a false positive
    assert [c for c, _ in classify(alerts, labels)] == ["related", "related", "false"]
    s = score(alerts, labels)
    assert s["abnormal_move"] == {**s["abnormal_move"], "alerts": 1, "related_alerts": 1, "true_alerts": 0,
                                  "precision": 1.0, "recall": 1.0}
    assert s["off_market"]["false_alerts"] == 1 and s["off_market"]["precision"] == 0.0
    assert s["pump_and_dump"]["recall"] == 0.0  # a related alert does not find the pump


def test_related_needs_overlap_and_owner_rule():
    labels = {"episodes": [ep("pump_and_dump", owners=("G1",), related=("momentum_ignition",))]}
    assert classify([alert("momentum_ignition", owners=("G1",))], labels)[0][0] == "related"
    assert classify([alert("momentum_ignition", owners=("X",))], labels)[0][0] == "false"
    assert classify([alert("momentum_ignition", owners=("G1",), start=900, end=901)], labels)[0][0] == "false"


def test_own_type_match_wins_over_related():
    labels = {"episodes": [ep("abnormal_move", owners=(), start=100, end=200),
                           ep("pump_and_dump", owners=("G1",), start=100, end=200, related=("abnormal_move",))]}
    s = score([alert("abnormal_move", owners=())], labels)["abnormal_move"]
    assert (s["true_alerts"], s["related_alerts"], s["found"]) == (1, 0, 1)


def test_related_alerts_leave_precision_denominator():
    labels = {"episodes": [ep("abnormal_move", owners=(), start=100, end=200),
                           ep("pump_and_dump", owners=("G1",), start=1000, end=1100, related=("abnormal_move",))]}
    alerts = [alert("abnormal_move", owners=()),  # true
              alert("abnormal_move", owners=(), start=1050, end=1060),  # related
              alert("abnormal_move", owners=(), start=5000, end=5010)]  # false
    s = score(alerts, labels)["abnormal_move"]
    assert (s["alerts"], s["true_alerts"], s["related_alerts"], s["false_alerts"]) == (3, 1, 1, 1)
    assert s["precision"] == 0.5 and s["recall"] == 1.0


def test_lookalike_alerts_are_false_positives_by_type():
    labels = {"episodes": [ep("spoofing", start=100, end=200)],
              "lookalikes": [ep("market_maker_quoting", owners=("MM1",), start=1000, end=1100),
                             ep("honest_large_order", owners=("O7",), start=2000, end=2100)]}
    alerts = [alert("spoofing", owners=("MM1",), start=1050, end=1060),
              alert("layering", owners=("MM1",), start=1050, end=1060),
              alert("spoofing", owners=("O7",), start=2050, end=2060),
              alert("spoofing", owners=("O8",), start=2050, end=2060),  # not the look-alike's owner
              alert("spoofing", owners=("O1",))]  # the real episode
    assert [c for c, _ in classify(alerts, labels)] == ["lookalike", "lookalike", "lookalike", "false", "true"]
    assert lookalike_hits(alerts, labels) == {("spoofing", "market_maker_quoting"): 1,
                                              ("layering", "market_maker_quoting"): 1,
                                              ("spoofing", "honest_large_order"): 1}
    s = score(alerts, labels)["spoofing"]
    assert (s["alerts"], s["true_alerts"], s["lookalike_alerts"], s["false_alerts"]) == (4, 1, 2, 1)
    assert s["precision"] == 0.25


def test_lookalike_window_uses_tolerance():
    labels = {"episodes": [], "lookalikes": [ep("news_jump", owners=(), start=100, end=200)]}
    a = alert("abnormal_move", owners=(), start=260, end=261)
    assert classify([a], labels, tolerance_s=60.0) == [("lookalike", "news_jump")]
    assert classify([a], labels, tolerance_s=59.0) == [("false", None)]


def test_one_alert_finds_many_episodes_but_counts_once():
    labels = {"episodes": [ep(start=100, end=120), ep(start=130, end=150)]}
    s = score([alert(start=110, end=140)], labels)["spoofing"]
    assert (s["found"], s["episodes"], s["alerts"], s["true_alerts"]) == (2, 2, 1, 1)


def test_empty_and_clean_market():
    assert score([], {"episodes": []}) == {}
    s = score([alert()], {"episodes": []})["spoofing"]  # a clean market: every alert is false
    assert (s["false_alerts"], s["precision"], s["recall"]) == (1, 0.0, 1.0)
    missed = score([], {"episodes": [ep()]})["spoofing"]
    assert (missed["precision"], missed["recall"], missed["f1"]) == (0.0, 0.0, 0.0)


def test_rates_sum_over_seeds():
    a = score([alert()], {"episodes": [ep()]})["spoofing"]
    b = score([alert(owners=("Z",))], {"episodes": [ep(), ep(start=500, end=600)]})["spoofing"]
    total = {k: a[k] + b[k] for k in ("alerts", "related_alerts", "true_alerts", "episodes", "found")}
    assert rates(total) == {"precision": 0.5, "recall": 1 / 3, "f1": pytest.approx(0.4)}
