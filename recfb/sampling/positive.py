"""Positive samplers decide which interactions an epoch visits, in which order.

The hook that PLD-style denoisers need: ``observe(index, losses)`` receives the per-sample
losses of every batch, and ``epoch_indices`` may resample positives from what it observed.
"""
from __future__ import annotations

import torch


class PositiveSampler:
    """Base class. ``epoch_indices`` returns a 1-D int64 tensor of interaction indices (rows of
    the training COO arrays) to visit this epoch; ``observe`` is called after every batch."""

    def setup(self, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> None:
        self.users, self.items = users, items
        self.n_users, self.n_items = n_users, n_items

    def epoch_indices(self, epoch: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def refine(self, idx, scorer, objective, negatives, generator, epoch: int, step: int) -> torch.Tensor:
        """Called for every batch before scoring: may replace the batch's interaction indices
        (PLD resamples each slot's positive from a pool, using the current model)."""
        return idx

    def observe(self, index: torch.Tensor, losses: torch.Tensor) -> None:
        """Per-sample (detached) losses of the positives ``index`` in the last batch."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class AllPositives(PositiveSampler):
    """Every interaction once per epoch, in a fresh random order (the usual epoch)."""

    def epoch_indices(self, epoch, generator):
        return torch.randperm(self.users.numel(), generator=generator, device=generator.device)
