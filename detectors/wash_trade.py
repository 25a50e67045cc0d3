"""Wash trades: both sides of a trade belong to one beneficial owner or one linked group.

In a shared order book the two sides can come from different platforms: an owner
rests an order through its account on the overseas affiliate and hits it through
its account on the Hong Kong platform.  Enrichment has already resolved every
account, on either platform, to its owner and the owner's linked group (an owner
in no group is its own group), so the test per trade is one vectorised
comparison, ``buy_group == sell_group``.

Self-matched trades by one group in one instrument that follow each other within
``window_gap_ms`` form one episode and one alert; the alert is revised (same id)
as trades join it, so an analyst sees it at the first trade.

>>> import pyarrow as pa
>>> from surveil.schemas import conform
>>> t = conform(pa.table({"ts": pa.array([0, 10**9], pa.int64()), "kind": ["trade"] * 2, "venue": ["SHARED"] * 2,
...     "instrument": ["BTC/USDT"] * 2, "trade_id": ["t1", "t2"], "price": [100.0, 101.0], "qty": [1.0, 2.0],
...     "buy_account": ["HK-1", "HK-1"], "sell_account": ["OV-9", "OV-2"], "buy_owner": ["O1", "O1"],
...     "sell_owner": ["O1", "O2"], "buy_group": ["O1", "O1"], "sell_group": ["O1", "O2"]}))
>>> d = WashTrade()
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]
['O1 traded with itself 1 time(s) in BTC/USDT on SHARED (accounts HK-1, OV-9), notional 100']
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector
from surveil.alerts import Alert, Severity, evidence_id
from surveil.schemas import Kind


@dataclass
class _Episode:
    start_ns: int
    last_ns: int
    opening_id: str
    rows: list[pa.Table] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)
    venues: set[str] = field(default_factory=set)
    trades: int = 0
    notional: float = 0.0
    cross_platform: int = 0


@dataclass
class WashState:
    episode: _Episode | None = None


class WashTrade(Detector):
    name = "wash_trade"
    version = "1.0"
    key_columns = ("buy_group", "instrument")
    description = "Both sides of a trade belong to one beneficial owner or one linked owner group."
    param_docs = {
        "window_gap_ms": ("ms", "self-matched trades closer than this form one episode (one alert)"),
        "min_trades": ("trades", "self-matched trades an episode needs before it alerts"),
        "high_severity_notional": ("quote currency", "episode notional at which severity becomes high"),
        "max_evidence": ("trades", "self-matched trades kept as an alert's evidence (its first ones; the summary "
                                   "and metrics count them all): an owner self-matching all day keeps one alert "
                                   "whose every revision the store rewrites"),
    }

    def __init__(self, window_gap_ms: int = 300_000, min_trades: int = 1, high_severity_notional: float = 1_000_000.0,
                 max_evidence: int = 200):
        if window_gap_ms <= 0 or min_trades < 1 or max_evidence < 1:
            raise ValueError("window_gap_ms must be > 0, min_trades and max_evidence >= 1")
        self.window_gap_ms = int(window_gap_ms)
        self.min_trades = int(min_trades)
        self.high_severity_notional = float(high_severity_notional)
        self.max_evidence = int(max_evidence)

    def select(self, events: pa.Table) -> pa.Table:
        mask = pc.and_(pc.equal(events.column("kind"), Kind.TRADE.value),
                       pc.equal(events.column("buy_group"), events.column("sell_group")))
        return events.filter(pc.fill_null(mask, False))

    def new_state(self) -> WashState:
        return WashState()

    def update(self, state: WashState, events: pa.Table) -> list[Alert]:
        gap_ns = self.window_gap_ms * 1_000_000
        out: dict[str, Alert] = {}
        ts = events.column("ts").cast(pa.int64()).to_pylist()
        for i, row in enumerate(events.select(
                ["kind", "venue", "trade_id", "src", "src_seq", "price", "qty", "buy_owner", "sell_owner",
                 "buy_account", "sell_account", "buy_platform", "sell_platform"]).to_pylist()):
            ep = state.episode
            if ep is None or ts[i] - ep.last_ns > gap_ns:
                ep = state.episode = _Episode(ts[i], ts[i], evidence_id(row))
            ep.last_ns = ts[i]
            if len(ep.rows) < self.max_evidence:
                ep.rows.append(events.take([i]))  # a copy: a slice would pin the whole batch
            ep.trades += 1
            ep.notional += row["price"] * row["qty"]
            ep.owners.update(o for o in (row["buy_owner"], row["sell_owner"]) if o)
            ep.accounts.update(f"{p}:{a}" if p else a for p, a in ((row["buy_platform"], row["buy_account"]),
                                                                    (row["sell_platform"], row["sell_account"])) if a)
            ep.venues.add(row["venue"])
            ep.cross_platform += int(bool(row["buy_platform"]) and row["buy_platform"] != row["sell_platform"])
            if ep.trades >= self.min_trades:
                alert = self._alert(ep, events.column("buy_group")[i].as_py(), events.column("instrument")[i].as_py())
                out[alert.alert_id] = alert
        return list(out.values())

    def is_idle(self, state: WashState, now_ns: int) -> bool:
        # Idle once no later trade could extend the episode: dropping the state then
        # changes nothing, which keeps alerts independent of when eviction runs.
        return state.episode is None or now_ns - state.episode.last_ns > self.window_gap_ms * 1_000_000

    def _alert(self, ep: _Episode, group: str, instrument: str) -> Alert:
        owners = sorted(ep.owners)
        who = owners[0] if len(owners) == 1 else f"linked group {group} ({', '.join(owners)})"
        accts = sorted(ep.accounts)
        where = "/".join(sorted(ep.venues))
        cross = f", {ep.cross_platform} across platforms" if ep.cross_platform else ""
        summary = (f"{who} traded with itself {ep.trades} time(s) in {instrument} on {where} "
                   f"(accounts {', '.join(a.split(':', 1)[-1] for a in accts)}){cross}, notional {ep.notional:,.0f}")
        severity = (Severity.HIGH if ep.notional >= self.high_severity_notional or ep.trades >= 5
                    else Severity.MEDIUM if ep.trades >= 2 or ep.cross_platform else Severity.LOW)
        return Alert.build(
            detector=self.name, version=self.version, key=f"{group}|{instrument}",
            window_start_ns=ep.start_ns, window_end_ns=ep.last_ns, opening_evidence=[ep.opening_id],
            evidence=pa.concat_tables(ep.rows), severity=severity, score=float(ep.trades),
            instrument=instrument, venues=sorted(ep.venues), owners=owners, accounts=accts,
            summary=summary, params=self.params(),
            metrics={"trades": ep.trades, "notional": round(ep.notional, 8), "cross_platform_trades": ep.cross_platform},
        )
