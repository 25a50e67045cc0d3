"""ExecutionReport fields → order-event columns.

The decoder hands over each wanted tag's raw values (binary, one column per tag); here they
become typed columns with whole-column Arrow/numpy operations, and every value that does not
fit (an unknown ExecType, a price that is not a number, ...) gives its row a reason.
Only the identifiers are checked as UTF-8 text; codes, numbers and times are read as bytes.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._events import Rejects
from . import utctime

STRINGS = {1: "account", 11: "client_order_id", 37: "order_id", 17: "exec_id", 55: "venue_symbol",
           49: "platform", 880: "trade_id", 30: "LastMkt", 207: "SecurityExchange"}
CODES = (150, 54, 40, 59, 1057)
NUMBERS = (38, 44, 32, 31, 151)
TIMES = (60, 52)
# the wanted tags, in the order the decoder lays their values out (identifiers first: one cast)
WANTED = (*STRINGS, *CODES, *NUMBERS, *TIMES)
NAMES = {
    1: "Account", 11: "ClOrdID", 17: "ExecID", 30: "LastMkt", 31: "LastPx", 32: "LastQty", 35: "MsgType",
    37: "OrderID", 38: "OrderQty", 40: "OrdType", 44: "Price", 49: "SenderCompID", 52: "SendingTime",
    54: "Side", 55: "Symbol", 59: "TimeInForce", 60: "TransactTime", 150: "ExecType", 151: "LeavesQty",
    207: "SecurityExchange", 880: "TrdMatchID", 1057: "AggressorIndicator",
}
EXEC_TYPE = {b"0": "new", b"5": "amend", b"4": "cancel", b"F": "fill", b"8": "reject", b"C": "expire"}
SIDE = {b"1": "buy", b"2": "sell"}
ORD_TYPE = {b"1": "market", b"2": "limit"}
TIME_IN_FORCE = {b"0": "day", b"1": "gtc", b"3": "ioc", b"4": "fok"}
AGGRESSOR = {b"Y": True, b"N": False}


def label(tag: int) -> str:
    return f"{NAMES.get(tag, 'tag')} ({tag})"


def _show(value: bytes) -> str:
    return repr(value.decode("utf-8", errors="replace"))


def _strings(values: pa.Array, n: int, rejects: Rejects) -> dict[int, pa.Array]:
    """The identifier tags' values as strings; a row with bad UTF-8 is refused."""
    block = values.slice(0, n * len(STRINGS))
    try:
        s = block.cast(pa.string())
    except pa.ArrowInvalid:
        out = []
        for j, v in enumerate(block.to_pylist()):
            try:
                out.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
                rejects.add({j % n: f"{label(list(STRINGS)[j // n])}: not valid UTF-8: {v!r}"})
        s = pa.array(out, pa.string())
    return {tag: s.slice(i * n, n) for i, tag in enumerate(STRINGS)}


def _numbers(b: pa.Array, name_of, rejects: Rejects) -> pa.Array:
    try:
        return pc.cast(b, pa.float64())
    except pa.ArrowInvalid:
        out = []
        for i, v in enumerate(b.to_pylist()):
            try:
                out.append(None if v is None else pc.cast(pa.array([v], pa.binary()), pa.float64())[0].as_py())
            except pa.ArrowInvalid:
                out.append(None)
                rejects.add({i: f"{name_of(i)}: cannot parse {_show(v)} as a number"})
        return pa.array(out, pa.float64())


def _times(b: pa.Array, tag: int, rejects: Rejects) -> pa.Array:
    ns, ok = utctime.parse(b)
    rejects.flag(np.asarray(b.is_valid(), dtype=bool) & ~ok,
                 lambda i: f"{label(tag)}: cannot parse {_show(b[i].as_py())} as YYYYMMDD-HH:MM:SS[.sss]")
    return pa.array(ns, pa.int64(), mask=~ok)


def _mapped(b: pa.Array, mapping: dict[bytes, object], typ: pa.DataType) -> pa.Array:
    """Codes mapped through ``mapping``; an unknown code gives null."""
    idx = pc.index_in(b, value_set=pa.array(list(mapping), pa.binary()))
    return pc.take(pa.array(list(mapping.values()), typ), idx)


def _required_code(b: pa.Array, tag: int, mapping: dict[bytes, str], rejects: Rejects) -> pa.Array:
    out = _mapped(b, mapping, pa.string())
    rejects.flag(pc.is_null(b), lambda i: f"missing {label(tag)}")
    rejects.flag(pc.is_null(out), lambda i: f"unsupported {label(tag)} {_show(b[i].as_py())}")
    return out


def to_events(values: pa.Array, n: int, venue: str | None) -> tuple[dict[str, pa.Array], Rejects]:
    """ExecutionReport fields → event columns and refusals.

    ``values`` (binary) holds the ``n`` rows' values of each tag of :data:`WANTED`, tag after tag.
    """
    rejects = Rejects(n)
    raw = {tag: values.slice(i * n, n) for i, tag in enumerate(WANTED)}
    text = _strings(values, n, rejects)
    out = {name: text[tag] for tag, name in STRINGS.items() if name.islower()}
    action = _required_code(raw[150], 150, EXEC_TYPE, rejects)
    side = _required_code(raw[54], 54, SIDE, rejects)

    is_fill = pc.fill_null(pc.equal(action, "fill"), False)
    fill = is_fill.to_numpy(zero_copy_only=False)
    # a fill's size and price are the execution's (LastQty, LastPx), not the order's
    qty = _numbers(pc.if_else(is_fill, raw[32], raw[38]), lambda i: label(32 if fill[i] else 38), rejects)
    price = _numbers(pc.if_else(is_fill, raw[31], raw[44]), lambda i: label(31 if fill[i] else 44), rejects)
    transact, sending = _times(raw[60], 60, rejects), _times(raw[52], 52, rejects)
    ts = pc.coalesce(transact, sending)
    venue_col = pc.coalesce(text[30], text[207])
    if venue is not None:
        venue_col = pc.fill_null(venue_col, venue)
    out.update(
        ts=ts,
        recv_ts=pc.coalesce(sending, ts),
        venue=venue_col,
        side=side,
        action=action,
        qty=qty,
        price=price,
        leaves_qty=_numbers(raw[151], lambda i: label(151), rejects),
        order_type=_mapped(raw[40], ORD_TYPE, pa.string()),
        time_in_force=_mapped(raw[59], TIME_IN_FORCE, pa.string()),
        is_aggressor=_mapped(raw[1057], AGGRESSOR, pa.bool_()),
    )
    return out, rejects
