"""Decoding records received live (Kafka messages, lines appended to a tailed file), not files.

The file decoders read through :class:`connectors._io.LineReader`; a live source already holds
the bytes of whole records.  These two entry points run the *same* decoding as the files do:

* :func:`json_rows`: canonical JSON objects, one per record, through ``canonical``'s column
  conversion and :func:`connectors._events.finish` (the body of ``canonical._jsonl``'s loop,
  with the caller's ``src_seq`` and positions instead of a file's line numbers);
* :class:`FixBlocks`: :meth:`connectors.fix.FixFileDecoder.decode_block` on a block of whole
  lines, without a file behind it.

>>> ctx = Context(source="kafka:t", step_id="decode.kafka.json", feed="canonical", src=1, recv_ts_ns=0)
>>> out = json_rows([b'{"kind":"trade","ts":5,"venue":"X","venue_symbol":"A","price":1,"qty":2}', b'[1]'],
...                 [10, 11], ["0:10", "0:11"], ctx)
>>> out.events.column("src_seq").to_pylist(), out.dead.column("reason").to_pylist()
([10], ['expected a JSON object, got list'])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import orjson

from .canonical import _FIELDS, _columns
from ._events import Context, Decoded, DeadRow, finish
from .fix import FixFileDecoder


def json_rows(records: Sequence[bytes], seqs: Sequence[int], positions: Sequence[str], ctx: Context,
              venue: str | None = None) -> Decoded:
    """Canonical JSON objects → events and dead letters; ``seqs``/``positions`` per record.

    Records are not split on newlines (a Kafka message may hold pretty-printed JSON); blank
    records are the caller's business (files skip them, Kafka makes them dead letters).
    """
    rows, row_idx, dead, row_seqs = [], [], [], []
    for i, rec in enumerate(records):
        try:
            obj = orjson.loads(rec)
        except orjson.JSONDecodeError as e:
            dead.append(DeadRow(int(seqs[i]), f"invalid JSON: {e}", positions[i], rec))
            continue
        if isinstance(obj, dict):
            rows.append(obj)
            row_idx.append(i)
            row_seqs.append(int(seqs[i]))
        else:
            dead.append(DeadRow(int(seqs[i]), f"expected a JSON object, got {type(obj).__name__}", positions[i], rec))
    keys = set().union(*rows) if rows else set()
    source = {name: [r.get(name) for r in rows] for name in _FIELDS if name in keys}
    cols, rejects = _columns(source, len(rows), venue)

    def locate(r: int) -> tuple[str, bytes]:
        i = row_idx[r]
        return positions[i], records[i]

    return finish(cols, np.array(row_seqs, np.int64), locate, ctx, rejects=rejects, dead=dead)


class FixBlocks(FixFileDecoder):
    """``decode_block`` of the FIX drop-copy decoder for bytes received live (no file).

    ``decode_block(raw, first_line, seq0)`` takes whole lines (each ending with LF), numbers
    the non-blank ones from ``seq0`` and names positions ``line <first_line + i>``, exactly
    as when the same lines are read from a file; :attr:`skipped` counts non-ExecutionReports.
    """

    def __init__(self, ctx: Context, *, venue: str | None = None):  # noqa: super().__init__ opens a file
        self.path, self.ctx, self.venue, self.chunk_rows = ctx.source, ctx, venue, 0
        self.skipped = 0
