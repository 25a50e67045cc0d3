"""Reading a file as blocks of whole lines, gzip-compressed or not, in constant memory.

Every text decoder reads through :class:`LineReader`: it hands out blocks of at most
``max_lines`` complete lines (each block ends with ``b"\\n"``), so a decoder can parse a
block with one vectorised call and still find the exact bytes of any line in it.

Gzip is recognised by its magic bytes, not the file name, and decompressed by Arrow
(about three times faster than the ``gzip`` module).  A stream that breaks off midway
(a truncated download, a file still being written) ends the blocks and leaves the
reason in :attr:`LineReader.truncated`, so the lines before the break are kept.

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "x.csv")
>>> _ = open(p, "wb").write(b"a,b\\n1,2\\n3,4\\n5,6")
>>> r = LineReader(p, max_lines=2)
>>> r.read_header()
b'a,b'
>>> [(b.first_line, b.n_lines, b.data) for b in r.blocks()]
[(2, 2, b'1,2\\n3,4\\n'), (4, 1, b'5,6\\n')]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import pyarrow as pa

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
_MIN_READ = 1 << 16
_MAX_READ = 1 << 28  # one read never asks for more than 256 MiB, whatever chunk_rows says


class Block(NamedTuple):
    data: bytes  # whole lines, always ending with b"\n"
    first_line: int  # 1-based line number of the block's first line in the file
    n_lines: int


class Truncated(NamedTuple):
    reason: str
    line: int  # line number where the stream broke off
    raw: bytes  # the incomplete last line received, if any


def head_bytes(path: str | Path, n: int = 1 << 16) -> bytes:
    """The first ``n`` bytes of the file's content (decompressed when gzip)."""
    with open_stream(path) as s:
        try:
            return s.read(n)
        except OSError as e:
            raise OSError(f"{path}: cannot read: {e}") from e


def open_stream(path: str | Path):
    """Open ``path`` for binary reading, decompressing gzip when the magic bytes say so."""
    path = Path(path)
    with open(path, "rb") as f:  # raises FileNotFoundError / PermissionError naming the file
        magic = f.read(2)
    if magic == GZIP_MAGIC:
        return pa.input_stream(str(path), compression="gzip")
    return open(path, "rb")


def file_mtime_ns(path: str | Path) -> int:
    return os.stat(path).st_mtime_ns


def nth_newline_end(data: bytes, n: int) -> int:
    """Offset just past the n-th (1-based) newline in ``data``."""
    nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    return int(nl[n - 1]) + 1


def split_lines(block: bytes) -> list[bytes]:
    """A block's lines without their terminators (``\\n`` or ``\\r\\n``)."""
    lines = block.split(b"\n")
    lines.pop()  # a block ends with b"\n"
    if b"\r" in block:
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    return lines


class LineReader:
    """Blocks of at most ``max_lines`` whole lines from a (possibly gzipped) file."""

    def __init__(self, path: str | Path, *, max_lines: int):
        if max_lines < 1:
            raise ValueError(f"chunk_rows must be at least 1 (got {max_lines})")
        self.path = Path(path)
        self.max_lines = max_lines
        self.truncated: Truncated | None = None
        self._stream = open_stream(path)
        self._pending = b""
        self._eof = False
        self._line = 1
        self._bytes_per_line = 80.0
        self._started = False

    def close(self) -> None:
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n: int) -> bytes:
        if self._eof:
            return b""
        try:
            chunk = self._stream.read(n)
        except OSError as e:  # gzip stream broken midway: keep what came before
            self._eof = True
            self.truncated = Truncated(f"compressed stream is truncated or corrupt: {e}", self._line, b"")
            return b""
        if not chunk:
            self._eof = True
        return chunk

    def _fill(self, size: int) -> None:
        parts, have = [self._pending], len(self._pending)
        while have < size and not self._eof:
            chunk = self._read(max(size - have, _MIN_READ))
            parts.append(chunk)
            have += len(chunk)
        self._pending = b"".join(parts)

    def read_header(self) -> bytes | None:
        """Consume and return the first line (BOM and terminator removed); None if the file is empty."""
        line = self.peek_line()
        if line is None:
            return None
        cut = self._pending.find(b"\n")
        self._pending = b"" if cut < 0 else self._pending[cut + 1:]
        self._line += 1
        return line

    def peek_line(self) -> bytes | None:
        """The first line without consuming it (BOM and terminator removed)."""
        if not self._started:
            self._started = True
            self._fill(_MIN_READ)
            if self._pending.startswith(BOM):
                self._pending = self._pending[len(BOM):]
        size = _MIN_READ
        while b"\n" not in self._pending and not self._eof:
            size *= 2
            self._fill(size)
        if self.truncated is not None and not self._pending:
            raise OSError(f"{self.path}: {self.truncated.reason}")
        if not self._pending:
            return None
        line = self._pending.split(b"\n", 1)[0]
        return line[:-1] if line.endswith(b"\r") else line

    def blocks(self) -> Iterator[Block]:
        if not self._started:
            self.peek_line()
        while True:
            want = int(min(max(self.max_lines * self._bytes_per_line * 0.95, 256), _MAX_READ))
            self._fill(want)
            data = self._pending
            if not data:
                return
            if self._eof:
                if self.truncated is not None:
                    cut = data.rfind(b"\n") + 1
                    if cut < len(data):
                        self.truncated = self.truncated._replace(raw=data[cut:])
                    data = data[:cut]
                    if not data:
                        self._pending = b""
                        return
                elif not data.endswith(b"\n"):
                    data += b"\n"
                rest = b""
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than we guessed: read on until it ends
                    self._bytes_per_line = max(self._bytes_per_line * 2, len(data) / self.max_lines * 2)
                    continue
                data, rest = data[:cut], data[cut:]
            n = data.count(b"\n")
            if n > self.max_lines:
                cut = nth_newline_end(data, self.max_lines)
                data, rest, n = data[:cut], data[cut:] + rest, self.max_lines
            self._pending = rest
            self._bytes_per_line = 0.5 * self._bytes_per_line + 0.5 * (len(data) / n)
            if self.truncated is not None:
                self.truncated = self.truncated._replace(line=self._line + n)
            yield Block(data, self._line, n)
            self._line += n
