"""Sharded evaluation, EASE's sharded sparse path and per-rank Parquet reading on 2 gloo
processes: each equals what one process computes, exactly."""
from fractions import Fraction

import dist_workers as W
import numpy as np
import scipy.sparse as sp
from dist_launch import results_of

from recfb.data.interactions import Interactions
from recfb.distributed.exact import exact_mean, exact_parts
from recfb.evaluation import ranking_metrics
from recfb.models import EASE


def test_sharded_ranking_metrics_equal_one_process_exactly(rank_results):
    res = results_of(rank_results, "eval")
    train, test = W.make_matrices()
    model = EASE(l2=10.0).fit(train, show_progress=False)
    single = ranking_metrics(model, train, test, k=(3, 10), per_user=True, batch_size=7, extra=("novelty", "gini"))
    for r in res:
        got = {k.split(":", 1)[1]: float(v) for k, v in r.items() if k.startswith("metric:")}
        assert got == dict(single)  # bit for bit, every metric incl. coverage, novelty, gini
        assert int(r["n_users"]) == single.n_users == 46 and int(r["n_skipped"]) == single.n_skipped == 15
        for name, values in single.per_user.items():
            np.testing.assert_array_equal(r[f"per_user:{name}"], values)
    # the single-process figure is the correctly rounded mean of the per-user values
    ndcg = single.per_user["ndcg@10"]
    assert single["ndcg@10"] == float(sum(Fraction(v) for v in ndcg) / ndcg.size)


def test_exact_parts_sum_the_same_over_any_split():
    v = np.random.default_rng(0).random(1001) ** 7
    v[3] = -0.25
    whole = exact_mean(exact_parts(v), v.size)
    assert whole == float(sum(Fraction(x) for x in v) / v.size)
    for cut in (0, 1, 500, 1000):
        assert exact_mean(exact_parts(v[:cut]) + exact_parts(v[cut:]), v.size) == whole


def test_sharded_sparse_ease_equals_one_process(rank_results):
    res = results_of(rank_results, "ease")
    train, _ = W.make_matrices(1, 70, 45)
    B = EASE(**W.ease_params()).fit(train, show_progress=False, distributed=False).weights_
    assert sp.issparse(B) and B.nnz > 0
    for r in res:
        np.testing.assert_array_equal(r["indptr"], B.indptr)
        np.testing.assert_array_equal(r["indices"], B.indices)
        np.testing.assert_array_equal(r["data"], B.data)


def test_each_rank_reads_its_share_with_the_shared_id_maps(rank_results):
    res = results_of(rank_results, "parquet")
    _, out = rank_results
    whole = Interactions.from_parquet(out / "log", value_col="value")
    assert len(whole) == 9 + 13 + 17
    for mode in ("gather", "scan"):
        for r in res:  # the same maps as one process reading everything
            np.testing.assert_array_equal(r[f"{mode}:user_ids"], whole.user_ids.astype(str))
            np.testing.assert_array_equal(r[f"{mode}:item_ids"], whole.item_ids)
        sizes = [r[f"{mode}:users"].size for r in res]
        assert min(sizes) > 0 and sum(sizes) == len(whole)  # disjoint and covering
        for field in ("users", "items", "values"):  # rank order = row order of the whole log
            np.testing.assert_array_equal(np.concatenate([r[f"{mode}:{field}"] for r in res]),
                                          getattr(whole, field))
