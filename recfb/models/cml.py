"""Collaborative metric learning (Hsieh et al., WWW 2017) on the shared training loop."""
from __future__ import annotations

import numpy as np
import torch

from recfb.losses import WARPHinge, covariance_penalty
from recfb.models._embedding import EmbeddingRecommender, embedding_constraints
from recfb.models.mf import _sqnorm
from recfb.sampling import make_negative_sampler
from recfb.train import Scorer, TrainSpec
from recfb.utils.errors import DataError
from recfb.utils.params import Interval

_FEATURES_NEED_AUTOGRAD = "item features train the feature network through autograd"


class CMLScorer(Scorer):
    """``s_ui = -||u - v_i||^2`` with every embedding kept in the unit ball.

    With item content features ``x_i`` a two-layer network ``f`` maps them into the same space
    and ``||f(x_i) - v_i||^2`` pulls each item towards its features, so that items without
    interactions can be placed by ``f`` alone (cold start).
    """

    fused_objectives = (WARPHinge,)

    def __init__(self, n_users, n_items, factors, generator, *, covariance=1.0, features=None,
                 feature_weight=1.0, hidden=256, regularization=0.0):
        super().__init__()
        self.regularization_weight = float(regularization)
        self.user = torch.nn.Embedding(n_users, factors)
        self.item = torch.nn.Embedding(n_items, factors)
        with torch.no_grad():
            self.user.weight.normal_(0, 1 / factors ** 0.5, generator=generator)
            self.item.weight.normal_(0, 1 / factors ** 0.5, generator=generator)
        self.covariance = covariance
        self.feature_weight = feature_weight
        self.mlp = None
        if features is None:
            self.features = None
        else:
            self.register_buffer("features", torch.as_tensor(features, dtype=torch.float32))
            self.mlp = torch.nn.Sequential(torch.nn.Linear(features.shape[1], hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(hidden, factors))
            with torch.no_grad():
                for layer in (self.mlp[0], self.mlp[2]):
                    layer.weight.normal_(0, 1 / layer.weight.shape[1] ** 0.5, generator=generator)
                    layer.bias.zero_()
        self.post_step()

    def batch_scores(self, users, pos, neg):
        # -||u - v||^2 = 2 u.v - ||v||^2 - ||u||^2, the positive and its negatives in one gather,
        # item norms from one pass over the table: fewer (B, n, d) temporaries than the
        # difference form, the same values
        u = self.user(users)
        items = torch.cat([pos.unsqueeze(1), neg], dim=1)
        table = self.item.weight
        sq_items = torch.linalg.vecdot(table, table)[items]
        s = 2 * torch.linalg.vecdot(self.item(items), u.unsqueeze(1)) - sq_items - torch.linalg.vecdot(u, u).unsqueeze(1)
        return s[:, 0], s[:, 1:]

    def regularization(self, users, pos, neg):
        emb = torch.cat([self.user(users), self.item(pos)], dim=0)
        reg = self.covariance * covariance_penalty(emb)
        if self.regularization_weight:
            # 0.5 * reg * ||theta||^2 per sample (the negatives' share / n), as MF and the kernel
            l2 = _sqnorm(self.user(users)) + _sqnorm(self.item(pos)) + _sqnorm(self.item(neg)) / neg.shape[1]
            reg = reg + 0.5 * self.regularization_weight * l2 / users.numel()
        if self.mlp is not None:
            f = self.mlp(self.features[pos])
            reg = reg + self.feature_weight * (f - self.item(pos)).pow(2).sum(-1).mean()
        return reg

    def fused_blockers(self):
        return [_FEATURES_NEED_AUTOGRAD] if self.mlp is not None else []

    def fused_epoch(self, users, items, order, negatives, weights, learning_rate, objective, num_threads,
                    block_size):
        """One compiled per-sample SGD epoch of the WARP hinge (``optimizer="fused_sgd"``), in place;
        the covariance penalty steps once per ``block_size`` samples (the autograd batch)."""
        from recfb.train._fused import cml_sgd_epoch
        with torch.no_grad():
            return cml_sgd_epoch(self.user.weight.data.numpy(), self.item.weight.data.numpy(), users.numpy(),
                                 items.numpy(), order.numpy(), negatives.numpy(),
                                 None if weights is None else weights.numpy(), learning_rate,
                                 self.regularization_weight, objective.margin, objective.n_items, self.covariance,
                                 int(block_size), num_threads)

    def post_step(self):
        with torch.no_grad():
            for w in (self.user.weight, self.item.weight):
                w.data = torch.renorm(w.data, 2, 0, 1.0)

    def feature_vectors(self, features) -> torch.Tensor:
        v = self.mlp(torch.as_tensor(features, dtype=torch.float32, device=self.user.weight.device))
        return torch.renorm(v, 2, 0, 1.0)

    def export(self):
        return self.user.weight.detach().cpu().numpy(), self.item.weight.detach().cpu().numpy()


class CML(EmbeddingRecommender):
    """Collaborative metric learning: users and items in one Euclidean space, a user near the
    items they like (Hsieh et al., WWW 2017, https://doi.org/10.1145/3038912.3052639).

    Loss: ``sum w_ui [m + d(u,i)^2 - min_j d(u,j)^2]_+`` over ``num_negatives`` sampled items j,
    with the WARP rank weight ``w_ui = log(1 + floor(n_items * violators / num_negatives))``,
    plus ``covariance`` x the off-diagonal covariance of the batch embeddings; all
    embeddings are projected into the unit ball after each step. ``recommend`` ranks by
    ``-||u - v||^2`` and FAISS export uses L2 (``metric = "l2"``).

    Item content features (``fit(X, item_features=F)``, F dense n_items x n_features) add the
    feature loss ``feature_weight * ||f(x_i) - v_i||^2``; items with no interactions are
    placed at ``f(x_i)``, and :meth:`item_vectors_from_features` places new items.

    Training: ``optimizer="auto"`` takes the compiled per-sample SGD kernel
    (``recfb.train._fused.cml_sgd_epoch``: the same hinge, rank weight, L2 and unit-ball
    projection per sample, Hogwild on ``num_threads`` cores — 0 = all, 1 = deterministic — and
    one covariance-penalty step per ``batch_size`` samples); with item features, a denoiser or
    on GPU it trains with Adam on the autograd loop (``optimizer_`` says which).

    Defaults (``benchmarks/defaults.py``): ``margin=1.0`` (above 0.5 at every rate and length swept on ml-100k),
    10 negatives; ``learning_rate=None`` -> 0.02 on the kernel, 0.03 with Adam, with
    ``lr_schedule="auto"`` (cosine: a constant rate collapses the kernel's run);
    ``iterations=None`` -> derived from the number of interactions (``iterations_``, see
    :meth:`_auto_settings`). Explicit values are used as given.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`).
    search_space = {"factors": ("int", 16, 256, "log"), "learning_rate": ("float", 1e-3, 0.1, "log"),
                    "margin": ("float", 0.1, 2.0), "num_negatives": ("int", 2, 50, "log"),
                    "covariance": ("float", 0.01, 10.0, "log")}

    metric = "l2"

    _parameter_constraints = {
        **{k: v for k, v in embedding_constraints().items() if k != "loss"},
        "regularization": [Interval("real", 0, None)],
        "margin": [Interval("real", 0, None, closed="neither")],
        "num_negatives": [Interval("int", 1, None)],
        "covariance": [Interval("real", 0, None)],
        "feature_weight": [Interval("real", 0, None)],
    }

    def __init__(self, *, factors: int = 64, learning_rate: float | None = None, regularization: float = 0.0,
                 iterations: int | None = None, batch_size: int = 8192, margin: float = 1.0, num_negatives: int = 10,
                 covariance: float = 1.0, feature_weight: float = 1.0, negatives="uniform", optimizer: str = "auto",
                 lr_schedule="auto", patience=None, denoise=None, random_state=0, device="auto",
                 num_threads: int = 0):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.batch_size = batch_size
        self.margin = margin
        self.num_negatives = num_negatives
        self.covariance = covariance
        self.feature_weight = feature_weight
        self.negatives = negatives
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.patience = patience
        self.denoise = denoise
        self.random_state = random_state
        self.device = device
        self.num_threads = num_threads

    def fit(self, user_items, show_progress: bool = True, *, item_features=None, **kwargs):
        """As :meth:`EmbeddingRecommender.fit`, plus optional ``item_features`` (n_items x f)."""
        if self.optimizer == "sparse_adam":
            raise ValueError("CML keeps embeddings in the unit ball after every step; use optimizer='adam'.")
        F = None
        if item_features is not None:
            F = np.asarray(item_features, dtype=np.float32)
            if F.ndim != 2 or F.shape[0] != user_items.shape[1]:
                raise DataError(f"item_features must be (n_items={user_items.shape[1]}, n_features), got {F.shape}.")
            if not np.all(np.isfinite(F)):
                raise DataError("item_features contains NaN or inf.")
        super().fit(user_items, show_progress, _inputs={"features": F}, **kwargs)
        if F is not None:
            cold = np.asarray(user_items.getnnz(axis=0)).ravel() == 0
            if cold.any():
                self.item_factors[cold] = self.item_vectors_from_features(F[cold])
        return self

    def _objective(self, X):
        return WARPHinge(margin=self.margin, n_items=X.shape[1])

    def _train_spec(self, X, scorer, objective, sample_weight, **run):
        """The WARP hinge on the unit-ball scorer (its covariance penalty and feature loss are the
        scorer's regularisation), ``num_negatives`` sampled per positive, weights, denoiser."""
        config = self._config(num_negatives=self.num_negatives_, patience=self.patience, num_threads=self.num_threads,
                              **run)
        return TrainSpec(scorer=scorer, objective=objective, negatives=make_negative_sampler(self.negatives),
                         config=config, weights=sample_weight, denoiser=self.denoise)

    def _auto_settings(self, X, optimizer):
        """Fused per-sample SGD (the default): learning rate 0.02 with a cosine decay,
        ``clip(3e6 / nnz, 20, 100)`` epochs. Adam (item features, GPU): 0.03 with a cosine decay,
        the same epochs (WARP with 10 sampled negatives learns most in the first passes; large
        logs need fewer)."""
        nnz = max(int(X.nnz), 1)
        lr = 0.02 if optimizer == "fused_sgd" else 0.03
        return {"iterations": int(np.clip(round(3e6 / nnz), 20, 100)), "learning_rate": lr,
                "regularization": 0.0, "lr_schedule": "cosine"}

    fused_objectives = CMLScorer.fused_objectives

    def _fused_blockers(self, features=None):
        return [_FEATURES_NEED_AUTOGRAD] if features is not None else []

    def _build_scorer(self, n_users, n_items, generator, X, features=None):
        return CMLScorer(n_users, n_items, self.factors, generator, covariance=self.covariance,
                         features=features, feature_weight=self.feature_weight,
                         regularization=self.regularization_)

    def item_vectors_from_features(self, features) -> np.ndarray:
        """Place items (e.g. new releases with no interactions) from their content features."""
        scorer = getattr(self, "scorer_", None)
        if scorer is None or scorer.mlp is None:
            raise DataError("this CML was fitted without item_features; it cannot place items from features.")
        with torch.no_grad():
            return scorer.feature_vectors(features).cpu().numpy().astype(np.float32)
