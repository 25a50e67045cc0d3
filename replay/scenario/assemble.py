"""Spec batches -> canonical ``EVENT_SCHEMA`` tables, with ids, in event-time order.

Every SHARED match becomes five events (the maker's ``new`` some time before, the taker's
``new``, the trade, and a ``fill`` for each side at the trade time, in that order at one
``ts``), plus a ``cancel`` of the resting remainder when the maker's order was bigger than
the fill.  Ids are numbered in time order: trade ids per instrument (``S-BTC-000000123``),
order ids per venue in creation order (``SO0000000123``), client order ids per account
(``HK-A00012-000042``), execution ids per platform (``HKVATP-E0000000123``).  REFX trade ids
are numeric, per symbol.  Events after the end of the run (late cancels) are dropped, which
leaves those orders open.

On a ``fill`` row ``price``/``qty`` are the fill's price and quantity (FIX LastPx/LastQty);
the order's own limit price and quantity, and the cumulative filled quantity, travel in a
side table (``aux``) aligned with the SHARED rows, for the FIX drop copy.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import EVENT_SCHEMA, TS, Action, Feed, Kind, Side

from .config import PLATFORMS, REFX, SHARED
from .flow import BUY, PASSIVE_ORDER, REFX_QUOTE, REFX_TRADE, SHARED_TRADE, concat_batches

KINDS = pa.array([Kind.TRADE.value, Kind.ORDER.value, Kind.QUOTE.value])
SIDES = pa.array([Side.BUY.value, Side.SELL.value])
ACTIONS = (Action.NEW, Action.AMEND, Action.CANCEL, Action.FILL, Action.EXPIRE, Action.REJECT)
NEW, AMEND, CANCEL, FILL, EXPIRE, REJECT = range(6)
ACTION_NAMES = pa.array([a.value for a in ACTIONS])
LIMIT, MARKET = 0, 1
ORDER_TYPES = pa.array(["limit", "market"])
GTC, IOC = 0, 1
TIFS = pa.array(["gtc", "ioc"])
TRADE, ORDER, QUOTE = 0, 1, 2

AUX_SCHEMA = pa.schema([("order_qty", pa.float64()), ("order_price", pa.float64()), ("cum_qty", pa.float64())])


def cumcount(keys: np.ndarray) -> np.ndarray:
    """Position of each row among the earlier rows with the same key.

    >>> cumcount(np.array([3, 1, 3, 3, 1])).tolist()
    [0, 0, 1, 2, 1]
    """
    n = len(keys)
    if n == 0:
        return np.empty(0, np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) - np.repeat(starts, counts)
    return out


_DIGITS4 = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), dtype=np.uint32)


def _null_bitmap(valid: np.ndarray | None):
    if valid is None or valid.all():
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), int((~valid).sum())


def ids(prefixes, nums: np.ndarray, width: int, valid: np.ndarray | None = None,
        codes: np.ndarray | None = None) -> pa.Array:
    """``prefix + zero-padded number`` as an Arrow string array (null where not valid).

    ``prefixes`` is one string, or a list of equal-length strings chosen per row by ``codes``.
    Built straight into Arrow buffers (4 digits per table look-up): ~20x the string kernels.

    >>> ids("S-", np.array([7, 123]), 4, np.array([True, False])).to_pylist()
    ['S-0007', None]
    >>> ids(["HK-", "OV-"], np.array([5, 6]), 3, codes=np.array([1, 0])).to_pylist()
    ['OV-005', 'HK-006']
    """
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    pre = [p.encode() for p in prefixes]
    plen = len(pre[0])
    if any(len(p) != plen for p in pre):
        raise ValueError(f"id prefixes must have one length: {prefixes}")
    n = len(nums)
    x = np.maximum(np.asarray(nums, dtype=np.int64), 0)
    if (x >= 10**width).any():
        raise ValueError(f"id number does not fit in {width} digits")
    mat = np.empty((n, plen + width), dtype=np.uint8)
    pm = np.frombuffer(b"".join(pre), dtype=np.uint8).reshape(len(pre), plen)
    mat[:, :plen] = pm[0] if len(pre) == 1 else pm[np.asarray(codes)]
    mat[:, plen:] = digit_bytes(x, width)
    return fixed_width_strings(mat, valid)


def digit_bytes(x: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of non-negative ints, zero-padded to ``width``: an (n, width) uint8 matrix."""
    chunks = -(-width // 4)
    words = np.empty((len(x), chunks), dtype=np.uint32)
    for k in range(chunks - 1, -1, -1):
        x, r = np.divmod(x, 10_000)
        words[:, k] = _DIGITS4[r]
    return words.view(np.uint8).reshape(len(x), chunks * 4)[:, chunks * 4 - width:]


def fixed_width_strings(mat: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Arrow strings from the rows of a C-contiguous (n, width) uint8 matrix."""
    n, width = mat.shape
    offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * width)
    validity, nulls = _null_bitmap(valid)
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(np.ascontiguousarray(mat).reshape(-1)),
                                       validity, nulls)


def take(values: pa.Array, codes: np.ndarray) -> pa.Array:
    """Strings by code, null where the code is negative."""
    codes = np.asarray(codes)
    if (codes >= 0).all():
        return values.take(pa.array(codes.astype(np.int32, copy=False)))
    return values.take(pa.array(codes.astype(np.int32), mask=codes < 0))


def scaled(ints: np.ndarray, inst: np.ndarray, decimals: np.ndarray) -> pa.Array:
    """Integer ticks/lots -> float64 (the double nearest the decimal), null where negative.

    ``decimals`` per instrument; dividing by an exact power of ten rounds correctly.
    """
    vals = ints / (10.0 ** decimals.astype(np.float64))[inst]
    validity, nulls = _null_bitmap(ints >= 0)
    return pa.Array.from_buffers(pa.float64(), len(vals), [validity, pa.py_buffer(vals)], nulls)


class _Events:
    """Accumulates event parts (dicts of equal-length arrays) and concatenates them."""

    def __init__(self, fields: dict[str, int]):
        self.fields = fields  # name -> fill value for parts that lack it
        self.parts: list[dict] = []

    def add(self, **cols):
        n = len(cols["ts"])
        self.parts.append({k: np.broadcast_to(np.asarray(cols.get(k, fill)), (n,)) for k, fill in self.fields.items()})

    def concat(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate([p[k] for p in self.parts]) for k in self.fields}


def _latency(rng, n: int, mean_us: float, floor_us: float, us_aligned: bool) -> np.ndarray:
    lat = ((floor_us + rng.exponential(mean_us, n)) * 1000).astype(np.int64)
    return lat - lat % 1000 if us_aligned else lat


def assemble_shared(m, rng) -> tuple[pa.Table, pa.Table, dict[int, list[str]], dict[int, list[tuple]]]:
    """(SHARED events, aux for FIX, trade ids per episode index, orders per episode index).

    An episode's orders are ``(order id, account number, passive)``: its resting-only orders
    (``PASSIVE_ORDER``), then both sides' orders of its trades.
    """
    cfg, pop = m.cfg, m.pop
    tick_dec = np.array([s.shared.tick_decimals for s in cfg.instruments])
    lot_dec = np.array([s.shared.lot_decimals for s in cfg.instruments])

    T = concat_batches(SHARED_TRADE, m.shared_trades)
    o = np.lexsort((T["inst"], T["ts"]))
    T = {k: v[o] for k, v in T.items()}
    nt = len(T["ts"])
    trade_no = cumcount(T["inst"].astype(np.int64)) + 1

    Q = concat_batches(PASSIVE_ORDER, m.passive_orders)
    Q = {k: v[np.lexsort((Q["side"], Q["inst"], Q["ts"]))] for k, v in Q.items()}
    nq = len(Q["ts"])

    # Orders: makers' resting orders, takers' orders, market makers' quotes; numbered by creation.
    maker_new_ts = T["ts"] - T["maker_lead"]
    created = np.concatenate([maker_new_ts, T["ts"], Q["ts"]])
    tie = np.concatenate([np.zeros(nt), np.ones(nt), np.full(nq, 2)])
    order_rank = np.lexsort((tie, created))
    order_no = np.empty(len(created), np.int64)
    order_no[order_rank] = np.arange(1, len(created) + 1)
    order_acct = np.concatenate([T["maker"], T["taker"], Q["acct"]])
    clord = np.empty(len(created), np.int64)
    clord[order_rank] = cumcount(order_acct[order_rank]) + 1
    maker_no, taker_no, mm_no = order_no[:nt], order_no[nt:2 * nt], order_no[2 * nt:]
    # Per order number: account and client order counter (index 0 unused).
    acct_by_no = np.zeros(len(created) + 1, np.int64)
    acct_by_no[order_no] = order_acct
    clord_by_no = np.zeros(len(created) + 1, np.int64)
    clord_by_no[order_no] = clord

    aggr = T["aggr"].astype(np.int64)
    maker_side = 1 - aggr
    maker_qty = T["qty"] + T["maker_extra"]
    taker_type = np.where(T["taker_market"], MARKET, LIMIT)
    taker_px = np.where(T["taker_market"], -1, np.where(aggr == BUY, T["px"] + T["taker_slip"],
                                                         np.maximum(1, T["px"] - T["taker_slip"])))
    F = {"ts": 0, "tie": 0, "kind": ORDER, "inst": 0, "px": -1, "qty": -1, "side": -1, "trade_no": -1,
         "order_no": -1, "action": -1, "leaves": -1, "otype": -1, "tif": -1, "aggr_flag": -1,
         "buy_no": -1, "sell_no": -1, "oqty": -1, "opx": -1, "cum": -1}
    ev = _Events(F)
    inst = T["inst"]
    ev.add(ts=T["ts"], tie=1, kind=TRADE, inst=inst, px=T["px"], qty=T["qty"], side=aggr, trade_no=trade_no,
           buy_no=np.where(aggr == BUY, taker_no, maker_no), sell_no=np.where(aggr == BUY, maker_no, taker_no))
    ev.add(ts=maker_new_ts, inst=inst, px=T["px"], qty=maker_qty, side=maker_side, order_no=maker_no, action=NEW,
           leaves=maker_qty, otype=LIMIT, tif=GTC, oqty=maker_qty, opx=T["px"], cum=0)
    ev.add(ts=T["ts"], inst=inst, px=taker_px, qty=T["qty"], side=aggr, order_no=taker_no, action=NEW,
           leaves=T["qty"], otype=taker_type, tif=IOC, oqty=T["qty"], opx=taker_px, cum=0)
    ev.add(ts=T["ts"], tie=2, inst=inst, px=T["px"], qty=T["qty"], side=maker_side, order_no=maker_no,
           action=FILL, leaves=T["maker_extra"], otype=LIMIT, tif=GTC, trade_no=trade_no, aggr_flag=0,
           oqty=maker_qty, opx=T["px"], cum=T["qty"])
    ev.add(ts=T["ts"], tie=3, inst=inst, px=T["px"], qty=T["qty"], side=aggr, order_no=taker_no, action=FILL,
           leaves=0, otype=taker_type, tif=IOC, trade_no=trade_no, aggr_flag=1, oqty=T["qty"], opx=taker_px,
           cum=T["qty"])
    rest = (T["maker_extra"] > 0) & (T["ts"] + T["cancel_delay"] <= cfg.end_ns)
    ev.add(ts=(T["ts"] + T["cancel_delay"])[rest], inst=inst[rest], px=T["px"][rest], qty=maker_qty[rest],
           side=maker_side[rest], order_no=maker_no[rest], action=CANCEL, leaves=0, otype=LIMIT, tif=GTC,
           oqty=maker_qty[rest], opx=T["px"][rest], cum=T["qty"][rest])

    # Market makers' quotes: new (+amend) + cancel, or a lone reject.
    rej = Q["reject"]
    ok = ~rej
    qi, qs = Q["inst"], Q["side"].astype(np.int64)
    ev.add(ts=Q["ts"][rej], inst=qi[rej], px=Q["px"][rej], qty=Q["qty"][rej], side=qs[rej], order_no=mm_no[rej],
           action=REJECT, leaves=0, otype=LIMIT, tif=GTC, oqty=Q["qty"][rej], opx=Q["px"][rej], cum=0)
    ev.add(ts=Q["ts"][ok], inst=qi[ok], px=Q["px"][ok], qty=Q["qty"][ok], side=qs[ok], order_no=mm_no[ok],
           action=NEW, leaves=Q["qty"][ok], otype=LIMIT, tif=GTC, oqty=Q["qty"][ok], opx=Q["px"][ok], cum=0)
    amended = ok & (Q["amend_at"] >= 0)
    am = amended & (Q["amend_at"] <= cfg.end_ns)
    ev.add(ts=Q["amend_at"][am], inst=qi[am], px=Q["amend_px"][am], qty=Q["amend_qty"][am], side=qs[am],
           order_no=mm_no[am], action=AMEND, leaves=Q["amend_qty"][am], otype=LIMIT, tif=GTC,
           oqty=Q["amend_qty"][am], opx=Q["amend_px"][am], cum=0)
    cancel_ts = Q["ts"] + Q["life"]
    cx = ok & (cancel_ts <= cfg.end_ns)
    fpx = np.where(amended, Q["amend_px"], Q["px"])
    fqty = np.where(amended, Q["amend_qty"], Q["qty"])
    ev.add(ts=cancel_ts[cx], inst=qi[cx], px=fpx[cx], qty=fqty[cx], side=qs[cx], order_no=mm_no[cx],
           action=CANCEL, leaves=0, otype=LIMIT, tif=GTC, oqty=fqty[cx], opx=fpx[cx], cum=0)

    E = ev.concat()
    o = np.lexsort((E["tie"], E["ts"]))
    E = {k: v[o] for k, v in E.items()}
    n = len(E["ts"])
    is_order = E["kind"] == ORDER
    acct = np.where(is_order, acct_by_no[np.maximum(E["order_no"], 0)], -1)
    platform = np.where(is_order, pop.account_platform[np.maximum(acct, 0)], -1)
    exec_no = np.full(n, -1, np.int64)
    exec_no[is_order] = cumcount(platform[is_order]) + 1
    is_trade = ~is_order
    buy_acct = np.where(is_trade, acct_by_no[np.maximum(E["buy_no"], 0)], -1)
    sell_acct = np.where(is_trade, acct_by_no[np.maximum(E["sell_no"], 0)], -1)
    ei = E["inst"]
    accounts = pa.array(pop.account_ids)
    platforms = pa.array(list(PLATFORMS))
    # The drop copy is one queue: receipt times never go backwards in file order.
    recv = np.maximum.accumulate(E["ts"] + _latency(rng, n, cfg.flow.shared_latency_us, 50.0, False))

    cols = {
        "ts": pa.array(E["ts"], type=pa.int64()).cast(TS),
        "recv_ts": pa.array(recv, type=pa.int64()).cast(TS),
        "kind": take(KINDS, E["kind"]),
        "feed": take(pa.array([Feed.CANONICAL.value]), np.zeros(n, np.int32)),
        "src_seq": pa.array(np.arange(n, dtype=np.int64)),
        "venue": take(pa.array([SHARED]), np.zeros(n, np.int32)),
        "venue_symbol": take(pa.array([s.shared.venue_symbol for s in cfg.instruments]), ei),
        "instrument": take(pa.array([s.instrument for s in cfg.instruments]), ei),
        "price": scaled(E["px"], ei, tick_dec),
        "qty": scaled(E["qty"], ei, lot_dec),
        "side": take(SIDES, E["side"]),
        "trade_id": ids([f"S-{s.code}-" for s in cfg.instruments], E["trade_no"], 9, E["trade_no"] > 0, ei),
        "order_id": ids("SO", E["order_no"], 10, is_order),
        "client_order_id": ids([f"{a}-" for a in pop.account_ids], clord_by_no[np.maximum(E["order_no"], 0)], 6,
                               is_order, np.maximum(acct, 0)),
        "exec_id": ids([f"{p}-E" for p in PLATFORMS], exec_no, 10, is_order, np.maximum(platform, 0)),
        "account": take(accounts, acct),
        "platform": take(platforms, platform),
        "action": take(ACTION_NAMES, E["action"]),
        "leaves_qty": scaled(E["leaves"], ei, lot_dec),
        "order_type": take(ORDER_TYPES, E["otype"]),
        "time_in_force": take(TIFS, E["tif"]),
        "is_aggressor": pa.array(E["aggr_flag"] == 1, mask=E["aggr_flag"] < 0),
        "buy_order_id": ids("SO", E["buy_no"], 10, is_trade),
        "sell_order_id": ids("SO", E["sell_no"], 10, is_trade),
        "buy_account": take(accounts, buy_acct),
        "sell_account": take(accounts, sell_acct),
        "buy_platform": take(platforms, np.where(is_trade, pop.account_platform[np.maximum(buy_acct, 0)], -1)),
        "sell_platform": take(platforms, np.where(is_trade, pop.account_platform[np.maximum(sell_acct, 0)], -1)),
    }
    table = _table(cols, n)
    aux = pa.Table.from_arrays([
        scaled(E["oqty"], ei, lot_dec), scaled(E["opx"], ei, tick_dec), scaled(E["cum"], ei, lot_dec),
    ], schema=AUX_SCHEMA)

    # Trade ids of each episode's trades (rows are time-ordered, so the lists are too).
    episode_trades: dict[int, list[str]] = {}
    tagged = np.flatnonzero(T["episode"] >= 0)
    for i in tagged.tolist():
        code = cfg.instruments[int(T["inst"][i])].code
        episode_trades.setdefault(int(T["episode"][i]), []).append(f"S-{code}-{int(trade_no[i]):09d}")
    episode_orders: dict[int, list[tuple]] = {}
    for i in np.flatnonzero(Q["episode"] >= 0).tolist():
        episode_orders.setdefault(int(Q["episode"][i]), []).append((f"SO{int(mm_no[i]):010d}", int(Q["acct"][i]), True))
    for i in tagged.tolist():
        rows = episode_orders.setdefault(int(T["episode"][i]), [])
        rows.append((f"SO{int(maker_no[i]):010d}", int(T["maker"][i]), False))
        rows.append((f"SO{int(taker_no[i]):010d}", int(T["taker"][i]), False))
    return table, aux, episode_trades, episode_orders


def assemble_refx(m, rng) -> pa.Table:
    cfg = m.cfg
    tick_dec = np.array([s.refx.tick_decimals for s in cfg.instruments])
    lot_dec = np.array([s.refx.lot_decimals for s in cfg.instruments])
    R = concat_batches(REFX_TRADE, m.refx_trades)
    R = {k: v[np.lexsort((R["inst"], R["ts"]))] for k, v in R.items()}
    Qt = concat_batches(REFX_QUOTE, m.refx_quotes)
    nr, nq = len(R["ts"]), len(Qt["ts"])
    trade_no = cumcount(R["inst"].astype(np.int64))
    base = np.array([s.refx_trade_id_base for s in cfg.instruments], np.int64)
    ts = np.concatenate([R["ts"], Qt["ts"]])
    kind = np.concatenate([np.full(nr, TRADE), np.full(nq, QUOTE)])
    inst = np.concatenate([R["inst"], Qt["inst"]]).astype(np.int64)
    o = np.lexsort((inst, kind, ts))  # at one microsecond: trades before quotes
    neg = np.full(nq, -1, np.int64)
    px = np.concatenate([R["px"], neg])[o]
    qty = np.concatenate([R["qty"], neg])[o]
    side = np.concatenate([R["aggr"].astype(np.int64), neg])[o]
    tid = np.concatenate([base[R["inst"]] + trade_no, neg])[o]
    negr = np.full(nr, -1, np.int64)
    bid, ask = np.concatenate([negr, Qt["bid"]])[o], np.concatenate([negr, Qt["ask"]])[o]
    bq, aq = np.concatenate([negr, Qt["bid_qty"]])[o], np.concatenate([negr, Qt["ask_qty"]])[o]
    ts, kind, inst = ts[o], kind[o], inst[o]
    n = len(ts)
    recv = np.maximum.accumulate(ts + _latency(rng, n, cfg.flow.refx_latency_us, 1_000.0, True))
    is_trade = kind == TRADE
    tid_str = pc.cast(pa.array(tid), pa.string())
    cols = {
        "ts": pa.array(ts, type=pa.int64()).cast(TS),
        "recv_ts": pa.array(recv, type=pa.int64()).cast(TS),
        "kind": take(KINDS, kind),
        "feed": take(pa.array([Feed.CANONICAL.value]), np.zeros(n, np.int32)),
        "src_seq": pa.array(np.arange(n, dtype=np.int64)),
        "venue": take(pa.array([REFX]), np.zeros(n, np.int32)),
        "venue_symbol": take(pa.array([s.refx.venue_symbol for s in cfg.instruments]), inst),
        "instrument": take(pa.array([s.instrument for s in cfg.instruments]), inst),
        "price": scaled(px, inst, tick_dec),
        "qty": scaled(qty, inst, lot_dec),
        "side": take(SIDES, side),
        "trade_id": pc.if_else(pa.array(is_trade), tid_str, pa.scalar(None, pa.string())),
        "bid": scaled(bid, inst, tick_dec),
        "bid_qty": scaled(bq, inst, lot_dec),
        "ask": scaled(ask, inst, tick_dec),
        "ask_qty": scaled(aq, inst, lot_dec),
    }
    return _table(cols, n)


def _table(cols: dict[str, pa.Array], n: int) -> pa.Table:
    arrays = []
    for f in EVENT_SCHEMA:
        a = cols.get(f.name)
        arrays.append(pa.nulls(n, f.type) if a is None else (a if a.type == f.type else a.cast(f.type)))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


__all__ = ["assemble_shared", "assemble_refx", "cumcount", "ids", "digit_bytes", "fixed_width_strings"]
