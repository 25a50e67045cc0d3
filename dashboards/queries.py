"""What the dashboard reads: the blotter, one alert with its market around it, an owner.

Every function takes a DuckDB connection (a cursor of the daemon's own connection, or a
connection to a file) and returns plain Python rows.  Filters and sort columns are
whitelisted here; user input only ever reaches DuckDB as a bound parameter.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from surveil import triage as triage_model

NS = 1_000_000_000
SORTS = {"time": "a.window_start", "severity": "sev_rank", "score": "a.score", "detector": "a.detector",
         "instrument": "a.instrument", "status": "status", "evidence": "a.evidence_count", "updated": "a.updated",
         "triage": "t.triage"}
FILTERS = ("detector", "instrument", "venue", "owner", "severity", "status", "since", "until")
SPOOFING_TYPES = ("spoofing", "layering")
_SEV_RANK = "CASE a.severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"


def fmt_ts(value) -> str:
    """UTC with milliseconds, from a datetime or integer ns.

    >>> fmt_ts(1772409725245822699)
    '2026-03-02 00:02:05.245'
    """
    if value is None:
        return ""
    if isinstance(value, int):
        value = to_dt(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def to_dt(ns: int) -> datetime:
    """Integer ns → aware UTC datetime (µs), bound as TIMESTAMPTZ whatever the session's time zone."""
    return datetime.fromtimestamp(ns // NS, timezone.utc).replace(microsecond=(ns % NS) // 1000)


def parse_time(text: str) -> datetime:
    """An analyst's time filter: ISO-8601, naive means UTC.

    >>> parse_time("2026-03-02 00:05").isoformat()
    '2026-03-02T00:05:00+00:00'
    """
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


class Sources:
    """Where archived events are read from: the store's views, or an archive directory given explicitly."""

    def __init__(self, archive_dir: str | Path | None = None):
        self.archive_dir = Path(archive_dir).resolve() if archive_dir else None

    def __call__(self, view: str) -> str:
        if self.archive_dir is None:
            return view
        kind = {"trades": "trade", "orders": "order", "quotes": "quote"}[view]
        pattern = str(self.archive_dir / "run=*" / f"kind={kind}" / "**" / "*.parquet").replace("'", "''")
        return f"(SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true))"


# -- triage --------------------------------------------------------------------------------------
def dispositions(con: duckdb.DuckDBPyConnection) -> list[tuple[str, bool]]:
    """Analysts' closures in the order they were made: (alert_id, closed as a true positive).

    Only alerts that are closed now count: one reopened for review is undecided again, and an
    alert closed twice (reopened in between) keeps its later verdict (``triage`` takes the last).
    """
    from dashboards.audit import CLOSED_FP, CLOSED_TP

    return [(a, bool(tp)) for a, tp in con.execute(
        "SELECT l.alert_id, l.to_status = ? FROM audit_log l JOIN alert_status s USING (alert_id) "
        "WHERE l.to_status IN (?, ?) AND s.status IN (?, ?) ORDER BY l.seq",
        [CLOSED_TP, CLOSED_TP, CLOSED_FP, CLOSED_TP, CLOSED_FP]).fetchall()]


@dataclass(frozen=True)
class Triage:
    scores: dict[str, triage_model.TriageScore]
    learnt: int  # dispositions the model learnt from (0: every score is neutral)
    summary: str  # what the blotter says about the ranking


class TriageCache:
    """Every alert's triage score, recomputed only when the alerts or the dispositions change.

    The blotter refreshes every few seconds; the model is retrained when an alert is added or
    revised, or a disposition recorded (the audit chain's head hash changes with every entry).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: Triage | None = None

    def get(self, con: duckdb.DuckDBPyConnection) -> Triage:
        key = con.execute("SELECT (SELECT count(*) FROM alerts), (SELECT max(updated) FROM alerts), "
                          "(SELECT arg_max(hash, seq) FROM audit_log)").fetchall()[0]
        with self._lock:
            if key != self._key:
                self._value, self._key = compute_triage(con), key
            return self._value


def compute_triage(con: duckdb.DuckDBPyConnection) -> Triage:
    decided = dispositions(con)
    scores = {s.alert_id: s for s in triage_model.triage(triage_model.alert_rows(con), decided)}
    final = {a: tp for a, tp in decided if a in scores}  # the later verdict on an alert wins
    if not final:
        return Triage(scores, 0, "neutral: no dispositions yet (every alert 0.5; equal scores go by the "
                                 "detector's own score)")
    n_tp = sum(final.values())
    return Triage(scores, len(final), f"learnt from {len(final)} disposition{'s' if len(final) != 1 else ''} "
                                      f"({n_tp} true positive{'s' if n_tp != 1 else ''}, {len(final) - n_tp} false)")


# -- blotter -------------------------------------------------------------------------------------
def blotter(con: duckdb.DuckDBPyConnection, filters: dict, sort: str = "time", desc: bool = True,
            limit: int = 500, triage: Triage | None = None) -> tuple[list[dict], int]:
    """Alerts matching the filters (with their disposition status and triage score), and how many match in all.

    ``triage``: the scores to show and sort by (``TriageCache.get``); computed here when not given.
    """
    where, params = [], []
    for k in ("detector", "instrument", "severity"):
        if filters.get(k):
            where.append(f"a.{k} = ?")
            params.append(filters[k])
    if filters.get("venue"):
        where.append("list_contains(a.venues, ?)")
        params.append(filters["venue"])
    if filters.get("owner"):
        # an owner, or any owner of its linked group, or an account id
        where.append("(list_contains(a.owners, ?) OR list_contains(a.accounts, ?) OR len(list_intersect(a.owners, "
                     "(SELECT list(owner_id) FROM ref_owner_links WHERE group_id = ?))) > 0)")
        params += [filters["owner"]] * 3
    if filters.get("status"):
        where.append("coalesce(s.status, 'open') = ?")
        params.append(filters["status"])
    if filters.get("since"):
        where.append("a.window_end >= ?")
        params.append(parse_time(filters["since"]))
    if filters.get("until"):
        where.append("a.window_start < ?")
        params.append(parse_time(filters["until"]))
    direction = "DESC" if desc else "ASC"
    order = f"{SORTS.get(sort, SORTS['time'])} {direction} NULLS LAST"
    if sort == "triage":  # equal triage scores (all of them, before any disposition): the detector's own score
        order += f", a.score {direction} NULLS LAST"
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    joins = "FROM alerts a LEFT JOIN alert_status s USING (alert_id)"
    total = con.execute(f"SELECT count(*) {joins}{clause}", params).fetchall()[0][0]  # all: register() wants none open
    triage = triage or compute_triage(con)
    # the scores join as a relation registered on this cursor alone, so sorting and LIMIT stay in SQL
    ids = sorted(triage.scores)
    con.register("triage_scores", pa.table({"alert_id": pa.array(ids, pa.string()),
                                            "triage": pa.array([triage.scores[i].score for i in ids], pa.float64())}))
    try:
        rel = con.execute(
            f"SELECT a.alert_id, a.detector, a.severity, a.score, a.instrument, a.venues, a.owners, a.accounts, "
            f"epoch_ns(a.window_start) AS start_ns, epoch_ns(a.window_end) AS end_ns, a.summary, a.evidence_count, "
            f"coalesce(s.status, 'open') AS status, s.status_by, {_SEV_RANK} AS sev_rank, a.updated, t.triage "
            f"{joins} LEFT JOIN triage_scores t USING (alert_id){clause} "
            f"ORDER BY {order}, a.window_start DESC, a.alert_id LIMIT ?", params + [int(limit)])
        rows = [dict(zip([d[0] for d in rel.description], r)) for r in rel.fetchall()]
    finally:
        con.unregister("triage_scores")
    for r in rows:
        t = triage.scores.get(r["alert_id"])
        r["triage_reason"] = t.reason if t else "not scored yet (new since the last refresh)"
        r["start"], r["end"] = fmt_ts(r["start_ns"]), fmt_ts(r["end_ns"])
        r["duration_s"] = (r["end_ns"] - r["start_ns"]) / NS
        r["updated"] = fmt_ts(r["updated"]) if r["updated"] else ""
        r.pop("sev_rank")
    return rows, total


def filter_choices(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Values present in the store, for the blotter's drop-downs."""
    out = {}
    for name, sql in (("detector", "SELECT DISTINCT detector FROM alerts"),
                      ("instrument", "SELECT DISTINCT instrument FROM alerts WHERE instrument IS NOT NULL"),
                      ("venue", "SELECT DISTINCT unnest(venues) FROM alerts")):
        out[name] = sorted(r[0] for r in con.execute(sql).fetchall() if r[0] is not None)
    return out


# -- one alert -----------------------------------------------------------------------------------
@dataclass
class AlertDetail:
    alert: dict
    evidence: list[dict]
    evidence_columns: list[str]
    params: dict
    metrics: dict
    status: str = "open"
    prices: dict[str, list[tuple]] = field(default_factory=dict)  # venue → [(ns, last, low, high)]
    quotes: dict[str, list[tuple]] = field(default_factory=dict)  # venue → [(ns, bid, ask)]
    lifecycle: list[dict] = field(default_factory=list)
    window: tuple[int, int] = (0, 0)  # the chart's time range, ns


def alert_row(con: duckdb.DuckDBPyConnection, alert_id: str) -> dict | None:
    rel = con.execute("SELECT a.* EXCLUDE (window_start, window_end, first_seen, updated), epoch_ns(a.window_start) "
                      "AS start_ns, epoch_ns(a.window_end) AS end_ns, a.first_seen, a.updated, "
                      "coalesce(s.status, 'open') AS status FROM alerts a LEFT JOIN alert_status s USING (alert_id) "
                      "WHERE a.alert_id = ?", [alert_id])
    row = rel.fetchone()
    if row is None:
        return None
    a = dict(zip([d[0] for d in rel.description], row))
    a["start"], a["end"] = fmt_ts(a["start_ns"]), fmt_ts(a["end_ns"])
    a["first_seen"], a["updated"] = fmt_ts(a["first_seen"]), fmt_ts(a["updated"])
    a["duration_s"] = (a["end_ns"] - a["start_ns"]) / NS
    return a


def evidence_rows(con: duckdb.DuckDBPyConnection, alert_ids: list[str]) -> tuple[list[str], list[dict]]:
    """Evidence of some alerts, only the columns they use, ``ts`` as integer ns."""
    rel = con.execute("SELECT alert_id, epoch_ns(ts) AS ts_ns, * EXCLUDE (alert_id, ts) FROM alert_evidence "
                      "WHERE list_contains(?, alert_id) ORDER BY alert_id, ts, src, src_seq", [list(alert_ids)])
    names = [d[0] for d in rel.description]
    rows = [dict(zip(names, r)) for r in rel.fetchall()]
    used = [n for n in names if any(r[n] is not None for r in rows)]
    for r in rows:
        r["time"] = fmt_ts(r["ts_ns"])
    return used, rows


def chart_window(start_ns: int, end_ns: int) -> tuple[int, int]:
    """The alert window with context either side: half its length, at least 60 s, at most 10 min.

    >>> a, b = chart_window(100 * NS, 110 * NS); (b - a) // NS
    130
    """
    pad = min(max((end_ns - start_ns) // 2, 60 * NS), 600 * NS)
    return start_ns - pad, end_ns + pad


def price_paths(con, src: Sources, instrument: str, t0: int, t1: int, buckets: int = 400) -> dict[str, list[tuple]]:
    """Trades of the instrument on every venue in [t0, t1], bucketed: (bucket start ns, last, low, high).

    Bucketing keeps the chart a few hundred points per venue whatever the trade rate.
    """
    width = max((t1 - t0) // buckets, 1)
    rows = con.execute(
        f"SELECT venue, (epoch_ns(ts) - ?) // ? AS b, arg_max(price, ts), min(price), max(price) FROM {src('trades')} "
        f"WHERE instrument = ? AND ts >= ? AND ts <= ? AND price IS NOT NULL "
        f"GROUP BY ALL ORDER BY venue, b", [t0, width, instrument, to_dt(t0), to_dt(t1)]).fetchall()
    out: dict[str, list[tuple]] = {}
    for venue, b, last, low, high in rows:
        out.setdefault(venue or "?", []).append((t0 + int(b) * width + width // 2, last, low, high))
    return out


def quote_paths(con, src: Sources, instrument: str, t0: int, t1: int, buckets: int = 400) -> dict[str, list[tuple]]:
    """Best bid/offer per venue in [t0, t1], last per bucket: (ns, bid, ask)."""
    width = max((t1 - t0) // buckets, 1)
    try:
        rows = con.execute(
            f"SELECT venue, (epoch_ns(ts) - ?) // ? AS b, arg_max(bid, ts), arg_max(ask, ts) "
            f"FROM {src('quotes')} WHERE instrument = ? AND ts >= ? AND ts <= ? "
            f"GROUP BY ALL ORDER BY venue, b", [t0, width, instrument, to_dt(t0), to_dt(t1)]).fetchall()
    except duckdb.Error:  # an archive without quotes (or an older schema): the chart goes without them
        return {}
    out: dict[str, list[tuple]] = {}
    for venue, b, bid, ask in rows:
        out.setdefault(venue or "?", []).append((t0 + int(b) * width + width // 2, bid, ask))
    return out


def order_lifecycle(con, src: Sources, alert: dict, evidence: list[dict], t0: int, t1: int,
                    max_orders: int = 40) -> list[dict]:
    """Every event of the evidence orders, plus the owners' other orders in the instrument within [t0, t1]."""
    ids = sorted({e["order_id"] for e in evidence if e.get("order_id")})
    owners = list(alert.get("owners") or [])
    if not ids and not owners:
        return []
    rel = con.execute(
        f"SELECT epoch_ns(ts) AS ts_ns, venue, platform, account, owner, order_id, side, action, price, qty, leaves_qty "
        f"FROM {src('orders')} WHERE instrument = ? AND (list_contains(?, order_id) OR (list_contains(?, owner) "
        f"AND ts >= ? AND ts <= ?)) ORDER BY order_id, ts",
        [alert["instrument"], ids, owners, to_dt(t0), to_dt(t1)])
    names = [d[0] for d in rel.description]
    rows = [dict(zip(names, r)) for r in rel.fetchall()]
    keep = set(ids)
    for r in rows:  # evidence orders first, then the owners' others by time, up to max_orders
        if len(keep) >= max_orders:
            break
        keep.add(r["order_id"])
    rows = [r for r in rows if r["order_id"] in keep]
    for r in rows:
        r["time"] = fmt_ts(r["ts_ns"])
        r["evidence"] = r["order_id"] in ids
    return rows


def alert_detail(con, src: Sources, alert_id: str) -> AlertDetail | None:
    a = alert_row(con, alert_id)
    if a is None:
        return None
    cols, ev = evidence_rows(con, [alert_id])
    d = AlertDetail(alert=a, evidence=ev, evidence_columns=[c for c in cols if c not in ("alert_id", "ts_ns")],
                    params=orjson.loads(a["params"] or "{}"), metrics=orjson.loads(a["metrics"] or "{}"),
                    status=a["status"])
    t0, t1 = chart_window(a["start_ns"], a["end_ns"])
    if ev:  # evidence can sit just outside the window (a fill after the cancel): keep it on the chart
        t0, t1 = min(t0, min(e["ts_ns"] for e in ev) - NS), max(t1, max(e["ts_ns"] for e in ev) + NS)
    d.window = (t0, t1)
    if a["instrument"]:
        try:
            d.prices = price_paths(con, src, a["instrument"], t0, t1)
            d.quotes = quote_paths(con, src, a["instrument"], t0, t1)
            if a["detector"] in SPOOFING_TYPES or any(e.get("kind") == "order" for e in ev):
                # the owner's other orders only close to the alert: a spoofer's pattern lasts seconds
                pad = max((a["end_ns"] - a["start_ns"]) // 2, 5 * NS)
                d.lifecycle = order_lifecycle(con, src, a, ev, a["start_ns"] - pad, a["end_ns"] + pad)
        except duckdb.Error as e:  # archive moved or missing: show the alert and say why the chart is empty
            d.alert["archive_error"] = str(e).splitlines()[0]
    return d


# -- owners --------------------------------------------------------------------------------------
def owner_view(con, src: Sources, owner: str) -> dict:
    """An owner's accounts on each platform, its linked group and that group's owners, its alerts."""
    accounts = _dicts(con.execute("SELECT platform, account, owner_id, owner_type, jurisdiction FROM ref_accounts "
                                  "WHERE owner_id = ? ORDER BY platform, account", [owner]))
    group = con.execute("SELECT group_id FROM ref_owner_links WHERE owner_id = ?", [owner]).fetchone()
    group_id = group[0] if group else None
    linked = []
    if group_id:
        linked = _dicts(con.execute(
            "SELECT l.owner_id, string_agg(r.platform || ':' || r.account, ', ' ORDER BY r.platform, r.account) AS accounts "
            "FROM ref_owner_links l LEFT JOIN ref_accounts r ON r.owner_id = l.owner_id "
            "WHERE l.group_id = ? AND l.owner_id <> ? GROUP BY l.owner_id ORDER BY l.owner_id", [group_id, owner]))
    members = [owner] + [m["owner_id"] for m in linked]
    alerts = _dicts(con.execute(
        "SELECT a.alert_id, a.detector, a.severity, a.instrument, epoch_ns(a.window_start) AS start_ns, a.summary, "
        "coalesce(s.status, 'open') AS status, list_contains(a.owners, ?) AS direct FROM alerts a "
        "LEFT JOIN alert_status s USING (alert_id) WHERE len(list_intersect(a.owners, ?)) > 0 "
        "ORDER BY a.window_start DESC", [owner, members]))
    for a in alerts:
        a["start"] = fmt_ts(a["start_ns"])
    try:
        activity = _dicts(con.execute(
            f"SELECT instrument, venue, count(*) AS trades, sum(qty) AS qty, sum(price * qty) AS notional, "
            f"count(*) FILTER (WHERE buy_owner = ? AND sell_owner = ?) AS self_trades "
            f"FROM {src('trades')} WHERE buy_owner = ? OR sell_owner = ? GROUP BY ALL ORDER BY notional DESC",
            [owner] * 4))
    except duckdb.Error:
        activity = []
    return {"owner": owner, "accounts": accounts, "group_id": group_id, "linked": linked, "alerts": alerts,
            "activity": activity, "known": bool(accounts) or bool(alerts)}


def _dicts(rel) -> list[dict]:
    names = [d[0] for d in rel.description]
    return [dict(zip(names, r)) for r in rel.fetchall()]
