"""The client against a loopback server speaking each venue's format: reconnect, resubscribe,
exactly-once delivery across reconnects, gaps as data, keep-alive, dead letters, clean shutdown."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytest.importorskip("websockets")

from connectors.ws import ClientConfig, WsClient  # noqa: E402
from surveil.schemas import DEAD_LETTER_SCHEMA, EVENT_SCHEMA  # noqa: E402

from .formats import FORMATS  # noqa: E402
from .venue_server import VenueServer  # noqa: E402

CFG = ClientConfig(batch_ms=20, backoff_initial_ms=40, backoff_max_ms=400, backoff_jitter=0.25, seed=7,
                   open_timeout_s=2, close_timeout_s=1, use_env_proxy=False)
N = 16  # trade messages streamed per test


@dataclass
class Run:
    client: WsClient
    events: list[pa.Table] = field(default_factory=list)
    dead: list[pa.Table] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, kind) per item

    def ids(self) -> list[str]:
        return [t for e in self.events for t in e.filter(pc.equal(e.column("kind"), "trade"))
                .column("trade_id").to_pylist()]

    def gap_kinds(self) -> list[str]:
        return [g["kind"] for g in self.gaps]

    def dead_table(self) -> pa.Table:
        return pa.concat_tables(self.dead or [DEAD_LETTER_SCHEMA.empty_table()])


async def run_client(server: VenueServer, *, until, config: ClientConfig = CFG, timeout: float = 6.0) -> Run:
    fmt = server.fmt
    run = Run(WsClient(fmt.venue, fmt.symbols, url=server.url, options=fmt.options, config=config))
    stopping = False
    async with asyncio.timeout(timeout):
        async for kind, value in run.client:
            run.arrivals.append((time.monotonic(), kind))
            if kind == "events":
                assert value.schema == EVENT_SCHEMA
                run.events.append(value)
            elif kind == "dead":
                run.dead.append(value)
            else:
                run.gaps.append(value)
            if not stopping and until(run):
                run.client.stop()
                stopping = True
    return run


def ids_of(fmt, start: int, stop: int) -> list[str]:
    return [t for ids in fmt.ids[start:stop] for t in ids]


def serve_and_run(fmt, scripts, until, **kw):
    async def main():
        async with VenueServer(fmt, scripts, refuse_first=kw.pop("refuse_first", 0)) as server:
            run = await run_client(server, until=until, **kw)
            return server, run

    return asyncio.run(main())


@pytest.mark.parametrize("name", list(FORMATS))
def test_reconnects_resubscribes_and_delivers_each_trade_once(name):
    fmt = FORMATS[name]()
    expected = fmt.initial_ids + ids_of(fmt, 0, N)
    # the server drops the TCP connection (no close frame) after 8 messages and resumes at 5
    scripts = [[("trades", 0, 8), ("drop",)], [("trades", 5, N)]]
    server, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= len(expected))
    assert run.ids() == expected  # every trade, in order, exactly once
    assert len(server.conns) == 2 and all(c.subscribe_ok for c in server.conns)  # resubscribed
    assert run.gap_kinds() == ["disconnect", "reconnect"]
    down, up = run.gaps
    assert "no close frame" in down["reason"] and down["attempt"] == 1
    assert 30 <= down["retry_in_ms"] <= 40  # initial 40 ms, jitter 25 %
    assert server.conns[1].opened - server.conns[0].closed >= down["retry_in_ms"] / 1000 * 0.9
    assert down["from"] <= up["from"] <= up["to"] and up["connection"] == 2
    assert run.client.stats.duplicates >= 3 and run.dead_table().num_rows == 0


@pytest.mark.parametrize("name", list(FORMATS))
def test_reports_the_trades_missed_while_disconnected(name):
    fmt = FORMATS[name]()
    scripts = [[("trades", 0, 8), ("close", 1011)], [("trades", 11, N)]]
    expected = fmt.initial_ids + ids_of(fmt, 0, 8) + ids_of(fmt, 11, N)
    server, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= len(expected))
    assert run.ids() == expected
    assert run.gap_kinds() == ["disconnect", "reconnect", "trade_id"]
    assert "1011" in run.gaps[0]["reason"]
    gap = run.gaps[2]
    assert (gap["venue"], gap["key"], gap["expected"], gap["got"], gap["missing"], gap["after_reconnect"]) == (
        fmt.venue, fmt.symbols[0] + ("@aggTrade" if fmt.venue == "BINANCE" else ""), int(fmt.ids[8][0]),
        int(fmt.ids[11][0]), 3, True)
    assert run.client.stats.missing == 3


def test_reports_skipped_sequence_numbers():
    fmt = FORMATS["coinbase-advanced"]()
    scripts = [[("trades", 0, 4), ("skip_seq", 2), ("trades", 4, 8)]]
    _, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 8)
    assert run.ids() == ids_of(fmt, 0, 8)
    (gap,) = run.gaps
    # acks take sequence numbers 0 and 1, trades 2..5, then 6 and 7 never arrive
    assert (gap["kind"], gap["key"], gap["expected"], gap["got"], gap["missing"]) == ("sequence", "connection", 6, 8, 2)


def test_backoff_grows_exponentially_with_jitter():
    fmt = FORMATS["okx"]()
    server, run = serve_and_run(fmt, [[("trades", 0, 5)]], until=lambda r: len(r.ids()) >= 5, refuse_first=3)
    fails = [g for g in run.gaps if g["kind"] == "connect_failed"]
    assert [g["attempt"] for g in fails] == [1, 2, 3] and run.gap_kinds() == ["connect_failed"] * 3
    assert all("503" in g["reason"] for g in fails)
    for g, base in zip(fails, (40, 80, 160)):
        assert base * 0.75 <= g["retry_in_ms"] <= base
    waits = [b - a for a, b in zip(server.attempts, server.attempts[1:])]
    assert all(w >= g["retry_in_ms"] / 1000 * 0.9 for w, g in zip(waits, fails))
    assert run.ids() == ids_of(fmt, 0, 5)


def test_gives_up_after_max_attempts():
    fmt = FORMATS["okx"]()
    cfg = replace(CFG, max_attempts=3)
    server, run = serve_and_run(fmt, [[]], until=lambda r: False, refuse_first=99, config=cfg)
    assert run.gap_kinds() == ["connect_failed"] * 3 + ["gave_up"]  # and the iterator ended by itself
    assert "retry_in_ms" not in run.gaps[2] and len(server.attempts) == 3


def test_okx_sends_ping_when_idle_and_reads_the_pong():
    fmt = FORMATS["okx"]()
    scripts = [[("trades", 0, 3), ("expect", b"ping", 2.0), ("sleep", 0.05), ("trades", 3, 6)]]
    _, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 6, config=replace(CFG, ping_idle_s=0.1))
    s = run.client.stats
    assert s.pings_sent >= 1 and s.controls["pong"] >= 1 and s.connections == 1
    assert run.ids() == ids_of(fmt, 0, 6) and not run.dead


def test_binance_protocol_pings_are_answered():
    fmt = FORMATS["binance"]()
    scripts = [[("trades", 0, 3), ("ping",), ("trades", 3, 6)]]
    server, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 6)
    assert server.conns[0].pongs == 1 and run.ids() == ids_of(fmt, 0, 6)


@pytest.mark.parametrize("name", ["kraken", "coinbase-exchange", "coinbase-advanced"])
def test_heartbeats_keep_a_quiet_connection_alive(name):
    fmt = FORMATS[name]()
    quiet = [a for _ in range(6) for a in (("heartbeat",), ("sleep", 0.1))]  # 0.6 s without trades
    scripts = [[("trades", 0, 3), *quiet, ("trades", 3, 6)]]
    _, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 6 + len(fmt.initial_ids),
                           config=replace(CFG, stale_after_s=0.4))
    assert run.client.stats.connections == 1 and run.client.stats.controls["heartbeat"] == 6 and not run.gaps


def test_a_silent_connection_is_declared_stale_and_replaced():
    fmt = FORMATS["kraken"]()
    scripts = [[("trades", 0, 3), ("sleep", 3.0)], [("trades", 3, 6)]]
    server, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 6, config=replace(CFG, stale_after_s=0.3))
    assert run.gap_kinds() == ["disconnect", "reconnect"]
    assert run.gaps[0]["reason"] == "stale: no message for 0.3 s"
    assert server.conns[0].close_code == 1000  # the client closed the stale socket properly
    assert run.ids() == ids_of(fmt, 0, 6)


def test_malformed_messages_and_venue_errors_become_dead_letters_mid_stream():
    fmt = FORMATS["okx"]()
    garbage = b'{"arg":{"channel":"trades"'
    bad_trade = fmt.messages[2].replace(b'"px":"', b'"px":"x')
    venue_error = b'{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}'
    scripts = [[("trades", 0, 2), ("send", garbage), ("send", bad_trade), ("send", venue_error), ("trades", 3, 6)]]
    _, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 5)
    dead = run.dead_table()
    assert dead.column("step_id").to_pylist() == ["ws.okx"] * 3
    assert dead.column("raw").to_pylist() == [garbage, bad_trade, venue_error]
    # connection 1: message 1 is the ack, 2-3 the first trades, 4 the garbage
    positions = dead.column("position").to_pylist()
    assert positions == ["1:4", "1:5:0", "1:6"]
    reasons = dead.column("reason").to_pylist()
    assert reasons[0].startswith("not JSON") and reasons[1].startswith("px: cannot parse")
    assert reasons[2] == "venue error: code 60012: Invalid request"
    assert run.ids() == ids_of(fmt, 0, 2) + ids_of(fmt, 3, 6) and run.client.stats.connections == 1


def test_batches_are_bounded_by_rows_and_by_time():
    fmt = FORMATS["okx"]()
    scripts = [[("trades", 0, 10), ("sleep", 0.2), ("trades", 10, 13), ("sleep", 1.0), ("trades", 13, 14)]]
    server, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 14, config=replace(CFG, batch_rows=4))
    assert run.ids() == ids_of(fmt, 0, 14) and all(e.num_rows <= 4 for e in run.events)
    # the trade before the 1 s pause leaves within batch_ms, not held back until the next trade
    # comes (by rows alone, it would have waited for trade 13 and left with it)
    at = {t: when for (when, kind), e in zip([a for a in run.arrivals if a[1] == "events"], run.events)
          for t in e.column("trade_id").to_pylist()}
    assert at[fmt.ids[13][0]] - at[fmt.ids[12][0]] > 0.5  # the pause is 1 s; held back it would be ~0


def test_steady_traffic_still_flushes_by_time():
    fmt = FORMATS["okx"]()
    scripts = [[("trades", 0, 30, 0.01)]]  # a message every 10 ms: recv never times out
    _, run = serve_and_run(fmt, scripts, until=lambda r: len(r.ids()) >= 30, config=replace(CFG, batch_ms=50))
    assert run.ids() == ids_of(fmt, 0, 30)
    assert len(run.events) >= 4 and max(e.num_rows for e in run.events) <= 12  # ~5 messages per 50 ms


def test_stop_closes_cleanly_and_flushes():
    fmt = FORMATS["okx"]()

    async def main():
        async with VenueServer(fmt, [[("trades", 0, 5)]]) as server:
            client = WsClient("OKX", fmt.symbols, url=server.url, config=replace(CFG, batch_ms=10_000))

            async def stop_when_received():  # no time flush will come: the rows wait in the batch
                while client.stats.controls["data"] < 5:
                    await asyncio.sleep(0.01)
                client.stop()

            stopper = asyncio.create_task(stop_when_received())
            async with asyncio.timeout(5):
                items = [item async for item in client]
            await stopper
            await asyncio.sleep(0.05)
            return server, client, items, asyncio.all_tasks() - {asyncio.current_task()}

    server, client, items, leftover = asyncio.run(main())
    assert [k for k, _ in items] == ["events"]  # stop() flushed the partial batch, then iteration ended
    assert items[0][1].column("trade_id").to_pylist() == ids_of(fmt, 0, 5)
    assert server.conns[0].close_code == 1000 and client.stats.disconnects == 0
    assert not leftover


def test_cancelling_the_consumer_closes_the_socket():
    fmt = FORMATS["okx"]()

    async def main():
        async with VenueServer(fmt, [[("trades", 0, 3)]]) as server:
            client = WsClient("OKX", fmt.symbols, url=server.url, config=CFG)

            async def consume():
                async for _ in client:
                    pass

            task = asyncio.create_task(consume())
            while not server.conns or len(server.conns[0].received) < 1:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)
            return server

    server = asyncio.run(main())
    assert server.conns[0].closed is not None and server.conns[0].close_code == 1000
