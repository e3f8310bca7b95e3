"""Seeded synthetic worlds with known true relevance, exposure and noise.

A world is the generative story that implicit-feedback methods assume:

    relevance_prob[u, i] = sigmoid(signal * <p_u, q_i> / sqrt(rank) + b)      (low-rank logistic)
    propensity[u, i]     = min(1, c * activity_u * (popularity rank of i) ** -popularity_exponent)
    relevant ~ Bernoulli(relevance_prob),  exposed ~ Bernoulli(propensity)   (independent)
    click = exposed & relevant,  plus injected false-positive clicks (noise)

``b`` is set so the mean relevance is ``relevance_rate`` and ``c`` so the expected click rate
is ``density``: the observed data is missing-not-at-random (popular items are exposed far
more often) and, with ``noise_rate > 0``, noisy, while the truth stays available for
evaluating debiasing (``propensity``) and denoising (``noise_mask``) methods.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from recfb.data import IdMap, Interactions
from recfb.utils.validation import check_positive_int, check_random_state

__all__ = ["SyntheticWorld", "make_world"]

_MAX_CALIBRATION_CELLS = 200_000  # a mean over 200k cells is accurate to ~0.1%
_START_TIME = 1_600_000_000  # 2020-09-13, unix seconds


@dataclass
class SyntheticWorld:
    """A synthetic recommendation world; every array is users x items unless stated.

    Attributes
    ----------
    relevance_prob : ndarray (n_users, n_items), float32
        True probability that the user likes the item (low-rank logistic model).
    relevant : ndarray (n_users, n_items), bool
        Sampled true relevance.
    propensity : ndarray (n_users, n_items), float32 in (0, 1]
        Probability that the item is shown to the user (item-popularity power law times
        user activity).
    exposed : ndarray (n_users, n_items), bool
        Sampled exposure.
    clicks : Interactions
        The observed log, one row per click in time order (strictly increasing
        ``timestamps``), in the full ``n_users x n_items`` id space (external id = index).
        Clean clicks are exactly the pairs ``exposed & relevant``.
    noise_mask : ndarray (len(clicks),), bool
        True for the rows of ``clicks`` that are injected false positives.
    item_popularity : ndarray (n_items,), float64
        The power-law exposure weight of each item (1 for the most popular).
    user_factors, item_factors : ndarray (n, rank), float32
        The latent factors behind ``relevance_prob``.
    params : dict
        The arguments that made this world (``make_world(**params)`` rebuilds it).
    """

    relevance_prob: np.ndarray
    relevant: np.ndarray
    propensity: np.ndarray
    exposed: np.ndarray
    clicks: Interactions
    noise_mask: np.ndarray
    item_popularity: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.relevance_prob.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.relevance_prob.shape[1])

    @property
    def clean_clicks(self) -> Interactions:
        """The clicks without the injected noise (same id space)."""
        return self.clicks.subset(~self.noise_mask)

    def __repr__(self) -> str:
        return (f"SyntheticWorld({self.n_users:,} users x {self.n_items:,} items, {len(self.clicks):,} clicks "
                f"({int(self.noise_mask.sum()):,} noisy), click rate {len(self.clicks) / self.relevance_prob.size:.4f}, "
                f"mean relevance {float(self.relevance_prob.mean()):.3f})")


def _check_fraction(value, name: str, *, low_inclusive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        (0 <= value < 1) if low_inclusive else (0 < value < 1))
    if not ok:
        raise ValueError(f"{name} == {value!r}, must be in {'[0' if low_inclusive else '(0'}, 1).")
    return float(value)


def _bisect(f, target: float, lo: float, hi: float, iterations: int = 40) -> float:
    """x in [lo, hi] with f(x) ~= target, for f increasing."""
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def make_world(n_users: int = 1000, n_items: int = 500, rank: int = 8, density: float = 0.05,
               popularity_exponent: float = 1.0, noise_rate: float = 0.0, seed=0, *,
               relevance_rate: float = 0.2, signal: float = 2.0) -> SyntheticWorld:
    """Build a seeded synthetic world (see the module docstring for the model).

    Parameters
    ----------
    n_users, n_items : int, default 1000, 500
        Size of the world; arrays are dense, so memory is ~10 bytes per (user, item) cell.
    rank : int, default 8
        Dimension of the latent factors behind true relevance.
    density : float in (0, 1), default 0.05
        Target observed click rate (clicks / (n_users * n_items)), noise included. Exposure is
        scaled to reach it in expectation; it must be below ``relevance_rate``.
    popularity_exponent : float >= 0, default 1.0
        Exponent of the item-popularity power law of exposure; 0 means uniform exposure, larger
        means a stronger popularity bias (more missing-not-at-random).
    noise_rate : float in [0, 1), default 0.0
        Fraction of the clicks that are false positives, drawn uniformly from the pairs that
        are not ``exposed & relevant``.
    seed : int, numpy Generator or None, default 0
        Same int seed, same world (every array identical).
    relevance_rate : float in (0, 1), default 0.2
        Mean true relevance probability.
    signal : float >= 0, default 2.0
        Scale of the latent score in the relevance logit (0: relevance ignores the user).

    Returns
    -------
    SyntheticWorld

    Notes
    -----
    Every user gets at least one click: a user who drew none has their most likely click (the
    item maximising ``relevance_prob * propensity``) set exposed and relevant, which keeps
    ``clean clicks == exposed & relevant`` exact. Rows of ``clicks`` are in a random order
    with strictly increasing integer timestamps, so temporal splits and
    ``leave_one_out(by="timestamp")`` work.
    """
    n_users = check_positive_int(n_users, "n_users")
    n_items = check_positive_int(n_items, "n_items")
    rank = check_positive_int(rank, "rank")
    density = _check_fraction(density, "density")
    noise_rate = _check_fraction(noise_rate, "noise_rate", low_inclusive=True)
    relevance_rate = _check_fraction(relevance_rate, "relevance_rate")
    for value, name in ((popularity_exponent, "popularity_exponent"), (signal, "signal")):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < np.inf):
            raise ValueError(f"{name} == {value!r}, must be a finite number >= 0.")
    params = {"n_users": n_users, "n_items": n_items, "rank": rank, "density": density,
              "popularity_exponent": float(popularity_exponent), "noise_rate": noise_rate,
              "seed": seed if isinstance(seed, (numbers.Integral, type(None))) else "Generator",
              "relevance_rate": relevance_rate, "signal": float(signal)}
    rng = check_random_state(seed)
    n_cells = n_users * n_items

    # true relevance: low-rank logistic, intercept calibrated to the mean relevance
    user_factors = rng.standard_normal((n_users, rank)).astype(np.float32)
    item_factors = rng.standard_normal((n_items, rank)).astype(np.float32)
    logits = (user_factors @ item_factors.T) * np.float32(signal / np.sqrt(rank))
    # calibration uses every cell, or a random sample of them in bigger worlds
    sample = (np.sort(rng.choice(n_cells, _MAX_CALIBRATION_CELLS, replace=False))
              if n_cells > _MAX_CALIBRATION_CELLS else np.arange(n_cells))
    logit_sample = logits.reshape(-1)[sample].astype(np.float64)
    intercept = _bisect(lambda b: _sigmoid(logit_sample + b).mean(), relevance_rate, -50.0, 50.0)
    logits += np.float32(intercept)
    relevance_prob = _sigmoid(logits).astype(np.float32)
    del logits

    # exposure: item popularity power law x user activity, scaled to the target click rate
    item_popularity = (rng.permutation(n_items) + 1.0) ** -float(popularity_exponent)
    activity = rng.lognormal(0.0, 0.5, n_users)
    activity /= activity.mean()
    clean_rate = density * (1.0 - noise_rate)
    rel_sample = relevance_prob.reshape(-1)[sample].astype(np.float64)
    weight_sample = activity[sample // n_items] * item_popularity[sample % n_items]
    reachable = float(rel_sample.mean())
    if clean_rate >= 0.99 * reachable:
        raise ValueError(f"density == {density} (noise_rate {noise_rate}) is not reachable: even if every item "
                         f"were shown to every user the click rate would be about {reachable:.3f} "
                         f"(relevance_rate == {relevance_rate}). Lower density or raise relevance_rate.")
    log_scale = _bisect(lambda s: (np.minimum(1.0, np.exp(s) * weight_sample) * rel_sample).mean(),
                        clean_rate, -60.0, 60.0)
    propensity = np.outer(activity * np.exp(log_scale), item_popularity)
    propensity = np.clip(propensity, np.finfo(np.float32).tiny, 1.0).astype(np.float32)

    relevant = rng.random((n_users, n_items), dtype=np.float32) < relevance_prob
    exposed = rng.random((n_users, n_items), dtype=np.float32) < propensity
    clicked = relevant & exposed
    no_click = np.flatnonzero(~clicked.any(axis=1))
    if no_click.size:  # give each such user their most likely click, keeping clicked == exposed & relevant
        best = np.argmax(relevance_prob[no_click] * propensity[no_click], axis=1)
        relevant[no_click, best] = exposed[no_click, best] = clicked[no_click, best] = True

    # noise: false positives drawn uniformly from the pairs that are not clean clicks
    clean = np.flatnonzero(clicked.reshape(-1))
    n_noise = round(clean.size * noise_rate / (1.0 - noise_rate))
    if n_noise > n_cells - clean.size:
        raise ValueError(f"noise_rate == {noise_rate} asks for {n_noise:,} noisy clicks but only "
                         f"{n_cells - clean.size:,} unclicked pairs exist; lower noise_rate or density.")
    noise = rng.choice(np.flatnonzero(~clicked.reshape(-1)), n_noise, replace=False) if n_noise else \
        np.empty(0, np.int64)

    # one log in time order: clicks shuffled, then stamped with strictly increasing times
    cells = np.concatenate([clean, noise])
    order = rng.permutation(cells.size)
    cells = cells[order]
    noise_mask = order >= clean.size
    timestamps = _START_TIME + np.cumsum(rng.integers(1, 3600, cells.size))
    clicks = Interactions(cells // n_items, cells % n_items, None, timestamps,
                          user_map=IdMap(np.arange(n_users), "user ids"),
                          item_map=IdMap(np.arange(n_items), "item ids"), validate=False)
    return SyntheticWorld(relevance_prob=relevance_prob, relevant=relevant, propensity=propensity, exposed=exposed,
                          clicks=clicks, noise_mask=noise_mask, item_popularity=item_popularity,
                          user_factors=user_factors, item_factors=item_factors, params=params)
