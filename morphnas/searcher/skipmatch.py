"""Optimal matching of skip-connection sets, one set against every interned set at once: the skip term.

A ``SkipSetMatcher`` interns the members' skip sets (concatenated into flat arrays) and computes the
``distance.skips_distance`` of a new set to all of them in one vectorised pass, memoised by set identity.
Split out of ``cache`` so the matching can be read and tested apart from the cache's bookkeeping.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from morphnas.searcher.distance import Skip


class SkipSetMatcher:
    """Interned skip sets (ids in order of interning) and the vectorised matching distance to all of them."""

    def __init__(self) -> None:
        self._ids: dict[tuple[Skip, ...], int] = {}
        self._sets: list[tuple[Skip, ...]] = []
        self._kinds: dict[str, int] = {}
        self._u = np.zeros(0)
        self._l = np.zeros(0)
        self._k = np.zeros(0, dtype=np.int64)
        self._bounds = np.zeros(1, dtype=np.int64)
        self._memo: dict[tuple[Skip, ...], np.ndarray] = {}
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def _arrays(self, skips: tuple[Skip, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start positions, lengths and kind codes of ``skips`` as arrays."""
        codes = [self._kinds.setdefault(s[2], len(self._kinds)) for s in skips]
        return (np.array([s[0] for s in skips], dtype=np.float64),
                np.array([s[1] for s in skips], dtype=np.float64), np.array(codes, dtype=np.int64))

    def intern(self, skips: tuple[Skip, ...]) -> int:
        """The id of a (member's) skip set, interning it if new; interned sets are kept concatenated."""
        sid = self._ids.get(skips)
        if sid is None:
            sid = len(self._sets)
            self._ids[skips] = sid
            self._sets.append(skips)
            u, length, k = self._arrays(skips)
            self._u = np.concatenate([self._u, u])
            self._l = np.concatenate([self._l, length])
            self._k = np.concatenate([self._k, k])
            self._bounds = np.append(self._bounds, self._bounds[-1] + len(skips))
        return sid

    def distances(self, skips: tuple[Skip, ...], others: np.ndarray) -> np.ndarray:
        """Skip distances from ``skips`` to the interned sets with ids ``others`` (memoised ``distances_to_all``)."""
        n_sets = len(self._sets)
        row = self._memo.get(skips)
        if row is None or len(row) != n_sets:
            if len(self._memo) > 4096:
                self._memo.clear()
            row = self._memo[skips] = self.distances_to_all(skips)
        return row[others]

    def distances_to_all(self, skips: tuple[Skip, ...]) -> np.ndarray:
        """Optimal-matching skip distance from ``skips`` to EVERY interned skip set (by id), vectorised.

        One cost matrix against all interned skips at once. Per set: an empty side costs the other's size; a
        side with one skip costs a row or column minimum; small sets (up to 2000 injective assignments) are
        matched exactly by enumerating the assignments for all sets of that size together; larger ones by
        ``linear_sum_assignment``. Plus 1 per unmatched skip.
        """
        sizes = np.diff(self._bounds)
        na = len(skips)
        res = np.abs(sizes - na).astype(np.float64)
        if na == 0 or not len(sizes):
            return res
        ua, la, ka = self._arrays(skips)
        ub, lb, kb = self._u, self._l, self._k
        den = np.maximum(ua[:, None], ub[None, :]) + np.maximum(la[:, None], lb[None, :])
        num = np.abs(ua[:, None] - ub[None, :]) + np.abs(la[:, None] - lb[None, :])
        cost = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        cost[ka[:, None] != kb[None, :]] = 1.0
        starts = self._bounds[:-1]
        for nb in np.unique(sizes[sizes > 0]).tolist():
            sel = np.flatnonzero(sizes == nb)
            cols = starts[sel][:, None] + np.arange(nb)[None, :]  # (G, nb)
            blocks = np.moveaxis(cost[:, cols], 0, 1)  # (G, na, nb)
            if na == 1 or nb == 1:
                best = blocks.reshape(len(sel), -1).min(axis=1)
            else:
                small, big = min(na, nb), max(na, nb)
                if math.perm(big, small) <= 2000:
                    perms = self._perms(big, small)
                    if na <= nb:
                        best = blocks[:, np.arange(na)[None, :], perms].sum(-1).min(axis=1)
                    else:
                        best = blocks[:, perms, np.arange(nb)[None, :]].sum(-1).min(axis=1)
                else:
                    best = np.empty(len(sel))
                    for g, block in enumerate(blocks):
                        r, c = linear_sum_assignment(block)
                        best[g] = block[r, c].sum()
            res[sel] += best
        return res

    def _perms(self, big: int, small: int) -> np.ndarray:
        """All injective assignments of ``small`` items to ``big`` slots (memoised)."""
        key = (big, small)
        if key not in self._perm_cache:
            self._perm_cache[key] = np.array(list(itertools.permutations(range(big), small)), dtype=np.int64)
        return self._perm_cache[key]
