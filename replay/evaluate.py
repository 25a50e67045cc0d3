"""Score alerts against a scenario's ``labels.json``: precision and recall per detector.

An alert *matches* an episode when the episode's type is the detector's name, the
instrument is the same, the windows overlap (with ``tolerance_s`` of slack either
side, since a detector's window starts at the first evidence it sees), and — for
owner-keyed detectors — the alert names at least one of the episode's owners.
Precision is the share of alerts matching some episode; recall the share of
episodes matched by some alert.

Every alert falls in exactly one class (``classify``), tried in this order:

- ``true``: it matches an episode of its own type;
- ``related``: it would match an episode whose ``related_types`` name its detector (a pump
  is also an abnormal move): a legitimate alert, but not what that episode was injected to
  test, so it is neither a true positive nor a false one and is left out of precision;
- ``lookalike``: it overlaps a look-alike (same instrument and window rule, owners
  intersecting when both sides name some) — a false positive, counted by look-alike type;
- ``false``: any other alert — a false positive.

>>> labels = {"episodes": [{"type": "wash_trade", "instrument": "X", "owners": ["O1"], "start_ns": 0, "end_ns": 10}]}
>>> alerts = [{"detector": "wash_trade", "instrument": "X", "owners": ["O1"], "window_start_ns": 5, "window_end_ns": 6}]
>>> score(alerts, labels)["wash_trade"]  # doctest: +NORMALIZE_WHITESPACE
{'alerts': 1, 'episodes': 1, 'true_alerts': 1, 'found': 1, 'related_alerts': 0, 'lookalike_alerts': 0,
 'false_alerts': 0, 'precision': 1.0, 'recall': 1.0, 'f1': 1.0}

A pump that is also an abnormal move: the abnormal_move alert is set aside, not a false positive.

>>> pump = {"type": "pump_and_dump", "instrument": "X", "owners": ["O1"], "start_ns": 0, "end_ns": 10,
...         "related_types": ["abnormal_move"]}
>>> move = {"detector": "abnormal_move", "instrument": "X", "owners": [], "window_start_ns": 8, "window_end_ns": 9}
>>> s = score([move], {"episodes": [pump]})
>>> s["abnormal_move"]["related_alerts"], s["abnormal_move"]["precision"], s["pump_and_dump"]["recall"]
(1, 1.0, 0.0)
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson

from surveil.store import connect_readonly

CLASSES = ("true", "related", "lookalike", "false")


def load_labels(path: str | Path) -> dict:
    return orjson.loads(Path(path).read_bytes())


def alerts_from_db(db_path: str | Path) -> list[dict]:
    con = connect_readonly(db_path)
    try:
        rows = con.execute("SELECT detector, instrument, owners, epoch_ns(window_start), epoch_ns(window_end), alert_id "
                           "FROM alerts ORDER BY alert_id").fetchall()
    finally:
        con.close()
    return [{"detector": d, "instrument": i, "owners": o or [], "window_start_ns": s, "window_end_ns": e, "alert_id": a}
            for d, i, o, s, e, a in rows]


def _overlaps(alert: dict, ep: dict, tol_ns: int) -> bool:
    """Same instrument, windows overlapping with ``tol_ns`` of slack, owners intersecting when both name some."""
    if alert["instrument"] != ep["instrument"]:
        return False
    if alert["window_end_ns"] < ep["start_ns"] - tol_ns or alert["window_start_ns"] > ep["end_ns"] + tol_ns:
        return False
    if ep.get("owners") and alert["owners"]:
        return bool(set(alert["owners"]) & set(ep["owners"]))
    return True


def _matches(alert: dict, ep: dict, tol_ns: int) -> bool:
    """The alert's detector is the episode's type and it overlaps the episode."""
    return alert["detector"] == ep["type"] and _overlaps(alert, ep, tol_ns)


def _related(alert: dict, ep: dict, tol_ns: int) -> bool:
    return alert["detector"] in (ep.get("related_types") or ()) and _overlaps(alert, ep, tol_ns)


def classify(alerts: list[dict], labels: dict, tolerance_s: float = 60.0) -> list[tuple[str, str | None]]:
    """Per alert (same order): its class (see module doc) and the look-alike type it fell on, if any.

    >>> labels = {"episodes": [], "lookalikes": [{"type": "news_jump", "instrument": "X", "owners": [],
    ...                                           "start_ns": 0, "end_ns": 10**9}]}
    >>> a = {"detector": "abnormal_move", "instrument": "X", "owners": [], "window_start_ns": 0, "window_end_ns": 1}
    >>> classify([a, {**a, "instrument": "Y"}], labels)
    [('lookalike', 'news_jump'), ('false', None)]
    """
    tol = int(tolerance_s * 1e9)
    episodes = labels.get("episodes", [])
    lookalikes = labels.get("lookalikes", [])
    out: list[tuple[str, str | None]] = []
    for a in alerts:
        if any(_matches(a, ep, tol) for ep in episodes):
            out.append(("true", None))
        elif any(_related(a, ep, tol) for ep in episodes):
            out.append(("related", None))
        else:
            lk = next((lk["type"] for lk in lookalikes if _overlaps(a, lk, tol)), None)
            out.append(("lookalike", lk) if lk else ("false", None))
    return out


def score(alerts: list[dict], labels: dict, tolerance_s: float = 60.0) -> dict[str, dict]:
    """Per detector: counts (``alerts`` = all its alerts, of every class), precision, recall and F1.

    Precision is ``true_alerts / (alerts - related_alerts)``; with nothing to score it is 1.0
    when the detector had no episodes, else 0.0 (it missed them all).
    """
    tol = int(tolerance_s * 1e9)
    episodes = labels.get("episodes", [])
    by_detector: dict[str, dict] = defaultdict(lambda: {"alerts": 0, "episodes": 0, "true_alerts": 0, "found": 0,
                                                        "related_alerts": 0, "lookalike_alerts": 0, "false_alerts": 0})
    for ep in episodes:
        by_detector[ep["type"]]["episodes"] += 1
        if any(_matches(a, ep, tol) for a in alerts):
            by_detector[ep["type"]]["found"] += 1
    for a, (cls, _) in zip(alerts, classify(alerts, labels, tolerance_s)):
        s = by_detector[a["detector"]]
        s["alerts"] += 1
        s[f"{cls}_alerts"] += 1
    for s in by_detector.values():
        s.update(rates(s))
    return dict(by_detector)


def rates(s: dict) -> dict[str, float]:
    """Precision, recall and F1 from summed counts (also used to total over seeds).

    >>> rates({"alerts": 4, "related_alerts": 1, "true_alerts": 2, "episodes": 4, "found": 3})
    {'precision': 0.6666666666666666, 'recall': 0.75, 'f1': 0.7058823529411765}
    """
    scored = s["alerts"] - s.get("related_alerts", 0)
    p = s["true_alerts"] / scored if scored else (1.0 if not s["episodes"] else 0.0)
    r = s["found"] / s["episodes"] if s["episodes"] else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def recall_interval(found: int, episodes: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a recall of ``found`` out of ``episodes``: with ten episodes a type, one
    miss moves recall by 0.1, and 10/10 does not show a recall of 0.9 beyond doubt.

    >>> [round(x, 3) for x in recall_interval(8, 10)], [round(x, 3) for x in recall_interval(10, 10)]
    ([0.49, 0.943], [0.722, 1.0])
    """
    if not episodes:
        return None
    from scipy.stats import binomtest  # imported when first needed: scipy is slow to load

    ci = binomtest(found, episodes).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def lookalike_hits(alerts: list[dict], labels: dict, tolerance_s: float = 60.0) -> dict[tuple[str, str], int]:
    """``(detector, look-alike type) -> alerts`` for the alerts classed ``lookalike``.

    >>> labels = {"episodes": [], "lookalikes": [{"type": "price_spike", "instrument": "X", "owners": [],
    ...                                           "start_ns": 0, "end_ns": 10}]}
    >>> a = {"detector": "price_dislocation", "instrument": "X", "owners": [], "window_start_ns": 0, "window_end_ns": 1}
    >>> lookalike_hits([a, a], labels)
    {('price_dislocation', 'price_spike'): 2}
    """
    out: dict[tuple[str, str], int] = defaultdict(int)
    for a, (cls, lk) in zip(alerts, classify(alerts, labels, tolerance_s)):
        if cls == "lookalike":
            out[(a["detector"], lk)] += 1
    return dict(out)
