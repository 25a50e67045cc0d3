"""Canonical Arrow schemas of the events surveil processes.

Every arrow in the dataflow carries one table of ``EVENT_SCHEMA``: trades, order
events and top-of-book quotes side by side, told apart by ``kind``.  One wide
schema (rather than three tables) lets venues be merged in event time with a
single sort and lets a detector that needs orders *and* trades (spoofing) see
them interleaved.  Columns that do not apply to a kind are null; Arrow stores
an all-null column in a few bytes per thousand rows.

Two further kinds carry no market activity but flow through the same timeline, so a
detector sees them in event order with the trades they bear on:

- **reference**: an external anchor of an instrument's price — a stablecoin's peg, a tokenised
  fund's NAV or its underlying's price.  ``instrument`` is set directly (an anchor has no venue
  symbol), ``price`` is the anchor value in the instrument's quote currency, ``venue`` names the
  anchor's source (``NAV``, ``PEG``, an index provider); ``ts`` is when the value took effect.
- **settlement**: the local platform and an affiliate settled their delivery-versus-payment
  obligations from trades on the shared book ``venue``: every obligation from a trade with
  ``ts`` at or before the settlement's ``ts`` between the local platform and ``platform`` (the
  affiliate) is discharged — of the one ``instrument`` when it is set, of every instrument when
  it is null.  ``trade_id`` carries the settlement's own reference (optional).

``TRADE_COLUMNS``, ``ORDER_COLUMNS``, ``QUOTE_COLUMNS``, ``REFERENCE_COLUMNS`` and
``SETTLEMENT_COLUMNS`` are the per-kind projections used by canonical files and the Parquet
archive.

Times are ``timestamp[ns, UTC]``: ``ts`` is the venue's event time, ``recv_ts``
our receipt time.  ``src`` and ``src_seq`` say where a row came from (input
index, row number within it): together with ``ts`` they give every event a total,
reproducible order, which is what makes replay deterministic.

>>> t = empty_events()
>>> t.num_rows, t.schema.field("ts").type
(0, TimestampType(timestamp[ns, tz=UTC]))
>>> sorted(Side)
[<Side.BUY: 'buy'>, <Side.SELL: 'sell'>]
"""
from __future__ import annotations

from enum import Enum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("ns", tz="UTC")


class Kind(str, Enum):
    TRADE = "trade"
    ORDER = "order"
    QUOTE = "quote"
    REFERENCE = "reference"  # an external anchor value (peg, NAV) of an instrument
    SETTLEMENT = "settlement"  # obligations between the local platform and an affiliate settled


class Side(str, Enum):
    """Order side, or a trade's aggressor side (null when the venue does not say)."""

    BUY = "buy"
    SELL = "sell"


class Action(str, Enum):
    """What an order event did to the order."""

    NEW = "new"
    AMEND = "amend"
    CANCEL = "cancel"
    FILL = "fill"
    EXPIRE = "expire"
    REJECT = "reject"


class Feed(str, Enum):
    """The wire format an event was decoded from (provenance, and which stage owns it)."""

    CANONICAL = "canonical"
    FIX = "fix"
    TARDIS = "tardis"
    BINANCE = "binance"
    CCXT = "ccxt"
    WEBSOCKET = "websocket"


_FIELDS: list[tuple[str, pa.DataType, str]] = [
    # name, type, meaning
    ("ts", TS, "venue event time"),
    ("recv_ts", TS, "time surveil (or the archive) received the event"),
    ("kind", pa.string(), "trade | order | quote"),
    ("feed", pa.string(), "wire format decoded from"),
    ("src", pa.int32(), "index of the input (file or transport) within the run"),
    ("src_seq", pa.int64(), "row number within that input"),
    ("venue", pa.string(), "venue where matched (trade) or where the order rests"),
    ("venue_symbol", pa.string(), "the venue's own symbol"),
    ("instrument", pa.string(), "canonical instrument, e.g. BTC/USDT"),
    ("price", pa.float64(), "trade price / order limit price"),
    ("qty", pa.float64(), "trade quantity / order quantity (fill: last qty)"),
    ("side", pa.string(), "order side, or the trade's aggressor side"),
    ("trade_id", pa.string(), "trade id; on a fill, the match id pairing both sides"),
    # order events
    ("order_id", pa.string(), "order id"),
    ("client_order_id", pa.string(), "client order id"),
    ("exec_id", pa.string(), "execution report id"),
    ("account", pa.string(), "account on the origin platform"),
    ("platform", pa.string(), "origin platform of the order"),
    ("action", pa.string(), "new | amend | cancel | fill | expire | reject"),
    ("leaves_qty", pa.float64(), "quantity still open after the event"),
    ("order_type", pa.string(), "limit | market"),
    ("time_in_force", pa.string(), "gtc | ioc | fok | day"),
    ("is_aggressor", pa.bool_(), "on a fill: this order took liquidity"),
    # trades
    ("buy_order_id", pa.string(), ""),
    ("sell_order_id", pa.string(), ""),
    ("buy_account", pa.string(), ""),
    ("sell_account", pa.string(), ""),
    ("buy_platform", pa.string(), "in a shared book the two sides can come from different platforms"),
    ("sell_platform", pa.string(), ""),
    # quotes
    ("bid", pa.float64(), ""),
    ("bid_qty", pa.float64(), ""),
    ("ask", pa.float64(), ""),
    ("ask_qty", pa.float64(), ""),
    # filled by enrichment from reference data
    ("owner", pa.string(), "beneficial owner of `account`"),
    ("buy_owner", pa.string(), ""),
    ("sell_owner", pa.string(), ""),
    ("group_id", pa.string(), "linked-owner group of `owner`"),
    ("buy_group", pa.string(), ""),
    ("sell_group", pa.string(), ""),
]

EVENT_SCHEMA = pa.schema([pa.field(n, t, nullable=True, metadata={"doc": d}) for n, t, d in _FIELDS])
EVENT_COLUMNS = tuple(EVENT_SCHEMA.names)

_COMMON = ("ts", "recv_ts", "kind", "feed", "src", "src_seq", "venue", "venue_symbol", "instrument")
TRADE_COLUMNS = _COMMON + (
    "price", "qty", "side", "trade_id", "buy_order_id", "sell_order_id", "buy_account",
    "sell_account", "buy_platform", "sell_platform", "buy_owner", "sell_owner", "buy_group", "sell_group",
)
ORDER_COLUMNS = _COMMON + (
    "order_id", "client_order_id", "exec_id", "account", "platform", "side", "action", "price", "qty",
    "leaves_qty", "order_type", "time_in_force", "trade_id", "is_aggressor", "owner", "group_id",
)
QUOTE_COLUMNS = _COMMON + ("bid", "bid_qty", "ask", "ask_qty")
REFERENCE_COLUMNS = _COMMON + ("price",)
SETTLEMENT_COLUMNS = _COMMON + ("platform", "trade_id")
KIND_COLUMNS = {Kind.TRADE: TRADE_COLUMNS, Kind.ORDER: ORDER_COLUMNS, Kind.QUOTE: QUOTE_COLUMNS,
                Kind.REFERENCE: REFERENCE_COLUMNS, Kind.SETTLEMENT: SETTLEMENT_COLUMNS}

# Dead letters: input that could not become an event, kept with the reason and raw bytes.
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("recv_ts", TS),
        ("source", pa.string()),  # file path or transport name
        ("step_id", pa.string()),  # dataflow step / decoder that refused it, e.g. "decode.fix"
        ("reason", pa.string()),
        ("position", pa.string()),  # line number, byte offset or message sequence number
        ("raw", pa.binary()),
    ]
)


_EMPTY_EVENTS = EVENT_SCHEMA.empty_table()


def empty_events() -> pa.Table:
    return _EMPTY_EVENTS  # tables are immutable: one empty table serves every caller


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly EVENT_SCHEMA's columns, in order; missing ones null.

    Columns are cast to the canonical type (so a decoder may build an int64 ``ts``
    or a dictionary-encoded string); unknown columns are dropped.
    """
    n = table.num_rows
    cols = []
    for field in EVENT_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                col = col.cast(field.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(cols, schema=EVENT_SCHEMA)


def empty_dead_letters() -> pa.Table:
    return DEAD_LETTER_SCHEMA.empty_table()


def dead_letters(source: str, step_id: str, rows: list[tuple[str, str, bytes]], recv_ts_ns: int) -> pa.Table:
    """Build a dead-letter table from ``(reason, position, raw)`` tuples."""
    n = len(rows)
    if n == 0:
        return empty_dead_letters()
    reasons, positions, raws = zip(*rows)
    return pa.Table.from_arrays(
        [
            pa.array(np.full(n, recv_ts_ns, dtype="int64")).cast(TS),
            pa.array([source] * n, pa.string()),
            pa.array([step_id] * n, pa.string()),
            pa.array(reasons, pa.string()),
            pa.array(positions, pa.string()),
            pa.array([r if isinstance(r, bytes) else str(r).encode() for r in raws], pa.binary()),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )


_VALID = {
    "kind": {k.value for k in Kind},
    "side": {s.value for s in Side},
    "action": {a.value for a in Action},
}


def validate(events: pa.Table) -> tuple[pa.Table, pa.Array]:
    """Split conformed events into (valid rows, reason per invalid row).

    Returns the valid table and, for the rows refused, a table of ``(index, reason)``
    in the input's row numbering.  The rules are the ones every kind shares: a time,
    a known kind, a venue, and for trades and order events with a size a positive
    size and price.  A reference value needs its ``instrument`` (an anchor has no venue
    symbol to map) and a positive price; a settlement needs the affiliate ``platform`` and
    no symbol (null ``instrument``: every instrument).  Vectorised: one mask per rule.

    >>> t = conform(pa.table({"ts": pa.array([1, 2], pa.int64()), "kind": ["trade", "trade"],
    ...     "venue": ["X", "X"], "venue_symbol": ["A", "A"], "price": [1.0, 1.0], "qty": [1.0, -1.0]}))
    >>> ok, bad = validate(t)
    >>> ok.num_rows, bad.to_pylist()
    (1, [{'index': 1, 'reason': 'qty must be positive (got -1.0)'}])

    Anchors and settlements (no venue symbol, no size):

    >>> r = conform(pa.table({"ts": pa.array([1, 2, 3, 4], pa.int64()),
    ...     "kind": ["reference", "reference", "settlement", "settlement"], "venue": ["NAV", "PEG", "SHARED", "SHARED"],
    ...     "instrument": ["BUIDL/USD", None, None, None], "price": [1.0, 1.0, None, None],
    ...     "platform": [None, None, "OVSAFF", None]}))
    >>> validate(r)[1].to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'index': 1, 'reason': 'reference value without instrument'},
     {'index': 3, 'reason': 'settlement without the affiliate platform'}]
    """
    n = events.num_rows
    reasons: dict[int, str] = {}  # first rule a row breaks
    refused = np.zeros(n, dtype=bool)

    def flag(mask, reason_of):
        mask = np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool)
        new = mask & ~refused
        if new.any():
            refused[new] = True
            for i in np.flatnonzero(new):
                reasons[int(i)] = reason_of(int(i))

    kind = events.column("kind")
    flag(pc.is_null(events.column("ts")), lambda i: "missing event time (ts)")
    flag(pc.invert(pc.is_in(kind, pa.array(sorted(_VALID["kind"])))), lambda i: f"unknown kind {kind[i].as_py()!r}")
    flag(pc.is_null(events.column("venue")), lambda i: "missing venue")
    is_reference = pc.equal(kind, Kind.REFERENCE.value)
    is_settlement = pc.equal(kind, Kind.SETTLEMENT.value)
    flag(pc.and_(is_reference, pc.is_null(events.column("instrument"))),
         lambda i: "reference value without instrument")
    flag(
        pc.and_(pc.and_not(pc.is_null(events.column("venue_symbol")), is_settlement),
                pc.is_null(events.column("instrument"))),
        lambda i: "missing symbol (venue_symbol or instrument)",
    )
    flag(pc.and_(is_settlement, pc.is_null(events.column("platform"))),
         lambda i: "settlement without the affiliate platform")
    for col in ("side", "action"):
        c = events.column(col)
        flag(pc.and_(pc.is_valid(c), pc.invert(pc.is_in(c, pa.array(sorted(_VALID[col]))))),
             lambda i, c=c, col=col: f"unknown {col} {c[i].as_py()!r}")
    # Kleene or_/fill_null below: a null comparison must not reach `flag`, which counts null as
    # True and would refuse every quote (null qty/price) and every order without a size.
    is_trade = pc.equal(kind, Kind.TRADE.value)
    price, qty = events.column("price"), events.column("qty")
    flag(pc.and_(is_trade, pc.or_kleene(pc.is_null(qty), pc.less_equal(qty, 0))),
         lambda i: f"qty must be positive (got {qty[i].as_py()})")
    flag(pc.and_(is_trade, pc.or_kleene(pc.is_null(price), pc.less_equal(price, 0))),
         lambda i: f"price must be positive (got {price[i].as_py()})")
    is_order = pc.equal(kind, Kind.ORDER.value)
    flag(pc.and_(is_order, pc.fill_null(pc.less_equal(qty, 0), False)),
         lambda i: f"qty must be positive (got {qty[i].as_py()})")
    flag(pc.and_(is_order, pc.is_null(events.column("order_id"))), lambda i: "order event without order_id")
    flag(pc.and_(is_order, pc.is_null(events.column("action"))), lambda i: "order event without action")
    flag(pc.and_(is_reference, pc.or_kleene(pc.is_null(price), pc.less_equal(price, 0))),
         lambda i: f"reference price must be positive (got {price[i].as_py()})")

    bad_idx = np.flatnonzero(refused)
    bad = pa.table({"index": pa.array(bad_idx, pa.int64()), "reason": pa.array([reasons[int(i)] for i in bad_idx], pa.string())})
    if len(bad_idx) == 0:
        return events, bad
    return events.filter(pa.array(~refused)), bad


def is_sorted(events: pa.Table) -> bool:
    """Whether rows are already in (ts, src, src_seq, kind) order — checked on columns, no sort."""
    if events.num_rows < 2:
        return True
    ts = events.column("ts").cast(pa.int64()).to_numpy()
    d = np.diff(ts)
    if (d < 0).any():
        return False
    ties = np.flatnonzero(d == 0)
    if len(ties) == 0:
        return True
    src = pc.fill_null(events.column("src"), -1).to_numpy()
    seq = pc.fill_null(events.column("src_seq"), -1).to_numpy()
    a, b = ties, ties + 1
    ds, dq = src[b] - src[a], seq[b] - seq[a]
    if (ds < 0).any() or ((ds == 0) & (dq < 0)).any():
        return False
    same = a[(ds == 0) & (dq == 0)]
    if len(same) == 0:
        return True
    kind = events.column("kind").take(pa.array(np.concatenate((same, same + 1)))).to_pylist()
    return all((x or "") <= (y or "") for x, y in zip(kind[: len(same)], kind[len(same):]))


def sort_events(events: pa.Table) -> pa.Table:
    """Event-time order with a reproducible tie-break: (ts, src, src_seq, kind).

    Already-ordered input (the usual case after the merge) is returned as is: the
    check reads three columns, where a sort would gather all forty.
    """
    if is_sorted(events):
        return events
    idx = pc.sort_indices(events, [("ts", "ascending"), ("src", "ascending"), ("src_seq", "ascending"), ("kind", "ascending")])
    return events.take(idx)


def to_rows(table: pa.Table) -> list[dict]:
    """Rows as dicts with timestamps as integer ns (``datetime`` cannot hold nanoseconds)."""
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(cols, names=table.column_names).to_pylist()
