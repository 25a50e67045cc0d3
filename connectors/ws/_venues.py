"""The venue decoders by name: every module has the same shape (see ``connectors/ws/__init__``)."""
from __future__ import annotations

from types import ModuleType

from . import binance, coinbase, kraken, okx

VENUES: dict[str, ModuleType] = {m.VENUE: m for m in (binance, okx, coinbase, kraken)}


def venue_module(venue: str | ModuleType) -> ModuleType:
    """A venue module from its name (``"OKX"``, case-insensitive) or the module itself."""
    if isinstance(venue, ModuleType):
        return venue
    try:
        return VENUES[venue.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown venue {venue!r}; expected one of {', '.join(VENUES)}") from None
