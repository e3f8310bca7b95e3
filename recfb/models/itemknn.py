"""Item-based k-nearest-neighbours with shrunk cosine similarity."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from recfb.models.base import Recommender
from recfb.utils.container import pack_csr, unpack_csr
from recfb.utils.params import Instance, Interval


class ItemKNN(Recommender):
    """Item-item collaborative filtering (Sarwar et al., WWW 2001) with shrinkage.

    ``sim(i, j) = x_i . x_j / (||x_i|| ||x_j|| + shrink)`` over the item columns of the
    user-item matrix, keeping each item's ``neighbors`` most similar items (itself
    excluded). A user's score for item ``j`` is ``sum_i x_ui sim(i, j)``.

    Parameters
    ----------
    neighbors : int, default 100
        Neighbours kept per item.
    shrink : float, default 10.0
        Shrinkage added to the cosine denominator; damps similarities from few co-occurrences.
    binarize : bool, default True
        Treat every interaction as 1 (weights ignored) when computing similarities.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`).
    search_space = {"neighbors": ("int", 10, 1000, "log"), "shrink": ("float", 0.0, 200.0)}

    _parameter_constraints = {"neighbors": [Interval("int", 1, None)], "shrink": [Interval("real", 0, None)],
                              "binarize": [Instance(bool)]}

    def __init__(self, *, neighbors: int = 100, shrink: float = 10.0, binarize: bool = True):
        self.neighbors = neighbors
        self.shrink = shrink
        self.binarize = binarize

    def fit(self, user_items, show_progress: bool = True) -> "ItemKNN":
        self._validate_params()
        k = int(self.neighbors)
        X = self._validate_fit_input(user_items)
        if self.binarize:
            X = X.copy()
            X.data[:] = 1.0
        n_items = X.shape[1]
        k = min(k, max(n_items - 1, 1))
        Xc = X.tocsc()
        norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(axis=0)).ravel()).astype(np.float32)
        XT = Xc.T.tocsr()
        # Dense blocks of the Gram matrix, top-k per row: memory stays at block x items.
        block = max(1, int(2**26 // (4 * max(n_items, 1))))
        rows, cols, vals = [], [], []
        for start in tqdm(range(0, n_items, block), disable=not show_progress, desc="ItemKNN", leave=False):
            stop = min(n_items, start + block)
            G = (XT[start:stop] @ Xc).toarray().astype(np.float32)
            G /= norms[start:stop, None] * norms[None, :] + self.shrink + 1e-12
            G[np.arange(stop - start), np.arange(start, stop)] = 0.0
            idx = np.argpartition(-G, k - 1, axis=1)[:, :k] if k < n_items else np.tile(np.arange(n_items), (stop - start, 1))
            v = np.take_along_axis(G, idx, axis=1)
            keep = v > 0
            rows.append(np.repeat(np.arange(start, stop), keep.sum(axis=1)))
            cols.append(idx[keep])
            vals.append(v[keep])
        S = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_items, n_items), dtype=np.float32)
        S.sort_indices()
        self.similarity_ = S
        return self

    def _score(self, userids, user_items):
        return (user_items @ self.similarity_).toarray()

    def _similar_scores(self, itemids):
        s = self.similarity_[itemids].toarray()
        s[np.arange(itemids.size), itemids] = 1.0  # cosine of an item with itself
        return s

    def _get_state(self):
        return pack_csr("similarity_", self.similarity_)

    def _set_state(self, arrays):
        self.similarity_ = unpack_csr("similarity_", arrays)
