"""FIX 4.4 drop-copy encoder: one ExecutionReport (35=8) per SHARED order event of a platform.

A small, independent encoder (the decoder in ``connectors/`` is written separately, on
purpose).  Messages are built column-wise with Arrow string kernels, so a million messages
take about a second; the checksum is a running byte sum (mod 256) over the whole buffer.
One message per line: ``8=FIX.4.4|9=<len>|35=8|...|10=<sum>|`` + ``\\n`` with SOH for ``|``.

Tags: 8, 9, 35=8, 49=<platform>, 56=SURVEIL, 34 MsgSeqNum, 52 SendingTime (= recv_ts),
1 Account, 11 ClOrdID, 37 OrderID, 17 ExecID, 150 ExecType, 39 OrdStatus, 55 Symbol (venue
symbol), 54 Side, 38 OrderQty, 44 Price (absent on market orders), 40 OrdType, 59
TimeInForce, 151 LeavesQty, 14 CumQty, 60 TransactTime (= ts), 30 LastMkt; on fills also
31 LastPx, 32 LastQty, 880 TrdMatchID, 1057 AggressorIndicator.  Times are
``YYYYMMDD-HH:MM:SS.nnnnnnnnn`` UTC; numbers are shortest round-trip decimals.

>>> import pyarrow as pa
>>> msg = encode_messages({"35": pa.array(["8"]), "49": pa.array(["HKVATP"])})
>>> line = msg[0].as_py()
>>> line.replace(SOH, "|")
'8=FIX.4.4|9=15|35=8|49=HKVATP|10=085|\\n'
>>> checksum_ok(line.rstrip("\\n"))
True
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from surveil.schemas import Action

from .assemble import digit_bytes, fixed_width_strings
from .config import FIX_TARGET, SHARED

SOH = "\x01"
BEGIN = "8=FIX.4.4"
EXEC_TYPE = {Action.NEW: "0", Action.AMEND: "5", Action.CANCEL: "4", Action.FILL: "F",
             Action.REJECT: "8", Action.EXPIRE: "C"}
TIF = {"day": "0", "gtc": "1", "ioc": "3", "fok": "4"}
ORD_TYPE = {"market": "1", "limit": "2"}
SIDE = {"buy": "1", "sell": "2"}


FIX_COLUMNS = ("ts", "recv_ts", "venue", "venue_symbol", "price", "qty", "side", "trade_id", "order_id",
               "client_order_id", "exec_id", "account", "action", "leaves_qty", "order_type", "time_in_force",
               "is_aggressor")


def _map(col: pa.Array, mapping: dict) -> pa.Array:
    keys = [k.value if hasattr(k, "value") else k for k in mapping]
    idx = pc.index_in(col, value_set=pa.array(keys))
    return pa.array(list(mapping.values())).take(idx)


def num(col) -> pa.Array:
    """Shortest decimal text that parses back to the same double, never with an exponent.

    Arrow's cast is positional for 1e-6 <= |x| < 1e10; the rare value outside is formatted here.

    >>> num(pa.array([87000.1, 0.00001, None, 2.5e10])).to_pylist()
    ['87000.1', '0.00001', None, '25000000000']
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    s = pc.cast(col, pa.string())
    a = np.abs(col.to_numpy(zero_copy_only=False))
    odd = np.flatnonzero((a != 0) & ((a < 1e-6) | (a >= 1e10)))  # NaN (null) compares False
    if len(odd):
        text = s.to_pylist()
        for i in odd.tolist():
            text[i] = np.format_float_positional(col[i].as_py(), trim="-")
        s = pa.array(text, pa.string())
    return s


def fix_time(ts) -> pa.Array:
    """``YYYYMMDD-HH:MM:SS.nnnnnnnnn`` (UTC, nanoseconds), built as fixed-width bytes.

    >>> fix_time(pa.array([1772409600123456789], pa.int64())).to_pylist()
    ['20260302-00:00:00.123456789']
    """
    ns = ts if isinstance(ts, np.ndarray) else pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
    day, rem = np.divmod(ns, 86_400 * 10**9)
    days, day_idx = np.unique(day, return_inverse=True)
    dates = np.frombuffer("".join(np.datetime64(int(d), "D").astype(object).strftime("%Y%m%d") for d in days)
                          .encode(), dtype=np.uint8).reshape(len(days), 8)
    secs, frac = np.divmod(rem, 10**9)
    hh, r = np.divmod(secs, 3600)
    mm, ss = np.divmod(r, 60)
    mat = np.empty((len(ns), 27), dtype=np.uint8)
    mat[:, 0:8] = dates[day_idx.reshape(-1)]
    mat[:, 8], mat[:, 11], mat[:, 14], mat[:, 17] = ord("-"), ord(":"), ord(":"), ord(".")
    mat[:, 9:11] = digit_bytes(hh, 2)
    mat[:, 12:14] = digit_bytes(mm, 2)
    mat[:, 15:17] = digit_bytes(ss, 2)
    mat[:, 18:27] = digit_bytes(frac, 9)
    return fixed_width_strings(mat)


def _as_string(v: pa.Array) -> pa.Array:
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    return v if v.type == pa.string() else pc.cast(v, pa.string())


_M8 = np.uint64(0x00FF00FF00FF00FF)
_K16 = np.uint64(0x0001000100010001)
_LOW = np.array([0] + [(1 << (8 * r)) - 1 for r in range(1, 8)], dtype=np.uint64)


def _word_byte_sums(w: np.ndarray) -> np.ndarray:
    """Sum of the 8 bytes of each uint64 word (SWAR: two lane adds and a multiply)."""
    x = (w & _M8) + ((w >> np.uint64(8)) & _M8)
    return (x * _K16) >> np.uint64(48)


def _byte_sums(arr: pa.Array) -> np.ndarray:
    """Sum of the bytes of each string, mod 256, eight bytes at a time.

    >>> _byte_sums(pa.array(["", "A", "ABCDEFGHIJ", "zz"])).tolist()
    [0, 65, 183, 244]
    """
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    n = int(offsets[-1])
    words = np.zeros(n // 8 + 1, np.uint64)
    if n:
        words.view(np.uint8)[:n] = np.frombuffer(data, dtype=np.uint8, count=n)
    ws = _word_byte_sums(words)
    k = offsets >> 3
    partial = _word_byte_sums(words[k] & _LOW[offsets & 7])  # bytes of a boundary word before the boundary
    full = np.add.reduceat(ws, k[:-1]) if len(arr) else np.zeros(0, np.uint64)
    full[k[1:] == k[:-1]] = 0  # reduceat gives ws[k] for an empty range
    if len(arr):
        full[-1] = ws[k[-2]:k[-1]].sum()
    return ((full - partial[:-1] + partial[1:]) & np.uint64(255)).astype(np.int64)


def encode_messages(fields: dict[str, object], groups: list[tuple[pa.Array, dict[str, pa.Array]]] = ()) -> pa.Array:
    """Lines (with checksum and newline) from ``tag -> value`` in body order.

    A value is a constant ``str`` or an Array (null: that field is left out).  Each group
    ``(present, {tag: Array})`` is appended after the fields on the rows where ``present``.
    """
    pieces: list = []
    literal = ""
    for i, (tag, v) in enumerate(fields.items()):
        lead = f"{tag}=" if i == 0 else f"{SOH}{tag}="
        if isinstance(v, str):
            literal += lead + v
            continue
        v = _as_string(v)
        if v.null_count:  # the tag goes with its value: a null leaves the whole field out
            if literal:
                pieces.append(pa.scalar(literal))
            pieces.append(pc.binary_join_element_wise(lead, v, ""))
        else:
            pieces.extend([pa.scalar(literal + lead), v])
        literal = ""
    for present, group in groups:
        parts = []
        for tag, v in group.items():
            parts.extend([pa.scalar(f"{SOH}{tag}="), _as_string(v)])
        joined = pc.binary_join_element_wise(*parts, "")
        pieces.extend([pa.scalar(literal), pc.if_else(present, joined, pa.scalar(None, pa.string()))])
        literal = ""
    pieces.append(pa.scalar(literal + SOH))
    body = pc.binary_join_element_wise(*pieces, "", null_handling="replace", null_replacement="")
    length = pc.cast(pc.binary_length(body), pa.string())
    head = f"{BEGIN}{SOH}9="
    # CheckSum = bytes of "8=FIX.4.4|9=" + length digits + "|" + body, mod 256.
    sums = (sum(head.encode()) + ord(SOH) + _byte_sums(length) + _byte_sums(body)) % 256
    cs = pc.utf8_lpad(pc.cast(pa.array(sums), pa.string()), width=3, padding="0")
    return pc.binary_join_element_wise(head, length, SOH, body, "10=", cs, f"{SOH}\n", "")


def execution_reports(orders: pa.Table, aux: pa.Table, platform: str, first_seq: int = 1) -> pa.Array:
    """FIX lines for order events (EVENT_SCHEMA rows of one platform) with their aux columns."""
    n = orders.num_rows
    col = orders.column
    action = col("action").combine_chunks() if n else pa.array([], pa.string())
    leaves = col("leaves_qty")
    is_fill = pc.equal(action, Action.FILL.value)
    status = pc.case_when(
        pc.make_struct(pc.equal(action, Action.CANCEL.value), pc.equal(action, Action.REJECT.value),
                       pc.equal(action, Action.EXPIRE.value),
                       pc.and_(is_fill, pc.equal(leaves, 0.0)), is_fill),
        "4", "8", "C", "2", "1", "0")
    fields = {
        "35": "8", "49": platform, "56": FIX_TARGET,
        "34": pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)),
        "52": fix_time(col("recv_ts")),
        "1": col("account"), "11": col("client_order_id"), "37": col("order_id"), "17": col("exec_id"),
        "150": _map(action, EXEC_TYPE), "39": status,
        "55": col("venue_symbol"), "54": _map(col("side"), SIDE),
        "38": num(aux.column("order_qty")), "44": num(aux.column("order_price")),
        "40": _map(col("order_type"), ORD_TYPE), "59": _map(col("time_in_force"), TIF),
        "151": num(leaves), "14": num(aux.column("cum_qty")),
        "60": fix_time(col("ts")), "30": SHARED,
    }
    fill = {"31": num(col("price")), "32": num(col("qty")), "880": col("trade_id"),
            "1057": pc.if_else(col("is_aggressor"), "Y", "N")}
    return encode_messages(fields, [(is_fill, fill)])


def write_fix(path, shared: pa.Table, aux: pa.Table, platform: str, chunk_rows: int = 500_000) -> int:
    """Write ``platform``'s drop copy of the SHARED order events; returns the message count."""
    mask = pc.and_(pc.equal(shared.column("kind"), "order"), pc.equal(shared.column("platform"), platform))
    orders = shared.select(list(FIX_COLUMNS)).filter(mask)
    oaux = aux.filter(mask)
    n = orders.num_rows
    with open(path, "wb") as f:
        for lo in range(0, n, chunk_rows):
            lines = execution_reports(orders.slice(lo, chunk_rows), oaux.slice(lo, chunk_rows), platform, lo + 1)
            lines = lines.cast(pa.large_string())
            if isinstance(lines, pa.ChunkedArray):
                lines = lines.combine_chunks()
            off = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset: lines.offset + len(lines) + 1]
            f.write(memoryview(lines.buffers()[2])[int(off[0]): int(off[-1])])
    return n


def checksum_ok(message: str) -> bool:
    """Independent check of one message (without the newline): BodyLength and CheckSum.

    >>> checksum_ok("8=FIX.4.4" + SOH + "9=5" + SOH + "35=8" + SOH + "10=000" + SOH)
    False
    """
    raw = message.encode()
    fields = raw.split(SOH.encode())
    if len(fields) < 4 or fields[-1] != b"" or not fields[0].startswith(b"8=") or not fields[1].startswith(b"9="):
        return False
    if not fields[-2].startswith(b"10="):
        return False
    body_start = len(fields[0]) + 1 + len(fields[1]) + 1
    trailer_at = len(raw) - len(fields[-2]) - 1
    if int(fields[1][2:]) != trailer_at - body_start:
        return False
    return int(fields[-2][3:]) == sum(raw[:trailer_at]) % 256
