"""The detector catalogue: name -> class.  ``build_detectors`` turns configuration into instances."""
from __future__ import annotations

import inspect
from typing import Any

from detectors.abnormal_move import AbnormalMove
from detectors._orders import OrderPatterns, can_share
from detectors.base import Detector, value_fits
from detectors.behaviour_anomaly import BehaviourAnomaly
from detectors.excessive_messaging import ExcessiveMessaging
from detectors.front_running import FrontRunning
from detectors.layering import Layering
from detectors.marking_the_close import MarkingTheClose
from detectors.momentum_ignition import MomentumIgnition
from detectors.off_market import OffMarket
from detectors.price_dislocation import PriceDislocation
from detectors.pump_and_dump import PumpAndDump
from detectors.reference_deviation import ReferenceDeviation
from detectors.round_trip import RoundTrip
from detectors.settlement_exposure import SettlementExposure
from detectors.spoofing import Spoofing
from detectors.volume_authenticity import VolumeAuthenticity
from detectors.wash_trade import WashTrade

REGISTRY: dict[str, type[Detector]] = {d.name: d for d in (
    WashTrade, PriceDislocation, VolumeAuthenticity, OffMarket, AbnormalMove, Spoofing, Layering, RoundTrip,
    PumpAndDump, MomentumIgnition, ExcessiveMessaging, ReferenceDeviation, SettlementExposure,
    MarkingTheClose, FrontRunning, BehaviourAnomaly)}
# learning detectors run only when configured (``{"behaviour_anomaly": {}}`` in code, a
# ``[detectors.behaviour_anomaly]`` table in TOML): they alert on departures from what they have
# learnt, which a short market has not yet taught them
OFF_BY_DEFAULT = frozenset({BehaviourAnomaly.name})


class DetectorConfigError(ValueError):
    """An unknown detector, an unknown parameter or a parameter of the wrong type."""


def build_detectors(config: dict[str, dict[str, Any] | bool] | None = None) -> list[Detector]:
    """Instantiate detectors from ``{name: {param: value}}``; ``{name: False}`` switches one off.

    Detectors not named run with their defaults.

    >>> "price_dislocation" in [d.name for d in build_detectors({"price_dislocation": False})]
    False
    >>> build_detectors({"wash_trade": {"window_gap_ms": "soon"}})
    Traceback (most recent call last):
    ...
    detectors.DetectorConfigError: wash_trade.window_gap_ms must be int (default 300000), got str 'soon'
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(REGISTRY))
    if unknown:
        raise DetectorConfigError(f"unknown detector(s) {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
    out = []
    for name, cls in REGISTRY.items():
        params = config.get(name, False if name in OFF_BY_DEFAULT else {})
        if params is True:
            params = {}
        if params is False or (isinstance(params, dict) and params.get("enabled") is False):
            continue
        params = {k: v for k, v in (params if isinstance(params, dict) else {}).items() if k != "enabled"}
        defaults = cls.defaults()
        for k, v in params.items():
            if k not in defaults:
                raise DetectorConfigError(f"{name} has no parameter {k!r}; parameters: {', '.join(defaults)}")
            want = type(defaults[k])
            if not value_fits(v, want):
                raise DetectorConfigError(f"{name}.{k} must be {want.__name__} (default {defaults[k]!r}), got {type(v).__name__} {v!r}")
        try:
            out.append(cls(**params))
        except ValueError as e:
            raise DetectorConfigError(f"{name}: {e}") from e
    return out


def stages(detectors: list[Detector]) -> list[Detector]:
    """The detectors as the dataflow runs them: order patterns that can share a book run as one
    stage (``detectors._orders.OrderPatterns``: one pass over the orders for all of them, with
    the same alerts as each alone); every other detector as it is.

    >>> [d.name for d in stages(build_detectors({n: n in ("wash_trade", "spoofing", "layering") for n in REGISTRY}))]
    ['wash_trade', 'spoofing+layering']
    >>> [d.name for d in stages([Spoofing(), Layering(max_cancel_ms=30_000)])]  # different books
    ['spoofing', 'layering']
    """
    out: list[Detector] = []
    taken: set[int] = set()
    for d in detectors:
        if id(d) not in taken:
            group = [d] + [e for e in detectors if e is not d and id(e) not in taken and can_share(d, e)]
            taken.update(map(id, group))
            out.append(OrderPatterns(tuple(group)) if len(group) > 1 else d)
    return out


def describe() -> list[dict[str, Any]]:
    """Every detector with its parameters, defaults and units (for `surveil detectors`)."""
    rows = []
    for name, cls in REGISTRY.items():
        for p, default in cls.defaults().items():
            unit, meaning = cls.param_docs.get(p, ("", ""))
            rows.append({"detector": name, "version": cls.version, "keyed_by": "+".join(cls.key_columns),
                         "parameter": p, "default": default, "unit": unit, "meaning": meaning,
                         "description": inspect.cleandoc(cls.description)})
    return rows
