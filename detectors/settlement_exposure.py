"""Settlement exposure: net delivery-versus-payment obligations between the local platform and each affiliate.

On a shared order book a trade between a client of the local platform (``local_platform``,
HKVATP) and a client of an affiliate (``buy_platform != sell_platform``) leaves the two
platforms owing each other: when the local client bought, the affiliate owes the base asset
(``qty``) and the local platform owes the quote currency (``qty x price``); the other way round
when it sold.  Per affiliate and asset the detector keeps the running net (positive: the
affiliate owes the local platform) and values it in the quote currency (base assets at their
instrument's latest traded price, the quote currency at 1: every instrument is taken to be
quoted in the reserve's currency).  The *exposure* to an affiliate is what it owes on balance,
asset by asset: ``sum(max(value, 0))`` — the deliveries the local platform would have to make
good from its reserve fund (``reserve_fund``) if the affiliate failed to deliver.

Obligations settle at the cycle ``settlement_cycle_ms`` (every cycle boundary, everything
from trades before it settles) until ``settlement`` events arrive for an affiliate
(``surveil.schemas``: ``platform`` = the affiliate, optional ``instrument``); from the first
one on, only they settle that affiliate's obligations (those of trades at or before the
settlement's time, to ``RESOLUTION_MS``).  Two findings:

- **exposure**: the exposure to an affiliate reaches a fraction of the reserve listed in
  ``alert_fractions``; one alert per episode (until the exposure falls back below 80% of the
  lowest fraction), revised with the same id at each higher fraction reached and when it ends;
  the summary breaks down the exposure at its peak;
- **overdue**: an obligation of one instrument's trades stays unsettled ``deadline_ms`` after
  its trade; one alert per affiliate and instrument until it settles (revised then).

>>> from tests.conftest import events
>>> n = 4
>>> t = events(ts=[1.0, 2.0, 3.0, 4.0], kind=["trade"] * n, venue=["SHARED"] * n, instrument=["BTC/USDT"] * n,
...     price=[100.0] * n, qty=[3.0, 3.0, 3.0, 3.0], trade_id=list("abcd"), buy_platform=["HKVATP"] * n,
...     sell_platform=["OVSAFF"] * n, buy_account=["HK-1"] * n, sell_account=["OV-1"] * n)
>>> d = SettlementExposure(reserve_fund=1000.0, alert_fractions="0.5,1.0")
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]  # doctest: +NORMALIZE_WHITESPACE
['OVSAFF owes HKVATP 1,200 USDT-equivalent net on SHARED (120% of the 1,000 reserve; 100% level reached):
  BTC 12 (1,200); HKVATP owes USDT 1,200; mostly BTC/USDT, 3 cross-platform trades since 1970-01-01 00:00:02 UTC']
"""
from __future__ import annotations

import functools

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, Rows, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, EVIDENCE_SCHEMA, Alert, Severity, evidence_id
from surveil.schemas import Kind

MS = 1_000_000
RESOLUTION_MS = 1_000  # obligations are kept per second of trading: a settlement settles whole seconds
HYSTERESIS = 0.2  # an episode ends below (1 - this) x the lowest level: no flicker around it
MAX_EVIDENCE = 12  # trades kept per episode: the ones that crossed a level and the largest
# what the loop reads of every row; a kept row (evidence) has every evidence column
LOOP_COLUMNS = ("ts", "kind", "instrument", "platform", "buy_platform", "sell_platform", "price", "qty")
_TRADE, _SETTLEMENT = Kind.TRADE.value, Kind.SETTLEMENT.value


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.5, 0.8,1"`` -> ``(0.5, 0.8, 1.0)`` (sorted, each > 0).

    >>> parse_fractions("1.0, 0.5")
    (0.5, 1.0)
    """
    try:
        out = tuple(sorted(float(x) for x in text.split(",") if x.strip()))
    except ValueError as e:
        raise ValueError(f"alert_fractions: expected numbers separated by commas, got {text!r}") from e
    if not out or out[0] <= 0:
        raise ValueError(f"alert_fractions: expected positive fractions of the reserve, got {text!r}")
    return out


@functools.lru_cache(maxsize=4096)
def _assets(instrument: str) -> tuple[str, str]:
    base, _, quote = instrument.partition("/")
    return base, quote or "?"


@dataclass
class _Exposure:  # one episode of exposure to an affiliate at or above the lowest fraction
    start_ns: int
    opening: list[str]
    level: int  # index of the highest fraction reached
    peak: float
    peak_ns: int
    last_ns: int
    evidence: list = field(default_factory=list)  # row dicts
    trades: int = 0
    by_instrument: dict = field(default_factory=dict)  # instrument -> |value| traded in the episode
    closed: bool = False
    assets: dict = field(default_factory=dict)  # the latest per-asset values (for the summary)
    per_instrument: dict = field(default_factory=dict)  # instrument -> |net base value| at the peak
    qty: dict = field(default_factory=dict)  # asset -> net quantity at the peak


@dataclass
class _Overdue:
    start_ns: int  # the oldest unsettled trade
    detected_ns: int
    rows: list
    value: float = 0.0


@dataclass
class ExposureState:
    # (affiliate, instrument) -> OrderedDict second -> [base qty, quote amount, first trade row]
    open: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)  # (affiliate, instrument) -> [base qty, quote amount] over `open`
    price: dict = field(default_factory=dict)  # instrument -> latest cross-platform trade price
    by_events: set = field(default_factory=set)  # affiliates whose settlements come as events
    cycle_end_ns: int | None = None  # next assumed settlement
    episodes: dict = field(default_factory=dict)  # affiliate -> _Exposure
    overdue: dict = field(default_factory=dict)  # (affiliate, instrument) -> _Overdue
    last_ns: int = 0
    # no obligation can be overdue before this (the oldest open one's trade + deadline): the check is skipped
    # until then instead of walking every open book at every trade
    overdue_check_ns: int = 0


class SettlementExposure(Detector):
    name = "settlement_exposure"
    version = "1.0"
    key_columns = ("venue",)
    description = ("Running net delivery-versus-payment obligations between the local platform and each affiliate "
                   "from cross-platform trades on the shared book, against the reserve fund; and obligations "
                   "unsettled past their deadline.")
    param_docs = {
        "local_platform": ("platform", "the platform whose reserve fund is at stake"),
        "reserve_fund": ("quote currency", "the reserve fund the exposure to an affiliate is measured against"),
        "alert_fractions": ("fractions of the reserve", "comma-separated levels of exposure / reserve that alert, "
                                                        "e.g. '0.5,0.8,1.0'"),
        "settlement_cycle_ms": ("ms", "assumed settlement cycle (everything traded before each boundary settles) "
                                      "until settlement events arrive for an affiliate"),
        "deadline_ms": ("ms", "an obligation unsettled this long after its trade is overdue"),
    }

    def __init__(self, local_platform: str = "HKVATP", reserve_fund: float = 50_000_000.0,
                 alert_fractions: str = "0.5,0.8,1.0", settlement_cycle_ms: int = 300_000,
                 deadline_ms: int = 600_000):
        if not local_platform or reserve_fund <= 0 or settlement_cycle_ms <= 0 or deadline_ms <= 0:
            raise ValueError("local_platform must be named; reserve_fund, settlement_cycle_ms and deadline_ms > 0")
        self.local_platform = str(local_platform)
        self.reserve_fund = float(reserve_fund)
        self.alert_fractions = str(alert_fractions)
        self.settlement_cycle_ms = int(settlement_cycle_ms)
        self.deadline_ms = int(deadline_ms)
        self._levels = parse_fractions(self.alert_fractions)

    # -- contract ---------------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        """Cross-platform trades with the local platform on one side, and settlement events."""
        kind = events.column("kind")
        bp, sp = events.column("buy_platform"), events.column("sell_platform")
        local = pc.or_(pc.equal(bp, self.local_platform), pc.equal(sp, self.local_platform))
        cross = pc.and_(pc.equal(kind, _TRADE), pc.and_(pc.not_equal(bp, sp), local))
        keep = pc.or_(pc.fill_null(cross, False), pc.fill_null(pc.equal(kind, _SETTLEMENT), False))
        return keep_rows(events, keep)

    def new_state(self) -> ExposureState:
        return ExposureState()

    def is_idle(self, state: ExposureState, now_ns: int) -> bool:
        return not state.open and not state.episodes and not state.overdue and not state.by_events

    def update(self, state: ExposureState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        venue = events.column("venue")[0].as_py()
        out: dict[str, Alert] = {}
        cycle = self.settlement_cycle_ms * MS
        rows = Rows(events, LOOP_COLUMNS, EVIDENCE_COLUMNS)
        for i, ts in enumerate(rows.ts):
            state.last_ns = ts
            if state.cycle_end_ns is None:
                state.cycle_end_ns = (ts // cycle + 1) * cycle
            if ts >= state.cycle_end_ns:  # assumed settlements of the cycles that ended before this event
                boundary = ts // cycle * cycle
                self._settle(state, lambda aff, inst: aff not in state.by_events, boundary - 1, out, venue, boundary)
                state.cycle_end_ns = boundary + cycle
            if rows.kind[i] == _SETTLEMENT:
                aff, inst = rows.platform[i], rows.instrument[i]
                state.by_events.add(aff)
                self._settle(state, lambda a, i: a == aff and (inst is None or i == inst), ts, out, venue, ts)
            else:
                self._trade(state, rows, i, ts, venue, out)
            self._check_overdue(state, ts, venue, out)
        return list(out.values())

    def flush(self, state: ExposureState) -> list[Alert]:
        out = []
        for aff, ep in sorted(state.episodes.items()):
            out.append(self._exposure_alert(state, ep, aff, self._venue(ep)))
        for (aff, inst), od in sorted(state.overdue.items()):
            out.append(self._overdue_alert(od, aff, inst, self._venue(od), state.last_ns, settled=False))
        return out

    @staticmethod
    def _venue(ep) -> str:
        rows = ep.evidence if isinstance(ep, _Exposure) else ep.rows
        return rows[0]["venue"] if rows else ""

    # -- obligations --------------------------------------------------------------------------
    def _trade(self, state: ExposureState, rows: Rows, i: int, ts: int, venue: str, out: dict) -> None:
        price, qty = rows.price[i], rows.qty[i]
        if not price or not qty:
            return
        local_buys = rows.buy_platform[i] == self.local_platform
        aff = rows.sell_platform[i] if local_buys else rows.buy_platform[i]
        inst = rows.instrument[i]
        sign = 1.0 if local_buys else -1.0  # the affiliate owes the base when the local client bought
        book = state.open.setdefault((aff, inst), OrderedDict())
        sec = ts // (RESOLUTION_MS * MS)
        slot = book.get(sec)
        if slot is None:
            slot = book[sec] = [0.0, 0.0, rows.row(i)]
            if len(book) == 1:  # the book's oldest obligation: due for the overdue check at its deadline
                state.overdue_check_ns = min(state.overdue_check_ns, ts + self.deadline_ms * MS)
        slot[0] += sign * qty
        slot[1] -= sign * qty * price
        tot = state.totals.setdefault((aff, inst), [0.0, 0.0])
        tot[0] += sign * qty
        tot[1] -= sign * qty * price
        state.price[inst] = price
        self._judge(state, aff, ts, venue, out, (rows, i))

    def _values(self, state: ExposureState, aff: str) -> tuple[dict, dict, dict]:
        """Per asset the value the affiliate owes (negative: owed to it) and the quantity; per instrument
        the value of its base leg."""
        assets: dict[str, float] = {}
        qty: dict[str, float] = {}
        per_inst: dict[str, float] = {}
        for (_, inst), (base_q, quote) in sorted(kv for kv in state.totals.items() if kv[0][0] == aff):
            b, q = _assets(inst)
            bv = base_q * state.price.get(inst, 0.0)
            assets[b] = assets.get(b, 0.0) + bv
            qty[b] = qty.get(b, 0.0) + base_q
            assets[q] = assets.get(q, 0.0) + quote
            qty[q] = qty.get(q, 0.0) + quote
            per_inst[inst] = bv
        return assets, qty, per_inst

    def _judge(self, state: ExposureState, aff: str, ts: int, venue: str, out: dict,
               trade: tuple[Rows, int] | None) -> None:
        """The exposure to ``aff`` after a trade (the batch's rows and its index) or a settlement (None)."""
        assets, qty, per_inst = self._values(state, aff)
        exposure = sum(v for v in assets.values() if v > 0)
        frac = exposure / self.reserve_fund
        level = sum(1 for f in self._levels if frac >= f) - 1
        ep = state.episodes.get(aff)
        if ep is None and level < 0:
            return
        if ep is not None and level < 0 and frac >= self._levels[0] * (1 - HYSTERESIS):
            level = 0  # still in the episode: it ends well below the lowest level
        if ep is None:
            row = trade[0].row(trade[1]) if trade else None
            ep = state.episodes[aff] = _Exposure(ts, [evidence_id(row)] if row else [], level, exposure, ts, ts)
            ep.evidence.append(row)
            changed = True
        elif level < 0:  # back below the lowest level: the episode ends
            ep.last_ns, ep.closed = ts, True
            a = self._exposure_alert(state, ep, aff, venue)
            out[a.alert_id] = a
            del state.episodes[aff]
            return
        else:
            changed = level > ep.level
            if changed and trade is not None and len(ep.evidence) < MAX_EVIDENCE:
                ep.evidence.append(trade[0].row(trade[1]))
            ep.level = max(ep.level, level)
        ep.last_ns = ts
        if trade is not None:
            rows, i = trade
            ep.trades += 1
            ep.by_instrument[rows.instrument[i]] = ep.by_instrument.get(rows.instrument[i], 0.0) + \
                abs(rows.qty[i] * rows.price[i])
        if exposure > ep.peak or not ep.per_instrument:
            ep.peak, ep.peak_ns = exposure, ts
            ep.per_instrument = {i: abs(v) for i, v in per_inst.items()}
            ep.assets, ep.qty = assets, qty
        if changed:
            a = self._exposure_alert(state, ep, aff, venue)
            out[a.alert_id] = a

    def _settle(self, state: ExposureState, which, upto_ns: int, out: dict, venue: str, now_ns: int) -> None:
        last_sec = upto_ns // (RESOLUTION_MS * MS)
        touched = set()
        for (aff, inst), book in list(state.open.items()):
            if not which(aff, inst):
                continue
            tot = state.totals[(aff, inst)]
            while book and next(iter(book)) <= last_sec:
                _, (bq, qa, _) = book.popitem(last=False)
                tot[0] -= bq
                tot[1] -= qa
            touched.add(aff)
            if not book:
                del state.open[(aff, inst)], state.totals[(aff, inst)]
            od = state.overdue.get((aff, inst))
            if od is not None and (not book or next(iter(book)) * RESOLUTION_MS * MS >= od.start_ns):
                a = self._overdue_alert(od, aff, inst, venue, now_ns, settled=True)
                out[a.alert_id] = a
                del state.overdue[(aff, inst)]
                state.overdue_check_ns = 0  # the book's remaining obligations are watched again
        for aff in sorted(touched):
            if aff in state.episodes:
                self._judge(state, aff, now_ns, venue, out, None)

    def _check_overdue(self, state: ExposureState, now_ns: int, venue: str, out: dict) -> None:
        if now_ns <= state.overdue_check_ns:
            return
        limit = self.deadline_ms * MS
        state.overdue_check_ns = 2**63 - 1
        for (aff, inst), book in state.open.items():
            if not book or (aff, inst) in state.overdue:
                continue
            sec, slot = next(iter(book.items()))
            if now_ns - slot[2]["ts"] <= limit:
                state.overdue_check_ns = min(state.overdue_check_ns, slot[2]["ts"] + limit)
            else:
                od = state.overdue[(aff, inst)] = _Overdue(slot[2]["ts"], now_ns, [slot[2]])
                od.value = sum(abs(s[1]) for s in book.values() if s[2]["ts"] < now_ns - limit)
                a = self._overdue_alert(od, aff, inst, venue, now_ns, settled=False)
                out[a.alert_id] = a

    # -- alerts --------------------------------------------------------------------------------
    def _exposure_alert(self, state: ExposureState, ep: _Exposure, aff: str, venue: str) -> Alert:
        assets = ep.assets
        owed = {k: v for k, v in sorted(assets.items()) if v > 0}
        owing = {k: v for k, v in sorted(assets.items()) if v < 0}
        quote_assets = {_assets(i)[1] for i in ep.by_instrument}

        def amount(asset: str, value: float) -> str:
            if asset in quote_assets:
                return f"{asset} {abs(value):,.0f}"
            return f"{asset} {abs(ep.qty.get(asset, 0.0)):,.10g} ({abs(value):,.0f})"
        level = self._levels[ep.level]
        # The instrument whose net obligations weigh most at the peak: background two-way flow nets out.
        main = max(sorted(ep.per_instrument), key=lambda i: ep.per_instrument[i]) if ep.per_instrument else None
        since = datetime.fromtimestamp(ep.start_ns // 10**9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        state_txt = "; ended" if ep.closed else ""
        summary = (f"{aff} owes {self.local_platform} {ep.peak:,.0f} USDT-equivalent net on {venue} "
                   f"({ep.peak / self.reserve_fund:.0%} of the {self.reserve_fund:,.0f} reserve; {level:.0%} level "
                   f"reached): " + ", ".join(amount(k, v) for k, v in owed.items())
                   + (f"; {self.local_platform} owes " + ", ".join(amount(k, v) for k, v in owing.items()) if owing else "")
                   + f"; mostly {main}, {ep.trades} cross-platform trades since {since}{state_txt}")
        severity = Severity.HIGH if level >= 1.0 else Severity.MEDIUM if level >= 0.75 else Severity.LOW
        rows = ep.evidence[:MAX_EVIDENCE]
        evidence = pa.Table.from_pylist(rows, schema=EVIDENCE_SCHEMA)
        return Alert.build(
            detector=self.name, version=self.version, key=f"{self.local_platform}|{aff}|exposure",
            window_start_ns=ep.start_ns, window_end_ns=ep.last_ns, opening_evidence=ep.opening, evidence=evidence,
            severity=severity, score=round(ep.peak / self.reserve_fund, 6), instrument=main, venues=[venue],
            owners=[], accounts=[], summary=summary, params=self.params(),
            metrics={"kind": "exposure", "affiliate": aff, "peak_exposure": round(ep.peak, 6), "level_reached": level, "trades": ep.trades,
                     "assets_at_peak": {k: round(v, 6) for k, v in sorted(assets.items())}, "closed": ep.closed},
        )

    def _overdue_alert(self, od: _Overdue, aff: str, inst: str, venue: str, now_ns: int, settled: bool) -> Alert:
        late = (now_ns - od.start_ns) / 1e9
        summary = (f"{inst} obligations between {self.local_platform} and {aff} on {venue} unsettled "
                   f"{'for' if settled else 'after'} {late:.0f}s (deadline {self.deadline_ms / 1000:g}s)"
                   f"{', then settled' if settled else ''}: oldest trade "
                   f"{od.rows[0].get('trade_id')}, {od.value:,.0f} in the quote currency overdue")
        evidence = pa.Table.from_pylist(od.rows, schema=EVIDENCE_SCHEMA)
        return Alert.build(
            detector=self.name, version=self.version, key=f"{self.local_platform}|{aff}|{inst}|overdue",
            window_start_ns=od.start_ns, window_end_ns=now_ns, opening_evidence=[evidence_id(od.rows[0])],
            evidence=evidence, severity=Severity.HIGH, score=round(late, 3), instrument=inst, venues=[venue],
            owners=[], accounts=[], summary=summary, params=self.params(),
            metrics={"kind": "overdue", "affiliate": aff, "overdue_value": round(od.value, 6),
                     "unsettled_s": round(late, 3), "settled": settled},
        )
