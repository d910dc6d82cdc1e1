"""Batched Levenshtein distances between layer sequences: the layer term of the edit distance.

Layer tokens are interned into a ``TokenVocabulary`` with a precomputed substitution-cost table (the cost of
``distance.layer_cost``); ``levenshtein_batch`` aligns whole batches of pairs at once, each DP row a gather plus
a running minimum (``np.minimum.accumulate``) over all pairs. ``levenshtein_rows`` and ``join_halves`` let the
``ArchitectureCache`` splice a child's distances from its parent's DP tables. Split out of ``cache`` so the
alignment can be read and tested apart from the cache's bookkeeping.
"""

from __future__ import annotations

import numpy as np

from morphnas.searcher.distance import Descriptor, LayerToken


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


def join_halves(front: np.ndarray, front_row: int, back: np.ndarray, back_row: int, b_len: np.ndarray) -> np.ndarray:
    """``min_j D_front[b, j] + D_back[b, len_b − j]`` from reduced rows: a sequence split in two, for every ``b``.

    ``front`` is reduced row ``front_row`` of the forward DP, ``back`` reduced row ``back_row`` of the DP on
    the reversed sequences; in reduced form the ``j`` terms cancel and the sum is ``front_row + back_row + len_b``.
    """
    j = np.arange(front.shape[1])
    idx = b_len[:, None] - j[None, :]
    vals = np.take_along_axis(back, np.clip(idx, 0, None), axis=1)
    return np.where(idx >= 0, front + vals, np.inf).min(axis=1) + front_row + back_row + b_len


class TokenVocabulary:
    """Layer tokens interned as integer ids, with the substitution-cost table ``sub[s, t]`` grown alongside."""

    def __init__(self) -> None:
        self._ids: dict[LayerToken, int] = {}
        self._kinds: list[str] = []
        self._attrs = np.zeros((0, 0))  # one row per token; as wide as the most size attributes seen
        self.sub = np.zeros((0, 0))

    def __len__(self) -> int:
        return len(self._ids)

    def token_id(self, token: LayerToken) -> int:
        """The id of ``token``, interning it (and its substitution costs to all known tokens) if new."""
        tid = self._ids.get(token)
        if tid is not None:
            return tid
        tid = len(self._ids)
        self._ids[token] = tid
        width = max(self._attrs.shape[1], len(token[1]))  # a kind registered later may have more attributes
        if width > self._attrs.shape[1]:
            self._attrs = np.hstack([self._attrs, np.zeros((len(self._attrs), width - self._attrs.shape[1]))])
        attrs = np.zeros(width)
        attrs[: len(token[1])] = token[1]
        self._kinds.append(token[0])
        self._attrs = np.vstack([self._attrs, attrs])
        if tid >= self.sub.shape[0]:
            cap = max(64, 2 * self.sub.shape[0])
            sub = np.ones((cap, cap))
            sub[: tid, : tid] = self.sub[: tid, : tid]
            self.sub = sub
        same = np.array([k == token[0] for k in self._kinds])
        hi = np.maximum(self._attrs, attrs)
        rel = np.divide(np.abs(self._attrs - attrs), hi, out=np.zeros_like(hi), where=hi > 0)
        n_attr = len(token[1])
        row = rel[:, :n_attr].mean(axis=1) if n_attr else np.zeros(tid + 1)
        row = np.where(same, row, 1.0)
        self.sub[tid, : tid + 1] = row
        self.sub[: tid + 1, tid] = row
        return tid

    def tokens(self, desc: Descriptor) -> np.ndarray:
        """The token ids of a descriptor's layer sequence."""
        return np.array([self.token_id(t) for t in desc.layers], dtype=np.int64)
