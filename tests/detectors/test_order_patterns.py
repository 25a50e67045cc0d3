"""Spoofing and layering on one book (``OrderPatterns``): each pattern's alerts are exactly its
alerts when it runs alone, whatever the batch size, across snapshots, on markets with both."""
from __future__ import annotations

import pickle

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from detectors import Layering, Spoofing, stages
from detectors._orders import OrderPatterns
from surveil.schemas import sort_events
from tests.detectors.test_contract import run
from tests.detectors.test_layering import contract_market as ladders
from tests.detectors.test_spoofing import contract_market as spoofs


def both(seed: int, seconds: int = 1800) -> pa.Table:
    """A spoofing market and a layering market of the same instruments, interleaved in time."""
    a, b = spoofs(seed=seed, seconds=seconds), ladders(seed=seed + 100, seconds=seconds)
    for name in ("owner", "buy_owner", "sell_owner", "order_id", "buy_order_id", "sell_order_id", "trade_id"):
        b = b.set_column(b.schema.get_field_index(name), name,  # the second market's owners and ids apart
                         pc.binary_join_element_wise(b.column(name), pa.scalar("b"), ""))
    return sort_events(pa.concat_tables([a, b]))


def alone_and_fused(table: pa.Table, batch_rows: int, snapshot_every: int | None = None):
    spoofing, layering = Spoofing(), Layering(min_side_ratio=1.0)  # a laxer layering: more episodes
    fused = OrderPatterns((spoofing, layering))
    alone = {**run(spoofing, table, batch_rows, snapshot_every)[0], **run(layering, table, batch_rows, snapshot_every)[0]}
    return alone, run(fused, table, batch_rows, snapshot_every)[0]


@pytest.mark.parametrize("batch_rows", [97, 1000, 1_000_000])
def test_each_pattern_alerts_as_it_does_alone(batch_rows):
    alone, fused = alone_and_fused(both(seed=4), batch_rows)
    detectors = {summary.split(" ")[1] for _, _, summary, _ in alone.values()}
    assert {"spoofed", "layered"} <= detectors, "the market holds both patterns"
    assert fused == alone


def test_snapshots_keep_the_shared_book_shared():
    alone, fused = alone_and_fused(both(seed=5), 500, snapshot_every=3)
    assert fused == alone
    det = OrderPatterns((Spoofing(), Layering()))
    state = det.new_state()
    det.update(state, det.select(both(seed=5).slice(0, 20_000)))
    restored = pickle.loads(pickle.dumps(state))
    books = next(iter(restored.owners.values()))
    assert books[0].orders is books[1].orders and books[0].fills is books[1].fills
    assert books[0].marked is not books[1].marked and books[0].sizes is not books[1].sizes


def test_only_patterns_that_agree_on_the_book_share_it():
    assert [d.name for d in stages([Spoofing(), Layering()])] == ["spoofing+layering"]
    assert [d.name for d in stages([Spoofing(typical_window_ms=60_000), Layering()])] == ["spoofing", "layering"]
    with pytest.raises(ValueError, match="same max_cancel_ms"):
        OrderPatterns((Spoofing(), Layering(max_cancel_ms=10_000)))
