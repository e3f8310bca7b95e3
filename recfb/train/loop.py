"""The epoch loop every trained model shares (:class:`EpochLoop`), and its pair trainer
(:class:`Trainer`) for MF/BPR, CML and LightGCN.

A model describes its run as a :class:`recfb.train.spec.TrainSpec` (a :class:`Scorer`, an
objective from ``recfb.losses``, a negative sampler from ``recfb.sampling``, optional
per-interaction weights from ``recfb.debias`` and an optional denoiser from
``recfb.denoise``); a batch's loss is computed in one place, :mod:`recfb.train.step`. The loop
provides the seeded epoch order, optimisers and schedules, early stopping with the best
weights restored, callbacks, checkpoint/resume (arrays + JSON, no pickle), a tqdm bar, and
multi-process training through a :mod:`recfb.distributed` communicator (each rank trains its
shard of the epoch's permutation; gradients are averaged; rank 0 validates, decides and
writes).

Checkpoint state (format ``recfb-checkpoint``, version :data:`CHECKPOINT_VERSION`): the
JSON metadata holds ``format``, ``format_version``, ``fingerprint`` (named parts: data
hashes, model parameters, scorer/objective/sampler/denoiser descriptions, loop settings,
world size) and ``tree`` (the structure of the payload); the arrays hold the payload's
tensors: ``scorer`` (the module's state dict), ``optimizers``, ``schedulers``, ``generator``
(the loop's torch.Generator state), ``torch_rng`` (global RNG, for dropout), ``cuda_rng``
(on CUDA), ``state`` (epoch, step, best score/epoch/weights, bad epochs, seconds), ``history``
(per-epoch logs), and the trainer's own: ``objective`` and ``denoiser`` state dicts (pairs).
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recfb.train.step import PairStep
from recfb.utils.container import read_container, write_container
from recfb.utils.device import seeded_rng
from recfb.utils.errors import FormatError
from recfb.utils.state import flatten_state, unflatten_state

CHECKPOINT_FORMAT = "recfb-checkpoint"
#: 2: the fingerprint is a dict of named parts, compared part by part; 3: the pipeline of
#: recfb.train.step (no positive sampler state; the world size is a part)
CHECKPOINT_VERSION = 3
OPTIMIZERS = ("adam", "adagrad", "sgd", "sparse_adam", "fused_sgd")
SCHEDULES = (None, "cosine", "step", "exponential")


class TrainingInterrupted(RuntimeError):
    """Raised by a callback (or the user) to stop training; the last checkpoint stays."""


class Scorer(torch.nn.Module):
    """What the loop needs from a model's module.

    - ``batch_scores(users (B,), pos (B,), neg (B, n)) -> (pos_scores (B,), neg_scores (B, n))``
    - ``regularization(users, pos, neg) -> scalar`` (0 by default)
    - ``post_step()``: projections after each optimiser step (CML's unit ball)
    - ``export() -> (user_vectors, item_vectors)`` float32 numpy, for ``recommend``/FAISS
    - ``sparse_parameters()``: parameters with sparse gradients (for ``sparse_adam``)
    - optionally ``fused_epoch(users, items, order, negatives, weights, lr, objective, num_threads,
      block_size, denoiser=None)``: one compiled per-sample SGD epoch in place
      (``optimizer="fused_sgd"``), for the objective classes in ``fused_objectives`` and the
      denoiser classes in ``fused_denoisers``
    """

    def batch_scores(self, users, pos, neg):  # pragma: no cover
        raise NotImplementedError

    def regularization(self, users, pos, neg):
        return torch.zeros((), device=users.device)

    #: objective classes ``fused_epoch`` implements (the compiled per-sample SGD kernel); none by default
    fused_objectives: tuple = ()
    #: denoiser classes ``fused_epoch`` implements per sample; none by default
    fused_denoisers: tuple = ()

    def fused_blockers(self) -> list:
        """This scorer's own reasons why its kernel cannot train it (e.g. CML's feature network)."""
        return []

    def post_step(self) -> None:
        pass

    def export(self):  # pragma: no cover
        raise NotImplementedError

    def sparse_parameters(self) -> list:
        return []


@dataclass
class TrainConfig:
    """Settings of one training run (see the model classes for defaults)."""
    epochs: int = 20
    batch_size: int = 8192
    learning_rate: float = 0.01
    optimizer: str = "adam"
    lr_schedule: str | None = None
    num_negatives: int = 1
    patience: int | None = None
    eval_every: int = 1
    seed: int | None = 0
    show_progress: bool = True
    checkpoint: str | None = None
    checkpoint_every: int = 1
    resume: bool = False
    num_threads: int = 0
    time_limit: float | None = None
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "num_negatives", "eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} == {v!r}, must be an int >= 1.")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate == {self.learning_rate!r}, must be > 0.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer == {self.optimizer!r}, must be one of {OPTIMIZERS}.")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule == {self.lr_schedule!r}, must be one of {SCHEDULES}.")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"patience == {self.patience!r}, must be None or an int >= 1.")
        if self.time_limit is not None and not (isinstance(self.time_limit, (int, float)) and self.time_limit > 0):
            raise ValueError(f"time_limit == {self.time_limit!r}, must be None or seconds > 0.")


class EpochLoop:
    """The epoch driver every trained model shares: seeded generator, optimisers and
    schedules, the NaN guard, validation every ``eval_every`` epochs with early stopping and
    the best weights restored, a wall-clock ``time_limit``, callbacks, checkpoint/resume
    (arrays + JSON, no pickle; the global torch RNG that dropout draws from included) and a
    tqdm bar.

    Subclasses say what an epoch is: :meth:`_setup` (once, before the first epoch or the
    resumed one), :meth:`_run_epoch` (returns the summed loss and the number of training
    examples it covered), and optionally :meth:`_optimizers`, :meth:`_extra_state` /
    :meth:`_load_extra_state` (their own checkpointed state) and :meth:`_fingerprint`.
    :class:`Trainer` (pairs of user and item) and
    :class:`recfb.train.sequence.SequenceTrainer` (batches of sequences) are the two.
    """

    def __init__(self, module: torch.nn.Module, config: TrainConfig, device, validate=None, callbacks=(),
                 comm=None):
        config.validate()
        self.module, self.config, self.device = module, config, torch.device(device)
        self.validate_fn = validate
        self.callbacks = list(callbacks)
        self.history: list[dict] = []
        # a recfb.distributed.Comm; None (or world size 1) is one process
        self.comm = comm if comm is not None and comm.enabled else None

    @property
    def is_main(self) -> bool:
        return self.comm is None or self.comm.is_main

    def _shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's part of the epoch's permutation (all ranks draw the same one)."""
        if self.comm is None:
            return order
        return torch.as_tensor(self.comm.shard(order.cpu().numpy()), device=order.device)

    def _optimizer_step(self, loss: torch.Tensor, opts: list) -> None:
        """Backward, gradients averaged over the ranks (when distributed), one optimiser step."""
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        if self.comm is not None:
            self.comm.all_reduce_mean_([p.grad for o in opts for g in o.param_groups for p in g["params"]
                                        if p.grad is not None])
        for o in opts:
            o.step()

    # ------------------------------------------------------------------ hooks
    def _setup(self, gen: torch.Generator) -> None:
        pass

    def _parameters(self) -> list:
        return [p for p in self.module.parameters() if p.requires_grad]

    def _optimizers(self) -> list:
        cfg = self.config
        params = self._parameters()
        if cfg.optimizer == "sparse_adam":
            sparse_ids = {id(p) for p in self.module.sparse_parameters()}
            sparse = [p for p in params if id(p) in sparse_ids]
            dense = [p for p in params if id(p) not in sparse_ids]
            if not sparse:
                raise ValueError("optimizer='sparse_adam' needs a scorer with sparse embeddings.")
            opts = [torch.optim.SparseAdam(sparse, lr=cfg.learning_rate)]
            if dense:
                opts.append(torch.optim.Adam(dense, lr=cfg.learning_rate))
            return opts
        if cfg.optimizer == "adam":
            # torch's fused Adam: one pass over each tensor instead of ~10, the same update rule
            # (figures: benchmarks/RESULTS.md, "Why the code is shaped this way")
            fused = self.device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point and not p.is_sparse
                                                                for p in params)
            return [torch.optim.Adam(params, lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                     fused=fused or None)]
        cls = {"adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}[cfg.optimizer]
        return [cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)]

    def _schedulers(self, opts):
        cfg = self.config
        if cfg.lr_schedule is None or not opts:
            return []
        make = {
            "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cfg.epochs),
            "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=max(1, cfg.epochs // 3), gamma=0.1),
            "exponential": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.95),
        }[cfg.lr_schedule]
        return [make(o) for o in opts]

    def _run_epoch(self, epoch: int, gen: torch.Generator, state: dict, opts: list) -> tuple[float, int]:
        raise NotImplementedError  # pragma: no cover

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, payload: dict) -> None:
        pass

    def _fingerprint(self) -> dict:
        """Named parts (JSON values) that tie a checkpoint to its data and settings; a resumed
        run must match every one."""
        raise NotImplementedError  # pragma: no cover

    # ------------------------------------------------------------------ the loop
    def _run(self):
        # the global RNG (dropout) is seeded for the run and restored afterwards, so training
        # is reproducible without changing the caller's random state
        with seeded_rng(self.config.seed, self.device):
            return self._loop()

    def _loop(self):
        cfg, dev = self.config, self.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(0 if cfg.seed is None else int(cfg.seed))
        if cfg.seed is None:
            gen.seed()
        self._setup(gen)
        opts = self._optimizers()
        scheds = self._schedulers(opts)
        state = {"epoch": 0, "step": 0, "best_score": None, "best_epoch": None, "bad_epochs": 0, "best_weights": None,
                 "seconds": 0.0}
        fingerprint = {**_fingerprint_parts(self._fingerprint()),
                       "world_size": 1 if self.comm is None else int(self.comm.world_size)}
        if cfg.checkpoint and cfg.resume:
            if Path(cfg.checkpoint).exists():
                self._load_checkpoint(cfg.checkpoint, fingerprint, opts, scheds, gen, state)
            else:
                warnings.warn(f"resume=True but there is no checkpoint at {cfg.checkpoint}; training from "
                              "scratch (and writing it there).", stacklevel=2)

        bar = tqdm(total=cfg.epochs, initial=state["epoch"], disable=not (cfg.show_progress and self.is_main),
                   desc="epochs", leave=False)
        stop = False
        self.stopped_by = "epochs"
        while state["epoch"] < cfg.epochs and not stop:
            epoch = state["epoch"]
            t0 = time.perf_counter()
            self.module.train()
            total, count = self._run_epoch(epoch, gen, state, opts)
            for s in scheds:
                s.step()
            if self.comm is not None:  # the epoch's loss over every rank's shard
                sums = torch.tensor([float(total), float(count)], dtype=torch.float64)
                self.comm.all_reduce_mean_([sums])
                total, count = float(sums[0]), float(sums[1])
            mean_loss = float(total) / max(count, 1)
            if not np.isfinite(mean_loss):
                raise FloatingPointError(
                    f"training loss became {mean_loss} in epoch {epoch + 1}; the learning rate "
                    f"({cfg.learning_rate}) is probably too high, or the input has extreme weights. "
                    "Nothing was saved.")
            seconds = time.perf_counter() - t0
            lr_now = opts[0].param_groups[0]["lr"] if opts else cfg.learning_rate * _schedule_factor(cfg, epoch)
            logs = {"epoch": epoch + 1, "loss": mean_loss, "lr": lr_now, "seconds": seconds,
                    "examples_per_s": count / max(seconds, 1e-9)}
            if self.validate_fn is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                self.module.eval()
                score = None
                if self.is_main:  # rank 0 validates; every rank takes its decision
                    with torch.no_grad():
                        score = float(self.validate_fn(self.module))
                if self.comm is not None:
                    score = self.comm.broadcast(score, src=0)
                logs["valid"] = score
                if state["best_score"] is None or score > state["best_score"]:
                    state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0,
                                 best_weights=copy.deepcopy(self.module.state_dict()))
                else:
                    state["bad_epochs"] += 1
                    if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                        stop, self.stopped_by = True, "patience"
            state["epoch"] = epoch + 1
            state["seconds"] = state.get("seconds", 0.0) + time.perf_counter() - t0
            if cfg.time_limit is not None and state["seconds"] > cfg.time_limit and state["epoch"] < cfg.epochs:
                stop, self.stopped_by = True, "time_limit"
            if self.comm is not None:  # rank 0's clock decides for all
                stop, self.stopped_by = self.comm.broadcast((stop, self.stopped_by), src=0)
            self.history.append(logs)
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in logs.items() if k in ("loss", "valid")})
            if cfg.checkpoint and (state["epoch"] % cfg.checkpoint_every == 0 or state["epoch"] == cfg.epochs or stop):
                if self.is_main:
                    self._save_checkpoint(cfg.checkpoint, fingerprint, opts, scheds, gen, state)
                if self.comm is not None:  # no rank runs ahead of the checkpoint rank 0 is writing
                    self.comm.barrier()
            for cb in self.callbacks:
                cb(epoch + 1, logs)
        bar.close()
        if state["best_weights"] is not None:
            self.module.load_state_dict(state["best_weights"])
        self.best_epoch_ = state["best_epoch"]
        self.best_score_ = state["best_score"]
        return self

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, path, fingerprint, opts, scheds, gen, state):
        payload = {
            "scorer": self.module.state_dict(),
            "optimizers": [o.state_dict() for o in opts],
            "schedulers": [s.state_dict() for s in scheds],
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "state": state,
            "history": self.history,
        }
        if self.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        payload.update(self._extra_state())
        write_checkpoint(path, fingerprint, payload)

    def _load_checkpoint(self, path, fingerprint, opts, scheds, gen, state):
        payload = read_checkpoint(path, fingerprint)
        _check_tensor_shapes(path, "scorer", self.module.state_dict(), payload.get("scorer"))
        self.module.load_state_dict(payload["scorer"])
        for o, s in zip(opts, payload["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(scheds, payload["schedulers"]):
            sch.load_state_dict(s)
        gen.set_state(payload["generator"])
        if payload.get("torch_rng") is not None:
            torch.set_rng_state(payload["torch_rng"])
        if payload.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(payload["cuda_rng"], self.device)
        state.update(payload["state"])
        self.history = payload["history"]
        self._load_extra_state(payload)


class Trainer(EpochLoop):
    """Runs a :class:`~recfb.train.spec.TrainSpec`: mini-batch epochs over the positives of
    ``X``, each batch's loss from :class:`~recfb.train.step.PairStep` (or one compiled epoch
    of the scorer's kernel with ``optimizer="fused_sgd"``).

    Parameters
    ----------
    spec : TrainSpec
    device : torch.device
    validate : callable(scorer) -> float, optional
        Higher is better; drives early stopping (``config.patience``) and best-weight restore.
    callbacks : list of callable(epoch, logs), optional
        Called after every epoch with that epoch's logs; may raise TrainingInterrupted.
    settings : dict, optional
        The model's parameters (``get_params()``); a checkpoint of other settings is refused.
    comm : recfb.distributed.Comm, optional
        Several processes: each trains its shard of every epoch (see :class:`EpochLoop`).
    """

    def __init__(self, spec, device, validate=None, callbacks=(), settings=None, comm=None):
        super().__init__(spec.scorer, spec.config, device, validate=validate, callbacks=callbacks, comm=comm)
        self.spec = spec
        self.scorer, self.objective, self.negatives = spec.scorer, spec.objective, spec.negatives
        self.weights, self.denoiser = spec.weights, spec.denoiser
        self.settings = settings  # the model's parameters: part of the checkpoint fingerprint
        if self.comm is not None and self.config.optimizer in ("fused_sgd", "sparse_adam"):
            raise ValueError(f"optimizer={self.config.optimizer!r} is single-process; distributed training "
                             "averages dense gradients (use optimizer='adam' or 'auto').")

    # ------------------------------------------------------------------ hooks
    def _parameters(self):
        return super()._parameters() + [p for p in self.objective.parameters() if p.requires_grad]

    def _optimizers(self):
        if self.config.optimizer == "fused_sgd":
            return []
        return super()._optimizers()

    def _fingerprint(self) -> dict:
        return _fingerprint(self._X, self.config, weights=self.weights, model=self.settings, scorer=self.scorer,
                            objective=self.objective, negatives=self.negatives, denoiser=self.denoiser)

    def _setup(self, gen):
        cfg, dev, X = self.config, self.device, self._X
        self.negatives.setup(X, dev)
        self.objective.to(dev)
        self.objective.setup(X, dev)
        if self.denoiser is not None:
            per_rank = -(-self._users.numel() // (1 if self.comm is None else self.comm.world_size))
            steps_per_epoch = -(-per_rank // cfg.batch_size)
            self.denoiser.setup(self._users, self._items, X.shape[0], X.shape[1],
                                total_steps=cfg.epochs * steps_per_epoch)
        if cfg.optimizer == "fused_sgd":
            self._check_fused()

    def _extra_state(self):
        return {"objective": self.objective.state_dict(),
                "denoiser": None if self.denoiser is None else self.denoiser.state_dict()}

    def _load_extra_state(self, payload):
        self.objective.load_state_dict(payload.get("objective") or {})
        if self.denoiser is not None and payload["denoiser"] is not None:
            self.denoiser.load_state_dict(payload["denoiser"])

    # ------------------------------------------------------------------ main loop
    def fit(self, X: sp.csr_matrix):
        coo = X.tocoo()
        self._X = X
        self._users = torch.as_tensor(coo.row.astype(np.int64), device=self.device)
        self._items = torch.as_tensor(coo.col.astype(np.int64), device=self.device)
        self._weights = None if self.weights is None else torch.as_tensor(np.asarray(self.weights, np.float32),
                                                                          device=self.device)
        self.step = PairStep(self.scorer, self.objective, self.negatives, users=self._users, items=self._items,
                             num_negatives=self.config.num_negatives, weights=self._weights, denoiser=self.denoiser)
        return self._run()

    def _run_epoch(self, epoch, gen, state, opts):
        cfg, dev = self.config, self.device
        users, items, weights = self._users, self._items, self._weights
        epoch_order = torch.randperm(users.numel(), generator=gen, device=gen.device)
        order = self._shard(epoch_order)
        if self.comm is not None:  # the padded global order whose stride rows are the shards
            world = self.comm.world_size
            padded = torch.as_tensor(np.resize(epoch_order.cpu().numpy(), order.numel() * world), device=dev)
        if cfg.optimizer == "fused_sgd":
            negs = self.negatives.sample(users[order], cfg.num_negatives, gen)
            lr = cfg.learning_rate * _schedule_factor(cfg, epoch)
            total = torch.zeros((), device=dev)
            # a denoiser here is one the kernel implements (R-CE per sample, T-CE per block, PLD
            # per sample from its draws, at most kernel_span samples per call)
            span = max(1, getattr(self.denoiser, "kernel_span", None) or order.numel())
            for lo in range(0, order.numel(), span):
                part = order[lo:lo + span]
                extra = {} if self.denoiser is None else {
                    "denoiser": self.denoiser, "step": state["step"] + lo // cfg.batch_size,
                    "inputs": self.denoiser.kernel_inputs(users, part, self.negatives, gen, epoch)}
                total += self.scorer.fused_epoch(users, items, part, negs[lo:lo + span], weights, lr, self.objective,
                                                 cfg.num_threads, cfg.batch_size, **extra)
            state["step"] += -(-order.numel() // cfg.batch_size)  # the blocks of batch_size, as the autograd steps
            return float(total), order.numel()
        total = torch.zeros((), device=dev)
        for start in range(0, order.numel(), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if self.denoiser is not None:
                idx = self.denoiser.resample(idx, self.step, gen, epoch, state["step"])
            if self.comm is None:
                batch = self.step.sample(idx, gen, state["step"])
            else:  # the global batch's negatives from the shared generator, this rank's rows of them
                batch = self.step.sample_shard(idx, padded[start * world:(start + idx.numel()) * world], gen,
                                               state["step"], self.comm.rank, world)
            loss, _ = self.step.loss(batch)
            self._optimizer_step(loss, opts)
            self.scorer.post_step()
            total += loss.detach() * idx.numel()
            state["step"] += 1
        return float(total), order.numel()

    def _check_fused(self):
        problems = fused_problems(getattr(self.scorer, "fused_objectives", ()), self.objective, self.denoiser,
                                  self.device, type(self.scorer).__name__, extra=self.scorer.fused_blockers(),
                                  kernel_denoisers=getattr(self.scorer, "fused_denoisers", ()))
        refuse_fused(problems)


def refuse_fused(problems: list) -> None:
    """``optimizer="fused_sgd"`` asked where the kernel does not apply: a ValueError naming why."""
    if problems:
        raise ValueError("optimizer='fused_sgd' cannot be used here: " + "; ".join(problems)
                         + ". Use optimizer='adam' (or 'auto', which picks the fused kernel only where it applies).")


def fused_problems(kernel_objectives, objective, denoiser, device, model_name: str = "this model",
                   extra=(), kernel_denoisers=()) -> list:
    """Why the compiled per-sample SGD kernel cannot train this combination (empty: it can).

    ``kernel_objectives`` are the objective classes the model's kernel implements (empty: it
    has none; MF's trains BPR and BCE, CML's its WARP hinge); ``kernel_denoisers`` the
    denoiser classes it implements per sample (MF's: R-CE, T-CE, PLD); ``extra`` are the model's own
    reasons (e.g. CML with item features). ``optimizer="auto"`` takes the kernel exactly when
    this list is empty, and ``optimizer="fused_sgd"`` refuses with these reasons otherwise."""
    problems = []
    if not kernel_objectives:
        problems.append(f"{model_name} has no fused kernel (MF, BPR and CML have)")
    elif type(objective) not in tuple(kernel_objectives):
        names = " or ".join(repr(getattr(o, "name", o.__name__)) for o in kernel_objectives)
        problems.append(f"the objective is {getattr(objective, 'name', objective)!r}, not {names}")
    problems.extend(extra)
    if denoiser is not None and type(denoiser) not in tuple(kernel_denoisers):
        problems.append(f"a denoiser ({type(denoiser).__name__}) needs per-batch losses"
                        + (f"; the kernel implements {', '.join(d.__name__ for d in kernel_denoisers)} only"
                           if kernel_denoisers else ""))
    if torch.device(device).type != "cpu":
        problems.append("the fused kernel runs on CPU")
    return problems


def write_checkpoint(path, fingerprint, payload: dict) -> None:
    """Write a nested dict of tensors/arrays/JSON values in recfb's container (npz + JSON,
    sha256 per array, :mod:`recfb.utils.container`), atomically (never pickled; a failed write
    leaves no temporary file); ``fingerprint`` (a dict of named parts, see :func:`_fingerprint`)
    ties it to the data and settings."""
    arrays, tree = flatten_state(payload)
    write_container(path, arrays, {"fingerprint": _fingerprint_parts(fingerprint), "tree": tree},
                    CHECKPOINT_FORMAT, CHECKPOINT_VERSION)


def read_checkpoint(path, fingerprint) -> dict:
    """Read what :func:`write_checkpoint` wrote (sizes and checksums verified); clear errors for
    truncated or damaged files, other versions and other data or settings (naming each part
    that differs)."""
    if not Path(path).is_file():
        raise FormatError(f"{path} is not a readable recfb checkpoint: no such file.")
    arrays, meta = read_container(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "recfb checkpoint",
                                  min_version=CHECKPOINT_VERSION)
    stored = meta.get("fingerprint")
    if not isinstance(stored, dict):
        raise FormatError(f"{path}: the checkpoint's metadata records no fingerprint of what it was trained on; "
                          "delete it or set resume=False.")
    differs = _fingerprint_differences(stored, _fingerprint_parts(fingerprint))
    if differs:
        raise FormatError(f"{path} was written for other data or settings: " + "; ".join(differs)
                          + ". Delete it or set resume=False.")
    try:
        return unflatten_state(arrays, meta["tree"])
    except Exception as exc:
        raise FormatError(f"{path}: the checkpoint's state does not parse ({type(exc).__name__}: {exc}).") from None


def _check_tensor_shapes(path, what: str, current: dict, stored) -> None:
    """A clear error, instead of torch's, when a checkpoint's tensors are not this module's."""
    if not isinstance(stored, dict):
        raise FormatError(f"{path}: the checkpoint has no {what} state.")
    missing, extra = sorted(set(current) - set(stored)), sorted(set(stored) - set(current))
    if missing or extra:
        raise FormatError(f"{path}: the checkpoint's {what} has tensors {sorted(stored)}, this model has "
                          f"{sorted(current)} (e.g. biases differ); delete it or set resume=False.")
    for name, tensor in current.items():
        got = stored[name]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(tensor.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise FormatError(f"{path}: {what} tensor {name!r} has shape {shape} in the checkpoint, "
                              f"{tuple(tensor.shape)} in this model (e.g. factors differ); delete it or set "
                              "resume=False.")


def _schedule_factor(cfg: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based) for the fused path, matching torch's
    CosineAnnealingLR / StepLR(gamma=0.1) / ExponentialLR(gamma=0.95) used by the others."""
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + np.cos(np.pi * epoch / cfg.epochs))
    if cfg.lr_schedule == "step":
        return 0.1 ** (epoch // max(1, cfg.epochs // 3))
    if cfg.lr_schedule == "exponential":
        return 0.95 ** epoch
    return 1.0


def array_digest(a) -> str:
    """A fast full hash of an array's dtype, shape and bytes (blake2b: ~1 GB/s, 10 ms for the
    arrays of an ML-1M matrix)."""
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def describe(obj, _depth: int = 0):
    """A JSON description of a setting: plain values as they are, objects (losses, samplers,
    denoisers, modules) as their class and their plain attributes, recursively (objects
    deeper than 4 levels, e.g. back-references, by their class alone)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else repr(obj)
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return describe(obj.item(), _depth)
    if isinstance(obj, (list, tuple)):
        return [describe(v, _depth + 1) for v in obj]
    if isinstance(obj, dict):
        return {str(k): describe(v, _depth + 1) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, np.ndarray):
        return {"array": array_digest(obj)}
    if isinstance(obj, torch.Tensor):
        return {"tensor": list(obj.shape)}
    out = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    if _depth > 4:
        return out
    if isinstance(obj, torch.nn.Module):
        out["tensors"] = {k: list(v.shape) for k, v in obj.state_dict().items()}
    for k, v in sorted(getattr(obj, "__dict__", {}).items()):
        if k.startswith("_") or k == "training" or callable(v) or isinstance(v, torch.nn.Module):
            continue
        if isinstance(v, (sp.spmatrix, torch.Generator)):
            continue
        out[k] = describe(v, _depth + 1)
    return out


def _fingerprint(X: sp.csr_matrix, cfg: TrainConfig, weights=None, model=None, scorer=None, objective=None,
                 negatives=None, denoiser=None) -> dict:
    """The named parts a checkpoint must match to be resumed: the whole matrix (full hashes
    of indptr, indices and values), the sample weights, the model's parameters, the scorer's
    tensor shapes and settings, the objective, samplers and denoiser, and the loop settings."""
    parts = {"data.shape": list(X.shape), "data.nnz": int(X.nnz), "data.indptr": array_digest(X.indptr),
             "data.indices": array_digest(X.indices), "data.values": array_digest(X.data),
             "sample_weight": None if weights is None else array_digest(np.asarray(weights, np.float32))}
    if model is not None:
        parts.update({f"model.{k}": describe(v) for k, v in model.items()})
    for name, obj in (("scorer", scorer), ("objective", objective), ("negatives", negatives),
                      ("denoiser", denoiser)):
        parts[name] = describe(obj)
    parts.update(config_parts(cfg))
    return parts


def config_parts(cfg: TrainConfig) -> dict:
    """The loop settings that change training (not the progress bar, the checkpoint path,
    resuming or the time limit), as fingerprint parts."""
    return {f"config.{k}": describe(v) for k, v in asdict(cfg).items()
            if k not in ("show_progress", "checkpoint", "resume", "time_limit")}


def config_digest(h, cfg: TrainConfig) -> str:
    """Finish the hash ``h`` of a checkpoint's data with the settings that change training."""
    h.update(json.dumps(config_parts(cfg), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _fingerprint_parts(fingerprint) -> dict:
    # a plain digest (older callers) is one part
    parts = fingerprint if isinstance(fingerprint, dict) else {"fingerprint": fingerprint}
    return json.loads(json.dumps(parts, sort_keys=True, default=str))  # JSON-normalised (tuples -> lists)


def _fingerprint_differences(stored: dict, current: dict) -> list:
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, "<absent>"), current.get(key, "<absent>")
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            inner = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            out.append(f"{key} differs in {', '.join(map(str, inner))} "
                       f"({', '.join(f'{k}: {_short(a.get(k))} -> {_short(b.get(k))}' for k in inner[:3])})")
        else:
            out.append(f"{key} differs (checkpoint {_short(a)}, now {_short(b)})")
    return out


def _short(v) -> str:
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
