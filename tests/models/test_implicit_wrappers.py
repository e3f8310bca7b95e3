import numpy as np
import pytest

from recfb.models import ImplicitALS, ImplicitBPR
from recfb.testing import RecommenderContract, checkerboard_holdout


class TestImplicitALS(RecommenderContract):
    def make_model(self):
        return ImplicitALS(factors=8, iterations=10, regularization=0.01, random_state=0)


class TestImplicitBPR(RecommenderContract):
    def make_model(self):
        return ImplicitBPR(factors=16, iterations=200, learning_rate=0.05, random_state=0, num_threads=1)


def test_als_fold_in_matches_implicit_recalculate_user():
    """Folding in an unseen user must give the same factors as implicit's own solver."""
    X, _ = checkerboard_holdout(30)
    model = ImplicitALS(factors=6, iterations=5, alpha=2.0).fit(X, show_progress=False)
    rows = X[:4]
    np.testing.assert_allclose(model.fold_in(rows), model.model_.recalculate_user(np.arange(4), rows), rtol=1e-4, atol=1e-5)
    ids, _ = model.recommend(1000, rows[0], N=5, recalculate_user=True)  # unknown user, folded in
    assert ids.shape == (5,)


def test_factors_validated():
    X, _ = checkerboard_holdout(10)
    with pytest.raises(ValueError, match="factors == 0"):
        ImplicitALS(factors=0).fit(X, show_progress=False)
