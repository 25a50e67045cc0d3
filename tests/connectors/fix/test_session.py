"""connectors.fix.session: the FIX 4.4 drop-copy acceptor, against the initiator on loopback."""
from __future__ import annotations

import threading
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors import decode_file
from connectors.fix import encode_message, parse_message
from connectors.fix.initiator import FixInitiator, bodies_from_drop_copy, bodies_from_events
from connectors.fix.session import FixAcceptor, StreamFramer
from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA

SESSIONS = ["HKVATP", "OVSAFF"]
TRANSPORT_COLUMNS = ("recv_ts", "src_seq")  # the transport's own; every other column is the decoder's


class Collected:
    """Everything an acceptor's poll() returned, checked against the schemas on the way."""

    def __init__(self, acceptor: FixAcceptor):
        self.acceptor = acceptor
        self.events: list[pa.Table] = []
        self.dead: list[pa.Table] = []

    def poll_until(self, predicate, timeout: float = 5.0) -> "Collected":
        deadline = time.monotonic() + timeout
        while True:
            for kind, table in self.acceptor.poll():
                assert kind in ("events", "dead")
                if kind == "events":
                    assert table.schema == EVENT_SCHEMA
                    self.events.append(table)
                else:
                    assert table.schema == DEAD_LETTER_SCHEMA
                    self.dead.append(table)
            if predicate(self):
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout} s; stats {self.acceptor.stats()}")
            time.sleep(0.005)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.events or [EVENT_SCHEMA.empty_table()])

    def dead_table(self) -> pa.Table:
        return pa.concat_tables(self.dead or [DEAD_LETTER_SCHEMA.empty_table()])

    def seqs(self, src: int | None = None) -> list[int]:
        t = self.table()
        return [q for s, q in zip(t.column("src").to_pylist(), t.column("src_seq").to_pylist()) if src in (None, s)]

    def n_events(self) -> int:
        return sum(t.num_rows for t in self.events)


def wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.fixture
def acceptor():
    started = []

    def make(**kw) -> FixAcceptor:
        kw.setdefault("sessions", SESSIONS)
        resume = kw.pop("resume", None)
        a = FixAcceptor("127.0.0.1", 0, **kw)
        a.start(resume)
        started.append(a)
        return a

    yield make
    for a in started:
        a.close()


@pytest.fixture
def bodies(fixtures):
    """The fixture drop copy's orders and fills (new, market, fills, amend, cancel, reject, expire)."""
    return bodies_from_drop_copy(fixtures / "fix_dropcopy.fix")


def initiator(acc: FixAcceptor, sender: str = "HKVATP", **kw) -> FixInitiator:
    ini = FixInitiator(*acc.address, sender=sender, **kw)
    ini.connect()
    return ini


def file_decoding(tmp_path, ini: FixInitiator, src: int) -> pa.Table:
    """What replay makes of the bytes the initiator sent, written to a drop-copy file."""
    path = tmp_path / f"{ini.sender}.fix"
    path.write_bytes(b"".join(m + b"\n" for m in ini.sent))
    return pa.concat_tables([d.events for d in decode_file(path, "fix", src=src)])


def without_transport(t: pa.Table) -> pa.Table:
    return t.drop_columns(list(TRANSPORT_COLUMNS))


def test_orders_and_fills_decode_as_replay_decodes_the_same_bytes(acceptor, bodies, tmp_path):
    acc = acceptor(src_base=5)
    hk, ov = initiator(acc, "HKVATP"), initiator(acc, "OVSAFF")
    before = time.time_ns()
    hk_seqs = hk.send_bodies(bodies)
    ov_seqs = ov.send_bodies(bodies[:3])
    got = Collected(acc).poll_until(lambda c: c.n_events() == len(bodies) + 3)
    after = time.time_ns()
    live = got.table()
    hk_live = live.filter(pc.equal(live.column("src"), 5))
    assert hk_live.column("platform").unique().to_pylist() == ["HKVATP"]
    assert without_transport(hk_live).equals(without_transport(file_decoding(tmp_path, hk, 5)))
    ov_live = live.filter(pc.equal(live.column("src"), 6))
    assert without_transport(ov_live).equals(without_transport(file_decoding(tmp_path, ov, 6)))
    # src_seq is the MsgSeqNum (the Logon was 1); recv_ts is our receipt time, not SendingTime
    assert got.seqs(5) == hk_seqs == list(range(2, 2 + len(bodies)))
    assert got.seqs(6) == ov_seqs == [2, 3, 4]
    recv = live.column("recv_ts").cast(pa.int64()).to_pylist()
    assert all(before <= r <= after for r in recv)
    assert hk_live.column("action").to_pylist() == ["new", "new", "fill", "fill", "amend", "cancel", "reject",
                                                    "expire"]
    assert got.dead == [] and acc.stats()["logons"] == 2
    assert sorted(acc.connected()) == SESSIONS


def test_canonical_order_rows_round_trip_through_the_initiator(acceptor, fixtures):
    acc = acceptor()
    orders = pa.concat_tables([d.events for d in decode_file(fixtures / "fix_dropcopy.fix", "fix")])
    ini = initiator(acc, "OVSAFF")
    ini.send_bodies(bodies_from_events(orders, "OVSAFF"))
    live = Collected(acc).poll_until(lambda c: c.n_events() == orders.num_rows).table()
    cols = ["ts", "account", "order_id", "side", "action", "qty", "price", "leaves_qty", "order_type",
            "time_in_force", "trade_id", "is_aggressor"]
    assert live.select(cols).equals(orders.select(cols))
    assert live.column("platform").unique().to_pylist() == ["OVSAFF"]


def test_heartbeat_and_test_request_both_ways(acceptor):
    acc = acceptor(heartbeat_s=30)
    ini = initiator(acc, heartbeat_s=1)  # the acceptor adopts the initiator's HeartBtInt (108)
    ini.test_request("PING-1")
    assert ini.wait_for(lambda: any(m.get(35) == b"0" and m.get(112) == b"PING-1" for m in ini.received), 5)
    ini.heartbeat_s = 3600  # the initiator goes quiet: the acceptor asks with a TestRequest, it answers
    assert ini.wait_for(lambda: ini.stats["test_requests_answered"] >= 1, 5)
    assert acc.stats()["test_requests"] >= 1 and ini.logged_on
    # the acceptor's own heartbeats, sent when it has been quiet for HeartBtInt
    assert ini.wait_for(lambda: sum(m.get(35) == b"0" and 112 not in m for m in ini.received) >= 1, 5)
    assert acc.connected() == ["HKVATP"]


def test_drop_and_reconnect_loses_and_duplicates_nothing(acceptor, bodies):
    acc = acceptor()
    ini = initiator(acc)
    got = Collected(acc)
    sent = ini.send_bodies(bodies * 3)
    ini.lose(4)  # in flight when the link fails
    sent += ini.send_bodies(bodies[:4])
    ini.drop()
    wait(lambda: acc.connected() == [])
    ini.connect()  # Logon with the next MsgSeqNum: the acceptor asks for the gap
    sent += ini.send_bodies(bodies * 2)
    got.poll_until(lambda c: c.seqs() and c.seqs()[-1] == sent[-1])
    assert got.seqs() == sent  # each once, in MsgSeqNum order
    assert acc.stats()["resend_requests"] == 1 and ini.stats["resent"] >= 4
    assert acc.stats()["disconnects"] == 1 and acc.stats()["logons"] == 2
    assert got.dead == []


def test_sequence_gap_mid_session_is_resent_and_filled(acceptor, bodies):
    acc = acceptor()
    ini = initiator(acc)
    got = Collected(acc)
    first = ini.send_bodies(bodies)
    ini.lose(3)
    lost = ini.send_bodies(bodies[:3])
    after = ini.send_bodies(bodies)
    got.poll_until(lambda c: len(c.seqs()) == len(first + lost + after))
    assert got.seqs() == first + lost + after
    assert acc.stats()["resend_requests"] == 1
    assert ini.stats["resend_requests_received"] == 1 and ini.stats["resent"] >= 3
    table = got.table()
    resent = table.filter(pc.is_in(table.column("src_seq"), pa.array(lost)))
    assert resent.column("client_order_id").to_pylist() == got.table().column("client_order_id").to_pylist()[:3]


def test_session_messages_in_a_gap_are_gap_filled(acceptor, bodies):
    acc = acceptor()
    ini = initiator(acc)
    got = Collected(acc)
    ini.send_bodies(bodies[:2])
    with ini._send_lock:  # a Heartbeat lost in transit: numbered, never sent, never stored
        ini.next_out += 1
    later = ini.send_bodies(bodies[:2])
    got.poll_until(lambda c: c.seqs()[-2:] == later)
    assert acc.stats()["gap_fills"] == 1 and ini.stats["gap_fills_sent"] == 1


def test_restart_from_snapshot_asks_for_what_came_after_it(acceptor, bodies):
    acc1 = acceptor()
    ini = initiator(acc1)
    got1 = Collected(acc1)
    before = ini.send_bodies(bodies)
    got1.poll_until(lambda c: c.seqs() == before)
    snap = acc1.snapshot()
    assert snap["sessions"]["HKVATP"]["next_in"] == before[-1] + 1
    after = ini.send_bodies(bodies[:5])  # received, then lost with the process: no poll, no snapshot
    wait(lambda: acc1.stats()["messages"] == 1 + len(before) + len(after))
    assert acc1.snapshot()["sessions"]["HKVATP"]["next_in"] == before[-1] + 1  # covers only what poll returned
    acc1.close()
    assert ini.wait_for(lambda: not ini.logged_on, 5)

    acc2 = acceptor(resume=snap)
    ini.connect(address=acc2.address)
    got2 = Collected(acc2).poll_until(lambda c: c.seqs() == after)
    assert acc2.stats()["resend_requests"] == 1
    # the resent messages decode like the originals
    orig = got1.table()
    assert without_transport(got2.table()).equals(without_transport(orig.slice(0, 5)))
    more = ini.send_bodies(bodies[:2])  # the session goes on; our outbound numbers jumped and were gap-filled
    got2.poll_until(lambda c: c.seqs() == after + more)
    assert ini.stats["resend_requests_sent"] == 1 and ini.logged_on


def test_garbage_bad_checksum_and_unknown_messages_become_dead_letters(acceptor, bodies):
    acc = acceptor()
    ini = initiator(acc)
    got = Collected(acc)
    a = ini.send_bodies(bodies[:2])
    ini.send_raw(b"\x00\xffnot fix at all\r\n")
    ini.lose(1)
    garbled_seq = ini.send_bodies(bodies[:1])[0]
    garbled = ini.sent[-1][:-4] + (b"000" if ini.sent[-1][-4:-1] != b"000" else b"001") + b"\x01"
    ini.send_raw(garbled)
    bad_side = ini.send_bodies([(bodies[0][0].replace(b"\x0154=1\x01", b"\x0154=7\x01"), None)])
    order_single = ini.send_bodies([b"11=X\x0154=1\x01"], msg_type="D")
    b = ini.send_bodies(bodies[:2])
    got.poll_until(lambda c: len(c.seqs()) == 5 and c.dead_table().num_rows == 4)
    # the garbled message did not consume its number: it was asked for again and arrived whole
    assert got.seqs() == a + [garbled_seq] + b
    dead = got.dead_table()
    rows = sorted(zip(dead.column("reason").to_pylist(), dead.column("position").to_pylist(),
                      dead.column("step_id").to_pylist(), dead.column("raw").to_pylist()), key=lambda r: r[1])
    expected_sum = sum(garbled[:-7]) % 256
    assert [r[:3] for r in rows] == sorted([
        ("garbage between messages", "stream", "fix.session"),
        (f"CheckSum mismatch: declared {garbled[-4:-1].decode()}, computed {expected_sum:03d}", "stream",
         "fix.session"),
        ("unsupported Side (54) '7'", f"MsgSeqNum {bad_side[0]}", "decode.fix"),
        ("unsupported MsgType (35) 'D' on a drop-copy session", f"MsgSeqNum {order_single[0]}", "fix.session"),
    ], key=lambda r: r[1])
    raws = {r[0][:14]: r[3] for r in rows}
    assert raws["garbage betwee"] == b"\x00\xffnot fix at all\r\n" and raws["CheckSum misma"] == garbled
    # these two came after the gap the garbled message left, so what arrived is their resend
    for key, seq, tag in (("unsupported Si", bad_side[0], b"\x0154=7\x01"), ("unsupported Ms", order_single[0],
                                                                            b"\x0135=D\x01")):
        assert parse_message(raws[key])[34] == str(seq).encode() and tag in raws[key]
    assert ini.wait_for(lambda: any(m.get(35) == b"3" and m.get(45) == str(order_single[0]).encode()
                                    for m in ini.received), 5)
    assert acc.stats()["dead"] == 4 and acc.connected() == ["HKVATP"]


def test_logout_both_ways_and_refused_logons(acceptor):
    acc = acceptor()
    ini = initiator(acc)
    assert ini.logout() and ini.closed_reason == "logged out"
    wait(lambda: acc.connected() == [])
    assert acc.stats()["logouts"] == 1
    ini.connect()  # the session's numbers go on after a Logout
    assert acc.connected() == ["HKVATP"]
    with pytest.raises(ConnectionError, match="refused"):
        FixInitiator(*acc.address, sender="NOBODY").connect()
    with pytest.raises(ConnectionError, match="refused"):
        FixInitiator(*acc.address, sender="HKVATP").connect()  # already logged on elsewhere
    reasons = Collected(acc).poll_until(lambda c: c.dead_table().num_rows == 2).dead_table().column("reason")
    assert reasons.to_pylist() == ["unknown SenderCompID 'NOBODY'; sessions: HKVATP, OVSAFF",
                                   "session HKVATP is already logged on from another connection"]
    acc.close()  # the acceptor logs the open session out
    assert ini.wait_for(lambda: ini.closed_reason == "logged out", 5)
    assert ini.stats["logouts_received"] == 2  # the reply to ours, then the acceptor's own


def test_unread_input_pushes_back_instead_of_growing(acceptor, bodies):
    acc = acceptor(max_pending=2000)
    ini = initiator(acc)
    payload = bodies * 6000  # 48,000 messages, ~12 MB: more than the socket buffers hold (measured: > 6 MB)
    done = threading.Event()
    sender = threading.Thread(target=lambda: (ini.send_bodies(payload), done.set()), daemon=True)
    sender.start()
    wait(lambda: acc.stats()["pending"] >= 2000)
    time.sleep(0.3)  # give an unbounded reader the time to show itself; a bounded one stays put
    assert acc.stats()["pending"] < 2000 + 300  # at most one read's worth of messages over the bound
    assert not done.is_set()  # the sender is blocked by TCP flow control
    got = Collected(acc).poll_until(lambda c: c.n_events() == len(payload), timeout=30)
    assert got.seqs() == list(range(2, 2 + len(payload)))
    sender.join(5)


def test_framer_cuts_messages_identically_at_any_split():
    msgs = [encode_message([(35, "8"), (49, "A"), (56, "B"), (34, i), (11, "x" * i)]) for i in range(1, 4)]
    long_body = msgs[1].replace(b"\x019=", b"\x019=9", 1)  # BodyLength runs past the CheckSum field
    stream = msgs[0] + b"junk" + msgs[1] + msgs[2][:-2] + b"9\x01" + long_body + msgs[0]
    whole = StreamFramer().feed(stream)
    assert [r for _, r in whole] == [None, "garbage between messages", None, whole[3][1],
                                     "BodyLength (9) does not reach the CheckSum field", None]
    assert whole[3][1].startswith("CheckSum mismatch") and whole[4][0] == long_body
    assert [raw for raw, _ in whole] == [msgs[0], b"junk", msgs[1], msgs[2][:-2] + b"9\x01", long_body, msgs[0]]
    for cut in range(1, len(stream)):
        f = StreamFramer()
        assert f.feed(stream[:cut]) + f.feed(stream[cut:]) == whole, cut
