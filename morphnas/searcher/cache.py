"""The architecture cache: descriptors computed once, edit distances grown incrementally, in batches.

Architectures enter the GP as integer indices into this cache. *Members* (observed or pending architectures)
have a full distance matrix: adding one costs its distances to the ``n`` members, computed in one vectorised
pass. *Scratch* entries (the candidates of one step of the acquisition optimizer) get indices after the
members and distances to all members, and are replaced by the next scratch batch, so the thousands of
candidates a search scores never enter the member matrix.

The Levenshtein alignment runs for a whole batch of pairs at once: layer tokens are interned into a
vocabulary with a precomputed substitution-cost table, each DP row is a gather plus a running minimum
(``np.minimum.accumulate``) over all pairs, and skip-set matchings are memoised by skip-set identity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from morphnas.graph.graph import Graph
from morphnas.searcher.distance import (
    SEQUENCE_KINDS,
    SIZE_ATTRIBUTES,
    Descriptor,
    LayerToken,
    Skip,
    describe,
    skips_distance,
)

F = TypeVar("F")
_MAX_ATTRS = max(len(v) for v in SIZE_ATTRIBUTES.values())


def levenshtein_batch(a_tok: np.ndarray, a_len: np.ndarray, b_tok: np.ndarray, b_len: np.ndarray,
                      sub: np.ndarray) -> np.ndarray:
    """Levenshtein distances of every ``a`` sequence to every ``b`` sequence: shape (len(a), len(b)).

    Sequences are rows of padded token matrices with their lengths; ``sub[s, t]`` is the substitution cost
    of tokens ``s`` and ``t`` (insertion and deletion cost 1). Row ``i`` of the DP table for all pairs at once:
    ``D[i, j] = min(D[i-1, j] + 1, D[i-1, j-1] + sub, D[i, j-1] + 1)``, where the last (horizontal) term is a
    running minimum of ``D[i, k] - k``.
    """
    m, n = len(a_len), len(b_len)
    out = np.empty((m, n), dtype=np.float64)
    if m == 0 or n == 0:
        return out
    lb = int(b_len.max())
    b_tok = b_tok[:, :lb]
    cols = np.arange(lb + 1, dtype=np.float64)
    prev = np.broadcast_to(cols, (m, n, lb + 1)).copy()
    rows_n = np.arange(n)
    done = a_len == 0
    if done.any():
        out[done] = b_len[None, :].astype(np.float64)
    t = np.empty_like(prev)
    for i in range(1, int(a_len.max()) + 1):
        cost = sub[a_tok[:, i - 1]][:, b_tok] if lb else np.empty((m, n, 0))  # (m, n, lb)
        np.add(prev[:, :, :-1], cost, out=t[:, :, 1:])
        np.minimum(t[:, :, 1:], prev[:, :, 1:] + 1.0, out=t[:, :, 1:])
        t[:, :, 0] = i
        t -= cols
        np.minimum.accumulate(t, axis=2, out=t)
        t += cols
        prev, t = t, prev
        done = np.flatnonzero(a_len == i)
        if done.size:
            out[done] = prev[done[:, None], rows_n[None, :], b_len[None, :]]
    return out


class ArchitectureCache:
    """Descriptors and pairwise edit distances of architectures, addressed by integer index.

    ``lam`` weighs the skip term: ``d = D_layers + lam·D_skip`` (both parts are kept, so ``lam`` can change
    without recomputing). Members are deduplicated by canonical hash: adding a known architecture returns its
    index.
    """

    def __init__(self, lam: float = 1.0, kinds: Iterable[str] = SEQUENCE_KINDS) -> None:
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be a finite number >= 0, got {lam}")
        self.lam = float(lam)
        self.kinds = frozenset(kinds)
        self._descriptors: list[Descriptor] = []
        self._graphs: list[Graph] = []
        self._index: dict[str, int] = {}
        self._features: list[dict[str, Any]] = []
        # token vocabulary and its substitution-cost table
        self._vocab: dict[LayerToken, int] = {}
        self._tok_kind: list[str] = []
        self._tok_attr = np.zeros((0, _MAX_ATTRS))
        self._tok_nattr = np.zeros(0, dtype=np.int64)
        self._sub = np.zeros((0, 0))
        # member token matrix, skip-set ids and distance matrices (capacity-doubled)
        self._tok = np.zeros((0, 0), dtype=np.int64)
        self._len = np.zeros(0, dtype=np.int64)
        self._skipsets: dict[tuple[Skip, ...], int] = {}
        self._skipset_list: list[tuple[Skip, ...]] = []
        self._sid = np.zeros(0, dtype=np.int64)
        self._skipmemo: dict[tuple[int, int], float] = {}
        self._skiparrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._skipkinds: dict[str, int] = {}
        self._dl = np.zeros((0, 0))
        self._ds = np.zeros((0, 0))
        # scratch batch
        self._scratch_desc: list[Descriptor] = []
        self._scratch_graphs: list[Graph] = []
        self._scratch_features: list[dict[str, Any]] = []
        self._scratch_dl = np.zeros((0, 0))
        self._scratch_ds = np.zeros((0, 0))
        self._scratch_self: np.ndarray | None = None

    # ------------------------------------------------------------------ vocabulary
    def _token_id(self, token: LayerToken) -> int:
        tid = self._vocab.get(token)
        if tid is not None:
            return tid
        tid = len(self._vocab)
        self._vocab[token] = tid
        attrs = np.zeros(_MAX_ATTRS)
        attrs[: len(token[1])] = token[1]
        self._tok_kind.append(token[0])
        self._tok_attr = np.vstack([self._tok_attr, attrs])
        self._tok_nattr = np.append(self._tok_nattr, len(token[1]))
        if tid >= self._sub.shape[0]:
            cap = max(64, 2 * self._sub.shape[0])
            sub = np.ones((cap, cap))
            sub[: tid, : tid] = self._sub[: tid, : tid]
            self._sub = sub
        same = np.array([k == token[0] for k in self._tok_kind])
        hi = np.maximum(self._tok_attr, attrs)
        rel = np.divide(np.abs(self._tok_attr - attrs), hi, out=np.zeros_like(hi), where=hi > 0)
        n_attr = len(token[1])
        row = rel[:, :n_attr].mean(axis=1) if n_attr else np.zeros(tid + 1)
        row = np.where(same, row, 1.0)
        self._sub[tid, : tid + 1] = row
        self._sub[: tid + 1, tid] = row
        return tid

    def _tokens(self, desc: Descriptor) -> np.ndarray:
        return np.array([self._token_id(t) for t in desc.layers], dtype=np.int64)

    def _skipset_id(self, skips: tuple[Skip, ...]) -> int:
        sid = self._skipsets.get(skips)
        if sid is None:
            sid = len(self._skipset_list)
            self._skipsets[skips] = sid
            self._skipset_list.append(skips)
        return sid

    def _arrays(self, skips: tuple[Skip, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        codes = [self._skipkinds.setdefault(s[2], len(self._skipkinds)) for s in skips]
        return (np.array([s[0] for s in skips], dtype=np.float64),
                np.array([s[1] for s in skips], dtype=np.float64), np.array(codes, dtype=np.int64))

    def _skip_arrays(self, sid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, length, kind code) arrays of member skip set ``sid``, built once."""
        arrays = self._skiparrays.get(sid)
        if arrays is None:
            arrays = self._skiparrays[sid] = self._arrays(self._skipset_list[sid])
        return arrays

    def _skip_row(self, skips: tuple[Skip, ...], sid: int | None, others: np.ndarray) -> np.ndarray:
        """Skip distances from ``skips`` (member skip set ``sid``, or None for a scratch entry: nothing is
        memoised) to each member skip-set id in ``others``, vectorised over the sets.

        One cost matrix against all skips of all the other sets at once; per set, the matching is free when
        either side is empty or has one skip (a row or column minimum), else ``linear_sum_assignment``.
        """
        uniq, inverse = np.unique(others, return_inverse=True)
        vals = np.empty(len(uniq))
        todo = []
        for k, other in enumerate(uniq.tolist()):
            val = None
            if sid is not None:
                val = self._skipmemo.get((sid, other) if sid <= other else (other, sid))
            if val is None:
                todo.append(k)
            else:
                vals[k] = val
        if todo:
            ua, la, ka = self._skip_arrays(sid) if sid is not None else self._arrays(skips)
            parts = [self._skip_arrays(int(uniq[k])) for k in todo]
            sizes = np.array([len(p[0]) for p in parts], dtype=np.int64)
            na = len(ua)
            if na == 0 or sizes.sum() == 0:
                res = np.maximum(sizes, na).astype(np.float64)
            else:
                ub, lb, kb = (np.concatenate([p[j] for p in parts]) for j in range(3))
                den = np.maximum(ua[:, None], ub[None, :]) + np.maximum(la[:, None], lb[None, :])
                num = np.abs(ua[:, None] - ub[None, :]) + np.abs(la[:, None] - lb[None, :])
                cost = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
                cost[ka[:, None] != kb[None, :]] = 1.0
                res = np.empty(len(todo))
                bounds = np.concatenate([[0], np.cumsum(sizes)])
                for j in range(len(todo)):
                    nb = int(sizes[j])
                    if nb == 0:
                        res[j] = na
                        continue
                    block = cost[:, bounds[j]: bounds[j + 1]]
                    if na == 1 or nb == 1:
                        res[j] = block.min() + abs(na - nb)
                    else:
                        r, c = linear_sum_assignment(block)
                        res[j] = block[r, c].sum() + abs(na - nb)
                same = np.array([self._skipset_list[int(uniq[k])] == skips for k in todo])
                res[same] = 0.0
            for j, k in enumerate(todo):
                vals[k] = res[j]
                if sid is not None:
                    other = int(uniq[k])
                    self._skipmemo[(sid, other) if sid <= other else (other, sid)] = float(res[j])
        return vals[inverse]

    @staticmethod
    def _pad(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        lens = np.array([len(r) for r in rows], dtype=np.int64)
        mat = np.zeros((len(rows), max(1, int(lens.max(initial=0)))), dtype=np.int64)
        for k, r in enumerate(rows):
            mat[k, : len(r)] = r
        return mat, lens

    def _grow(self, n: int, length: int) -> None:
        cap, lcap = self._tok.shape
        if n > cap or length > lcap:
            new_cap = max(n, cap if n <= cap else max(16, 2 * cap))
            new_l = max(length, lcap if length <= lcap else max(16, 2 * lcap))
            tok = np.zeros((new_cap, new_l), dtype=np.int64)
            tok[:cap, :lcap] = self._tok
            self._tok = tok
        if n > self._dl.shape[0]:
            new_cap = max(16, 2 * self._dl.shape[0], n)
            for name in ("_dl", "_ds"):
                old = getattr(self, name)
                mat = np.zeros((new_cap, new_cap))
                mat[: old.shape[0], : old.shape[1]] = old
                setattr(self, name, mat)
            self._len = np.concatenate([self._len, np.zeros(new_cap - len(self._len), dtype=np.int64)])
            self._sid = np.concatenate([self._sid, np.zeros(new_cap - len(self._sid), dtype=np.int64)])

    def _rows_to_members(self, tokens: Sequence[np.ndarray], skips: Sequence[tuple[Skip, ...]],
                         sids: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
        """(layers, skips) distances of new descriptors to all current members, in one batch."""
        n = len(self)
        a_tok, a_len = self._pad(tokens)
        dl = levenshtein_batch(a_tok, a_len, self._tok[:n], self._len[:n], self._sub)
        ds = (np.stack([self._skip_row(sk, sid, self._sid[:n]) for sk, sid in zip(skips, sids, strict=True)])
              if n else np.zeros((len(skips), 0)))
        return dl, ds

    # ------------------------------------------------------------------ members
    def __len__(self) -> int:
        return len(self._descriptors)

    def add(self, graph: Graph, key: str | None = None) -> int:
        """Index of ``graph`` as a member, adding it (and its ``n`` distances) if it is new."""
        key = graph.canonical_hash() if key is None else key
        if key in self._index:
            return self._index[key]
        self.clear_scratch()
        desc = describe(graph, self.kinds, key)
        tokens = self._tokens(desc)
        sid = self._skipset_id(desc.skips)
        dl, ds = self._rows_to_members([tokens], [desc.skips], [sid])
        n = len(self)
        self._grow(n + 1, len(tokens))
        self._tok[n, : len(tokens)] = tokens
        self._len[n] = len(tokens)
        self._sid[n] = sid
        self._dl[n, :n] = self._dl[:n, n] = dl[0]
        self._ds[n, :n] = self._ds[:n, n] = ds[0]
        self._descriptors.append(desc)
        self._graphs.append(graph if graph.weights is None else graph.without_weights())
        self._features.append({})
        self._index[key] = n
        return n

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index_of(self, graph_or_key: Graph | str) -> int | None:
        """Member index of an architecture (a graph or its canonical hash), or None."""
        key = graph_or_key if isinstance(graph_or_key, str) else graph_or_key.canonical_hash()
        return self._index.get(key)

    def _check(self, idx: np.ndarray) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= len(self) + len(self._scratch_desc)):
            raise IndexError(f"architecture index out of range: {idx.min()}..{idx.max()} for "
                             f"{len(self)} members and {len(self._scratch_desc)} scratch entries")

    def descriptor(self, i: int) -> Descriptor:
        """Descriptor of member or scratch entry ``i``."""
        n = len(self)
        return self._descriptors[i] if i < n else self._scratch_desc[i - n]

    def graph(self, i: int) -> Graph:
        """Architecture (without weights) of member or scratch entry ``i``."""
        n = len(self)
        return self._graphs[i] if i < n else self._scratch_graphs[i - n]

    def feature(self, name: str, i: int, compute: Callable[[Graph], F]) -> F:
        """``compute(graph(i))``, memoised under ``name`` (kernels keep per-architecture features here)."""
        n = len(self)
        store = self._features[i] if i < n else self._scratch_features[i - n]
        if name not in store:
            store[name] = compute(self.graph(i))
        return store[name]

    # ------------------------------------------------------------------ scratch
    def set_scratch(self, graphs: Sequence[Graph], keys: Sequence[str] | None = None) -> np.ndarray:
        """Give ``graphs`` the temporary indices ``len(self)...``, replacing the previous scratch batch.

        ``keys``: their canonical hashes, when the caller has them already.
        """
        self.clear_scratch()
        if keys is not None and len(keys) != len(graphs):
            raise ValueError(f"{len(graphs)} graphs but {len(keys)} keys")
        descs = [describe(g, self.kinds, None if keys is None else keys[k]) for k, g in enumerate(graphs)]
        tokens = [self._tokens(d) for d in descs]
        self._scratch_dl, self._scratch_ds = self._rows_to_members(tokens, [d.skips for d in descs],
                                                                   [None] * len(descs))
        self._scratch_desc = descs
        self._scratch_graphs = list(graphs)
        self._scratch_features = [{} for _ in graphs]
        self._scratch_tokens = tokens
        return np.arange(len(self), len(self) + len(graphs))

    def clear_scratch(self) -> None:
        """Forget the scratch batch."""
        self._scratch_desc, self._scratch_graphs, self._scratch_features = [], [], []
        self._scratch_dl = self._scratch_ds = np.zeros((0, len(self)))
        self._scratch_self = None

    @property
    def n_scratch(self) -> int:
        return len(self._scratch_desc)

    def _scratch_pairs(self) -> np.ndarray:
        if self._scratch_self is None:
            a_tok, a_len = self._pad(self._scratch_tokens)
            dl = levenshtein_batch(a_tok, a_len, a_tok, a_len, self._sub)
            ds = np.array([[skips_distance(a.skips, b.skips) for b in self._scratch_desc] for a in self._scratch_desc])
            dl = np.minimum(dl, dl.T)  # exact symmetry against round-off
            self._scratch_self = dl + self.lam * np.minimum(ds, ds.T)
        return self._scratch_self

    # ------------------------------------------------------------------ distances
    def distances(self, rows: Sequence[int] | np.ndarray, cols: Sequence[int] | np.ndarray | None = None
                  ) -> np.ndarray:
        """Edit distances ``d[rows, cols]`` (members and scratch entries alike); ``cols`` defaults to ``rows``."""
        r = np.asarray(rows, dtype=np.int64).ravel()
        c = r if cols is None else np.asarray(cols, dtype=np.int64).ravel()
        self._check(r)
        self._check(c)
        n = len(self)
        out = np.empty((len(r), len(c)))
        rm, cm = r < n, c < n
        if rm.any() and cm.any():
            ri, ci = np.ix_(r[rm], c[cm])
            out[np.ix_(rm, cm)] = self._dl[ri, ci] + self.lam * self._ds[ri, ci]
        if (~rm).any() and cm.any():
            ri, ci = np.ix_(r[~rm] - n, c[cm])
            out[np.ix_(~rm, cm)] = self._scratch_dl[ri, ci] + self.lam * self._scratch_ds[ri, ci]
        if rm.any() and (~cm).any():
            ri, ci = np.ix_(c[~cm] - n, r[rm])
            out[np.ix_(rm, ~cm)] = (self._scratch_dl[ri, ci] + self.lam * self._scratch_ds[ri, ci]).T
        if (~rm).any() and (~cm).any():
            out[np.ix_(~rm, ~cm)] = self._scratch_pairs()[np.ix_(r[~rm] - n, c[~cm] - n)]
        return out

    def matrix(self) -> np.ndarray:
        """The full member distance matrix (a copy)."""
        n = len(self)
        return self._dl[:n, :n] + self.lam * self._ds[:n, :n]

    def min_distance_to_members(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """For each index in ``rows``, its distance to the closest *other* member (inf with no member)."""
        r = np.asarray(rows, dtype=np.int64).ravel()
        n = len(self)
        if n == 0:
            return np.full(len(r), np.inf)
        d = self.distances(r, np.arange(n))
        mine = r < n
        d[np.flatnonzero(mine), r[mine]] = np.inf
        return d.min(axis=1)
