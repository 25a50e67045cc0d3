"""FIX 4.4 drop-copy acceptor over TCP: one session per platform, feeding the replay decoder.

A platform's drop-copy initiator connects, logs on (SenderCompID = the platform, e.g. HKVATP;
TargetCompID = us) and streams ExecutionReports.  The session layer here keeps sequence
numbers, heartbeats and resends; the ExecutionReports themselves go, in batches, through
exactly the code that decodes a drop-copy file (:meth:`FixFileDecoder.decode_block`), so a
message decodes the same live and in replay.  Only ``src_seq`` (= MsgSeqNum, stable across
reconnects and restarts) and ``recv_ts`` (our receipt time) are the transport's.

Sequence numbers (FIX 4.4 session rules):

- a message above the expected MsgSeqNum opens a gap: we send one ResendRequest
  (BeginSeqNo = expected, EndSeqNo = 0, "everything") and drop later messages until the
  initiator's resends (PossDupFlag=Y) or SequenceReset-GapFill reach them;
- below the expected number with PossDupFlag=Y it is a duplicate and ignored; without it the
  session is broken beyond repair: Logout with the reason, then disconnect;
- a garbled message (bad CheckSum, BodyLength, framing) is dead-lettered and does *not*
  consume its number, so the gap it leaves is resent like any other.

The session state that matters for recovery is each session's next expected MsgSeqNum;
:meth:`FixAcceptor.snapshot` gives the value that covers exactly what :meth:`FixAcceptor.poll`
has returned, and ``start(resume=snapshot)`` makes the initiator resend the rest on logon.

>>> framer = StreamFramer()
>>> msg = encode_message([(35, "0"), (49, "A"), (56, "B"), (34, 1)])
>>> [(reason, raw[:9]) for raw, reason in framer.feed(b"junk" + msg + msg[:20])]
[('garbage between messages', b'junk'), (None, b'8=FIX.4.4')]
>>> [(reason, raw == msg) for raw, reason in framer.feed(msg[20:])]
[(None, True)]
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import EVENT_SCHEMA, Feed, dead_letters, empty_dead_letters

from .._events import Context
from .codec import SOH, FixError, encode_message, parse_message
from .decoder import FixFileDecoder

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # a drop-copy message is a few hundred bytes; more is a broken BodyLength
RESUME_OUT_SKIP = 1000  # see FixAcceptor.start
READ_BYTES = 1 << 16
BATCH_MESSAGES = 4096
_HEAD = re.compile(rb"8=([^\x01]{0,16})\x019=([^\x01]{0,12})\x01")
_NEXT = b"\x018=FIX.4.4\x019="
_TS = EVENT_SCHEMA.field("recv_ts").type


def fix_now() -> str:
    """UTC now as a FIX UTCTimestamp with milliseconds."""
    ns = time.time_ns()
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}"


# -- framing a byte stream into messages ----------------------------------------------------------

class StreamFramer:
    """Cut a TCP byte stream into FIX messages by BodyLength; check each CheckSum.

    :meth:`feed` returns ``(raw, reason)`` pairs in stream order: ``reason`` is None for a
    well-framed message with a good CheckSum, else what is wrong with ``raw`` (garbage between
    messages, a BodyLength that does not reach the CheckSum field, a CheckSum mismatch).  After
    a framing error the stream resynchronises at the next ``8=FIX``.  Bytes that may still
    become a message stay buffered (at most one message).
    """

    def __init__(self, max_body: int = MAX_BODY_BYTES):
        self.max_body = max_body
        self._buf = b""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, str | None]]:
        buf = self._buf + data if self._buf else bytes(data)  # bytes: slices are the messages, no copy
        out: list[tuple[bytes, str | None]] = []
        spans: list[tuple[int, int, int, int]] = []  # (index in out, start, checksum start, declared)
        pos, n = 0, len(buf)
        while pos < n:
            start = buf.find(b"8=FIX", pos)
            if start < 0:
                # garbage so far: wait for the next message to end it, unless it grows too long
                if n - pos > self.max_body:
                    out.append((buf[pos:n - 4], "garbage between messages"))
                    pos = n - 4  # keep a tail that may be the start of "8=FIX"
                break
            if start > pos:
                out.append((bytes(buf[pos:start]), "garbage between messages"))
                pos = start
            m = _HEAD.match(buf, pos)
            if m is None and n - pos < 40 and buf.count(SOH, pos, n) < 2:
                break  # header not complete yet
            reason = _header_problem(m, self.max_body)
            if reason is None:
                sum_at = m.end() + int(m.group(2))
                trailer = buf[sum_at:sum_at + 7]
                if n < sum_at + 7:
                    # wait for the rest, unless the next message has begun (a value holds no SOH, so
                    # "<SOH>8=FIX.4.4<SOH>9=" is a message boundary): then BodyLength is too large
                    if buf.find(_NEXT, m.end(), n) < 0:
                        break
                elif trailer[:3] == b"10=" and trailer[6] == 1 and trailer[3:6].isdigit():
                    spans.append((len(out), pos, sum_at, int(trailer[3:6])))
                    out.append((buf[pos:sum_at + 7], None))
                    pos = sum_at + 7
                    continue
                reason = "BodyLength (9) does not reach the CheckSum field"
            nxt = self._skip(buf, pos, out, reason)
            if nxt is None:
                break
            pos = nxt
        if spans:
            a = np.frombuffer(buf, np.uint8, count=pos)
            bounds = np.array([b for _, s, e, _ in spans for b in (s, e)], dtype=np.int64)
            sums = np.add.reduceat(a, bounds, dtype=np.uint8)[0::2]  # uint8 adds are mod 256
            for (i, _, _, declared), computed in zip(spans, sums.tolist()):
                if declared != computed:
                    out[i] = (out[i][0], f"CheckSum mismatch: declared {declared:03d}, computed {computed:03d}")
        self._buf = buf[pos:]
        return out

    def _skip(self, buf: bytes, pos: int, out: list, reason: str) -> int | None:
        """Dead-letter buf[pos:] up to the next ``8=FIX``; None: wait until it arrives."""
        nxt = buf.find(b"8=FIX", pos + 1)
        if nxt < 0:
            if len(buf) - pos <= self.max_body:
                return None
            nxt = len(buf)
        out.append((buf[pos:nxt], reason))
        return nxt


def _header_problem(m: re.Match | None, max_body: int) -> str | None:
    if m is None:
        return "malformed header: expected 8=FIX.4.4<SOH>9=<length><SOH>"
    if m.group(1) != b"FIX.4.4":
        return f"BeginString must be FIX.4.4, got {m.group(1).decode(errors='replace')!r}"
    if not m.group(2).isdigit() or int(m.group(2)) > max_body:
        return f"BodyLength (9) unusable: {m.group(2).decode(errors='replace')!r}"
    return None


def header(raw: bytes) -> tuple[bytes, int | None, bool]:
    """MsgType, MsgSeqNum (None if absent or not a number) and PossDupFlag of a framed message.

    Cheap on purpose (no full parse): it runs for every ExecutionReport.
    """
    t0 = raw.find(b"\x0135=") + 4
    msg_type = raw[t0:raw.find(SOH, t0)]
    i = raw.find(b"\x0134=")
    seq = None
    if i >= 0:
        v = raw[i + 4:raw.find(SOH, i + 4)]
        seq = int(v) if v.isdigit() and len(v) < 12 else None
    return msg_type, seq, b"\x0143=Y\x01" in raw


# -- per-session state ------------------------------------------------------------------------------

@dataclass
class _Session:
    comp_id: str
    src: int
    next_in: int = 1  # next expected inbound MsgSeqNum
    next_out: int = 1
    safe_in: int = 1  # next_in as of the last item handed to the queue (snapshot without a pending batch)
    polled_in: int = 1  # next_in as of the last item poll() returned
    queued: int = 0  # items of this session in the queue
    conn: "_Connection | None" = None


@dataclass
class _Item:
    session: _Session
    next_in: int
    seqs: list[int] = field(default_factory=list)  # ExecutionReports ...
    raws: list[bytes] = field(default_factory=list)
    recvs: list[int] = field(default_factory=list)
    dead: list[tuple[str, str, bytes, int]] = field(default_factory=list)  # ... or (reason, position, raw, recv_ts)
    source: str = ""


class _LiveDecoder(FixFileDecoder):
    """The file decoder's block path, without a file: blocks come from the session."""

    def __init__(self, ctx: Context, venue: str | None):  # not super().__init__: that opens a file
        self.ctx, self.venue, self.skipped = ctx, venue, 0


class _Connection:
    """One TCP connection: Logon first, then the session's messages until Logout or EOF."""

    def __init__(self, acceptor: "FixAcceptor", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.a, self.reader, self.writer = acceptor, reader, writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.session: _Session | None = None
        self.framer = StreamFramer()
        self.heartbeat_s = acceptor.heartbeat_s
        self.last_recv = self.last_send = time.monotonic()
        self.test_req_at: float | None = None
        self.resend_through = 0  # a ResendRequest is outstanding until next_in passes this
        self.resend_at = 0.0
        self.logout_sent = False
        self.closing = False
        self.batch: _Item | None = None

    @property
    def source(self) -> str:
        return f"{self.a.name}:{self.session.comp_id if self.session else self.peer}"

    # -- sending ------------------------------------------------------------------------------

    def send(self, msg_type: str, fields: list[tuple[int, object]] = (), *, seq: int | None = None,
             poss_dup: bool = False) -> None:
        s = self.session
        if self.writer.is_closing():
            return
        head = [(35, msg_type), (49, self.a.our_comp_id), (56, s.comp_id),
                (34, s.next_out if seq is None else seq), (52, fix_now())]
        if poss_dup:
            head.append((43, "Y"))
        self.writer.write(encode_message(head + list(fields)))
        if seq is None:
            s.next_out += 1
        self.last_send = time.monotonic()

    def request_resend(self, seen: int) -> None:
        s = self.session
        self.send("2", [(7, s.next_in), (16, 0)])
        self.resend_through, self.resend_at = max(self.resend_through, seen), time.monotonic()
        self.a._count("resend_requests")
        log.info("%s: gap, expected MsgSeqNum %d, got %d: ResendRequest sent", self.source, s.next_in, seen)

    def logout(self, text: str | None = None) -> None:
        if not self.logout_sent and self.session is not None:
            self.send("5", [(58, text)] if text else [])
            self.logout_sent = True

    # -- receiving ----------------------------------------------------------------------------

    async def run(self) -> None:
        timers = asyncio.ensure_future(self._timers())
        try:
            while not self.closing:
                await self.a._room()
                data = await self.reader.read(READ_BYTES)
                if not data:
                    break
                self.last_recv = time.monotonic()
                recv = time.time_ns()
                self.a._count("bytes_in", len(data))
                for raw, reason in self.framer.feed(data):
                    if reason is not None:
                        self.dead(reason, raw, recv, "stream")
                    else:
                        try:
                            self.on_message(raw, recv)
                        except FixError as e:  # a session message whose fields do not parse
                            self.dead(str(e), raw, recv, "stream")
                    if self.closing:
                        break
                self.flush()
                await self.writer.drain()
        finally:
            timers.cancel()
            self.flush()
            if self.framer.buffered and not self.closing:
                self.dead("connection closed inside a message (truncated)", bytes(self.framer._buf), time.time_ns(),
                          "stream")
                self.flush()

    def dead(self, reason: str, raw: bytes, recv: int, position: str) -> None:
        self.flush()
        s = self.session
        self.a._enqueue(_Item(s, s.next_in if s else 0, dead=[(reason, position, raw, recv)], source=self.source))

    def flush(self) -> None:
        """Hand the pending ExecutionReports to the queue (and mark the session's state safe)."""
        s = self.session
        if s is None:
            return
        b, self.batch = self.batch, None
        if b is not None:
            b.next_in = s.next_in
            self.a._enqueue(b)
        else:
            with self.a._lock:
                s.safe_in = s.next_in

    def on_message(self, raw: bytes, recv: int) -> None:
        self.a._count("messages")
        msg_type, seq, poss_dup = header(raw)
        s = self.session
        if s is None:
            return self.on_logon(raw, recv)
        position = f"MsgSeqNum {seq}"
        if seq is None:
            return self.dead("MsgSeqNum (34) missing or not a number", raw, recv, "stream")
        if self.comp_ids[0] not in raw or self.comp_ids[1] not in raw:
            self.dead(f"SenderCompID/TargetCompID do not match the session {s.comp_id}->{self.a.our_comp_id}",
                      raw, recv, position)
            return self.fatal("CompID problem")
        if msg_type == b"4" and b"\x01123=Y\x01" not in raw:
            return self.sequence_reset(raw, recv, position)
        if seq < s.next_in:
            if poss_dup:
                self.a._count("duplicates")
                return None
            self.dead(f"MsgSeqNum too low: expected {s.next_in}, received {seq} without PossDupFlag",
                      raw, recv, position)
            return self.fatal(f"MsgSeqNum too low, expecting {s.next_in} but received {seq}")
        if seq > s.next_in:
            if msg_type == b"5":
                return self.on_logout()
            if msg_type == b"2":
                self.on_resend_request(raw, recv, position)
            if self.resend_through < s.next_in or time.monotonic() - self.resend_at > self.heartbeat_s:
                self.request_resend(seq)
            else:
                self.a._count("dropped_during_resend")
            return None
        if msg_type == b"8" and b"\n" not in raw:  # a line feed would split it in the line decoder
            b = self.batch
            if b is None:
                b = self.batch = _Item(s, 0, source=self.source)
            b.seqs.append(seq)
            b.raws.append(raw)
            b.recvs.append(recv)
            s.next_in = seq + 1
            if len(b.seqs) >= BATCH_MESSAGES:
                self.flush()
            return None
        s.next_in = seq + 1
        if msg_type == b"8":
            return self.dead("ExecutionReport contains a line feed byte", raw, recv, position)
        self.on_admin(msg_type, raw, recv, position)
        return None

    def on_admin(self, msg_type: bytes, raw: bytes, recv: int, position: str) -> None:
        try:
            fields = parse_message(raw)
        except FixError as e:  # framing passed, but a field is not TAG=VALUE
            return self.dead(str(e), raw, recv, position)
        if msg_type == b"0":
            if self.test_req_at is not None and fields.get(112):
                self.test_req_at = None
        elif msg_type == b"1":
            self.send("0", [(112, fields.get(112, b""))])
        elif msg_type == b"2":
            self.on_resend_request(raw, recv, position, fields)
        elif msg_type == b"3":
            self.a._count("rejects_received")
            log.warning("%s: our message %s rejected: %s", self.source, fields.get(45), fields.get(58))
        elif msg_type == b"4":  # GapFill (reset mode is handled before sequence checks)
            new = fields.get(36, b"")
            seq = int(fields[34])
            if not new.isdigit() or int(new) <= seq:
                self.dead(f"SequenceReset-GapFill NewSeqNo (36) {new!r} must be above its MsgSeqNum {seq}",
                          raw, recv, position)
            else:
                self.session.next_in = int(new)
                self.a._count("gap_fills")
        elif msg_type == b"5":
            self.on_logout()
        elif msg_type == b"A":
            self.dead("Logon (35=A) on a session already logged on", raw, recv, position)
        else:
            self.dead(f"unsupported MsgType (35) {msg_type.decode(errors='replace')!r} on a drop-copy session",
                      raw, recv, position)
            self.send("3", [(45, fields[34].decode()), (372, msg_type), (373, 11), (58, "unsupported MsgType")])
            self.a._count("rejects_sent")
        return None

    def sequence_reset(self, raw: bytes, recv: int, position: str) -> None:
        """SequenceReset in reset mode (no GapFillFlag): NewSeqNo applies whatever the MsgSeqNum."""
        s = self.session
        new = parse_message(raw).get(36, b"")
        if not new.isdigit() or int(new) < s.next_in:
            self.dead(f"SequenceReset NewSeqNo (36) {new!r} below the expected MsgSeqNum {s.next_in}", raw, recv,
                      position)
            return
        log.warning("%s: SequenceReset from %d to %s", self.source, s.next_in, new.decode())
        s.next_in = int(new)
        self.a._count("sequence_resets")

    def on_resend_request(self, raw: bytes, recv: int, position: str, fields: dict | None = None) -> None:
        """We send only session messages, which are never resent: one GapFill covers the range."""
        fields = fields or parse_message(raw)
        begin = fields.get(7, b"")
        if not begin.isdigit():
            return self.dead("ResendRequest without a numeric BeginSeqNo (7)", raw, recv, position)
        s = self.session
        if int(begin) < s.next_out:
            self.send("4", [(123, "Y"), (36, s.next_out)], seq=int(begin), poss_dup=True)
        return None

    def on_logon(self, raw: bytes, recv: int) -> None:
        a = self.a
        try:
            fields = parse_message(raw)
        except FixError as e:
            self.dead(str(e), raw, recv, "logon")
            self.closing = True
            return
        sender = fields.get(49, b"").decode(errors="replace")
        target = fields.get(56, b"").decode(errors="replace")
        reason = None
        if fields.get(35) != b"A":
            reason = f"first message must be Logon (35=A), got 35={fields.get(35, b'').decode(errors='replace')}"
        elif sender not in a._sessions:
            reason = f"unknown SenderCompID {sender!r}; sessions: {', '.join(a._sessions)}"
        elif target != a.our_comp_id:
            reason = f"TargetCompID {target!r} is not ours ({a.our_comp_id})"
        elif a._sessions[sender].conn is not None:
            reason = f"session {sender} is already logged on from another connection"
        elif not fields.get(34, b"").isdigit():
            reason = "Logon without a numeric MsgSeqNum (34)"
        if reason is not None:
            self.dead(reason, raw, recv, "logon")
            log.warning("%s: logon refused: %s", self.source, reason)
            self.closing = True
            return
        s = self.session = a._sessions[sender]
        s.conn = self
        self.comp_ids = (b"\x0149=%b\x01" % sender.encode(), b"\x0156=%b\x01" % a.our_comp_id.encode())
        hb = fields.get(108, b"")
        self.heartbeat_s = int(hb) if hb.isdigit() and int(hb) > 0 else a.heartbeat_s
        reset = fields.get(141) == b"Y"
        if reset:
            s.next_in = s.next_out = 1
        a._count("logons")
        seq = int(fields[34])
        reply = [(98, 0), (108, self.heartbeat_s)] + ([(141, "Y")] if reset else [])
        self.send("A", reply)
        log.info("%s: logged on from %s, MsgSeqNum %d (expected %d)", self.source, self.peer, seq, s.next_in)
        if seq < s.next_in:
            self.dead(f"Logon MsgSeqNum too low: expected {s.next_in}, received {seq}", raw, recv, f"MsgSeqNum {seq}")
            self.fatal(f"MsgSeqNum too low, expecting {s.next_in} but received {seq}")
        elif seq > s.next_in:
            self.request_resend(seq)
        else:
            s.next_in = seq + 1

    def on_logout(self) -> None:
        self.a._count("logouts")
        self.logout()
        self.closing = True

    def fatal(self, text: str) -> None:
        self.logout(text)
        self.closing = True

    async def _timers(self) -> None:
        """Heartbeat when we have been quiet; TestRequest, then disconnect, when the peer is."""
        while True:
            await asyncio.sleep(min(1.0, self.heartbeat_s / 4))
            if self.session is None:
                if time.monotonic() - self.last_recv > max(self.heartbeat_s, 5):
                    self.writer.close()  # no Logon in time
                    return
                continue
            now, hb = time.monotonic(), self.heartbeat_s
            if now - self.last_send >= hb:
                self.send("0")
            if self.test_req_at is None and now - self.last_recv > hb * 1.2:
                self.send("1", [(112, f"T{int(now * 1000)}")])
                self.test_req_at = now
                self.a._count("test_requests")
            elif self.test_req_at is not None and now - self.last_recv > hb * 2.4:
                log.warning("%s: no answer to TestRequest: disconnecting", self.source)
                self.writer.close()
                return
            if self.test_req_at is not None and self.last_recv > self.test_req_at:
                self.test_req_at = None
            s = self.session
            if s.next_in <= self.resend_through and now - self.resend_at > hb:
                self.request_resend(self.resend_through)  # the resend did not come: ask again


# -- the acceptor --------------------------------------------------------------------------------

class FixAcceptor:
    """Listen for the platforms' drop-copy sessions; :meth:`poll` gives decoded batches.

    ``sessions``: the SenderCompIDs allowed to log on (one session each, e.g. ``["HKVATP",
    "OVSAFF"]``); events carry ``src = src_base + index in sessions``.  ``max_pending``
    bounds the messages decoded-or-waiting in memory: beyond it the sockets are not read, so
    TCP flow control pushes back on the initiators.
    """

    def __init__(self, host: str, port: int, *, sessions: list[str], our_comp_id: str = "SURVEIL",
                 heartbeat_s: int = 30, src_base: int = 0, name: str = "fix", venue: str | None = None,
                 max_pending: int = 65_536):
        if not sessions or len(set(sessions)) != len(sessions) or not all(isinstance(s, str) and s for s in sessions):
            raise ValueError(f"sessions must be distinct non-empty SenderCompIDs (got {sessions!r})")
        if not isinstance(heartbeat_s, int) or heartbeat_s < 1:
            raise ValueError(f"heartbeat_s must be a positive integer (got {heartbeat_s!r})")
        self.host, self.port, self.our_comp_id = host, port, our_comp_id
        self.heartbeat_s, self.src_base, self.name, self.venue = heartbeat_s, src_base, name, venue
        self.max_pending = max_pending
        self._sessions = {c: _Session(c, src_base + i) for i, c in enumerate(sessions)}
        self._queue: deque[_Item] = deque()
        self._pending = 0  # messages in the queue
        self._lock = threading.Lock()
        self._stats: dict[str, int] = dict.fromkeys(
            ("messages", "events", "dead", "resend_requests", "logons", "logouts", "disconnects", "duplicates",
             "gap_fills", "sequence_resets", "test_requests", "rejects_sent", "rejects_received",
             "dropped_during_resend", "bytes_in"), 0)
        self._decoders = {s.comp_id: _LiveDecoder(Context(f"{name}:{s.comp_id}", f"decode.{Feed.FIX.value}",
                                                          Feed.FIX.value, s.src, 0), venue)
                          for s in self._sessions.values()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        self._room_event: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, resume: dict | None = None) -> None:
        """Bind and listen in a background thread; ``resume``: a previous :meth:`snapshot`.

        On resume our outbound MsgSeqNum jumps RESUME_OUT_SKIP past the snapshot's: session
        messages we sent after the snapshot died with the process, and a number the initiator
        has already seen would be fatal (too low), while a jump is a gap it asks us to fill.
        """
        if self._thread is not None:
            raise RuntimeError("FixAcceptor already started")
        for comp_id, st in (resume or {}).get("sessions", {}).items():
            s = self._sessions.get(comp_id)
            if s is not None:
                s.next_in = s.safe_in = s.polled_in = int(st["next_in"])
                s.next_out = int(st["next_out"]) + RESUME_OUT_SKIP
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"{self.name}-acceptor", daemon=True)
        self._thread.start()
        ready.wait(10)
        if self._error is not None:
            raise OSError(f"FIX acceptor cannot listen on {self.host}:{self.port}: {self._error}") from self._error
        if self._address is None:
            raise TimeoutError(f"FIX acceptor did not start listening on {self.host}:{self.port} within 10 s")

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("FixAcceptor not started")
        return self._address

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._room_event, self._stop = asyncio.Event(), asyncio.Event()
        server = await asyncio.start_server(self._on_client, self.host, self.port)
        self._address = server.sockets[0].getsockname()[:2]
        ready.set()
        await self._stop.wait()
        server.close()
        conns = [s.conn for s in self._sessions.values() if s.conn is not None]
        for c in conns:
            c.logout("acceptor shutting down")
        deadline = time.monotonic() + 2.0  # the initiators' Logout replies end their connections
        while any(s.conn is not None for s in self._sessions.values()) and time.monotonic() < deadline:
            self._room_event.set()
            await asyncio.sleep(0.01)
        for s in self._sessions.values():
            if s.conn is not None:
                s.conn.writer.close()
        await server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        try:
            await conn.run()
        except (ConnectionError, OSError) as e:
            log.info("%s: connection lost: %s", conn.source, e)
        except Exception:  # noqa: BLE001 - a bug in one session must not stop the others
            log.exception("%s: session failed", conn.source)
        finally:
            self._count("disconnects")
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                pass
            writer.close()

    def close(self) -> None:
        """Logout the open sessions (waiting briefly for their replies) and stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(self._stop.set)
        thread.join(10)

    # -- queue and backpressure -------------------------------------------------------------------

    def _enqueue(self, item: _Item) -> None:
        with self._lock:
            self._queue.append(item)
            self._pending += len(item.seqs) + len(item.dead)
            if item.session is not None:
                item.session.queued += 1
                item.session.safe_in = item.next_in

    async def _room(self) -> None:
        while self._pending >= self.max_pending and not self._stop.is_set():
            self._room_event.clear()
            await self._room_event.wait()

    def _count(self, key: str, n: int = 1) -> None:
        self._stats[key] = self._stats.get(key, 0) + n

    def poll(self, max_items: int = 64) -> list[tuple[str, pa.Table]]:
        """Up to ``max_items`` queued batches, decoded: ``("events", t)`` or ``("dead", t)``."""
        with self._lock:
            items = [self._queue.popleft() for _ in range(min(max_items, len(self._queue)))]
            for it in items:
                if it.session is not None:
                    it.session.queued -= 1
                    it.session.polled_in = it.next_in
        if not items:
            return []
        out: list[tuple[str, pa.Table]] = []
        i = 0
        while i < len(items):  # consecutive batches of one session decode together
            it = items[i]
            if it.dead:
                out.append(("dead", self._dead_table(it.source, it.dead)))
                i += 1
                continue
            j = i + 1
            while j < len(items) and not items[j].dead and items[j].session is it.session:
                j += 1
            group = items[i:j]
            self._decode(it.session, [x for g in group for x in g.seqs], [x for g in group for x in g.raws],
                         [x for g in group for x in g.recvs], out)
            i = j
        n = sum(len(it.seqs) + len(it.dead) for it in items)
        with self._lock:
            self._pending -= n
        if self._loop is not None and self._room_event is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._room_event.set)
            except RuntimeError:  # loop closed meanwhile
                pass
        return out

    def _dead_table(self, source: str, rows: list[tuple[str, str, bytes, int]]) -> pa.Table:
        self._count("dead", len(rows))
        t = dead_letters(source, f"{self.name}.session", [r[:3] for r in rows], 0)
        return t.set_column(0, "recv_ts", pa.array([r[3] for r in rows], pa.int64()).cast(_TS))

    def _decode(self, s: _Session, seqs: list[int], raws: list[bytes], recvs: list[int],
                out: list[tuple[str, pa.Table]]) -> None:
        """ExecutionReports through the file decoder; then MsgSeqNum and receipt time stamped."""
        decoded, _ = self._decoders[s.comp_id].decode_block(b"\n".join(raws) + b"\n", 1, 0)
        seq_arr, recv_arr = np.asarray(seqs, np.int64), np.asarray(recvs, np.int64)
        ev = decoded.events
        if ev.num_rows:
            idx = ev.column("src_seq").to_numpy()  # the decoder numbers the block's lines from 0
            ev = ev.set_column(ev.schema.get_field_index("src_seq"), EVENT_SCHEMA.field("src_seq"),
                               pa.array(seq_arr[idx], pa.int64()))
            ev = ev.set_column(ev.schema.get_field_index("recv_ts"), EVENT_SCHEMA.field("recv_ts"),
                               pa.array(recv_arr[idx], pa.int64()).cast(_TS))
            self._count("events", ev.num_rows)
            out.append(("events", ev))
        dead = decoded.dead
        if dead.num_rows:
            line = pc.cast(pc.utf8_slice_codeunits(dead.column("position"), 5), pa.int64()).to_numpy() - 1
            dead = dead.set_column(0, "recv_ts", pa.array(recv_arr[line], pa.int64()).cast(_TS))
            dead = dead.set_column(4, "position", pa.array([f"MsgSeqNum {q}" for q in seq_arr[line].tolist()]))
            self._count("dead", dead.num_rows)
            out.append(("dead", dead))

    # -- state ------------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """Per session: the next inbound MsgSeqNum not yet returned by :meth:`poll`, and our outbound one."""
        with self._lock:
            return {"sessions": {c: {"next_in": s.polled_in if s.queued else s.safe_in, "next_out": s.next_out}
                                 for c, s in self._sessions.items()}}

    def stats(self) -> dict[str, int]:
        out = dict(self._stats)
        out["pending"] = self._pending
        out["connected"] = sum(s.conn is not None for s in self._sessions.values())
        return out

    def connected(self) -> list[str]:
        """The sessions logged on now."""
        return [c for c, s in self._sessions.items() if s.conn is not None]
