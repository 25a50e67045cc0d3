"""Decoding records received live (Kafka messages, lines appended to a tailed file), not files.

The file decoders read through :class:`connectors._io.LineReader`; a live source already holds
the bytes of whole records.  These two entry points run the *same* decoding as the files do:

* :func:`connectors.canonical.json_rows`: canonical JSON objects, one per record, the
  decoding ``canonical``'s JSONL files go through, with the caller's ``src_seq`` and positions
  instead of a file's line numbers (re-exported here);
* :class:`FixBlocks`: :meth:`connectors.fix.FixFileDecoder.decode_block` on a block of whole
  lines, without a file behind it.
"""
from __future__ import annotations

from ._events import Context
from .canonical import json_rows
from .fix import FixFileDecoder

__all__ = ["FixBlocks", "json_rows"]


class FixBlocks(FixFileDecoder):
    """``decode_block`` of the FIX drop-copy decoder for bytes received live (no file).

    ``decode_block(raw, first_line, seq0)`` takes whole lines (each ending with LF), numbers
    the non-blank ones from ``seq0`` and names positions ``line <first_line + i>``, exactly
    as when the same lines are read from a file; :attr:`skipped` counts non-ExecutionReports.
    """

    def __init__(self, ctx: Context, *, venue: str | None = None):  # noqa: super().__init__ opens a file
        self.path, self.ctx, self.venue, self.chunk_rows = ctx.source, ctx, venue, 0
        self.skipped = 0
