"""The shared market model: one fair price per instrument, each venue's deviation, REFX offsets.

``log fair`` is a random walk on a 100 ms grid whose volatility is realistic for crypto
(annualised vol per instrument, scaled by the activity level).  Each venue trades around it
with its own small deviation: an AR(1) on a 1 s grid (std ~2 bps, mean reversion ~8 s: the
arbitrageurs pulling gaps back), capped at a few bps.  Episodes add *REFX offsets*: over an
offset interval REFX trades at SHARED's price times ``1 + bps/1e4`` exactly, so the gap a
detector sees is the labelled one (plus spreads).  Offsets must be registered before any
REFX price is read.  Episodes may also add *impacts*: a piecewise-linear path in bps on
SHARED, REFX or both (a pump, a ramp before a fixing, a news step), transient (back to 0
at its last knot) or held from its last knot on; impacts must be registered before any
price is read.  Without impacts the arithmetic is exactly today's.

>>> import numpy as np
>>> from replay.scenario.config import ScenarioConfig, NS
>>> cfg = ScenarioConfig(minutes=2)
>>> pm = PriceModel(np.random.default_rng(0), cfg)
>>> pm.add_offset(0, cfg.start_ns + 30 * NS, cfg.start_ns + 60 * NS, 150.0)
>>> t = np.array([cfg.start_ns + 10 * NS, cfg.start_ns + 45 * NS])
>>> g = pm.gap_bps(0, t)
>>> bool(abs(g[0]) < 12.5), round(float(g[1]), 6)
(True, 150.0)
>>> pm = PriceModel(np.random.default_rng(0), cfg)
>>> before = pm.mid(0, SHARED, t)
>>> pm = PriceModel(np.random.default_rng(0), cfg)
>>> pm.add_impact(0, (SHARED,), [cfg.start_ns + 40 * NS, cfg.start_ns + 44 * NS], [0.0, 100.0], hold=True)
>>> [round(float(x), 6) for x in (pm.mid(0, SHARED, t) / before - 1) * 1e4]
[0.0, 100.0]
"""
from __future__ import annotations

import numpy as np

from .config import NS, REFX, SECONDS_PER_YEAR, SHARED, ScenarioConfig

GRID_NS = 100_000_000  # fair-price grid step


def ar1(rng: np.random.Generator, n: int, tau_steps: float, sd: float) -> np.ndarray:
    """Stationary AR(1) with the given std and e-folding time (in steps)."""
    phi = float(np.exp(-1.0 / tau_steps))
    eps = rng.normal(0.0, sd * np.sqrt(1.0 - phi * phi), n)
    out = [0.0] * n
    x = float(rng.normal(0.0, sd))
    for i, e in enumerate(eps.tolist()):
        x = phi * x + e
        out[i] = x
    return np.asarray(out)


class PriceModel:
    def __init__(self, rng: np.random.Generator, cfg: ScenarioConfig):
        self.cfg = cfg
        self.start_ns = cfg.start_ns
        self.end_ns = cfg.end_ns
        fc = cfg.flow
        n_sec = int(np.ceil(cfg.duration_ns / NS)) + 2
        n_grid = int(np.ceil(cfg.duration_ns / GRID_NS)) + 2
        self.sec_t = np.arange(n_sec, dtype=np.float64)
        self.grid_t = np.arange(n_grid, dtype=np.float64) * (GRID_NS / NS)
        self.activity, self.log_fair, self.dev = [], [], []
        for spec in cfg.instruments:
            act = np.exp(ar1(rng, n_sec, fc.activity_tau_s, fc.activity_sigma))
            act /= act.mean()
            self.activity.append(act)
            step_sd = spec.vol_annual * np.sqrt((GRID_NS / NS) / SECONDS_PER_YEAR)
            vol_mult = np.sqrt(act[(self.grid_t).astype(np.int64)])
            steps = rng.normal(0.0, step_sd, n_grid) * vol_mult
            steps[0] = 0.0
            self.log_fair.append(np.log(spec.start_price) + np.cumsum(steps))
            cap = fc.venue_dev_cap_bps * 1e-4
            self.dev.append({
                v: np.clip(ar1(rng, n_sec, fc.venue_dev_tau_s, fc.venue_dev_bps * 1e-4), -cap, cap)
                for v in (SHARED, REFX)
            })
        self._offsets: list[list[tuple[int, int, float]]] = [[] for _ in cfg.instruments]
        self._frozen = False
        # per instrument and venue: [(knot times in s from start, log values, hold)]
        self._impacts: list[dict[str, list]] = [{SHARED: [], REFX: []} for _ in cfg.instruments]
        self._impact_paths: dict[tuple[int, str], tuple[np.ndarray, np.ndarray] | None] = {}
        self._read = False

    # ---- episodes -------------------------------------------------------------------
    def add_offset(self, inst: int, start_ns: int, end_ns: int, bps: float) -> None:
        """REFX trades ``bps`` away from SHARED over ``[start_ns, end_ns]`` (intervals must not overlap)."""
        if self._frozen:
            raise RuntimeError("REFX offsets must be added before prices are read")
        for s, e, _ in self._offsets[inst]:
            if start_ns <= e and s <= end_ns:
                raise ValueError(f"offset [{start_ns}, {end_ns}] overlaps [{s}, {e}] on instrument {inst}")
        self._offsets[inst].append((int(start_ns), int(end_ns), float(bps)))
        self._offsets[inst].sort()

    def add_impact(self, inst: int, venues, t_ns, bps, hold: bool = False) -> None:
        """Move ``venues``' prices by a piecewise-linear path (knots ``t_ns``, values in bps).

        The path starts at 0; a transient one ends at 0, a held one keeps its last value to the
        end of the run, so every price path stays continuous.
        """
        if self._read:
            raise RuntimeError("price impacts must be added before prices are read")
        t = (np.asarray(t_ns, dtype=np.int64) - self.start_ns) / NS
        v = np.log1p(np.asarray(bps, dtype=np.float64) * 1e-4)
        if len(t) < 2 or len(t) != len(v) or (np.diff(t) <= 0).any() or v[0] != 0 or (not hold and v[-1] != 0):
            raise ValueError("an impact needs increasing knots, a 0 start and (unless held) a 0 end")
        for venue in venues:
            self._impacts[inst][venue].append((t, v, bool(hold)))

    def _impact(self, inst: int, venue: str, rel: np.ndarray) -> np.ndarray | None:
        """Sum of the venue's impacts (log) at relative times; None when it has none."""
        key = (inst, venue)
        if key not in self._impact_paths:
            imps = self._impacts[inst][venue]
            if not imps:
                self._impact_paths[key] = None
            else:
                # Continuous piecewise-linear paths: their sum is exact on the union of the knots.
                knots = np.unique(np.concatenate([t for t, _, _ in imps]))
                vals = sum(np.interp(knots, t, v, left=0.0, right=v[-1] if h else 0.0) for t, v, h in imps)
                self._impact_paths[key] = (knots, vals)
        path = self._impact_paths[key]
        if path is None:
            return None
        return np.interp(rel, path[0], path[1], left=0.0, right=path[1][-1])

    def offset_bps(self, inst: int, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inside an offset interval, offset in bps) at each time."""
        ts = np.asarray(ts, dtype=np.int64)
        offs = self._offsets[inst]
        if not offs:
            return np.zeros(len(ts), dtype=bool), np.zeros(len(ts))
        starts = np.array([o[0] for o in offs], dtype=np.int64)
        ends = np.array([o[1] for o in offs], dtype=np.int64)
        bps = np.array([o[2] for o in offs])
        i = np.searchsorted(starts, ts, side="right") - 1
        ic = np.maximum(i, 0)
        inside = (i >= 0) & (ts <= ends[ic])
        return inside, np.where(inside, bps[ic], 0.0)

    # ---- prices ---------------------------------------------------------------------
    def _rel_s(self, ts: np.ndarray) -> np.ndarray:
        return (np.asarray(ts, dtype=np.int64) - self.start_ns) / NS

    def activity_at(self, inst: int, ts: np.ndarray) -> np.ndarray:
        return np.interp(self._rel_s(ts), self.sec_t, self.activity[inst])

    def log_mid(self, inst: int, venue: str, ts: np.ndarray) -> np.ndarray:
        self._read = True
        rel = self._rel_s(ts)
        lf = np.interp(rel, self.grid_t, self.log_fair[inst])
        dev_s = np.interp(rel, self.sec_t, self.dev[inst][SHARED])
        imp = self._impact(inst, SHARED, rel)
        if imp is not None:
            dev_s = dev_s + imp
        if venue == SHARED:
            return lf + dev_s
        self._frozen = True
        dev_r = np.interp(rel, self.sec_t, self.dev[inst][REFX])
        imp = self._impact(inst, REFX, rel)
        if imp is not None:
            dev_r = dev_r + imp
        inside, bps = self.offset_bps(inst, ts)
        # Inside an episode REFX follows SHARED exactly, shifted by the episode's offset.
        return lf + np.where(inside, dev_s + np.log1p(bps * 1e-4), dev_r)

    def mid(self, inst: int, venue: str, ts: np.ndarray) -> np.ndarray:
        return np.exp(self.log_mid(inst, venue, ts))

    def gap_bps(self, inst: int, ts: np.ndarray) -> np.ndarray:
        """REFX mid relative to SHARED mid, in bps (positive: REFX above)."""
        return (np.exp(self.log_mid(inst, REFX, ts) - self.log_mid(inst, SHARED, ts)) - 1.0) * 1e4


def touch_ticks(mid: np.ndarray, half_spread_bps: float, tick_decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """Best bid and ask in integer ticks around a mid price (at least one tick apart)."""
    scale = 10.0 ** tick_decimals
    hs = half_spread_bps * 1e-4
    bid = np.floor(mid * (1.0 - hs) * scale).astype(np.int64)
    ask = np.ceil(mid * (1.0 + hs) * scale).astype(np.int64)
    ask = np.maximum(ask, bid + 1)
    return bid, ask
