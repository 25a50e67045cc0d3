"""Alert triage: neutral without dispositions; learns to rank a true-positive pattern above false positives."""
from __future__ import annotations

import numpy as np

from surveil.alerts import EVIDENCE_SCHEMA, Alert, Severity
from surveil.store import Store
from surveil.triage import load_alerts, precision_at_k, rank, triage

S = 10**9


def _alerts(seed: int, n: int = 120) -> tuple[list[dict], dict[str, bool]]:
    """Spoofing alerts on honest large orders (false) look like real ones but score *higher*; wash trades are real.

    What tells them apart is a figure in the metrics: the look-alikes' orders mostly fill.
    """
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(n):
        kind = rng.choice(["spoof_true", "spoof_lookalike", "wash"], p=[0.3, 0.4, 0.3])
        det = "wash_trade" if kind == "wash" else "spoofing"
        fill = rng.uniform(0.0, 0.1) if kind == "spoof_true" else rng.uniform(0.3, 0.9)
        metrics = {"fill_share": fill, "size_multiple": rng.uniform(4, 20)} if det == "spoofing" else \
            {"trades": int(rng.integers(2, 8)), "notional": rng.uniform(1e3, 1e5)}
        score = rng.uniform(1.0, 2.0) if kind == "spoof_true" else rng.uniform(1.5, 3.0)
        a = f"{seed}-{i:03d}"
        rows.append({"alert_id": a, "detector": det, "severity": "medium", "score": score, "instrument": "BTC/USDT",
                     "owners": [f"O{rng.integers(50)}"], "window_start_ns": i * 600 * S,
                     "window_end_ns": i * 600 * S + 30 * S, "metrics": metrics, "evidence_count": 3})
        truth[a] = kind != "spoof_lookalike"
    return rows, truth


def test_neutral_without_dispositions():
    rows, _ = _alerts(0)
    scores = triage(rows, [])
    assert {s.score for s in scores} == {0.5}
    assert {s.reason for s in scores} == {"no dispositions yet"}
    # dispositions about alerts it does not have teach nothing either
    assert {s.score for s in triage(rows, [("unknown", True)])} == {0.5}


def test_learns_to_rank_true_positives_above_lookalikes():
    train, train_truth = _alerts(1)
    test, test_truth = _alerts(2)
    dispositions = [(a, train_truth[a]) for a in sorted(train_truth)]
    by_score = {r["alert_id"]: r["score"] for r in test}
    # before learning: neutral scores, so the blotter falls back to the detectors' own score
    before = rank(triage(test, []), by_score)
    scores = triage(train + test, dispositions)
    after = rank([s for s in scores if s.alert_id in test_truth], by_score)
    k = 20
    p_before, p_after = precision_at_k(before, test_truth, k), precision_at_k(after, test_truth, k)
    assert p_after >= 0.9 and p_after > p_before + 0.3, (p_before, p_after)
    got = {s.alert_id: s.score for s in scores}
    tp = np.mean([got[a] for a, y in test_truth.items() if y])
    fp = np.mean([got[a] for a, y in test_truth.items() if not y])
    assert tp > 0.6 > 0.4 > fp
    assert all(s.reason.startswith("learnt from 120 dispositions") for s in scores)
    assert any("fill_share" in s.reason for s in scores)


def test_same_dispositions_same_scores_and_later_disposition_wins():
    rows, truth = _alerts(3, 40)
    d = [(a, y) for a, y in truth.items()]
    assert triage(rows, d) == triage(rows, d)
    flipped = d + [(a, not y) for a, y in d]  # every alert re-decided the other way
    mean_tp = np.mean([s.score for s in triage(rows, flipped) if truth[s.alert_id]])
    assert mean_tp < 0.5


def test_scores_alert_rows_read_from_the_store(tmp_path):
    db = tmp_path / "s.duckdb"
    store = Store(db)
    alerts = [Alert.build(detector="spoofing", version="1", key=f"k{i}", window_start_ns=i * S, window_end_ns=i * S + S,
                          opening_evidence=[f"e{i}"], evidence=EVIDENCE_SCHEMA.empty_table(), severity=Severity.MEDIUM,
                          score=1.0 + i, instrument="BTC/USDT", venues=["SHARED"], owners=["O1"], accounts=["HK-1"],
                          summary="s", params={}, metrics={"fill_share": 0.05 if i % 2 else 0.8})
              for i in range(6)]
    store.write_alerts(alerts)
    store.close()
    rows = load_alerts(db)
    assert len(rows) == 6 and isinstance(rows[0]["window_start_ns"], int)
    truth = {a.alert_id: bool(i % 2) for i, a in enumerate(alerts)}
    scores = {s.alert_id: s.score for s in triage(rows, list(truth.items()))}
    assert min(scores[a] for a, y in truth.items() if y) > max(scores[a] for a, y in truth.items() if not y)
