"""Full-ranking top-k metrics: every item is a candidate, the user's train items excluded."""
from __future__ import annotations

import numpy as np

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
from recfb.utils.pairs import contains, csr_keys, pair_keys

METRICS = ("precision", "recall", "calibrated_recall", "ndcg", "map", "mrr", "hit_rate")
_FLT_MAX = np.finfo(np.float32).max


def ranking_metrics(model, train_X, test_X, k=(10, 20), users=None, batch_size=None,
                    per_user: bool = False, filter_already_liked_items: bool = True,
                    recalculate_user: bool = False, show_progress: bool = False, extra=(),
                    item_features=None, item_categories=None, index=None, distributed=False) -> MetricResults:
    r"""Top-k ranking metrics of ``model`` under the full-ranking protocol.

    Each evaluated user's top ``max(k)`` items come from one ``model.recommend`` call per
    batch of users, with the user's ``train_X`` row as ``user_items`` (so, by default, train
    items are never recommended). Any object with implicit's ``recommend`` works: recfb models
    and implicit's own. Metrics are averaged over users that have at least one test item;
    users without test items are skipped and counted in ``n_skipped``.

    With ``hits@k`` the recommended test items among the top ``k``, ``T`` the user's test
    items and ``rel_i`` whether the item at rank ``i`` is a test item:

    - ``precision@k = hits@k / k``
    - ``recall@k = hits@k / |T|``
    - ``calibrated_recall@k = hits@k / min(k, |T|)``: the recall of Liang et al. (WWW 2018,
      VAE-CF) and Steck (EASE), which reaches 1 for a perfect ranking even when ``|T| > k``
    - ``ndcg@k = sum_{i<=k} rel_i / log2(i + 1)`` divided by the ideal DCG over
      ``min(k, |T|)`` hits (binary gains)
    - ``map@k = sum_{i<=k} rel_i * precision@i / min(k, |T|)`` (implicit's definition)
    - ``mrr@k = 1 / rank`` of the first hit within ``k``, else 0
    - ``hit_rate@k = 1`` if ``hits@k > 0`` else 0
    - ``coverage@k`` = distinct items recommended in the top ``k`` over all evaluated users,
      divided by the number of items (the only metric not averaged over users).

    Test items that are also train items stay in ``T`` (as in
    ``implicit.evaluation.ranking_metrics_at_k``): they cannot be recommended while train
    items are filtered, so they lower recall and ndcg instead of being silently dropped.
    ``ndcg@k`` and ``map@k`` equal implicit's ``ndcg`` and ``map``; recfb's ``precision@k``
    divides by ``k`` while implicit's ``precision`` divides by ``min(k, |T|)`` summed over
    users. Positions the model leaves empty (id ``-1``) or fills with a filtered item (score
    ``-inf`` or ``-FLT_MAX``, as implicit does when a user has fewer eligible items than
    ``k``) are never hits, never covered. Duplicate entries of ``test_X`` count once; a stored
    entry counts as an interaction whatever its weight.

    Parameters
    ----------
    model : object with ``recommend(userids, user_items, N, filter_already_liked_items=...)``
    train_X, test_X : scipy.sparse matrix, users x items, same shape
        CSR expected (other formats are converted with a warning); NaN/inf weights raise.
    k : int or sequence of int, default (10, 20)
        Cut-offs, each >= 1.
    users : array of int, optional
        Evaluate only these user ids (default: every row of ``test_X``).
    batch_size : int, optional
        Users per ``recommend`` call; default keeps users x items float32 scores ~64 MiB.
    per_user : bool, default False
        Also return per-user values in ``result.per_user``.
    filter_already_liked_items : bool, default True
        Passed to ``recommend``; ``False`` lets train items be recommended (and hit).
    recalculate_user : bool, default False
        Passed to ``recommend``: models that fold users in (ALS, the embedding models) compute
        each user's vector from its ``train_X`` row instead of the stored factors. This is the
        strong-generalisation protocol: ``train_X`` holds held-out users' fold-in rows and
        ``test_X`` their targets. Item-based models (EASE, ItemKNN) always score from the row.
    show_progress : bool, default False
        tqdm progress bar over users.
    extra : sequence of str, default ()
        Beyond-accuracy metrics of the same top-k lists (evaluated users only), from
        :func:`recfb.evaluation.diversity_metrics`: any of ``"novelty"``, ``"gini"``,
        ``"coverage"`` (the same figure as always), ``"avg_popularity"``, ``"ild"`` (needs
        ``item_features``) and ``"miscalibration"`` (needs ``item_categories``).
    item_features, item_categories : array, optional
        Passed to :func:`recfb.evaluation.diversity_metrics` for ``"ild"`` and ``"miscalibration"``.
    index : recfb.serving.ItemIndex, optional
        Rank through this index instead of ``model.recommend`` (queries: ``model.user_factors``
        for embedding indices, the ``train_X`` rows for item-item ones), so the figures show
        what an approximate index costs next to the exact ones.
    distributed : bool or None, default False
        Shard the evaluated users across the ranks of a torch.distributed group (see
        :func:`recfb.distributed.get_comm`; None: when a group is initialised; False, the
        default, also lets rank 0 alone evaluate inside a distributed job). Every rank
        passes the same ``model``, ``train_X`` and ``test_X`` and scores a contiguous block
        of the users; the metrics' exact sums are all-reduced (coverage by a max over item
        flags; the top-k lists and ``per_user`` values are gathered in user order, only when
        ``extra`` or ``per_user`` ask for them), so every rank returns exactly what one process
        returns. Means are always the correctly rounded mean of the per-user values
        (:mod:`recfb.distributed.exact`), whatever the world size.

    Returns
    -------
    MetricResults
        ``{"precision@k", "recall@k", "calibrated_recall@k", "ndcg@k", "map@k", "mrr@k", "hit_rate@k",
        "coverage@k"}`` for each ``k`` (and ``"<extra>@k"``), as Python floats; attributes ``n_users``,
        ``n_skipped``, ``per_user``, ``k``.
    """
    ks = check_ks(k)
    beyond = _check_extra(extra, item_features, item_categories)
    train, test = check_matrices(train_X, test_X)
    n_users, n_items = test.shape
    eval_users, n_skipped = select_users(test, users)
    if eval_users.size == 0:
        raise DataError("no user to evaluate: test_X has no interaction for the requested users "
                        f"({n_skipped} skipped).")
    if index is not None:
        model = index.as_recommender(model)
    if not hasattr(model, "recommend"):
        raise TypeError(f"model must have implicit's recommend(userids, user_items, N, ...) method; "
                        f"got {type(model).__name__}.")
    from recfb.distributed import get_comm
    from recfb.distributed.exact import exact_means
    comm = get_comm(distributed)
    all_users = eval_users
    if comm.enabled:  # this rank's contiguous block of users (blocks in rank order = user order)
        eval_users = np.array_split(all_users, comm.world_size)[comm.rank]
    batch_size = check_batch_size(batch_size, n_items)
    max_k = ks[-1]
    n_rec = min(max_k, n_items)

    # Test interactions as sorted int64 keys user * n_items + item (CSR rows are sorted, so
    # the keys are); a hit is a recommended key found in it.
    n_test = np.diff(test.indptr)
    test_keys = csr_keys(test)
    n_test_eval = n_test[eval_users]

    discount = 1.0 / np.log2(np.arange(2, max_k + 2))
    ideal = np.cumsum(discount)
    n_eval = eval_users.size
    values = {f"{m}@{c}": np.empty(n_eval) for c in ks for m in METRICS}
    covered = {c: np.zeros(n_items, dtype=bool) for c in ks}
    lists = np.full((n_eval, max_k), -1, np.int64) if beyond else None

    bar = progress(n_eval, show_progress and comm.is_main, "ranking metrics")
    for start in range(0, n_eval, batch_size):
        stop = min(n_eval, start + batch_size)
        batch = eval_users[start:stop]
        extra = {"recalculate_user": True} if recalculate_user else {}
        ids, scores = model.recommend(batch.astype(np.int32), rows_of(train, eval_users, start, stop),
                                      N=n_rec, filter_already_liked_items=filter_already_liked_items, **extra)
        ids = _as_2d(ids, stop - start, "ids")
        scores = _as_2d(scores, stop - start, "scores")
        ids, scores = ids[:, :max_k], scores[:, :max_k]
        valid = (ids >= 0) & (ids < n_items) & (scores > -_FLT_MAX)
        hit = valid & contains(test_keys, pair_keys(batch[:, None], ids, n_items))
        if hit.shape[1] < max_k:  # fewer columns than asked (few items): pad with misses
            hit = np.pad(hit, ((0, 0), (0, max_k - hit.shape[1])))
            valid = np.pad(valid, ((0, 0), (0, max_k - valid.shape[1])))
            ids = np.pad(ids, ((0, 0), (0, max_k - ids.shape[1])), constant_values=-1)
        _batch_metrics(hit, n_test_eval[start:stop], ks, discount, ideal, values, slice(start, stop))
        for c in ks:
            covered[c][ids[:, :c][valid[:, :c]]] = True
        if lists is not None:
            lists[start:stop] = np.where(valid, ids, -1)
        bar.update(stop - start)
    bar.close()

    means = exact_means(values, all_users.size, comm)
    if comm.enabled:
        flags = comm.all_reduce_array(np.stack([covered[c] for c in ks]).astype(np.int32), "max")
        covered = {c: flags[j].astype(bool) for j, c in enumerate(ks)}
        if lists is not None:
            lists = comm.all_gather_array(lists)
        if per_user:
            values = {name: comm.all_gather_array(v) for name, v in values.items()}
    result = {}
    for c in ks:
        for m in METRICS:
            result[f"{m}@{c}"] = means[f"{m}@{c}"]
        result[f"coverage@{c}"] = float(covered[c].sum() / n_items) if n_items else 0.0
    if beyond:
        from recfb.evaluation.diversity import diversity_metrics
        more = diversity_metrics(lists, train, k=ks, item_features=item_features, item_categories=item_categories,
                                 users=all_users)
        result.update({f"{m}@{c}": more[f"{m}@{c}"] for c in ks for m in beyond})
    detail = None
    if per_user:
        detail = {"users": all_users.copy(), **values}
    return MetricResults(result, n_users=int(all_users.size), n_skipped=n_skipped, per_user=detail, k=ks)


def _check_extra(extra, item_features, item_categories) -> tuple:
    from recfb.evaluation.diversity import DIVERSITY_METRICS
    names = (extra,) if isinstance(extra, str) else tuple(extra or ())
    for name in names:
        if name not in DIVERSITY_METRICS:
            raise ValueError(f"extra metric {name!r} is unknown; choose from {DIVERSITY_METRICS}.")
    if "ild" in names and item_features is None:
        raise ValueError("extra metric 'ild' needs item_features (an n_items x d array).")
    if "miscalibration" in names and item_categories is None:
        raise ValueError("extra metric 'miscalibration' needs item_categories (labels or n_items x n_categories).")
    return tuple(dict.fromkeys(names))


def _as_2d(a, n_rows: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1 and n_rows == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] != n_rows:
        raise DataError(f"model.recommend returned {what} of shape {a.shape} for {n_rows} users; "
                        "expected one row per user.")
    return a


def _batch_metrics(hit, n_test, ks, discount, ideal, out, rows) -> None:
    """Per-user metrics of one batch from its (users x max_k) boolean hit matrix."""
    max_k = hit.shape[1]
    hit_f = hit.astype(np.float64)
    cum_hits = np.cumsum(hit_f, axis=1)
    ranks = np.arange(1, max_k + 1)
    dcg = np.cumsum(hit_f * discount, axis=1)
    ap = np.cumsum(hit_f * cum_hits / ranks, axis=1)
    any_hit = cum_hits > 0
    first = np.argmax(hit, axis=1)  # first hit's column (0 when none: masked below)
    for c in ks:
        hits = cum_hits[:, c - 1]
        denom = np.minimum(c, n_test)
        out[f"precision@{c}"][rows] = hits / c
        out[f"recall@{c}"][rows] = hits / n_test
        out[f"calibrated_recall@{c}"][rows] = hits / denom
        out[f"ndcg@{c}"][rows] = dcg[:, c - 1] / ideal[denom - 1]
        out[f"map@{c}"][rows] = ap[:, c - 1] / denom
        out[f"mrr@{c}"][rows] = np.where(any_hit[:, c - 1], 1.0 / (first + 1), 0.0)
        out[f"hit_rate@{c}"][rows] = any_hit[:, c - 1]
