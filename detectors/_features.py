"""Behaviour features over one event-time window of one instrument, computed on Arrow columns.

``owner_features(window, ...)`` turns a window's rows (trades on every venue, order events
new / amend / cancel) into one feature vector per beneficial owner active in the window, with
``np.bincount`` over owner codes: no Python loop over events.  A trade counts for both its
owners, as two *legs* (buyer +qty, seller -qty).  ``market_features`` gives the instrument's own
vector for the window.  Each feature is oriented so that *larger is more unusual*:

======================== =============================================================================
owner feature            meaning (window of one instrument)
======================== =============================================================================
msg_rate                 log1p of order messages (new, amend, cancel) per minute
order_to_trade           log1p of messages / (trades + 1): the order-to-trade ratio
cancel_rate              cancels / (new orders + 2)
fast_cancel_share        cancels within ``fast_cancel_ms`` of the order's ``new`` (cancel latency) / (cancels + 2)
cancel_to_trade_qty      log1p of cancelled quantity / (traded quantity + one typical trade)
opposite_cancel          log1p of quantity cancelled on a side while the owner traded on the other side, per
                         its traded quantity + one typical trade (interest shown and withdrawn: spoofing)
self_share               share of traded quantity with itself (both sides one owner)
group_share              share of traded quantity with a linked owner (same group, another owner)
platform_mix             the smaller platform's share of the owner's traded quantity (+ one typical trade)
aggressiveness           share of the owner's traded quantity where it was the aggressor
position_build           log1p of |net quantity| in typical trades (position built in the window)
position_reversal        log1p of 2 x min(bought, sold) in typical trades (position built and unwound)
counterparty_round_trip  share of traded quantity (+ one typical trade) bought from and sold back to the same
                         counterparty
exclusive_round_trip     the same, each counterparty weighted by the share of its own traded quantity that was
                         with the owner (two owners trading back and forth with each other, not with the market)
participation            owner's traded quantity / the venue's traded quantity
realised_spread          (sell VWAP - buy VWAP) / the window's price range: short-horizon P&L of what it
                         bought and sold back, x unwound / (unwound + one typical trade) (0 unless both)
price_dev_bps            largest |trade price / median of the 9 neighbouring trades - 1| of its trades, bps
push_bps                 how far a run of its aggressive trades walked the price within a few seconds, bps, times
                         its share of that side's aggressive trades meanwhile (momentum ignition)
======================== =============================================================================

The instrument's own vector (``MARKET_FEATURES``): log1p of trades, of volume in typical trades and of
order messages; |return| over the previous window's VWAP and the gap between the shared book's VWAP
and the other venues', in bps; and ``platform_net``, log1p of the net quantity one platform's
clients bought from the other's, in typical trades (the settlement exposure it builds).

"Typical trade" = the window's median SHARED trade quantity, so sizes mean the same on every
instrument.  Sums are taken over the whole window at once, in event order: the same rows give
the same features whatever batches they arrived in.

>>> import pyarrow as pa
>>> from tests.conftest import events
>>> w = events(ts=[0.0, 1.0, 2.0, 3.0], kind=["trade"] * 4, venue=["SHARED"] * 4, instrument=["X"] * 4,
...     price=[100.0] * 4, qty=[1.0, 1.0, 1.0, 1.0], side=["buy", "sell", "buy", "sell"],
...     buy_owner=["A", "B", "A", "C"], sell_owner=["B", "A", "A", "A"], buy_group=["A", "B", "A", "C"],
...     sell_group=["B", "A", "A", "A"], buy_platform=["HKVATP"] * 4, sell_platform=["OVSAFF"] * 4)
>>> f = owner_features(w, None, window_ms=60_000)
>>> f.owners  # A: bought 2 (one from itself), sold 3 (one to itself), 4 of 5 legs as aggressor; typical trade 1
['A', 'B', 'C']
>>> {k: round(float(v), 3) for k, v in zip(OWNER_FEATURES, f.values[0]) if v}
... # doctest: +NORMALIZE_WHITESPACE
{'self_share': 0.4, 'platform_mix': 0.333, 'aggressiveness': 0.8, 'position_build': 0.693,
 'position_reversal': 1.609, 'counterparty_round_trip': 0.333, 'exclusive_round_trip': 0.333, 'participation': 1.25}
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OWNER_FEATURES = (
    "msg_rate", "order_to_trade", "cancel_rate", "fast_cancel_share", "cancel_to_trade_qty", "opposite_cancel",
    "self_share", "group_share", "platform_mix", "aggressiveness", "position_build", "position_reversal",
    "counterparty_round_trip", "exclusive_round_trip", "participation", "realised_spread", "price_dev_bps",
    "push_bps")
MARKET_FEATURES = ("log_trades", "log_volume", "return_bps", "venue_gap_bps", "log_messages", "platform_net")
MESSAGE_ACTIONS = ("new", "amend", "cancel")
SHARED_VENUE = "SHARED"  # the venue whose trades carry accounts (the shared book)
# Shares over a handful of events are shrunk: by two pseudo-orders for order counts, by one typical trade for
# quantities.  One order placed and cancelled, or two trades with one counterparty, is no pattern; twenty are.
PSEUDO_ORDERS = 2


@dataclass
class OwnerWindow:
    owners: list[str]
    values: np.ndarray  # len(owners) x len(OWNER_FEATURES)
    trades: np.ndarray  # trade legs per owner
    messages: np.ndarray  # order messages per owner


def _num(t: pa.Table, c: str) -> np.ndarray:
    col = t.column(c)
    return (pc.fill_null(col, 0.0) if col.null_count else col).to_numpy().astype(np.float64)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


NEIGHBOURS = 9  # trades around each trade whose median is "the market" for the off-market feature


def _neighbour_median(p: np.ndarray) -> np.ndarray:
    """Centred running median of ``NEIGHBOURS`` trades (edges padded with the edge price).

    >>> _neighbour_median(np.array([1.0, 1.0, 5.0, 1.0, 1.0])).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    h = NEIGHBOURS // 2
    padded = np.concatenate([np.full(h, p[0]), p, np.full(h, p[-1])])
    # the middle one of each window's prices, as np.median gives it for an odd count (prices are never NaN),
    # without its copy and mean
    return np.partition(np.lib.stride_tricks.sliding_window_view(padded, NEIGHBOURS), h, axis=1)[:, h]


class Window:
    """A window's rows cut as the features read them: the shared book's trades with owners (``book``),
    the other trades (``public``) and the order messages (``orders``).  A column the features read (or
    test for a value) is converted once for both feature sets.

    >>> from tests.conftest import events
    >>> w = split_window(events(ts=[0.0, 1.0], kind=["trade"] * 2, venue=["SHARED"] * 2, instrument=["X"] * 2,
    ...     price=[1.0, 1.0], qty=[1.0, 2.0], side=["buy", None], buy_owner=["A", "B"], sell_owner=["B", "A"]))
    >>> w.is_("book", "side", "buy").tolist(), w.num("book", "qty").tolist()
    ([True, False], [1.0, 2.0])
    """

    def __init__(self, book: pa.Table, public: pa.Table, orders: pa.Table):
        self.book, self.public, self.orders = book, public, orders
        self._read: dict[tuple, np.ndarray] = {}

    def num(self, part: str, column: str) -> np.ndarray:
        """A numeric column of a part as float64, null as 0."""
        key = (part, column)
        if key not in self._read:
            self._read[key] = _num(getattr(self, part), column)
        return self._read[key]

    def is_(self, part: str, column: str, value: str) -> np.ndarray:
        """Which rows of a part have ``value`` in a string column (null never does)."""
        key = (part, column, value)
        if key not in self._read:
            col = getattr(self, part).column(column)
            hit = pc.equal(col, value)
            self._read[key] = (pc.fill_null(hit, False) if col.null_count else hit).to_numpy(zero_copy_only=False)
        return self._read[key]


def split_window(window: pa.Table) -> Window:
    """The window's SHARED trades with owners, trades on other venues and order messages."""
    kind, venue = window.column("kind"), window.column("venue")
    priced = pc.and_(pc.greater(window.column("price"), 0), pc.greater(window.column("qty"), 0))
    is_trade = pc.fill_null(pc.and_(pc.equal(kind, "trade"), priced), False)
    shared = pc.fill_null(pc.equal(venue, SHARED_VENUE), False)
    owned = pc.or_(pc.is_valid(window.column("buy_owner")), pc.is_valid(window.column("sell_owner")))
    book_mask = pc.and_(pc.and_(is_trade, shared), owned)
    book = window.select(BOOK_COLUMNS).filter(book_mask)
    public = window.select(["price", "qty"]).filter(pc.and_(is_trade, pc.invert(book_mask)))
    orders = window.select(ORDER_COLUMNS).filter(pc.fill_null(pc.equal(kind, "order"), False))
    return Window(book, public, orders)


BOOK_COLUMNS = ["ts", "price", "qty", "side", "buy_owner", "sell_owner", "buy_group", "sell_group", "buy_platform",
                "sell_platform"]
ORDER_COLUMNS = ["ts", "owner", "action", "qty", "order_id", "side"]  # select() keeps only new / amend / cancel


def _codes(*arrays) -> tuple[list[str], list[np.ndarray]]:
    """Owner ids of several string columns as codes into one sorted name list (-1 for null), in C."""
    lens = [len(a) for a in arrays]
    allv = pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]) \
        if arrays else pa.array([], pa.string())
    enc = pc.dictionary_encode(allv)
    names = enc.dictionary.to_pylist()
    # sorted in C (UTF-8 bytes sort as their code points do, as Python sorts strings)
    order = pc.array_sort_indices(enc.dictionary).to_numpy()
    rank = np.empty(len(names) + 1, np.int64)  # the last one for null
    rank[order] = np.arange(len(names))
    rank[-1] = -1
    idx = enc.indices if not enc.indices.null_count else pc.fill_null(enc.indices, len(names))
    codes = rank[idx.to_numpy()]
    out, at = [], 0
    for n in lens:
        out.append(codes[at:at + n])
        at += n
    return [names[i] for i in order.tolist()], out


def _parts(window: pa.Table | Window) -> Window:
    return window if isinstance(window, Window) else split_window(window)


def owner_features(window, recent_news: pa.Table | None, *, window_ms: int,
                   fast_cancel_ms: int = 1_000) -> OwnerWindow:
    """One row of ``OWNER_FEATURES`` per owner active in ``window`` (trades of the shared book or orders).

    ``window``: the window's rows, or their ``split_window`` parts (computed once for both feature sets).

    ``recent_news``: (order_id, ts) of ``new`` orders from before the window, so an order placed
    just before the window and cancelled in it still has a cancel latency.
    """
    w = _parts(window)
    book, orders = w.book, w.orders
    owners, (bo, so, oo) = _codes(book.column("buy_owner"), book.column("sell_owner"), orders.column("owner"))
    k = len(owners)
    if k == 0:
        return OwnerWindow([], np.zeros((0, len(OWNER_FEATURES))), np.zeros(0), np.zeros(0))
    # -- trade legs: buyer (+qty) and seller (-qty) of every shared-book trade
    n = book.num_rows
    q, p = w.num("book", "qty"), w.num("book", "price")
    same_group = pc.fill_null(pc.equal(book.column("buy_group"), book.column("sell_group")), False).to_numpy(
        zero_copy_only=False)
    leg_owner = np.concatenate([bo, so])
    leg_cpty = np.concatenate([so, bo])
    leg_q = np.concatenate([q, q])
    leg_sign = np.concatenate([np.ones(n), -np.ones(n)])
    leg_p = np.concatenate([p, p])
    leg_self = np.concatenate([bo == so, bo == so])
    leg_group = np.concatenate([same_group & (bo != so)] * 2)
    buy_aggr, sell_aggr = w.is_("book", "side", "buy"), w.is_("book", "side", "sell")
    leg_aggr = np.concatenate([buy_aggr, sell_aggr])
    leg_hk = np.concatenate([w.is_("book", "buy_platform", "HKVATP"), w.is_("book", "sell_platform", "HKVATP")])
    ok = leg_owner >= 0
    code = leg_owner[ok]
    lq, ls, lp = leg_q[ok], leg_sign[ok], leg_p[ok]
    bc = lambda w: np.bincount(code, weights=w, minlength=k)  # noqa: E731
    gross = bc(lq)
    bought = bc(lq * (ls > 0))
    sold = gross - bought
    n_legs = np.bincount(code, minlength=k).astype(np.float64)
    typical = float(np.median(q)) if n else 1.0
    venue_qty = float(q.sum()) if n else 0.0
    hk = bc(lq * leg_hk[ok])
    f = dict.fromkeys(OWNER_FEATURES)
    f["self_share"] = _ratio(bc(lq * leg_self[ok]), gross)
    f["group_share"] = _ratio(bc(lq * leg_group[ok]), gross)
    f["platform_mix"] = np.minimum(hk, gross - hk) / (gross + typical)
    f["aggressiveness"] = _ratio(bc(lq * leg_aggr[ok]), gross)
    f["position_build"] = np.log1p(np.abs(bought - sold) / typical)
    f["position_reversal"] = np.log1p(2 * np.minimum(bought, sold) / typical)
    f["participation"] = gross / venue_qty if venue_qty > 0 else np.zeros(k)
    # bought from and sold back to one counterparty (other than itself): per (owner, counterparty) pair
    cpty = leg_cpty[ok]
    other = (cpty != code) & (cpty >= 0)
    if other.any():
        pairs, at = np.unique(code[other] * k + cpty[other], return_inverse=True)
        pb = np.bincount(at, weights=lq[other] * (ls[other] > 0), minlength=len(pairs))
        ps = np.bincount(at, weights=lq[other] * (ls[other] < 0), minlength=len(pairs))
        both = np.bincount(pairs // k, weights=np.minimum(pb, ps), minlength=k)
        f["counterparty_round_trip"] = 2 * both / (gross + typical)
        # the same, each pair weighted by the share of the counterparty's own trading it is: two owners trading
        # back and forth with each other and hardly anyone else, not a taker who met a market maker twice
        exclusive = _ratio(np.bincount(at, weights=lq[other], minlength=len(pairs)), gross[pairs % k])
        both_x = np.bincount(pairs // k, weights=np.minimum(pb, ps) * exclusive, minlength=k)
        f["exclusive_round_trip"] = 2 * both_x / (gross + typical)
    else:
        f["counterparty_round_trip"] = f["exclusive_round_trip"] = np.zeros(k)
    if n:
        # realised spread: what the owner sold above what it bought, per unit round-tripped, as a share of the
        # window's price range (a trending window is not every round-tripper's skill)
        buy_vwap = _ratio(bc(lq * lp * (ls > 0)), bought)
        sell_vwap = _ratio(bc(lq * lp * (ls < 0)), sold)
        lo, hi = float(p.min()), float(p.max())
        span = max(hi - lo, float(np.median(p)) * 10e-4)  # at least 10 bps, so a flat window divides sanely
        unwound = np.minimum(bought, sold)
        f["realised_spread"] = np.where(unwound > 0, (sell_vwap - buy_vwap) / span * unwound / (unwound + typical), 0.0)
        # off-market: distance from the median of the neighbouring trades (the market moving is not a print off it)
        dev = np.abs(p / _neighbour_median(p) - 1.0) * 1e4
        leg_dev = np.concatenate([dev, dev])[ok]
        f["price_dev_bps"] = np.zeros(k)
        np.maximum.at(f["price_dev_bps"], code, leg_dev)
        f["push_bps"] = _push_bps(p, book.column("ts").cast(pa.int64()).to_numpy().astype(np.float64), bo, so,
                                  buy_aggr, sell_aggr, k)
    else:
        f["realised_spread"] = f["price_dev_bps"] = f["push_bps"] = np.zeros(k)
    # -- order messages: rate, order-to-trade, cancels, cancel latency, cancelled quantity
    o_ok = oo >= 0
    ocode = oo[o_ok]
    all_new = w.is_("orders", "action", "new")
    is_new, is_cancel = all_new[o_ok], w.is_("orders", "action", "cancel")[o_ok]
    obc = lambda w: np.bincount(ocode, weights=w, minlength=k)  # noqa: E731
    msgs = np.bincount(ocode, minlength=k).astype(np.float64)
    news = obc(is_new.astype(float))
    cancels = obc(is_cancel.astype(float))
    oq = w.num("orders", "qty")[o_ok]
    f["msg_rate"] = np.log1p(msgs * 60_000 / window_ms)
    f["order_to_trade"] = np.log1p(msgs / (n_legs + 1))
    f["cancel_rate"] = np.minimum(cancels / (news + PSEUDO_ORDERS), 1.0)
    f["cancel_to_trade_qty"] = np.log1p(obc(oq * is_cancel) / (gross + typical))
    fast = np.zeros(len(ocode), bool)
    if is_cancel.any():
        # each cancel's latency: the time since its order's `new` (the first placed, in this window or just before)
        cancel = np.flatnonzero(is_cancel)
        cancelled = pa.array(o_ok & w.is_("orders", "action", "cancel"))
        ots = orders.column("ts").filter(cancelled).cast(pa.int64()).to_numpy()
        oid = orders.column("order_id").filter(cancelled)
        new_rows = orders.select(["order_id", "ts"]).filter(pa.array(o_ok & all_new))
        placed = pa.concat_tables(([recent_news] if recent_news is not None else []) + [new_rows])
        at = pc.index_in(oid, value_set=placed.column("order_id"))
        found = at.is_valid().to_numpy(zero_copy_only=False)
        at_i = pc.fill_null(at, 0).to_numpy().astype(np.int64)
        new_ts = placed.column("ts").cast(pa.int64()).to_numpy()
        lat = ots - new_ts[at_i] if len(new_ts) else np.full(len(ots), -1)
        fast[cancel] = found & (lat >= 0) & (lat <= fast_cancel_ms * 1_000_000)
    f["fast_cancel_share"] = obc(fast.astype(float)) / (cancels + PSEUDO_ORDERS)
    cq = oq * is_cancel
    # cancels on one side by an owner that traded on the other: interest shown and withdrawn
    traded_sell, traded_buy = (sold > 0)[ocode], (bought > 0)[ocode]
    against = (traded_sell & w.is_("orders", "side", "buy")[o_ok]) | (traded_buy
                                                                      & w.is_("orders", "side", "sell")[o_ok])
    f["opposite_cancel"] = np.log1p(obc(cq * against) / (gross + typical))
    out = np.column_stack([f[name] for name in OWNER_FEATURES])
    return OwnerWindow(owners, out, n_legs, msgs)


PUSH_SPAN_S = 5.0  # momentum ignition walks the book in seconds ...
PUSH_MIN_TRADES = 3  # ... with a run of aggressive orders: two trades during a news jump are no push


def _push_bps(p: np.ndarray, t: np.ndarray, bo: np.ndarray, so: np.ndarray, buy_aggr: np.ndarray,
              sell_aggr: np.ndarray, k: int) -> np.ndarray:
    """How far each owner's own aggressive trades walked the price within ``PUSH_SPAN_S``, in bps, times its
    share of the aggressive trades on that side meanwhile: over its aggressive buys, the largest rise from its
    earliest such buy in the seconds before one to that one, when those seconds hold at least
    ``PUSH_MIN_TRADES`` of them (over its aggressive sells, the largest fall); the larger of the two.  A trader
    riding a pump or a news jump spreads its few trades over the move, or is one of a crowd; the one who
    ignites it walks the book at once, and is most of the buying while it does.

    >>> p, t = np.array([100.0, 100.5, 101.0, 99.0]), np.array([0.0, 1.0, 2.0, 3.0]) * 1e9
    >>> _push_bps(p, t, np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0]), np.array([True, True, True, False]),
    ...           np.array([False, False, False, True]), 2).round(1).tolist()
    [100.0, 0.0]
    >>> _push_bps(p, t * 10, np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0]), np.array([True, True, True, False]),
    ...           np.array([False, False, False, True]), 2).round(1).tolist()  # the same trades 10 s apart
    [0.0, 0.0]
    """
    out = np.zeros(k)
    span = int(PUSH_SPAN_S * 1e9)
    t = t.astype(np.int64)
    for owners, mask, sign in ((bo, buy_aggr, 1.0), (so, sell_aggr, -1.0)):
        keep = mask & (owners >= 0)
        if keep.sum() < PUSH_MIN_TRADES:
            continue
        who, px, at = owners[keep], p[keep], t[keep]
        rel = at - at.min()
        # one sorted key per (owner, time), owners far enough apart that a look-back never reaches the previous
        base = int(rel.max()) + span + 1
        key = who.astype(np.int64) * base + rel
        order = np.argsort(key, kind="stable")
        ks, ps, ts = key[order], px[order], at[order]
        j0 = np.searchsorted(ks, ks - span, side="left")  # each trade's earliest own trade within the span
        n_own = np.arange(len(ks)) - j0 + 1
        # the owner's share of every aggressive trade on its side over its run: a crowd chasing a pump each
        # walk with the price, but each is a small part of the buying
        side_ts = np.sort(t[mask])
        n_all = np.searchsorted(side_ts, ts, side="right") - np.searchsorted(side_ts, ts[j0], side="left")
        move = sign * (ps - ps[j0]) / ps[j0] * 1e4 * n_own / np.maximum(n_all, 1)
        np.maximum.at(out, who[order], np.where(n_own >= PUSH_MIN_TRADES, move, 0.0))
    return out


def recent_news(window: pa.Table, window_end_ns: int, fast_cancel_ms: int) -> pa.Table:
    """``new`` orders in the window's last ``fast_cancel_ms`` (their cancels may fall in the next window)."""
    cut = window_end_ns - fast_cancel_ms * 1_000_000
    t = window.select(["order_id", "ts", "action"])
    mask = pc.and_(pc.fill_null(pc.equal(t.column("action"), "new"), False),
                   pc.greater_equal(t.column("ts").cast(pa.int64()), cut))
    return t.filter(mask).select(["order_id", "ts"])


def _platform_net(w: Window, q: np.ndarray) -> float:
    """log1p of the net quantity one platform's clients bought from the other's, in typical trades.

    Random cross-platform flow nets to about the square root of its trades; a one-way surge is the
    settlement exposure one platform builds against the other.
    """
    if not len(q):
        return 0.0
    hk_buys = w.is_("book", "buy_platform", "HKVATP") & w.is_("book", "sell_platform", "OVSAFF")
    ov_buys = w.is_("book", "buy_platform", "OVSAFF") & w.is_("book", "sell_platform", "HKVATP")
    return float(np.log1p(abs(float((q * hk_buys).sum() - (q * ov_buys).sum())) / float(np.median(q))))


def market_features(window, prev_vwap: float | None, public_only: bool = False) -> tuple[dict[str, float], float | None]:
    """The instrument's own vector for the window, and its shared-book VWAP (the next window's reference).

    ``public_only``: the instrument has no shared-book trades (a coin watched on a public venue's tape
    only), so the venues' public trades stand in for the book (and there is no gap to a reference).

    >>> from tests.conftest import events
    >>> w = events(ts=[0.0, 1.0, 2.0], kind=["trade"] * 3, venue=["SHARED", "SHARED", "REFX"],
    ...     instrument=["X"] * 3, price=[101.0, 101.0, 100.0], qty=[1.0, 1.0, 2.0], buy_owner=["A", "A", None],
    ...     sell_owner=["B", "B", None], buy_platform=["HKVATP", "HKVATP", None], sell_platform=["OVSAFF"] * 2 + [None])
    >>> f, vwap = market_features(w, 100.0)
    >>> {k: round(v, 2) for k, v in f.items()}, vwap  # doctest: +NORMALIZE_WHITESPACE
    ({'log_trades': 1.1, 'log_volume': 1.1, 'return_bps': 100.0, 'venue_gap_bps': 100.0, 'log_messages': 0.0,
      'platform_net': 1.1}, 101.0)
    """
    w = _parts(window)
    own = "public" if public_only else "book"  # the trades that are the instrument's market
    q, p = w.num(own, "qty"), w.num(own, "price")
    vwap = float((p * q).sum() / q.sum()) if q.sum() > 0 else None
    ref = None
    if not public_only:
        pq, pp = w.num("public", "qty"), w.num("public", "price")
        ref = float((pp * pq).sum() / pq.sum()) if pq.sum() > 0 else None
    f = {
        "log_trades": float(np.log1p(getattr(w, own).num_rows)),
        "log_volume": float(np.log1p(q.sum() / np.median(q))) if len(q) else 0.0,
        "return_bps": abs(vwap / prev_vwap - 1.0) * 1e4 if vwap and prev_vwap else 0.0,
        "venue_gap_bps": abs(vwap / ref - 1.0) * 1e4 if vwap and ref else 0.0,
        "log_messages": float(np.log1p(w.orders.num_rows)),
        "platform_net": _platform_net(w, q) if not public_only else 0.0,
    }
    return f, vwap if vwap is not None else prev_vwap
