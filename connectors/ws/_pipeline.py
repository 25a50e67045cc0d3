"""What happens to one received message, apart from the network: decode, account, batch.

The client runs a :class:`Pipeline` per venue connection loop; :func:`decode_messages` runs the
same pipeline over recorded messages, so a capture replayed offline gives the very tables
(and gap reports) the live client gave.  Items are ``("events", table)``, ``("dead", table)``
and ``("gap", dict)``; they come out in wire order: rows received before a gap are flushed
before the gap is reported.

>>> from connectors.ws import okx
>>> msgs = [(b'{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"}}', 1),
...         (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"7",'
...          b'"px":"30236","sz":"0.5","side":"sell","ts":"1652459224818"}]}', 2), (b'{oops', 3)]
>>> d = decode_messages(okx, msgs)
>>> d.events.column("trade_id").to_pylist(), d.dead.column("position").to_pylist()
(['7'], ['1:3'])
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA, Kind

from .._events import Decoded
from ._batch import BatchBuilder
from ._gaps import GapTracker
from ._message import Control, DecodedMessage, malformed
from ._venues import venue_module

Item = tuple[str, Any]  # ("events", pa.Table) | ("dead", pa.Table) | ("gap", dict)


@dataclass
class Stats:
    """Running counts of one client (or one offline decode); all since it started."""

    connections: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    messages: int = 0
    controls: Counter = field(default_factory=Counter)  # messages by Control value
    trades: int = 0  # event rows emitted, by kind
    quotes: int = 0
    dead: int = 0
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0  # ids or messages known lost, summed over gaps
    pings_sent: int = 0


def step_id(venue: str) -> str:
    return f"ws.{venue.lower()}"


class Pipeline:
    def __init__(self, venue: str | ModuleType, *, source: str, src: int = 0, batch_rows: int = 1000):
        self.module = venue_module(venue)
        self.builder = BatchBuilder(venue=self.module.VENUE, source=source, step_id=step_id(self.module.VENUE), src=src)
        self.gaps = GapTracker(self.module.VENUE)
        self.batch_rows = batch_rows
        self.stats = Stats()

    def new_connection(self) -> int:
        self.gaps.new_connection()
        self.stats.connections += 1
        return self.gaps.connection

    def message(self, raw: bytes, recv_ts_ns: int, position: str) -> tuple[DecodedMessage, list[Item]]:
        """Decode one message and queue its rows; returns it (for its control info) and ready items."""
        try:
            msg = self.module.decode(raw, recv_ts_ns)
        except Exception as e:  # a decoder bug must cost one message, not the feed
            msg = malformed(recv_ts_ns, f"decoder failed: {type(e).__name__}: {e}")
        s = self.stats
        s.messages += 1
        s.controls[msg.control.value] += 1
        b = self.builder
        if msg.control is Control.MALFORMED:
            b.add_dead(msg.detail or "malformed message", position, raw, recv_ts_ns)
        elif msg.control is Control.ERROR:
            b.add_dead(f"venue error: {msg.detail}", position, raw, recv_ts_ns)
        gaps = []
        if msg.seq is not None:
            g = self.gaps.sequence(msg.seq[0], msg.seq[1], recv_ts_ns)
            if g is not None:
                gaps.append(g)
        trades = msg.trades
        if trades:
            before = self.gaps.duplicates
            trades, found = self.gaps.admit(trades, recv_ts_ns)
            s.duplicates += self.gaps.duplicates - before
            gaps += found
        out: list[Item] = []
        if gaps:
            out += self.flush()  # rows before the gap leave first
            s.gaps += len(gaps)
            s.missing += sum(max(g["missing"], 0) for g in gaps)
            out += [("gap", g) for g in gaps]
        if trades or msg.quotes or msg.errors:
            b.add(msg, raw, position, trades)
        if b.pending >= self.batch_rows:
            out += self.flush()
        return msg, out

    def flush(self) -> list[Item]:
        if not self.builder.pending:
            return []
        events, dead = self.builder.flush()
        out: list[Item] = []
        if events.num_rows:
            n_trades = int(pc.sum(pc.equal(events.column("kind"), Kind.TRADE.value)).as_py() or 0)
            self.stats.trades += n_trades
            self.stats.quotes += events.num_rows - n_trades
            out.append(("events", events))
        if dead.num_rows:
            self.stats.dead += dead.num_rows
            out.append(("dead", dead))
        return out


def decode_messages(venue: str | ModuleType, messages: Iterable[tuple[bytes, int]], *, source: str = "capture",
                    src: int = 0, connection_breaks: Iterable[int] = ()) -> Decoded:
    """Decode recorded ``(raw, recv_ts_ns)`` messages exactly as the live client would.

    ``connection_breaks``: indexes of messages that opened a new connection (sequence numbers
    restart there).  Gap reports are not returned: use :class:`Pipeline` to see them.
    """
    p = Pipeline(venue, source=source, src=src, batch_rows=1 << 62)
    breaks = set(connection_breaks)
    conn = p.new_connection()
    items: list[Item] = []
    n = 0
    for i, (raw, recv) in enumerate(messages):
        if i in breaks and i:
            conn, n = p.new_connection(), 0
        n += 1
        items += p.message(raw, recv, f"{conn}:{n}")[1]  # a gap flushes what came before it
    items += p.flush()
    events = [t for kind, t in items if kind == "events"]
    dead = [t for kind, t in items if kind == "dead"]
    return Decoded(pa.concat_tables(events or [EVENT_SCHEMA.empty_table()]),
                   pa.concat_tables(dead or [DEAD_LETTER_SCHEMA.empty_table()]))
