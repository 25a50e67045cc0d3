"""What a venue decoder returns for one WebSocket message, and the parsing helpers they share.

A decoder turns one wire message into a :class:`DecodedMessage`: the trades (and quotes) it
carries as plain rows for the batch builder, plus what the client must know to run the
connection (a subscription ack, a heartbeat, a pong, a venue error, a per-connection sequence
number, a reply to send).  Decoders never raise on bad input: a message that is not the venue's
becomes ``Control.MALFORMED`` and a bad item inside a good message an entry of ``errors``;
the client turns both into dead letters with the raw bytes.

>>> num("0.35280000", "p"), ms_to_ns(1633998523963), iso_to_ns("2021-04-17T16:43:30.244075Z")
(0.3528, 1633998523963000000, 1618677810244075000)
>>> seconds_to_ns("1618678142.557535")
1618678142557535000
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, NamedTuple

import orjson

from surveil.schemas import Side

from .._time import parse_time_ns

_NS_MAX = 2**63 - 1


class Control(str, Enum):
    """What a message is, as far as running the connection goes."""

    DATA = "data"  # carried trades or quotes (some items may still have failed: see errors)
    SUBSCRIBED = "subscribed"  # the venue acknowledged a subscription
    HEARTBEAT = "heartbeat"  # the venue's keep-alive message
    PONG = "pong"  # the answer to our application-level ping
    ERROR = "error"  # the venue reported an error (unknown symbol, bad request, rate limit)
    INFO = "info"  # well-formed status or notice: nothing to do
    IGNORED = "ignored"  # a channel this decoder does not turn into events (books, klines)
    MALFORMED = "malformed"  # not a message of this venue at all


class TradeRow(NamedTuple):
    ts_ns: int  # the venue's trade time
    venue_symbol: str
    price: float
    qty: float
    side: str | None  # aggressor side, a Side value
    trade_id: str | None
    buy_order_id: str | None = None
    sell_order_id: str | None = None
    # Gap accounting: trade ids seq_lo..seq_hi (inclusive) of stream seq_key, set only where
    # the venue numbers trades contiguously within that key.
    seq_key: str | None = None
    seq_lo: int | None = None
    seq_hi: int | None = None
    item: int = 0  # index of the item in the message, for dead-letter positions


class QuoteRow(NamedTuple):
    ts_ns: int
    venue_symbol: str
    bid: float | None
    bid_qty: float | None
    ask: float | None
    ask_qty: float | None
    item: int = 0


@dataclass
class DecodedMessage:
    control: Control
    recv_ts_ns: int
    trades: list[TradeRow] = field(default_factory=list)
    quotes: list[QuoteRow] = field(default_factory=list)
    errors: list[tuple[int | None, str]] = field(default_factory=list)  # (item or None, reason)
    detail: str | None = None  # ack, error or notice text
    seq: tuple[str, int] | None = None  # (stream, n): per-connection message counter, if any
    reply: str | None = None  # to send back at once (a venue's application-level ping)


@dataclass(frozen=True)
class Heartbeat:
    """A venue's keep-alive protocol, as the client must run it.

    Protocol-level ping frames (Binance sends one every 20 s) are answered by the
    ``websockets`` library itself; this says what lives above that.
    """

    ping_message: str | None = None  # application-level ping the client sends when idle
    ping_idle_s: float = 20.0  # send it after this long without any message
    stale_after_s: float = 60.0  # no message for this long: the connection is dead, reconnect


def malformed(recv_ts_ns: int, reason: str) -> DecodedMessage:
    return DecodedMessage(Control.MALFORMED, recv_ts_ns, detail=reason)


def loads(raw: bytes) -> Any:
    """JSON, or ValueError saying why not (orjson's error is a ValueError)."""
    return orjson.loads(raw)


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def num(v: Any, name: str) -> float:
    """A price or size given as a JSON number or a decimal string."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{name}: expected a number, got {v!r}")
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{name}: cannot parse {v!r} as a number") from None


def opt_num(v: Any, name: str) -> float | None:
    return None if v is None or v == "" else num(v, name)


def integer(v: Any, name: str) -> int:
    """An id or count given as a JSON integer or a string of digits."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    raise ValueError(f"{name}: expected an integer, got {v!r}")


def ms_to_ns(v: Any, name: str = "time") -> int:
    """Epoch ms (or µs from 1e15 up: Binance's ``timeUnit=MICROSECOND``) as ns."""
    n = integer(v, name)
    ns = n * 1_000 if n >= 10**15 else n * 1_000_000
    if ns > _NS_MAX:
        raise ValueError(f"{name}: {v!r} is out of range")
    return ns


def iso_to_ns(v: Any, name: str = "time") -> int:
    """An ISO-8601 time string, exact to the ns (no float on the way)."""
    if not isinstance(v, str) or "-" not in v:
        raise ValueError(f"{name}: expected an ISO-8601 time, got {v!r}")
    return parse_time_ns(v)


def seconds_to_ns(v: Any, name: str = "time") -> int:
    """Epoch seconds as a decimal string ("1618678142.557535"), exact; a float is rounded to µs."""
    if isinstance(v, float):
        return round(v * 1_000_000) * 1_000
    if isinstance(v, str):
        whole, _, frac = v.partition(".")
        if whole.isdigit() and (frac.isdigit() or frac == "") and len(frac) <= 9:
            return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0"))
    if isinstance(v, int) and not isinstance(v, bool):
        return v * 1_000_000_000
    raise ValueError(f"{name}: expected epoch seconds, got {v!r}")


def side(v: Any, name: str, mapping: dict[str, Side]) -> str:
    s = mapping.get(v) if isinstance(v, str) else None
    if s is None:
        raise ValueError(f"{name}: unknown side {v!r}")
    return s.value


def text(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{name}: expected a non-empty string, got {v!r}")
    return v


def collect(items: Iterable[Any], parse: Callable[[Any, int], Any], out: DecodedMessage, rows: list) -> DecodedMessage:
    """Parse each item into ``rows``; a failing item becomes an error, the others still count."""
    for i, item in enumerate(items):
        try:
            rows.append(parse(item, i))
        except KeyError as e:
            out.errors.append((i, f"missing field {e.args[0]!r}"))
        except (TypeError, ValueError, AttributeError) as e:
            out.errors.append((i, str(e) or type(e).__name__))
    return out
