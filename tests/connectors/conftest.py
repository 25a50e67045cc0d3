"""Fixtures shared by the connector tests: fixture files, the shared real data, decoding helpers."""
from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pytest

from connectors import decode_file
from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "connectors"
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present (a user's clone has no shared data)")
    return SHARED_DATA


class Result:
    """Every chunk of one decode, joined; checks each chunk's schema on the way."""

    def __init__(self, stream):
        self.stream = stream
        self.chunks = list(stream)
        for c in self.chunks:
            assert c.events.schema == EVENT_SCHEMA
            assert c.dead.schema == DEAD_LETTER_SCHEMA
        self.events = pa.concat_tables([c.events for c in self.chunks] or [EVENT_SCHEMA.empty_table()])
        self.dead = pa.concat_tables([c.dead for c in self.chunks] or [DEAD_LETTER_SCHEMA.empty_table()])

    def rows(self, *columns: str) -> list[dict]:
        return self.events.select(list(columns)).to_pylist()

    def col(self, name: str) -> list:
        return self.events.column(name).to_pylist()

    def dead_rows(self) -> list[tuple[str, str, bytes]]:
        return list(zip(*(self.dead.column(c).to_pylist() for c in ("reason", "position", "raw"))))


@pytest.fixture
def decode():
    def run(path, fmt=None, **kw) -> Result:
        return Result(decode_file(path, fmt, **kw))

    return run


@pytest.fixture
def same_in_any_chunking(decode):
    """Assert that decoding with tiny chunks gives exactly what one big chunk gives."""

    def check(path, fmt=None, sizes=(1, 2, 3, 7), **kw) -> Result:
        whole = decode(path, fmt, chunk_rows=1_000_000, **kw)
        for size in sizes:
            part = decode(path, fmt, chunk_rows=size, **kw)
            assert all(c.events.num_rows <= size for c in part.chunks)
            assert part.events.equals(whole.events), f"events differ with chunk_rows={size}"
            assert part.dead.equals(whole.dead), f"dead letters differ with chunk_rows={size}"
        return whole

    return check


@pytest.fixture
def write(tmp_path):
    """Write ``content`` (str or bytes) to tmp_path/name, gzip-compressed if name ends with .gz."""

    def put(name: str, content: str | bytes) -> Path:
        data = content.encode() if isinstance(content, str) else content
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return put
