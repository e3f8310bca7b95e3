"""Shared data and brute-force references for the serving tests."""
import numpy as np


def clustered(n_items, dim=16, n_clusters=20, n_queries=200, noise=0.3, seed=0):
    """Gaussian-mixture items and queries: the structure ANN indices are built for."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    X = centres[rng.integers(0, n_clusters, n_items)] + noise * rng.standard_normal((n_items, dim))
    Q = centres[rng.integers(0, n_clusters, n_queries)] + noise * rng.standard_normal((n_queries, dim))
    return X.astype(np.float32), Q.astype(np.float32)


def brute_scores(Q, X, metric, exclude=None, banned=None):
    """Dense float64 scores (higher is better; -inf where excluded or banned)."""
    Q64, X64 = Q.astype(np.float64), X.astype(np.float64)
    if metric == "ip":
        S = Q64 @ X64.T
    else:
        S = -((Q64 ** 2).sum(1)[:, None] - 2 * Q64 @ X64.T + (X64 ** 2).sum(1)[None, :])
    if exclude is not None:
        for r, items in enumerate(exclude):
            S[r, np.asarray(items, dtype=np.int64)] = -np.inf
    if banned is not None:
        S[:, banned] = -np.inf
    return S


def assert_exact_topk(ids, scores, S, k, rtol=1e-4, atol=1e-4):
    """ids/scores are a correct top-k of S up to ties: the scores equal the k best, every id
    scores what it claims, no id repeats, padding (-1/-inf) only where S runs out."""
    assert ids.shape == scores.shape == (S.shape[0], k)
    best = -np.sort(-S, axis=1)[:, :k]
    finite = np.isfinite(best)
    assert np.array_equal(ids >= 0, finite), "padding must be exactly where no eligible item is left"
    assert np.all(np.isneginf(scores[~finite]))
    np.testing.assert_allclose(scores[finite], best[finite], rtol=rtol, atol=atol)
    rows = np.nonzero(finite)[0]
    np.testing.assert_allclose(S[rows, ids[finite]], scores[finite], rtol=rtol, atol=atol)
    for r in range(ids.shape[0]):
        got = ids[r][ids[r] >= 0]
        assert got.size == np.unique(got).size, f"row {r} repeats an item"


def recall_at_k(ids, S, k):
    truth = np.argsort(-S, axis=1)[:, :k]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ids, truth)]))
