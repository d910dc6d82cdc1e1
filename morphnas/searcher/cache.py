"""The architecture cache: descriptors computed once, edit distances grown incrementally, in batches.

Architectures enter the GP as integer indices into this cache. *Members* (observed or pending architectures)
have a full distance matrix: adding one costs its distances to the ``n`` members, computed in one vectorised
pass. *Scratch* entries (the candidates of one step of the acquisition optimizer) get indices after the
members and distances to all members, and are replaced by the next scratch batch, so the thousands of
candidates a search scores never enter the member matrix.

The two terms come from their own modules: ``levenshtein`` (the token vocabulary and batched alignment of
layer sequences, whose DP tables this cache splices for children of one parent) and ``skipmatch`` (optimal
matching of skip sets, memoised by set identity). ``levenshtein_batch`` is re-exported here for old imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from morphnas.graph.graph import Graph
from morphnas.searcher.distance import SEQUENCE_KINDS, Descriptor, LayerToken, Skip, describe, skips_distance
from morphnas.searcher.levenshtein import TokenVocabulary, join_halves, levenshtein_batch, levenshtein_rows
from morphnas.searcher.skipmatch import SkipSetMatcher

__all__ = ["ArchitectureCache", "levenshtein_batch", "levenshtein_rows"]

F = TypeVar("F")


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
        self.vocabulary = TokenVocabulary()  # layer tokens and their substitution costs
        self.skipsets = SkipSetMatcher()  # interned member skip sets
        # member token matrix, skip-set ids and distance matrices (capacity-doubled)
        self._tok = np.zeros((0, 0), dtype=np.int64)
        self._tok_rev = np.zeros((0, 0), dtype=np.int64)  # each sequence reversed, left-aligned
        self._len = np.zeros(0, dtype=np.int64)
        self._parent_tables: tuple[tuple[LayerToken, ...], int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._signatures: set[tuple[tuple[LayerToken, ...], tuple[Skip, ...]]] = set()
        self._sid = np.zeros(0, dtype=np.int64)
        self._dl = np.zeros((0, 0))
        self._ds = np.zeros((0, 0))
        # scratch batch
        self._scratch_desc: list[Descriptor] = []
        self._scratch_graphs: list[Graph] = []
        self._scratch_features: list[dict[str, Any]] = []
        self._scratch_dl = np.zeros((0, 0))
        self._scratch_ds = np.zeros((0, 0))
        self._scratch_self: np.ndarray | None = None

    # ------------------------------------------------------------------ member arrays
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
        dl = levenshtein_batch(a_tok, a_len, self._tok[:n], self._len[:n], self.vocabulary.sub)
        ds = np.stack([self.skipsets.distances(sk, self._sid[:n]) for sk in skips]) if n else np.zeros((len(skips), 0))
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
        tokens = self.vocabulary.tokens(desc)
        sid = self.skipsets.intern(desc.skips)
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
        tokens = [self.vocabulary.tokens(d) for d in descs]
        skips = [d.skips for d in descs]
        if parent is not None and len(self) and graphs:
            dl = self._spliced(parent, tokens)
            ds = np.stack([self.skipsets.distances(sk, self._sid[: len(self)]) for sk in skips])
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
            ptok = self.vocabulary.tokens(parent)
            lb = int(self._len[:n].max())
            forward = levenshtein_rows(ptok, self._tok[:n, :lb], self.vocabulary.sub)
            backward = levenshtein_rows(ptok[::-1].copy(), self._tok_rev[:n, :lb], self.vocabulary.sub)
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
                middle, self._tok[:n, :lb], self.vocabulary.sub, start=forward[k])[-1]
            out[r] = join_halves(front, k + len(middle), backward[s], s, b_len)
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
            dl = levenshtein_batch(a_tok, a_len, a_tok, a_len, self.vocabulary.sub)
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
