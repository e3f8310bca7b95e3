"""Saito's semi-synthetic protocol: true relevance from completed real ratings, exposure from a
popularity power law, clicks = exposure x relevance (Saito et al., WSDM 2020, Sec. 5)."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from recfb.utils.errors import DataError
from recfb.utils.validation import check_csr, check_positive_int, check_random_state

__all__ = ["SemiSyntheticWorld", "complete_ratings", "make_semi_synthetic"]


@dataclass
class SemiSyntheticWorld:
    """Arrays are users x items unless stated.

    Attributes
    ----------
    relevance_prob : ndarray float32
        ``gamma_ui = eps + (1 - eps) (2^(r_ui - 1) - 1) / (2^(r_max - 1) - 1)`` of the completed
        rating ``r_ui`` (Schnabel et al./Saito et al.'s transform).
    propensity : ndarray float32 in (0, 1]
        ``theta_ui = (n_i / max_j n_j) ** power`` from the item counts of the source ratings.
    train, valid : csr_matrix float32
        Clicks ``exposed & relevant`` of one seeded draw, split at random into train and
        validation (``valid_fraction``); a click log only, missing-not-at-random.
    completed : ndarray float32
        The completed ratings in [1, r_max].
    """

    relevance_prob: np.ndarray
    propensity: np.ndarray
    train: sp.csr_matrix
    valid: sp.csr_matrix
    completed: np.ndarray
    params: dict = field(default_factory=dict)


def complete_ratings(ratings, rank: int = 10, l2: float = 0.05, iterations: int = 300, seed=0) -> np.ndarray:
    """Complete a rating matrix with a biased low-rank model fitted on the observed entries only
    (full-batch Adam on squared error, seeded). Returns dense float32 in [min, max] rating.

    ``r_ui = mu + b_u + b_i + p_u . q_i``; ``l2`` penalises the biases as well as the factors
    (Koren's biased MF), so an item with one or two ratings is shrunk towards the mean instead
    of being completed at its few ratings for every user (unpenalised item biases made the
    least-rated items the most relevant of the semi-synthetic world)."""
    R = check_csr(ratings, "ratings", allow_empty=False)
    rank = check_positive_int(rank, "rank")
    rng = check_random_state(seed)
    coo = R.tocoo()
    u = torch.as_tensor(coo.row.astype(np.int64))
    i = torch.as_tensor(coo.col.astype(np.int64))
    r = torch.as_tensor(coo.data.astype(np.float32))
    n_users, n_items = R.shape
    init = rng.normal(0, 0.1, (n_users + n_items, rank)).astype(np.float32)
    P = torch.nn.Parameter(torch.as_tensor(init[:n_users]))
    Q = torch.nn.Parameter(torch.as_tensor(init[n_users:]))
    bu = torch.nn.Parameter(torch.zeros(n_users))
    bi = torch.nn.Parameter(torch.zeros(n_items))
    mu = float(r.mean())
    opt = torch.optim.Adam([P, Q, bu, bi], lr=0.05)
    for _ in range(iterations):  # full-batch optimisation steps
        pred = mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(1)
        loss = ((pred - r) ** 2).mean() + l2 * ((P.pow(2).mean() + Q.pow(2).mean()) * rank
                                                + bu.pow(2).mean() + bi.pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        full = mu + bu[:, None] + bi[None, :] + P @ Q.T
    return np.clip(full.numpy(), coo.data.min(), coo.data.max()).astype(np.float32)


def make_semi_synthetic(ratings, *, rank: int = 10, power: float = 1.0, epsilon: float = 0.1,
                        valid_fraction: float = 0.2, seed=0, completed=None) -> SemiSyntheticWorld:
    """Saito's semi-synthetic world from real ratings (e.g. MovieLens 100K).

    Parameters
    ----------
    ratings : csr_matrix, users x items, ratings 1..r_max
    rank : int, default 10
        Rank of the completion model (fitted once with ``seed``; pass ``completed`` to reuse).
    power : float >= 0, default 1.0
        Exponent of the popularity power law of exposure (0 = uniform, no MNAR).
    epsilon : float in [0, 1), default 0.1
        Floor of the relevance probability.
    valid_fraction : float in (0, 1), default 0.2
    seed : int, default 0
        Seeds the click draw and the split (and the completion when ``completed`` is None).
    """
    R = check_csr(ratings, "ratings", allow_empty=False)
    if not (isinstance(power, numbers.Real) and 0 <= power < np.inf):
        raise ValueError(f"power == {power!r}, must be a finite number >= 0.")
    if not (isinstance(epsilon, numbers.Real) and 0 <= epsilon < 1):
        raise ValueError(f"epsilon == {epsilon!r}, must be in [0, 1).")
    if not (isinstance(valid_fraction, numbers.Real) and 0 < valid_fraction < 1):
        raise ValueError(f"valid_fraction == {valid_fraction!r}, must be in (0, 1).")
    rng = check_random_state(seed)
    if completed is None:
        completed = complete_ratings(R, rank=rank, seed=seed)
    completed = np.asarray(completed, np.float32)
    if completed.shape != R.shape:
        raise DataError(f"completed has shape {completed.shape}, expected {R.shape}.")
    r_max = float(R.data.max())
    gamma = epsilon + (1 - epsilon) * (2.0 ** (completed - 1) - 1) / (2.0 ** (r_max - 1) - 1)
    counts = np.bincount(R.indices, minlength=R.shape[1]).astype(np.float64)
    theta_i = (np.maximum(counts, 1.0) / counts.max()) ** float(power)
    theta = np.broadcast_to(theta_i, R.shape).astype(np.float32)
    clicks = (rng.random(R.shape) < theta) & (rng.random(R.shape) < gamma)
    users, items = np.nonzero(clicks)
    is_valid = rng.random(users.size) < valid_fraction

    def csr(mask):
        return sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (users[mask], items[mask])), shape=R.shape)
    params = {"rank": rank, "power": float(power), "epsilon": float(epsilon), "valid_fraction": float(valid_fraction),
              "seed": seed if isinstance(seed, (numbers.Integral, type(None))) else "Generator"}
    return SemiSyntheticWorld(relevance_prob=gamma.astype(np.float32), propensity=np.ascontiguousarray(theta),
                              train=csr(~is_valid), valid=csr(is_valid), completed=completed, params=params)
