"""Tailing a directory of files the platform keeps appending to: FIX drop-copy logs, canonical JSONL.

The daemon polls a :class:`TailFeed`; each poll reads what was appended since the last one and
returns ``("events", table)`` / ``("dead", table)`` items decoded by the same code as
:func:`connectors.decode_file` (so a tailed file yields exactly the rows, ``src_seq`` and dead
letters that decoding the finished file would).

* Only complete records are consumed: a record ends with LF (FIX logs and JSONL are one record a
  line); a half-written last line waits for the next poll.
* New files matching ``pattern`` are picked up, in name order.  Each file name gets a stable
  index in the order names were first seen (sorted within one scan); ``src = src_base + index``
  and ``src_seq`` numbers the file's non-blank lines, as the file decoders do.
* A file that shrinks (truncated in place) is read again from byte 0 after a dead-letter notice,
  never silently.  A file replaced under its name (rotation by rename, ``tail -F`` style) is first
  read to its end through the handle still open on it, then the new file is read from 0 after a
  notice.  ``src_seq`` keeps counting across a rewrite, so (src, src_seq) never repeats.  A
  rotated file that reappears under another matching name (``x.log`` → ``x.log.1``) continues
  where it was left, so nothing is read twice.
* :meth:`snapshot` holds, per file, the byte offset just past the last complete record returned
  (plus its line and record numbers and the file's identity): :meth:`start` with it resumes
  exactly, without loss or repetition.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> with open(os.path.join(d, "a.jsonl"), "wb") as f:
...     _ = f.write(b'{"kind":"trade","ts":1,"venue":"X","venue_symbol":"A","price":1,"qty":1}\\n{"kind":"tr')
>>> feed = TailFeed(d, "*.jsonl", src_base=10); feed.start()
>>> [(k, t.num_rows) for k, t in feed.poll()], feed.snapshot()["files"]["a.jsonl"]["offset"]
([('events', 1)], 73)
>>> feed.close()
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from surveil.schemas import Feed

from ._chunks import FixBlocks, json_rows
from ._events import Context, Decoded, DeadRow, dead_only
from ._io import BOM, split_lines
from .detect import sniff

__all__ = ["TAIL_FORMATS", "TailFeed"]

TAIL_FORMATS = {"fix": Feed.FIX.value, "jsonl": Feed.CANONICAL.value}
CHUNK_BYTES = 8 << 20  # at most this much of one file per poll (a longer line is read whole)
_SNAPSHOT_VERSION = 1


@dataclass
class _File:
    """Where one file name stands; everything here goes into the snapshot."""

    name: str
    index: int
    fmt: str | None = None  # decided from the first complete line when not given
    offset: int = 0  # byte just past the last complete record returned
    line: int = 1  # line number at ``offset``
    seq: int = 0  # src_seq of the next record
    ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file being read
    gone: bool = False  # the name vanished (a rotation's rename); reading resumes when it reappears
    failed: str | None = None  # why this file cannot be tailed (its format); reported once


class TailFeed:
    def __init__(self, directory: str, pattern: str = "*", *, fmt: str | None = None, src_base: int = 0,
                 name: str = "tail", venue: str | None = None):
        if fmt is not None and fmt not in TAIL_FORMATS:
            raise ValueError(f"cannot tail {fmt!r} files; expected one of {', '.join(TAIL_FORMATS)}")
        if not 0 <= src_base < 2**31:
            raise ValueError(f"src_base must fit in int32 (got {src_base})")
        self.directory, self.pattern, self.fmt = Path(directory), pattern, fmt
        self.src_base, self.name, self.venue = src_base, name, venue
        self._files: dict[str, _File] = {}
        self._retired: dict[tuple[int, int], tuple[int, int, int]] = {}  # rotated-away identity -> offset, line, seq
        self._handles: dict[str, object] = {}
        self._fix: dict[str, FixBlocks] = {}
        self._pending: dict[str, list[Decoded]] = {}  # what a rotation found, until the file's turn
        self._stats = dict(files=0, events=0, dead=0, skipped=0, bytes=0, truncations=0, rotations=0)
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, resume: dict | None = None) -> None:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"tail: {self.directory} is not a directory")
        if resume is not None:
            if resume.get("version") != _SNAPSHOT_VERSION:
                raise ValueError(f"tail snapshot version {resume.get('version')!r} is not {_SNAPSHOT_VERSION}")
            self._files = {n: _File(**{**s, "ident": tuple(s["ident"]) if s["ident"] else None})
                           for n, s in resume["files"].items()}
            self._retired = {tuple(k): tuple(v) for k, v in resume["retired"]}
        self._started = True

    def snapshot(self) -> dict:
        return {"version": _SNAPSHOT_VERSION, "files": {n: asdict(f) for n, f in self._files.items()},
                "retired": [(k, v) for k, v in self._retired.items()]}

    def stats(self) -> dict[str, int]:
        return {**self._stats, "files": len(self._files)}

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    # -- polling ---------------------------------------------------------------------------
    def poll(self, max_items: int = 64) -> list[tuple[str, pa.Table]]:
        """New complete records of every file since the last poll; never waits.

        Each file read gives at most one events and one dead-letter item; files are visited in
        name order until ``max_items`` would be exceeded (the rest waits for the next poll).
        """
        if not self._started:
            raise RuntimeError("TailFeed.poll() before start()")
        present = self._scan()
        out: list[tuple[str, pa.Table]] = []
        for name in sorted(self._files):
            if out and len(out) + 2 > max_items and name not in self._pending:
                continue  # a rotation's drained records are returned now: its offsets have moved on
            f = self._files[name]
            if f.failed is not None and f.ident == present.get(name):
                continue
            parts = self._step(f, present.get(name))
            events = [p.events for p in parts if p.events.num_rows]
            dead = [p.dead for p in parts if p.dead.num_rows]
            if events:
                t = pa.concat_tables(events)
                self._stats["events"] += t.num_rows
                out.append(("events", t))
            if dead:
                t = pa.concat_tables(dead)
                self._stats["dead"] += t.num_rows
                out.append(("dead", t))
        return out

    def _scan(self) -> dict[str, tuple[int, int]]:
        """Identity of every matching file now; new names get the next indexes, in name order."""
        present = {}
        for p in self.directory.glob(self.pattern):
            try:
                st = p.stat()
            except FileNotFoundError:  # removed between listing and stat
                continue
            if p.is_file():
                present[p.name] = (st.st_dev, st.st_ino)
        for f in self._files.values():
            fh = self._handles.get(f.name)
            if fh is not None and present.get(f.name) != f.ident:
                self._pending[f.name] = self._rotated(f, fh, present.get(f.name))
            elif fh is None and f.ident is not None and not f.gone and present.get(f.name) != f.ident:
                # renamed or replaced while no handle was open on it (the feed was stopped): the old
                # file may reappear under another name and continue there; this name starts over
                self._retired[f.ident] = (f.offset, f.line, f.seq)
                self._stats["rotations"] += 1
                f.gone = True
        for name in sorted(set(present) - set(self._files)):
            f = _File(name, index=len(self._files), fmt=self.fmt)
            if f.index + self.src_base >= 2**31:
                raise ValueError(f"tail {self.directory}: too many files for src_base {self.src_base}")
            moved = self._retired.pop(present[name], None)
            if moved is not None:  # a rotated file under its new name: continue, do not read it twice
                f.offset, f.line, f.seq = moved
                f.ident = present[name]
            self._files[name] = f
        return present

    def _ctx(self, f: _File) -> Context:
        return Context(source=str(self.directory / f.name), step_id=f"{self.name}.{f.fmt or 'detect'}",
                       feed=TAIL_FORMATS.get(f.fmt, Feed.CANONICAL.value), src=self.src_base + f.index,
                       recv_ts_ns=time.time_ns())

    def _notice(self, f: _File, reason: str, position: str, raw: bytes = b"") -> Decoded:
        return dead_only(self._ctx(f), [DeadRow(f.seq, reason, position, raw)])

    def _step(self, f: _File, ident: tuple[int, int] | None) -> list[Decoded]:
        parts = self._pending.pop(f.name, [])
        fh = self._handles.get(f.name)
        if ident is None:
            return parts
        if fh is None:
            try:
                fh = open(self.directory / f.name, "rb")
            except FileNotFoundError:  # removed since the scan: the next scan will tell
                return parts
            except OSError as e:  # unreadable: say so once (failed files are retried only when replaced)
                f.failed, f.ident = f"cannot read {f.name}: {e}", ident
                return parts + [self._notice(f, f.failed, "byte 0")]
            actual = os.fstat(fh.fileno())
            actual = (actual.st_dev, actual.st_ino)
            if f.gone or (f.ident is not None and f.ident != actual):  # replaced since the scan, or before
                if not f.gone:
                    self._retired[f.ident] = (f.offset, f.line, f.seq)
                    self._stats["rotations"] += 1
                parts.append(self._notice(f, "file replaced (rotated); reading the new file from the start",
                                          f"byte {f.offset}"))
                self._rewind(f, actual)
            f.ident = actual
            self._handles[f.name] = fh
        size = os.fstat(fh.fileno()).st_size
        if size < f.offset:
            parts.append(self._notice(f, f"file shrank from {f.offset} to {size} bytes (truncated); "
                                         f"reading it again from the start", f"byte {size}"))
            self._stats["truncations"] += 1
            self._rewind(f, f.ident)
        parts += self._read(f, fh, final=False)
        return parts

    def _rotated(self, f: _File, fh, ident: tuple[int, int] | None) -> list[Decoded]:
        """The name no longer points at the open file: read that file to its end, then let go of it."""
        parts = self._read(f, fh, final=True)
        fh.close()
        del self._handles[f.name]
        self._retired[f.ident] = (f.offset, f.line, f.seq)  # for the name it may reappear under
        self._stats["rotations"] += 1
        if ident is None:
            f.gone = True
            parts.append(self._notice(f, "file removed or renamed (rotated); waiting for it to reappear",
                                      f"byte {f.offset}"))
        else:
            parts.append(self._notice(f, "file replaced (rotated); reading the new file from the start",
                                      f"byte {f.offset}"))
            self._rewind(f, ident)
        return parts

    def _rewind(self, f: _File, ident: tuple[int, int] | None) -> None:
        """Read the file under this name from byte 0; src_seq keeps counting (no (src, src_seq) repeats)."""
        f.offset, f.line, f.ident, f.gone, f.failed = 0, 1, ident, False, None
        if self.fmt is None:
            f.fmt = None
        self._fix.pop(f.name, None)

    def _read(self, f: _File, fh, *, final: bool) -> list[Decoded]:
        """Whole lines from ``f.offset``; with ``final`` (the file is rotated away) the rest too."""
        fh.seek(f.offset)
        data = fh.read() if final else fh.read(CHUNK_BYTES)
        while data and b"\n" not in data:  # one line longer than a chunk: read on to its end
            more = fh.read(CHUNK_BYTES)
            if not more:
                break
            data += more
        cut = data.rfind(b"\n") + 1
        parts = []
        if cut:
            parts += self._decode(f, data[:cut])
        if final and cut < len(data):
            rest = data[cut:]
            parts.append(self._notice(f, "incomplete last record when the file was rotated", f"line {f.line}", rest))
            f.offset += len(rest)
        return parts

    def _decode(self, f: _File, block: bytes) -> list[Decoded]:
        parts = []
        n_lines = block.count(b"\n")
        if f.offset == 0 and block.startswith(BOM):
            block = block[len(BOM):]
            f.offset += len(BOM)
        if f.fmt is None and f.failed is None:
            try:
                fmt = sniff(self.directory / f.name, block)
            except ValueError as e:
                fmt, why = None, str(e)
            else:
                why = None if fmt in TAIL_FORMATS else f"{f.name}: {fmt} files cannot be tailed (only fix, jsonl)"
            if why is None and fmt is not None:
                f.fmt = fmt
            elif block.strip():  # blank lines alone decide nothing yet
                f.failed = why
                return [self._notice(f, why, "line 1")]
        if f.failed is not None:
            return parts
        ctx = self._ctx(f)
        if f.fmt == "fix":
            dec = self._fix.setdefault(f.name, FixBlocks(ctx, venue=self.venue))
            dec.ctx = ctx
            before = dec.skipped
            out, n_rows = dec.decode_block(block, f.line, f.seq)
            self._stats["skipped"] += dec.skipped - before
        elif f.fmt == "jsonl":
            lines = split_lines(block)
            idx = [i for i, ln in enumerate(lines) if ln]  # empty lines are not records (as in files)
            n_rows = len(idx)
            out = json_rows([lines[i] for i in idx], range(f.seq, f.seq + n_rows),
                            lambda r, idx=idx, first=f.line: f"line {first + idx[r]}", ctx, self.venue)
        else:  # only blank lines so far: nothing to decode, nothing to wait for
            out, n_rows = dead_only(ctx, []), 0
        f.offset += len(block)
        f.line += n_lines
        f.seq += n_rows
        self._stats["bytes"] += len(block)
        return parts + [out]
