"""Reference data: instruments across venues, accounts → beneficial owners, owner links.

Loaded from three CSVs in a reference directory:

- ``instruments.csv``: venue, venue_symbol, instrument, tick_size, lot_size
- ``accounts.csv``: platform, account, owner_id [, owner_type, jurisdiction]
- ``owner_links.csv``: owner_id, group_id  (optional file)

Enrichment is vectorised: keys are joined into one string column and looked up
with ``pc.index_in`` against the reference keys, so enriching a batch costs a
few hash lookups per row in C, not a Python dict access per event.

Unknown symbols: a venue that appears in ``instruments.csv`` is *mapped*: a
symbol missing from the map there is refused (dead letter, "unknown symbol").
A venue absent from the file (a public reference venue nobody mapped) passes
through with ``instrument = venue_symbol``, so real tapes replay without setup.

An account missing from ``accounts.csv`` is its own owner, ``platform:account``:
the trade is still surveilled, and a wash trade between two of its orders is
still a wash trade.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class RefDataError(ValueError):
    """A reference file is missing a column or holds an unusable row."""


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise RefDataError(f"{path}: missing column(s) {', '.join(missing)}; header is {header}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            empty = [c for c in required if not row.get(c)]
            if empty:
                raise RefDataError(f"{path}, line {lineno}: empty {', '.join(empty)}")
            rows.append(row)
        return rows


@dataclass(frozen=True)
class Instrument:
    venue: str
    venue_symbol: str
    instrument: str
    tick_size: float | None = None
    lot_size: float | None = None


@dataclass
class RefData:
    instruments: list[Instrument] = field(default_factory=list)
    # (platform, account) -> (owner_id, owner_type, jurisdiction)
    accounts: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    owner_group: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._build_index()

    @classmethod
    def load(cls, ref_dir: str | Path | None) -> "RefData":
        """Load the reference CSVs from ``ref_dir`` (None: empty reference data)."""
        if ref_dir is None:
            return cls()
        d = Path(ref_dir)
        if not d.is_dir():
            raise RefDataError(f"reference directory {d} does not exist")
        instruments, accounts, groups = [], {}, {}
        if (d / "instruments.csv").exists():
            for r in _read_csv(d / "instruments.csv", ("venue", "venue_symbol", "instrument")):
                instruments.append(Instrument(
                    r["venue"], r["venue_symbol"], r["instrument"],
                    float(r["tick_size"]) if r.get("tick_size") else None,
                    float(r["lot_size"]) if r.get("lot_size") else None,
                ))
        if (d / "accounts.csv").exists():
            for r in _read_csv(d / "accounts.csv", ("platform", "account", "owner_id")):
                accounts[(r["platform"], r["account"])] = (r["owner_id"], r.get("owner_type", ""), r.get("jurisdiction", ""))
        if (d / "owner_links.csv").exists():
            for r in _read_csv(d / "owner_links.csv", ("owner_id", "group_id")):
                groups[r["owner_id"]] = r["group_id"]
        if not (instruments or accounts):
            raise RefDataError(f"{d} holds neither instruments.csv nor accounts.csv")
        return cls(instruments, accounts, groups)

    def _build_index(self) -> None:
        self._symbols = {(i.venue, i.venue_symbol): i.instrument for i in self.instruments}
        self._mapped_venues = {i.venue for i in self.instruments}

    # -- vectorised lookups ------------------------------------------------------------
    # Each maps the few *distinct* values (or value pairs) of a batch in Python and spreads
    # the answers back with one take: a batch has millions of rows but only hundreds of
    # accounts and symbols, so this beats building a joined string key for every row.
    def instrument_of(self, venue: pa.ChunkedArray, venue_symbol: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
        """Canonical instrument per row, and a mask of rows with an unknown symbol on a mapped venue."""
        def lookup(v, sym):
            if v in self._mapped_venues:
                inst = self._symbols.get((v, sym))
                return inst, inst is None and sym is not None
            return sym, False
        (instrument, unknown) = _map_pairs(venue, venue_symbol, lookup, (pa.string(), pa.bool_()))
        return instrument, np.asarray(unknown.to_numpy(zero_copy_only=False), dtype=bool)

    def owner_of(self, platform: pa.ChunkedArray, account: pa.ChunkedArray) -> pa.Array:
        """Beneficial owner per row; ``platform:account`` when the account is not on file; null without account."""
        def lookup(p, a):
            if a is None:
                return (None,)
            known = self.accounts.get((p, a))
            return (known[0] if known else f"{p or '?'}:{a}",)
        return _map_pairs(platform, account, lookup, (pa.string(),))[0]

    def group_of(self, owner: pa.Array) -> pa.Array:
        """Linked-owner group per row; an owner in no group is its own group."""
        if not self.owner_group:
            return owner
        enc = pc.dictionary_encode(owner)
        enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
        groups = pa.array([self.owner_group.get(o, o) for o in enc.dictionary.to_pylist()], pa.string())
        return groups.take(enc.indices)

    def accounts_of_owner(self, owner_id: str) -> list[tuple[str, str]]:
        return sorted(k for k, v in self.accounts.items() if v[0] == owner_id)


def _map_pairs(a: pa.ChunkedArray, b: pa.ChunkedArray, fn, types: tuple[pa.DataType, ...]) -> list[pa.Array]:
    """``fn(a_value, b_value) -> tuple`` evaluated once per distinct pair, spread back to every row."""
    codes = []
    dicts = []
    for col in (a, b):
        enc = pc.dictionary_encode(col)
        enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
        dicts.append(enc.dictionary.to_pylist() + [None])
        idx = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)
        codes.append(idx)
    pair = codes[0] * len(dicts[1]) + codes[1]
    uniq, inverse = np.unique(pair, return_inverse=True)
    answers = [fn(dicts[0][u // len(dicts[1])], dicts[1][u % len(dicts[1])]) for u in uniq]
    take = pa.array(inverse.ravel())
    return [pa.array([ans[k] for ans in answers], typ).take(take) for k, typ in enumerate(types)]


def enrich(events: pa.Table, ref: RefData) -> tuple[pa.Table, pa.Table]:
    """Fill instrument, owners and groups; return (enriched events, refused rows with reason).

    >>> ref = RefData([Instrument("X", "BTC-USDT", "BTC/USDT")], {("P", "a1"): ("O1", "", "")}, {"O1": "G1"})
    >>> from surveil.schemas import conform
    >>> t = conform(pa.table({"kind": ["order", "order"], "venue": ["X", "X"], "venue_symbol": ["BTC-USDT", "ETH-USDT"],
    ...     "platform": ["P", "P"], "account": ["a1", "a2"]}))
    >>> ok, refused = enrich(t, ref)
    >>> ok.select(["instrument", "owner", "group_id"]).to_pylist(), refused.column("reason").to_pylist()
    ([{'instrument': 'BTC/USDT', 'owner': 'O1', 'group_id': 'G1'}], ["unknown symbol 'ETH-USDT' on venue 'X'"])
    """
    instrument, unknown = ref.instrument_of(events.column("venue"), events.column("venue_symbol"))
    instrument = pc.coalesce(events.column("instrument"), instrument)
    unknown &= np.asarray(pc.is_null(events.column("instrument")).to_numpy(zero_copy_only=False), dtype=bool)

    def set_col(t: pa.Table, name: str, values) -> pa.Table:
        return t.set_column(t.schema.get_field_index(name), name, pa.chunked_array([values]) if isinstance(values, pa.Array) else values)

    out = set_col(events, "instrument", instrument)
    owner = pc.coalesce(events.column("owner"), ref.owner_of(events.column("platform"), events.column("account")))
    buy_owner = pc.coalesce(events.column("buy_owner"), ref.owner_of(events.column("buy_platform"), events.column("buy_account")))
    sell_owner = pc.coalesce(events.column("sell_owner"), ref.owner_of(events.column("sell_platform"), events.column("sell_account")))
    out = set_col(out, "owner", owner)
    out = set_col(out, "buy_owner", buy_owner)
    out = set_col(out, "sell_owner", sell_owner)
    out = set_col(out, "group_id", ref.group_of(owner))
    out = set_col(out, "buy_group", ref.group_of(buy_owner))
    out = set_col(out, "sell_group", ref.group_of(sell_owner))
    if not unknown.any():
        return out, pa.table({"index": pa.array([], pa.int64()), "reason": pa.array([], pa.string())})
    bad = np.flatnonzero(unknown)
    venue, sym = events.column("venue"), events.column("venue_symbol")
    reasons = [f"unknown symbol {sym[i].as_py()!r} on venue {venue[i].as_py()!r}" for i in bad]
    refused = pa.table({"index": pa.array(bad, pa.int64()), "reason": pa.array(reasons, pa.string())})
    return out.filter(pa.array(~unknown)), refused
