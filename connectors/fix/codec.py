"""FIX 4.4 message framing: build a message (BodyLength and CheckSum computed) and check one.

Independent of files: the drop-copy file decoder and a live FIX session both use it.
Fields are delimited by SOH (``\\x01``); logs often show ``|`` instead, which is accepted
and counted as if it were SOH (lengths are the same; the checksum is computed with SOH).

>>> msg = encode_message([(35, "0"), (49, "A"), (56, "B")])
>>> msg
b'8=FIX.4.4\\x019=15\\x0135=0\\x0149=A\\x0156=B\\x0110=171\\x01'
>>> parse_message(msg)[35], parse_message(msg.replace(b"\\x01", b"|"))[56]
(b'0', b'B')
>>> parse_message(msg.replace(b"10=171", b"10=172"))
Traceback (most recent call last):
...
connectors.fix.codec.FixError: CheckSum mismatch: declared 172, computed 171
"""
from __future__ import annotations

SOH = b"\x01"
PIPE = b"|"
BEGIN_STRING = "FIX.4.4"
_PIPE_EXCESS = ord("|") - ord("\x01")


class FixError(ValueError):
    """A message that is not well-formed FIX 4.4; the message says what is wrong."""


def checksum(data: bytes, delimiter: bytes = SOH) -> int:
    """FIX CheckSum of ``data`` (sum of bytes mod 256), ``|`` delimiters counted as SOH."""
    total = sum(data)
    if delimiter == PIPE:
        total -= _PIPE_EXCESS * data.count(PIPE)
    return total % 256


def encode_message(fields: list[tuple[int, str]], delimiter: bytes = SOH) -> bytes:
    """A complete message from its fields; BeginString (8) may lead, 9 and 10 are computed.

    Values may be str, bytes, int or float; none may contain the delimiter.
    """
    begin = BEGIN_STRING
    if fields and fields[0][0] == 8:
        begin, fields = str(fields[0][1]), fields[1:]
    body = bytearray()
    for tag, value in fields:
        if tag in (8, 9, 10):
            raise ValueError(f"tag {tag} is computed by encode_message; do not pass it")
        v = value if isinstance(value, bytes) else str(value).encode()
        if delimiter in v or SOH in v:
            raise ValueError(f"value of tag {tag} contains the field delimiter: {v!r}")
        body += b"%d=%b%b" % (tag, v, delimiter)
    head = b"8=%b%b9=%d%b" % (begin.encode(), delimiter, len(body), delimiter)
    msg = head + bytes(body)
    return msg + b"10=%03d%b" % (checksum(msg, delimiter), delimiter)


def delimiter_of(raw: bytes) -> bytes:
    """SOH if the message has any, else ``|``."""
    return SOH if SOH in raw else PIPE


def parse_message(raw: bytes) -> dict[int, bytes]:
    """Check framing, BodyLength and CheckSum of one message and return ``{tag: value}``.

    ``raw`` is exactly one message (a trailing CR/LF is ignored).  A repeated tag keeps its
    last value.  Raises :class:`FixError` saying what is wrong.
    """
    msg = raw.rstrip(b"\r\n")
    delim = delimiter_of(msg)
    if not msg.startswith(b"8="):
        raise FixError(f"message must start with BeginString (8=), got {msg[:20]!r}")
    if delim not in msg:
        raise FixError("no field delimiter (SOH or '|') in message")
    parts = msg.split(delim)
    if parts[-1] != b"":
        raise FixError(f"message does not end with a delimiter after CheckSum (truncated?): ends {msg[-20:]!r}")
    parts.pop()
    if len(parts) < 4:
        raise FixError(f"message has {len(parts)} field(s); at least 8, 9, 35 and 10 are needed")
    if parts[0] != b"8=" + BEGIN_STRING.encode():
        raise FixError(f"BeginString must be {BEGIN_STRING}, got {parts[0][2:].decode(errors='replace')!r}")
    if not parts[1].startswith(b"9=") or not parts[1][2:].isdigit():
        raise FixError(f"second field must be BodyLength (9=<digits>), got {parts[1]!r}")
    if not parts[2].startswith(b"35="):
        raise FixError(f"third field must be MsgType (35), got {parts[2]!r}")
    last = parts[-1]
    if not last.startswith(b"10="):
        raise FixError(f"last field must be CheckSum (10=nnn), got {last[:20]!r} (truncated?)")
    declared_sum = last[3:]
    if len(declared_sum) != 3 or not declared_sum.isdigit():
        raise FixError(f"CheckSum must be 3 digits, got {declared_sum.decode(errors='replace')!r}")
    sum_end = len(msg) - len(last) - 1  # the CheckSum field starts here
    body_start = len(parts[0]) + len(parts[1]) + 2
    declared_len, computed_len = int(parts[1][2:]), sum_end - body_start
    if declared_len != computed_len:
        raise FixError(f"BodyLength mismatch: declared {declared_len}, computed {computed_len}")
    computed_sum = checksum(msg[:sum_end], delim)
    if int(declared_sum) != computed_sum:
        raise FixError(f"CheckSum mismatch: declared {declared_sum.decode()}, computed {computed_sum:03d}")
    fields: dict[int, bytes] = {}
    for i, part in enumerate(parts):
        tag, eq, value = part.partition(b"=")
        if not eq or not tag.isdigit() or tag[0] == 48:  # 48: a tag has no leading zero
            raise FixError(f"field {i + 1} is not TAG=VALUE: {part[:40]!r}")
        fields[int(tag)] = value
    return fields
