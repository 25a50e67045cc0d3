"""Per-owner open-order books shared by the order-pattern detectors (spoofing, layering).

Both patterns have one shape: an owner rests orders on one side of an instrument's book,
trades on the *other* side while they rest, then cancels them unfilled.  Per instrument (the
detectors' key) this keeps, per venue, the touch (last trade price) and the typical traded
size (rolling median of recent trades); per owner, its resting orders placed within the
window and at most one open *episode* per side: the orders an opposite-side execution of
the owner linked.  A subclass classifies orders (``_track``), picks the orders an execution
links (``_candidates``), says when an episode alerts (``_ready``) and how it reads (``_alert``).
``OrderPatterns`` runs several patterns on one book, in one pass over the events: the dataflow
runs spoofing and layering so (``detectors.stages``).

Every piece of state expires by event time as rows are read, so a state untouched past
``horizon_ns`` reads the next rows exactly as a new one would: that makes ``is_idle`` safe.
Rows are read once per batch as column lists (``base.Rows``); the few kept as evidence become
dicts (plain values: nothing pins a batch), turned back into Arrow on alert.
"""
from __future__ import annotations

import bisect
import dataclasses
from collections import deque
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import Detector, Rows, keep_rows
from surveil.alerts import EVIDENCE_COLUMNS, EVIDENCE_SCHEMA, Alert, evidence_id
from surveil.schemas import Action, Kind, Side

MS = 1_000_000
TOUCH_MAX_AGE_NS = 60_000 * MS  # an older last price is no longer "the touch"
MIN_TYPICAL_SAMPLES = 20  # trades before a venue's typical size is trusted
MIN_OWNER_SAMPLES = 20  # orders in the window before the owner's own usual size counts
MAX_TYPICAL_SAMPLES = 1_000  # bounds the median's cost on busy venues
SIDE_SPAN_NS = 10_000 * MS  # one-sidedness is judged over at least this much placing
MAX_EXEC_EVIDENCE = 20  # executions kept per episode (the summary still counts them all)
# The evidence columns (instrument is the key) and what the loop needs: few, as reading them
# is the loop's main cost.
ROW_EXTRA = ("leaves_qty", "buy_order_id", "sell_order_id")
ROW_COLUMNS = tuple(c for c in EVIDENCE_COLUMNS if c != "instrument") + ROW_EXTRA
LOOP_COLUMNS = ("ts", "kind", "owner", "order_id", "action", "side", "price", "qty", "venue", "leaves_qty",
                "buy_owner", "sell_owner", "buy_order_id", "sell_order_id")
BUY, SELL = Side.BUY.value, Side.SELL.value
OPPOSITE = {BUY: SELL, SELL: BUY}
_ORDER = Kind.ORDER.value
_NEW, _AMEND, _FILL = Action.NEW.value, Action.AMEND.value, Action.FILL.value
_CLOSING = {Action.CANCEL.value, Action.EXPIRE.value}
_KINDS, _TRANSIENT_TIF, _MARKET = pa.array([_ORDER, Kind.TRADE.value]), pa.array(["ioc", "fok"]), pa.array(["market"])


class RollingQuantile:
    """Quantile of the values seen in the last ``window_ns`` (at most ``cap`` of them).

    >>> r = RollingQuantile(10, cap=3)
    >>> for t, x in enumerate([5.0, 1.0, 3.0, 9.0]): r.add(t, x)
    >>> r.quantile(4), r.quantile(4, q=0.75), r.quantile(13), r.quantile(13, min_samples=2)  # at 13 only 9 is left
    (3.0, 9.0, 9.0, None)
    """

    def __init__(self, window_ns: int, cap: int = MAX_TYPICAL_SAMPLES):
        self.window_ns, self.cap = window_ns, cap
        self.fifo: deque[tuple[int, float]] = deque()
        self.sorted: list[float] = []

    def add(self, ts: int, x: float) -> None:
        self.fifo.append((ts, x))
        bisect.insort(self.sorted, x)
        if len(self.fifo) > self.cap:
            self._drop()

    def _drop(self) -> None:
        x = self.fifo.popleft()[1]
        del self.sorted[bisect.bisect_left(self.sorted, x)]

    def quantile(self, now: int, q: float = 0.5, min_samples: int = 1) -> float | None:
        while self.fifo and self.fifo[0][0] < now - self.window_ns:
            self._drop()
        n = len(self.sorted)
        return self.sorted[min(int(n * q), n - 1)] if n >= min_samples else None


@dataclass
class Order:
    row: dict | None  # the order's `new` event; None while it is row ``at`` of the batch being read
    at: int
    oid: str
    venue: str
    side: str
    price: float
    qty: float
    new_ns: int
    filled: float = 0.0
    distance: float | None = None  # bps behind the touch when placed (or amended)
    multiple: float = 0.0  # qty / the venue's typical traded size when classified (spoofing)
    closed: bool = False

    @property
    def open(self) -> float:
        return self.qty - self.filled


@dataclass
class Episode:  # orders on one side linked to the owner's executions on the other side
    side: str
    start_ns: int
    first_exec_ns: int
    opening: list[str]
    open: dict[str, Order] = field(default_factory=dict)  # linked orders still resting
    orders: list[Order] = field(default_factory=list)  # every linked order, in linking order
    execs: list[dict] = field(default_factory=list)
    n_execs: int = 0
    cancels: list[dict] = field(default_factory=list)  # linked orders cancelled in time, unfilled
    multiple: dict[str, float] = field(default_factory=dict)  # order id -> qty / typical size when linked (layering)


@dataclass
class OwnerBook:
    """One owner's book as one pattern sees it.  The patterns sharing a loop (``OrderPatterns``)
    each have their own book per owner, holding the *same* containers for what the loop keeps
    (orders to filled_new: mutated in place, never reassigned) and their own for the rest."""
    sizes: RollingQuantile  # the owner's usual order sizes (the pattern's own)
    orders: dict[str, Order] = field(default_factory=dict)
    placed: dict = field(default_factory=lambda: {BUY: deque(), SELL: deque()})  # new_ns of orders placed in the window
    open_qty: dict = field(default_factory=lambda: {BUY: 0.0, SELL: 0.0})  # per side over `orders`, kept as they change
    fills: deque = field(default_factory=deque)  # (ts, side, qty, took) of the owner's trades in the window
    filled_new: dict = field(default_factory=lambda: {BUY: [], SELL: []})  # sorted new_ns of orders with fills
    marked: dict = field(default_factory=lambda: {BUY: {}, SELL: {}})  # side -> {id: order} the pattern marked
    episodes: dict[str, Episode] = field(default_factory=dict)  # side -> open episode


@dataclass
class BookState:
    last_ns: int = 0
    sweep_ns: int = 0
    touch: dict[str, tuple[int, float]] = field(default_factory=dict)  # venue -> (ts, price)
    typical: dict[str, RollingQuantile] = field(default_factory=dict)  # venue -> traded sizes
    owners: dict[str, tuple[OwnerBook, ...]] = field(default_factory=dict)  # owner -> its book per pattern
    expiry: deque = field(default_factory=deque)  # (new_ns, owner, order_id, side) in placing order


class OrderPatternDetector(Detector):
    """The loop over an instrument's resting orders and trades; subclasses add the pattern.

    The loop runs the hooks of every pattern in ``patterns``: the detector itself, or, in
    ``OrderPatterns``, several that share one book and so one pass over the events."""

    key_columns = ("instrument",)
    # set by subclasses' __init__
    max_cancel_ms: int
    max_distance_bps: float
    max_fill_share: float
    min_side_ratio: float
    max_two_way_share: float
    typical_window_ms: int

    @property
    def patterns(self) -> tuple[OrderPatternDetector, ...]:
        return (self,)

    # -- hooks: classify a new or amended order (mark candidates in ``book.marked``); the
    # orders on ``side`` an execution by order ``executing`` links; when and how to alert.
    def _track(self, state: BookState, book: OwnerBook, order: Order, oid: str, ts: int, new: bool) -> None: ...

    def _candidates(self, state: BookState, book: OwnerBook, side: str, executing: str | None) -> list[Order]: ...

    def _ready(self, ep: Episode) -> bool: ...

    def _alert(self, ep: Episode, owner: str, instrument: str, end_ns: int) -> Alert: ...

    # -- contract ---------------------------------------------------------------------------
    def select(self, events: pa.Table) -> pa.Table:
        """Resting orders' events and the trades of owners' books.

        IOC/FOK and market orders never rest, so cannot be placed to be cancelled: dropped here
        (half the order events).  Public tapes and quotes carry no owners and are other books
        (REFX can sit 100 bps off SHARED): the touch comes from the order's own venue's trades.
        """
        # is_in rather than equal: it never yields null, so no fill_null is needed
        has_owner = pc.is_valid(pc.coalesce(events.column("owner"), events.column("buy_owner"),
                                            events.column("sell_owner")))
        keep = pc.and_(pc.is_in(events.column("kind"), _KINDS), has_owner)
        transient = pc.or_(pc.is_in(events.column("time_in_force"), _TRANSIENT_TIF),
                           pc.is_in(events.column("order_type"), _MARKET))
        return keep_rows(events, pc.and_not(keep, transient), ROW_EXTRA)

    def new_state(self) -> BookState:
        return BookState()

    def horizon_ns(self) -> int:
        return max(self.max_cancel_ms * MS, self.typical_window_ms * MS, TOUCH_MAX_AGE_NS)

    def is_idle(self, state: BookState, now_ns: int) -> bool:
        # Past the horizon every order, episode, size and touch has expired.
        return now_ns - state.last_ns > self.horizon_ns()

    def update(self, state: BookState, events: pa.Table) -> list[Alert]:
        if events.num_rows == 0:
            return []
        instrument = events.column("instrument")[0].as_py()
        out: dict[str, Alert] = {}
        window = self.max_cancel_ms * MS
        b = Rows(events, LOOP_COLUMNS, ROW_COLUMNS)
        placed: list[Order] = []  # orders placed in this batch, their rows not yet read
        for i, (ts, kind) in enumerate(zip(b.ts, b.kind)):
            state.last_ns = ts
            if state.expiry and state.expiry[0][0] < ts - window:
                self._expire(state, ts - window)
            if kind == _ORDER:
                self._order(state, b, i, ts, instrument, placed, out)
                continue
            price, qty, venue = b.price[i], b.qty[i], b.venue[i]
            if price and qty:
                state.touch[venue] = (ts, price)
                if venue not in state.typical:
                    state.typical[venue] = RollingQuantile(self.typical_window_ms * MS)
                state.typical[venue].add(ts, qty)
            self._trade(state, b, i, ts)
        resting = [o for o in placed if o.row is None and not o.closed]
        for o, row in zip(resting, b.rows([o.at for o in resting])):  # the state keeps no batch
            o.row = row
        if state.last_ns >= state.sweep_ns:
            self._sweep(state)
        return list(out.values())

    # -- helpers for subclasses ---------------------------------------------------------------
    def typical_size(self, state: BookState, venue: str, ts: int) -> float | None:
        typ = state.typical.get(venue)
        return typ.quantile(ts, min_samples=MIN_TYPICAL_SAMPLES) if typ is not None else None

    @staticmethod
    def other_qty(book: OwnerBook, orders: list[Order], executing: str | None, side: str | None = None) -> float:
        """Open quantity the owner rests besides ``orders`` and the executing order (on ``side``
        only, if given): a market maker's odd large quote sits among many, a spoofer's orders
        stand (nearly) alone."""
        ex = book.orders.get(executing) if executing is not None else None
        if side is None:
            rest = book.open_qty[BUY] + book.open_qty[SELL] - sum(o.open for o in orders)
        else:
            rest = book.open_qty[side] - sum(o.open for o in orders if o.side == side)
        if ex is not None and (side is None or ex.side == side):
            rest -= ex.open
        return max(rest, 0.0)  # running sums may round a hair below zero

    @staticmethod
    def _since(orders: list[Order], now: int) -> int:
        """Where one_sided and one_way start looking: the first of ``orders``, or ``SIDE_SPAN_NS`` back."""
        return min(min(o.new_ns for o in orders), now - SIDE_SPAN_NS)

    def one_sided(self, book: OwnerBook, side: str, orders: list[Order], executing: str | None, now: int) -> bool:
        """Since the first of ``orders`` went in (looking back ``SIDE_SPAN_NS`` at least), the owner
        placed ``min_side_ratio`` × more orders on ``side`` than on the other.  A market maker
        keeps quoting both sides, even if a burst of its fills leans one way for a moment; a
        spoofer builds one side, then trades.  Orders on the other side that traded do not count:
        they are the spoofer's executions (it may rest them before the spoof, to be filled when
        the spoof draws the market), where a market maker's quotes there are mostly cancelled.
        """
        since = self._since(orders, now)
        on, off, filled = book.placed[side], book.placed[OPPOSITE[side]], book.filled_new[OPPOSITE[side]]
        n_off = len(off) - bisect.bisect_left(off, since) - (len(filled) - bisect.bisect_left(filled, since))
        ex = book.orders.get(executing) if executing is not None else None
        n_off -= ex is not None and ex.side != side and ex.new_ns >= since and not ex.filled  # its fill is next
        return len(on) - bisect.bisect_left(on, since) >= self.min_side_ratio * n_off

    def one_way(self, book: OwnerBook, side: str, orders: list[Order], now: int) -> bool:
        """Since the first of ``orders`` went in (looking back ``SIDE_SPAN_NS`` at least), the owner
        traded on ``side`` at most ``max_two_way_share`` of what it traded on the other side.  A
        spoofer's orders on ``side`` are there to help it trade the other way; a market maker in a
        trending market also leans its quotes one way and cancels the stale ones, but it keeps
        being filled on both sides.  Liquidity the owner *took* on ``side`` before its first order
        went in is no quoting: a busy trader's own flow (its quotes hit, or its buying while the
        orders rest, still count)."""
        since, first = self._since(orders, now), min(o.new_ns for o in orders)
        traded = {BUY: 0.0, SELL: 0.0}
        for ts, s, qty, took in reversed(book.fills):
            if ts < since:
                break
            if s != side or not took or ts >= first:  # liquidity taken that way before its orders: no quoting
                traded[s] += qty
        return traded[side] <= self.max_two_way_share * traded[OPPOSITE[side]]

    def build(self, ep: Episode, owner: str, instrument: str, end_ns: int, **kw) -> Alert:
        rows = sorted([o.row for o in ep.orders] + ep.execs + ep.cancels,
                      key=lambda r: (r["ts"], r["src"] or 0, r["src_seq"] or 0))
        evidence = pa.Table.from_pylist([{**r, "instrument": instrument} for r in rows], schema=EVIDENCE_SCHEMA)
        return Alert.build(detector=self.name, version=self.version, key=f"{owner}|{instrument}",
                           window_start_ns=ep.start_ns, window_end_ns=end_ns, opening_evidence=ep.opening,
                           evidence=evidence, instrument=instrument, params=self.params(), **kw)

    # -- the loop ---------------------------------------------------------------------------
    def _order(self, state: BookState, b: Rows, i: int, ts: int, instrument: str, placed: list[Order],
               out: dict[str, Alert]) -> None:
        owner, oid, action = b.owner[i], b.order_id[i], b.action[i]
        books = state.owners.get(owner)
        if action == _NEW:
            price, side, qty = b.price[i], b.side[i], b.qty[i]
            if price is None or side not in OPPOSITE or not qty:
                return
            if books is None:
                books = state.owners[owner] = self._new_books()
            elif oid in books[0].orders:  # a repeated `new`: start the order afresh
                self._close(books, oid)
            book = books[0]
            order = book.orders[oid] = Order(None, i, oid, b.venue[i], side, price, qty, ts)
            placed.append(order)
            book.open_qty[side] += qty
            book.placed[side].append(ts)
            self._place(state, books, order, oid, ts, True)
            state.expiry.append((ts, owner, oid, side))
            return
        order = books[0].orders.get(oid) if books is not None else None
        if order is None:
            return
        book = books[0]
        if action == _AMEND:
            book.open_qty[order.side] -= order.open
            order.price = b.price[i] if b.price[i] is not None else order.price
            order.qty = b.qty[i] or order.qty
            book.open_qty[order.side] += order.open
            self._place(state, books, order, oid, ts, False)
        elif action == _FILL:
            if not order.filled:
                bisect.insort(book.filled_new[order.side], order.new_ns)
            order.filled += b.qty[i] or 0.0
            book.open_qty[order.side] -= b.qty[i] or 0.0
            if b.leaves_qty[i] is not None and b.leaves_qty[i] <= 0:
                self._close(books, oid)
        elif action in _CLOSING:
            self._close(books, oid, (b, i), owner, instrument, ts, out)
        else:  # reject
            self._close(books, oid)

    def _new_books(self) -> tuple[OwnerBook, ...]:
        first, *rest = self.patterns
        book = OwnerBook(RollingQuantile(first.typical_window_ms * MS, cap=50))
        return (book,) + tuple(dataclasses.replace(book, sizes=RollingQuantile(p.typical_window_ms * MS, cap=50),
                                                   marked={BUY: {}, SELL: {}}, episodes={}) for p in rest)

    def distance_bps(self, state: BookState, order: Order, ts: int) -> float | None:
        """Bps ``order`` rests behind the touch of its venue at ``ts`` (negative when it crosses
        the last price); None without a recent touch."""
        t = state.touch.get(order.venue)
        if t is None or ts - t[0] > TOUCH_MAX_AGE_NS:
            return None
        behind = t[1] - order.price if order.side == BUY else order.price - t[1]
        return behind / t[1] * 1e4

    def placed_near(self, order: Order) -> bool:
        """``order`` was within ``max_distance_bps`` of its venue's touch when placed (or amended)."""
        return order.distance is not None and order.distance <= self.max_distance_bps

    @staticmethod
    def near(state: BookState, orders: list[Order], side: str, ts: int, max_bps: float) -> list[Order]:
        """``orders`` (all on ``side``) resting at most ``max_bps`` behind their venue's touch at
        ``ts``: the filter ``distance_bps`` would give, inlined (a market maker's every fill reads its ladder)."""
        touch, oldest = state.touch, ts - TOUCH_MAX_AGE_NS
        if side == BUY:
            return [o for o in orders if (t := touch.get(o.venue)) is not None and t[0] >= oldest
                    and (t[1] - o.price) / t[1] * 1e4 <= max_bps]
        return [o for o in orders if (t := touch.get(o.venue)) is not None and t[0] >= oldest
                and (o.price - t[1]) / t[1] * 1e4 <= max_bps]

    def _place(self, state: BookState, books: tuple[OwnerBook, ...], order: Order, oid: str, ts: int,
               new: bool) -> None:
        order.distance = self.distance_bps(state, order, ts)
        for p, book in zip(self.patterns, books):
            book.marked[order.side].pop(oid, None)
            p._track(state, book, order, oid, ts, new)

    def _close(self, books: tuple[OwnerBook, ...], oid: str, cancel: tuple[Rows, int] | None = None,
               owner: str = "", instrument: str = "", ts: int = 0, out: dict[str, Alert] | None = None) -> None:
        """The order leaves the book: each pattern unlinks it; a cancel may make an episode alert."""
        book = books[0]
        order = book.orders.pop(oid)
        order.closed = True
        book.open_qty[order.side] -= order.open
        for p, pbook in zip(self.patterns, books):
            pbook.marked[order.side].pop(oid, None)
            ep = pbook.episodes.get(order.side)
            if ep is not None and oid in ep.open:
                alert = p._unlink(pbook, ep, order, cancel, owner, instrument, ts)
                if alert is not None:
                    out[alert.alert_id] = alert

    def _unlink(self, book: OwnerBook, ep: Episode, order: Order, cancel: tuple[Rows, int] | None, owner: str,
                instrument: str, ts: int) -> Alert | None:
        del ep.open[order.oid]
        alert = None
        if cancel is not None and ts - order.new_ns <= self.max_cancel_ms * MS \
                and order.filled <= self.max_fill_share * order.qty:  # in time and unfilled: its row is evidence
            ep.cancels.append(cancel[0].row(cancel[1]))
            if self._ready(ep):
                alert = self._alert(ep, owner, instrument, ts)
        if not ep.open:
            del book.episodes[order.side]
        return alert

    def _trade(self, state: BookState, b: Rows, i: int, ts: int) -> None:
        buyer, seller = b.buy_owner[i], b.sell_owner[i]
        if buyer == seller:  # a self-match is a wash trade, not a trade against the book
            return
        r = None  # the trade's row, built when an episode keeps it
        for owner, side, own_order in ((buyer, BUY, b.buy_order_id[i]), (seller, SELL, b.sell_order_id[i])):
            books = state.owners.get(owner) if owner else None
            if books is None:
                continue
            fills = books[0].fills
            fills.append((ts, side, b.qty[i] or 0.0, b.side[i] == side))  # took: it was the aggressor
            while fills[0][0] < ts - max(self.max_cancel_ms * MS, SIDE_SPAN_NS):  # older than one_way reads
                fills.popleft()
            resting = OPPOSITE[side]
            for p, book in zip(self.patterns, books):
                if not book.marked[resting]:
                    continue
                cands = p._candidates(state, book, resting, own_order)
                if not cands:
                    continue
                r = r or b.row(i)
                for o in cands:
                    if o.row is None:
                        o.row = b.row(o.at)
                p._link(state, book, resting, cands, r, ts)

    def _link(self, state: BookState, book: OwnerBook, side: str, cands: list[Order], trade: dict, ts: int) -> Episode:
        ep = book.episodes.get(side)
        # An episode links executions for one window after its first: orders placed later
        # start a new one, so an owner who never stops cannot grow one without bound.
        if ep is None or ts - ep.first_exec_ns > self.max_cancel_ms * MS:
            ep = book.episodes[side] = Episode(side, min(o.new_ns for o in cands), ts,
                                               sorted(evidence_id(o.row) for o in cands) + [evidence_id(trade)])
        for o in cands:
            if o.oid not in ep.open:
                ep.open[o.oid] = o
                ep.orders.append(o)
        ep.n_execs += 1
        if len(ep.execs) < MAX_EXEC_EVIDENCE:
            ep.execs.append(trade)
        return ep

    def _expire(self, state: BookState, oldest_ns: int) -> None:
        """Drop orders placed before ``oldest_ns``: too old to be cancelled in time."""
        exp = state.expiry
        while exp and exp[0][0] < oldest_ns:
            _, owner, oid, side = exp.popleft()
            books = state.owners[owner]  # an owner with orders placed in the window is never swept
            book = books[0]
            book.placed[side].popleft()  # placing order is time order on each side too
            filled = book.filled_new[side]
            if filled and filled[0] < oldest_ns:
                del filled[:bisect.bisect_left(filled, oldest_ns)]
            if oid in book.orders and book.orders[oid].new_ns < oldest_ns:
                self._close(books, oid)

    def _sweep(self, state: BookState) -> None:
        """Forget owners with nothing left (memory only: such an owner reads as a new one)."""
        now = state.last_ns
        for owner in [o for o, books in state.owners.items() if not any(books[0].placed.values())
                      and all(not b.episodes and b.sizes.quantile(now) is None for b in books)]:
            del state.owners[owner]
        state.sweep_ns = now + self.max_cancel_ms * MS // 2


class OrderPatterns(OrderPatternDetector):
    """Several order patterns (spoofing, layering) in one pass over one book per instrument.

    Each pattern keeps its own classification, episodes and alerts (under its own name, version
    and parameters) exactly as when it runs alone; the events are read, and the orders, fills,
    touch and typical sizes kept, once.  The patterns must agree on what that book keeps:
    ``max_cancel_ms`` (how long orders and fills are remembered) and ``typical_window_ms``.
    Fed a generated 30-minute market of 845k events (every episode type), spoofing took 6.9 s and
    layering 7.4 s of CPU alone, 9.0 s together, with the same alerts."""

    description = "The order-pattern detectors sharing one pass over one book."

    def __init__(self, patterns: tuple[OrderPatternDetector, ...]):
        first = patterns[0]
        if len(patterns) < 2 or any(not can_share(first, p) for p in patterns[1:]):
            raise ValueError("order patterns share a book only with the same max_cancel_ms and typical_window_ms")
        self._patterns = tuple(patterns)
        self.name = "+".join(p.name for p in patterns)
        self.version = "+".join(p.version for p in patterns)
        self.max_cancel_ms, self.typical_window_ms = first.max_cancel_ms, first.typical_window_ms

    @property
    def patterns(self) -> tuple[OrderPatternDetector, ...]:
        return self._patterns


def can_share(a: Detector, b: Detector) -> bool:
    """``a`` and ``b`` are order patterns that can run on one book (``OrderPatterns``)."""
    return all(isinstance(d, OrderPatternDetector) and not isinstance(d, OrderPatterns)
               and type(d).select is OrderPatternDetector.select for d in (a, b)) \
        and (a.max_cancel_ms, a.typical_window_ms) == (b.max_cancel_ms, b.typical_window_ms)
