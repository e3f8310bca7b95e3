"""The contract suite every recfb model runs (in the spirit of implicit's test mixin and
scikit-learn's ``parametrize_with_checks``). A model's test file only says how to build it::

    class TestItemKNN(RecommenderContract):
        def make_model(self):
            return ItemKNN(neighbors=20)

Models that learn from ordered interactions (SASRec, gSASRec, BERT4Rec) also say how to feed
them: ``fit_data = staticmethod(ordered_interactions)`` turns each users x items matrix the
suite fits on into an :class:`~recfb.data.Interactions` whose order (timestamps) is a seeded
shuffle of each user's items. Everything else (recommend, filters, save/load) is the same.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import recfb
from recfb.data.interactions import Interactions
from recfb.utils.errors import DataError, FormatError, NotFittedError


def checkerboard(n: int = 50) -> sp.csr_matrix:
    """n x n matrix with 1 where user + item is even: two disjoint taste groups."""
    u, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return sp.csr_matrix(((u + i) % 2 == 0).astype(np.float32))


def checkerboard_holdout(n: int = 50):
    """Checkerboard minus one same-parity item per user: (train, held-out item per user).
    A personalised model must rank each user's held-out item first."""
    X = checkerboard(n).tolil()
    held = (np.arange(n) * 7 + 3) % n
    held = held - ((held + np.arange(n)) % 2)  # same parity as the user
    held = np.where(held < 0, held + 2, held)
    for u, i in enumerate(held):
        X[u, i] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    return X, held


def ordered_interactions(X: sp.csr_matrix, seed: int = 0) -> Interactions:
    """The entries of ``X`` as :class:`~recfb.data.Interactions` in ``X``'s id space (empty rows
    kept), values kept, timestamped by a seeded shuffle of each user's items, so that a
    sequential model sees every user's items in a random but reproducible order."""
    X = sp.csr_matrix(X)
    users = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    return Interactions.from_arrays(users, X.indices, X.data, np.random.default_rng(seed).permutation(X.nnz),
                                    user_ids=np.arange(X.shape[0]), item_ids=np.arange(X.shape[1]))


def checkerboard_ndcg(ids: np.ndarray, held: np.ndarray) -> float:
    """NDCG@k of one held-out item per user from top-k ``ids`` (users x k; -1 pads), by brute
    force: ``1 / log2(rank + 2)`` where the held-out item is found, averaged over users."""
    rank = np.argmax(ids == held[:, None], axis=1)
    found = (ids == held[:, None]).any(axis=1)
    return float(np.mean(np.where(found, 1.0 / np.log2(rank + 2.0), 0.0)))


class RecommenderContract:
    """Mixin of contract tests; subclasses define ``make_model`` (fresh, unfitted)."""

    #: Whether the known-answer test applies (popularity is not personalised).
    personalised = True
    #: Least NDCG@5 of the held-out checkerboard items for a personalised model. Measured
    #: (benchmarks/RESULTS.md, "Contract suite"): every personalised model in recfb.models
    #: scores 1.0 with its contract settings; 0.95 leaves room for a tie or two.
    min_checkerboard_ndcg = 0.95

    def make_model(self):  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def fit_data(X: sp.csr_matrix):
        """What the model's ``fit`` takes for the users x items matrix ``X``: ``X`` itself, or
        (sequential models) :func:`ordered_interactions` of it."""
        return X

    def fit_model(self, model, X):
        return model.fit(self.fit_data(X), show_progress=False)

    # -------------------------------------------------------------- helpers
    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls):
        X, held = checkerboard_holdout(50)
        suite = cls()
        return suite.fit_model(suite.make_model(), X), X, held

    # -------------------------------------------------------------- known answer
    def test_known_answer_checkerboard(self, fitted):
        """The held-out same-parity item of every user comes first once seen items are filtered."""
        model, X, held = fitted
        users = np.arange(X.shape[0])
        ids, scores = model.recommend(users, X, N=5)
        if self.personalised:
            assert np.mean(ids[:, 0] == held) >= 0.9, "held-out items should rank first"
        else:
            pop = np.asarray(X.sum(axis=0)).ravel()
            # best unseen-by-popularity is what a non-personalised model returns
            assert np.all(np.diff(pop[ids], axis=1) <= 0)

    def test_recommend_types_shapes_and_order(self, fitted):
        model, X, _ = fitted
        ids, scores = model.recommend(np.arange(10), X[:10], N=7)
        assert ids.dtype == np.int32 and scores.dtype == np.float32
        assert ids.shape == scores.shape == (10, 7)
        assert np.all(np.diff(scores, axis=1) <= 0), "scores must be sorted best first"
        one_ids, one_scores = model.recommend(3, X[3], N=7)
        assert one_ids.ndim == 1 and np.array_equal(one_ids, ids[3])
        np.testing.assert_allclose(one_scores, scores[3], rtol=1e-5)

    def test_filter_already_liked(self, fitted):
        model, X, _ = fitted
        ids, _ = model.recommend(np.arange(X.shape[0]), X, N=10)
        liked = X.toarray() > 0
        assert not np.any(np.take_along_axis(liked, ids, axis=1)), "already-liked items recommended"
        ids2, _ = model.recommend(np.arange(5), X[:5], N=10, filter_already_liked_items=False)
        assert ids2.shape == (5, 10)

    def test_filter_items_and_items(self, fitted):
        model, X, _ = fitted
        banned = np.arange(0, 50, 3)
        ids, _ = model.recommend(np.arange(8), X[:8], N=10, filter_items=banned)
        assert not np.isin(ids, banned).any()
        subset = np.array([1, 2, 5, 8, 13, 21, 34])
        ids, _ = model.recommend(np.arange(8), X[:8], N=3, items=subset, filter_already_liked_items=False)
        assert np.isin(ids, subset).all()

    def test_score_matches_recommend(self, fitted):
        model, X, _ = fitted
        s = model.score(np.arange(4), X[:4])
        assert s.shape == (4, X.shape[1]) and s.dtype == np.float32
        ids, scores = model.recommend(np.arange(4), X[:4], N=5, filter_already_liked_items=False)
        np.testing.assert_allclose(np.take_along_axis(s, ids.astype(np.int64), axis=1), scores, rtol=1e-5, atol=1e-6)
        cand = np.tile(np.array([[0, 1, 2]]), (4, 1))
        np.testing.assert_allclose(model.score(np.arange(4), X[:4], items=cand), s[:, :3], rtol=1e-6)

    def test_N_larger_than_catalogue(self, fitted):
        model, X, _ = fitted
        n_items = X.shape[1]
        ids, scores = model.recommend(np.arange(3), X[:3], N=10 * n_items)
        assert ids.shape == (3, n_items)
        eligible = n_items - np.diff(X.indptr)[:3]
        for r in range(3):  # padded with -1 / -inf beyond each user's eligible items
            assert np.all(ids[r, :eligible[r]] >= 0) and np.all(ids[r, eligible[r]:] == -1)
            assert np.all(np.isneginf(scores[r, eligible[r]:]))
        one, _ = model.recommend(0, X[0], N=10 * n_items)
        assert one.size == eligible[0] and len(set(one.tolist())) == one.size

    def test_empty_user_row(self):
        """Users with no train items must not crash fit or recommend."""
        X, _ = checkerboard_holdout(50)
        X = X.tolil()
        X[7, :] = 0
        X = X.tocsr()
        X.eliminate_zeros()
        model = self.fit_model(self.make_model(), X)
        ids, scores = model.recommend(7, X[7], N=5)
        assert ids.shape == (5,) and np.all(np.isfinite(scores))

    def test_user_unseen_at_fit(self, fitted):
        model, X, _ = fitted
        new_row = X[:1]
        if model.needs_fitted_users:
            with pytest.raises(DataError, match="not seen at fit"):
                model.recommend(X.shape[0] + 5, new_row, N=5)
        else:
            ids, _ = model.recommend(X.shape[0] + 5, new_row, N=5)
            assert ids.shape == (5,)

    def test_bad_input(self, fitted):
        model, X, _ = fitted
        with pytest.raises(TypeError, match="scipy.sparse"):
            model.recommend(0, X[0].toarray(), N=5)
        with pytest.raises(DataError, match="columns"):
            model.recommend(0, sp.csr_matrix((1, X.shape[1] + 1), dtype=np.float32), N=5)
        with pytest.raises(DataError, match="1 row for every user"):
            model.recommend(np.arange(3), X[:2], N=5)
        with pytest.raises(ValueError, match="N == 0"):
            model.recommend(0, X[0], N=0)
        with pytest.raises(DataError, match="negative"):
            model.recommend(-1, X[0], N=5)
        with pytest.raises(NotFittedError):
            self.make_model().recommend(0, X[0], N=5)
        bad = X.copy()
        bad.data[0] = np.nan
        with pytest.raises(DataError, match="finite"):  # check_csr: "non-finite"; Interactions: "must be finite"
            self.fit_model(self.make_model(), bad)
        with pytest.raises(DataError, match="empty"):
            self.fit_model(self.make_model(), sp.csr_matrix((5, 5), dtype=np.float32))

    def test_similar_items(self, fitted):
        model, X, _ = fitted
        ids, scores = model.similar_items(4, N=5)
        assert ids.dtype == np.int32 and ids.shape == (5,) and ids[0] == 4
        ids2, _ = model.similar_items(np.array([4, 5]), N=5)
        assert ids2.shape == (2, 5)

    def test_params_round_trip(self):
        model = self.make_model()
        params = model.get_params()
        clone = type(model)(**params)
        assert clone.get_params() == params
        with pytest.raises(ValueError, match="invalid parameter"):
            model.set_params(no_such_parameter=1)
        assert type(model).__name__ in repr(model)

    def test_save_load_round_trip(self, fitted, tmp_path):
        model, X, _ = fitted
        path = model.save(tmp_path / "model.npz")
        loaded = recfb.load(path)
        assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
        a = model.recommend(np.arange(X.shape[0]), X, N=10)
        b = loaded.recommend(np.arange(X.shape[0]), X, N=10)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])

    def test_load_rejects_truncated_tampered_and_newer(self, fitted, tmp_path):
        model, _, _ = fitted
        path = model.save(tmp_path / "model.npz")
        raw = path.read_bytes()
        (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
        with pytest.raises(FormatError, match="truncated"):
            recfb.load(tmp_path / "cut.npz")
        # tamper: rewrite one array, keep the metadata
        with zipfile.ZipFile(path) as z:
            members = {n: z.read(n) for n in z.namelist()}
        meta = json.loads(np.load(path)["__metadata__"].tobytes())
        victim = next(k for k in meta["sha256"] if not k.startswith("n_"))
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays[victim] = arrays[victim].copy()
        arrays[victim].reshape(-1)[:1] += 1
        np.savez(tmp_path / "tampered.npz", **arrays)
        with pytest.raises(FormatError, match="checksum"):
            recfb.load(tmp_path / "tampered.npz")
        meta["format_version"] = 999
        arrays = {k: v for k, v in np.load(path).items()}
        arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez(tmp_path / "newer.npz", **arrays)
        with pytest.raises(FormatError, match="newer"):
            recfb.load(tmp_path / "newer.npz")
        assert members  # the original archive was readable

    def test_deterministic_under_seed(self):
        X, _ = checkerboard_holdout(40)
        a = self.fit_model(self.make_model(), X).recommend(np.arange(40), X, N=5)
        b = self.fit_model(self.make_model(), X).recommend(np.arange(40), X, N=5)
        assert np.array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)

    def test_implicit_evaluator_runs_unchanged(self, fitted):
        """implicit's ranking_metrics_at_k must accept any recfb model and find the known answer:
        its NDCG@5 equals the brute-force one of the model's own top 5, which is close to 1
        for a personalised model (the held-out same-parity item ranks first)."""
        from implicit.evaluation import ranking_metrics_at_k
        model, X, held = fitted
        test = sp.csr_matrix((np.ones(held.size, np.float32), (np.arange(held.size), held)), shape=X.shape)
        m = ranking_metrics_at_k(model, X, test, K=5, show_progress=False)
        ids, _ = model.recommend(np.arange(X.shape[0]), X, N=5)
        want = checkerboard_ndcg(ids, held)
        assert m["ndcg"] == pytest.approx(want, abs=1e-6)
        if self.personalised:
            assert m["ndcg"] >= self.min_checkerboard_ndcg, f"checkerboard NDCG@5 {m['ndcg']:.3f}"
