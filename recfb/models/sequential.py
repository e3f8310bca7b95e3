"""Sequential recommenders: SASRec (Kang & McAuley, ICDM 2018) with BCE, gBCE (gSASRec,
Petrov & Macdonald, RecSys 2023), sampled-softmax and full-softmax losses, and BERT4Rec
(Sun et al., CIKM 2019).

Item ids inside the networks are shifted by one: 0 is padding, ``1..n_items`` the items and
``n_items + 1`` BERT4Rec's mask token. Histories are stored per user (packed as
``hist_indptr``/``hist_items``) and scoring takes the last ``max_len`` of them, so
``recommend`` keeps implicit's signature: ``user_items`` only filters.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recfb.data.interactions import Interactions
from recfb.models.base import Recommender, ScoreCall
from recfb.sampling.negative import VerifiedUniformNegatives
from recfb.train.loop import array_digest, describe
from recfb.train.sequence import gather_rows, length_groups
from recfb.utils.device import resolve_device, seeded_rng
from recfb.utils.errors import DataError, NotFittedError
from recfb.utils.validation import check_positive_int

LOSSES = ("bce", "gbce", "sampled_softmax", "softmax")

# ``iterations=None`` (the default): epochs chosen by early stopping on validation (the user's
# ``valid``, else the last training item of HOLDOUT_FRACTION of the sequences, at least
# HOLDOUT_MIN and at most HOLDOUT_MAX of them, held out of training). The rule and its
# constants come from benchmarks/defaults_sequential.py (RESULTS.md).
HOLDOUT_FRACTION, HOLDOUT_MIN, HOLDOUT_MAX = 0.1, 1000, 5000
EVAL_STEPS = 100  # ``eval_every=None``: validate about every this many optimiser steps
AUTO_PATIENCE = 10  # validations (about 100 steps apart) without improvement before stopping, at least ...
AUTO_PATIENCE_FRACTION = 0.5  # ... and at least this fraction of the best epoch so far
AUTO_MAX_EPOCHS = 500


# ---------------------------------------------------------------------- sequences
def pack_sequences(seqs) -> tuple[np.ndarray, np.ndarray]:
    """List of int arrays -> (indptr, items)."""
    lengths = np.fromiter((len(s) for s in seqs), np.int64, count=len(seqs))
    indptr = np.zeros(len(seqs) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    items = np.concatenate([np.asarray(s, np.int64) for s in seqs]) if len(seqs) else np.empty(0, np.int64)
    return indptr, items


def pad_left(indptr: np.ndarray, items: np.ndarray, rows: np.ndarray, max_len: int, *, drop_last: int = 0,
             drop_first: int = 0, shift: int = 1) -> np.ndarray:
    """Rows ``rows`` of a packed sequence set as a left-padded ``(len(rows), max_len)`` int64
    array of ``item + shift`` (0 = padding), keeping the last ``max_len`` items after dropping
    ``drop_first`` items from the start and ``drop_last`` from the end. Vectorised."""
    start = indptr[rows] + drop_first
    stop = indptr[rows + 1] - drop_last
    length = np.maximum(stop - start, 0)
    keep = np.minimum(length, max_len)
    out = np.zeros((rows.size, max_len), np.int64)
    r = np.repeat(np.arange(rows.size), keep)
    offset = np.arange(keep.sum()) - np.repeat(np.cumsum(keep) - keep, keep)  # 0..keep-1 within the row
    src = np.repeat(stop - keep, keep) + offset
    out[r, max_len - np.repeat(keep, keep) + offset] = items[src] + shift
    return out


def holdout_last(indptr: np.ndarray, items: np.ndarray, min_length: int, n_users: int, seed):
    """Hold out the last item of up to ``n_users`` seeded random sequences longer than
    ``min_length`` (so each keeps at least ``min_length`` items). Returns the remaining packed
    sequences ``(indptr, items)``, the held-out sequences' rows (sorted) and their last items."""
    lengths = np.diff(indptr)
    eligible = np.flatnonzero(lengths > min_length)
    take = min(int(n_users), eligible.size)
    users = np.sort(np.random.default_rng(seed).choice(eligible, take, replace=False)) if take else eligible
    last = indptr[users + 1] - 1
    keep = np.ones(items.size, bool)
    keep[last] = False
    lengths = lengths.copy()
    lengths[users] -= 1
    out = np.zeros_like(indptr)
    np.cumsum(lengths, out=out[1:])
    return out, items[keep], users, items[last]


def auto_eval_every(n_sequences: int, batch_size: int) -> int:
    """``eval_every=None``: about every :data:`EVAL_STEPS` optimiser steps, in whole epochs."""
    steps_per_epoch = max(math.ceil(n_sequences / batch_size), 1)
    return max(1, round(EVAL_STEPS / steps_per_epoch))


class GrowingPatience:
    """Epoch callback of ``iterations=None``: keeps the loop's patience (in validations) at
    ``max(AUTO_PATIENCE, ceil(AUTO_PATIENCE_FRACTION * best_epoch / eval_every))``, so that a
    run that is still improving late may also wait longer (gBCE, for one, can sit on a plateau
    for hundreds of steps before it climbs)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def __call__(self, epoch, logs):
        scores = [(h["valid"], -h["epoch"]) for h in self.trainer.history if "valid" in h]
        if scores:  # from the whole history (a resumed run included), first best epoch as the loop
            best_epoch = -max(scores)[1]
            config = self.trainer.config
            config.patience = max(AUTO_PATIENCE, math.ceil(AUTO_PATIENCE_FRACTION * best_epoch / config.eval_every))


def gbce_beta(num_negatives: int, n_items: int, t: float) -> float:
    """gSASRec's exponent of the positive probability: ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``
    with sampling rate ``alpha = num_negatives / (n_items - 1)``; ``t = 0`` gives 1 (plain BCE)."""
    alpha = num_negatives / max(n_items - 1, 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def trim(*arrays):
    """Drop the leading all-padding columns shared by left-padded arrays (the first array
    decides); returns the trimmed arrays and the number of columns dropped."""
    width = int((arrays[0] != 0).sum(axis=1).max()) if arrays[0].size else 0
    width = max(width, 1)
    offset = arrays[0].shape[1] - width
    return [a[:, offset:] for a in arrays], offset


# ---------------------------------------------------------------------- networks
class _Block(torch.nn.Module):
    """Pre-norm self-attention block. SASRec (as the original code): queries normalised,
    keys/values not, dropout on the attention weights and inside the ReLU feed-forward of width
    d. BERT4Rec: a pre-norm transformer block with GELU feed-forward of width 4d."""

    def __init__(self, d, heads, dropout, bert: bool):
        super().__init__()
        self.bert = bert
        self.norm1 = torch.nn.LayerNorm(d, eps=1e-8)
        self.attn = torch.nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(d, eps=1e-8)
        width = 4 * d if bert else d
        self.ff = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.GELU() if bert else torch.nn.ReLU(),
                                      torch.nn.Dropout(dropout), torch.nn.Linear(width, d), torch.nn.Dropout(dropout))
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x, attn_mask, key_padding_mask):
        q = self.norm1(x)
        kv = q if self.bert else x
        a, _ = self.attn(q, kv, kv, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)
        if self.bert:  # pre-norm transformer
            x = x + self.drop(a)
            return x + self.ff(self.norm2(x))
        # SASRec: residual on the normalised queries, no dropout on the attention output (only
        # on its weights); the feed-forward's residual on its normalised input
        y = self.norm2(q + a)
        return y + self.ff(y)


class SequenceEncoder(torch.nn.Module):
    """Item + learned position embeddings, ``num_blocks`` attention blocks, final LayerNorm.
    ``causal=True`` is SASRec (each position sees itself and the past), False is BERT4Rec."""

    def __init__(self, n_items, d, max_len, num_blocks, num_heads, dropout, causal: bool):
        super().__init__()
        self.n_items, self.d, self.causal = n_items, d, causal
        self.item = torch.nn.Embedding(n_items + 2, d, padding_idx=0)
        self.pos = torch.nn.Embedding(max_len, d)
        self.drop = torch.nn.Dropout(dropout)
        self.blocks = torch.nn.ModuleList(_Block(d, num_heads, dropout, bert=not causal) for _ in range(num_blocks))
        self.norm = torch.nn.LayerNorm(d, eps=1e-8)
        self.bias = torch.nn.Parameter(torch.zeros(n_items)) if not causal else None
        torch.nn.init.xavier_normal_(self.item.weight[1:].data)
        torch.nn.init.xavier_normal_(self.pos.weight.data)

    def forward(self, seq, offset: int = 0, emb=None):
        """``seq`` (B, W) left-padded ids; ``offset`` = how many leading columns of the
        ``max_len`` window were trimmed (positions stay those of the full window, so the last
        column is always position ``max_len - 1``). Padded keys are masked, so the output does
        not depend on how much padding a batch carries (batches are trimmed to their longest
        sequence). ``emb``: the item embeddings of ``seq`` when already gathered."""
        B, W = seq.shape
        pad = seq == 0
        x = (self.item(seq) if emb is None else emb) * math.sqrt(self.d) + self.pos.weight[offset:offset + W].unsqueeze(0)
        x = self.drop(x) * ~pad.unsqueeze(-1)
        eye = torch.eye(W, dtype=torch.bool, device=seq.device)
        blocked = pad.unsqueeze(1) & ~eye  # a padded key is seen by nobody but itself
        if self.causal:
            blocked = blocked | torch.ones(W, W, dtype=torch.bool, device=seq.device).triu_(1)
        mask = blocked.repeat_interleave(self.blocks[0].attn.num_heads, dim=0) if self.blocks else None
        for blk in self.blocks:
            x = blk(x, mask, None) * ~pad.unsqueeze(-1)
        return self.norm(x)

    def item_vectors(self) -> torch.Tensor:
        """Output embeddings of items ``0..n_items-1`` (shared with the input)."""
        return self.item.weight[1:self.n_items + 1]

    def logits(self, h):
        out = h @ self.item_vectors().T
        return out if self.bias is None else out + self.bias


# ---------------------------------------------------------------------- models
class SASRec(Recommender):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

    ``fit(interactions)`` takes an :class:`~recfb.data.Interactions` whose order is time
    (timestamps, else file order; e.g. the train part of ``split.leave_one_out``). Each user's
    sequence ``s`` trains next-item prediction at every position: inputs ``s[:-1]``, targets
    ``s[1:]``, the last ``max_len`` kept, left-padded.

    Losses (``loss``):

    - ``"bce"``: the original: ``-log sigmoid(s+) - sum_j log(1 - sigmoid(s_j))`` with
      ``num_negatives`` items outside the user's history (the paper: 1).
    - ``"gbce"``: gSASRec's generalised BCE with ``k = num_negatives`` uniform negatives (drawn
      per sequence and shared by its positions, which saves the per-position gather) and
      calibration ``gbce_t``: the positive term is raised to ``beta = alpha (t (1 - 1/alpha)
      + 1/alpha)``, ``alpha = k / (n_items - 1)``, which corrects the overconfidence that
      negative sampling causes (``t = 1`` recovers full-softmax-like calibration, ``t = 0``
      plain BCE).
    - ``"sampled_softmax"``: cross-entropy over the positive and ``num_negatives`` uniform items
      (per sequence, as for gBCE).
    - ``"softmax"``: cross-entropy over the whole catalogue.

    Parameters use the common names (``factors``, ``iterations``, ``learning_rate``,
    ``batch_size``, ``random_state``, ``device``) plus ``max_len``, ``num_blocks``,
    ``num_heads``, ``dropout``, ``loss``, ``num_negatives``, ``gbce_t``, ``l2`` (Adam weight
    decay), ``patience``, ``eval_every`` and ``valid_negatives`` (early stopping on validation
    NDCG@10 with ``fit(..., valid=...)``: full ranking, history excluded, when None; else the
    sampled protocol, the validation item among that many uniform negatives).

    Epochs (``iterations``): the epoch at which validation peaks moves with the data, the loss
    and the learning rate (from tens to hundreds in ``benchmarks/defaults_sequential.py``), so
    ``iterations=None`` (the default) derives it at fit time by early stopping, and the fitted
    ``iterations_`` says which epoch's weights were kept. The validation is the user's
    ``valid`` when given; otherwise the last training item of 10% of the sequences (at least
    1,000, at most 5,000; seeded by ``random_state``) is held out of training and ranked
    (NDCG@10, full ranking) every ``eval_every`` epochs; training stops after ``patience``
    validations without improvement (None: 10, or half the best epoch so far when that is more:
    :class:`GrowingPatience`), at most 500 epochs. With the held-out items, the network is then
    trained again from its seeded start on every item for ``iterations_`` epochs (so nothing is
    left out of the model; the selection run's logs are kept as ``selection_history_``); with
    the user's ``valid``, the best epoch's weights are restored instead. The refit costs about
    as much again as the selection run up to its best epoch. ``eval_every=None``
    validates about every 100 optimiser steps (``max(1, round(100 / steps_per_epoch))`` epochs)
    with ``iterations=None``, and every epoch with a fixed ``iterations`` (which trains exactly
    that many epochs, with early stopping only when ``patience`` and ``valid`` are given).
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

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`); factors
    #: step in 16s so that they stay divisible by num_heads up to 16.
    search_space = {"factors": ("int", 32, 128, 16), "learning_rate": ("float", 1e-4, 1e-2, "log"),
                    "dropout": ("float", 0.0, 0.5), "max_len": ("int", 20, 200, "log"), "num_blocks": ("int", 1, 3)}

    causal = True

    def __init__(self, *, factors: int = 50, iterations: int | None = None, learning_rate: float = 3e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, loss: str = "bce", num_negatives: int = 1, gbce_t: float = 0.75,
                 l2: float = 0.0, patience=None, eval_every: int | None = None, valid_negatives=None, random_state=0,
                 device="auto"):
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
        self.l2 = l2
        self.patience = patience
        self.eval_every = eval_every
        self.valid_negatives = valid_negatives
        self.random_state = random_state
        self.device = device

    needs_fitted_users = True

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        for name in ("factors", "batch_size", "max_len", "num_blocks", "num_heads", "num_negatives"):
            check_positive_int(getattr(self, name), name)
        for name in ("iterations", "eval_every"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        if self.loss not in LOSSES:
            raise ValueError(f"loss == {self.loss!r}, must be one of {LOSSES}.")
        if self.factors % self.num_heads:
            raise ValueError(f"factors == {self.factors} must be divisible by num_heads == {self.num_heads}.")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout == {self.dropout!r}, must be in [0, 1).")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate == {self.learning_rate!r}, must be > 0.")
        if not (isinstance(self.gbce_t, (int, float)) and 0 <= self.gbce_t <= 1):
            raise ValueError(f"gbce_t == {self.gbce_t!r}, must be in [0, 1].")
        if self.patience is not None:
            check_positive_int(self.patience, "patience")
        if self.valid_negatives is not None:
            check_positive_int(self.valid_negatives, "valid_negatives")

    @staticmethod
    def _sequences(data, what="interactions"):
        if not isinstance(data, Interactions):
            raise TypeError(f"{what} must be recfb.data.Interactions (their order is the time order); got "
                            f"{type(data).__name__}. Build one with Interactions.from_arrays/from_dataframe.")
        if len(data) == 0:
            raise DataError(f"{what} is empty: no sequence to learn from.")
        return pack_sequences(data.sequences("timestamp" if data.timestamps is not None else "row"))

    # ------------------------------------------------------------------ fit
    def fit(self, interactions, show_progress: bool = True, *, valid=None, checkpoint=None, resume: bool = False,
            callbacks=(), time_limit: float | None = None, valid_users=None, valid_metric=None):
        """Train on ordered interactions through the common epoch loop
        (:class:`recfb.train.sequence.SequenceTrainer`: random batches of sequences, grouped
        by length inside a batch, bfloat16 autocast on CUDA).

        ``valid`` (one next item per user, same id space, e.g. ``leave_one_out``'s validation
        part) is scored every ``eval_every`` epochs by NDCG@10 (full ranking, or the sampled
        protocol with ``valid_negatives``); it drives early stopping (``patience``) and the
        best epoch's weights are restored. ``valid_users`` restricts validation to those users;
        ``valid_metric`` (callable(model) -> float, higher is better) replaces that NDCG@10, e.g.
        with the tuning metric of :func:`recfb.tune.search`.
        ``checkpoint``/``resume`` as in the other models (a resumed run ends where an
        uninterrupted one ends). ``time_limit`` (seconds of training, summed over resumed
        runs) stops after the epoch that passes it, like early stopping. After fitting,
        ``history_`` holds each epoch's logs, ``best_epoch_`` the restored epoch and
        ``stopped_by_`` why training ended (``"epochs"``, ``"patience"``, ``"time_limit"``)."""
        from recfb.train import TrainConfig
        from recfb.train.sequence import SequenceTrainer

        self._check_params()
        indptr, items = self._sequences(interactions)
        n_users, n_items = interactions.n_users, interactions.n_items
        auto = self.iterations is None
        held_users = None
        if auto and valid is None and valid_metric is None:
            # the epochs are chosen on held-out last items, which are not trained on
            indptr_all, items_all = indptr, items
            n_held = int(np.clip(round(HOLDOUT_FRACTION * n_users), HOLDOUT_MIN, HOLDOUT_MAX))
            indptr, items, held_users, held_items = holdout_last(indptr_all, items_all, self._min_length(), n_held,
                                                                 self.random_state)
            if held_users.size == 0:
                warnings.warn(f"iterations=None: no sequence is longer than {self._min_length()} items, so none "
                              f"can lend its last item to choose the epochs; training {AUTO_MAX_EPOCHS // 2} epochs.",
                              stacklevel=2)
        lengths = np.diff(indptr)
        trainable = np.flatnonzero(lengths >= self._min_length())
        if trainable.size == 0:
            raise DataError(f"no user has a sequence of at least {self._min_length()} items; nothing to train on.")
        self.n_users_, self.n_items_ = n_users, n_items
        self.hist_indptr_, self.hist_items_ = indptr, items
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

        def train(trainable, epochs, validate, patience, eval_every, ckpt, grow=False):
            config = TrainConfig(epochs=epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                                 optimizer="adam", betas=(0.9, 0.98), weight_decay=self.l2, patience=patience,
                                 eval_every=eval_every, seed=self.random_state, show_progress=show_progress,
                                 checkpoint=None if ckpt is None else str(ckpt), resume=resume and ckpt is not None,
                                 time_limit=time_limit)
            trainer = SequenceTrainer(self.net_, self._batch_loss, trainable, config, dev,
                                      fingerprint=self._fingerprint(self.hist_indptr_, self.hist_items_),
                                      validate=validate, callbacks=callbacks)
            if grow:
                trainer.callbacks.append(GrowingPatience(trainer))
            trainer.fit()
            return trainer

        hist_X, trainable = start(indptr, items)
        validate = None
        if valid is not None:
            valid_X = sp.csr_matrix(valid.with_id_space(interactions.user_map, interactions.item_map).matrix)
            if valid_X.shape != (n_users, n_items):
                raise DataError(f"valid has shape {valid_X.shape}, expected {(n_users, n_items)}.")
            validate = self._make_validator(hist_X, valid_X, valid_users, valid_metric)
        elif valid_metric is not None:
            validate = self._make_validator(hist_X, None, None, valid_metric)
        elif refit:
            valid_X = sp.csr_matrix((np.ones(held_users.size, np.float32), (held_users, held_items)),
                                    shape=(n_users, n_items))
            validate = self._make_validator(hist_X, valid_X, held_users)
        epochs = self.iterations if not auto else AUTO_MAX_EPOCHS if validate is not None else AUTO_MAX_EPOCHS // 2
        self.eval_every_ = self.eval_every or (auto_eval_every(trainable.size, self.batch_size) if auto else 1)
        # patience_: the validations it starts with (iterations=None: grows with the best epoch)
        self.patience_ = self.patience if self.patience is not None else AUTO_PATIENCE if auto else None
        trainer = train(trainable, epochs, validate, self.patience_, self.eval_every_, None if refit else checkpoint,
                        grow=auto and self.patience is None and validate is not None)
        self.history_ = trainer.history
        self.best_epoch_ = trainer.best_epoch_
        self.stopped_by_ = trainer.stopped_by
        self.iterations_ = trainer.best_epoch_ or len(trainer.history)  # the epoch whose weights were kept
        if refit:  # again from the start on every item, the held-out ones included, for iterations_ epochs
            self.selection_history_ = trainer.history
            _, trainable = start(indptr_all, items_all)
            self.history_ = train(trainable, self.iterations_, None, None, 1, checkpoint).history
        self.net_.eval()
        self._export()
        return self

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
        table; negatives are drawn for the whole batch."""
        net, dev, L = self.net_, self.device_, self.max_len
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
        if self.loss == "bce":  # the original: per position, outside the user's history
            users = torch.cat([torch.as_tensor(r, device=dev).unsqueeze(1).expand_as(tgt)[v]
                               for (r, _, tgt, _), v in zip(groups, valid)])
            parts.append(self._history_negatives.sample(users, k, gen) + 1)
        elif self.loss != "softmax":
            # k uniform negatives per sequence, shared by its positions: one (W, d) x (d, k)
            # product per sequence instead of gathering k vectors per position
            n_seq = sum(r.size for r, _, _, _ in groups)
            parts.append(torch.randint(1, self.n_items_ + 1, (n_seq, k), generator=gen, device=dev))
        embs = gather_rows(net.item.weight, parts)
        hs = [net(inp, offset, emb=e) for (_, inp, _, offset), e in zip(groups, embs)]
        hv = torch.cat([h[v] for h, v in zip(hs, valid)])  # (P, d)
        if self.loss == "softmax":
            return F.cross_entropy(net.logits(hv).float(), t - 1, reduction="sum"), int(t.numel())
        s_pos = (hv * embs[len(groups)]).sum(-1).float()
        vneg = embs[len(groups) + 1]
        if self.loss == "bce":
            s_neg = torch.bmm(vneg, hv.unsqueeze(2)).squeeze(2).float()
        else:
            sizes = [r.size for r, _, _, _ in groups]
            s_neg = torch.cat([torch.bmm(h, vn.transpose(1, 2))[v]  # (B, W, k) -> (P_g, k)
                               for h, vn, v in zip(hs, vneg.split(sizes), valid)]).float()
        if self.loss == "sampled_softmax":
            logits = torch.cat([s_pos.unsqueeze(1), s_neg], dim=1)
            loss = F.cross_entropy(logits, torch.zeros(t.numel(), dtype=torch.long, device=dev), reduction="sum")
        else:
            beta = gbce_beta(k, self.n_items_, self.gbce_t) if self.loss == "gbce" else 1.0
            loss = (beta * F.softplus(-s_pos) + F.softplus(s_neg).sum(1)).sum()
        return loss, int(t.numel())

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
        self.device_ = resolve_device(self.device)
        self.net_ = SequenceEncoder(self.n_items_, self.factors, self.max_len, self.num_blocks, self.num_heads,
                                    self.dropout, causal=self.causal).to(self.device_)
        self.net_.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("net.")})
        self.hist_indptr_, self.hist_items_ = arrays["hist_indptr"], arrays["hist_items"]
        self._export()


class gSASRec(SASRec):  # noqa: N801 - the paper's name
    """SASRec with gBCE (Petrov & Macdonald, RecSys 2023): 256 uniform negatives and
    calibration ``t = 0.75`` by default; otherwise the same as :class:`SASRec`."""

    search_space = {"factors": ("int", 32, 128, 16), "learning_rate": ("float", 1e-4, 1e-2, "log"),
                    "dropout": ("float", 0.0, 0.5), "max_len": ("int", 20, 200, "log"), "num_blocks": ("int", 1, 3),
                    "num_negatives": ("int", 16, 512, "log"), "gbce_t": ("float", 0.0, 1.0)}

    def __init__(self, *, factors: int = 50, iterations: int | None = None, learning_rate: float = 3e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, num_negatives: int = 256, gbce_t: float = 0.75, l2: float = 0.0,
                 patience=None, eval_every: int | None = None, valid_negatives=None, random_state=0, device="auto"):
        super().__init__(factors=factors, iterations=iterations, learning_rate=learning_rate, batch_size=batch_size,
                         max_len=max_len, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, loss="gbce",
                         num_negatives=num_negatives, gbce_t=gbce_t, l2=l2, patience=patience, eval_every=eval_every,
                         valid_negatives=valid_negatives, random_state=random_state, device=device)


class BERT4Rec(SASRec):
    """BERT4Rec (Sun et al., CIKM 2019): a bidirectional encoder trained by masked-item
    prediction with full softmax over the catalogue; at inference a mask token is appended to
    the history and its output predicts the next item.

    Each training sequence (the user's last ``max_len`` items) has every position masked with
    probability ``mask_prob`` (at least one per sequence), and the loss is the cross-entropy of
    the masked items. Output layer: the shared item embeddings plus a per-item bias. Blocks
    are pre-norm with GELU feed-forward of width 4d.
    """

    search_space = {"factors": ("int", 32, 128, 16), "learning_rate": ("float", 1e-4, 1e-2, "log"),
                    "dropout": ("float", 0.0, 0.5), "max_len": ("int", 20, 200, "log"), "num_blocks": ("int", 1, 3),
                    "mask_prob": ("float", 0.1, 0.6)}

    causal = False

    def __init__(self, *, factors: int = 64, iterations: int | None = None, learning_rate: float = 1e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 2,
                 dropout: float = 0.1, mask_prob: float = 0.2, l2: float = 0.0, patience=None, eval_every: int | None = None,
                 valid_negatives=None, random_state=0, device="auto"):
        super().__init__(factors=factors, iterations=iterations, learning_rate=learning_rate, batch_size=batch_size,
                         max_len=max_len, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, loss="softmax",
                         l2=l2, patience=patience, eval_every=eval_every, valid_negatives=valid_negatives,
                         random_state=random_state, device=device)
        self.mask_prob = mask_prob

    def _check_params(self):
        super()._check_params()
        if not (isinstance(self.mask_prob, (int, float)) and 0 < self.mask_prob < 1):
            raise ValueError(f"mask_prob == {self.mask_prob!r}, must be in (0, 1).")

    def _min_length(self) -> int:
        return 1

    def _widths(self, lengths: np.ndarray) -> np.ndarray:
        return np.minimum(lengths, self.max_len)

    def _batch_loss(self, rows, gen):
        net, dev, L = self.net_, self.device_, self.max_len
        lengths = self.hist_indptr_[rows + 1] - self.hist_indptr_[rows]
        groups, targets = [], []
        for g in length_groups(self._widths(lengths)):
            (seq,), offset = trim(pad_left(self.hist_indptr_, self.hist_items_, rows[g], L))
            seq = torch.as_tensor(seq, device=dev)
            masked = (torch.rand(seq.shape, generator=gen, device=dev) < self.mask_prob) & (seq > 0)
            # at least one masked position per sequence: the last one when none was drawn
            masked[~masked.any(dim=1), -1] = True
            groups.append((seq.masked_fill(masked, self.n_items_ + 1), masked, offset))
            targets.append(seq[masked] - 1)
        embs = gather_rows(net.item.weight, [inp for inp, _, _ in groups])
        h = torch.cat([net(inp, offset, emb=e)[masked] for (inp, masked, offset), e in zip(groups, embs)])
        t = torch.cat(targets)
        return F.cross_entropy(net.logits(h).float(), t, reduction="sum"), int(t.numel())

    def _query_input(self, indptr, items, rows) -> np.ndarray:
        # the last max_len - 1 items, then the mask token
        inp = pad_left(indptr, items, rows, self.max_len - 1) if self.max_len > 1 else np.zeros((rows.size, 0), np.int64)
        tail = np.full((rows.size, 1), self.n_items_ + 1, np.int64)
        return np.hstack([inp, tail])
