"""Score alerts against a scenario's ``labels.json``: precision and recall per detector.

An alert *matches* an episode when the episode's type is the detector's name, the
instrument is the same, the windows overlap (with ``tolerance_s`` of slack either
side, since a detector's window starts at the first evidence it sees), and — for
owner-keyed detectors — the alert names at least one of the episode's owners.
Precision is the share of alerts matching some episode; recall the share of
episodes matched by some alert.  An alert on a look-alike is a false positive.

>>> labels = {"episodes": [{"type": "wash_trade", "instrument": "X", "owners": ["O1"], "start_ns": 0, "end_ns": 10}]}
>>> alerts = [{"detector": "wash_trade", "instrument": "X", "owners": ["O1"], "window_start_ns": 5, "window_end_ns": 6}]
>>> score(alerts, labels)["wash_trade"]
{'alerts': 1, 'episodes': 1, 'true_alerts': 1, 'found': 1, 'precision': 1.0, 'recall': 1.0}
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson

from surveil.store import connect_readonly


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


def _matches(alert: dict, ep: dict, tol_ns: int) -> bool:
    if alert["detector"] != ep["type"] or alert["instrument"] != ep["instrument"]:
        return False
    if alert["window_end_ns"] < ep["start_ns"] - tol_ns or alert["window_start_ns"] > ep["end_ns"] + tol_ns:
        return False
    if ep.get("owners") and alert["owners"]:
        return bool(set(alert["owners"]) & set(ep["owners"]))
    return True


def score(alerts: list[dict], labels: dict, tolerance_s: float = 60.0) -> dict[str, dict]:
    tol = int(tolerance_s * 1e9)
    episodes = labels.get("episodes", [])
    by_detector: dict[str, dict] = defaultdict(lambda: {"alerts": 0, "episodes": 0, "true_alerts": 0, "found": 0})
    for ep in episodes:
        by_detector[ep["type"]]["episodes"] += 1
        if any(_matches(a, ep, tol) for a in alerts):
            by_detector[ep["type"]]["found"] += 1
    for a in alerts:
        s = by_detector[a["detector"]]
        s["alerts"] += 1
        s["true_alerts"] += any(_matches(a, ep, tol) for ep in episodes)
    for s in by_detector.values():
        s["precision"] = s["true_alerts"] / s["alerts"] if s["alerts"] else (1.0 if not s["episodes"] else 0.0)
        s["recall"] = s["found"] / s["episodes"] if s["episodes"] else 1.0
    return dict(by_detector)
