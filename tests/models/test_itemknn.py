import numpy as np
import scipy.sparse as sp

from recfb.models import ItemKNN
from recfb.testing import RecommenderContract


class TestItemKNN(RecommenderContract):
    def make_model(self):
        return ItemKNN(neighbors=30, shrink=1.0)


def test_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    X = sp.random(60, 25, density=0.2, random_state=1, format="csr", dtype=np.float32)
    X.data[:] = 1
    shrink, k = 2.0, 5
    model = ItemKNN(neighbors=k, shrink=shrink).fit(X, show_progress=False)
    D = X.toarray()
    G = D.T @ D
    norms = np.sqrt(np.diag(G))
    S = G / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(S, 0)
    got = model.similarity_.toarray()
    for i in range(25):
        top = np.sort(S[i])[::-1][:k]
        nz = np.sort(got[i][got[i] > 0])[::-1]
        np.testing.assert_allclose(nz, top[top > 0][: nz.size], rtol=1e-5)
        assert nz.size == min(k, int((S[i] > 0).sum()))
    # scores are user row times the similarity matrix
    u = rng.integers(0, 60, 5)
    np.testing.assert_allclose(model.score(u, X[u]), D[u] @ got, rtol=1e-5, atol=1e-6)
