"""Matrix factorisation trained with BPR or pointwise BCE on the shared training loop."""
from __future__ import annotations

import numpy as np
import torch

from recfb.denoise import PLD, RCE, TCE
from recfb.losses import BCE as _BCEObjective
from recfb.losses import BPR as _BPRObjective
from recfb.losses import NBPO as _NBPOObjective
from recfb.losses import make_objective
from recfb.models._embedding import EmbeddingRecommender, embedding_constraints
from recfb.sampling import make_negative_sampler
from recfb.train import Scorer, TrainSpec
from recfb.utils.params import Instance, Interval, Options

#: how a saved model's JSON marks a propensity array kept with its state arrays
_ARRAY_MARK_VALUE = "<array stored with the model>"


def _sqnorm(x: torch.Tensor) -> torch.Tensor:
    """Sum of squares without a squared temporary (large temporaries cost page faults on CPU)."""
    flat = x.reshape(-1)
    return torch.dot(flat, flat)


class MFScorer(Scorer):
    """``s_ui = p_u . q_i (+ b_i)``. Shapes: users (B,), items (B,) or (B, n)."""

    fused_objectives = (_BPRObjective, _BCEObjective, _NBPOObjective)
    fused_denoisers = (RCE, TCE, PLD)

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

    def fused_epoch(self, users, items, order, negatives, weights, learning_rate, objective, num_threads,
                    block_size=None, denoiser=None, step=0, inputs=None):
        """One compiled per-sample SGD epoch (``optimizer="fused_sgd"``), in place. R-CE's
        weights are applied per sample; T-CE's per block of ``block_size`` samples (the
        autograd loop's batch; ``step`` is the first block's step number, for its warm-up);
        PLD's pool draw per sample from ``inputs`` (:meth:`recfb.denoise.PLD.kernel_inputs`;
        None in its warm-up: the plain epoch)."""
        from recfb.train._fused import mf_sgd_epoch
        rce = tce = pld = nbpo = None
        if isinstance(objective, _NBPOObjective):  # the flip factors train in place beside the model's
            nbpo = (objective.user_flip.data.numpy(), objective.item_flip.data.numpy(), objective.flip_regularization)
        if isinstance(denoiser, PLD) and inputs is not None:
            pld = (inputs["pool"].numpy(), inputs["negatives"].numpy(), inputs["gumbel"].numpy(),
                   denoiser.temperature, denoiser.last_loss_.numpy())
        if isinstance(denoiser, RCE):
            rce = (denoiser.beta, denoiser.reweights_negatives_for(objective), denoiser.last_loss_.numpy(),
                   denoiser.last_weight_.numpy())
        elif isinstance(denoiser, TCE):
            tce = (denoiser.drop_rate, denoiser.warmup_steps_, step, int(block_size), denoiser.last_loss_.numpy(),
                   denoiser.last_weight_.numpy(), denoiser.ranks_by_score_for(objective))
        with torch.no_grad():
            return mf_sgd_epoch(
                self.user.weight.data.numpy(), self.item.weight.data.numpy(),
                None if self.bias is None else self.bias.weight.data.numpy().reshape(-1),
                users.numpy(), items.numpy(), order.numpy(), negatives.numpy(),
                None if weights is None else weights.numpy(), learning_rate, self.regularization_weight,
                objective.name, num_threads, rce=rce, tce=tce, pld=pld, nbpo=nbpo)

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
    learning_rate : float, optional
        None: derived at fit (``learning_rate_``): 0.05-0.1 for the fused SGD kernel (0.1 on logs
        of <= 200k interactions, see :func:`mf_auto_settings`), 0.01 for Adam.
    regularization : float, optional
        L2 on the embeddings a sample touches: the gradient gets ``regularization * theta``
        per sample (implicit's convention), in the autograd and the fused paths alike.
        None: derived from the data at fit (``regularization_``), see :func:`mf_auto_settings`;
        ``loss="bce"`` on the kernel takes ``clip(0.04 * sqrt(1e5 / nnz), 0.01, 0.06)`` (more
        than BPR: 1.04-1.07x validation NDCG@10 on ml-100k and ml-1m, 0.99x on lastfm-2k), the
        unbiased losses 0.1 (:func:`unbiased_auto_settings`).
    iterations : int, optional
        Epochs over all positives. None: derived from the number of interactions
        (``iterations_``): ``clip(4e7 / nnz, 30, 100)`` on the fused kernel, ``clip(1e7 / nnz, 20,
        100)`` with Adam, ``clip(1e6 / nnz, 20, 100)`` for the unbiased losses.
    batch_size : int, optional
        Mini-batch of the autograd path (the fused kernel updates per sample; T-CE's block).
        None: 8192 (``batch_size_``), for the unbiased losses ``clip(nnz // 10, 1024, 8192)``.
    num_negatives : int, optional
        Sampled negatives per positive. None: 1 for BPR, 4 for the pointwise losses (BCE,
        Rel-MF, DR Rel-MF, NBPO), which learn "not clicked" only from them, and 4 for UBPR, whose
        pair terms are averaged over the negatives (over four MNAR worlds x 2 seeds, 4 had the
        mildest worst MAR-validation ratio to the best of 1, 4 and 16: 0.970 against 0.885 and
        0.879; RESULTS.md, "Defaults (issue 13)", fifth session).
    negatives : {"uniform", "verified", "popularity"} or NegativeSampler, default "uniform"
    optimizer : {"auto", "fused_sgd", "adam", "adagrad", "sgd", "sparse_adam"}, default "auto"
        ``"auto"`` (``optimizer_`` says what was chosen): ``"fused_sgd"`` where it applies (BPR,
        BCE or NBPO objective, no denoiser other than R-CE, T-CE or PLD and none with NBPO, CPU),
        ``"adam"`` everywhere else.
        ``"fused_sgd"``: per-sample SGD in a compiled Hogwild kernel (as implicit's BPR does; its speed against the
        autograd loop is in benchmarks/RESULTS.md); with ``num_threads=1`` it is deterministic, with more threads
        updates race (as in implicit), so runs agree in quality but not bit for bit.
    lr_schedule : {"auto", None, "cosine", "step", "exponential"}, default "auto"
        ``"auto"``: cosine decay on the fused kernel, constant with Adam.
    patience : int, optional
        Early stopping patience in epochs (needs ``valid_items`` in ``fit``).
    biases : bool, default False
    denoise : recfb.denoise.Denoiser, optional
    random_state : int, optional (default 0)
    device : "auto", "cpu" or "cuda"
    num_threads : int, default 0
        Threads of the fused kernel (0 = all cores).
    propensity : "popularity" or array, default "popularity"
        Exposure propensities of ``loss="relmf"``, ``"ubpr"``, ``"relmf_dr"`` (per item or
        users x items); ``"popularity"``: ``(n_i / max n) ** eta`` from the training clicks.
    eta : float, optional
        None (``eta_``): 0.25 for ``"relmf"``/``"relmf_dr"``, 0.5 for ``"ubpr"``.
    clip : float in (0, 1], optional
        Propensity floor (``relmf_dr`` and ``ubpr`` default to 0.1, ``relmf`` to no clip).
        ``loss="ubpr"`` trains the non-negative estimator (each pair term floored at 0).
    negative_weight : "all" or float > 0, optional
        Weight of each sampled negative of ``loss="relmf"``/``"relmf_dr"`` (see
        :class:`recfb.losses.RelMF`, which averages the negatives' terms). None: the number of
        negatives (``negative_weight_``; 4 by default), so each negative weighs 1 in a sum, the
        convention of naive BCE. Chosen with ``eta`` and L2 by the sweep in
        ``benchmarks/defaults.py --families unbiased`` (RESULTS.md): the mildest worst case over
        four MNAR worlds (0.88 of the best candidate's validation; weight 1 had 0.51-0.59);
        ``"all"``, the exact all-pairs weight ``n_items / n_u``, trains badly at these budgets.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`); the
    #: epochs are left to per-epoch validation (best epoch restored).
    search_space = {"factors": ("int", 16, 256, "log"), "learning_rate": ("float", 1e-3, 0.1, "log"),
                    "regularization": ("float", 1e-6, 0.1, "log"), "num_negatives": ("int", 1, 16, "log"),
                    "loss": ("categorical", ["bpr", "bce"])}

    _parameter_constraints = {
        **embedding_constraints(),
        "biases": [Instance(bool)],
        "propensity": [Options({"popularity", _ARRAY_MARK_VALUE}), Instance(np.ndarray, list, tuple)],
        "eta": [Interval("real", 0, None), None],
        "clip": [Interval("real", 0, 1, closed="right"), None],
        "negative_weight": [Options({"all"}), Interval("real", 0, None, closed="neither"), None],
    }

    def __init__(self, *, factors: int = 64, learning_rate: float | None = None, regularization: float | None = None,
                 iterations: int | None = None, batch_size: int | None = None, loss="bpr",
                 num_negatives: int | None = None, negatives="uniform", optimizer: str = "auto", lr_schedule="auto",
                 patience=None, biases: bool = False, denoise=None, random_state=0, device="auto", num_threads: int = 0,
                 propensity="popularity", eta: float | None = None, clip=None, negative_weight=None):
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
        self.propensity = propensity
        self.eta = eta
        self.clip = clip
        self.negative_weight = negative_weight

    def _objective(self, X):
        pointwise_unbiased = isinstance(self.loss, str) and self.loss in ("relmf", "relmf_dr")
        if self.negative_weight is not None and not pointwise_unbiased:
            raise ValueError(f"negative_weight == {self.negative_weight!r} applies to loss='relmf' or 'relmf_dr' "
                             f"only, not loss={self.loss!r}; leave it None.")
        if isinstance(self.loss, str) and self.loss in _UNBIASED:
            self.eta_ = UNBIASED_ETA[self.loss] if self.eta is None else self.eta
            kwargs = {"propensity": self.propensity, "eta": self.eta_}
            if self.clip is not None or self.loss != "relmf_dr":
                kwargs["clip"] = self.clip
            if self.loss == "ubpr":  # the non-negative estimator on floored propensities: bounded below
                kwargs["clip"] = UBPR_CLIP if self.clip is None else self.clip
                kwargs["nonnegative"] = True
            if pointwise_unbiased:
                # None: each sampled negative weighs 1 in a sum over the draws, as in naive BCE
                # (BCE sums its negatives' terms, Rel-MF averages them: the weight is their number)
                self.negative_weight_ = (float(self.num_negatives or 4) if self.negative_weight is None
                                         else self.negative_weight)
                kwargs["negative_weight"] = self.negative_weight_
            return make_objective(self.loss, **kwargs)
        return make_objective(self.loss)

    # an array propensity is kept with the arrays, not in the JSON parameters
    def _saved_params(self):
        params = super()._saved_params()
        if isinstance(self.propensity, np.ndarray):
            params["propensity"] = _ARRAY_MARK
        return params

    def _get_state(self):
        state = super()._get_state()
        if isinstance(self.propensity, np.ndarray):
            state["propensity"] = np.asarray(self.propensity)
        return state

    def _set_state(self, arrays):
        if "propensity" in arrays:
            self.propensity = arrays.pop("propensity")
        super()._set_state(arrays)

    def _train_spec(self, X, scorer, objective, sample_weight, **run):
        """The scorer and objective, ``negatives`` drawn ``num_negatives_`` per positive, the
        sample weights (IPS) and the denoiser, on the settings resolved at fit."""
        config = self._config(num_negatives=self.num_negatives_, patience=self.patience, num_threads=self.num_threads,
                              **run)
        return TrainSpec(scorer=scorer, objective=objective, negatives=make_negative_sampler(self.negatives),
                         config=config, weights=sample_weight, denoiser=self.denoise)

    def _build_scorer(self, n_users, n_items, generator, X):  # no per-fit inputs
        return MFScorer(n_users, n_items, self.factors, generator, biases=self.biases,
                        sparse=self.optimizer_ == "sparse_adam", regularization=self.regularization_)

    fused_objectives = MFScorer.fused_objectives
    fused_denoisers = MFScorer.fused_denoisers

    def _fused_blockers(self, **inputs) -> list:
        if getattr(self.loss, "name", self.loss) == "nbpo" and self.denoise is not None:
            return ["the kernel trains NBPO (itself the noise model) without a denoiser"]
        return []

    def _auto_settings(self, X, optimizer):
        name = getattr(self.loss, "name", self.loss)
        settings = mf_auto_settings(X.nnz, optimizer, name)
        # pointwise losses learn "not clicked" from the sampled negatives: 4 per positive; UBPR
        # averages its pair terms over 4 (a lower-variance estimate than one pair)
        settings["num_negatives"] = 4 if name in _POINTWISE or name == "ubpr" else 1
        return settings


def mf_auto_settings(nnz: int, optimizer: str, loss: str = "bpr") -> dict:
    """The data-derived defaults of MF/BPR (chosen by ``benchmarks/defaults.py``; RESULTS.md).

    Per-sample SGD (the fused kernel): a budget of about 40M sample updates, spent as epochs
    ``clip(4e7 / nnz, 30, 100)`` at learning rate ``0.05 * clip(4e7 / (100 nnz), 1, 2)`` with a
    cosine decay: logs up to 400k interactions run 100 epochs and take up the rest of the budget
    with a larger step (0.1 at <= 200k; on ml-100k and lastfm-2k 0.1 x 100 epochs scored
    0.989-1.010x the validation NDCG@10 of 0.05 x 200 epochs, at half the fit), larger logs run
    fewer epochs at 0.05 (ml-1m: 50-57). L2 ``clip(0.03 * sqrt(1e5 / nnz), 0.01, 0.03)``
    (sparser, smaller logs want more; NBPO, whose flip model trains beside, takes this rule:
    BCE's larger L2 cost it 20% of clean validation). Adam (the autograd path: unbiased
    objectives, NBPO with a denoiser, GPU):
    learning rate 0.01, constant, L2 0.03, epochs ``clip(1e7 / nnz, 20, 100)``; batches of 8,192.

    By ``loss`` (its name): ``"bce"`` on the kernel takes more L2, ``clip(0.04 * sqrt(1e5 / nnz),
    0.01, 0.06)`` (validation NDCG@10 1.073x on ml-100k, 1.042x on ml-1m, 0.990x on lastfm-2k
    against BPR's rule; BPR's own best stays 0.03 on the small logs); the unbiased losses
    (``"relmf"``, ``"relmf_dr"``, ``"ubpr"``) take :func:`unbiased_auto_settings` on Adam.
    """
    nnz = max(int(nnz), 1)
    if optimizer == "fused_sgd":
        l2 = (0.04, 0.06) if loss == "bce" else (0.03, 0.03)
        return {"iterations": int(np.clip(round(4e7 / nnz), 30, 100)),
                "learning_rate": round(0.05 * float(np.clip(4e7 / (100 * nnz), 1.0, 2.0)), 4),
                "regularization": round(float(np.clip(l2[0] * np.sqrt(1e5 / nnz), 0.01, l2[1])), 4),
                "lr_schedule": "cosine", "batch_size": 8192}
    settings = {"iterations": int(np.clip(round(1e7 / nnz), 20, 100)), "learning_rate": 0.01, "regularization": 0.03,
                "lr_schedule": None, "batch_size": 8192}
    if loss in _UNBIASED:
        settings.update(unbiased_auto_settings(nnz))
    return settings


def unbiased_auto_settings(nnz: int) -> dict:
    """Adam-path defaults of ``loss="relmf"``/``"relmf_dr"``/``"ubpr"`` (``benchmarks/defaults.py
    --families unbiased``; RESULTS.md): L2 0.1; epochs ``clip(1e6 / nnz, 20, 100)`` (on a
    55k-click semi-synthetic log the best epochs were 7-25 and 100 overfitted; 5k-click logs
    peak at 50-100); batch ``clip(nnz // 10, 1024, 8192)``, so a small log still takes about ten
    Adam steps an epoch (at 8,192 a 1.5k-click log took one)."""
    nnz = max(int(nnz), 1)
    return {"regularization": 0.1, "iterations": int(np.clip(round(1e6 / nnz), 20, 100)),
            "batch_size": int(np.clip(nnz // 10, 1024, 8192))}


_UNBIASED = ("relmf", "ubpr", "relmf_dr")
#: MF's default ``eta`` (popularity propensity ``(n_i / max n) ** eta``) per unbiased loss: 0.25
#: for the pointwise ones (0.5 lost 20% on semi-Coat and Coat), 0.5 for UBPR (0.25 not measured)
UNBIASED_ETA = {"relmf": 0.25, "relmf_dr": 0.25, "ubpr": 0.5}
#: UBPR's default propensity floor (with the non-negative estimator)
UBPR_CLIP = 0.1
_POINTWISE = ("bce", "relmf", "relmf_dr", "nbpo")  # NBPO is pointwise (BPO); its authors draw 4 negatives
_ARRAY_MARK = _ARRAY_MARK_VALUE


class BPR(MF):
    """``MF(loss="bpr")`` under implicit's name: ``BPR(factors=64, iterations=100, random_state=0)``."""

    _parameter_constraints = {k: v for k, v in MF._parameter_constraints.items()
                              if k not in ("loss", "propensity", "eta", "clip", "negative_weight")}

    search_space = {"factors": ("int", 16, 256, "log"), "learning_rate": ("float", 1e-3, 0.1, "log"),
                    "regularization": ("float", 1e-6, 0.1, "log"), "num_negatives": ("int", 1, 16, "log")}

    def __init__(self, *, factors: int = 64, learning_rate: float | None = None, regularization: float | None = None,
                 iterations: int | None = None, batch_size: int | None = None, num_negatives: int | None = None,
                 negatives="uniform", optimizer: str = "auto", lr_schedule="auto", patience=None, biases: bool = False,
                 denoise=None, random_state=0, device="auto", num_threads: int = 0):
        super().__init__(factors=factors, learning_rate=learning_rate, regularization=regularization,
                         iterations=iterations, batch_size=batch_size, loss="bpr", num_negatives=num_negatives,
                         negatives=negatives, optimizer=optimizer, lr_schedule=lr_schedule, patience=patience,
                         biases=biases, denoise=denoise, random_state=random_state, device=device,
                         num_threads=num_threads)
