"""One step of pair training: the only place a batch's loss is computed.

For a batch of interaction indices ``b`` (users ``u``, positives ``i``) with sampled
negatives ``j`` (B, n)::

    pos, neg            = scorer.batch_scores(u, i, j)
    pos_loss, neg_loss  = objective(pos, neg, batch)            # batch.neg_weights: denoiser
    loss = mean(w_b * d_b * pos_loss) + mean(neg_loss) + scorer.regularization(u, i, j)
           + objective.regularization()

``w_b`` are the per-interaction sample weights (IPS, confidence), ``d_b`` the denoiser's
weights of the batch's positives (T-CE's mask, R-CE's ``sigmoid(s)^beta``). A denoiser's
per-negative weights (R-CE's ``(1 - sigmoid(s_j))^beta``) travel on ``batch.neg_weights``
and are applied by the objective; an objective that cannot apply them
(``Objective.weights_negatives`` false) is refused when the step is built, never ignored
(``Denoiser.reweights_negatives_for(objective)`` says whether a run weights them).

PLD's resampling and the compiled kernels (``optimizer="fused_sgd"``) use this step too:
:meth:`PairStep.candidate_losses` is the loss of candidate positives under the objective.
"""
from __future__ import annotations

import torch

from recfb.losses.base import Batch
from recfb.utils.errors import InvalidParameterError


class PairStep:
    """The loss of a pair batch (see the module docstring).

    Parameters
    ----------
    scorer, objective, negatives, weights, denoiser
        As :class:`recfb.train.spec.TrainSpec` (``weights`` a float32 tensor on the device).
    num_negatives : int
        Negatives sampled per positive.
    users, items : int64 tensors (nnz,)
        The training interactions (COO rows of the CSR matrix, interaction index = position).
    """

    def __init__(self, scorer, objective, negatives, *, users, items, num_negatives=1, weights=None, denoiser=None):
        self.scorer, self.objective, self.negatives = scorer, objective, negatives
        self.users, self.items, self.num_negatives = users, items, int(num_negatives)
        self.weights, self.denoiser = weights, denoiser
        self.weights_negatives = denoiser is not None and denoiser.reweights_negatives_for(objective)
        if denoiser is not None:
            denoiser.bind(objective)
        if self.weights_negatives and not objective.weights_negatives:
            raise InvalidParameterError(
                f"{type(denoiser).__name__} reweights the sampled negatives, which the objective "
                f"{getattr(objective, 'name', objective)!r} cannot apply (it has no per-negative terms it could "
                f"weight); use loss='bpr' or 'bce', or {type(denoiser).__name__}(negatives=False) to weight the "
                "positives only.")

    def sample(self, index: torch.Tensor, generator: torch.Generator, step: int) -> Batch:
        """The batch of interactions ``index`` with freshly sampled negatives."""
        u = self.users[index]
        j = self.negatives.sample(u, self.num_negatives, generator)
        return Batch(u, self.items[index], j, index, step)

    def sample_shard(self, index: torch.Tensor, global_index: torch.Tensor, generator: torch.Generator, step: int,
                     rank: int, world_size: int) -> Batch:
        """:meth:`sample` for rank ``rank`` of ``world_size``, training on the stride shard of the
        epoch (:meth:`recfb.distributed.Comm.shard`): ``global_index`` is the global batch whose
        rows ``rank::world_size`` are ``index``'s interactions (the same users, even after a
        denoiser's resampling, which stays within a user). The negatives are drawn for the
        whole global batch from the generator every rank shares, and this rank keeps its rows:
        the ranks' negatives are one process's negatives for the global batch, and the
        generator stays in step on every rank."""
        j = self.negatives.sample(self.users[global_index], self.num_negatives, generator)[rank::world_size]
        return Batch(self.users[index], self.items[index], j, index, step)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch's scalar loss, the detached per-positive losses)."""
        pos, neg = self.scorer.batch_scores(batch.users, batch.items, batch.negatives)
        if self.weights_negatives:
            batch.neg_weights = self.denoiser.negative_weights(neg.detach(), batch.step)
        pos_loss, neg_loss = self.objective(pos, neg, batch)
        w = None if self.weights is None else self.weights[batch.index]
        if self.denoiser is not None:
            dw = self.denoiser.weights(pos_loss.detach(), pos.detach(), batch.step, batch.index)
            w = dw if w is None else w * dw
        pos_term = pos_loss.mean() if w is None else (w * pos_loss).mean()
        loss = (pos_term + neg_loss.mean() + self.scorer.regularization(batch.users, batch.items, batch.negatives)
                + self.objective.regularization())
        return loss, pos_loss.detach()

    @torch.no_grad()
    def candidate_losses(self, users: torch.Tensor, candidates: torch.Tensor, generator: torch.Generator,
                         index: torch.Tensor, step: int) -> torch.Tensor:
        """The objective's loss (B, k) of each candidate positive ``candidates`` (B, k items;
        ``index`` (B, k) their interaction indices) of users (B,) against one freshly sampled
        negative per user, under the current model (no gradient): PLD's pool losses."""
        k = candidates.shape[1]
        j = self.negatives.sample(users, 1, generator)
        # one scoring call: the negative as "positive" (B,) and the candidates as "negatives" (B, k)
        s_neg, s_cand = self.scorer.batch_scores(users, j[:, 0], candidates)
        batch = None
        if self.objective.needs_batch:
            batch = Batch(users.repeat_interleave(k), candidates.reshape(-1), j.repeat_interleave(k, dim=0),
                          index.reshape(-1), step)
        loss, _ = self.objective(s_cand.reshape(-1), s_neg.repeat_interleave(k).unsqueeze(1), batch)
        return loss.view(-1, k)
