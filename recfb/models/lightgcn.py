"""LightGCN (He et al., SIGIR 2020) on torch_geometric's LGConv, trained with BPR."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from numba import njit, prange

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


# ---------------------------------------------------------------- CPU kernels (numba)
# ``mean(x, A x, ..., A^K x) = h_K / (K + 1)`` with ``h_0 = x``, ``h_l = x + A h_(l-1)`` (Horner):
# one pass per layer that reads h and x and writes the next h, no running sum to re-read. The
# graph is bipartite, so one pass over the CSR rows of the larger ("outer") side against the
# smaller ("inner") side computes both halves of ``A h``: each outer row gathers its inner
# neighbours and scatters itself into their rows; the inner rows (lastfm-2k: the 1,892 users,
# 0.5 MB at 64 factors) stay in cache and the outer ones are read once, in order. Threads split
# the outer rows (by entries) and scatter into private copies of the inner side, summed after.
@njit(cache=True, fastmath=True, parallel=True)
def _bipartite_layer(ptr, idx, val, outer0, inner0, bounds, src, base, dst, part, scale, coef, extra,
                     add_extra):  # pragma: no cover
    """``dst = (base + A @ src) * scale``, plus ``coef[:, None] * extra`` when ``add_extra``
    (``A``'s outer rows ``outer0 + o`` hold the entries ``val`` against the inner rows
    ``inner0 + idx``; thread ``t`` takes the outer rows ``bounds[t]:bounds[t + 1]`` and scatters
    into ``part[t]``)."""
    n_threads, n_inner, d = part.shape
    for t in prange(n_threads):
        buf = part[t]
        for a in range(n_inner):
            for f in range(d):
                buf[a, f] = 0.0
        for o in range(bounds[t], bounds[t + 1]):
            r = outer0 + o
            dr, sr, br = dst[r], src[r], base[r]
            for f in range(d):
                dr[f] = 0.0
            for k in range(ptr[o], ptr[o + 1]):
                w, c = val[k], idx[k]
                si, bc = src[inner0 + c], buf[c]
                for f in range(d):
                    dr[f] += w * si[f]
                for f in range(d):
                    bc[f] += w * sr[f]
            for f in range(d):
                dr[f] = (br[f] + dr[f]) * scale
            if add_extra:
                c, er = coef[r], extra[r]
                for f in range(d):
                    dr[f] += c * er[f]
    for a in prange(n_inner):
        r = inner0 + a
        dr, br = dst[r], base[r]
        for f in range(d):
            s = part[0, a, f]
            for t in range(1, n_threads):
                s += part[t, a, f]
            dr[f] = (br[f] + s) * scale
        if add_extra:
            c, er = coef[r], extra[r]
            for f in range(d):
                dr[f] += c * er[f]


@njit(cache=True, fastmath=True, parallel=True)
def _pair_scores(final, users, pos, neg, offset, pos_out, neg_out):  # pragma: no cover
    """``pos_out[b] = <final[u_b], final[offset + i_b]>``, ``neg_out[b, j]`` likewise for ``neg[b, j]``."""
    n_neg, d = neg.shape[1], final.shape[1]
    for b in prange(users.shape[0]):
        fu = final[users[b]]
        fp = final[offset + pos[b]]
        s = 0.0
        for f in range(d):
            s += fu[f] * fp[f]
        pos_out[b] = s
        for j in range(n_neg):
            fq = final[offset + neg[b, j]]
            s = 0.0
            for f in range(d):
                s += fu[f] * fq[f]
            neg_out[b, j] = s


@njit(cache=True, fastmath=True)
def _counting_order(keys, n_keys):  # pragma: no cover
    """(start, order): ``order[start[k]:start[k + 1]]`` are the positions of ``keys == k``, in order."""
    start = np.zeros(n_keys + 1, np.int64)
    for e in range(keys.shape[0]):
        start[keys[e] + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    order = np.empty(keys.shape[0], np.int64)
    for e in range(keys.shape[0]):
        order[fill[keys[e]]] = e
        fill[keys[e]] += 1
    return start, order


@njit(cache=True, fastmath=True, parallel=True)
def _pair_scores_backward(final, users, items, grads, n_users, grad):  # pragma: no cover
    """``grad`` = the gradient w.r.t. ``final`` of ``sum_e grads[e] * <final[users[e]], final[n_users + items[e]]>``
    (every row written, zeros where no pair touches it). The pairs are ordered by item and by user
    (counting sorts), so each row is summed by one thread in a fixed order: no races, and the
    same result on any number of threads."""
    n_items, d = grad.shape[0] - n_users, grad.shape[1]
    item_start, by_item = _counting_order(items, n_items)
    user_start, by_user = _counting_order(users, n_users)
    for i in prange(n_items):
        gi = grad[n_users + i]
        for f in range(d):
            gi[f] = 0.0
        for k in range(item_start[i], item_start[i + 1]):
            e = by_item[k]
            g, fu = grads[e], final[users[e]]
            for f in range(d):
                gi[f] += g * fu[f]
    for u in prange(n_users):
        gu = grad[u]
        for f in range(d):
            gu[f] = 0.0
        for k in range(user_start[u], user_start[u + 1]):
            e = by_user[k]
            g, fi = grads[e], final[n_users + items[e]]
            for f in range(d):
                gu[f] += g * fi[f]


@njit(cache=True, fastmath=True, parallel=True)
def _weighted_square_sum(x, rows, weights):  # pragma: no cover
    """``sum_k weights[k] * ||x[rows[k]]||^2``, summed in one order on any number of threads."""
    norms = np.empty(rows.shape[0], np.float64)
    for k in prange(rows.shape[0]):
        xr, s = x[rows[k]], 0.0
        for f in range(x.shape[1]):
            s += xr[f] * xr[f]
        norms[k] = weights[k] * s
    total = 0.0
    for k in range(rows.shape[0]):
        total += norms[k]
    return total


def _numba_threads():
    """numba runs the kernels on torch's thread count (``torch.set_num_threads``), restored after."""
    from recfb.utils.threads import kernel_threads
    return kernel_threads(torch.get_num_threads())


class _BipartiteOperator:
    """``P = mean(I, A, ..., A^K)`` of the normalised bipartite adjacency on CPU arrays, with
    the kernels above; ``P`` is symmetric, so it is its own backward."""

    def __init__(self, adjacency: sp.csr_matrix, n_users: int):
        n = adjacency.shape[0]
        n_items = n - n_users
        # the smaller side is the inner one (its rows stay in cache)
        if n_users <= n_items:
            block, self.outer0, self.inner0, self.n_inner = adjacency[n_users:, :n_users], n_users, 0, n_users
        else:
            block, self.outer0, self.inner0, self.n_inner = adjacency[:n_users, n_users:], 0, n_users, n_items
        block = sp.csr_matrix(block)
        block.sort_indices()
        self.ptr = block.indptr.astype(np.int64)
        self.idx = block.indices.astype(np.int32)
        self.val = block.data.astype(np.float32)
        self._bounds = {}
        self._scratch = None

    def bounds(self, threads: int) -> np.ndarray:
        """Outer-row boundaries giving each thread about the same number of entries."""
        if threads not in self._bounds:
            cuts = np.searchsorted(self.ptr, np.linspace(0, self.ptr[-1], threads + 1))
            cuts[0], cuts[-1] = 0, len(self.ptr) - 1
            self._bounds[threads] = np.maximum.accumulate(cuts).astype(np.int64)
        return self._bounds[threads]

    def mean_of_powers(self, x: np.ndarray, num_layers: int, coef: np.ndarray | None = None,
                       extra: np.ndarray | None = None) -> np.ndarray:
        """``mean(x, A x, ..., A^K x)`` of a C-contiguous (n, d) array (float32 or float64), a
        new array; plus ``coef[:, None] * extra`` when given (added in the last pass)."""
        add_extra = coef is not None
        coef = np.zeros(1, x.dtype) if coef is None else coef
        extra = x if extra is None else extra
        if num_layers == 0:
            return x + coef[:, None] * extra if add_extra else x.copy()
        out = np.empty_like(x)
        with _numba_threads() as threads:
            key = (x.shape, x.dtype.str, threads)
            if self._scratch is None or self._scratch[0] != key:  # kept between calls: no fresh pages per step
                self._scratch = (key, np.empty_like(x), np.empty_like(x), np.empty((threads, self.n_inner, x.shape[1]),
                                                                                     x.dtype))
            _, h0, h1, part = self._scratch
            src, bounds = x, self.bounds(threads)
            for layer in range(num_layers):
                last = layer == num_layers - 1
                dst = out if last else (h0, h1)[layer % 2]
                scale = x.dtype.type(1.0 / (num_layers + 1) if last else 1.0)
                _bipartite_layer(self.ptr, self.idx, self.val, self.outer0, self.inner0, bounds, src, x, dst, part,
                                 scale, coef, extra, add_extra and last)
                src = dst
        return out


class _MeanPropagation(torch.autograd.Function):
    """``P @ x`` for the scorer's propagation ``P = mean(I, A, ..., A^K)``; ``A`` is symmetric,
    so ``P`` is, and the backward pass is ``P @ grad``: one fused operator each way instead of
    ``K`` sparse products, ``K`` sums and their autograd nodes."""

    @staticmethod
    def forward(ctx, x, scorer):
        ctx.scorer = scorer
        return scorer._apply_propagation(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.scorer._apply_propagation(grad.contiguous()), None


class _PairScores(torch.autograd.Function):
    """CPU: the batch's scores ``<f_u, f_i>`` of the propagated table ``F = P E`` and the L2
    ``sum_k w_k ||E[r_k]||^2`` of its ego rows, from kernels. The backward scatters the scores'
    gradient into one (n, d) table, propagates it back (``P`` is symmetric) and adds the L2's
    rows to the result: no (B, d) gathers, no products of them, and one zero-filled table per
    step instead of one per gather."""

    @staticmethod
    def forward(ctx, weight, users, pos, neg, l2_rows, l2_weights, scorer):
        final = scorer._apply_propagation(weight)
        pos_out = torch.empty(neg.shape[0], dtype=final.dtype)
        neg_out = torch.empty(neg.shape, dtype=final.dtype)
        with _numba_threads():
            _pair_scores(final.numpy(), users.numpy(), pos.numpy(), neg.numpy(), scorer.n_users, pos_out.numpy(),
                         neg_out.numpy())
            l2 = _weighted_square_sum(weight.detach().numpy(), l2_rows.numpy(), l2_weights.numpy())
        ctx.save_for_backward(weight, final, users, pos, neg, l2_rows, l2_weights)
        ctx.scorer = scorer
        return pos_out, neg_out, torch.tensor(l2, dtype=final.dtype)

    @staticmethod
    def backward(ctx, grad_pos, grad_neg, grad_l2):
        weight, final, users, pos, neg, l2_rows, l2_weights = ctx.saved_tensors
        scorer = ctx.scorer
        n_neg = neg.shape[1]
        grad_pos = torch.zeros_like(pos, dtype=final.dtype) if grad_pos is None else grad_pos
        grad_neg = torch.zeros_like(neg, dtype=final.dtype) if grad_neg is None else grad_neg
        # the batch's pairs (user, item, d loss / d score): positives, then the negatives
        pair_users = torch.cat([users, users.repeat_interleave(n_neg)])
        pair_items = torch.cat([pos, neg.reshape(-1)])
        pair_grads = torch.cat([grad_pos.reshape(-1), grad_neg.reshape(-1)])
        scatter = scorer._scatter_buffer(final)
        with _numba_threads():
            _pair_scores_backward(final.numpy(), pair_users.numpy(), pair_items.numpy(), pair_grads.numpy(),
                                  scorer.n_users, scatter)
        # the L2's gradient 2 w_k E[r_k], as a per-row coefficient added in P's last pass over the table
        coef = None if grad_l2 is None else np.bincount(
            l2_rows.numpy(), (2 * grad_l2 * l2_weights).numpy(), minlength=final.shape[0]).astype(scatter.dtype)
        grad = torch.from_numpy(scorer._operator.mean_of_powers(scatter, scorer.num_layers, coef,
                                                                weight.detach().numpy()))
        return grad, None, None, None, None, None, None


class LightGCNScorer(Scorer):
    """Ego embeddings E0 propagated ``num_layers`` times over the normalised graph; the final
    embedding is the mean of E0..EK. Scores are inner products of final embeddings.

    The layer is torch_geometric's ``LGConv`` (``self.conv``): :meth:`export`, :meth:`propagate_layers`
    and every non-CPU device propagate through it, layer by layer. Training on CPU bypasses the
    per-layer calls: it computes the same ``mean(E0..EK)`` with one fused numba operator
    (:class:`_BipartiteOperator`, also ``P``'s backward, as ``P`` is symmetric) and takes the
    batch's scores and L2 from kernels (:class:`_PairScores`). Calling the layer ``K`` times costs,
    each way and per step, ``K`` sparse products with torch's output copies and index casts, ``K``
    dense sums over the table and their autograd nodes, plus three (B, d) gathers with their
    zero-filled dense gradients for the scores and three for the L2: on lastfm-2k (8,192 pairs,
    1 thread, one process, interleaved rounds on a shared machine) a step took 62.7 ms of CPU that
    way and 25.5 ms fused; ml-1m (65,536 pairs) 253 ms and 158 ms (``benchmarks/lightgcn_step.py``).
    tests/models/test_lightgcn_speed_paths.py checks the fused path against a dense float64
    autograd reference, against the LGConv layers and, over a short fit, against the torch path.
    """

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
        self._operator = _BipartiteOperator(adjacency, n_users)  # the CPU kernels' copy of the graph
        self.conv = _make_conv()
        self.num_layers = num_layers
        self.regularization_weight = regularization

    def _fused(self, x: torch.Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

    def propagate_layers(self, x: torch.Tensor) -> torch.Tensor:
        """``mean(x, A x, ..., A^K x)`` through the ``LGConv`` layer, one call per layer."""
        out = x
        for _ in range(self.num_layers):
            x = self.conv(x, self.adj)
            out = out + x
        return out / (self.num_layers + 1)

    def _apply_propagation(self, x: torch.Tensor) -> torch.Tensor:
        """``P @ x`` without autograd: the fused kernel on CPU, the LGConv layers elsewhere."""
        x = x.detach()
        if self._fused(x):
            return torch.from_numpy(self._operator.mean_of_powers(x.contiguous().numpy(), self.num_layers))
        with torch.no_grad():
            return self.propagate_layers(x)

    def propagate(self) -> torch.Tensor:
        """The final embeddings ``mean(E0..EK)`` (n_users + n_items, factors), differentiable."""
        return _MeanPropagation.apply(self.embedding.weight, self)

    def _scatter_buffer(self, like: torch.Tensor) -> np.ndarray:
        """An (n, d) array for the backward's scatter (the kernel writes every row), kept between steps."""
        buf = getattr(self, "_scatter", None)
        if buf is None or buf.shape != tuple(like.shape) or buf.dtype != like.numpy().dtype:
            buf = self._scatter = np.empty(tuple(like.shape), like.numpy().dtype)
        return buf

    def batch_scores(self, users, pos, neg):
        weight = self.embedding.weight
        if self._fused(weight):
            # the kernels also take the batch's L2 (same rows), which regularization() returns
            # when it is asked for this batch, as recfb.train.step.PairStep does next
            rows, w = self._l2_rows(users, pos, neg, weight.dtype)
            pos_s, neg_s, l2 = _PairScores.apply(weight, users.contiguous(), pos.contiguous(), neg.contiguous(), rows, w,
                                                 self)
            self._batch_l2 = (users, pos, neg, l2)
            return pos_s, neg_s
        final = self.propagate()
        u = final[users]
        p = final[self.n_users + pos]
        n = final[self.n_users + neg]
        return (u * p).sum(-1), (u.unsqueeze(1) * n).sum(-1)

    def _l2_rows(self, users, pos, neg, dtype):
        """The batch's ego rows (users, positives, negatives) and their weights in the L2."""
        rows = torch.cat([users, self.n_users + pos, self.n_users + neg.reshape(-1)])
        w = torch.full((rows.numel(),), self.regularization_weight / (2 * users.numel()), dtype=dtype)
        w[2 * users.numel():] /= neg.shape[1]
        return rows, w

    def regularization(self, users, pos, neg):
        memo = self.__dict__.pop("_batch_l2", None)
        if memo is not None and memo[0] is users and memo[1] is pos and memo[2] is neg:
            return memo[3]
        e = self.embedding
        reg = e(users).pow(2).sum() + e(self.n_users + pos).pow(2).sum() + e(self.n_users + neg).pow(2).sum() / neg.shape[1]
        return self.regularization_weight * reg / (2 * users.numel())

    def export(self):
        # the kernels' buffers (two to three tables) are not kept with the fitted model
        self._operator._scratch = self._scatter = None
        self.__dict__.pop("_batch_l2", None)
        with torch.no_grad():
            final = self.propagate_layers(self.embedding.weight.detach()).cpu()
        return final[: self.n_users].numpy(), final[self.n_users:].numpy()


class LightGCN(EmbeddingRecommender):
    """LightGCN: linear propagation of ID embeddings over the user-item graph
    (He et al., SIGIR 2020, https://arxiv.org/abs/2002.02126).

    ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` (torch_geometric ``LGConv``), final embedding
    ``mean(E^(0..K))``, BPR loss on sampled triples by default (``loss`` takes any name or
    :class:`recfb.losses.Objective` that MF takes: "bce", "nbpo", ...), L2 (``regularization``)
    on the ego embeddings of the batch; ``denoise`` takes a :mod:`recfb.denoise` method.
    Full-graph propagation per step, so large ``batch_size`` values pay on CPU; there the
    propagation and the batch's scores run as fused numba kernels on ``torch.get_num_threads()``
    threads (:class:`LightGCNScorer`). Needs ``pip install recfb[graph]`` (torch-geometric).

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
