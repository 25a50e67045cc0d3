"""Reading cryptofeed raw-data captures (the format of ../shared/data/ws-raw-cryptofeed and of
tests/fixtures/ws/*.txt): one connection per ``<endpoint> <-> <ts>`` line, ``<endpoint> <- <ts>: <json>``
for what the client sent, ``<ts>: <payload>`` for what it received at local time ``ts`` (seconds)."""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

from connectors.ws._message import seconds_to_ns

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ws"


@dataclass
class Capture:
    endpoint: str = ""
    sent: list[bytes] = field(default_factory=list)
    received: list[tuple[bytes, int]] = field(default_factory=list)  # (raw payload, recv_ts_ns)


def read_capture(path: str | Path) -> Capture:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    cap = Capture()
    with opener(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            if line.startswith((b"wss://", b"ws://", b"https://", b"http://")):
                head, _, payload = line.partition(b": ")
                if b" <-> " in head:
                    cap.endpoint = head.split(b" <-> ")[0].decode()
                elif b" <- " in head:
                    cap.sent.append(payload)
                continue
            ts, _, payload = line.partition(b": ")
            cap.received.append((payload, seconds_to_ns(ts.decode())))
    return cap


def fixture(name: str) -> Path:
    return FIXTURES / name
