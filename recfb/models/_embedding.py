"""Shared machinery of embedding models trained by :mod:`recfb.train` (MF/BPR, CML, LightGCN):
parameter checks, the fit driver, validation for early stopping, fold-in of unseen users,
scoring by inner product or (negative squared) L2 distance, persistence."""
from __future__ import annotations

import numpy as np
import torch

from recfb.distributed import get_comm
from recfb.losses import Objective
from recfb.models.base import Recommender, neg_sqdist, neg_sqdist_rows
from recfb.train import TrainConfig, Trainer, TrainSpec
from recfb.train.loop import fused_problems, refuse_fused
from recfb.utils.device import resolve_device, seeded_rng
from recfb.utils.errors import DataError
from recfb.utils.params import Instance, Interval, Options
from recfb.utils.validation import check_csr, check_positive_int


def embedding_constraints() -> dict:
    """The parameter constraints the embedding models share (each adds its own)."""
    from recfb.denoise import Denoiser
    from recfb.losses import OBJECTIVES
    from recfb.losses.base import Objective
    from recfb.sampling import NEGATIVE_SAMPLERS, NegativeSampler
    from recfb.train.loop import OPTIMIZERS, SCHEDULES
    positive_int = Interval("int", 1, None)
    return {
        "factors": [positive_int],
        "learning_rate": [Interval("real", 0, None, closed="neither"), None],
        "regularization": [Interval("real", 0, None), None],
        "iterations": [positive_int, None],
        "batch_size": [positive_int, None],
        "loss": [Options(OBJECTIVES), Instance(Objective)],
        "num_negatives": [positive_int, None],
        "negatives": [Options(NEGATIVE_SAMPLERS), Instance(NegativeSampler)],
        "optimizer": [Options(("auto", *OPTIMIZERS))],
        "lr_schedule": [Options(("auto", *(s for s in SCHEDULES if s))), None],
        "patience": [positive_int, None],
        "denoise": [Instance(Denoiser), None],
        "random_state": [Interval("int", 0, None), None],
        "device": [Instance(str, torch.device), None],
        "num_threads": [Interval("int", 0, None)],
    }


class EmbeddingRecommender(Recommender):
    """Base for models with ``user_factors`` / ``item_factors``.

    Subclasses implement ``_train_spec(X, scorer, objective, sample_weight, show_progress, ...)``
    (what they train, in one place), ``_build_scorer(n_users, n_items, generator, X)``,
    ``_objective(X)`` and ``_auto_settings(X, optimizer)``, and may set ``metric = "l2"``
    (scores are ``-||u - v||^2``; FAISS uses L2). :meth:`fit` checks the input, resolves the
    derived settings, builds the scorer and runs the spec on :class:`recfb.train.Trainer`.
    """

    needs_fitted_users = True
    supports_fold_in = True
    metric = "ip"

    # ------------------------------------------------------------------ fit
    def _check_common(self):
        self._validate_params()

    def fit(self, user_items, show_progress: bool = True, *, valid_items=None, sample_weight=None,
            callbacks=(), checkpoint=None, resume: bool = False, time_limit: float | None = None,
            valid_metric=None, callback=None, distributed: bool | None = False, _inputs: dict | None = None):
        """Train on ``user_items`` (CSR users x items; every stored entry is a positive).

        Parameters
        ----------
        valid_items : csr_matrix, optional
            Held-out positives (same shape); NDCG@10 on them drives early stopping
            (``patience``) and the best epoch's weights are restored.
        valid_metric : callable(model) -> float, optional
            Replaces NDCG@10 on ``valid_items`` as the per-epoch validation score (higher is
            better; it sees the model with the epoch's factors exported), e.g. the tuning
            metric of :func:`recfb.tune.search`. Needs ``valid_items``.
        sample_weight : array (nnz,), optional
            Per-interaction weights in CSR order of ``user_items`` (IPS, confidence).
        callbacks : list of callable(epoch, logs)
        callback : callable(epoch, seconds, loss), optional
            implicit's ``fit(..., callback=)``: called after every epoch with implicit ALS's
            arguments (1-based epoch, the epoch's seconds, its mean loss).
        checkpoint : path, optional
            Write a checkpoint (arrays + JSON) after every epoch; with ``resume=True`` an
            existing one is continued, ending exactly where an uninterrupted run would.
        time_limit : float, optional
            Seconds of training (summed over resumed runs); training stops after the epoch
            that passes it, keeping the best validated weights. ``stopped_by_`` says why
            training ended (``"epochs"``, ``"patience"`` or ``"time_limit"``).
        distributed : bool or None, default False
            Train in several processes on torch.distributed (:mod:`recfb.distributed`; launch
            with ``torchrun``): each rank trains its shard of every epoch, gradients are
            averaged, every rank ends with the same weights, rank 0 validates and writes the
            checkpoint. ``None``: distributed when a process group is initialised. The fused
            kernel is single-process: distributed training takes the autograd path (Adam).

        A subclass passes its own per-fit inputs (CML's item features) as ``_inputs``: they
        reach :meth:`_build_scorer` and :meth:`_fused_blockers` as arguments and are never
        kept on the instance.
        """
        inputs = _inputs or {}
        self._check_common()
        if callback is not None:
            callbacks = [*callbacks, lambda epoch, logs: callback(epoch, logs["seconds"], logs["loss"])]
        if sample_weight is None:  # check_csr removes stored zeros: no matrix of zeros "fits"
            X = self._validate_fit_input(user_items)
        else:  # weights follow the entries through sorting and the removal of stored zeros
            X, sample_weight = check_csr(user_items, "user_items", allow_empty=False, weights=sample_weight)
            self.n_users_, self.n_items_ = X.shape
            if not np.all(np.isfinite(sample_weight)) or sample_weight.min() < 0:
                raise DataError("sample_weight must be finite and >= 0.")
        if valid_items is not None:
            valid_items = check_csr(valid_items, "valid_items", n_items=X.shape[1], n_rows=X.shape[0])
        comm = get_comm(distributed)  # a no-op Comm for one process
        objective = self._resolve_fit(X, comm, inputs)
        seed = 0 if self.random_state is None else int(self.random_state)
        gen = torch.Generator().manual_seed(seed)
        # modules' default initialisers draw from the global RNG: seed it for them, and give the
        # caller's state back afterwards
        with seeded_rng(seed, "cpu"):
            scorer = self._build_scorer(X.shape[0], X.shape[1], gen, X, **inputs).to(self.device_)
        spec = self._train_spec(X, scorer, objective, sample_weight, show_progress=show_progress,
                                checkpoint=None if checkpoint is None else str(checkpoint), resume=resume,
                                time_limit=time_limit)
        validate = None if valid_items is None else self._make_validator(X, valid_items, valid_metric)
        trainer = Trainer(spec, self.device_, validate=validate, callbacks=callbacks, settings=self.get_params(),
                          comm=comm)
        trainer.fit(X)
        self.scorer_ = scorer
        self.history_ = trainer.history
        self.best_epoch_ = trainer.best_epoch_
        self.stopped_by_ = trainer.stopped_by
        self._export(scorer)
        return self

    def derived_params(self, user_items, **inputs) -> dict:
        """The settings ``fit`` would derive for the parameters left at None (``iterations``,
        ``learning_rate``, ``regularization``, ``num_negatives``, ``batch_size``), on the
        optimizer ``"auto"`` would pick; worked out on a copy, so this model stays unfitted."""
        import copy
        X = check_csr(user_items, "user_items", allow_empty=False)
        probe = copy.deepcopy(self)
        probe._check_common()
        probe._resolve_fit(X, None, inputs)  # the code fit runs: the values are fit's own
        return {name: getattr(probe, name + "_") for name in ("iterations", "learning_rate", "regularization",
                                                              "num_negatives", "batch_size")
                if getattr(self, name, 0) is None}

    #: objective classes the scorer's compiled per-sample SGD kernel trains (empty: no kernel)
    fused_objectives: tuple = ()
    #: denoiser classes the kernel applies per sample (MF: R-CE, T-CE, PLD)
    fused_denoisers: tuple = ()

    def _fused_blockers(self, **inputs) -> list:
        """The model's own reasons why its kernel cannot train this fit (CML: item features)."""
        return []

    def _train_spec(self, X, scorer, objective, sample_weight, **run) -> TrainSpec:  # pragma: no cover
        """What this model trains: its :class:`~recfb.train.TrainSpec` (``run``: the fit's
        progress, checkpoint, resume and time-limit settings for :meth:`_config`)."""
        raise NotImplementedError

    def _config(self, *, num_negatives, patience, num_threads=0, **run) -> TrainConfig:
        """The loop settings of this fit from the resolved settings (``iterations_`` ...)."""
        return TrainConfig(epochs=self.iterations_, batch_size=self.batch_size_, learning_rate=self.learning_rate_,
                           optimizer=self.optimizer_, lr_schedule=self.lr_schedule_, num_negatives=num_negatives,
                           patience=patience, seed=self.random_state, num_threads=num_threads, **run)

    def _resolve_fit(self, X, comm, inputs):
        """``device_``, the objective, ``optimizer_`` and the derived settings of a fit on ``X``
        (:meth:`_resolve_optimizer`, :meth:`_resolve_settings`); returns the objective."""
        self.device_ = resolve_device(self.device)
        objective = self._objective(X)
        self.optimizer_ = self._resolve_optimizer(objective, self.denoise, comm, inputs)
        self._resolve_settings(X)
        return objective

    def _resolve_optimizer(self, objective, denoiser, comm=None, inputs=None) -> str:
        """``"auto"``: the compiled per-sample SGD kernel where it applies (MF/BPR with the BPR or
        BCE objective, CML with its WARP hinge; no denoiser but MF's R-CE, T-CE or PLD, CPU, one
        process), Adam everywhere else; any other name as given (``"fused_sgd"`` where it does not apply raises, naming why)."""
        if self.optimizer not in ("auto", "fused_sgd"):
            return self.optimizer
        extra = list(self._fused_blockers(**(inputs or {})))
        if comm is not None and comm.enabled:
            extra.append("the kernel is single-process (distributed training averages autograd gradients)")
        problems = fused_problems(self.fused_objectives, objective, denoiser, self.device_,
                                  type(self).__name__, extra=extra, kernel_denoisers=self.fused_denoisers)
        if self.optimizer == "fused_sgd":
            refuse_fused(problems)
        return "adam" if problems else "fused_sgd"

    def _resolve_settings(self, X) -> None:
        """The settings training uses, as fitted attributes: ``iterations_``, ``learning_rate_``,
        ``regularization_``, ``num_negatives_``, ``lr_schedule_``, ``batch_size_``. A parameter
        left at None (or ``"auto"`` for the schedule) is derived from the data and the chosen optimizer by :meth:`_auto_settings`;
        an explicit value is used as given."""
        auto = self._auto_settings(X, self.optimizer_)
        for name in ("iterations", "learning_rate", "regularization"):
            value = getattr(self, name)
            setattr(self, name + "_", auto[name] if value is None else value)
        self.num_negatives_ = auto.get("num_negatives", 1) if self.num_negatives is None else self.num_negatives
        self.lr_schedule_ = auto["lr_schedule"] if self.lr_schedule == "auto" else self.lr_schedule
        self.batch_size_ = auto.get("batch_size") if self.batch_size is None else self.batch_size
        check_positive_int(self.iterations_, "iterations")
        check_positive_int(self.batch_size_, "batch_size")

    def _auto_settings(self, X, optimizer: str) -> dict:  # pragma: no cover - every model defines it
        raise NotImplementedError

    def _objective(self, X) -> Objective:  # pragma: no cover
        raise NotImplementedError

    def _build_scorer(self, n_users, n_items, generator, X, **inputs):  # pragma: no cover
        raise NotImplementedError

    def _export(self, scorer) -> None:
        with torch.no_grad():
            u, i = scorer.export()
        self.user_factors = np.ascontiguousarray(u, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(i, dtype=np.float32)

    def _make_validator(self, X, valid_items, valid_metric=None):
        from recfb.evaluation import ranking_metrics  # evaluation depends only on utils

        def validate(scorer):
            self._export(scorer)
            self.n_users_, self.n_items_ = X.shape
            if valid_metric is not None:
                return valid_metric(self)
            return ranking_metrics(self, X, valid_items, k=10)["ndcg@10"]
        return validate

    # ------------------------------------------------------------------ scoring
    def _score_vectors(self, user_vectors: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return neg_sqdist(user_vectors, self.item_factors)
        return user_vectors @ self.item_factors.T

    def _score(self, userids, user_items):
        return self._score_vectors(self.user_factors[userids])

    def _score_call(self, userids, user_items, call):
        if call.recalculate:
            return self._score_vectors(self.recalculate_user(userids, user_items))
        return self._score(userids, user_items)

    def _similar_scores(self, itemids):
        if self.metric == "l2":
            return neg_sqdist_rows(self.item_factors, itemids)
        return super()._similar_scores(itemids)

    def recalculate_user(self, userid, user_items, steps: int = 50, learning_rate: float = 0.05) -> np.ndarray:
        """Fold in users (seen or not at fit) from their rows: item vectors stay fixed and the
        user vectors are fitted by ``steps`` full-batch Adam steps on the model's objective
        against every item the row does *not* contain (for inner-product models without
        biases this is a smooth surrogate of the training loss). Returns (n, factors)."""
        X = check_csr(user_items, "user_items", n_items=self.n_items_)
        V = torch.as_tensor(self.item_factors)
        n = X.shape[0]
        gen = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        init = torch.as_tensor(self.user_factors.mean(axis=0, keepdims=True)).repeat(n, 1)
        U = (init + 0.01 * torch.randn(n, V.shape[1], generator=gen)).requires_grad_(True)
        Y = torch.as_tensor(X.toarray() > 0)
        if not Y.any():
            return init.numpy().astype(np.float32)
        opt = torch.optim.Adam([U], lr=learning_rate)
        for _ in range(steps):  # optimisation steps, not a loop over users or interactions
            if self.metric == "l2":
                s = -(torch.cdist(U, V) ** 2)
            else:
                s = U @ V.T
            pos = torch.where(Y, s, torch.full_like(s, float("nan")))
            # pairwise BPR between every positive and every negative of the row, averaged
            pos_mean = torch.nanmean(pos, dim=1, keepdim=True)
            loss = -torch.nn.functional.logsigmoid(pos_mean - s)[~Y].mean() + self.regularization_ * U.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if self.metric == "l2":
                with torch.no_grad():
                    U.data = torch.renorm(U.data, 2, 0, 1.0)
        return U.detach().numpy().astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def _get_state(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_state(self, arrays):
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]


