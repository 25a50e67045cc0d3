"""Alert triage that learns from analysts' dispositions: which alerts are worth an analyst's time first.

``triage(alerts, dispositions)`` is a pure function: alert rows as the DuckDB ``alerts`` table holds
them (``load_alerts`` reads them) and ``(alert_id, is_true_positive)`` pairs, in the order the
analysts decided them, give one ``TriageScore`` per alert: the probability that it is a true
positive, and why.  An online river model (``StandardScaler`` then ``LogisticRegression``,
fixed initialisation, so the same inputs give the same scores) learns from each disposed alert in
turn, then scores every alert; the blotter can sort by it.

What the model sees of an alert (``alert_features``) is what an analyst sees before opening it:
the detector, severity, its score, evidence count, how many owners / accounts / venues it names,
the length of its window, the numeric figures in its ``metrics`` (per detector: a spoofing
alert's ``size_multiple`` means nothing to a wash trade), the owner's alert history (earlier
alerts naming any of its owners, from any detector) and corroboration (other detectors' alerts
on the same instrument within a minute).

With no dispositions yet every alert scores 0.5 and says so: no pretend ranking.

>>> rows = [{"alert_id": "a1", "detector": "wash_trade", "severity": "high", "score": 3.0, "owners": ["O1"],
...          "window_start_ns": 0, "window_end_ns": 10**9, "metrics": {"trades": 4}}]
>>> [(t.alert_id, t.score, t.reason) for t in triage(rows, [])]
[('a1', 0.5, 'no dispositions yet')]
>>> t = triage(rows, [("a1", True)])[0]
>>> t.score > 0.5, t.reason.startswith("learnt from 1 disposition (1 true positive, 0 false)")
(True, True)
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import orjson

SEVERITY = {"low": 0.0, "medium": 0.5, "high": 1.0}
CORROBORATION_NS = 60 * 10**9  # other detectors' alerts this close in event time corroborate
NEUTRAL = 0.5


@dataclass(frozen=True)
class TriageScore:
    alert_id: str
    score: float  # estimated probability that the alert is a true positive
    reason: str


def _slog(v: float) -> float:
    """Signed log1p: heavy-tailed figures (notional, z-scores) on one scale."""
    return math.copysign(math.log1p(abs(v)), v)


def _json(v) -> dict:
    if isinstance(v, (str, bytes)):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return {}
    return dict(v or {})


def _ns(row: dict, name: str) -> int:
    v = row.get(f"{name}_ns", row.get(name))
    if v is None:
        return 0
    return int(v.timestamp() * 1e9) if hasattr(v, "timestamp") else int(v)


def alert_features(rows: list[dict]) -> dict[str, dict[str, float]]:
    """alert_id -> the features the model learns from (see the module docstring).

    >>> f = alert_features([{"alert_id": "a", "detector": "spoofing", "severity": "medium", "score": 1.0,
    ...     "metrics": '{"size_multiple": 12, "cross_platform": true, "note": "x"}', "owners": ["O1"]}])["a"]
    >>> sorted(k for k in f if k.startswith(("detector", "m:")))
    ['detector=spoofing', 'm:spoofing:cross_platform', 'm:spoofing:size_multiple']
    """
    order = sorted(rows, key=lambda r: (_ns(r, "window_start"), str(r.get("alert_id"))))
    owner_seen: dict[str, int] = defaultdict(int)
    by_instrument: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in order:
        by_instrument[str(r.get("instrument"))].append((_ns(r, "window_start"), str(r.get("detector"))))
    out = {}
    for r in order:
        det = str(r.get("detector"))
        start, end = _ns(r, "window_start"), _ns(r, "window_end")
        owners = list(r.get("owners") or [])
        f = {
            f"detector={det}": 1.0,
            "severity": SEVERITY.get(str(r.get("severity")), 0.5),
            "log_score": _slog(float(r.get("score") or 0.0)),
            "log_evidence": math.log1p(float(r.get("evidence_count") or 0)),
            "owners": float(len(owners)),
            "accounts": float(len(r.get("accounts") or [])),
            "venues": float(len(r.get("venues") or [])),
            "log_window_s": math.log1p(max(end - start, 0) / 1e9),
            # the owner's history: earlier alerts naming any of its owners
            "owner_history": math.log1p(max((owner_seen[o] for o in owners), default=0)),
        }
        near = by_instrument[str(r.get("instrument"))]
        lo = bisect_left(near, (start - CORROBORATION_NS, ""))
        hi = bisect_right(near, (end + CORROBORATION_NS, "\uffff"))
        f["corroboration"] = float(len({d for _, d in near[lo:hi]} - {det}))
        for k, v in _json(r.get("metrics")).items():
            if isinstance(v, bool):
                f[f"m:{det}:{k}"] = float(v)
            elif isinstance(v, (int, float)) and math.isfinite(v):
                f[f"m:{det}:{k}"] = _slog(float(v))
        for o in owners:
            owner_seen[o] += 1
        out[str(r["alert_id"])] = f
    return out


def _model():
    # river here, not at import: it takes over a second, which the dashboard (and so the daemon
    # serving it) paid at start for a model built only when an analyst opens the queue
    from river import compose, linear_model, optim, preprocessing

    # fixed, zero initialisation and a plain SGD step: the same dispositions give the same model
    return compose.Pipeline(preprocessing.StandardScaler(),
                            linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4))


def triage(alerts, dispositions: Iterable[tuple[str, bool]], *, passes: int = 5) -> list[TriageScore]:
    """Score every alert (rows of the ``alerts`` table, dicts or an Arrow table) by what dispositions teach.

    ``dispositions``: (alert_id, is_true_positive) in the order they were made; a later one for the
    same alert replaces the earlier.  ``passes``: times the model goes over the dispositions (in
    order) - a few, since analysts label tens of alerts, not thousands.  Dispositions naming an
    alert not in ``alerts`` are ignored (the reason says how many were used).
    """
    rows = alerts.to_pylist() if hasattr(alerts, "to_pylist") else list(alerts)
    ids = [str(r["alert_id"]) for r in rows]
    known = set(ids)
    labels: dict[str, bool] = {}
    for alert_id, is_tp in dispositions:
        labels.pop(str(alert_id), None)
        labels[str(alert_id)] = bool(is_tp)
    labels = {a: y for a, y in labels.items() if a in known}
    if not labels:  # before any feature is computed: the live blotter asks often
        return [TriageScore(a, NEUTRAL, "no dispositions yet") for a in ids]
    feats = alert_features(rows)
    model = _model()
    for _ in range(max(1, passes)):
        for a, y in labels.items():
            model.learn_one(feats[a], y)
    n_tp = sum(labels.values())
    head = (f"learnt from {len(labels)} disposition{'s' if len(labels) != 1 else ''} "
            f"({n_tp} true positive{'s' if n_tp != 1 else ''}, {len(labels) - n_tp} false)")
    scaler, lr = model.steps["StandardScaler"], model.steps["LogisticRegression"]
    out = []
    for a in ids:
        x = feats[a]
        p = float(model.predict_proba_one(x).get(True, 0.0))
        scaled = scaler.transform_one(x)
        pushes = sorted(((lr.weights.get(k, 0.0) * v, k) for k, v in scaled.items()), key=lambda t: -abs(t[0]))[:2]
        why = ", ".join(f"{k} {'+' if w >= 0 else '-'}{abs(w):.2f}" for w, k in pushes if w)
        out.append(TriageScore(a, round(p, 6), f"{head}; strongest: {why}" if why else head))
    return out


ALERT_COLUMNS = ("alert_id, detector, severity, score, instrument, venues, owners, accounts, "
                 "epoch_ns(window_start) AS window_start_ns, epoch_ns(window_end) AS window_end_ns, metrics, "
                 "evidence_count")


def alert_rows(con) -> list[dict]:
    """The ``alerts`` table's rows as ``triage`` takes them, over an open connection (the dashboard's cursor)."""
    cur = con.execute(f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY alert_id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load_alerts(db_path: str | Path) -> list[dict]:
    """``alert_rows`` of a database file (read-only: the daemon may be writing)."""
    from surveil.store import connect_readonly

    con = connect_readonly(db_path)
    try:
        return alert_rows(con)
    finally:
        con.close()


def precision_at_k(ranked_ids: list[str], truth: dict[str, bool], k: int) -> float:
    """Share of true positives among the first ``k`` alerts of a ranking.

    >>> precision_at_k(["a", "b", "c"], {"a": True, "b": False, "c": True}, 2)
    0.5
    """
    top = ranked_ids[:k]
    return sum(truth.get(a, False) for a in top) / len(top) if top else 0.0


def rank(scores: list[TriageScore], tiebreak: dict[str, float] | None = None) -> list[str]:
    """Alert ids, most likely true positive first (ties: larger ``tiebreak`` first, then id)."""
    tb = tiebreak or {}
    return [s.alert_id for s in sorted(scores, key=lambda s: (-s.score, -tb.get(s.alert_id, 0.0), s.alert_id))]
