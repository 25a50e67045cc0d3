"""The contract every registered detector keeps (river's estimator checks, for surveillance detectors).

Each detector is exercised on a market that contains its pattern: the generic
``tests.conftest.market`` by default, or ``contract_market(seed, seconds)`` from its own
test module ``tests/detectors/test_<name>.py`` when it defines one.
"""
from __future__ import annotations

import importlib
import pickle

import pyarrow as pa
import pytest

from detectors import REGISTRY, build_detectors
from detectors.base import split_by_key, state_size
from tests.conftest import market as generic_market

DETECTORS = build_detectors({name: {} for name in REGISTRY})  # off-by-default ones included


def market(det, seed: int = 0, seconds: int = 1800) -> pa.Table:
    try:
        own = importlib.import_module(f"tests.detectors.test_{det.name}")
    except ModuleNotFoundError:
        own = None
    return getattr(own, "contract_market", generic_market)(seed=seed, seconds=seconds)


def run(det, table: pa.Table, batch_rows: int, snapshot_every: int | None = None):
    """Feed ``table`` in batches as the dataflow does; optionally pickle/unpickle all state every N batches."""
    states: dict = {}
    alerts: dict[str, object] = {}
    for i, start in enumerate(range(0, table.num_rows, batch_rows)):
        batch = table.slice(start, batch_rows)
        for key, part in split_by_key(det.select(batch), det.key_columns):
            st = states.setdefault(key, det.new_state())
            for a in det.update(st, part):
                alerts[a.alert_id] = a
        watermark = batch.column("ts")[-1].value
        for key in [k for k, s in states.items() if det.is_idle(s, watermark)]:
            del states[key]
        if snapshot_every and i % snapshot_every == 0:
            states = pickle.loads(pickle.dumps(states))
    for key in sorted(states):
        for a in det.flush(states[key]):
            alerts[a.alert_id] = a
    return {k: (a.window_start_ns, a.window_end_ns, a.summary, a.evidence.num_rows) for k, a in alerts.items()}, states


def test_every_detector_is_registered_and_documented():
    for name, cls in REGISTRY.items():
        assert cls.name == name and cls.version and cls.description
        assert set(cls.param_docs) == set(cls.defaults()), f"{name}: every parameter documented with its unit"


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.name)
def test_finds_something_on_the_contract_market(det):
    alerts, _ = run(det, market(det), 1000)
    assert alerts, f"{det.name} found nothing in a market with its pattern injected"


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.name)
def test_same_alerts_whatever_the_batch_size(det):
    table = market(det, seed=1)
    reference, _ = run(det, table, table.num_rows)
    for rows in (1, 97, 1000):
        if rows == 1:  # one row at a time on a prefix: the same check, at a cost the suite can pay
            prefix = table.slice(0, 5_000)
            assert run(det, prefix, 1)[0] == run(det, prefix, prefix.num_rows)[0], "batch size 1"
            continue
        got, _ = run(det, table, rows)
        assert got == reference, f"batch size {rows}"


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.name)
def test_snapshot_restore_gives_the_same_alerts(det):
    table = market(det, seed=2)
    reference, _ = run(det, table, 500)
    restored, _ = run(det, table, 500, snapshot_every=3)
    assert restored == reference


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.name)
def test_state_stops_growing(det):
    """A long market leaves no more state behind than a short one: idle keys are evicted."""
    _, short = run(det, market(det, seed=3, seconds=1800), 1000)
    _, long = run(det, market(det, seed=3, seconds=7200), 1000)
    size = lambda states: sum(state_size(s) for s in states.values()) + len(states)  # noqa: E731
    assert size(long) <= max(size(short), 1) * 1.5


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.name)
def test_alerts_carry_evidence_summary_and_parameters(det):
    table = market(det)
    alerts = []
    for key, part in split_by_key(det.select(table), det.key_columns):
        alerts += det.update(det.new_state(), part)
    assert alerts
    for a in alerts:
        assert a.evidence.num_rows > 0 and a.summary and a.params == det.params()
        assert a.window_start_ns <= a.window_end_ns
