"""Matrix factorisation trained with BPR or pointwise BCE on the shared training loop."""
from __future__ import annotations

import torch

from recfb.losses import make_objective
from recfb.models._embedding import EmbeddingRecommender
from recfb.train import Scorer


def _sqnorm(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares without a squared temporary (large temporaries cost page faults on CPU)."""
    flat = x.reshape(-1)
    return torch.dot(flat, flat)


class MFScorer(Scorer):
    """``s_ui = p_u . q_i (+ b_i)``. Shapes: users (B,), items (B,) or (B, n)."""

    def __init__(self, n_users, n_items, factors, generator, *, biases=False, sparse=False, regularization=0.0,
                 init_std=0.1):
        super().__init__()
        self.user = torch.nn.Embedding(n_users, factors, sparse=sparse)
        self.item = torch.nn.Embedding(n_items, factors, sparse=sparse)
        with torch.no_grad():
            self.user.weight.normal_(0, init_std, generator=generator)
            self.item.weight.normal_(0, init_std, generator=generator)
        self.bias = torch.nn.Embedding(n_items, 1, sparse=sparse) if biases else None
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias.weight)
        self.regularization_weight = regularization

    def _item_scores(self, pu, items):
        q = self.item(items)
        # batched matmul instead of broadcast-multiply-sum: no (B, n, d) temporary
        s = torch.bmm(q, pu.unsqueeze(2)).squeeze(2) if items.dim() == 2 else torch.bmm(
            q.unsqueeze(1), pu.unsqueeze(2)).view(-1)
        if self.bias is not None:
            s = s + self.bias(items).squeeze(-1)
        return s

    def batch_scores(self, users, pos, neg):
        pu = self.user(users)
        return self._item_scores(pu, pos), self._item_scores(pu, neg)

    def regularization(self, users, pos, neg):
        if not self.regularization_weight:
            return torch.zeros((), device=users.device)
        reg = _sqnorm(self.user(users)) + _sqnorm(self.item(pos)) + _sqnorm(self.item(neg)) / neg.shape[1]
        # 0.5 * reg * ||theta||^2 per sample: gradient reg * theta, implicit's convention and the
        # fused kernel's
        return 0.5 * self.regularization_weight * reg / users.numel()

    def fused_epoch(self, users, items, order, negatives, weights, learning_rate, objective, num_threads):
        """One compiled per-sample SGD epoch (``optimizer="fused_sgd"``), in place."""
        from recfb.train._fused import mf_sgd_epoch
        with torch.no_grad():
            return mf_sgd_epoch(
                self.user.weight.data.numpy(), self.item.weight.data.numpy(),
                None if self.bias is None else self.bias.weight.data.numpy().reshape(-1),
                users.numpy(), items.numpy(), order.numpy(), negatives.numpy(),
                None if weights is None else weights.numpy(), learning_rate, self.regularization_weight,
                objective, num_threads)

    def sparse_parameters(self):
        mods = [self.user, self.item] + ([self.bias] if self.bias is not None else [])
        return [m.weight for m in mods if m.sparse]

    def export(self):
        U = self.user.weight.detach().cpu()
        V = self.item.weight.detach().cpu()
        if self.bias is not None:  # fold the item bias into the dot product, as implicit's BPR does
            U = torch.cat([U, torch.ones(U.shape[0], 1)], dim=1)
            V = torch.cat([V, self.bias.weight.detach().cpu()], dim=1)
        return U.numpy(), V.numpy()


class MF(EmbeddingRecommender):
    """Matrix factorisation for implicit feedback on recfb's training loop.

    ``loss="bpr"`` (Rendle et al., UAI 2009): ``-log sigmoid(s_ui - s_uj)`` with sampled
    negatives j; ``loss="bce"``: pointwise log loss, positives 1 and sampled negatives 0.
    Any :class:`recfb.losses.Objective` instance is accepted too. ``s_ui = p_u . q_i (+ b_i)``;
    with ``biases=True`` the item bias is folded into ``item_factors`` (and a column of ones
    into ``user_factors``), so inner-product search stays exact.

    Parameters
    ----------
    factors : int, default 64
    learning_rate : float, default 0.01
    regularization : float, default 1e-4
        L2 on the embeddings a sample touches: the gradient gets ``regularization * theta``
        per sample (implicit's convention), in the autograd and the fused paths alike.
    iterations : int, default 100
        Epochs over all positives.
    batch_size : int, default 8192
    loss : {"bpr", "bce"} or Objective, default "bpr"
    num_negatives : int, default 1
    negatives : {"uniform", "verified", "popularity"} or NegativeSampler, default "uniform"
    optimizer : {"adam", "adagrad", "sgd", "sparse_adam", "fused_sgd"}, default "adam"
        ``"fused_sgd"``: per-sample SGD in a compiled Hogwild kernel (as implicit's BPR does;
        about 4x faster on CPU, BPR/BCE only, no denoiser); with ``num_threads=1`` it is
        deterministic, with more threads updates race.
    lr_schedule : {None, "cosine", "step", "exponential"}
    patience : int, optional
        Early stopping patience in epochs (needs ``valid_items`` in ``fit``).
    biases : bool, default False
    denoise : recfb.denoise.Denoiser, optional
    random_state : int, optional (default 0)
    device : "auto", "cpu" or "cuda"
    num_threads : int, default 0
        Threads of the fused kernel (0 = all cores).
    """

    def __init__(self, *, factors: int = 64, learning_rate: float = 0.01, regularization: float = 1e-4,
                 iterations: int = 100, batch_size: int = 8192, loss="bpr", num_negatives: int = 1,
                 negatives="uniform", optimizer: str = "adam", lr_schedule=None, patience=None,
                 biases: bool = False, denoise=None, random_state=0, device="auto", num_threads: int = 0):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.batch_size = batch_size
        self.loss = loss
        self.num_negatives = num_negatives
        self.negatives = negatives
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.patience = patience
        self.biases = biases
        self.denoise = denoise
        self.random_state = random_state
        self.device = device
        self.num_threads = num_threads

    def _objective(self, X):
        return make_objective(self.loss)

    def _build_scorer(self, n_users, n_items, generator, X):
        return MFScorer(n_users, n_items, self.factors, generator, biases=self.biases,
                        sparse=self.optimizer == "sparse_adam", regularization=self.regularization)


class BPR(MF):
    """``MF(loss="bpr")`` under implicit's name: ``BPR(factors=64, iterations=100, random_state=0)``."""

    def __init__(self, *, factors: int = 64, learning_rate: float = 0.01, regularization: float = 1e-4,
                 iterations: int = 100, batch_size: int = 8192, num_negatives: int = 1, negatives="uniform",
                 optimizer: str = "adam", lr_schedule=None, patience=None, biases: bool = False, denoise=None,
                 random_state=0, device="auto", num_threads: int = 0):
        super().__init__(factors=factors, learning_rate=learning_rate, regularization=regularization,
                         iterations=iterations, batch_size=batch_size, loss="bpr", num_negatives=num_negatives,
                         negatives=negatives, optimizer=optimizer, lr_schedule=lr_schedule, patience=patience,
                         biases=biases, denoise=denoise, random_state=random_state, device=device,
                         num_threads=num_threads)
