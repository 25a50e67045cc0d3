"""Server-side inline SVG: the price path around an alert, and the order-lifecycle timeline.

Drawn in Python so a page (and an exported case report) needs no JavaScript library and
no network: the SVG is part of the HTML.  Times on the axes are UTC.

>>> svg = price_chart({"SHARED": [(0, 100.0, 99.5, 100.5), (10**9, 101.0, 100.0, 101.0)]},
...                   [{"ts_ns": 5 * 10**8, "kind": "trade", "venue": "SHARED", "price": 100.2, "side": "buy"}],
...                   (0, 10**9), (2 * 10**8, 8 * 10**8))
>>> svg.startswith("<svg") and svg.count('class="evidence-marker') == 1
True
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape

NS = 1_000_000_000
PALETTE = ("#2563eb", "#ea580c", "#059669", "#9333ea", "#db2777", "#0891b2", "#65a30d", "#92400e")
_TIME_STEPS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
                 1800, 3600, 7200, 14400, 21600, 43200, 86400)
_CLOSING = ("cancel", "fill", "reject", "expire", "expired", "canceled", "cancelled")


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round-numbered ticks covering [lo, hi].

    >>> nice_ticks(99.3, 101.2, 5)
    [99.5, 100.0, 100.5, 101.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def time_ticks(t0: int, t1: int, n: int = 7) -> tuple[list[int], float]:
    """Tick times (ns) on round UTC seconds/minutes, and the step in seconds.

    >>> ticks, step = time_ticks(0, 60 * NS); step, len(ticks)
    (10, 7)
    """
    span_s = max((t1 - t0) / NS, 1e-9)
    step = next((s for s in _TIME_STEPS_S if span_s / s <= n), _TIME_STEPS_S[-1])
    step_ns = int(step * NS)
    first = -(-t0 // step_ns) * step_ns
    return list(range(first, t1 + 1, step_ns)), step


def fmt_time(ns: int, step_s: float = 1.0) -> str:
    t = datetime.fromtimestamp(ns // NS, timezone.utc).replace(microsecond=(ns % NS) // 1000)
    return t.strftime("%H:%M:%S.%f")[:-3] if step_s < 1 else t.strftime("%H:%M:%S" if step_s < 60 else "%H:%M")


def fmt_price(p: float, span: float) -> str:
    """Enough decimals to tell ticks apart at this price span."""
    decimals = max(0, min(8, 2 - math.floor(math.log10(span)) if span > 0 else 2))
    return f"{p:,.{decimals}f}"


def _n(v) -> str:
    return "" if v is None else f"{v:,.10g}"


def venue_colours(venues) -> dict[str, str]:
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(venues))}


def _marker(kind: str, side: str | None, x: float, y: float, fill: str, label: str, action: str | None) -> str:
    """Trade: circle; order: triangle pointing with its side; quote: diamond.  Thick dark outline."""
    common = f'fill="{fill}" stroke="#111827" stroke-width="1.6"'
    cls = f'class="evidence-marker ev-{escape(kind or "other")}" data-kind="{escape(kind or "")}"'
    title = f"<title>{escape(label)}</title>"
    if kind == "order":
        s = 7
        pts = (f"{x},{y - s} {x - s},{y + s * .8} {x + s},{y + s * .8}" if side != "sell"
               else f"{x},{y + s} {x - s},{y - s * .8} {x + s},{y - s * .8}")
        hollow = action in _CLOSING  # a cancel shows as a hollow triangle: the order left the book
        fill_attr = 'fill="#fff"' if hollow else f'fill="{fill}"'
        return f'<polygon {cls} points="{pts}" {fill_attr} stroke="#111827" stroke-width="1.6">{title}</polygon>'
    if kind == "quote":
        s = 6
        return (f'<polygon {cls} points="{x},{y - s} {x + s},{y} {x},{y + s} {x - s},{y}" {common}>{title}</polygon>')
    return f'<circle {cls} cx="{x:.1f}" cy="{y:.1f}" r="5.5" {common}>{title}</circle>'


def _evidence_label(e: dict) -> str:
    from dashboards.queries import fmt_ts

    parts = [fmt_ts(e["ts_ns"]), e.get("venue") or "", e.get("kind") or ""]
    if e.get("action"):
        parts.append(e["action"])
    if e.get("side"):
        parts.append(e["side"])
    if e.get("price") is not None:
        parts.append(f"@ {e['price']:,}")
    if e.get("qty") is not None:
        parts.append(f"qty {e['qty']:,}")
    for k in ("trade_id", "order_id", "account"):
        if e.get(k):
            parts.append(f"{k} {e[k]}")
    return " ".join(str(p) for p in parts)


def price_chart(prices: dict[str, list[tuple]], evidence: list[dict], window: tuple[int, int],
                alert_window: tuple[int, int], width: int = 1200, height: int = 400, title: str = "") -> str:
    """Last trade price per venue (line) with its high–low range (band); evidence marked; alert window shaded."""
    t0, t1 = window
    left, right, top, bottom = 78, 16, 26, 64
    pw, ph = width - left - right, height - top - bottom
    ys = [v for pts in prices.values() for p in pts for v in p[1:] if v is not None]
    ys += [e["price"] for e in evidence if e.get("price") is not None]
    venues = sorted(set(prices) | {e["venue"] for e in evidence if e.get("venue")})
    colours = venue_colours(venues)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart price-chart" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" style="max-width:100%;height:auto" role="img" '
           f'aria-label="{escape(title or "price path")}" '
           f'font-family="ui-sans-serif, system-ui, sans-serif" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    if title:
        out.append(f'<text x="{left}" y="16" font-size="12" font-weight="600" fill="#111827">{escape(title)}</text>')
    if not ys:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#6b7280">'
                   f'no archived trades of this instrument in the window</text></svg>')
        return "".join(out)
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.001 or 1.0
    lo, hi = lo - pad, hi + pad

    def X(ns: int) -> float:
        return left + (ns - t0) / max(t1 - t0, 1) * pw

    def Y(p: float) -> float:
        return top + (hi - p) / (hi - lo) * ph

    a0, a1 = max(alert_window[0], t0), min(alert_window[1], t1)
    aw = max(X(a1) - X(a0), 2.0)  # an instantaneous alert still shows as a visible band
    out.append(f'<rect class="alert-window" x="{X(a0) - (1 if aw == 2.0 else 0):.1f}" y="{top}" width="{aw:.1f}" '
               f'height="{ph}" fill="#fde68a" fill-opacity="0.45"><title>alert window</title></rect>')
    # grid and axes
    for p in nice_ticks(lo, hi, 6):
        y = Y(p)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#374151">{fmt_price(p, hi - lo)}</text>')
    ticks, step = time_ticks(t0, t1)
    for t in ticks:
        x = X(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#f3f4f6"/>'
                   f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#6b7280"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#374151">{fmt_time(t, step)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>')
    out.append(f'<text x="{left + pw}" y="{top + ph + 30}" text-anchor="end" fill="#6b7280">time (UTC)</text>')
    out.append(f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#6b7280">'
               f'price</text>')
    # venues: high–low band, then the last-price line
    for v in venues:
        pts = prices.get(v, [])
        if not pts:
            continue
        c = colours[v]
        if len(pts) > 1:
            upper = " ".join(f"{X(t):.1f},{Y(h):.1f}" for t, _, _, h in pts)
            lower = " ".join(f"{X(t):.1f},{Y(l_):.1f}" for t, _, l_, _ in reversed(pts))
            out.append(f'<polygon points="{upper} {lower}" fill="{c}" fill-opacity="0.12" stroke="none"/>')
        line = " ".join(f"{X(t):.1f},{Y(last):.1f}" for t, last, _, _ in pts)
        out.append(f'<polyline class="venue-line" data-venue="{escape(v)}" points="{line}" fill="none" stroke="{c}" '
                   f'stroke-width="1.5" stroke-linejoin="round"><title>{escape(v)} last trade price</title></polyline>')
    # evidence on top, so nothing hides it
    for e in evidence:
        if e.get("price") is None or e.get("ts_ns") is None:
            continue
        out.append(_marker(e.get("kind") or "trade", e.get("side"), round(X(e["ts_ns"]), 1), round(Y(e["price"]), 1),
                           colours.get(e.get("venue"), "#6b7280"), _evidence_label(e), e.get("action")))
    # legend
    lx, ly = left, height - 14
    for v in venues:
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colours[v]}" stroke-width="3"/>'
                   f'<text x="{lx + 22}" y="{ly}" fill="#111827">{escape(v)}</text>')
        lx += 36 + int(6.5 * len(v))
    kinds = sorted({e.get("kind") or "trade" for e in evidence})
    for k, shape in (("trade", f'<circle cx="{{x}}" cy="{ly - 4}" r="5" fill="#9ca3af" stroke="#111827" stroke-width="1.6"/>'),
                     ("order", f'<polygon points="{{x}},{ly - 10} {{xl}},{ly + 1} {{xr}},{ly + 1}" fill="#9ca3af" '
                               f'stroke="#111827" stroke-width="1.6"/>'),
                     ("quote", f'<polygon points="{{x}},{ly - 10} {{xr}},{ly - 4} {{x}},{ly + 2} {{xl}},{ly - 4}" '
                               f'fill="#9ca3af" stroke="#111827" stroke-width="1.6"/>')):
        if k in kinds:
            text = f"evidence {k}" + (" (▲ buy, ▼ sell, hollow = cancel)" if k == "order" else "")
            x = lx + 6
            out.append(shape.format(x=x, xl=x - 6, xr=x + 6) + f'<text x="{lx + 16}" y="{ly}" fill="#111827">'
                       f'{escape(text)}</text>')
            lx += 30 + int(6.2 * len(text))
    out.append(f'<rect x="{lx}" y="{ly - 10}" width="14" height="10" fill="#fde68a" fill-opacity="0.8"/>'
               f'<text x="{lx + 18}" y="{ly}" fill="#111827">alert window</text>')
    out.append("</svg>")
    return "".join(out)


def lifecycle_chart(rows: list[dict], alert_window: tuple[int, int], width: int = 1200) -> str:
    """One lane per order: resting time as a bar (green buy, red sell), its events as marks.

    Evidence orders are drawn solid, the owner's other orders faded, so the pattern of
    large orders placed and pulled around a small execution on the other side stands out.
    """
    if not rows:
        return ""
    orders: dict[str, list[dict]] = {}
    for r in rows:
        orders.setdefault(r["order_id"], []).append(r)
    lanes = sorted(orders.values(), key=lambda evs: (not evs[0].get("evidence"), evs[0]["ts_ns"]))
    t0 = min(min(r["ts_ns"] for r in rows), alert_window[0])
    t1 = max(max(r["ts_ns"] for r in rows), alert_window[1])
    pad = max((t1 - t0) // 20, NS // 10)
    t0, t1 = t0 - pad, t1 + pad
    left, right, top, lane = 340, 16, 24, 18
    height = top + lane * len(lanes) + 46
    pw = width - left - right

    def X(ns: int) -> float:
        return left + (ns - t0) / max(t1 - t0, 1) * pw

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart lifecycle-chart" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" style="max-width:100%;height:auto" role="img" aria-label="order lifecycle" '
           f'font-family="ui-sans-serif, system-ui, sans-serif" font-size="11">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="8" y="15" font-size="12" font-weight="600" fill="#111827">Order lifecycle</text>']
    a0, a1 = alert_window
    out.append(f'<rect x="{X(a0):.1f}" y="{top}" width="{max(X(a1) - X(a0), 2):.1f}" height="{lane * len(lanes)}" '
               f'fill="#fde68a" fill-opacity="0.45"/>')
    ticks, step = time_ticks(t0, t1)
    bottom_y = top + lane * len(lanes)
    for t in ticks:
        x = X(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom_y}" stroke="#f3f4f6"/>'
                   f'<text x="{x:.1f}" y="{bottom_y + 14}" text-anchor="middle" fill="#374151">{fmt_time(t, step)}</text>')
    for i, evs in enumerate(lanes):
        y = top + i * lane + lane / 2
        first, last = evs[0], evs[-1]
        solid = bool(first.get("evidence"))
        colour = "#16a34a" if first.get("side") == "buy" else "#dc2626"
        opacity = "1" if solid else "0.35"
        closed = last.get("action") in _CLOSING
        end = last["ts_ns"] if closed else t1  # still resting when the window ends
        dash = "" if closed else f' stroke="{colour}" stroke-dasharray="3 2"'
        label = (f'{first["order_id"]} {first.get("side") or ""} {_n(first.get("qty"))} @ {_n(first.get("price"))} '
                 f'{first.get("account") or ""}')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#111827" '
                   f'font-weight="{600 if solid else 400}" opacity="{1 if solid else 0.6}">{escape(label[-54:])}</text>')
        out.append(f'<rect class="order-bar{" evidence-order" if solid else ""}" x="{X(first["ts_ns"]):.1f}" '
                   f'y="{y - 5:.1f}" width="{max(X(end) - X(first["ts_ns"]), 1.5):.1f}" height="10" fill="{colour}" '
                   f'fill-opacity="{opacity}"{dash}>'
                   f'<title>{escape(label)}</title></rect>')
        for e in evs:
            x = X(e["ts_ns"])
            act = e.get("action") or ""
            tip = f"<title>{escape(e['time'])} {escape(act)} {e.get('qty')} @ {e.get('price')}</title>"
            if act == "fill":
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#111827" opacity="{opacity}">{tip}</circle>')
            elif act.startswith("cancel") or act in ("reject", "expire"):
                out.append(f'<path d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},{y + 4:.1f}'
                           f'L{x + 4:.1f},{y - 4:.1f}" stroke="#111827" stroke-width="2" opacity="{opacity}">{tip}</path>')
            elif act == "amend":
                out.append(f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="#fff" stroke="#111827" '
                           f'opacity="{opacity}">{tip}</rect>')
    ly = height - 10
    out.append(f'<rect x="8" y="{ly - 9}" width="14" height="9" fill="#16a34a"/><text x="26" y="{ly}">buy resting</text>'
               f'<rect x="100" y="{ly - 9}" width="14" height="9" fill="#dc2626"/><text x="118" y="{ly}">sell resting</text>'
               f'<circle cx="200" cy="{ly - 4}" r="4" fill="#111827"/><text x="208" y="{ly}">fill</text>'
               f'<path d="M246,{ly - 8}L254,{ly}M246,{ly}L254,{ly - 8}" stroke="#111827" stroke-width="2"/>'
               f'<text x="258" y="{ly}">cancel</text>'
               f'<rect x="306" y="{ly - 7}" width="6" height="6" fill="#fff" stroke="#111827"/><text x="316" y="{ly}">amend</text>'
               f'<text x="370" y="{ly}" fill="#6b7280">solid = evidence order, faded = the owner\'s other orders; '
               f'time UTC</text>')
    out.append("</svg>")
    return "".join(out)
