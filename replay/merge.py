"""Read many inputs in global event-time order without loading any of them whole.

Each input is a stream of decoded chunks, in its own (roughly) event-time order.
The merge keeps at most one pending chunk per input and repeatedly releases every
pending row up to the *frontier* — the smallest "latest ts" among inputs not yet
exhausted — sorted, because no input can still produce a row before it (short of
disorder inside a file, which the timeline's lateness rule then handles).  All
work is on Arrow columns; memory is one chunk per input.

Output is cut into batches of exactly ``batch_rows`` rows (the last may be
shorter), so tests can vary the batch size and check the alerts do not change.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors import decode_file
from surveil.schemas import empty_events, sort_events


@dataclass(frozen=True)
class InputSpec:
    path: str
    fmt: str | None = None
    venue: str | None = None


Item = tuple[str, pa.Table]  # ("events", table) or ("dead", dead-letter table)


_DONE = object()


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` ahead on a thread: Arrow's readers, sorts and gathers release the GIL, so the
    next chunk is decoded (or merged) while the dataflow works on this one.  Errors re-raise in
    the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer, which raises it
            q.put(e)

    t = threading.Thread(target=work, name="surveil-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class _Input:
    def __init__(self, it: Iterator):
        self.it = prefetch(it)
        self.pending = empty_events()
        self.done = False

    def refill(self, dead: list[pa.Table]) -> None:
        while not self.done and self.pending.num_rows == 0:
            try:
                chunk = next(self.it)
            except StopIteration:
                self.done = True
                return
            if chunk.dead.num_rows:
                dead.append(chunk.dead)
            self.pending = chunk.events


def merge_inputs(inputs: list[InputSpec], *, batch_rows: int = 65_536, chunk_rows: int = 65_536,
                 skip_rows: int = 0) -> Iterator[Item]:
    """Yield ("events", batch) in global event-time order and ("dead", table) as decoders refuse rows.

    ``skip_rows`` skips that many events from the start (resuming a replay).
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    streams = [_Input(decode_file(spec.path, spec.fmt, venue=spec.venue, src=i, chunk_rows=chunk_rows))
               for i, spec in enumerate(inputs)]
    carry = empty_events()
    to_skip = skip_rows
    while True:
        dead: list[pa.Table] = []
        for s in streams:
            s.refill(dead)
        for d in dead:
            yield ("dead", d)
        live = [s for s in streams if not s.done]
        if not live and all(s.pending.num_rows == 0 for s in streams) and carry.num_rows == 0:
            return
        if live:
            frontier = min(pc.max(s.pending.column("ts")).cast(pa.int64()).as_py() for s in live)
        else:
            frontier = 2**62
        parts = [carry] if carry.num_rows else []
        for s in streams:
            if s.pending.num_rows == 0:
                continue
            ts = s.pending.column("ts").cast(pa.int64()).to_numpy()
            if (np.diff(ts) >= 0).all():  # an ordered chunk (the usual case): a zero-copy split
                n = int(np.searchsorted(ts, frontier, side="right"))
                parts.append(s.pending.slice(0, n))
                s.pending = s.pending.slice(n)
            else:
                mask = pa.array(ts <= frontier)
                parts.append(s.pending.filter(mask))
                s.pending = s.pending.filter(pc.invert(mask))
        ready = sort_events(pa.concat_tables(parts)) if parts else empty_events()
        full = (ready.num_rows // batch_rows) * batch_rows
        if not live:
            full = ready.num_rows
        offset = 0
        while offset < full:
            n = min(batch_rows, full - offset)
            batch = ready.slice(offset, n)
            offset += n
            if to_skip >= batch.num_rows:
                to_skip -= batch.num_rows
                continue
            if to_skip:
                batch, to_skip = batch.slice(to_skip), 0
            yield ("events", batch)
        carry = ready.slice(full)
        if not live and carry.num_rows == 0:
            return


class Pacer:
    """Sleep so that event time advances ``speed`` times faster than wall time (None: as fast as possible)."""

    def __init__(self, speed: float | None, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed, self.clock, self.sleep = speed, clock, sleep
        self._t0_event: int | None = None
        self._t0_wall = 0.0

    def wait_for(self, ts_ns: int) -> None:
        if self.speed is None:
            return
        if self._t0_event is None:
            self._t0_event, self._t0_wall = ts_ns, self.clock()
            return
        due = self._t0_wall + (ts_ns - self._t0_event) / 1e9 / self.speed
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)


def fingerprint(inputs: list[InputSpec]) -> str:
    """Identity of a set of inputs (paths, sizes, mtimes, formats): the same replay twice has the same one."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for spec in inputs:
        p = Path(spec.path)
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{spec.fmt}|{spec.venue}\n".encode())
    return h.hexdigest()
