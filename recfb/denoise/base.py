"""The one protocol of the noisy-label denoisers (:class:`Denoiser`), called by the pair
training step (:mod:`recfb.train.step`) and the loop (:class:`recfb.train.Trainer`).

A denoiser may act at three points of a step, each optional: it may **resample** the batch's
positives before scoring (PLD), weight the batch's **negatives** (R-CE), and weight the
batch's **positives** from their losses (T-CE's mask, R-CE's weights). Every method is
vectorised over the batch.
"""
from __future__ import annotations

import torch


class Denoiser:
    """Base of the noisy-label denoisers. The training loop calls

    - ``bind(objective)`` once, when the training step is built with the run's objective;
    - ``setup(users, items, n_users, n_items, total_steps)`` once before training, with the
      training interactions as COO tensors (row ``k`` is interaction index ``k``) and the
      number of optimisation steps the run will take (for warm-up schedules);
    - ``resample(index, step, generator, epoch, step_number) -> index`` before each batch is
      scored: may replace the batch's interaction indices (PLD draws each slot's positive from
      a pool of its user's positives by their losses, which ``step.candidate_losses`` gives
      under the current model); the default keeps them;
    - ``negative_weights(neg_scores (B, n), step) -> (B, n) or None`` before the objective
      (R-CE reweights negatives; ``None`` leaves them alone). A denoiser that returns weights
      sets ``reweights_negatives = True``, and the step refuses objectives that cannot apply
      them;
    - ``weights(losses, scores, step, index) -> (B,)`` weights for the batch's positives:
      ``losses`` are the detached per-positive losses, ``scores`` the detached positive scores,
      ``index`` the interaction indices (for per-interaction statistics).

    - ``kernel_inputs(users, order, negatives, generator, epoch) -> dict or None`` on the
      compiled kernel's path (``optimizer="fused_sgd"``), for a denoiser the kernel implements:
      the random draws it needs for the samples ``order`` of this epoch, from the loop's
      generator (PLD's pools, negatives and Gumbel noise); ``None``: none. The loop hands the
      kernel at most ``kernel_span`` samples per call (``None``: the whole epoch), so the draws
      stay bounded in memory.

    ``noise_scores()`` returns one number per training interaction, higher meaning "more
    likely noise" by the method's own criterion (for precision/recall of its decisions).
    ``state_dict()`` / ``load_state_dict()`` hold what a checkpoint must keep.
    """

    #: True when :meth:`negative_weights` returns weights (the objective must apply them)
    reweights_negatives = False

    def reweights_negatives_for(self, objective) -> bool:
        """Whether this run weights ``objective``'s negatives (the step then calls
        :meth:`negative_weights`, and refuses an objective that cannot apply them)."""
        return self.reweights_negatives

    def bind(self, objective) -> None:
        """Called by the training step with the run's objective before training: a denoiser
        whose rule depends on the objective (T-CE's criterion) resolves it here."""

    def setup(self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, total_steps: int) -> None:
        self.n_interactions = int(users.numel())
        self.total_steps = int(total_steps)

    def resample(self, index: torch.Tensor, step, generator: torch.Generator, epoch: int,
                 step_number: int) -> torch.Tensor:
        return index

    #: samples per kernel call when :meth:`kernel_inputs` draws per sample (None: the epoch)
    kernel_span = None

    def kernel_inputs(self, users: torch.Tensor, order: torch.Tensor, negatives, generator: torch.Generator,
                      epoch: int):
        return None

    def negative_weights(self, neg_scores: torch.Tensor, step: int):
        return None

    def weights(self, losses: torch.Tensor, scores: torch.Tensor, step: int, index: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)

    def noise_scores(self):  # pragma: no cover - methods override
        raise NotImplementedError(f"{type(self).__name__} keeps no per-interaction noise score.")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
