import numpy as np
import scipy.sparse as sp

from recfb.models import MostPopular
from recfb.testing import RecommenderContract


class TestMostPopular(RecommenderContract):
    personalised = False

    def make_model(self):
        return MostPopular()


def test_popularity_counts_users_not_weights():
    X = sp.csr_matrix(np.array([[5, 1, 0], [0, 1, 0], [0, 1, 1]], np.float32))
    assert MostPopular().fit(X).item_popularity_.tolist() == [1, 3, 1]
    assert MostPopular(weighted=True).fit(X).item_popularity_.tolist() == [5, 3, 1]
