"""ANN calibration to a recall target: the chosen setting reaches the target on fresh queries
(checked by brute force), is the one stored and reported, survives save/load, escalates M
when efSearch is not enough, and bad requests are refused; ranking_metrics(index=)."""
import numpy as np
import pytest
import scipy.sparse as sp

from recfb.evaluation import ranking_metrics
from recfb.serving import ItemIndex, calibrate


def _clustered(n, d, n_queries, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d))
    X = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, d))
    X *= rng.lognormal(0.0, 0.4, (n, 1))  # skewed norms, as in factor models
    Q = centres[rng.integers(0, 40, n_queries)] + 0.6 * rng.standard_normal((n_queries, d))
    return X.astype(np.float32), Q.astype(np.float32)


def _brute_recall(index, X, Q, k):
    truth = np.argsort(-(Q.astype(np.float64) @ X.T.astype(np.float64)), axis=1)[:, :k]
    found, _ = index.search(Q, k)
    return np.mean([len(set(f) & set(t)) / k for f, t in zip(found.tolist(), truth.tolist())])


@pytest.fixture(scope="module")
def vectors():
    X, Q = _clustered(3000, 16, 1200, seed=0)
    return X, Q[:600], Q[600:]


@pytest.mark.parametrize("kind, params", [("hnsw", {"M": 4, "efConstruction": 20}), ("ivf", {"nlist": 64})])
def test_calibrated_index_meets_the_target_on_fresh_queries(vectors, kind, params):
    X, Q, fresh = vectors
    target = 0.9
    idx = ItemIndex.from_vectors(X, kind=kind, device="cpu", target_recall=target, queries=Q, **params)
    cal = idx.calibration
    knob = "efSearch" if kind == "hnsw" else "nprobe"
    assert cal["target_met"] and cal[knob] == idx.params[knob]
    assert cal["n_calibration"] == cal["n_heldout"] == 300
    assert _brute_recall(idx, X, fresh, 10) >= target - 0.02  # queries calibration never saw
    assert cal["recall"] == pytest.approx(_brute_recall(idx, X, fresh, 10), abs=0.05)
    assert f"calibrated {knob}={cal[knob]}" in repr(idx)
    # the cheapest grid setting that meets the bound: one step lower does not
    tried = {int(s): r for s, r in cal["history"][-1]["tried"].items()}
    lower = [s for s in tried if s < cal[knob]]
    if lower:
        assert tried[max(lower)] < target + 0.02


def test_uncalibrated_defaults_stay(vectors):
    X, _, _ = vectors
    idx = ItemIndex.from_vectors(X, kind="hnsw", device="cpu")
    assert idx.params["efSearch"] == 64 and idx.calibration is None and "calibrated" not in repr(idx)


def test_calibration_survives_save_and_load(vectors, tmp_path):
    X, Q, _ = vectors
    idx = ItemIndex.from_vectors(X, kind="hnsw", device="cpu", target_recall=0.8, queries=Q, M=4)
    idx.save(tmp_path / "i")
    back = ItemIndex.load(tmp_path / "i")
    assert back.calibration == idx.calibration and back.params == idx.params
    np.testing.assert_array_equal(back.search(Q[:20], 10)[0], idx.search(Q[:20], 10)[0])


def test_M_is_raised_when_efsearch_cannot_reach_the_target(vectors):
    X, Q, _ = vectors
    exact = ItemIndex.from_vectors(X, kind="exact", device="cpu")
    built = []

    def build(params):
        built.append(dict(params))
        return ItemIndex.from_vectors(X, kind="hnsw", device="cpu", **params)

    with pytest.warns(UserWarning, match="no setting reached"):
        idx, cal = calibrate.calibrate(build, "hnsw", {"M": 2, "efConstruction": 8, "efSearch": 64}, Q,
                                       lambda q, k: exact.search(q, k)[0], 0.9999, 10, 0, max_ef=16, max_M=8)
    assert [b["M"] for b in built] == [2, 4, 8] and [b["efConstruction"] for b in built] == [8, 16, 32]
    assert not cal["target_met"] and len(cal["history"]) == 3 and cal["efSearch"] == 16


def test_per_query_recall_against_sets():
    found = np.array([[1, 2, 3], [4, 5, -1], [7, 8, 9]])
    truth = np.array([[3, 2, 1], [4, 6, 7], [-1, -1, -1]])
    np.testing.assert_allclose(calibrate.per_query_recall(found, truth), [1.0, 1 / 3, 0.0])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"kind": "exact", "target_recall": 0.9}, ValueError, "approximate index"),
    ({"kind": "hnsw", "target_recall": 0.9}, ValueError, "needs queries"),
    ({"kind": "hnsw", "target_recall": 1.5, "queries": "Q"}, ValueError, r"target_recall == 1.5"),
    ({"kind": "hnsw", "target_recall": "high", "queries": "Q"}, TypeError, "target_recall must be a number"),
    ({"kind": "hnsw", "target_recall": 0.9, "queries": "Q", "efSearch": 32}, ValueError, "give one or the other"),
    ({"kind": "ivf", "target_recall": 0.9, "queries": "Q10"}, ValueError, "at least 40 queries"),
    ({"kind": "hnsw", "queries": "Q"}, ValueError, "only used to calibrate"),
])
def test_bad_calibration_requests_are_refused(vectors, kwargs, error, match):
    X, Q, _ = vectors
    if kwargs.get("queries") == "Q":
        kwargs["queries"] = Q
    elif kwargs.get("queries") == "Q10":
        kwargs["queries"] = Q[:10]
    with pytest.raises(error, match=match):
        ItemIndex.from_vectors(X, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def fitted():
    from recfb.models import ImplicitALS
    rng = np.random.default_rng(3)
    X = sp.csr_matrix((rng.random((300, 400)) < 0.05).astype(np.float32))
    test = sp.csr_matrix((rng.random((300, 400)) < 0.02).astype(np.float32))
    return ImplicitALS(factors=16, iterations=5).fit(X, show_progress=False), X, test


def test_from_model_calibrates_on_the_models_user_vectors(fitted):
    model, _, _ = fitted
    idx = ItemIndex.from_model(model, kind="hnsw", device="cpu", target_recall=0.95, M=4)
    assert idx.calibration["n_calibration"] + idx.calibration["n_heldout"] == 300
    assert idx.calibration["recall"] >= 0.9


def test_ranking_metrics_through_an_index(fitted):
    model, X, test = fitted
    direct = ranking_metrics(model, X, test, k=10)
    exact = ranking_metrics(model, X, test, k=10, index=ItemIndex.from_model(model, kind="exact", device="cpu"))
    for key in ("ndcg@10", "recall@10", "precision@10"):
        assert exact[key] == pytest.approx(direct[key], abs=1e-9)
    # a deliberately poor HNSW (efSearch 1, M 2) loses ranking quality: the cost is visible
    # (without exclusions: rows with many exclusions go to the exact fallback)
    poor = ItemIndex.from_model(model, kind="hnsw", device="cpu", M=2, efConstruction=4, efSearch=1)
    unfiltered = ranking_metrics(model, X, test, k=10, filter_already_liked_items=False)
    rough = ranking_metrics(model, X, test, k=10, index=poor, filter_already_liked_items=False)
    assert rough["coverage@10"] != unfiltered["coverage@10"] or rough["ndcg@10"] != unfiltered["ndcg@10"]
    with pytest.raises(ValueError, match="recalculate_user"):
        ranking_metrics(model, X, test, k=10, index=poor, recalculate_user=True)
