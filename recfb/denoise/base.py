from __future__ import annotations

import torch


class Denoiser:
    """Base of the noisy-label denoisers. The training loop calls

    - ``setup(users, items, n_users, n_items, total_steps)`` once before training, with the
      training interactions as COO tensors (row ``k`` is interaction index ``k``) and the
      number of optimisation steps the run will take (for warm-up schedules);
    - ``negative_weights(neg_scores (B, n), step) -> (B, n) or None`` before the objective
      (R-CE reweights negatives too; ``None`` leaves them alone);
    - ``weights(losses, scores, step, index) -> (B,)`` weights for the batch's positives:
      ``losses`` are the detached per-positive losses, ``scores`` the detached positive scores,
      ``index`` the interaction indices (for per-interaction statistics).

    ``noise_scores()`` returns one number per training interaction, higher meaning "more
    likely noise" by the method's own criterion (for precision/recall of its decisions).
    """

    def setup(self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, total_steps: int) -> None:
        self.n_interactions = int(users.numel())
        self.total_steps = int(total_steps)

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
