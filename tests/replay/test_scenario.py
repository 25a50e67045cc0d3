"""The labelled scenario generator: determinism, labels against the data, file formats.

The checks here are independent of the generator's internals: they read the written files
(Parquet, FIX, CSV, labels.json) and re-derive what a label claims from the data.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from replay.scenario import generate
from replay.scenario.config import ScenarioConfig
from replay.scenario.episodes import EPISODE_TYPES, episode_count
from surveil.schemas import EVENT_SCHEMA, validate

SOH = b"\x01"
MINUTES = 10
PRICE_TYPES = {"price_dislocation", "price_spike", "small_gap"}


@pytest.fixture(scope="module")
def scen(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenario")
    summary = generate(out, seed=11, minutes=MINUTES, events_per_second=500)
    shared = pq.read_table(out / "canonical" / "SHARED.parquet")
    refx = pq.read_table(out / "canonical" / "REFX.parquet")
    labels = json.loads((out / "labels.json").read_text())
    with open(out / "ref" / "accounts.csv") as f:
        accounts = {r["account"]: r for r in csv.DictReader(f)}
    with open(out / "ref" / "owner_links.csv") as f:
        group_of = {r["owner_id"]: r["group_id"] for r in csv.DictReader(f)}
    with open(out / "ref" / "instruments.csv") as f:
        instruments = {(r["venue"], r["venue_symbol"]): r for r in csv.DictReader(f)}
    return dict(out=out, summary=summary, shared=shared, refx=refx, labels=labels, accounts=accounts,
                group_of=group_of, instruments=instruments)


def _ns(col) -> np.ndarray:
    return col.cast(pa.int64()).to_numpy()


def _kind(t: pa.Table, kind: str) -> pa.Table:
    return t.filter(pc.equal(t.column("kind"), kind))


def _rows(t: pa.Table) -> list[dict]:
    """to_pylist with times as int ns (datetime has only microseconds)."""
    for name in ("ts", "recv_ts"):
        if name in t.column_names:
            t = t.set_column(t.column_names.index(name), name, t.column(name).cast(pa.int64()))
    return t.to_pylist()


def _linked(owner_a: str, owner_b: str, group_of: dict) -> bool:
    return owner_a == owner_b or (owner_a in group_of and group_of.get(owner_a) == group_of.get(owner_b))


# ---- determinism ------------------------------------------------------------------------

def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_files_different_seed_differs(tmp_path):
    a = generate(tmp_path / "a", seed=5, minutes=5, events_per_second=300, formats=("canonical",))
    b = generate(tmp_path / "b", seed=5, minutes=5, events_per_second=300, formats=("canonical",))
    c = generate(tmp_path / "c", seed=6, minutes=5, events_per_second=300, formats=("canonical",))
    for name in ("canonical/SHARED.parquet", "canonical/REFX.parquet"):
        assert pq.read_table(a.files[name]).equals(pq.read_table(b.files[name]))
        assert _digest(a.files[name]) == _digest(b.files[name])
        assert not pq.read_table(a.files[name]).equals(pq.read_table(c.files[name]))
    for name in ("labels.json", "ref/accounts.csv", "ref/owner_links.csv"):
        assert a.files[name].read_bytes() == b.files[name].read_bytes()
    assert a.files["labels.json"].read_bytes() != c.files["labels.json"].read_bytes()


# ---- canonical tables -------------------------------------------------------------------

def test_tables_are_canonical_sorted_and_valid(scen):
    lab = scen["labels"]
    for t, venue in ((scen["shared"], "SHARED"), (scen["refx"], "REFX")):
        assert t.schema.equals(EVENT_SCHEMA)
        ts = _ns(t.column("ts"))
        assert (np.diff(ts) >= 0).all()
        assert ts[0] >= lab["start_ns"] and ts[-1] <= lab["end_ns"]
        assert (_ns(t.column("recv_ts")) >= ts).all()
        assert pc.all(pc.equal(t.column("feed"), "canonical")).as_py()
        assert pc.all(pc.equal(t.column("venue"), venue)).as_py()
        assert _ns(t.column("src_seq")).tolist() == list(range(t.num_rows))
        for col in ("owner", "buy_owner", "sell_owner", "group_id", "buy_group", "sell_group"):
            assert t.column(col).null_count == t.num_rows
        ok, bad = validate(t)
        assert bad.num_rows == 0, bad.slice(0, 5).to_pylist()
    assert pq.ParquetFile(scen["out"] / "canonical" / "SHARED.parquet").metadata.num_row_groups >= 2


def test_prices_on_tick_quantities_on_lot(scen):
    for t in (scen["shared"], scen["refx"]):
        for (venue, sym), ref in scen["instruments"].items():
            rows = t.filter(pc.equal(t.column("venue_symbol"), sym))
            if rows.num_rows == 0:
                continue
            assert pc.all(pc.equal(rows.column("instrument"), ref["instrument"])).as_py()
            tick, lot = float(ref["tick_size"]), float(ref["lot_size"])
            for col, step in (("price", tick), ("bid", tick), ("ask", tick), ("qty", lot), ("bid_qty", lot),
                              ("ask_qty", lot), ("leaves_qty", lot)):
                v = rows.column(col).drop_null().to_numpy()
                k = v / step
                assert np.abs(k - np.rint(k)).max(initial=0) < 1e-6, (sym, col)
                assert (v > 0).all() or col == "leaves_qty"


def test_refx_timestamps_are_whole_microseconds(scen):
    refx = scen["refx"]
    assert (_ns(refx.column("ts")) % 1000 == 0).all()
    assert (_ns(refx.column("recv_ts")) % 1000 == 0).all()
    assert refx.column("account").null_count == refx.num_rows


def test_counts_match_files(scen):
    ev = scen["labels"]["events"]
    for venue, t in (("SHARED", scen["shared"]), ("REFX", scen["refx"])):
        got = Counter(t.column("kind").to_pylist())
        assert ev[venue] == dict(got)
    assert ev["total"] == scen["shared"].num_rows + scen["refx"].num_rows
    for platform in ("HKVATP", "OVSAFF"):
        with open(scen["out"] / "fix" / f"{platform}.fix", "rb") as f:
            assert sum(1 for _ in f) == ev["fix"][platform]
    for name, n in ev["tardis"].items():
        with open(scen["out"] / "tardis" / name) as f:
            assert sum(1 for _ in f) - 1 == n
    assert sum(ev["fix"].values()) == ev["SHARED"]["order"]
    assert scen["summary"].n_events == ev["total"]


# ---- order events against trades ----------------------------------------------------------

def test_every_trade_has_two_consistent_fills(scen):
    shared, accounts = scen["shared"], scen["accounts"]
    trades = {r["trade_id"]: r for r in _rows(_kind(shared, "trade"))}
    orders = _kind(shared, "order")
    fills = _rows(orders.filter(pc.equal(orders.column("action"), "fill")))
    by_trade = defaultdict(list)
    for f in fills:
        assert f["trade_id"] in trades
        by_trade[f["trade_id"]].append(f)
    assert set(by_trade) == set(trades)
    for tid, fs in by_trade.items():
        t = trades[tid]
        assert len(fs) == 2 and sorted(f["is_aggressor"] for f in fs) == [False, True]
        agg = next(f for f in fs if f["is_aggressor"])
        assert agg["side"] == t["side"]
        for f in fs:
            assert f["ts"] == t["ts"] and f["price"] == t["price"] and f["qty"] == t["qty"]
            side = f["side"]
            assert f["order_id"] == t[f"{side}_order_id"]
            assert f["account"] == t[f"{side}_account"]
            assert f["platform"] == t[f"{side}_platform"] == accounts[f["account"]]["platform"]
        assert t["buy_account"] != t["sell_account"]


def test_order_lifecycles(scen):
    orders = _kind(scen["shared"], "order")
    cols = ["ts", "order_id", "action", "leaves_qty", "qty", "account", "client_order_id", "side"]
    seen: dict[str, dict] = {}
    actions = Counter()
    for r in _rows(orders.select(cols)):
        actions[r["action"]] += 1
        oid = r["order_id"]
        if r["action"] in ("new", "reject"):
            assert oid not in seen
            seen[oid] = r
            continue
        first = seen[oid]  # every amend / cancel / fill follows the order's new
        assert first["action"] == "new" and first["ts"] <= r["ts"]
        assert (r["account"], r["client_order_id"], r["side"]) == (
            first["account"], first["client_order_id"], first["side"])
        if r["action"] == "cancel":
            assert r["leaves_qty"] == 0
    assert actions["cancel"] > actions["fill"] / 2  # market makers cancel most of their orders
    assert actions["amend"] > 0 and actions["new"] > actions["fill"] / 2


# ---- labels against the data --------------------------------------------------------------

def test_episode_counts_and_spacing(scen):
    lab = scen["labels"]
    types = Counter(e["type"] for e in lab["episodes"])
    assert types["wash_trade"] >= 2 and types["price_dislocation"] >= 2
    look = Counter(e["type"] for e in lab["lookalikes"])
    assert set(look) == {"price_spike", "small_gap", "cross_platform_activity", "repeat_counterparties"}
    cfg = ScenarioConfig(minutes=MINUTES)
    for t in EPISODE_TYPES:
        assert (types + look)[t.name] == episode_count(t, cfg)
    ids = [e["episode_id"] for e in lab["episodes"] + lab["lookalikes"]]
    assert len(ids) == len(set(ids))
    by_key = defaultdict(list)
    for e in lab["episodes"] + lab["lookalikes"]:
        assert lab["start_ns"] <= e["start_ns"] <= e["end_ns"] <= lab["end_ns"]
        by_key[(e["type"], e["instrument"])].append((e["start_ns"], e["end_ns"]))
    for spans in by_key.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def test_wash_labels_match_trades(scen):
    trades = _kind(scen["shared"], "trade")
    accounts, group_of = scen["accounts"], scen["group_of"]
    ts = _ns(trades.column("ts"))
    tid = trades.column("trade_id").to_pylist()
    for e in (e for e in scen["labels"]["episodes"] if e["type"] == "wash_trade"):
        p = e["params"]
        assert 2 <= p["n_trades"] <= 8 and 10 <= p["duration_s"] <= 120
        assert len(e["trade_ids"]) == p["n_trades"]
        owners = set(e["owners"])
        assert {accounts[a]["owner_id"] for a in e["accounts"]} == owners
        assert len(owners) == 1 or len({group_of.get(o) for o in owners} - {None}) == 1
        if p["variant"] == "cross_platform":
            assert {accounts[a]["platform"] for a in e["accounts"]} == {"HKVATP", "OVSAFF"}
        lo, hi = np.searchsorted(ts, e["start_ns"]), np.searchsorted(ts, e["end_ns"], "right")
        window = _rows(trades.slice(lo, hi - lo))
        assert set(e["trade_ids"]) <= {t["trade_id"] for t in window}
        between = [t for t in window if {t["buy_account"], t["sell_account"]} <= set(e["accounts"])]
        assert len(between) == p["n_trades"]
        for t in between:
            assert accounts[t["buy_account"]]["owner_id"] in owners
            assert accounts[t["sell_account"]]["owner_id"] in owners
        assert tid.index(e["trade_ids"][0]) == lo and tid.index(e["trade_ids"][-1]) == hi - 1


def test_only_wash_episodes_trade_with_themselves(scen):
    """Background and look-alikes never match an owner, or a linked group, with itself."""
    trades = _kind(scen["shared"], "trade").select(["trade_id", "buy_account", "sell_account"]).to_pylist()
    accounts, group_of = scen["accounts"], scen["group_of"]
    wash_ids = {t for e in scen["labels"]["episodes"] if e["type"] == "wash_trade" for t in e["trade_ids"]}
    linked = {t["trade_id"] for t in trades
              if _linked(accounts[t["buy_account"]]["owner_id"], accounts[t["sell_account"]]["owner_id"], group_of)}
    assert linked == wash_ids


def test_owner_lookalikes(scen):
    accounts, group_of = scen["accounts"], scen["group_of"]
    trades = {r["trade_id"]: r for r in _rows(_kind(scen["shared"], "trade"))}
    for e in scen["labels"]["lookalikes"]:
        if e["type"] not in ("repeat_counterparties", "cross_platform_activity"):
            continue
        assert e["trade_ids"] and len(e["trade_ids"]) == e["params"]["n_trades"]
        for tid in e["trade_ids"]:
            t = trades[tid]
            assert e["start_ns"] <= t["ts"] <= e["end_ns"]
            ob, os_ = accounts[t["buy_account"]]["owner_id"], accounts[t["sell_account"]]["owner_id"]
            assert not _linked(ob, os_, group_of)
            assert {t["buy_account"], t["sell_account"]} <= set(e["accounts"])
        if e["type"] == "cross_platform_activity":
            x = e["params"]["owner"]
            plats = {accounts[a]["platform"] for a in e["accounts"] if accounts[a]["owner_id"] == x}
            assert plats == {"HKVATP", "OVSAFF"}
            assert e["end_ns"] - e["start_ns"] <= 60 * 10**9
        else:
            assert len(set(e["owners"])) == 2


def _per_second_median(t: pa.Table, instrument: str, start_ns: int, n_sec: int) -> np.ndarray:
    tr = _kind(t, "trade")
    tr = tr.filter(pc.equal(tr.column("instrument"), instrument))
    sec = (_ns(tr.column("ts")) - start_ns) // 10**9
    price = tr.column("price").to_numpy()
    out = np.full(n_sec, np.nan)
    for s in np.unique(sec):
        out[s] = np.median(price[sec == s])
    return out


def test_price_episodes_show_in_traded_prices(scen):
    lab = scen["labels"]
    start, n_sec = lab["start_ns"], (lab["end_ns"] - lab["start_ns"]) // 10**9 + 1
    for inst in {e["instrument"] for e in lab["episodes"] + lab["lookalikes"]}:
        gap = (_per_second_median(scen["refx"], inst, start, n_sec)
               / _per_second_median(scen["shared"], inst, start, n_sec) - 1) * 1e4
        quiet = np.ones(n_sec, bool)
        for e in lab["episodes"] + lab["lookalikes"]:
            if e["instrument"] != inst or e["type"] not in PRICE_TYPES:
                continue
            a, b = (e["start_ns"] - start) // 10**9, (e["end_ns"] - start) // 10**9
            quiet[max(a - 1, 0): b + 2] = False
            inner = np.abs(gap[a + 1: b])  # whole seconds inside the window
            inner = inner[~np.isnan(inner)]
            dur = (e["end_ns"] - e["start_ns"]) / 1e9
            p = e["params"]
            if e["type"] == "price_dislocation":
                assert 45 <= dur <= 300 and 80 <= p["gap_bps"] <= 400
                assert len(inner) > 30 and inner.min() > 80
            elif e["type"] == "price_spike":
                assert 2 <= dur <= 10 and 80 <= p["gap_bps"] <= 200
                assert inner.size == 0 or inner.min() > 70
            else:
                assert 45 <= dur <= 300 and 15 <= p["gap_bps"] <= 30
                assert len(inner) > 30 and 10 < np.median(inner) < 35 and inner.max() < 45
        background = np.abs(gap[quiet])
        assert np.nanmax(background) < 15, inst


# ---- FIX drop copy ------------------------------------------------------------------------

@functools.lru_cache
def _day_ns(yyyymmdd: str) -> int:
    return int(np.datetime64(f"{yyyymmdd[0:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:8]}", "ns").astype(np.int64))


def _check_frame(line: bytes) -> bytes:
    """Independent check of one line: framing, BodyLength (9) and CheckSum (10); returns the message."""
    assert line.endswith(SOH + b"\n")
    msg = line[:-1]
    head, _, rest = msg.partition(SOH)
    length_field, _, _ = rest.partition(SOH)
    trailer_at = msg.rindex(SOH + b"10=", 0, len(msg) - 1) + 1
    assert head == b"8=FIX.4.4" and length_field.startswith(b"9=")
    assert int(length_field[2:]) == trailer_at - (len(head) + len(length_field) + 2)
    checksum = msg[trailer_at + 3: -1]
    assert len(checksum) == 3 and int(checksum) == sum(msg[:trailer_at]) % 256
    return msg


def _parse_fix(line: bytes) -> dict[str, str]:
    out = {}
    for f in _check_frame(line).split(SOH)[:-1]:
        tag, _, value = f.partition(b"=")
        assert tag.decode() not in out
        out[tag.decode()] = value.decode()
    return out


def _fix_time_ns(text: str) -> int:
    day = _day_ns(text[:8])
    h, m, s = text[9:11], text[12:14], text[15:17]
    frac = text[18:]
    assert len(frac) == 9
    return int(day) + ((int(h) * 60 + int(m)) * 60 + int(s)) * 10**9 + int(frac)


def test_fix_drop_copy(scen):
    orders = _kind(scen["shared"], "order")
    exec_type = {"new": "0", "amend": "5", "cancel": "4", "fill": "F", "reject": "8", "expire": "C"}
    for platform in ("HKVATP", "OVSAFF"):
        rows = orders.filter(pc.equal(orders.column("platform"), platform)).select(
            ["ts", "recv_ts", "account", "client_order_id", "order_id", "exec_id", "action", "venue_symbol", "side",
             "order_type", "leaves_qty", "price", "qty", "trade_id", "is_aggressor"])
        ts = _ns(rows.column("ts"))
        recv = _ns(rows.column("recv_ts"))
        rows = _rows(rows)
        with open(scen["out"] / "fix" / f"{platform}.fix", "rb") as f:
            lines = f.readlines()
        assert len(lines) == len(rows)
        for i, (line, r) in enumerate(zip(lines, rows)):
            if i % 5:  # framing on every line, every field on a sample
                _check_frame(line)
                continue
            m = _parse_fix(line)
            assert (m["35"], m["49"], m["56"], m["34"]) == ("8", platform, "SURVEIL", str(i + 1))
            assert _fix_time_ns(m["60"]) == ts[i] and _fix_time_ns(m["52"]) == recv[i]
            assert (m["1"], m["11"], m["37"], m["17"]) == (r["account"], r["client_order_id"], r["order_id"],
                                                           r["exec_id"])
            assert m["150"] == exec_type[r["action"]] and m["55"] == r["venue_symbol"] and m["30"] == "SHARED"
            assert m["54"] == {"buy": "1", "sell": "2"}[r["side"]]
            assert m["40"] == {"limit": "2", "market": "1"}[r["order_type"]]
            assert ("44" in m) == (r["order_type"] == "limit")
            assert float(m["151"]) == r["leaves_qty"]
            assert float(m["38"]) - float(m["14"]) == pytest.approx(r["leaves_qty"], abs=1e-9) or \
                r["action"] in ("cancel", "reject")
            if r["action"] == "fill":
                assert float(m["31"]) == r["price"] and float(m["32"]) == r["qty"]
                assert m["880"] == r["trade_id"] and m["1057"] == ("Y" if r["is_aggressor"] else "N")
                assert m["39"] == ("2" if r["leaves_qty"] == 0 else "1")
            else:
                assert "31" not in m and "880" not in m and "1057" not in m
                if r["order_type"] == "limit" and r["action"] in ("new", "amend"):
                    assert float(m["44"]) == r["price"] and float(m["38"]) == r["qty"]


# ---- tardis and reference data ----------------------------------------------------------

def test_tardis_trades_match_canonical(scen):
    refx = _kind(scen["refx"], "trade")
    with open(scen["out"] / "tardis" / "REFX_trades.csv") as f:
        header = f.readline().strip()
        rows = list(csv.reader(f))
    assert header == "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
    assert len(rows) == refx.num_rows
    ts, recv = _ns(refx.column("ts")), _ns(refx.column("recv_ts"))
    sym, ids = refx.column("venue_symbol").to_pylist(), refx.column("trade_id").to_pylist()
    side, price, qty = refx.column("side").to_pylist(), refx.column("price").to_pylist(), refx.column("qty").to_pylist()
    for i, r in enumerate(rows):
        assert r[0] == "REFX" and r[1] == sym[i] and r[4] == ids[i] and r[5] == side[i]
        assert int(r[2]) * 1000 == ts[i] and int(r[3]) * 1000 == recv[i]
        assert float(r[6]) == price[i] and float(r[7]) == qty[i]
        assert "e" not in r[6] + r[7]
    assert len(set(ids)) == len(ids)


def test_reference_data(scen):
    accounts, group_of = scen["accounts"], scen["group_of"]
    for a, r in accounts.items():
        assert r["platform"] in ("HKVATP", "OVSAFF")
        assert r["jurisdiction"] == ("HK" if r["platform"] == "HKVATP" else "overseas")
        assert a.startswith("HK-A" if r["platform"] == "HKVATP" else "OV-B")
    owners_by_platform = defaultdict(set)
    for r in accounts.values():
        owners_by_platform[r["owner_id"]].add(r["platform"])
    assert sum(len(p) == 2 for p in owners_by_platform.values()) >= 8
    assert all(n >= 2 for n in Counter(group_of.values()).values())
    assert {r["owner_type"] for r in accounts.values()} >= {"market_maker", "proprietary", "individual"}
    used = set(scen["shared"].column("account").drop_null().unique().to_pylist())
    assert used <= set(accounts)
    assert {(v, s) for v, s in scen["instruments"]} >= {("SHARED", "BTC-USDT"), ("REFX", "BTCUSDT")}


def test_cli_and_argument_checks(tmp_path, capsys):
    from replay.scenario.__main__ import main

    assert main([str(tmp_path / "cli"), "--minutes", "0.5", "--eps", "100", "--formats", "canonical"]) == 0
    assert "events in" in capsys.readouterr().out
    assert (tmp_path / "cli" / "canonical" / "REFX.parquet").exists()
    with pytest.raises(ValueError, match="unknown formats"):
        generate(tmp_path / "x", minutes=1, formats=("csv",))
    with pytest.raises(ValueError, match="minutes"):
        ScenarioConfig(minutes=0)
