"""Shared test helpers: small hand-built event tables and the path to the real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from surveil.schemas import conform

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
S = 1_000_000_000  # one second in ns


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip: a user's clone has no shared data."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (real market data lives in ../shared/data, absent from a user's clone)")
    return p


def events(**cols) -> pa.Table:
    """A conformed event table from columns; ``ts`` given in seconds (float) is converted to ns."""
    n = len(next(iter(cols.values())))
    if "ts" in cols:
        cols["ts"] = pa.array(np.round(np.asarray(cols["ts"], dtype=float) * S).astype("int64"))
    cols.setdefault("src", pa.array([0] * n, pa.int32()))
    cols.setdefault("src_seq", pa.array(range(n), pa.int64()))
    return conform(pa.table(cols))


def market(seed: int = 0, seconds: int = 1800) -> pa.Table:
    """A small enriched two-venue market with self-matches and dislocations sprinkled in.

    Generic input for the detector contract suite: every detector sees trades and quotes
    on two venues, owners and groups, and at least one episode of each rule-based pattern.
    """
    rng = np.random.default_rng(seed)
    n = seconds * 4
    ts = np.sort(rng.uniform(0, seconds, n))
    venue = rng.choice(["SHARED", "REFX"], n)
    fair = 100 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    # two dislocation episodes on REFX: 120 bps for 60 s, then 90 bps for 40 s
    bump = np.where((ts > 300) & (ts < 360), 0.012, 0.0) + np.where((ts > 1200) & (ts < 1240), -0.009, 0.0)
    price = np.round(fair * (1 + rng.normal(0, 2e-4, n) + np.where(venue == "REFX", bump, 0.0)), 2)
    instrument = rng.choice(["BTC/USDT", "ETH/USDT"], n, p=[0.7, 0.3])
    owners = np.array([f"O{i}" for i in range(12)])
    bi = rng.integers(0, len(owners), n)
    si = (bi + rng.integers(1, len(owners), n)) % len(owners)  # never the buyer: no accidental self-match
    buy, sell = owners[bi], owners[si]
    wash = (ts > 600) & (ts < 660) & (venue == "SHARED")
    wash_idx = np.flatnonzero(wash)[:4]
    sell[wash_idx] = buy[wash_idx]
    public = venue == "REFX"
    acct_b = np.where(public, None, np.char.add("HK-", buy))
    acct_s = np.where(public, None, np.char.add("OV-", sell))
    own_b = np.where(public, None, buy)
    own_s = np.where(public, None, sell)
    return events(
        ts=ts, kind=["trade"] * n, venue=venue, instrument=instrument, venue_symbol=instrument,
        price=price, qty=np.round(rng.lognormal(0, 1, n), 4), side=rng.choice(["buy", "sell"], n),
        trade_id=[f"t{i}" for i in range(n)], buy_account=acct_b.tolist(), sell_account=acct_s.tolist(),
        buy_platform=np.where(public, None, "HKVATP").tolist(), sell_platform=np.where(public, None, "OVSAFF").tolist(),
        buy_owner=own_b.tolist(), sell_owner=own_s.tolist(), buy_group=own_b.tolist(), sell_group=own_s.tolist(),
    )
