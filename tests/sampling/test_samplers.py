import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfb.sampling import PopularityNegatives, UniformNegatives, VerifiedUniformNegatives, make_negative_sampler
from recfb.utils.errors import DataError


def matrix():
    X = sp.random(30, 12, density=0.5, format="csr", random_state=0, dtype=np.float32)
    X.data[:] = 1
    return X


def test_verified_negatives_are_never_positives():
    X = matrix()
    s = VerifiedUniformNegatives()
    s.setup(X, torch.device("cpu"))
    users = torch.arange(30).repeat_interleave(20)
    neg = s.sample(users, 5, torch.Generator().manual_seed(0)).numpy()
    dense = X.toarray() > 0
    assert not dense[users.numpy()[:, None], neg].any()


def test_verified_rejects_user_with_every_item():
    X = matrix().tolil()
    X[3, :] = 1
    with pytest.raises(DataError, match="user 3 interacted with all 12 items"):
        VerifiedUniformNegatives().setup(X.tocsr(), torch.device("cpu"))


def test_popularity_frequencies_follow_power():
    X = matrix()
    alpha = 0.5
    s = PopularityNegatives(alpha)
    s.setup(X, torch.device("cpu"))
    draws = s.sample(torch.zeros(200_000, dtype=torch.long), 1, torch.Generator().manual_seed(1)).numpy().ravel()
    pop = np.bincount(X.indices, minlength=12) ** alpha
    expected = pop / pop.sum()
    observed = np.bincount(draws, minlength=12) / draws.size
    np.testing.assert_allclose(observed, expected, atol=0.005)


def test_uniform_is_seeded():
    s = UniformNegatives()
    s.setup(matrix(), torch.device("cpu"))
    u = torch.arange(10)
    a = s.sample(u, 3, torch.Generator().manual_seed(5))
    b = s.sample(u, 3, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (10, 3)
    with pytest.raises(ValueError, match="negatives == 'x'"):
        make_negative_sampler("x")
