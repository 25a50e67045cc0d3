"""Labelled synthetic market: HKVATP and OVSAFF sharing one book (SHARED) plus a public venue (REFX).

``generate(out_dir, seed=..., minutes=...)`` writes::

    canonical/SHARED.parquet   EVENT_SCHEMA, trades + order events, sorted by ts
    canonical/REFX.parquet     EVENT_SCHEMA, public trades + top-of-book quotes
    fix/HKVATP.fix             FIX 4.4 drop copy (35=8) of HKVATP accounts' order events
    fix/OVSAFF.fix             ... of OVSAFF accounts' order events
    tardis/REFX_trades.csv     tardis layout, microsecond timestamps
    tardis/REFX_quotes.csv     tardis quotes layout (when quotes are on)
    ref/instruments.csv        venue,venue_symbol,instrument,tick_size,lot_size
    ref/accounts.csv           platform,account,owner_id,owner_type,jurisdiction
    ref/owner_links.csv        owner_id,group_id
    labels.json                counts, labelled episodes and look-alikes (ns windows)

``simulate(ScenarioConfig(...))`` gives the same scenario in memory (no files).

By default the market has today's labelled types (``wash_trade``, ``price_dislocation``)
and their look-alikes.  ``episode_types=ALL_EPISODE_TYPES`` (or ``"all"``; CLI ``--episodes
all``) adds the rest of the detector catalogue and its look-alikes; labels.json then also
has ``episode_types``, ``lookalike_types`` and, with ``marking_the_close``, ``fixings_ns``.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     s = generate(d, seed=7, minutes=1, events_per_second=200, formats=("canonical",))
...     sorted(p.name for p in s.files.values())
['REFX.parquet', 'SHARED.parquet', 'accounts.csv', 'instruments.csv', 'labels.json', 'owner_links.csv']
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import (ALL_EPISODE_TYPES, ALL_LOOKALIKE_TYPES, DEFAULT_EPISODE_TYPES, DEFAULT_LOOKALIKE_TYPES,
                     DEFAULT_START, HKVATP, OVSAFF, REFX, SHARED, ScenarioConfig)
from .episodes import EPISODE_TYPES, Episode
from .market import Scenario, simulate

FORMATS = ("canonical", "fix", "tardis")


@dataclass(frozen=True)
class ScenarioSummary:
    out_dir: Path
    seed: int
    minutes: float
    start_ns: int
    end_ns: int
    counts: dict  # as labels.json "events", plus "fix" message counts when written
    n_events: int  # canonical rows, both venues
    episodes: tuple[dict, ...]
    lookalikes: tuple[dict, ...]
    files: dict[str, Path]  # relative name -> path
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage (not part of labels)

    def __str__(self) -> str:
        c = self.counts
        kinds = "; ".join(f"{v}: " + ", ".join(f"{n:,} {k}s" for k, n in c[v].items()) for v in (SHARED, REFX))
        return (f"{self.n_events:,} events ({kinds}), {len(self.episodes)} labelled episodes, "
                f"{len(self.lookalikes)} look-alikes, labels in {self.out_dir / 'labels.json'}")


def generate(out_dir, *, seed: int = 0, minutes: float = 10, events_per_second: float = 1500,
             start: str = DEFAULT_START, formats=FORMATS, config: ScenarioConfig | None = None,
             episode_types=DEFAULT_EPISODE_TYPES, lookalike_types=None) -> ScenarioSummary:
    """Simulate and write a scenario; ``config`` (if given) overrides the keyword settings.

    ``episode_types``: names, ``"all"`` or ``"default"``; ``lookalike_types``: names, or None
    for the look-alikes of the chosen types.
    """
    from .fix import write_fix
    from .writers import write_labels, write_parquet, write_reference, write_tardis

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    cfg = config or ScenarioConfig(seed=seed, minutes=minutes, events_per_second=events_per_second, start=start,
                                   episode_types=episode_types, lookalike_types=lookalike_types)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sc = simulate(cfg)
    seconds["simulate"] = time.perf_counter() - t0
    files: dict[str, Path] = {}
    labels = sc.labels()
    if "canonical" in formats:
        t0 = time.perf_counter()
        (out / "canonical").mkdir(exist_ok=True)
        for venue, table in ((SHARED, sc.shared), (REFX, sc.refx)):
            p = out / "canonical" / f"{venue}.parquet"
            write_parquet(p, table)
            files[f"canonical/{venue}.parquet"] = p
        for name, table in sc.extra.items():  # anchors, settlements: only when their types are chosen
            p = out / "canonical" / f"{name}.parquet"
            write_parquet(p, table)
            files[f"canonical/{name}.parquet"] = p
            labels["events"][name] = table.num_rows
        seconds["canonical"] = time.perf_counter() - t0
    if "fix" in formats:
        t0 = time.perf_counter()
        (out / "fix").mkdir(exist_ok=True)
        fix_counts = {}
        for platform in (HKVATP, OVSAFF):
            p = out / "fix" / f"{platform}.fix"
            fix_counts[platform] = write_fix(p, sc.shared, sc.shared_aux, platform)
            files[f"fix/{platform}.fix"] = p
        labels["events"]["fix"] = fix_counts
        seconds["fix"] = time.perf_counter() - t0
    if "tardis" in formats:
        t0 = time.perf_counter()
        counts = write_tardis(out / "tardis", sc.refx)
        for name in counts:
            files[f"tardis/{name}"] = out / "tardis" / name
        labels["events"]["tardis"] = counts
        seconds["tardis"] = time.perf_counter() - t0
    write_reference(out / "ref", cfg, sc.population)
    for name in ("instruments.csv", "accounts.csv", "owner_links.csv"):
        files[f"ref/{name}"] = out / "ref" / name
    write_labels(out / "labels.json", labels)
    files["labels.json"] = out / "labels.json"
    return ScenarioSummary(
        out_dir=out, seed=int(cfg.seed), minutes=cfg.minutes, start_ns=cfg.start_ns, end_ns=cfg.end_ns,
        counts=labels["events"], n_events=labels["events"]["total"],
        episodes=tuple(labels["episodes"]), lookalikes=tuple(labels["lookalikes"]), files=files, seconds=seconds,
    )


__all__ = ["generate", "simulate", "ScenarioConfig", "ScenarioSummary", "Scenario", "Episode", "EPISODE_TYPES",
           "FORMATS", "ALL_EPISODE_TYPES", "ALL_LOOKALIKE_TYPES", "DEFAULT_EPISODE_TYPES", "DEFAULT_LOOKALIKE_TYPES"]
