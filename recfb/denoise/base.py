from __future__ import annotations

import torch


class Denoiser:
    """``weights(losses, scores, step, index) -> (B,)`` weights for the batch's positives.

    ``losses`` are the detached per-positive losses, ``scores`` the detached positive scores,
    ``step`` the global optimisation step (for warm-up schedules), ``index`` the interaction
    indices (for methods that keep per-interaction statistics).
    """

    def weights(self, losses: torch.Tensor, scores: torch.Tensor, step: int, index: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
