"""What one pair-training run is made of, in one place: :class:`TrainSpec`.

A model's ``_train_spec`` builds it (a scorer, an objective, a negative sampler, the loop
settings and the optional per-interaction weights and denoiser); :class:`recfb.train.Trainer`
runs it, and :class:`recfb.train.step.PairStep` computes every batch's loss from it. Reading
a model's ``_train_spec`` is reading what it trains.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recfb.losses.base import Objective


@dataclass
class TrainSpec:
    """One pair-training run.

    Attributes
    ----------
    scorer : recfb.train.Scorer
        The network (``batch_scores``, ``regularization``, ``post_step``, ``export``).
    objective : recfb.losses.Objective
    negatives : recfb.sampling.NegativeSampler
    config : recfb.train.TrainConfig
        Epochs, batch size, optimiser, learning rate and schedule, negatives per positive,
        patience, seed, checkpointing.
    weights : array (nnz,), optional
        Per-interaction sample weights in CSR order of the training matrix (IPS, confidence):
        they multiply each positive's loss.
    denoiser : recfb.denoise.Denoiser, optional
        Weights the batch's positives (T-CE, R-CE), its negatives (R-CE) and may resample the
        batch's positives (PLD); see :mod:`recfb.denoise.base`.
    """
    scorer: torch.nn.Module
    objective: Objective
    negatives: object
    config: object
    weights: np.ndarray | None = None
    denoiser: object | None = None
