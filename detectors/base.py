"""The one contract every detector keeps.

A detector is configuration only: its parameters are constructor arguments under
their own names, with units in the name (``min_duration_ms``, ``threshold_bps``).
Everything that changes as events flow lives in a per-key *state* object the
detector creates (``new_state``) and the engine keeps, snapshots and evicts:

1. ``select(events)``: a vectorised, stateless filter over a whole batch (all keys)
   that keeps only the rows this detector needs.  It runs before the batch is
   split by key, so most rows never reach per-key code.
2. The engine splits the selected rows by ``key_columns`` (event order kept
   within each key) and calls ``update(state, events)`` with one key's rows.
   ``update`` returns alerts; it may return a revised alert with an id it
   returned before (the store keeps the latest revision).
3. ``flush(state)`` at end of input closes open windows.
4. ``is_idle(state, now_ns)`` says the state holds nothing worth keeping at event
   time ``now_ns``, so the engine may drop it: key space stays bounded.

State objects must pickle (recovery snapshots) and must not depend on how the
input was cut into batches: feeding rows one at a time or all at once gives the
same alerts.  ``tests/detectors/test_contract.py`` checks all of this for every
registered detector.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.alerts import EVIDENCE_COLUMNS, Alert


class Detector(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    key_columns: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    # parameter name -> (unit, one-line meaning); defaults come from __init__
    param_docs: ClassVar[dict[str, tuple[str, str]]] = {}

    @abstractmethod
    def select(self, events: pa.Table) -> pa.Table: ...

    @abstractmethod
    def new_state(self) -> Any: ...

    @abstractmethod
    def update(self, state: Any, events: pa.Table) -> list[Alert]: ...

    def flush(self, state: Any) -> list[Alert]:
        return []

    @abstractmethod
    def is_idle(self, state: Any, now_ns: int) -> bool: ...

    # -- shared helpers ---------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The constructor parameters as set on this instance (recorded in every alert)."""
        return {p: getattr(self, p) for p in _param_names(type(self))}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {p.name: p.default for p in sig.parameters.values() if p.name != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    # alerts record their detector's parameters, and a signature is slow to read once per alert
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")


def value_fits(value: Any, want: type) -> bool:
    """A configured value is of the type a setting takes (an int does for a float; a bool never
    does for a number).

    >>> value_fits(3, float), value_fits(True, int), value_fits("3", int)
    (True, False, False)
    """
    if isinstance(value, bool) and want is not bool:
        return False
    return isinstance(value, want) or (want is float and isinstance(value, int))


def keep_rows(events: pa.Table, mask, extra: tuple[str, ...] = ()) -> pa.Table:
    """The rows ``mask`` selects (null: dropped), with only the evidence columns and ``extra``:
    filtering, splitting by key and taking rows cost per column, and a detector reads few of the 39.

    A batch the dataflow assembles from many small tables has many chunks, which a filter copies one
    by one (a kernel call per column and chunk) while a take of the selected positions gathers them in
    one call per column; on one chunk the filter is the cheaper.
    """
    kept = events.select(list(EVIDENCE_COLUMNS + extra))
    return kept.filter(mask) if kept.column(0).num_chunks <= 1 else kept.take(pc.indices_nonzero(mask))


class Rows:
    """One batch's columns as Python lists, read by index (``rows.ts[i]``): a per-row loop reads
    the ``read`` columns; a row's dict of the ``keep`` columns is built only for the few rows a
    detector keeps as evidence, their other columns converted when the first is kept (or, for a
    few rows, in one ``take``: ``rows``)."""

    def __init__(self, table: pa.Table, read: tuple[str, ...], keep: tuple[str, ...]):
        self.table, self.keep = table, keep
        self.cols = {name: _pylist(table.column(name)) for name in read}
        for name, values in self.cols.items():
            setattr(self, name, values)
        self._all = False

    def row(self, i: int) -> dict:
        if not self._all:  # a row is kept: the batch's evidence columns are read once, for all
            self.cols.update((name, _pylist(self.table.column(name))) for name in self.keep if name not in self.cols)
            self._all = True
        return {name: self.cols[name][i] for name in self.keep}

    def rows(self, index: list[int]) -> list[dict]:
        if self._all or len(index) * 4 > self.table.num_rows:
            return [self.row(i) for i in index]
        t = self.table.select(list(self.keep)).take(pa.array(index, pa.int64()))
        return [dict(zip(self.keep, values)) for values in zip(*map(_pylist, t.columns))]


def _pylist(col) -> list:
    return (col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col).to_pylist()


def state_size(state: Any) -> int:
    """A rough count of the items a state holds (for the bounded-memory contract test)."""
    total = 0
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if isinstance(v, (list, dict, set, tuple)):
            total += len(v)
        elif isinstance(v, pa.Table):
            total += v.num_rows
    return total


def key_array(events: pa.Table, columns: tuple[str, ...]) -> pa.ChunkedArray:
    """Each row's key: its ``columns`` values joined by ``|`` (a null reads as an empty string)."""
    filled = [c if c.null_count == 0 else pc.fill_null(c, "") for c in map(events.column, columns)]
    return filled[0] if len(filled) == 1 else pc.binary_join_element_wise(*filled, "|")


def split_by_key(events: pa.Table, columns: tuple[str, ...]) -> list[tuple[str, pa.Table]]:
    """Split rows by key, keys in name order, keeping event order within each key.

    >>> t = pa.table({"instrument": ["B", "A", "B", None], "x": [1, 2, 3, 4]})
    >>> [(k, v.column("x").to_pylist()) for k, v in split_by_key(t, ("instrument",))]
    [('', [4]), ('A', [2]), ('B', [1, 3])]
    """
    if events.num_rows == 0:
        return []
    enc = pc.dictionary_encode(key_array(events, columns)).combine_chunks()
    names = enc.dictionary.to_pylist()
    if len(names) == 1:
        return [(names[0], events)]
    # Codes renumbered in name order: one stable sort then lays the keys out in name order and each
    # key's rows in event order (numpy sorts integers of 16 bits or fewer by radix, in linear time).
    by_name = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), np.min_scalar_type(len(names)))
    rank[by_name] = np.arange(len(names))
    codes = rank[enc.indices.to_numpy(zero_copy_only=False)]
    order = pa.array(np.argsort(codes, kind="stable"))
    ends = np.cumsum(np.bincount(codes, minlength=len(names))).tolist()
    # One take per key, not slices of one sorted copy: a slice keeps the whole copy alive and pickles all of
    # it, so a state holding a few rows of one key (or a recovery snapshot, or an item sent to another
    # worker) would carry every key's rows of the batch.  The takes are a record batch's: a table's take
    # costs more per column, and gathers a many-chunk table's chunks again for every key.
    rows = events.combine_chunks().to_batches()[0]
    return [(names[k], pa.Table.from_batches([rows.take(order.slice(s, e - s))]))
            for k, s, e in zip(by_name, [0] + ends, ends)]
