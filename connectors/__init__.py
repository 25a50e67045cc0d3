"""Decoders of recorded market data files into canonical Arrow events.

``decode_file`` reads a file of any supported format in chunks of at most ``chunk_rows``
rows and yields :class:`Decoded` pairs: the events (exactly ``EVENT_SCHEMA``) and the dead
letters (exactly ``DEAD_LETTER_SCHEMA``: rows that could not become events, with the reason,
the position and the raw bytes).  Memory stays flat whatever the file's size; text formats
may be gzip-compressed.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
>>> _ = open(p, "w").write("symbol,timestamp,datetime,side,price,amount,cost\\n"
...                        "BVB/BTC,1542223340000,x,buy,0.0000003,10,0.000003\\n"
...                        "BVB/BTC,1542223341000,x,buy,abc,10,0.000003\\n")
>>> detect_format(p)
'ccxt'
>>> [(d.events.num_rows, d.dead.column("reason").to_pylist()) for d in decode_file(p, venue="cryptopia")]
[(1, ["price: cannot parse 'abc' as a number"])]

Every event row carries ``src`` (the ``src=`` given) and ``src_seq`` (0-based number of the
data row in the file, dead letters included; blank lines are not rows).  Dead letters' step id
is ``decode.<format>`` and their ``recv_ts`` the file's modification time (so decoding the
same file twice gives the same dead letters).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from surveil.schemas import Feed

from . import binance, canonical, ccxt, tardis
from ._events import Context, Decoded
from ._io import file_mtime_ns
from .detect import FORMATS, detect_format
from .fix import FixFileDecoder

__all__ = ["FORMATS", "DecodeStats", "DecodeStream", "Decoded", "decode_file", "detect_format"]

FEEDS = {
    "parquet": Feed.CANONICAL, "jsonl": Feed.CANONICAL, "csv": Feed.CANONICAL, "fix": Feed.FIX,
    "tardis": Feed.TARDIS, "binance": Feed.BINANCE, "ccxt": Feed.CCXT,
}


@dataclass
class DecodeStats:
    chunks: int = 0
    events: int = 0
    dead: int = 0
    skipped: int = 0  # well-formed messages that are not events (FIX heartbeats, logons, ...)


class DecodeStream(Iterator[Decoded]):
    """The chunks of one file, with running counts in :attr:`stats`."""

    def __init__(self, inner: Iterator[Decoded], path: Path, fmt: str):
        self.path, self.format = path, fmt
        self.stats = DecodeStats()
        self._inner = inner

    def __next__(self) -> Decoded:
        out = next(self._inner)
        s = self.stats
        s.chunks += 1
        s.events += out.events.num_rows
        s.dead += out.dead.num_rows
        s.skipped = getattr(self._inner, "skipped", 0)
        return out

    def close(self) -> None:
        close = getattr(self._inner, "close", None) or getattr(getattr(self._inner, "_it", None), "close", None)
        if close is not None:
            close()


def decode_file(
    path: str | Path,
    fmt: str | None = None,
    *,
    venue: str | None = None,
    src: int = 0,
    chunk_rows: int = 65_536,
    symbol: str | None = None,
) -> DecodeStream:
    """Decode ``path`` lazily, chunk by chunk.

    ``fmt``: one of FORMATS, detected when None.  ``venue``: the venue for formats whose rows
    carry none (binance, ccxt: required) and the fallback for rows without one (fix, canonical,
    tardis).  ``symbol``: Binance only, the symbol when the file name does not give it.
    Usage errors (unreadable file, unusable header, missing venue/symbol) raise ValueError or
    OSError here, before the first chunk; bad rows never raise, they become dead letters.
    """
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer (got {chunk_rows!r})")
    if not -(2**31) <= src < 2**31:
        raise ValueError(f"src must fit in int32 (got {src})")
    if symbol is not None and fmt != "binance":
        raise ValueError(f"symbol= applies to Binance files only; {fmt} rows carry their own symbol")
    ctx = Context(source=str(path), step_id=f"decode.{fmt}", feed=FEEDS[fmt].value, src=src,
                  recv_ts_ns=file_mtime_ns(path))
    kw = dict(ctx=ctx, venue=venue, chunk_rows=chunk_rows)
    if fmt == "fix":
        inner = FixFileDecoder(path, ctx, venue=venue, chunk_rows=chunk_rows)
    elif fmt == "tardis":
        inner = tardis.decode(path, **kw)
    elif fmt == "binance":
        inner = binance.decode(path, symbol=symbol, **kw)
    elif fmt == "ccxt":
        inner = ccxt.decode(path, **kw)
    elif fmt == "parquet":
        inner = canonical.decode_parquet(path, **kw)
    elif fmt == "jsonl":
        inner = canonical.decode_jsonl(path, **kw)
    else:
        inner = canonical.decode_csv_file(path, **kw)
    return DecodeStream(inner, path, fmt)
