"""Jinja templates shared by the dashboard pages and the exported case report.

The stylesheet and the script are inlined into every page, so a page saved from the
browser, or a case report opened from a zip years later, is one self-contained file.
"""
from __future__ import annotations

from pathlib import Path

import jinja2

from dashboards.audit import STATUS_LABELS, TRANSITIONS
from dashboards.queries import fmt_ts

HERE = Path(__file__).resolve().parent


def _num(v, digits: int = 6) -> str:
    """Numbers as an analyst reads them: thousands separators, no float noise.

    >>> _num(86790.70000000001), _num(0.000123456789), _num(None), _num(12)
    ('86,790.7', '0.000123457', '', '12')
    """
    if v is None:
        return ""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    s = f"{v:,.{digits}g}" if abs(v) < 1 else f"{v:,.{digits}f}".rstrip("0").rstrip(".")
    return s


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["ts"] = fmt_ts
    env.filters["status_label"] = lambda s: STATUS_LABELS.get(s, s)
    env.globals["css"] = (HERE / "static" / "app.css").read_text(encoding="utf-8")
    env.globals["js"] = (HERE / "static" / "app.js").read_text(encoding="utf-8")
    env.globals["STATUS_LABELS"] = STATUS_LABELS
    env.globals["TRANSITIONS"] = TRANSITIONS
    return env


ENV = _env()


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(**context)
