"""Telling a file's format from its name and its first bytes.

Content decides (Parquet magic, a FIX BeginString, a JSON object, a CSV header or a headerless
Binance line); the extension (``.gz`` aside) must not contradict it, so a misnamed file is
caught rather than decoded as something else.
"""
from __future__ import annotations

from pathlib import Path

from . import binance, ccxt, tardis
from ._csv import header_names
from .tardis import _cols
from ._io import BOM, head_bytes

FORMATS = ("parquet", "jsonl", "csv", "fix", "tardis", "binance", "ccxt")
_CSV_FAMILY = frozenset({"csv", "tardis", "binance", "ccxt"})
_EXTENSIONS = {
    ".parquet": frozenset({"parquet"}),
    ".pq": frozenset({"parquet"}),
    ".jsonl": frozenset({"jsonl"}),
    ".ndjson": frozenset({"jsonl"}),
    ".json": frozenset({"jsonl"}),
    ".csv": _CSV_FAMILY,
    ".fix": frozenset({"fix"}),
}
PARQUET_MAGIC = b"PAR1"


def _first_line(content: bytes) -> bytes | None:
    if content.startswith(BOM):
        content = content[len(BOM):]
    for line in content.split(b"\n"):
        if line.strip():
            return line.rstrip(b"\r")
    return None


def sniff(path: str | Path, content: bytes) -> str:
    """The format of a text file from its first non-blank line."""
    line = _first_line(content)
    if line is None:
        raise ValueError(f"{path}: file is empty; cannot tell its format")
    if b"8=FIX" in line:
        return "fix"
    if line.lstrip().startswith(b"{"):
        return "jsonl"
    if binance.looks_headerless(line):
        return "binance"
    try:
        names = header_names(line, path)
    except ValueError:
        names = []
    if tardis.is_tardis_header(names):
        if tardis.kind_of(names) is None:
            raise ValueError(f"{path}: tardis CSV with columns {_cols(names)} is not supported "
                             f"(only trades and quotes)")
        return "tardis"
    if "kind" in names and "ts" in names:
        return "csv"
    if ccxt.is_ccxt_header(names):
        return "ccxt"
    if binance.is_binance_header(names):
        return "binance"
    raise ValueError(
        f"{path}: cannot tell the format from its first line {line[:100]!r}; "
        f"pass the format explicitly (one of {', '.join(FORMATS)})"
    )


def detect_format(path: str | Path) -> str:
    """One of :data:`FORMATS`, from the file's content and name (``.gz`` handled).

    Raises ValueError naming the file when the format is unknown or the name contradicts
    the content, OSError when the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    allowed = _EXTENSIONS.get(Path(name).suffix)
    if magic == PARQUET_MAGIC:
        fmt = "parquet"
    else:
        content = head_bytes(path)
        if content.startswith(PARQUET_MAGIC):
            raise ValueError(f"{path}: compressed Parquet is not supported; decompress it first")
        if allowed == {"parquet"}:
            raise ValueError(f"{path}: named like Parquet but does not start with the Parquet magic bytes")
        fmt = sniff(path, content)
    if allowed is not None and fmt not in allowed:
        raise ValueError(f"{path}: content looks like {fmt} but the file name says {Path(name).suffix}")
    return fmt
