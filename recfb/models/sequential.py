"""Sequential recommenders: SASRec (Kang & McAuley, ICDM 2018) with BCE, gBCE (gSASRec,
Petrov & Macdonald, RecSys 2023), sampled-softmax and full-softmax losses, and BERT4Rec
(Sun et al., CIKM 2019).

Item ids inside the networks are shifted by one: 0 is padding, ``1..n_items`` the items and
``n_items + 1`` BERT4Rec's mask token. Histories are stored per user (packed as
``hist_indptr``/``hist_items``) and scoring takes the last ``max_len`` of them, so
``recommend`` keeps implicit's signature: ``user_items`` only filters.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from recfb.data.interactions import Interactions
from recfb.models.base import Recommender
from recfb.sampling.negative import VerifiedUniformNegatives
from recfb.utils.device import resolve_device
from recfb.utils.errors import DataError, NotFittedError
from recfb.utils.validation import check_positive_int

LOSSES = ("bce", "gbce", "sampled_softmax", "softmax")


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
    """Pre-norm self-attention block. SASRec: queries normalised, keys/values not (the
    original), ReLU feed-forward of width d. BERT4Rec: GELU feed-forward of width 4d."""

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
        # SASRec: residual on the normalised queries; the feed-forward's residual on its normalised input
        y = self.norm2(q + self.drop(a))
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

    def forward(self, seq, offset: int = 0):
        """``seq`` (B, W) left-padded ids; ``offset`` = how many leading columns of the
        ``max_len`` window were trimmed (positions stay those of the full window, so the last
        column is always position ``max_len - 1``). Padded keys are masked, so the output does
        not depend on how much padding a batch carries (batches are trimmed to their longest
        sequence)."""
        B, W = seq.shape
        pad = seq == 0
        x = self.item(seq) * math.sqrt(self.d) + self.pos.weight[offset:offset + W].unsqueeze(0)
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
    ``num_heads``, ``dropout``, ``loss``, ``num_negatives``, ``gbce_t``, ``patience`` and
    ``eval_every`` (early stopping on validation NDCG@10 with ``fit(..., valid=...)``).
    Mixed precision (bfloat16 autocast) is used on CUDA. Batches group users of similar length
    and are trimmed to their longest sequence; padded keys are masked, so this changes speed,
    not results.

    Histories: the fitted sequences are kept; :meth:`set_histories` replaces them (e.g. train
    + validation before testing) and ``recommend(..., histories=...)`` scores histories given at
    call time (users unseen at fit). ``user_factors`` / ``item_factors`` export the final hidden
    state of each stored history and the item embeddings for FAISS inner-product search.
    """

    causal = True

    def __init__(self, *, factors: int = 50, iterations: int = 200, learning_rate: float = 1e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, loss: str = "bce", num_negatives: int = 1, gbce_t: float = 0.75,
                 l2: float = 0.0, patience=None, eval_every: int = 1, random_state=0, device="auto"):
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
        self.random_state = random_state
        self.device = device

    needs_fitted_users = True

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        for name in ("factors", "iterations", "batch_size", "max_len", "num_blocks", "num_heads", "num_negatives",
                     "eval_every"):
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
            callbacks=(), time_limit: float | None = None, valid_users=None):
        """Train on ordered interactions; ``valid`` (one next item per user, same id space, e.g.
        ``leave_one_out``'s validation part) drives early stopping (``patience``) and the best
        epoch's weights are restored. ``checkpoint``/``resume`` as in the other models.
        ``time_limit`` (seconds) stops after the epoch that passes it, like early stopping (the
        best validated weights are kept); ``valid_users`` restricts validation to those users."""
        from recfb.train.loop import read_checkpoint, write_checkpoint

        self._check_params()
        indptr, items = self._sequences(interactions)
        n_users, n_items = interactions.n_users, interactions.n_items
        lengths = np.diff(indptr)
        trainable = np.flatnonzero(lengths >= self._min_length())
        if trainable.size == 0:
            raise DataError(f"no user has a sequence of at least {self._min_length()} items; nothing to train on.")
        self.n_users_, self.n_items_ = n_users, n_items
        self.hist_indptr_, self.hist_items_ = indptr, items
        self.device_ = resolve_device(self.device)
        dev = self.device_
        seed = 0 if self.random_state is None else int(self.random_state)
        torch.manual_seed(seed)
        gen = torch.Generator(device=dev).manual_seed(seed)
        net = SequenceEncoder(n_items, self.factors, self.max_len, self.num_blocks, self.num_heads, self.dropout,
                              causal=self.causal).to(dev)
        self.net_ = net
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, betas=(0.9, 0.98), weight_decay=self.l2)
        # negatives outside the user's history (SASRec's sampler); histories covering the whole
        # catalogue get unchecked uniform items
        self._history_negatives = VerifiedUniformNegatives(allow_full_users=True)
        self._history_negatives.setup(self._history_matrix(), dev)
        valid_X = None
        if valid is not None:
            valid_X = sp.csr_matrix(valid.with_id_space(interactions.user_map, interactions.item_map).matrix)
            if valid_X.shape != (n_users, n_items):
                raise DataError(f"valid has shape {valid_X.shape}, expected {(n_users, n_items)}.")
        hist_X = self._history_matrix()
        state = {"epoch": 0, "best": None, "best_epoch": None, "bad": 0, "best_weights": None}
        self.history_ = []
        fingerprint = self._fingerprint(indptr, items)
        if checkpoint is not None and resume:
            from pathlib import Path
            if Path(checkpoint).exists():
                payload = read_checkpoint(checkpoint, fingerprint)
                net.load_state_dict(payload["net"])
                opt.load_state_dict(payload["optimizer"])
                gen.set_state(payload["generator"])
                torch.set_rng_state(payload["torch_rng"])
                state.update(payload["state"])
                self.history_ = payload["history"]
        amp = dev.type == "cuda"
        t_start = time.perf_counter()
        bar = tqdm(total=self.iterations, initial=state["epoch"], disable=not show_progress, desc="epochs", leave=False)
        stop = False
        while state["epoch"] < self.iterations and not stop:
            t0 = time.perf_counter()
            net.train()
            # length-bucketed batches: users sorted by length (random ties), cut into batches that
            # are visited in random order, so a batch pads only to its own longest sequence
            perm = torch.randperm(trainable.size, generator=gen, device=dev).cpu().numpy()
            order = perm[np.argsort(np.minimum(lengths[trainable][perm], self.max_len + 1), kind="stable")]
            starts = np.arange(0, order.size, self.batch_size)
            total, n_pos = 0.0, 0
            for b in torch.randperm(starts.size, generator=gen, device=dev).cpu().numpy():
                rows = trainable[order[starts[b]:starts[b] + self.batch_size]]
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss, count = self._batch_loss(net, rows, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * count
                n_pos += count
            epoch = state["epoch"] + 1
            logs = {"epoch": epoch, "loss": total / max(n_pos, 1), "seconds": time.perf_counter() - t0,
                    "positions_per_s": n_pos / (time.perf_counter() - t0)}
            if not np.isfinite(logs["loss"]):
                raise FloatingPointError(f"training loss became {logs['loss']} in epoch {epoch}; lower the "
                                         f"learning rate ({self.learning_rate}).")
            if valid_X is not None and (epoch % self.eval_every == 0 or epoch == self.iterations):
                from recfb.evaluation import ranking_metrics
                net.eval()
                score = ranking_metrics(self, hist_X, valid_X, k=10, users=valid_users)["ndcg@10"]
                logs["valid"] = score
                if state["best"] is None or score > state["best"]:
                    state.update(best=score, best_epoch=epoch, bad=0, best_weights=copy.deepcopy(net.state_dict()))
                else:
                    state["bad"] += 1
                    if self.patience is not None and state["bad"] >= self.patience:
                        stop = True
            state["epoch"] = epoch
            if time_limit is not None and time.perf_counter() - t_start > time_limit:
                stop = True
            self.history_.append(logs)
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in logs.items() if k in ("loss", "valid")})
            if checkpoint is not None:
                write_checkpoint(checkpoint, fingerprint, {
                    "net": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(), "state": state, "history": self.history_})
            for cb in callbacks:
                cb(epoch, logs)
        bar.close()
        if state["best_weights"] is not None:
            net.load_state_dict(state["best_weights"])
        self.best_epoch_ = state["best_epoch"]
        net.eval()
        self._export()
        return self

    def _min_length(self) -> int:
        return 2  # one (input, target) pair

    def _fingerprint(self, indptr, items) -> str:
        h = hashlib.sha256()
        h.update(indptr.tobytes()[:1 << 20])
        h.update(items.tobytes()[:1 << 20])
        h.update(json.dumps(self.get_params(), sort_keys=True, default=str).encode())
        return h.hexdigest()

    def _negatives(self, users, n, gen, exclude_history: bool):
        """(len(users), n) uniform items; with ``exclude_history`` none in the user's history."""
        if exclude_history:
            return self._history_negatives.sample(users, n, gen)
        return torch.randint(0, self.n_items_, (users.numel(), n), generator=gen, device=users.device)

    def _batch_loss(self, net, rows, gen):
        dev = self.device_
        L = self.max_len
        (inp, tgt), offset = trim(pad_left(self.hist_indptr_, self.hist_items_, rows, L, drop_last=1),
                                  pad_left(self.hist_indptr_, self.hist_items_, rows, L, drop_first=1))
        inp, tgt = torch.as_tensor(inp, device=dev), torch.as_tensor(tgt, device=dev)
        h = net(inp, offset)
        valid = tgt > 0
        hv = h[valid]  # (P, d)
        t = tgt[valid] - 1  # item ids
        users = torch.as_tensor(rows, device=dev).unsqueeze(1).expand(-1, tgt.shape[1])[valid]
        V = net.item_vectors()
        if self.loss == "softmax":
            loss = F.cross_entropy(net.logits(hv).float(), t)
            return loss, int(t.numel())
        k = self.num_negatives
        s_pos = (hv * V[t]).sum(-1).float()
        if self.loss == "bce":  # the original: per position, outside the user's history
            neg = self._negatives(users, k, gen, exclude_history=True)
            s_neg = torch.bmm(V[neg], hv.unsqueeze(2)).squeeze(2).float()
        else:
            # k uniform negatives per sequence, shared by its positions: one (W, d) x (d, k)
            # product per sequence instead of gathering k vectors per position
            seq_neg = self._negatives(torch.as_tensor(rows, device=dev), k, gen, exclude_history=False)
            s_all = torch.bmm(h, V[seq_neg].transpose(1, 2))  # (B, W, k)
            s_neg = s_all[valid].float()
        if self.loss == "sampled_softmax":
            logits = torch.cat([s_pos.unsqueeze(1), s_neg], dim=1)
            loss = F.cross_entropy(logits, torch.zeros(t.numel(), dtype=torch.long, device=dev))
        else:
            beta = gbce_beta(k, self.n_items_, self.gbce_t) if self.loss == "gbce" else 1.0
            loss = (beta * F.softplus(-s_pos) + F.softplus(s_neg).sum(1)).mean()
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
        self.net_.eval()
        given = getattr(self, "_given_histories", None)
        if given is not None:
            indptr, items = given
            rows = np.arange(userids.size) + self._given_offset
            self._given_offset += userids.size
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
        self._given_histories, self._given_offset = (indptr, flat), 0
        saved, self.needs_fitted_users = self.needs_fitted_users, False
        try:
            return super().recommend(userid, user_items, N, filter_already_liked_items, filter_items,
                                     recalculate_user, items)
        finally:
            self._given_histories = None
            self.needs_fitted_users = saved

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

    def __init__(self, *, factors: int = 50, iterations: int = 200, learning_rate: float = 1e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, num_negatives: int = 256, gbce_t: float = 0.75, l2: float = 0.0,
                 patience=None, eval_every: int = 1, random_state=0, device="auto"):
        super().__init__(factors=factors, iterations=iterations, learning_rate=learning_rate, batch_size=batch_size,
                         max_len=max_len, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, loss="gbce",
                         num_negatives=num_negatives, gbce_t=gbce_t, l2=l2, patience=patience, eval_every=eval_every,
                         random_state=random_state, device=device)


class BERT4Rec(SASRec):
    """BERT4Rec (Sun et al., CIKM 2019): a bidirectional encoder trained by masked-item
    prediction with full softmax over the catalogue; at inference a mask token is appended to
    the history and its output predicts the next item.

    Each training sequence (the user's last ``max_len`` items) has every position masked with
    probability ``mask_prob`` (at least one per sequence), and the loss is the cross-entropy of
    the masked items. Output layer: the shared item embeddings plus a per-item bias. Blocks
    are pre-norm with GELU feed-forward of width 4d.
    """

    causal = False

    def __init__(self, *, factors: int = 64, iterations: int = 200, learning_rate: float = 1e-3,
                 batch_size: int = 128, max_len: int = 50, num_blocks: int = 2, num_heads: int = 2,
                 dropout: float = 0.1, mask_prob: float = 0.2, l2: float = 0.0, patience=None, eval_every: int = 1,
                 random_state=0, device="auto"):
        super().__init__(factors=factors, iterations=iterations, learning_rate=learning_rate, batch_size=batch_size,
                         max_len=max_len, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, loss="softmax",
                         l2=l2, patience=patience, eval_every=eval_every, random_state=random_state, device=device)
        self.mask_prob = mask_prob

    def _check_params(self):
        super()._check_params()
        if not (isinstance(self.mask_prob, (int, float)) and 0 < self.mask_prob < 1):
            raise ValueError(f"mask_prob == {self.mask_prob!r}, must be in (0, 1).")

    def _min_length(self) -> int:
        return 1

    def _batch_loss(self, net, rows, gen):
        dev = self.device_
        (seq,), offset = trim(pad_left(self.hist_indptr_, self.hist_items_, rows, self.max_len))
        seq = torch.as_tensor(seq, device=dev)
        real = seq > 0
        masked = (torch.rand(seq.shape, generator=gen, device=dev) < self.mask_prob) & real
        # at least one masked position per sequence: the last one when none was drawn
        none = ~masked.any(dim=1)
        masked[none, -1] = True
        inp = seq.masked_fill(masked, self.n_items_ + 1)
        h = net(inp, offset)
        t = seq[masked] - 1
        loss = F.cross_entropy(net.logits(h[masked]).float(), t)
        return loss, int(t.numel())

    def _query_input(self, indptr, items, rows) -> np.ndarray:
        # the last max_len - 1 items, then the mask token
        inp = pad_left(indptr, items, rows, self.max_len - 1) if self.max_len > 1 else np.zeros((rows.size, 0), np.int64)
        tail = np.full((rows.size, 1), self.n_items_ + 1, np.int64)
        return np.hstack([inp, tail])
