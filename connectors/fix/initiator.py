"""FIX 4.4 drop-copy initiator: the platform's side of the session, for tests, benchmarks and demos.

It connects, logs on, streams ExecutionReports, answers TestRequests and honours
ResendRequests from the message store (application messages again with PossDupFlag=Y and
OrigSendingTime; session messages and anything no longer stored as SequenceReset-GapFill).
:meth:`FixInitiator.drop` cuts the connection without Logout and :meth:`FixInitiator.connect`
logs on again with the next sequence number, as a platform's engine does after a network
failure.  :meth:`FixInitiator.lose` makes the next messages vanish in transit (numbered and
stored, not sent), which opens a sequence gap.

Message bodies are the fields after the standard header (``11=...<SOH>37=...<SOH>``);
:func:`bodies_from_events` builds them from canonical order-event rows, and
:func:`bodies_from_drop_copy` from a drop-copy file such as the scenario generator writes.

>>> body, sent = bodies_from_lines([encode_message([(35, "8"), (49, "HKVATP"), (56, "SURVEIL"), (34, 7),
...                                                  (52, "20240105-09:30:00.000"), (11, "C1"), (54, "1")])])[0]
>>> body, sent
(b'11=C1\\x0154=1\\x01', '20240105-09:30:00.000')
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from .codec import SOH, FixError, encode_message, parse_message
from .session import StreamFramer, fix_now, header

log = logging.getLogger(__name__)

_HEADER_TAGS = {8, 9, 10, 34, 35, 43, 49, 52, 56, 97, 122}


def bodies_from_lines(lines: Iterable[bytes]) -> list[tuple[bytes, str | None]]:
    """ExecutionReports of FIX lines → (body, original SendingTime); other messages skipped.

    Lines that are not well-formed FIX are skipped too: the producer sends what a platform
    would, and tests that need bad bytes send them with :meth:`FixInitiator.send_raw`.
    """
    out = []
    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line:
            continue
        try:
            fields = parse_message(line[line.find(b"8=FIX"):] if b"8=FIX" in line else line)
        except FixError:
            continue
        if fields.get(35) != b"8":
            continue
        body = b"".join(b"%d=%b\x01" % (t, v) for t, v in fields.items() if t not in _HEADER_TAGS)
        sent = fields.get(52)
        out.append((body, sent.decode() if sent else None))
    return out


def bodies_from_drop_copy(path: str | Path) -> list[tuple[bytes, str | None]]:
    """The ExecutionReports of a drop-copy file (one message per line)."""
    return bodies_from_lines(Path(path).read_bytes().split(b"\n"))


def bodies_from_events(orders: pa.Table, platform: str) -> list[tuple[bytes, str | None]]:
    """Canonical order-event rows (EVENT_SCHEMA, kind "order") → ExecutionReport bodies.

    Encoded by the scenario generator's drop-copy writer; OrderQty/Price of a fill are taken
    from the fill itself (the rows do not carry the order's), which the decoder does not read.
    """
    from replay.scenario.fix import FIX_COLUMNS, execution_reports  # the demo producer's encoder

    aux = pa.table({"order_qty": orders.column("qty"), "order_price": orders.column("price"),
                    "cum_qty": pa.nulls(orders.num_rows, pa.float64())})
    lines = execution_reports(orders.select(list(FIX_COLUMNS)), aux, platform)
    return bodies_from_lines(line.encode() for line in lines.to_pylist())


class FixInitiator:
    """One drop-copy session to an acceptor; thread-safe sends, a reader thread for the session."""

    def __init__(self, host: str, port: int, *, sender: str, target: str = "SURVEIL", heartbeat_s: int = 30,
                 store_limit: int | None = None):
        self.host, self.port, self.sender, self.target = host, port, sender, target
        self.heartbeat_s = heartbeat_s
        self.next_out = 1
        self.next_in = 1
        self.store_limit = store_limit
        # seq -> (body, original SendingTime) of application messages, for resends
        self._store: dict[int, tuple[bytes, str]] = {}
        self.sent: list[bytes] = []  # every message as first transmitted (tests compare decodings)
        self.received: list[dict[int, bytes]] = []
        self.stats = dict.fromkeys(("resend_requests_received", "resent", "gap_fills_sent", "test_requests_answered",
                                    "heartbeats_sent", "logouts_received", "resend_requests_sent"), 0)
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._logged_on = False
        self._logout_sent = False
        self._lose = 0
        self._last_send = time.monotonic()
        self.closed_reason: str | None = None

    # -- connection -------------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0, *, reset: bool = False, address: tuple[str, int] | None = None) -> None:
        """Connect and log on (``reset``: ResetSeqNumFlag, both sides start again at 1)."""
        if address is not None:
            self.host, self.port = address
        if self._reader is not None and self._reader.is_alive():
            raise RuntimeError("already connected")
        if reset:
            self.next_out = self.next_in = 1
            self._store.clear()
        self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._sock.settimeout(0.1)
        self._logged_on, self._logout_sent, self.closed_reason = False, False, None
        self._reader = threading.Thread(target=self._read_loop, args=(self._sock,), daemon=True,
                                        name=f"fix-initiator-{self.sender}")
        self._reader.start()
        self._send_admin("A", [(98, 0), (108, self.heartbeat_s)] + ([(141, "Y")] if reset else []))
        if not self.wait_for(lambda: self._logged_on or self.closed_reason is not None, timeout):
            self.drop()
            raise TimeoutError(f"no Logon reply from {self.host}:{self.port} within {timeout} s")
        if not self._logged_on:
            raise ConnectionError(f"logon refused by {self.host}:{self.port}: {self.closed_reason}")

    @property
    def logged_on(self) -> bool:
        return self._logged_on

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked whenever a message arrives)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def drop(self) -> None:
        """Cut the connection at once, without Logout (a network failure)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5)
        self._logged_on = False

    def logout(self, timeout: float = 5.0) -> bool:
        """Send Logout, wait for the acceptor's, close; whether the reply came."""
        if self._sock is None or not self._logged_on:
            return False
        self._logout_sent = True
        self._send_admin("5")
        ok = self.wait_for(lambda: self.closed_reason is not None, timeout)
        self.drop()
        return ok

    def test_request(self, req_id: str) -> None:
        """Send a TestRequest; the acceptor's Heartbeat carries ``req_id`` back (in :attr:`received`)."""
        self._send_admin("1", [(112, req_id)])

    # -- sending ----------------------------------------------------------------------------------

    def lose(self, n: int) -> None:
        """The next ``n`` application messages are numbered and stored but never reach the wire."""
        self._lose += n

    def send_bodies(self, bodies: Iterable[tuple[bytes, str | None] | bytes], msg_type: str = "8") -> list[int]:
        """Send application messages (one ``sendall`` for all); returns their MsgSeqNums."""
        seqs, wire = [], []
        with self._send_lock:
            for item in bodies:
                body, sending = item if isinstance(item, tuple) else (item, None)
                seq = self.next_out
                self.next_out += 1
                sending = sending or fix_now()
                msg = self._encode(msg_type, seq, sending, body)
                if self.store_limit is None or len(self._store) < self.store_limit:
                    self._store[seq] = (msg_type, body, sending)
                seqs.append(seq)
                self.sent.append(msg)
                if self._lose:
                    self._lose -= 1
                else:
                    wire.append(msg)
            self._write(b"".join(wire))
        return seqs

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (garbage, a corrupted message): no sequence number is used."""
        with self._send_lock:
            self._write(data)

    def _encode(self, msg_type: str, seq: int, sending: str, body: bytes, orig: str | None = None) -> bytes:
        head = b"35=%b\x0149=%b\x0156=%b\x0134=%d\x01" % (msg_type.encode(), self.sender.encode(),
                                                          self.target.encode(), seq)
        if orig is not None:
            head += b"43=Y\x01122=%b\x01" % orig.encode()
        head += b"52=%b\x01" % sending.encode()
        data = head + body
        msg = b"8=FIX.4.4\x019=%d\x01%b" % (len(data), data)
        return msg + b"10=%03d\x01" % (sum(msg) % 256)

    def _send_admin(self, msg_type: str, fields: list[tuple[int, object]] = (), *, seq: int | None = None,
                    poss_dup: bool = False) -> None:
        with self._send_lock:
            self._send_admin_locked(msg_type, fields, seq=seq, poss_dup=poss_dup)

    def _send_admin_locked(self, msg_type, fields=(), *, seq=None, poss_dup=False) -> None:
        head = [(35, msg_type), (49, self.sender), (56, self.target),
                (34, self.next_out if seq is None else seq)] + ([(43, "Y")] if poss_dup else [])
        if seq is None:
            self.next_out += 1
        self._write(encode_message(head + [(52, fix_now())] + list(fields)))

    def _write(self, data: bytes) -> None:
        if not data:
            return
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        view = memoryview(data)
        while view:  # not sendall: its timeout (the reader's 0.1 s) would cut a message in two
            try:
                view = view[sock.send(view):]
            except socket.timeout:  # acceptor backpressure: nothing sent, wait on
                continue
        self._last_send = time.monotonic()

    # -- receiving --------------------------------------------------------------------------------

    def _read_loop(self, sock: socket.socket) -> None:
        framer = StreamFramer()
        self._last_send = last_recv = time.monotonic()
        reason = "connection closed by the acceptor"
        try:
            while True:
                try:
                    data = sock.recv(1 << 16)
                except socket.timeout:
                    data = None
                if data == b"":
                    break
                now = time.monotonic()
                if data:
                    last_recv = now
                    for raw, bad in framer.feed(data):
                        if bad is None and self._on_message(raw):
                            reason = "logged out"
                            return
                if self._logged_on and now - self._last_send >= self.heartbeat_s:
                    self._send_admin("0")
                    self.stats["heartbeats_sent"] += 1
                if now - last_recv > 3 * self.heartbeat_s:
                    reason = "acceptor silent"
                    break
        except OSError as e:
            reason = f"connection lost: {e}"
        finally:
            with self._cond:
                self._logged_on = False
                self.closed_reason = reason
                self._cond.notify_all()
            try:
                sock.close()
            except OSError:
                pass

    def _on_message(self, raw: bytes) -> bool:
        """Handle one acceptor message; True when the session has ended (Logout)."""
        try:
            fields = parse_message(raw)
        except FixError as e:
            log.warning("%s: unreadable message from the acceptor: %s", self.sender, e)
            return False
        msg_type, seq, poss_dup = header(raw)
        done = False
        if msg_type == b"4" and fields.get(123) != b"Y":
            self.next_in = int(fields[36])
        elif seq is not None and seq > self.next_in and msg_type not in (b"5", b"2"):
            # acceptor restarted past its numbers (or lost ours): ask for the gap, handle this one
            self._send_admin("2", [(7, self.next_in), (16, 0)])
            self.stats["resend_requests_sent"] += 1
            if msg_type == b"A":
                self._logged_on = True
        elif seq is not None and seq < self.next_in:
            if not poss_dup:
                log.warning("%s: acceptor MsgSeqNum %d below expected %d", self.sender, seq, self.next_in)
        else:
            self.next_in = (seq or self.next_in) + 1
            if msg_type == b"4":
                self.next_in = max(self.next_in, int(fields[36]))
        if msg_type == b"A":
            self._logged_on = True
        elif msg_type == b"1":
            self._send_admin("0", [(112, fields.get(112, b""))])
            self.stats["test_requests_answered"] += 1
        elif msg_type == b"2":
            self._resend(int(fields[7]), int(fields[16]))
        elif msg_type == b"5":
            self.stats["logouts_received"] += 1
            if not self._logout_sent:
                self._send_admin("5")
            done = True
        with self._cond:
            self.received.append(fields)
            self._cond.notify_all()
        return done

    def _resend(self, begin: int, end: int) -> None:
        """Resend [begin, end] (0: through the last sent) as one block, before any new message."""
        self.stats["resend_requests_received"] += 1
        with self._send_lock:
            last = self.next_out - 1 if end == 0 else min(end, self.next_out - 1)
            gap_start = None
            wire = []
            for seq in range(begin, last + 1):
                stored = self._store.get(seq)
                if stored is None:
                    gap_start = seq if gap_start is None else gap_start
                    continue
                if gap_start is not None:
                    wire.append(self._gap_fill(gap_start, seq))
                    gap_start = None
                msg_type, body, orig = stored
                wire.append(self._encode(msg_type, seq, fix_now(), body, orig=orig))
                self.stats["resent"] += 1
            if gap_start is not None:
                wire.append(self._gap_fill(gap_start, last + 1))
            self._write(b"".join(wire))

    def _gap_fill(self, first: int, new_seq: int) -> bytes:
        self.stats["gap_fills_sent"] += 1
        return encode_message([(35, "4"), (49, self.sender), (56, self.target), (34, first), (43, "Y"),
                               (52, fix_now()), (123, "Y"), (36, new_seq)])
