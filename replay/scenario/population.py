"""Who trades: beneficial owners, their accounts on HKVATP and OVSAFF, linked groups, roles.

Everything is held in arrays indexed by owner number and account number, so background flow
can draw millions of counterparties at once.  Background trades never match two accounts of
one owner, or of two linked owners: only injected episodes do that.

>>> import numpy as np
>>> from replay.scenario.config import PopulationConfig
>>> pop = build_population(np.random.default_rng(1), PopulationConfig())
>>> pop.owner_ids[:2], pop.account_ids[0][:4] in ("HK-A", "OV-B")
(['O0001', 'O0002'], True)
>>> bool((pop.owner_role[pop.account_owner[pop.maker_pool]] == MARKET_MAKER).any())
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ACCOUNT_PREFIX, JURISDICTION, PLATFORMS, PopulationConfig

MARKET_MAKER, ARBITRAGEUR, TRADER = 0, 1, 2
ROLE_NAMES = ("market_maker", "arbitrageur", "trader")
HK, OV = 0, 1  # platform codes = index into PLATFORMS


@dataclass
class Population:
    owner_ids: list[str]
    owner_type: list[str]  # reference data: market_maker | proprietary | individual | corporate
    owner_role: np.ndarray  # MARKET_MAKER | ARBITRAGEUR | TRADER
    owner_group: np.ndarray  # group number, -1 when unlinked
    group_ids: list[str]
    account_ids: list[str]
    account_platform: np.ndarray  # HK | OV
    account_owner: np.ndarray
    maker_pool: np.ndarray  # account numbers that rest orders, with weights
    maker_weight: np.ndarray
    mm_accounts: np.ndarray  # market makers' accounts (two-sided quotes)
    taker_pool: np.ndarray
    taker_weight: np.ndarray
    arb_accounts: np.ndarray

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    def accounts_of(self, owner: int) -> np.ndarray:
        return np.flatnonzero(self.account_owner == owner)

    def linked(self, acct_a: np.ndarray, acct_b: np.ndarray) -> np.ndarray:
        """Same owner, or two owners of one linked group."""
        oa, ob = self.account_owner[acct_a], self.account_owner[acct_b]
        ga, gb = self.owner_group[oa], self.owner_group[ob]
        return (oa == ob) | ((ga >= 0) & (ga == gb))

    def owner_linked(self, a: int, b: int) -> bool:
        return a == b or (self.owner_group[a] >= 0 and self.owner_group[a] == self.owner_group[b])

    def reference_rows(self):
        """(accounts rows, owner link rows) for ``ref/accounts.csv`` and ``ref/owner_links.csv``."""
        accounts = [
            (PLATFORMS[p], a, self.owner_ids[o], self.owner_type[o], JURISDICTION[PLATFORMS[p]])
            for a, p, o in zip(self.account_ids, self.account_platform.tolist(), self.account_owner.tolist())
        ]
        accounts.sort(key=lambda r: (r[0], r[1]))
        links = sorted(
            (self.owner_ids[o], self.group_ids[g]) for o, g in enumerate(self.owner_group.tolist()) if g >= 0
        )
        return accounts, links


def build_population(rng: np.random.Generator, cfg: PopulationConfig, mm_maker_share: float = 0.75) -> Population:
    n = cfg.n_owners
    if n < cfg.n_market_makers + cfg.n_arbitrageurs + 3 * cfg.n_groups + 20:
        raise ValueError(f"population too small for its roles and groups (n_owners={n})")
    # Roles are assigned to owner numbers in a random order so O0001 is not always a market maker.
    role = np.full(n, TRADER, dtype=np.int8)
    perm = rng.permutation(n)
    role[perm[: cfg.n_market_makers]] = MARKET_MAKER
    role[perm[cfg.n_market_makers: cfg.n_market_makers + cfg.n_arbitrageurs]] = ARBITRAGEUR
    owner_ids = [f"O{i + 1:04d}" for i in range(n)]
    owner_type = []
    for o in range(n):
        if role[o] == MARKET_MAKER:
            owner_type.append("market_maker")
        elif role[o] == ARBITRAGEUR:
            owner_type.append("proprietary")
        else:
            owner_type.append("corporate" if rng.random() < cfg.p_corporate else "individual")

    # Platforms per owner: (has HK, has OV), then an optional second account on one of them.
    u = rng.random(n)
    has_hk = np.where(role == TRADER, u < cfg.p_both_platforms + cfg.p_hk_only, u < 0.75)
    has_ov = np.where(role == TRADER, (u < cfg.p_both_platforms) | (u >= cfg.p_both_platforms + cfg.p_hk_only),
                      u >= 0.25)
    second = (role == TRADER) & (rng.random(n) < cfg.p_second_account)
    traders = np.flatnonzero(role == TRADER)
    # Every wash variant needs candidates: a few owners on both platforms, a few with two accounts.
    both = traders[has_hk[traders] & has_ov[traders]]
    if len(both) < 8:
        extra = rng.choice(traders, 8, replace=False)
        has_hk[extra] = has_ov[extra] = True
    if second.sum() < 6:
        second[rng.choice(traders, 6, replace=False)] = True

    acct_owner, acct_platform = [], []
    for o in range(n):
        plats = [p for p, has in ((HK, has_hk[o]), (OV, has_ov[o])) if has]
        if second[o]:
            plats.append(plats[int(rng.integers(len(plats)))])
        for p in plats:
            acct_owner.append(o)
            acct_platform.append(p)
    acct_owner = np.array(acct_owner, dtype=np.int32)
    acct_platform = np.array(acct_platform, dtype=np.int8)
    # Account numbers: random, distinct per platform (numbering does not reveal the owner).
    account_ids = [""] * len(acct_owner)
    for p, platform in enumerate(PLATFORMS):
        idx = np.flatnonzero(acct_platform == p)
        nums = np.sort(rng.choice(99_999, len(idx), replace=False) + 1)
        for i, num in zip(rng.permutation(idx), nums):
            account_ids[i] = f"{ACCOUNT_PREFIX[platform]}{num:05d}"

    # Linked groups among traders: disjoint, 2-3 owners each.
    group = np.full(n, -1, dtype=np.int32)
    pool = list(rng.permutation(traders))
    for g in range(cfg.n_groups):
        size = int(rng.integers(2, 4))
        for _ in range(size):
            group[pool.pop()] = g
    group_ids = [f"G{g + 1:03d}" for g in range(cfg.n_groups)]

    acct_role = role[acct_owner]
    mm_accounts = np.flatnonzero(acct_role == MARKET_MAKER).astype(np.int32)
    trader_accounts = np.flatnonzero(acct_role == TRADER).astype(np.int32)
    arb_accounts = np.flatnonzero(acct_role == ARBITRAGEUR).astype(np.int32)
    # Heavy-tailed activity: a few traders do much of the trading.
    activity = rng.lognormal(0.0, 1.0, len(trader_accounts))
    mm_w = rng.uniform(0.5, 1.5, len(mm_accounts))
    maker_pool = np.concatenate([mm_accounts, trader_accounts])
    maker_weight = np.concatenate([
        mm_w / mm_w.sum() * mm_maker_share,
        activity / activity.sum() * (1.0 - mm_maker_share),
    ])
    return Population(
        owner_ids=owner_ids, owner_type=owner_type, owner_role=role, owner_group=group, group_ids=group_ids,
        account_ids=account_ids, account_platform=acct_platform, account_owner=acct_owner,
        maker_pool=maker_pool, maker_weight=maker_weight / maker_weight.sum(), mm_accounts=mm_accounts,
        taker_pool=trader_accounts, taker_weight=activity / activity.sum(), arb_accounts=arb_accounts,
    )


def draw_accounts(rng: np.random.Generator, pool: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(weight)
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return pool[np.minimum(idx, len(pool) - 1)]
