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

import itertools
import math
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
    of tokens ``s`` and ``t`` (insertion and deletion cost 1). All pairs advance one DP row at a time in the
    reduced form of ``levenshtein_rows``.
    """
    m, n = len(a_len), len(b_len)
    out = np.empty((m, n), dtype=np.float64)
    if m == 0 or n == 0:
        return out
    lb = int(b_len.max())
    b_tok = b_tok[:, :lb]
    sub2 = sub - 2.0
    g = np.zeros((m, n, lb + 1))
    rows_n = np.arange(n)
    done = a_len == 0
    if done.any():
        out[done] = b_len[None, :].astype(np.float64)
    cand = np.empty((m, n, lb))
    for i in range(1, int(a_len.max()) + 1):
        np.add(g[:, :, :-1], sub2[a_tok[:, i - 1]][:, b_tok], out=cand)
        np.minimum(g[:, :, 1:], cand, out=g[:, :, 1:])
        np.minimum.accumulate(g, axis=2, out=g)
        done = np.flatnonzero(a_len == i)
        if done.size:
            out[done] = g[done[:, None], rows_n[None, :], b_len[None, :]] + i + b_len[None, :]
    return out


def levenshtein_rows(a: np.ndarray, b_tok: np.ndarray, sub: np.ndarray, start: np.ndarray | None = None
                     ) -> np.ndarray:
    """All DP rows of one sequence ``a`` against every (padded) ``b``, in reduced form: (len(a) + 1, n, w + 1).

    Row ``i`` holds ``G[i, j] = D(a[:i], b[:j]) − i − j``. The reduced table obeys ``G[i, j] = min(G[i−1, j],
    G[i−1, j−1] + sub − 2, G[i, j−1])`` with ``G[i, 0] = 0``: three array passes per row (the last one a running
    minimum) instead of seven. Entries past a ``b``'s length are padding garbage. With ``start`` (a reduced row
    computed earlier) the DP continues from there.
    """
    n, lb = b_tok.shape
    rows = np.zeros((len(a) + 1, n, lb + 1))
    if start is not None:
        rows[0] = start
    sub2 = sub - 2.0
    for i, tok in enumerate(a.tolist(), start=1):
        prev, t = rows[i - 1], rows[i]
        np.add(prev[:, :-1], sub2[tok][b_tok], out=t[:, 1:])
        np.minimum(t[:, 1:], prev[:, 1:], out=t[:, 1:])
        np.minimum.accumulate(t, axis=1, out=t)
    return rows


def _join(front: np.ndarray, front_row: int, back: np.ndarray, back_row: int, b_len: np.ndarray) -> np.ndarray:
    """``min_j D_front[b, j] + D_back[b, len_b − j]`` from reduced rows: a sequence split in two, for every ``b``.

    ``front`` is reduced row ``front_row`` of the forward DP, ``back`` reduced row ``back_row`` of the DP on
    the reversed sequences; in reduced form the ``j`` terms cancel and the sum is ``front_row + back_row + len_b``.
    """
    j = np.arange(front.shape[1])
    idx = b_len[:, None] - j[None, :]
    vals = np.take_along_axis(back, np.clip(idx, 0, None), axis=1)
    return np.where(idx >= 0, front + vals, np.inf).min(axis=1) + front_row + back_row + b_len


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
        self._tok_rev = np.zeros((0, 0), dtype=np.int64)  # each sequence reversed, left-aligned
        self._len = np.zeros(0, dtype=np.int64)
        self._parent_tables: tuple[tuple[LayerToken, ...], int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._signatures: set[tuple[tuple[LayerToken, ...], tuple[Skip, ...]]] = set()
        self._skipsets: dict[tuple[Skip, ...], int] = {}
        self._skipset_list: list[tuple[Skip, ...]] = []
        self._sid = np.zeros(0, dtype=np.int64)
        self._skipkinds: dict[str, int] = {}
        self._set_u = np.zeros(0)
        self._set_l = np.zeros(0)
        self._set_k = np.zeros(0, dtype=np.int64)
        self._set_bounds = np.zeros(1, dtype=np.int64)
        self._row_memo: dict[tuple[Skip, ...], np.ndarray] = {}
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}
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

    def _arrays(self, skips: tuple[Skip, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        codes = [self._skipkinds.setdefault(s[2], len(self._skipkinds)) for s in skips]
        return (np.array([s[0] for s in skips], dtype=np.float64),
                np.array([s[1] for s in skips], dtype=np.float64), np.array(codes, dtype=np.int64))

    def _skipset_id(self, skips: tuple[Skip, ...]) -> int:
        """Intern a member's skip set; all interned sets are kept concatenated for vectorised matching."""
        sid = self._skipsets.get(skips)
        if sid is None:
            sid = len(self._skipset_list)
            self._skipsets[skips] = sid
            self._skipset_list.append(skips)
            u, length, k = self._arrays(skips)
            self._set_u = np.concatenate([self._set_u, u])
            self._set_l = np.concatenate([self._set_l, length])
            self._set_k = np.concatenate([self._set_k, k])
            self._set_bounds = np.append(self._set_bounds, self._set_bounds[-1] + len(skips))
        return sid

    def _skip_row(self, skips: tuple[Skip, ...], others: np.ndarray) -> np.ndarray:
        """Skip distances from ``skips`` to each interned skip set in ``others`` (see ``_set_row``)."""
        n_sets = len(self._skipset_list)
        row = self._row_memo.get(skips)
        if row is None or len(row) != n_sets:
            if len(self._row_memo) > 4096:
                self._row_memo.clear()
            row = self._row_memo[skips] = self._set_row(skips)
        return row[others]

    def _set_row(self, skips: tuple[Skip, ...]) -> np.ndarray:
        """Optimal-matching skip distance from ``skips`` to EVERY interned skip set, vectorised.

        One cost matrix against all interned skips at once. Per set: an empty side costs the other's size; a
        side with one skip costs a row or column minimum; small sets (up to 2000 injective assignments) are
        matched exactly by enumerating the assignments for all sets of that size together; larger ones by
        ``linear_sum_assignment``. Plus 1 per unmatched skip.
        """
        sizes = np.diff(self._set_bounds)
        na = len(skips)
        res = np.abs(sizes - na).astype(np.float64)
        if na == 0 or not len(sizes):
            return res
        ua, la, ka = self._arrays(skips)
        ub, lb, kb = self._set_u, self._set_l, self._set_k
        den = np.maximum(ua[:, None], ub[None, :]) + np.maximum(la[:, None], lb[None, :])
        num = np.abs(ua[:, None] - ub[None, :]) + np.abs(la[:, None] - lb[None, :])
        cost = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        cost[ka[:, None] != kb[None, :]] = 1.0
        starts = self._set_bounds[:-1]
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
        key = (big, small)
        if key not in self._perm_cache:
            self._perm_cache[key] = np.array(list(itertools.permutations(range(big), small)), dtype=np.int64)
        return self._perm_cache[key]

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
            for name in ("_tok", "_tok_rev"):
                tok = np.zeros((new_cap, new_l), dtype=np.int64)
                tok[:cap, :lcap] = getattr(self, name)
                setattr(self, name, tok)
        if n > self._dl.shape[0]:
            new_cap = max(16, 2 * self._dl.shape[0], n)
            for name in ("_dl", "_ds"):
                old = getattr(self, name)
                mat = np.zeros((new_cap, new_cap))
                mat[: old.shape[0], : old.shape[1]] = old
                setattr(self, name, mat)
            self._len = np.concatenate([self._len, np.zeros(new_cap - len(self._len), dtype=np.int64)])
            self._sid = np.concatenate([self._sid, np.zeros(new_cap - len(self._sid), dtype=np.int64)])

    def _rows_to_members(self, tokens: Sequence[np.ndarray], skips: Sequence[tuple[Skip, ...]]
                         ) -> tuple[np.ndarray, np.ndarray]:
        """(layers, skips) distances of new descriptors to all current members, in one batch."""
        n = len(self)
        a_tok, a_len = self._pad(tokens)
        dl = levenshtein_batch(a_tok, a_len, self._tok[:n], self._len[:n], self._sub)
        ds = np.stack([self._skip_row(sk, self._sid[:n]) for sk in skips]) if n else np.zeros((len(skips), 0))
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
        self._parent_tables = None
        desc = describe(graph, self.kinds, key)
        tokens = self._tokens(desc)
        sid = self._skipset_id(desc.skips)
        dl, ds = self._rows_to_members([tokens], [desc.skips])
        n = len(self)
        self._grow(n + 1, len(tokens))
        self._tok[n, : len(tokens)] = tokens
        self._tok_rev[n, : len(tokens)] = tokens[::-1]
        self._len[n] = len(tokens)
        self._sid[n] = sid
        self._dl[n, :n] = self._dl[:n, n] = dl[0]
        self._ds[n, :n] = self._ds[:n, n] = ds[0]
        self._descriptors.append(desc)
        self._signatures.add(desc.signature)
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
    def describe(self, graph: Graph) -> Descriptor:
        """``graph``'s descriptor under this cache's sequence kinds, without its canonical hash (``key=""``)."""
        return describe(graph, self.kinds, "")

    def has_signature(self, descriptor: Descriptor) -> bool:
        """Whether a member has the same descriptor (so is at distance 0 from it)."""
        return descriptor.signature in self._signatures

    def set_scratch(self, graphs: Sequence[Graph], descriptors: Sequence[Descriptor] | None = None,
                    parent: Descriptor | None = None) -> np.ndarray:
        """Give ``graphs`` the temporary indices ``len(self)...``, replacing the previous scratch batch.

        ``descriptors``: theirs, when the caller has them already. ``parent``: the descriptor of an architecture
        they are all close to (the optimizer's expanded node): its DP tables against the members are computed
        once and each child's layer distances are spliced from them (exact, see ``_spliced``).
        """
        self.clear_scratch()
        if descriptors is not None and len(descriptors) != len(graphs):
            raise ValueError(f"{len(graphs)} graphs but {len(descriptors)} descriptors")
        descs = list(descriptors) if descriptors is not None else [describe(g, self.kinds) for g in graphs]
        tokens = [self._tokens(d) for d in descs]
        skips = [d.skips for d in descs]
        if parent is not None and len(self) and graphs:
            dl = self._spliced(parent, tokens)
            ds = np.stack([self._skip_row(sk, self._sid[: len(self)]) for sk in skips])
            self._scratch_dl, self._scratch_ds = dl, ds
        else:
            self._scratch_dl, self._scratch_ds = self._rows_to_members(tokens, skips)
        self._scratch_desc = descs
        self._scratch_graphs = list(graphs)
        self._scratch_features = [{} for _ in graphs]
        self._scratch_tokens = tokens
        return np.arange(len(self), len(self) + len(graphs))

    def _spliced(self, parent: Descriptor, children: Sequence[np.ndarray]) -> np.ndarray:
        """Layer distances of ``children`` to all members, spliced from ``parent``'s DP tables.

        A child is the parent's tokens with a middle part replaced: ``c = P[:k] + X + P[Lp-s:]``. Then
        ``d(c, b) = min_j D(P[:k] + X, b[:j]) + D(P[Lp-s:], b[j:])``: the first term continues the parent's
        forward row ``k`` over ``X`` (usually 1-3 tokens), the second is row ``s`` of the parent's DP on the
        reversed sequences. Exactly the full Levenshtein, at the cost of a few DP rows per child.
        """
        n = len(self)
        tables = self._parent_tables
        if tables is None or tables[0] != parent.layers or tables[1] != n:
            ptok = self._tokens(parent)
            lb = int(self._len[:n].max())
            forward = levenshtein_rows(ptok, self._tok[:n, :lb], self._sub)
            backward = levenshtein_rows(ptok[::-1].copy(), self._tok_rev[:n, :lb], self._sub)
            tables = self._parent_tables = (parent.layers, n, ptok, forward, backward)
        _, _, ptok, forward, backward = tables
        lb = forward.shape[2] - 1
        b_len = self._len[:n]
        out = np.empty((len(children), n))
        lp = len(ptok)
        for r, ctok in enumerate(children):
            lc = len(ctok)
            k = 0
            while k < min(lp, lc) and ptok[k] == ctok[k]:
                k += 1
            s = 0
            while s < min(lp, lc) - k and ptok[lp - 1 - s] == ctok[lc - 1 - s]:
                s += 1
            middle = ctok[k: lc - s]
            front = forward[k] if not len(middle) else levenshtein_rows(
                middle, self._tok[:n, :lb], self._sub, start=forward[k])[-1]
            out[r] = _join(front, k + len(middle), backward[s], s, b_len)
        return out

    def clear_scratch(self) -> None:
        """Forget the scratch batch."""
        self._scratch_desc, self._scratch_graphs, self._scratch_features = [], [], []
        self._scratch_dl = self._scratch_ds = np.zeros((0, len(self)))
        self._scratch_self = None

    @property
    def n_scratch(self) -> int:
        """Number of entries in the current scratch batch."""
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
