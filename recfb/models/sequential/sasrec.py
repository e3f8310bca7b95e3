"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), with the
next-item objectives of :mod:`recfb.losses.sequence` (BCE, gBCE, sampled and full softmax)."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from recfb.data.interactions import Interactions
from recfb.losses.sequence import GBCE, SEQUENCE_OBJECTIVES
from recfb.models.base import Recommender, ScoreCall
from recfb.models.sequential import schedule
from recfb.models.sequential.encoder import SequenceEncoder
from recfb.models.sequential.histories import holdout_last, pack_sequences, pad_left, trim
from recfb.sampling.negative import VerifiedUniformNegatives
from recfb.train.loop import array_digest, describe
from recfb.train.sequence import gather_rows, length_groups
from recfb.utils.device import resolve_device, seeded_rng
from recfb.utils.errors import DataError, InvalidParameterError, NotFittedError
from recfb.utils.params import Instance, Interval, Options
from recfb.utils.validation import check_csr, check_positive_int

#: the ``loss=`` names (:data:`recfb.losses.sequence.SEQUENCE_OBJECTIVES`)
LOSSES = tuple(SEQUENCE_OBJECTIVES)


class SASRec(Recommender):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

    ``fit(interactions)`` takes an :class:`~recfb.data.Interactions` whose order is time
    (timestamps, else file order; e.g. the train part of ``split.leave_one_out``). Each user's
    sequence ``s`` trains next-item prediction at every position: inputs ``s[:-1]``, targets
    ``s[1:]``, the last ``max_len`` kept, left-padded.

    Losses (``loss``), the objectives of :mod:`recfb.losses.sequence`:

    - ``"bce"`` (:class:`~recfb.losses.sequence.SeqBCE`): the original:
      ``-log sigmoid(s+) - sum_j log(1 - sigmoid(s_j))`` with
      ``num_negatives`` items outside the user's history (the paper: 1).
    - ``"gbce"`` (:class:`~recfb.losses.sequence.GBCE`): gSASRec's generalised BCE with
      ``k = num_negatives`` uniform negatives (drawn per sequence and shared by its positions,
      which saves the per-position gather) and calibration ``gbce_t``: the positive term is
      raised to ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``, ``alpha = k / (n_items - 1)``,
      which corrects the overconfidence that negative sampling causes (``t = 1`` recovers
      full-softmax-like calibration, ``t = 0`` plain BCE).
    - ``"sampled_softmax"`` (:class:`~recfb.losses.sequence.SampledSoftmax`): cross-entropy
      over the positive and ``num_negatives`` uniform items (per sequence, as for gBCE).
    - ``"softmax"`` (:class:`~recfb.losses.sequence.FullSoftmax`): cross-entropy over the whole
      catalogue.

    Parameters use the common names (``factors``, ``iterations``, ``learning_rate``,
    ``batch_size``, ``random_state``, ``device``) plus ``max_len``, ``num_blocks``,
    ``num_heads``, ``dropout``, ``loss``, ``num_negatives``, ``gbce_t``, ``weight_decay`` (Adam
    weight decay; ``l2`` is its deprecated old name), ``patience``, ``eval_every`` and
    ``valid_negatives`` (early stopping on validation NDCG@10 with ``fit(..., valid_items=...)``:
    full ranking, history excluded, when None; else the
    sampled protocol, the validation item among that many uniform negatives).

    Epochs (``iterations``): the epoch at which validation peaks moves with the data, the loss
    and the learning rate (from tens to hundreds in ``benchmarks/defaults_sequential.py``), so
    ``iterations=None`` (the default) derives it at fit time by early stopping, and the fitted
    ``iterations_`` says which epoch's weights were kept. The validation is the user's
    ``valid_items`` when given; otherwise the last training item of 10% of the sequences (at least
    1,000, at most 5,000; seeded by ``random_state``) is held out of training and ranked
    (NDCG@10, full ranking) every ``eval_every`` epochs; training stops after ``patience``
    validations without improvement (None: 10, or half the best epoch so far when that is more),
    at most 500 epochs, but not while the run is still on its initial plateau: patience counts only
    once a validation is clearly (by more than the standard error) above the first one, or after
    2,000 optimiser steps (:class:`~recfb.models.sequential.schedule.AutoStopping`). With the
    held-out items, ``iterations_`` is the peak of the holdout's curve averaged over 5 validations
    (its raw peak is often a noise peak), and the network is then trained again from its seeded
    start on every item for ``iterations_`` epochs (so nothing is left out of the model; the
    selection run's logs are kept as ``selection_history_``); with the user's ``valid_items``, the
    best epoch's weights are restored instead. The refit costs about as much again as the
    selection run up to ``iterations_``. ``eval_every=None``
    validates about every 100 optimiser steps (``max(1, round(100 / steps_per_epoch))`` epochs)
    with ``iterations=None``, and every epoch with a fixed ``iterations`` (which trains exactly
    that many epochs, with early stopping only when ``patience`` and ``valid_items`` are given).
    ``learning_rate`` 3e-3 (BERT4Rec: 1e-3) and this rule were chosen on validation by
    ``benchmarks/defaults_sequential.py`` (benchmarks/RESULTS.md, "Sequential defaults").

    Training runs on the common epoch loop (:class:`recfb.train.sequence.SequenceTrainer`):
    batches of ``batch_size`` random users, Adam with betas (0.9, 0.98) as the original code,
    bfloat16 autocast on CUDA, checkpoints, callbacks. Inside a batch, sequences of similar
    length are computed together and trimmed to their longest; padded keys are masked, so this
    changes speed, not results.

    Histories: the fitted sequences are kept; :meth:`set_histories` replaces them (e.g. train
    + validation before testing) and ``recommend(..., histories=...)`` scores histories given at
    call time (users unseen at fit). ``user_factors`` / ``item_factors`` export the final hidden
    state of each stored history and the item embeddings for FAISS inner-product search.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`). It holds
    #: the defaults (so a study's first trial is ``SASRec()``); factors step in 10s (divisible by
    #: num_heads 1, 2, 5 or 10). Epochs are not tuned: ``iterations=None`` early-stops each trial on
    #: its validation, and the median pruner ends bad trials.
    search_space = {"factors": ("int", 20, 120, 10), "learning_rate": ("float", 3e-4, 1e-2, "log"),
                    "dropout": ("float", 0.0, 0.5), "max_len": ("int", 20, 200, "log"), "num_blocks": ("int", 1, 3)}

    causal = True

    def __init__(self, *, factors: int = 50, iterations: int | None = None, learning_rate: float = 3e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, loss: str = "bce", num_negatives: int = 1, gbce_t: float = 0.75,
                 weight_decay: float = 0.0, patience=None, eval_every: int | None = None, valid_negatives=None,
                 random_state=0, device="auto", l2: float | None = None):
        self.factors = factors
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_len = max_len
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.dropout = dropout
        self.loss = loss
        self.num_negatives = num_negatives
        self.gbce_t = gbce_t
        self.weight_decay = weight_decay
        self.patience = patience
        self.eval_every = eval_every
        self.valid_negatives = valid_negatives
        self.random_state = random_state
        self.device = device
        self.l2 = l2  # deprecated name of weight_decay

    needs_fitted_users = True

    # ------------------------------------------------------------------ checks
    _parameter_constraints = {
        **{name: [Interval("int", 1, None)] for name in
           ("factors", "batch_size", "max_len", "num_blocks", "num_heads", "num_negatives")},
        **{name: [Interval("int", 1, None), None] for name in
           ("iterations", "eval_every", "patience", "valid_negatives")},
        "loss": [Options(LOSSES)],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "learning_rate": [Interval("real", 0, None, closed="neither")],
        "gbce_t": [Interval("real", 0, 1)],
        "weight_decay": [Interval("real", 0, None)],
        "l2": [Interval("real", 0, None), None],
        "random_state": [Interval("int", 0, None), None],
        "device": [Instance(str, torch.device), None],
    }

    def _check_params(self):
        """Every parameter against :attr:`_parameter_constraints` (InvalidParameterError, a
        TypeError and a ValueError), then the checks across parameters."""
        self._validate_params()
        if self.factors % self.num_heads:
            raise InvalidParameterError(f"factors == {self.factors} must be divisible by num_heads == "
                                        f"{self.num_heads}.")
        if self.l2 is not None and self.weight_decay != 0:
            raise InvalidParameterError(f"l2 == {self.l2!r} and weight_decay == {self.weight_decay!r}: l2 is the "
                                        "deprecated name of weight_decay; give weight_decay only.")

    def _weight_decay(self) -> float:
        """The Adam weight decay: ``weight_decay``, or the deprecated ``l2`` when given."""
        return self.weight_decay if self.l2 is None else self.l2

    def _make_objective(self, n_items: int):
        """The :mod:`recfb.losses.sequence` objective of ``loss``."""
        if self.loss == "gbce":
            return GBCE(t=self.gbce_t, n_items=n_items)
        return SEQUENCE_OBJECTIVES[self.loss]()

    @staticmethod
    def _sequences(data, what="interactions"):
        if not isinstance(data, Interactions):
            raise TypeError(f"{what} must be recfb.data.Interactions (their order is the time order); got "
                            f"{type(data).__name__}. Build one with Interactions.from_arrays/from_dataframe.")
        if len(data) == 0:
            raise DataError(f"{what} is empty: no sequence to learn from.")
        return pack_sequences(data.sequences("timestamp" if data.timestamps is not None else "row"))

    # ------------------------------------------------------------------ fit
    def fit(self, interactions, show_progress: bool = True, *, valid_items=None, checkpoint=None,
            resume: bool = False, callbacks=(), time_limit: float | None = None, valid_users=None, valid_metric=None,
            valid=None, distributed: bool | None = False):
        """Train on ordered interactions through the common epoch loop
        (:class:`recfb.train.sequence.SequenceTrainer`: random batches of sequences, grouped
        by length inside a batch, bfloat16 autocast on CUDA).

        ``valid_items`` (one next item per user, e.g. ``leave_one_out``'s validation part: an
        :class:`~recfb.data.Interactions`, mapped to the fitted id space, or a users x items
        CSR matrix in it; ``valid`` is its deprecated old name) is scored every ``eval_every``
        epochs by NDCG@10 (full ranking, or the sampled protocol with ``valid_negatives``); it
        drives early stopping (``patience``) and the best epoch's weights are restored.
        ``valid_users`` restricts validation to those users;
        ``valid_metric`` (callable(model) -> float, higher is better) replaces that NDCG@10, e.g.
        with the tuning metric of :func:`recfb.tune.search`.
        ``checkpoint``/``resume`` as in the other models (a resumed run ends where an
        uninterrupted one ends). ``time_limit`` (seconds of training, summed over resumed
        runs) stops after the epoch that passes it, like early stopping. After fitting,
        ``history_`` holds each epoch's logs, ``best_epoch_`` the restored epoch and
        ``stopped_by_`` why training ended (``"epochs"``, ``"patience"``, ``"time_limit"``).
        ``distributed`` (True, or None: when a process group is initialised) trains on
        torch.distributed as the embedding models do (:mod:`recfb.distributed`): each rank its
        shard of every epoch's sequences, gradients averaged, rank 0 validating and writing; a
        rank's random draws come from a generator of (seed, rank, step)."""
        from recfb.distributed import get_comm
        from recfb.train import TrainConfig
        from recfb.train.sequence import SequenceTrainer

        if valid is not None:
            if valid_items is not None:
                raise TypeError("fit() got both valid_items and valid (its deprecated old name); give valid_items.")
            warnings.warn("fit(valid=...) is deprecated; use fit(valid_items=...), as the other models.",
                          DeprecationWarning, stacklevel=2)
            valid_items = valid
        self._check_params()
        comm = get_comm(distributed)  # a no-op Comm for one process
        if self.l2 is not None:
            warnings.warn(f"{type(self).__name__}(l2=...) is deprecated; use weight_decay={self.l2!r} (Adam weight "
                          "decay; l2 means the ridge penalty in EASE).", DeprecationWarning, stacklevel=2)
        indptr, items = self._sequences(interactions)
        n_users, n_items = interactions.n_users, interactions.n_items
        auto = self.iterations is None
        held_users = None
        if auto and valid_items is None and valid_metric is None:
            # the epochs are chosen on held-out last items, which are not trained on
            indptr_all, items_all = indptr, items
            n_held = int(np.clip(round(schedule.HOLDOUT_FRACTION * n_users), schedule.HOLDOUT_MIN,
                                 schedule.HOLDOUT_MAX))
            indptr, items, held_users, held_items = holdout_last(indptr_all, items_all, self._min_length(), n_held,
                                                                 self.random_state)
            if held_users.size == 0:
                warnings.warn(f"iterations=None: no sequence is longer than {self._min_length()} items, so none "
                              "can lend its last item to choose the epochs; training "
                              f"{schedule.AUTO_MAX_EPOCHS // 2} epochs.", stacklevel=2)
        lengths = np.diff(indptr)
        trainable = np.flatnonzero(lengths >= self._min_length())
        if trainable.size == 0:
            raise DataError(f"no user has a sequence of at least {self._min_length()} items; nothing to train on.")
        self.n_users_, self.n_items_ = n_users, n_items
        self.hist_indptr_, self.hist_items_ = indptr, items
        self.objective_ = self._make_objective(n_items)
        self.device_ = dev = resolve_device(self.device)
        refit = held_users is not None and held_users.size > 0

        def start(indptr, items):
            """A fresh network and history sampler on these sequences; their training rows."""
            self.hist_indptr_, self.hist_items_ = indptr, items
            with seeded_rng(0 if self.random_state is None else self.random_state, dev):
                self.net_ = SequenceEncoder(n_items, self.factors, self.max_len, self.num_blocks, self.num_heads,
                                            self.dropout, causal=self.causal).to(dev)
            # negatives outside the user's history (SASRec's sampler); histories covering the
            # whole catalogue get unchecked uniform items
            hist_X = self._history_matrix()
            self._history_negatives = VerifiedUniformNegatives(allow_full_users=True)
            self._history_negatives.setup(hist_X, dev)
            return hist_X, np.flatnonzero(np.diff(indptr) >= self._min_length())

        rule = {}  # iterations=None's stopping rule, read after the run

        def train(trainable, epochs, validate, patience, eval_every, ckpt, auto_users=None, smooth=False):
            config = TrainConfig(epochs=epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                                 optimizer="adam", betas=(0.9, 0.98), weight_decay=self._weight_decay(),
                                 patience=patience,
                                 eval_every=eval_every, seed=self.random_state, show_progress=show_progress,
                                 checkpoint=None if ckpt is None else str(ckpt), resume=resume and ckpt is not None,
                                 time_limit=time_limit)
            trainer = SequenceTrainer(self.net_, self._batch_loss, trainable, config, dev,
                                      fingerprint=self._fingerprint(self.hist_indptr_, self.hist_items_),
                                      validate=validate, callbacks=callbacks, comm=comm)
            if auto_users is not None:  # iterations=None: schedule.AutoStopping ends the run, not the loop
                steps = max(int(np.ceil(trainable.size / self.batch_size)), 1)
                rule["auto"] = schedule.AutoStopping(trainer, auto_users, steps, self.patience, smooth)
                trainer.callbacks.append(rule["auto"])
                config.patience = None
            trainer.fit()
            return trainer

        hist_X, trainable = start(indptr, items)
        validate, validation_users = None, n_users  # validation_users: how many users a validation averages
        if valid_items is not None:
            valid_X = self._valid_matrix(valid_items, interactions)
            validate = self._make_validator(hist_X, valid_X, valid_users, valid_metric)
            has_items = np.diff(valid_X.indptr) > 0
            validation_users = int(has_items.sum() if valid_users is None else has_items[np.asarray(valid_users)].sum())
        elif valid_metric is not None:
            validate = self._make_validator(hist_X, None, None, valid_metric)
        elif refit:
            valid_X = sp.csr_matrix((np.ones(held_users.size, np.float32), (held_users, held_items)),
                                    shape=(n_users, n_items))
            validate = self._make_validator(hist_X, valid_X, held_users)
            validation_users = int(held_users.size)
        cap = schedule.AUTO_MAX_EPOCHS
        epochs = self.iterations if not auto else cap if validate is not None else cap // 2
        self.eval_every_ = self.eval_every or (schedule.auto_eval_every(trainable.size, self.batch_size) if auto else 1)
        # patience_: the validations it starts with (iterations=None: grows with the best epoch)
        self.patience_ = self.patience if self.patience is not None else schedule.AUTO_PATIENCE if auto else None
        trainer = train(trainable, epochs, validate, self.patience_, self.eval_every_, None if refit else checkpoint,
                        auto_users=validation_users if auto and validate is not None else None, smooth=refit)
        self.history_ = trainer.history
        self.best_epoch_ = trainer.best_epoch_
        self.stopped_by_ = trainer.stopped_by
        self.iterations_ = trainer.best_epoch_ or len(trainer.history)  # the epoch whose weights were kept
        if refit:  # again from the start on every item, the held-out ones included, for iterations_ epochs:
            # the holdout's choice: the maximum of its smoothed curve (schedule.AutoStopping)
            self.iterations_ = rule["auto"].chosen_epoch or len(trainer.history)
            self.selection_history_ = trainer.history
            _, trainable = start(indptr_all, items_all)
            self.history_ = train(trainable, self.iterations_, None, None, 1, checkpoint).history
        self.net_.eval()
        self._export()
        return self

    @staticmethod
    def _valid_matrix(valid_items, interactions) -> sp.csr_matrix:
        """``fit(valid_items=)`` as a users x items CSR in the id space of ``interactions``."""
        shape = (interactions.n_users, interactions.n_items)
        if isinstance(valid_items, Interactions):
            X = sp.csr_matrix(valid_items.with_id_space(interactions.user_map, interactions.item_map).matrix)
        elif sp.issparse(valid_items):
            X = check_csr(valid_items, "valid_items")
        else:
            raise TypeError(f"valid_items must be recfb.data.Interactions or a scipy.sparse users x items matrix, "
                            f"got {type(valid_items).__name__}.")
        if X.shape != shape:
            raise DataError(f"valid_items has shape {X.shape}, expected {shape} (the fitted users x items).")
        return X

    def _make_validator(self, hist_X, valid_X, valid_users, valid_metric=None):
        from recfb.evaluation import ranking_metrics, sampled_ranking_metrics

        def validate(_net):
            if valid_metric is not None:
                return valid_metric(self)
            if self.valid_negatives is None:
                return ranking_metrics(self, hist_X, valid_X, k=10, users=valid_users)["ndcg@10"]
            # the same negatives at every validation (fixed seed), so epochs are compared fairly
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # users with fewer eligible items are ranked against all
                return sampled_ranking_metrics(self, hist_X, valid_X, n_negatives=self.valid_negatives, k=10,
                                               seed=0, users=valid_users)["ndcg@10"]
        return validate

    def _widths(self, lengths: np.ndarray) -> np.ndarray:
        """Columns a training sequence of each length needs (inputs ``s[:-1]``)."""
        return np.minimum(lengths - 1, self.max_len)

    def _min_length(self) -> int:
        return 2  # one (input, target) pair

    def _fingerprint(self, indptr, items) -> dict:
        """Checkpoint fingerprint parts: full hashes of the histories and every parameter."""
        return {"data.indptr": array_digest(indptr), "data.items": array_digest(items),
                **{f"model.{k}": describe(v) for k, v in self.get_params().items()}}

    def _batch_loss(self, rows, gen):
        """Summed loss of a batch of users and its number of positions. The batch is computed
        in length groups (each trimmed to its longest sequence) with one gather of the item
        table; negatives are drawn for the whole batch, as the objective's ``negatives`` says:
        per position outside the user's history (``"history"``), ``num_negatives`` uniform
        items per sequence shared by its positions (``"uniform"``: one (W, d) x (d, k) product
        per sequence instead of gathering k vectors per position), or none (``"catalogue"``:
        the full logits)."""
        net, dev, L, objective = self.net_, self.device_, self.max_len, self.objective_
        lengths = self.hist_indptr_[rows + 1] - self.hist_indptr_[rows]
        groups = []  # (rows, inputs, targets (shifted ids, 0 = padding), offset)
        for g in length_groups(self._widths(lengths)):
            r = rows[g]
            (inp, tgt), offset = trim(pad_left(self.hist_indptr_, self.hist_items_, r, L, drop_last=1),
                                      pad_left(self.hist_indptr_, self.hist_items_, r, L, drop_first=1))
            groups.append((r, torch.as_tensor(inp, device=dev), torch.as_tensor(tgt, device=dev), offset))
        valid = [tgt > 0 for _, _, tgt, _ in groups]
        t = torch.cat([tgt[v] for (_, _, tgt, _), v in zip(groups, valid)])  # shifted target ids
        k = self.num_negatives
        parts = [inp for _, inp, _, _ in groups] + [t]
        if objective.negatives == "history":
            users = torch.cat([torch.as_tensor(r, device=dev).unsqueeze(1).expand_as(tgt)[v]
                               for (r, _, tgt, _), v in zip(groups, valid)])
            parts.append(self._history_negatives.sample(users, k, gen) + 1)
        elif objective.negatives == "uniform":
            n_seq = sum(r.size for r, _, _, _ in groups)
            parts.append(torch.randint(1, self.n_items_ + 1, (n_seq, k), generator=gen, device=dev))
        embs = gather_rows(net.item.weight, parts)
        hs = [net(inp, offset, emb=e) for (_, inp, _, offset), e in zip(groups, embs)]
        hv = torch.cat([h[v] for h, v in zip(hs, valid)])  # (P, d)
        if objective.negatives == "catalogue":
            return objective.from_logits(net.logits(hv).float(), t - 1).sum(), int(t.numel())
        s_pos = (hv * embs[len(groups)]).sum(-1).float()
        vneg = embs[len(groups) + 1]
        if objective.negatives == "history":
            s_neg = torch.bmm(vneg, hv.unsqueeze(2)).squeeze(2).float()
        else:
            sizes = [r.size for r, _, _, _ in groups]
            s_neg = torch.cat([torch.bmm(h, vn.transpose(1, 2))[v]  # (B, W, k) -> (P_g, k)
                               for h, vn, v in zip(hs, vneg.split(sizes), valid)]).float()
        pos_loss, neg_loss = objective(s_pos, s_neg)
        return (pos_loss + neg_loss).sum(), int(t.numel())

    # ------------------------------------------------------------------ histories and scoring
    def _history_matrix(self) -> sp.csr_matrix:
        data = np.ones(self.hist_items_.size, np.float32)
        X = sp.csr_matrix((data, self.hist_items_, self.hist_indptr_), shape=(self.n_users_, self.n_items_))
        X.sum_duplicates()
        X.data[:] = 1.0
        return X

    def history_matrix(self) -> sp.csr_matrix:
        """Users x items CSR of the stored histories (pass it as ``user_items`` to filter them)."""
        self._check_fitted()
        return self._history_matrix()

    def set_histories(self, interactions) -> "SASRec":
        """Replace the stored histories (e.g. with train + validation before testing); the id
        space must be the fitted one."""
        self._check_fitted()
        if interactions.n_items != self.n_items_ or interactions.n_users != self.n_users_:
            raise DataError(f"histories have {interactions.n_users} users x {interactions.n_items} items; the model "
                            f"was fitted on {self.n_users_} x {self.n_items_}.")
        self.hist_indptr_, self.hist_items_ = self._sequences(interactions, "histories")
        self._export()
        return self

    def _check_fitted(self):
        if not hasattr(self, "net_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first.")

    def _query_input(self, indptr, items, rows) -> np.ndarray:
        return pad_left(indptr, items, rows, self.max_len)

    def _hidden(self, indptr, items, rows) -> np.ndarray:
        """Final hidden state (the query vector) of the given packed histories' rows."""
        out = []
        dev = self.device_
        with torch.no_grad():
            for start in range(0, rows.size, 1024):
                r = rows[start:start + 1024]
                (inp,), offset = trim(self._query_input(indptr, items, r))
                out.append(self.net_(torch.as_tensor(inp, device=dev), offset)[:, -1].float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.factors), np.float32)

    def _scores_from_hidden(self, h: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net_.logits(torch.as_tensor(h, device=self.device_)).float().cpu().numpy()

    def _score(self, userids, user_items):
        return self._score_call(userids, user_items, ScoreCall())

    def _score_call(self, userids, user_items, call):
        self.net_.eval()
        if call.histories is not None:  # the call's own histories, one per user of the call
            indptr, items = call.histories
            rows = np.arange(userids.size) + call.offset
        else:
            indptr, items, rows = self.hist_indptr_, self.hist_items_, userids
        empty = indptr[rows + 1] == indptr[rows]
        h = self._hidden(indptr, items, rows)
        s = self._scores_from_hidden(h)
        if empty.any():  # no history: popularity-free uniform zero scores
            s[empty] = 0.0
        return s

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, recalculate_user: bool = False, items=None, histories=None):
        """Top-``N`` next items from each user's stored history, or from ``histories`` (a list of
        item-id arrays in time order, one per ``userid``, for users unseen at fit). Item ids in a
        given history must be in ``0..n_items-1``."""
        self._check_fitted()
        if histories is None:
            return super().recommend(userid, user_items, N, filter_already_liked_items, filter_items,
                                     recalculate_user, items)
        seqs = [histories] if np.isscalar(userid) and len(histories) and np.isscalar(histories[0]) else list(histories)
        n = 1 if np.isscalar(userid) else len(np.atleast_1d(userid))
        if len(seqs) != n:
            raise DataError(f"histories has {len(seqs)} sequences for {n} users.")
        indptr, flat = pack_sequences(seqs)
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_items_):
            bad = flat[(flat < 0) | (flat >= self.n_items_)][0]
            raise DataError(f"history item {int(bad)} is outside the vocabulary (0..{self.n_items_ - 1}).")
        N = check_positive_int(N, "N")
        return self._recommend(userid, user_items, N, filter_already_liked_items, filter_items, items,
                               ScoreCall(histories=(indptr, flat)))

    def _export(self):
        self.net_.eval()
        self.user_factors = self._hidden(self.hist_indptr_, self.hist_items_, np.arange(self.n_users_)).astype(np.float32)
        with torch.no_grad():
            V = self.net_.item_vectors().float().cpu().numpy()
        if self.net_.bias is not None:  # fold BERT4Rec's output bias into the inner product
            self.user_factors = np.hstack([self.user_factors, np.ones((self.n_users_, 1), np.float32)])
            V = np.hstack([V, self.net_.bias.detach().float().cpu().numpy()[:, None]])
        self.item_factors = np.ascontiguousarray(V, np.float32)

    # ------------------------------------------------------------------ persistence
    def _get_state(self):
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        state.update(hist_indptr=self.hist_indptr_, hist_items=self.hist_items_)
        return state

    def _set_state(self, arrays):
        if self.l2 is not None:  # a file saved before the rename: its l2 is the weight decay
            self.weight_decay, self.l2 = self.l2, None
        self.device_ = resolve_device(self.device)
        self.net_ = SequenceEncoder(self.n_items_, self.factors, self.max_len, self.num_blocks, self.num_heads,
                                    self.dropout, causal=self.causal).to(self.device_)
        self.net_.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("net.")})
        self.hist_indptr_, self.hist_items_ = arrays["hist_indptr"], arrays["hist_items"]
        self._export()

