"""Platform-level and anchored-price episodes: settlement exposure and reference deviation.

Both need inputs the default market does not have, written only when one of these types is
chosen (``Scenario.extra``, one canonical Parquet file each):

- ``ANCHORS``: ``reference`` events (``surveil.schemas``) on venue ``INDEX``, every
  ``anchor_every_s``, for every instrument: its underlying price (SHARED's price without this
  module's deviations) — the anchor a tokenised instrument is held to.  In a run with every
  type, REFX's dislocations (``price_dislocation``) are deviations from it too.
- ``SETTLEMENTS``: ``settlement`` events between HKVATP and OVSAFF on SHARED, one per
  instrument a few seconds after every ``settlement_cycle_s`` boundary, each settling the
  instrument's trades up to its time; episodes remove or delay some.

Labelled episodes:

- ``reference_deviation``: SHARED or REFX trades 80-300 bps away from the anchor for 90-300 s
  (a trapezoid price impact on that venue alone); the other venue stays with the anchor, so the
  two venues are as far apart for as long: ``price_dislocation`` is in its ``related_types``;
- ``settlement_exposure``, variant ``surge``: HKVATP clients buy from (or sell to) OVSAFF
  clients one way on one instrument, 0.6-1.5 x the reserve (``settlement_reserve``, the
  detector's default) in 30-80 trades inside one settlement cycle, so the net obligation
  OVSAFF owes reaches the alert levels (a volume surge too: ``abnormal_move`` is in its
  ``related_types``); variant ``missed``: one instrument's settlements stop
  for 2-3 cycles, so its obligations stay unsettled past the deadline.

Look-alikes (must not alert):

- ``peg_wobble``: a venue within the band of the anchor (15-35 bps) for 2-6 minutes, or
  beyond it for only 5-30 s;
- ``two_way_flow``: cross-platform flow as large as a surge, alternating directions: it nets;
- ``delayed_settlement``: one settlement 60-200 s late, inside the deadline.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from surveil.schemas import EVENT_SCHEMA, Feed, Kind

from .config import HKVATP, NS, OVSAFF, REFX, SHARED
from .episode_kit import draw, lots, shared_mid, sign_of
from .flow import BUY, SELL, shared_trades
from .population import HK, OV

ANCHOR_VENUE = "INDEX"
ANCHOR_TYPES = ("reference_deviation", "peg_wobble")
SETTLEMENT_TYPES = ("settlement_exposure", "two_way_flow", "delayed_settlement")
PLATFORM = "platform"  # scheduler family of settlement episodes: one at a time on an instrument


def _state(m) -> dict:
    """This module's additions to the market (kept on it, so a market carries its own)."""
    if not hasattr(m, "platform_extra"):
        # skip: (cycle index, instrument) of missed settlements; delay: the same -> seconds late;
        # impacts: (instrument, venue, knots ns, bps) of this module's deviations (not the anchor's)
        # surge_cycles: cycles holding a surge (exposure is per affiliate: two surges in one cycle
        # would be one finding)
        m.platform_extra = {"skip": set(), "delay": {}, "impacts": [], "surge_cycles": set()}
    return m.platform_extra


def _cycle_ns(m) -> int:
    return int(m.cfg.episodes.settlement_cycle_s * NS)


# ---- reference deviation ----------------------------------------------------------------------

def _venue_impact(m, rng, slot, type_name, bps_range, dur_range, ramp_s):
    from .episode_kit import place
    dur = dur_range.draw(rng)
    placed = place(m, rng, slot, dur, dur_range.lo)
    if placed is None:
        return None
    inst, t0, dur_ns = placed
    venue = SHARED if rng.random() < 0.5 else REFX
    bps = sign_of(rng) * round(bps_range.draw(rng), 2)
    ramp = int(min(ramp_s, dur_ns / NS / 4) * NS)
    t1 = t0 + dur_ns
    knots, values = [t0, t0 + ramp, t1 - ramp, t1], [0.0, bps, bps, 0.0]
    m.prices.add_impact(inst, (venue,), knots, values)
    _state(m)["impacts"].append((inst, venue, knots, values))
    return m.new_episode(type_name, inst, [venue], [], [], t0, t1, {
        "venue": venue, "deviation_bps": bps, "duration_s": round(dur_ns / NS, 3), "ramp_s": round(ramp / NS, 3),
        "anchor_venue": ANCHOR_VENUE})


def inject_reference_deviation(m, rng, slot):
    ec = m.cfg.episodes
    _state(m)
    ep = _venue_impact(m, rng, slot, "reference_deviation", ec.reference_bps, ec.reference_duration_s,
                       float(rng.uniform(5, 20)))
    if ep is not None:
        # Only one venue leaves the anchor, the other stays with it: the two venues' prices are apart by
        # the deviation (80-300 bps) for most of the 90-300 s, so a price_dislocation alert is right too.
        m.label_orders(ep, [], related=("price_dislocation",))
    return ep


def inject_peg_wobble(m, rng, slot):
    ec = m.cfg.episodes
    _state(m)
    if rng.random() < 0.5:  # a long wobble inside the band
        ep = _venue_impact(m, rng, slot, "peg_wobble", ec.wobble_bps, ec.wobble_duration_s, 10.0)
    else:  # a brief excursion beyond it
        ep = _venue_impact(m, rng, slot, "peg_wobble", ec.reference_bps, ec.excursion_duration_s, 1.0)
    if ep is not None:
        ep.params["mimics"] = ["reference_deviation"]
    return ep


# ---- settlement exposure ------------------------------------------------------------------------

def _in_one_cycle(m, rng, slot, dur_s: float):
    """(instrument, start, duration) inside one settlement cycle (obligations build up unsettled)."""
    cyc = _cycle_ns(m)
    dur = int(dur_s * NS)
    lo, hi = max(slot[0], m.cfg.start_ns + 5 * NS), min(slot[1], m.cfg.end_ns - 5 * NS)
    first, last = lo // cyc, (hi - dur) // cyc
    if last < first:
        return None
    used = _state(m)["surge_cycles"]
    for k in (first + rng.permutation(last - first + 1)).tolist():
        a, b = max(k * cyc + 15 * NS, lo), min((k + 1) * cyc - 5 * NS, hi) - dur
        if b <= a or k in used:
            continue
        for s in sorted(rng.integers(a, b, 4).tolist()):
            for inst in m.instrument_order(rng):
                if m.scheduler.reserve(PLATFORM, inst, s, s + dur):
                    used.add(k)
                    return inst, s, dur
    return None


def _accounts(m, rng, pool: str, platform: int, n: int) -> np.ndarray:
    pop = m.pop
    out = draw(m, rng, pool, n)
    bad = pop.account_platform[out] != platform
    while bad.any():
        out[bad] = draw(m, rng, pool, int(bad.sum()))
        bad = pop.account_platform[out] != platform
    return out


def _flow(m, rng, slot, type_name: str, one_way: bool):
    from .episode_kit import place
    ec = m.cfg.episodes
    n = ec.surge_n_trades.draw_int(rng)
    dur_s = ec.surge_duration_s.draw(rng)
    # A surge must build up inside one settlement cycle; a two-way flow nets wherever it falls.
    placed = _in_one_cycle(m, rng, slot, dur_s) if one_way else place(m, rng, slot, dur_s, ec.surge_duration_s.lo)
    if placed is None:
        return None
    inst, t0, dur = placed
    total = ec.surge_reserve_multiple.draw(rng) * ec.settlement_reserve
    local_buys = rng.random() < 0.5
    ep = m.new_episode(type_name, inst, [SHARED], [], [], t0, t0 + dur, {
        "variant": "surge" if one_way else "two_way", "notional": round(total, 2), "n_trades": n,
        "reserve": ec.settlement_reserve, "direction": ("HKVATP buys" if local_buys else "HKVATP sells")
        if one_way else "alternating", "duration_s": round(dur / NS, 3)})
    if not one_way:
        ep.params["mimics"] = ["settlement_exposure"]
    else:  # tens of millions one way in a few minutes is also the instrument's abnormal volume
        ep.related_types = ["abnormal_move"]
    _state(m)

    def build():
        idx = m.index_of(ep)
        ts = np.sort(rng.integers(t0, t0 + dur, n)).astype(np.int64)
        ts[0], ts[-1] = t0, t0 + dur
        mid = shared_mid(m, inst, ts)
        w = rng.uniform(0.5, 1.5, n)
        qty = lots(m, inst, total * w / w.sum(), mid)
        buys = np.full(n, local_buys) if one_way else (np.arange(n) % 2 == 0)
        hk, ov = _accounts(m, rng, "taker", HK, n), _accounts(m, rng, "maker", OV, n)
        bad = m.pop.linked(hk, ov)
        while bad.any():  # never one owner on both sides: that would be a wash trade
            ov[bad] = _accounts(m, rng, "maker", OV, int(bad.sum()))
            bad = m.pop.linked(hk, ov)
        # the clients whose trades build the obligations (the detector itself names no owner)
        accts = sorted(set(hk.tolist()) | set(ov.tolist()))
        ep.accounts = [m.pop.account_ids[a] for a in accts]
        ep.owners = sorted({m.pop.owner_ids[int(m.pop.account_owner[a])] for a in accts})
        # the HKVATP client takes liquidity: buys at the ask or sells at the bid
        aggr = np.where(buys, BUY, SELL).astype(np.int8)
        m.shared_trades.append(shared_trades(m, rng, inst, ts, ov, hk, aggr, qty=qty, episode=idx,
                                             maker_extra=np.zeros(n, np.int64)))

    m.defer(build)
    return ep


def _skip_cycles(m, rng, slot, type_name: str, n_cycles: int, delay_s: float | None):
    """Settlements of one instrument missed for ``n_cycles`` (``delay_s`` None) or one delayed.

    The label runs from the first settlement missed (or late) to the one that comes: the time
    the obligations are visibly overdue, and all the scheduler has to keep free.
    """
    cyc = _cycle_ns(m)
    first = max(slot[0], m.cfg.start_ns) // cyc + 1
    last = min(slot[1], m.cfg.end_ns) // cyc - max(n_cycles, 1)
    if last < first:
        return None
    for k in (first + rng.permutation(last - first + 1)).tolist():
        s = k * cyc
        e = (k + n_cycles) * cyc + int(((delay_s or 0.0) + 10.0) * NS)
        for inst in m.instrument_order(rng):
            if e > m.cfg.end_ns or not m.scheduler.reserve(PLATFORM, inst, s, e):
                continue
            st = _state(m)
            if delay_s is None:
                st["skip"].update((k + j, inst) for j in range(n_cycles))
            else:
                st["delay"][(k, inst)] = delay_s
            ep = m.new_episode(type_name, inst, [SHARED], [], [], s, e, {
                "variant": "missed" if delay_s is None else "delayed", "cycles": n_cycles, "delay_s": delay_s,
                "cycle_s": cyc / NS})
            if delay_s is not None:
                ep.params["mimics"] = ["settlement_exposure"]
            return ep
    return None


def inject_settlement_exposure(m, rng, slot):
    variant = m.next_variant("settlement_exposure", ("surge", "missed"), rng)
    if variant == "surge":
        return _flow(m, rng, slot, "settlement_exposure", one_way=True)
    return _skip_cycles(m, rng, slot, "settlement_exposure", int(rng.integers(2, 4)), None)


def inject_two_way_flow(m, rng, slot):
    return _flow(m, rng, slot, "two_way_flow", one_way=False)


def inject_delayed_settlement(m, rng, slot):
    ec = m.cfg.episodes
    # the drawn delay, else the shortest: a full run leaves little room around cycle boundaries
    for delay in (round(ec.settlement_delay_s.draw(rng), 3), ec.settlement_delay_s.lo):
        ep = _skip_cycles(m, rng, slot, "delayed_settlement", 0, delay)
        if ep is not None:
            return ep
    return None


# ---- the extra inputs ----------------------------------------------------------------------------

def _table(cols: dict, n: int) -> pa.Table:
    cols = {**cols, "feed": pa.array([Feed.CANONICAL.value] * n), "src": pa.array(np.zeros(n, np.int32)),
            "src_seq": pa.array(np.arange(n, dtype=np.int64))}
    arrays = [cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type) for f in EVENT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def extra_tables(m) -> dict[str, pa.Table]:
    """``{"ANCHORS": ..., "SETTLEMENTS": ...}`` for the chosen types (empty for the default market)."""
    cfg, ec = m.cfg, m.cfg.episodes
    chosen = set(cfg.episode_types) | set(cfg.resolved_lookalike_types)
    out = {}
    if chosen & set(ANCHOR_TYPES):
        every = int(ec.anchor_every_s * NS)
        ts = np.arange((cfg.start_ns // every + 1) * every, cfg.end_ns, every, dtype=np.int64)
        parts = []
        for inst, spec in enumerate(cfg.instruments):
            # The underlying: SHARED's price without this module's deviations.  Other episodes'
            # moves (news, pumps, lasting steps) move the underlying too, so they do not read as
            # deviations from it; REFX's dislocations (price_dislocation) still do, rightly.
            own = sum((np.interp(ts, k, np.log1p(np.asarray(v) * 1e-4), left=0.0, right=0.0)
                       for i, venue, k, v in _state(m)["impacts"] if i == inst and venue == SHARED),
                      np.zeros(len(ts)))
            fair = np.exp(m.prices.log_mid(inst, SHARED, ts) - own)
            scale = 10.0 ** (spec.shared.tick_decimals + 2)  # two decimals finer than the tick
            parts.append((ts, np.full(len(ts), spec.instrument), np.round(fair * scale) / scale))
        order = np.lexsort((np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts])))
        t = np.concatenate([p[0] for p in parts])[order]
        n = len(t)
        out["ANCHORS"] = _table({
            "ts": pa.array(t).cast(pa.timestamp("ns", tz="UTC")), "recv_ts": pa.array(t + 1_000_000),
            "kind": pa.array([Kind.REFERENCE.value] * n), "venue": pa.array([ANCHOR_VENUE] * n),
            "instrument": pa.array(np.concatenate([p[1] for p in parts])[order].tolist()),
            "price": pa.array(np.concatenate([p[2] for p in parts])[order])}, n)
    if chosen & set(SETTLEMENT_TYPES):
        st = _state(m)
        cyc = _cycle_ns(m)
        rows = []
        for k in range(cfg.start_ns // cyc + 1, cfg.end_ns // cyc + 1):
            for inst, spec in enumerate(cfg.instruments):
                if (k, inst) in st["skip"]:
                    continue
                t = k * cyc + int((2 + inst) * NS + st["delay"].get((k, inst), 0.0) * NS)
                if t <= cfg.end_ns:
                    rows.append((t, spec.instrument, f"STL-{k}-{spec.code}"))
        rows.sort()
        n = len(rows)
        t = np.array([r[0] for r in rows], dtype=np.int64)
        out["SETTLEMENTS"] = _table({
            "ts": pa.array(t).cast(pa.timestamp("ns", tz="UTC")), "recv_ts": pa.array(t + 1_000_000),
            "kind": pa.array([Kind.SETTLEMENT.value] * n), "venue": pa.array([SHARED] * n),
            "platform": pa.array([OVSAFF] * n), "instrument": pa.array([r[1] for r in rows], pa.string()),
            "trade_id": pa.array([r[2] for r in rows], pa.string())}, n)
    return out


__all__ = ["inject_reference_deviation", "inject_peg_wobble", "inject_settlement_exposure", "inject_two_way_flow",
           "inject_delayed_settlement", "extra_tables", "ANCHOR_VENUE", "HKVATP"]
