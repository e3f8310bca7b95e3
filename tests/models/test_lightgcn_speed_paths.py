"""LightGCN's CPU training path (fused numba propagation, batch scores and L2 from kernels;
issue 13) computes the same loss and gradient as the plain mathematics: checked against a dense
float64 autograd reference of the ``A @ x`` chain, against torch_geometric's LGConv layers, and
end to end against the torch path on a short fit."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

pytest.importorskip("torch_geometric")

from recfb.models import LightGCN  # noqa: E402
from recfb.models.lightgcn import LightGCNScorer, _BipartiteOperator, normalized_adjacency  # noqa: E402


def random_graph(n_users, n_items, seed):
    """A random binary log with an empty user row and an empty item column (zero degree)."""
    X = sp.random(n_users, n_items, density=0.2, format="lil", random_state=seed, dtype=np.float32)
    X[1, :] = 0
    X[:, 2] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    X.data[:] = 1.0
    return X


def exact_adjacency(X):
    """``D^-1/2 [[0, X], [X^T, 0]] D^-1/2`` built densely in float64 (independent of
    normalized_adjacency, whose float32 values it matches to float32 rounding)."""
    n_users, n_items = X.shape
    A = np.zeros((n_users + n_items,) * 2)
    A[:n_users, n_users:] = X.toarray()
    A[n_users:, :n_users] = X.toarray().T
    deg = A.sum(1)
    inv = np.where(deg > 0, deg, 1.0) ** -0.5 * (deg > 0)
    return inv[:, None] * A * inv[None, :]


def dense_mean_of_powers(A, x, num_layers):
    """``mean(x, A x, ..., A^K x)`` by dense float64 products."""
    A = torch.as_tensor(np.asarray(A, np.float64))
    out = h = x
    for _ in range(num_layers):
        h = A @ h
        out = out + h
    return out / (num_layers + 1)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(7, 12), (12, 7)])  # items the larger side, then users
@pytest.mark.parametrize("num_layers", [0, 1, 3])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_propagation_equals_dense_float64_chain(shape, num_layers, n_threads, threads):
    threads(n_threads)
    X = random_graph(*shape, seed=1)
    adjacency = normalized_adjacency(X)
    op = _BipartiteOperator(adjacency, shape[0])
    x = np.random.default_rng(0).standard_normal((sum(shape), 5))
    # float64 arithmetic on the kernel's own (float32) adjacency values: equal to rounding
    ref = dense_mean_of_powers(adjacency.toarray(), torch.tensor(x), num_layers).numpy()
    np.testing.assert_allclose(op.mean_of_powers(x, num_layers), ref, rtol=1e-12, atol=1e-14)
    coef, extra = np.arange(sum(shape), dtype=np.float64), x[::-1].copy()  # the L2 rows added in the last pass
    np.testing.assert_allclose(op.mean_of_powers(x, num_layers, coef, extra), ref + coef[:, None] * extra,
                               rtol=1e-12, atol=1e-13)
    # float32 training input against the exact normalisation
    exact = dense_mean_of_powers(exact_adjacency(X), torch.tensor(x), num_layers).numpy()
    np.testing.assert_allclose(op.mean_of_powers(x.astype(np.float32), num_layers), exact, rtol=1e-5, atol=2e-6)


def batch(n_users, n_items, n_neg, seed=0):
    g = torch.Generator().manual_seed(seed)
    users = torch.cat([torch.tensor([0, 0, 1]), torch.randint(0, n_users, (13,), generator=g)])  # repeats, an empty row
    pos = torch.cat([torch.tensor([3, 3, 2]), torch.randint(0, n_items, (13,), generator=g)])
    neg = torch.randint(0, n_items, (16, n_neg), generator=g)
    neg[0, 0] = 3  # a negative that is also a positive of the batch
    return users, pos, neg


@pytest.mark.parametrize("shape", [(9, 14), (14, 9)])
@pytest.mark.parametrize("n_neg", [1, 3])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_batch_loss_and_gradient_equal_dense_float64_autograd(shape, n_neg, n_threads, threads):
    threads(n_threads)
    n_users, n_items = shape
    X = random_graph(n_users, n_items, seed=2)
    scorer = LightGCNScorer(n_users, n_items, 6, torch.Generator().manual_seed(0), normalized_adjacency(X),
                            num_layers=3, regularization=0.3)
    users, pos, neg = batch(n_users, n_items, n_neg)
    s_pos, s_neg = scorer.batch_scores(users, pos, neg)
    loss = -torch.nn.functional.logsigmoid(s_pos[:, None] - s_neg).mean() + scorer.regularization(users, pos, neg)
    loss.backward()

    E = scorer.embedding.weight.detach().double().requires_grad_()
    F = dense_mean_of_powers(exact_adjacency(X), E, 3)
    r_pos = (F[users] * F[n_users + pos]).sum(-1)
    r_neg = (F[users][:, None] * F[n_users + neg]).sum(-1)
    l2 = E[users].pow(2).sum() + E[n_users + pos].pow(2).sum() + E[n_users + neg].pow(2).sum() / n_neg
    ref = -torch.nn.functional.logsigmoid(r_pos[:, None] - r_neg).mean() + 0.3 * l2 / (2 * users.numel())
    ref.backward()
    torch.testing.assert_close(s_pos.double(), r_pos.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(s_neg.double(), r_neg.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(scorer.embedding.weight.grad.double(), E.grad, rtol=1e-5, atol=1e-8)


def test_regularization_of_another_batch_is_computed_for_that_batch():
    """The L2 that batch_scores computes alongside is only reused for the very same batch tensors."""
    X = random_graph(9, 14, seed=3)
    scorer = LightGCNScorer(9, 14, 4, torch.Generator().manual_seed(0), normalized_adjacency(X), regularization=1.0)
    users, pos, neg = batch(9, 14, 2)
    scorer.batch_scores(users, pos, neg)
    other = ((users + 1) % 9, pos, neg)  # other users: another L2
    E = scorer.embedding.weight.detach().double()
    expected = (E[other[0]].pow(2).sum() + E[9 + pos].pow(2).sum() + E[9 + neg].pow(2).sum() / 2) / (2 * 16)
    torch.testing.assert_close(scorer.regularization(*other).double(), expected, rtol=1e-6, atol=0)
    same = scorer.batch_scores(users, pos, neg) and scorer.regularization(users, pos, neg)
    torch.testing.assert_close(same.double(), (E[users].pow(2).sum() + E[9 + pos].pow(2).sum()
                                               + E[9 + neg].pow(2).sum() / 2) / (2 * 16), rtol=1e-6, atol=0)


def test_fused_propagation_equals_the_lgconv_layers():
    """Training (fused kernel) and export / other devices (torch_geometric LGConv, layer by layer)
    propagate to the same embeddings, and propagate()'s backward is the LGConv chain's."""
    X = random_graph(20, 30, seed=4)
    scorer = LightGCNScorer(20, 30, 8, torch.Generator().manual_seed(0), normalized_adjacency(X), num_layers=3)
    fused = scorer.propagate()
    (fused * torch.arange(fused.numel()).view_as(fused).float().sin()).sum().backward()
    grad = scorer.embedding.weight.grad.clone()
    scorer.embedding.weight.grad = None
    layers = scorer.propagate_layers(scorer.embedding.weight)
    (layers * torch.arange(layers.numel()).view_as(layers).float().sin()).sum().backward()
    torch.testing.assert_close(fused, layers, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, scorer.embedding.weight.grad, rtol=1e-5, atol=1e-7)
    users, items = scorer.export()
    np.testing.assert_allclose(np.vstack([users, items]), fused.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_fit_on_the_fused_path_follows_the_torch_path(monkeypatch):
    """Two epochs through the real training loop: the CPU kernels and the torch path (LGConv,
    torch gathers, as on other devices) end at the same factors up to float rounding."""
    X = random_graph(40, 60, seed=5)
    params = dict(factors=8, iterations=2, batch_size=64, num_negatives=2, random_state=0, device="cpu")
    fused = LightGCN(**params).fit(X, show_progress=False)
    monkeypatch.setattr(LightGCNScorer, "_fused", lambda self, x: False)
    plain = LightGCN(**params).fit(X, show_progress=False)
    np.testing.assert_allclose(fused.item_factors, plain.item_factors, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fused.user_factors, plain.user_factors, rtol=1e-4, atol=1e-6)
    assert not np.allclose(fused.item_factors, LightGCN(**{**params, "iterations": 1}).fit(
        X, show_progress=False).item_factors, atol=1e-6)  # the two epochs moved the factors


def test_seeded_fit_is_reproducible():
    X = random_graph(40, 60, seed=6)
    params = dict(factors=8, iterations=3, batch_size=64, device="cpu")
    a = LightGCN(random_state=7, **params).fit(X, show_progress=False)
    b = LightGCN(random_state=7, **params).fit(X, show_progress=False)
    c = LightGCN(random_state=8, **params).fit(X, show_progress=False)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert not np.allclose(a.item_factors, c.item_factors)
