"""Sampled-negatives protocol: each test item is ranked against ``n_negatives`` sampled items."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from recfb.evaluation._common import (
    MetricResults,
    check_batch_size,
    check_ks,
    check_matrices,
    progress,
    rows_of,
    select_users,
)
from recfb.utils.errors import DataError
from recfb.utils.validation import check_positive_int, check_random_state, check_userids

SAMPLERS = ("uniform", "popularity")


def sample_negatives(train_X, test_X, users=None, n_negatives: int = 100, sampler: str = "uniform",
                     seed=0, batch_size=None) -> np.ndarray:
    """Per-user negatives: items the user has in neither ``train_X`` nor ``test_X``.

    Drawn without replacement by the Gumbel-top-k trick, in batches of users: each eligible
    item gets the key ``log(w_i) + Gumbel(0, 1)`` and the ``n_negatives`` largest keys win,
    which is sequential sampling without replacement with probability proportional to
    ``w_i``. ``sampler="uniform"``: ``w_i = 1``; ``"popularity"``: ``w_i`` = number of
    ``train_X`` interactions of item ``i`` (items never seen in train are never drawn).

    Parameters
    ----------
    train_X, test_X : scipy.sparse matrix, users x items, same shape
    users : array of int, optional
        Users to sample for (default: every row), in this order after ``np.unique``.
    n_negatives : int, default 100
    sampler : {"uniform", "popularity"}
    seed : None, int or numpy Generator
    batch_size : int, optional
        Users per batch; default keeps users x items float32 keys ~64 MiB.

    Returns
    -------
    ndarray, int64, (len(users), n_negatives)
        Item ids in no particular order; a user with fewer eligible items gets them all, the
        row padded with -1.
    """
    train, test = check_matrices(train_X, test_X)
    n_negatives = check_positive_int(n_negatives, "n_negatives")
    log_w = _log_weights(train, sampler)
    if users is None:
        users = np.arange(train.shape[0], dtype=np.int64)
    else:
        users = np.unique(check_userids(users, train.shape[0], name="users")[0])
    rng = check_random_state(seed)
    batch_size = check_batch_size(batch_size, train.shape[1])
    out = np.empty((users.size, n_negatives), np.int64)
    for start in range(0, users.size, batch_size):
        stop = min(users.size, start + batch_size)
        out[start:stop] = _draw(rng, log_w, rows_of(train, users, start, stop),
                                rows_of(test, users, start, stop), n_negatives)
    return out


def sampled_ranking_metrics(model, train_X, test_X, n_negatives: int = 100, sampler: str = "uniform",
                            k=(10,), seed=0, users=None, negatives=None, batch_size=None,
                            per_user: bool = False, show_progress: bool = False) -> MetricResults:
    r"""HR@k, NDCG@k and MRR with each test item ranked against sampled negatives.

    For every evaluated user, ``n_negatives`` items the user has in neither ``train_X`` nor
    ``test_X`` are drawn once, without replacement (see :func:`sample_negatives`), and each
    of the user's test items (the positives) is ranked against that same set. Scores come from
    ``model.score(userids, train_rows, items=<2-D per-user candidates>)`` (the recfb
    contract). With ``g`` the negatives scored strictly above the positive and ``t`` those
    tied with it, ties are broken at random *in expectation*: the positive's rank is uniform
    on ``g + 1 .. g + t + 1`` and every metric is its mean over those ranks (neither
    optimistic nor pessimistic; with no ties, ``rank = g + 1``).

    - ``hit_rate@k = P(rank <= k)``
    - ``ndcg@k = E[1 / log2(rank + 1) if rank <= k else 0]`` (one relevant item per ranking)
    - ``mrr@k = E[1 / rank if rank <= k else 0]``; ``mrr = E[1 / rank]`` (no cut-off)

    Each metric is averaged over a user's test items, then over users. Users without test
    items are skipped and counted in ``n_skipped``; a user with fewer than ``n_negatives``
    eligible items is ranked against all of them (with a warning). Test items that are also
    train items are ranked like the others (``score`` does not filter). Sampling costs
    O(users x items) random keys, in batches.

    Parameters
    ----------
    model : object with recfb's ``score(userids, user_items, items)``
    train_X, test_X : scipy.sparse matrix, users x items, same shape
    n_negatives : int, default 100
    sampler : {"uniform", "popularity"}, default "uniform"
        Popularity: probability proportional to the item's number of train interactions.
    k : int or sequence of int, default (10,)
    seed : None, int or numpy Generator, default 0
    users : array of int, optional
        Evaluate only these users (default: all rows of ``test_X``).
    negatives : int array (n_evaluated_users, n), optional
        Fixed negatives, one row per evaluated user (sorted user ids with test items), -1 for
        padding; replaces sampling (then ``n_negatives``, ``sampler`` and ``seed`` are unused).
    batch_size : int, optional
        Users per batch; default keeps users x items float32 ~64 MiB.
    per_user : bool, default False
        Also return per-user values (``result.per_user``).
    show_progress : bool, default False

    Returns
    -------
    MetricResults
        ``hit_rate@k``, ``ndcg@k``, ``mrr@k`` for each k and ``mrr``; attributes ``n_users``,
        ``n_skipped``, ``n_pairs`` (test items ranked), ``per_user``, ``k``.
    """
    ks = check_ks(k)
    train, test = check_matrices(train_X, test_X)
    n_items = train.shape[1]
    eval_users, n_skipped = select_users(test, users)
    if eval_users.size == 0:
        raise DataError("no user to evaluate: test_X has no interaction for the requested users "
                        f"({n_skipped} skipped).")
    if not callable(getattr(model, "score", None)):
        raise TypeError(f"model must have recfb's score(userids, user_items, items) method; "
                        f"got {type(model).__name__}.")
    if negatives is None:
        n_negatives = check_positive_int(n_negatives, "n_negatives")
        log_w = _log_weights(train, sampler)
        rng = check_random_state(seed)
    else:
        negatives = np.asarray(negatives)
        if negatives.ndim != 2 or negatives.shape[0] != eval_users.size:
            raise DataError(f"negatives must have one row per evaluated user ({eval_users.size}), "
                            f"got shape {negatives.shape}.")
        if negatives.size and (not np.issubdtype(negatives.dtype, np.integer)
                               or negatives.min() < -1 or negatives.max() >= n_items):
            raise DataError(f"negatives must be item ids in 0..{n_items - 1} or -1 (padding).")
        negatives = negatives.astype(np.int64)
    batch_size = check_batch_size(batch_size, n_items)

    n_test = np.diff(test.indptr)[eval_users]
    max_rank = (n_negatives if negatives is None else negatives.shape[1]) + 1
    ranks = np.arange(1, max_rank + 1, dtype=np.float64)
    # cumulative tables over rank r = 0..max_rank, so a mean over ranks a+1..b is (T[b]-T[a])/(b-a)
    tables = {"ndcg": 1.0 / np.log2(ranks + 1), "mrr": 1.0 / ranks}
    cum = {name: np.concatenate([[0.0], np.cumsum(v)]) for name, v in tables.items()}

    names = [f"{m}@{c}" for c in ks for m in ("hit_rate", "ndcg", "mrr")] + ["mrr"]
    values = {name: np.empty(eval_users.size) for name in names}
    short = 0
    bar = progress(eval_users.size, show_progress, "sampled metrics")
    for start in range(0, eval_users.size, batch_size):
        stop = min(eval_users.size, start + batch_size)
        batch = eval_users[start:stop]
        train_rows = rows_of(train, eval_users, start, stop)
        test_rows = rows_of(test, eval_users, start, stop)
        negs = (_draw(rng, log_w, train_rows, test_rows, n_negatives) if negatives is None
                else negatives[start:stop])
        neg_valid = negs >= 0
        short += int((~neg_valid.all(axis=1)).sum())

        # positives of the batch, padded to a rectangle (pad id 0, masked)
        n_pos = np.diff(test_rows.indptr)
        width = int(n_pos.max())
        row_of_pair = np.repeat(np.arange(stop - start), n_pos)
        col_of_pair = np.arange(test_rows.nnz) - np.repeat(test_rows.indptr[:-1], n_pos)
        pos_items = np.zeros((stop - start, width), np.int64)
        pos_items[row_of_pair, col_of_pair] = test_rows.indices

        candidates = np.concatenate([pos_items, np.where(neg_valid, negs, 0)], axis=1)
        scores = np.asarray(model.score(batch, train_rows, items=candidates))
        if scores.shape != candidates.shape:
            raise DataError(f"model.score returned shape {scores.shape} for candidates of shape "
                            f"{candidates.shape}.")
        if np.isnan(scores).any():
            raise DataError("model.score returned NaN scores; cannot rank.")
        greater, ties = _count_above(scores[:, width:], neg_valid, scores[:, :width])
        greater, ties = greater[row_of_pair, col_of_pair], ties[row_of_pair, col_of_pair]

        # expected metrics over ranks greater+1 .. greater+ties+1
        lo, hi, span = greater, greater + ties + 1, ties + 1.0
        pair_vals = {"mrr": (cum["mrr"][hi] - cum["mrr"][lo]) / span}
        for c in ks:
            top = np.minimum(hi, c)
            bottom = np.minimum(lo, c)
            pair_vals[f"hit_rate@{c}"] = (top - bottom) / span
            pair_vals[f"ndcg@{c}"] = (cum["ndcg"][top] - cum["ndcg"][bottom]) / span
            pair_vals[f"mrr@{c}"] = (cum["mrr"][top] - cum["mrr"][bottom]) / span
        for name, v in pair_vals.items():
            values[name][start:stop] = np.bincount(row_of_pair, weights=v, minlength=stop - start) / n_pos
        bar.update(stop - start)
    bar.close()
    if short:
        warnings.warn(f"{short} users had fewer than {max_rank - 1} eligible negatives and were "
                      "ranked against all they had.", stacklevel=2)

    result = {name: float(values[name].mean()) for name in names}
    detail = {"users": eval_users.copy(), **values} if per_user else None
    return MetricResults(result, n_users=int(eval_users.size), n_skipped=n_skipped, per_user=detail,
                         k=ks, n_pairs=int(n_test.sum()))


def _log_weights(train: sp.csr_matrix, sampler: str) -> np.ndarray | None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler == {sampler!r}, must be one of {SAMPLERS}.")
    if sampler == "uniform":
        return None
    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)
    with np.errstate(divide="ignore"):
        return np.log(counts)  # -inf for items without train interactions: never drawn


def _draw(rng: np.random.Generator, log_w, train_rows, test_rows, n: int) -> np.ndarray:
    """Gumbel-top-``n`` per row, excluding each user's train and test items; -1 pads."""
    n_rows, n_items = train_rows.shape
    if log_w is None:  # uniform: the top-n of i.i.d. keys is a uniform subset
        keys = rng.random((n_rows, n_items), dtype=np.float32)
    else:
        keys = rng.standard_exponential((n_rows, n_items), dtype=np.float32)
        with np.errstate(divide="ignore"):  # an exponential draw of exactly 0 gives key +inf
            np.log(keys, out=keys)
        np.subtract(log_w, keys, out=keys)  # log w - log E = log w + Gumbel
    for rows in (train_rows, test_rows):
        keys[np.repeat(np.arange(n_rows), np.diff(rows.indptr)), rows.indices] = -np.inf
    if n < n_items:
        top = np.argpartition(keys, n_items - n, axis=1)[:, n_items - n:]
    else:
        top = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    chosen = np.take_along_axis(keys, top, axis=1)
    out = np.where(np.isneginf(chosen), -1, top).astype(np.int64)
    if n > n_items:
        out = np.pad(out, ((0, 0), (0, n - n_items)), constant_values=-1)
    return out


def _count_above(neg_scores, neg_valid, pos_scores):
    """For each positive (``pos_scores``: users x padded positives): the user's valid negatives
    scored strictly higher, and those tied with it."""
    import torch

    # invalid negatives sort first as -inf; discount them from the "<=" and "<" counts
    neg = np.where(neg_valid, neg_scores, -np.inf).astype(np.float64)
    neg.sort(axis=1)
    n_invalid = (~neg_valid).sum(axis=1)[:, None]
    seq = torch.from_numpy(neg)
    vals = torch.from_numpy(np.ascontiguousarray(pos_scores, dtype=np.float64))
    leq = torch.searchsorted(seq, vals, right=True).numpy() - n_invalid
    less = np.maximum(torch.searchsorted(seq, vals, right=False).numpy() - n_invalid, 0)
    return neg_valid.shape[1] - n_invalid - leq, leq - less
