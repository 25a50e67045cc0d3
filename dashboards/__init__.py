"""Saved investigations (``*.sql``) that ``surveil sql --saved NAME --param key=value`` runs.

Each file starts with ``--`` comment lines: the first says what it answers, a line
``-- params: name, name`` lists the parameters it takes (DuckDB ``$name`` placeholders).
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def saved(name: str) -> tuple[str, list[str], str]:
    """(sql, parameter names, one-line description) of a saved investigation."""
    path = HERE / f"{name}.sql"
    if not path.exists():
        raise ValueError(f"no saved investigation {name!r}; saved: {', '.join(list_saved())}")
    sql = path.read_text(encoding="utf-8")
    lines = [ln[2:].strip() for ln in sql.splitlines() if ln.startswith("--")]
    params = next((ln.split(":", 1)[1] for ln in lines if ln.startswith("params:")), "")
    return sql, [p.strip() for p in params.split(",") if p.strip()], (lines[0] if lines else "")


def list_saved() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.sql"))
