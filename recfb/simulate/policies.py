r"""Ranking policies that log the exact probability of every slot they fill.

A policy maps a block of score rows to ``k`` items per user and, for every slot ``p``, the
probability ``pi(i_p | i_1..i_(p-1))`` with which it put that item there *given the items
above it* (the quantity a logging system can record exactly; for slot 1 it is the marginal).
The probability of a whole list is the product over its slots. Items with score ``-inf`` are
ineligible (already clicked); a row with fewer than ``k`` eligible items gets id ``-1`` and
probability ``nan`` in the slots it cannot fill.

- :func:`topk_policy`: the ``k`` best items, probability 1 (ties broken by lower item id).
- :func:`softmax_policy`: Plackett-Luce sampling without replacement from
  ``softmax(scores / temperature)`` by the Gumbel-top-k trick (Kool et al., ICML 2019);
  ``pi(i_p | above) = exp(s_(i_p)/T) / sum_(j eligible, not above) exp(s_j/T)``.
- :func:`epsilon_greedy_policy`: each slot independently shows, with probability
  ``epsilon``, an item drawn uniformly from the eligible items not above, else the best of
  them; ``pi(i_p | above) = (1 - epsilon) [i_p = best] + epsilon / m_p`` with ``m_p`` the
  number of eligible items not above.

A user-supplied policy is any callable ``(scores, k, rng) -> (items, probabilities)`` with
the same shapes: ``scores`` (B, n_items) float64, ``items`` (B, k) int, ``probabilities``
(B, k) in (0, 1].
"""
from __future__ import annotations

import numbers

import numpy as np

from recfb.utils.errors import DataError

__all__ = ["topk_policy", "softmax_policy", "epsilon_greedy_policy", "make_policy", "check_policy_output",
           "examination_propensities"]

POLICIES = ("topk", "softmax", "epsilon")


def _eligible(scores: np.ndarray) -> np.ndarray:
    return scores > -np.inf  # NaN counts as ineligible too


def topk_policy(scores: np.ndarray, k: int, rng=None):
    """The ``k`` highest-scored eligible items in order; probability 1 per filled slot (ties
    broken by the lower item id)."""
    s = np.asarray(scores, np.float64)
    items = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return _finish(s, items, np.ones(items.shape), k)


def softmax_policy(scores: np.ndarray, k: int, rng, temperature: float = 1.0):
    """Plackett-Luce sample of ``k`` items from ``softmax(scores / temperature)`` (Gumbel-top-k)
    with the exact conditional probability of each slot."""
    logits = np.asarray(scores, np.float64) / float(temperature)
    eligible = _eligible(logits)
    B, n = logits.shape
    gumbel = np.where(eligible, logits - np.log(-np.log(rng.random((B, n)))), -np.inf)
    items = np.argsort(-gumbel, axis=1, kind="stable")[:, :k]
    # each slot's log-normaliser over what is left, relative to the best item left (never
    # total - prefix, which cancels catastrophically when the top items hold nearly all the mass)
    rows = np.arange(B)
    left = eligible.copy()
    probs = np.empty(items.shape)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for p in range(items.shape[1]):  # slots (k of them), each vectorised over users
            masked = np.where(left, logits, -np.inf)
            top = masked.max(axis=1)
            lse = top + np.log(np.exp(masked - top[:, None]).sum(axis=1))
            chosen = items[:, p]
            probs[:, p] = np.exp(logits[rows, chosen] - lse)
            left[rows, chosen] = False
    return _finish(logits, items, probs, k)


def epsilon_greedy_policy(scores: np.ndarray, k: int, rng, epsilon: float = 0.1):
    """Per slot: with probability ``epsilon`` a uniform eligible item not shown above, else the
    best such item; exact probability ``(1 - epsilon) [best] + epsilon / m_p``."""
    s = np.array(scores, np.float64)
    B, n = s.shape
    kk = min(k, n)
    left = _eligible(s)
    rows = np.arange(B)
    items = np.full((B, kk), -1, np.int64)
    probs = np.full((B, kk), np.nan)
    for p in range(kk):  # slots, each vectorised over users
        m = left.sum(axis=1)
        best = np.argmax(np.where(left, s, -np.inf), axis=1)
        uniform = np.argmax(np.where(left, rng.random((B, n)), -1.0), axis=1)
        explore = rng.random(B) < epsilon
        chosen = np.where(explore, uniform, best)
        has = m > 0
        items[has, p] = chosen[has]
        probs[has, p] = np.where(chosen[has] == best[has], 1 - epsilon, 0.0) + epsilon / m[has]
        left[rows[has], chosen[has]] = False
    return (items, probs) if kk == k else _pad(items, probs, k)


def _finish(scores, items, probs, k):
    """Mark slots holding an ineligible item as empty (-1, nan); pad to ``k`` columns."""
    filled = _eligible(np.take_along_axis(scores, items, axis=1))
    items = np.where(filled, items, -1).astype(np.int64)
    probs = np.where(filled, probs, np.nan)
    return (items, probs) if items.shape[1] == k else _pad(items, probs, k)


def _pad(items, probs, k):
    extra = k - items.shape[1]
    return (np.pad(items, ((0, 0), (0, extra)), constant_values=-1),
            np.pad(probs, ((0, 0), (0, extra)), constant_values=np.nan))


def make_policy(policy, *, temperature: float = 1.0, epsilon: float = 0.1):
    """``(scores, k, rng) -> (items, probabilities)`` for a policy name or callable."""
    if callable(policy):
        return policy
    if policy == "topk":
        return topk_policy
    if policy == "softmax":
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 < temperature < np.inf:
            raise ValueError(f"temperature == {temperature!r}, must be a finite number > 0.")
        return lambda scores, k, rng: softmax_policy(scores, k, rng, temperature=temperature)
    if policy == "epsilon":
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon == {epsilon!r}, must be in [0, 1].")
        return lambda scores, k, rng: epsilon_greedy_policy(scores, k, rng, epsilon=float(epsilon))
    raise ValueError(f"policy == {policy!r}, must be one of {POLICIES} or a callable "
                     "(scores, k, rng) -> (items, probabilities).")


def check_policy_output(out, scores: np.ndarray, k: int):
    """Validate what a policy returned: shapes, ids, no repeated item, eligible items only and
    probabilities in (0, 1] on filled slots. Returns ``(items int64, probabilities float64)``."""
    try:
        items, probs = out
    except (TypeError, ValueError):
        raise DataError("a policy must return (items, probabilities), two (B, k) arrays.") from None
    items, probs = np.asarray(items), np.asarray(probs, np.float64)
    B, n = scores.shape
    if items.shape != (B, k) or probs.shape != (B, k):
        raise DataError(f"the policy returned items {items.shape} and probabilities {probs.shape}; expected "
                        f"({B}, {k}) each (one row per user, one column per slot).")
    if not np.issubdtype(items.dtype, np.integer):
        raise DataError(f"the policy returned items of dtype {items.dtype}; expected integer item ids.")
    items = items.astype(np.int64)
    filled = items >= 0
    if items.size and (items.min() < -1 or items.max() >= n):
        raise DataError(f"the policy returned item ids {items.min()}..{items.max()}; expected 0..{n - 1} "
                        "(or -1 for an empty slot).")
    if filled.any():
        shown = scores[np.nonzero(filled)[0], items[filled]]
        if not _eligible(shown).all():
            raise DataError("the policy showed an ineligible item (score -inf: already clicked).")
        p = probs[filled]
        if not (np.all(np.isfinite(p)) and p.min() > 0 and p.max() <= 1 + 1e-9):
            raise DataError(f"the policy's probabilities must be in (0, 1] on filled slots; got "
                            f"{np.nanmin(p)}..{np.nanmax(p)}.")
    ordered = np.sort(np.where(filled, items, -1 - np.arange(k)), axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise DataError("the policy showed the same item twice in one list.")
    return items, np.where(filled, np.minimum(probs, 1.0), np.nan)


def examination_propensities(examination, k: int) -> np.ndarray:
    """Examination probability of slots ``1..k`` (position-based model).

    ``"position"``: ``1 / p`` (the usual DCG-like decay); ``"uniform"`` or ``None``: every slot
    examined; an array of at least ``k`` values in (0, 1] gives them directly.
    """
    if examination is None or (isinstance(examination, str) and examination == "uniform"):
        return np.ones(k)
    if isinstance(examination, str):
        if examination == "position":
            return 1.0 / np.arange(1, k + 1)
        raise ValueError(f"examination == {examination!r}, must be 'position', 'uniform' or an array of "
                         f"{k} probabilities in (0, 1].")
    theta = np.asarray(examination, np.float64).ravel()
    if theta.size < k:
        raise ValueError(f"examination has {theta.size} values, expected at least k = {k} (one per slot).")
    theta = theta[:k]
    if not (np.all(np.isfinite(theta)) and theta.min() > 0 and theta.max() <= 1):
        raise ValueError(f"examination values must be in (0, 1], got {theta.min()}..{theta.max()}.")
    return theta
