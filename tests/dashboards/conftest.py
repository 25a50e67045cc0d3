"""A real replayed market for the dashboard tests: generated, replayed through the dataflow into DuckDB.

Ten minutes at 300 events/s with every episode type gives spoofing, layering, wash-trade
and price-dislocation alerts with trade, order and quote evidence, in about half a minute.
Each test gets its own copy of the database, so dispositions never leak between tests.
"""
from __future__ import annotations

import shutil

import duckdb
import pytest

from flows.jobs import run_replay
from flows.pipeline import PipelineConfig
from replay.merge import InputSpec
from replay.scenario import generate


@pytest.fixture(scope="session")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("dash-market")
    generate(out / "market", seed=5, minutes=10, events_per_second=300, episode_types="all", formats=("canonical",))
    inputs = [InputSpec(str(p)) for p in sorted((out / "market" / "canonical").glob("*.parquet"))]
    db = out / "surveil.duckdb"
    run_replay(inputs, db_path=db, ref_dir=out / "market" / "ref", cfg=PipelineConfig())
    return db


@pytest.fixture
def db_copy(replayed, tmp_path):
    """A private copy of the replayed database (the archive views point at the shared archive, read-only)."""
    db = tmp_path / "surveil.duckdb"
    shutil.copy(replayed, db)
    return db


@pytest.fixture
def con(db_copy):
    c = duckdb.connect(str(db_copy))
    yield c
    c.close()


@pytest.fixture
def client(con):
    from starlette.testclient import TestClient

    from dashboards.app import create_app

    with TestClient(create_app(con.cursor, db_label="test")) as c:
        yield c
