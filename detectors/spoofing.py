"""Spoofing: large orders near the touch on one side, an execution on the other, then a cancel.

The owner rests one or a few orders much larger than usual (``size_multiple`` × the larger
of the venue's typical traded size and the owner's own usual size, the upper quartile of its
recent orders) within ``max_distance_bps`` of the touch; while they rest, the *same owner* —
through any of its accounts, on either platform of the shared book — trades on the opposite
side; then the large orders are cancelled within ``max_cancel_ms`` of being placed, at most
``max_fill_share`` filled.  One alert per episode (revised, same id, as more of its orders
are cancelled) with the orders' new and cancel events and the executions as evidence.

What keeps look-alikes out:

- a market maker's quotes are its usual size, and it keeps quoting both sides: since its odd
  large quote it has not placed ``min_side_ratio`` × more orders on that side than on the
  other, and the quote does not outweigh the rest of what it rests, as a spoofer's does;
- an honest large order fills (more than ``max_fill_share``);
- a large order cancelled before the owner trades on the other side links to nothing: the
  execution must come while the order rests;
- an owner resting near-touch orders on more than ``max_levels`` price levels is layering
  (``detectors/layering.py``): one episode, one alert.

>>> import pyarrow as pa
>>> from surveil.schemas import EVENT_SCHEMA
>>> n, s = 30, 10**9  # background: 30 trades of size 1 at 100 set the typical size and the touch
>>> rows = [dict(ts=i * s, kind="trade", price=100.0, qty=1.0, buy_owner="MM", sell_owner="X") for i in range(n)]
>>> spoof = dict(kind="order", order_id="S1", side="buy", price=99.99, qty=10.0, owner="O1", account="OV-1",
...              platform="OVSAFF")
>>> rows += [dict(spoof, ts=40 * s, action="new"),
...          dict(ts=41 * s, kind="trade", trade_id="t1", price=100.0, qty=1.0, buy_owner="MM", sell_owner="O1",
...               sell_account="HK-1", sell_platform="HKVATP"),
...          dict(spoof, ts=42 * s, action="cancel")]
>>> t = pa.Table.from_pylist([dict(r, venue="SHARED", instrument="BTC/USDT") for r in rows], schema=EVENT_SCHEMA)
>>> d = Spoofing()
>>> [a.summary for a in d.update(d.new_state(), d.select(t))]  # doctest: +NORMALIZE_WHITESPACE
['O1 spoofed BTC/USDT on SHARED: 1 buy order(s) of 10 (10x typical 1, up to 1 bps from the touch)
  on OVSAFF (OV-1), sold 1 on HKVATP (HK-1) 1.0s after placing, cancelled after 2.0s, 0% filled; cross-platform']
"""
from __future__ import annotations

from detectors._orders import MIN_OWNER_SAMPLES, OPPOSITE, BookState, Episode, Order, OrderPatternDetector, OwnerBook
from surveil.alerts import Alert, Severity



class Spoofing(OrderPatternDetector):
    name = "spoofing"
    version = "1.1"
    description = ("Large orders near the touch on one side, an execution by the same owner (any account, "
                   "either platform) on the other side while they rest, then their cancellation unfilled.")
    param_docs = {
        "size_multiple": ("x typical size", "an order is large from this multiple of the venue's typical traded "
                                            "size (median of recent trades) and of the owner's usual order size "
                                            "(upper quartile of its recent orders)"),
        "max_distance_bps": ("bps", "a large order counts only this close to the touch (last trade on its venue)"),
        "max_cancel_ms": ("ms", "the large order is cancelled within this time of being placed; also the "
                                "window an order is remembered"),
        "max_fill_share": ("share of qty", "a cancelled order filled more than this was bona fide"),
        "min_side_ratio": ("ratio", "since its first large order the owner placed this many times more orders on "
                                    "that side than on the other (the executing order aside)"),
        "max_levels": ("price levels", "the owner's near-touch orders on the spoof side spread over more levels "
                                       "than this are layering, not spoofing"),
        "max_two_way_share": ("share of qty", "since its first such order the owner traded on that side at most this "
                                              "share of what it traded on the other side (a market maker trades both)"),
        "typical_window_ms": ("ms", "how far back typical sizes (venue's and owner's) are measured"),
    }

    def __init__(self, size_multiple: float = 4.0, max_distance_bps: float = 10.0, max_cancel_ms: int = 60_000,
                 max_fill_share: float = 0.2, min_side_ratio: float = 3.0, max_two_way_share: float = 0.2,
                 max_levels: int = 2, typical_window_ms: int = 300_000):
        if size_multiple <= 1 or max_distance_bps < 0 or max_cancel_ms <= 0 or typical_window_ms <= 0:
            raise ValueError("size_multiple must be > 1, max_distance_bps >= 0, max_cancel_ms and "
                             "typical_window_ms > 0")
        if not 0 <= max_fill_share < 1 or min_side_ratio < 0 or max_levels < 1 or max_two_way_share < 0:
            raise ValueError("max_fill_share must be in [0, 1), min_side_ratio and max_two_way_share >= 0, "
                             "max_levels >= 1")
        self.size_multiple = float(size_multiple)
        self.max_distance_bps = float(max_distance_bps)
        self.max_cancel_ms = int(max_cancel_ms)
        self.max_fill_share = float(max_fill_share)
        self.min_side_ratio = float(min_side_ratio)
        self.max_two_way_share = float(max_two_way_share)
        self.max_levels = int(max_levels)
        self.typical_window_ms = int(typical_window_ms)

    def _track(self, state: BookState, book: OwnerBook, order: Order, oid: str, ts: int, new: bool) -> None:
        typical = self.typical_size(state, order.venue, ts)
        if typical is None:
            return
        order.multiple = order.qty / typical
        large = order.multiple >= self.size_multiple
        if large:  # ... and large for this owner too, when it has a usual size: its upper quartile,
            # as a market maker's quote sizes spread widely around its median
            own = book.sizes.quantile(ts, 0.75, MIN_OWNER_SAMPLES)
            large = own is None or order.qty >= self.size_multiple * own
        if large and self.placed_near(order):
            book.marked[order.side][oid] = order
        if new:
            book.sizes.add(ts, order.qty)

    def _candidates(self, state: BookState, book: OwnerBook, side: str, executing: str | None) -> list[Order]:
        # sorted: a set's order varies between processes, and float sums must not
        large = sorted(book.marked[side].values(), key=lambda o: (o.new_ns, o.oid))
        if not large:
            return []
        # Levels of all the owner's orders near the touch on that side, large or not: a ladder
        # of more is layering, which detectors/layering.py reports (one alert per episode).
        if len({o.price for o in book.orders.values() if o.side == side and self.placed_near(o)}) > self.max_levels:
            return []
        if not self.one_sided(book, side, large, executing, state.last_ns) \
                or not self.one_way(book, side, large, state.last_ns):
            return []
        # Each large order outweighs the rest of the owner's resting orders on its own: one
        # huge order must not carry merely large-ish ones into an episode.
        rest = self.other_qty(book, large, executing)
        return [o for o in large if o.open >= rest]

    def _ready(self, ep: Episode) -> bool:
        return bool(ep.cancels)

    def _alert(self, ep: Episode, owner: str, instrument: str, end_ns: int) -> Alert:
        by_id = {o.row["order_id"]: o for o in ep.orders}
        cancelled = [by_id[c["order_id"]] for c in ep.cancels]
        qty = sum(o.qty for o in cancelled)
        typical = cancelled[0].qty / cancelled[0].multiple
        spoof_places = sorted({(o.row["platform"] or "", o.row["account"] or "") for o in cancelled})
        ex = OPPOSITE[ep.side]
        exec_places = sorted({(r[f"{ex}_platform"] or "", r[f"{ex}_account"] or "") for r in ep.execs})
        exec_qty = sum(r["qty"] for r in ep.execs)
        lives = [(c["ts"] - by_id[c["order_id"]].new_ns) / 1e9 for c in ep.cancels]
        filled = sum(o.filled for o in cancelled) / qty if qty else 0.0
        cross = {p for p, _ in spoof_places} != {p for p, _ in exec_places}
        venues = sorted({o.row["venue"] for o in cancelled} | {r["venue"] for r in ep.execs})

        def where(places):
            plats = "/".join(sorted({p for p, _ in places if p})) or "?"
            return f"{plats} ({', '.join(a for _, a in places if a)})"
        summary = (
            f"{owner} spoofed {instrument} on {'/'.join(venues)}: {len(cancelled)} {ep.side} order(s) of {qty:.10g} "
            f"({qty / typical:.0f}x typical {typical:.10g}, up to {max(o.distance or 0.0 for o in cancelled):.0f} bps "
            f"from the touch) on {where(spoof_places)}, {'bought' if ex == 'buy' else 'sold'} {exec_qty:.10g} on "
            f"{where(exec_places)} {(ep.first_exec_ns - ep.start_ns) / 1e9:.1f}s after placing, cancelled after "
            f"{max(lives):.1f}s, {filled:.0%} filled" + ("; cross-platform" if cross else ""))
        score = qty / typical
        severity = Severity.HIGH if score >= 10 or cross else Severity.MEDIUM if score >= 5 else Severity.LOW
        return self.build(
            ep, owner, instrument, end_ns, severity=severity, score=round(score, 6), venues=venues, owners=[owner],
            accounts=sorted({a for _, a in spoof_places + exec_places if a}), summary=summary,
            metrics={"orders_cancelled": len(cancelled), "cancelled_qty": qty, "typical_qty": typical,
                     "executions": ep.n_execs, "exec_qty": exec_qty, "max_life_s": round(max(lives), 6),
                     "cross_platform": cross, "filled_share": round(filled, 6)},
        )
