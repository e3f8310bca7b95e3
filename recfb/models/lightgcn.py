"""LightGCN (He et al., SIGIR 2020) on torch_geometric's LGConv, trained with BPR."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from recfb.losses import make_objective
from recfb.models._embedding import EmbeddingRecommender, embedding_constraints
from recfb.sampling import make_negative_sampler
from recfb.train import Scorer, TrainSpec
from recfb.utils.params import Interval
from recfb.utils.validation import check_positive_int


def normalized_adjacency(X: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, X], [X^T, 0]]`` (binary X)."""
    B = X.copy()
    B.data[:] = 1.0
    n_users, n_items = B.shape
    A = sp.bmat([[None, B], [B.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(A.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    D = sp.diags(inv.astype(np.float32))
    return (D @ A @ D).tocsr().astype(np.float32)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the backward pass is ``A @ grad`` again, far
    cheaper on CPU than torch's generic sparse backward (benchmarks/RESULTS.md, "Why the code
    is shaped this way")."""

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return None, torch.sparse.mm(ctx.adj, grad)


def _make_conv():
    from torch_geometric.nn import LGConv

    class SymmetricLGConv(LGConv):
        """torch_geometric's LGConv with the fused sparse product above (adjacency already
        normalised, so ``normalize=False``)."""

        def message_and_aggregate(self, adj_t, x):
            return _SymmetricSpMM.apply(adj_t, x)

    return SymmetricLGConv(normalize=False)


class LightGCNScorer(Scorer):
    """Ego embeddings E0 propagated ``num_layers`` times over the normalised graph; the final
    embedding is the mean of E0..EK. Scores are inner products of final embeddings."""

    def __init__(self, n_users, n_items, factors, generator, adjacency: sp.csr_matrix, *, num_layers=3,
                 regularization=1e-4):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.embedding = torch.nn.Embedding(n_users + n_items, factors)
        with torch.no_grad():
            self.embedding.weight.normal_(0, 0.1, generator=generator)
        coo = adjacency.tocoo()
        adj = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data, adjacency.shape,
                                      check_invariants=True).coalesce()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only mm
            warnings.simplefilter("ignore", UserWarning)
            # not persistent: rebuilt from X at every fit, and a sparse CSR tensor cannot be
            # deep-copied, which early stopping does with the state dict (best weights)
            self.register_buffer("adj", adj.to_sparse_csr(), persistent=False)
        self.conv = _make_conv()
        self.num_layers = num_layers
        self.regularization_weight = regularization

    def propagate(self) -> torch.Tensor:
        x = self.embedding.weight
        out = x
        for _ in range(self.num_layers):
            x = self.conv(x, self.adj)
            out = out + x
        return out / (self.num_layers + 1)

    def batch_scores(self, users, pos, neg):
        final = self.propagate()
        u = final[users]
        p = final[self.n_users + pos]
        n = final[self.n_users + neg]
        return (u * p).sum(-1), (u.unsqueeze(1) * n).sum(-1)

    def regularization(self, users, pos, neg):
        e = self.embedding
        reg = e(users).pow(2).sum() + e(self.n_users + pos).pow(2).sum() + e(self.n_users + neg).pow(2).sum() / neg.shape[1]
        return self.regularization_weight * reg / (2 * users.numel())

    def export(self):
        final = self.propagate().detach().cpu()
        return final[: self.n_users].numpy(), final[self.n_users:].numpy()


class LightGCN(EmbeddingRecommender):
    """LightGCN: linear propagation of ID embeddings over the user-item graph
    (He et al., SIGIR 2020, https://arxiv.org/abs/2002.02126).

    ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` (torch_geometric ``LGConv``), final embedding
    ``mean(E^(0..K))``, BPR loss on sampled triples by default (``loss`` takes any name or
    :class:`recfb.losses.Objective` that MF takes: "bce", "nbpo", ...), L2 (``regularization``)
    on the ego embeddings of the batch; ``denoise`` takes a :mod:`recfb.denoise` method.
    Full-graph propagation per step with sparse ops, so large
    ``batch_size`` values pay on CPU. Needs ``pip install recfb[graph]`` (torch-geometric).

    Defaults: Adam; ``batch_size``, ``learning_rate``, ``regularization`` and ``iterations``
    left at None are derived from the size of the log at fit (``batch_size_``,
    ``learning_rate_`` ..., see :meth:`_auto_settings`: up to 65,536 pairs, as a step is one
    propagation, the cost on CPU); explicit values are used as given.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`).
    search_space = {"factors": ("int", 16, 256, "log"), "learning_rate": ("float", 1e-4, 0.05, "log"),
                    "regularization": ("float", 1e-6, 0.01, "log"), "num_layers": ("int", 1, 4),
                    "num_negatives": ("int", 1, 8, "log")}

    _parameter_constraints = {**{k: v for k, v in embedding_constraints().items() if k != "num_threads"},
                              "num_layers": [Interval("int", 0, None)],
                              "num_negatives": [Interval("int", 1, None)]}

    def __init__(self, *, factors: int = 64, learning_rate: float | None = None, regularization: float | None = None,
                 iterations: int | None = None, batch_size: int | None = None, num_layers: int = 3, loss="bpr",
                 num_negatives: int = 1, negatives="uniform", optimizer: str = "auto", lr_schedule="auto", patience=None,
                 denoise=None, random_state=0, device="auto"):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.batch_size = batch_size
        self.num_layers = num_layers
        self.loss = loss
        self.num_negatives = num_negatives
        self.negatives = negatives
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.patience = patience
        self.denoise = denoise
        self.random_state = random_state
        self.device = device

    def _objective(self, X):
        return make_objective(self.loss)

    def _train_spec(self, X, scorer, objective, sample_weight, **run):
        """The propagating scorer (its L2 on the batch's ego embeddings is its regularisation)
        with the objective, ``num_negatives`` sampled per positive, weights and denoiser."""
        config = self._config(num_negatives=self.num_negatives_, patience=self.patience, **run)
        return TrainSpec(scorer=scorer, objective=objective, negatives=make_negative_sampler(self.negatives),
                         config=config, weights=sample_weight, denoiser=self.denoise)

    def __getstate__(self):
        # the trained torch module (a torch_geometric layer over a sparse CSR adjacency) does
        # not pickle; the exported factors are what inference needs
        state = dict(self.__dict__)
        state.pop("scorer_", None)
        return state

    def _build_scorer(self, n_users, n_items, generator, X):  # no per-fit inputs
        check_positive_int(self.num_layers, "num_layers", minimum=0)
        if self.optimizer_ == "sparse_adam":
            raise ValueError("LightGCN propagates the whole embedding table each step; use optimizer='adam'.")
        return LightGCNScorer(n_users, n_items, self.factors, generator, normalized_adjacency(X),
                              num_layers=self.num_layers, regularization=self.regularization_)

    def _auto_settings(self, X, optimizer):
        """Adam at 0.01 (constant), L2 1e-4; a batch of about an eighth of the log,
        ``clip(2**round(log2(nnz / 8)), 8192, 65536)`` pairs, for ``clip(4e6 / nnz, 30, 200)``
        epochs. A step is one propagation of the whole graph plus the batch's gathers: large logs
        (ml-1m: 65,536 x 30 epochs) stay at a few hundred steps of the largest batch, small ones
        (ml-100k, lastfm-2k: 8,192 x ~60) take ~500 cheap steps, which on ml-100k scored 0.1966
        against 0.1925 (65,536 x 200 epochs) at a quarter of the time (benchmarks/RESULTS.md)."""
        nnz = max(int(X.nnz), 1)
        batch = int(np.clip(2 ** round(np.log2(max(nnz / 8, 1))), 8192, 65536))
        return {"iterations": int(np.clip(round(4e6 / nnz), 30, 200)), "learning_rate": 0.01, "batch_size": batch,
                "regularization": 1e-4, "lr_schedule": None}
