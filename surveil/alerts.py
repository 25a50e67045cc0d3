"""The alert model and its stable, content-derived id.

An alert's id is a hash of the detector, the key it fired on, the start of its
event-time window and the ids of the evidence that opened it.  Nothing
run-dependent (wall clock, worker, batch boundaries, a counter) enters it, so a
replay — whatever the batch size, worker count or restart point — produces the
same id, and the store's upsert by id makes a second replay add nothing.

Alerts are rare next to events, so one Python object per alert is fine; the
evidence rows stay an Arrow table.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

import orjson
import pyarrow as pa

from surveil.schemas import EVENT_SCHEMA


class Severity(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Evidence rows keep the columns an investigator needs to find the event again.
EVIDENCE_COLUMNS = (
    "ts", "kind", "venue", "instrument", "src", "src_seq", "trade_id", "order_id", "exec_id", "side", "action",
    "price", "qty", "account", "platform", "owner", "buy_account", "sell_account", "buy_platform",
    "sell_platform", "buy_owner", "sell_owner",
)
EVIDENCE_SCHEMA = pa.schema([EVENT_SCHEMA.field(c).remove_metadata() for c in EVIDENCE_COLUMNS])


def alert_id(detector: str, key: str, window_start_ns: int, evidence_ids: list[str]) -> str:
    """Stable id: same detector, key, window start and opening evidence → same id.

    >>> alert_id("wash_trade", "G1", 5, ["t1", "t2"]) == alert_id("wash_trade", "G1", 5, ["t2", "t1"])
    True
    >>> len(alert_id("wash_trade", "G1", 5, ["t1"]))
    24
    """
    h = hashlib.blake2b(digest_size=12)
    h.update(orjson.dumps([detector, key, int(window_start_ns), sorted(evidence_ids)]))
    return h.hexdigest()


def evidence_id(row: dict) -> str:
    """How an evidence row is named inside an alert id: its venue trade/order id, else its position."""
    if row.get("trade_id") and row.get("kind") == "trade":
        return f"{row.get('venue')}/t/{row['trade_id']}"
    if row.get("exec_id"):
        return f"{row.get('venue')}/x/{row['exec_id']}"
    if row.get("kind") == "quote":  # quotes carry no id: venue, instrument and time name one in any format
        return f"{row.get('venue')}/q/{row.get('instrument') or row.get('venue_symbol')}/{row.get('ts')}"
    return f"{row.get('src')}/{row.get('src_seq')}"


@dataclass
class Alert:
    """One finding, with everything an analyst needs to judge it."""

    alert_id: str
    detector: str
    detector_version: str
    key: str
    severity: Severity
    score: float
    instrument: str | None
    venues: list[str]
    owners: list[str]
    accounts: list[str]
    window_start_ns: int
    window_end_ns: int
    summary: str
    params: dict
    evidence: pa.Table = field(repr=False)
    metrics: dict = field(default_factory=dict)  # figures measured on the evidence (peak gap, volume…)

    @classmethod
    def build(cls, *, detector: str, version: str, key: str, window_start_ns: int, window_end_ns: int,
              opening_evidence: list[str], evidence: pa.Table, **kw) -> "Alert":
        ev = evidence.select(list(EVIDENCE_COLUMNS)) if evidence.num_rows else EVIDENCE_SCHEMA.empty_table()
        if ev.schema != EVIDENCE_SCHEMA:  # (a cast of the right schema still costs a pass)
            ev = ev.cast(EVIDENCE_SCHEMA)
        return cls(
            alert_id=alert_id(detector, key, window_start_ns, opening_evidence),
            detector=detector, detector_version=version, key=key,
            window_start_ns=int(window_start_ns), window_end_ns=int(window_end_ns), evidence=ev, **kw,
        )


ALERT_SCHEMA = pa.schema([
    ("alert_id", pa.string()),
    ("detector", pa.string()),
    ("detector_version", pa.string()),
    ("alert_key", pa.string()),
    ("severity", pa.string()),
    ("score", pa.float64()),
    ("instrument", pa.string()),
    ("venues", pa.list_(pa.string())),
    ("owners", pa.list_(pa.string())),
    ("accounts", pa.list_(pa.string())),
    ("window_start", pa.timestamp("ns", tz="UTC")),
    ("window_end", pa.timestamp("ns", tz="UTC")),
    ("summary", pa.string()),
    ("params", pa.string()),  # JSON
    ("metrics", pa.string()),  # JSON
    ("evidence_count", pa.int64()),
])


def alerts_table(alerts: list[Alert]) -> tuple[pa.Table, pa.Table]:
    """Alerts as (alerts table, evidence table with an ``alert_id`` column)."""
    rows = {name: [] for name in ALERT_SCHEMA.names}
    evidence = []
    for a in alerts:
        rows["alert_id"].append(a.alert_id)
        rows["detector"].append(a.detector)
        rows["detector_version"].append(a.detector_version)
        rows["alert_key"].append(a.key)
        rows["severity"].append(Severity(a.severity).value)
        rows["score"].append(float(a.score))
        rows["instrument"].append(a.instrument)
        rows["venues"].append(sorted(a.venues))
        rows["owners"].append(sorted(a.owners))
        rows["accounts"].append(sorted(a.accounts))
        rows["window_start"].append(a.window_start_ns)
        rows["window_end"].append(a.window_end_ns)
        rows["summary"].append(a.summary)
        rows["params"].append(orjson.dumps(a.params, option=orjson.OPT_SORT_KEYS).decode())
        rows["metrics"].append(orjson.dumps(a.metrics, option=orjson.OPT_SORT_KEYS).decode())
        rows["evidence_count"].append(a.evidence.num_rows)
        if a.evidence.num_rows:
            evidence.append(a.evidence.append_column("alert_id", pa.array([a.alert_id] * a.evidence.num_rows, pa.string())))
    arrays = []
    for f in ALERT_SCHEMA:
        vals = rows[f.name]
        if f.name in ("window_start", "window_end"):
            arrays.append(pa.array(vals, pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(vals, f.type))
    table = pa.Table.from_arrays(arrays, schema=ALERT_SCHEMA)
    ev_schema = EVIDENCE_SCHEMA.append(pa.field("alert_id", pa.string()))
    ev = pa.concat_tables(evidence) if evidence else ev_schema.empty_table()
    return table, ev
