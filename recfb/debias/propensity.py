"""Propensities of exposure and the inverse-propensity weights built from them.

A propensity ``theta_ui = P(item i was shown to user u)`` turns a click log ``Y = exposure *
relevance`` into unbiased estimates of relevance, ``E[Y_ui / theta_ui] = R_ui`` (Saito et
al., WSDM 2020). Small propensities make those estimates high-variance; the two standard
remedies are explicit options here:

- **clipping** (``clip=M``): ``theta -> max(theta, M)``, i.e. weights at most ``1 / M``;
  biased towards the naive estimate for items with ``theta < M``, bounded variance.
- **self-normalisation** (``self_normalize=True``, SNIPS): weights divided by their mean, so
  they average 1; consistent, not unbiased, and invariant to a global scale of ``theta``.
"""
from __future__ import annotations

import numbers

import numpy as np

from recfb.utils.errors import DataError
from recfb.utils.validation import check_clip, check_csr, check_propensity

__all__ = ["check_propensity", "check_clip", "clip_propensity", "popularity_propensity",
           "interaction_propensity", "ips_weights"]


def clip_propensity(propensity, clip=None) -> np.ndarray:
    """``max(theta, clip)`` (Saito et al.'s clipped estimator); ``clip=None`` leaves theta as is."""
    p = check_propensity(propensity)
    clip = check_clip(clip)
    return p if clip is None else np.maximum(p, clip)


def popularity_propensity(X, eta: float = 0.5) -> np.ndarray:
    """Item-popularity propensity of Saito et al. (WSDM 2020): ``theta_i = (n_i / max_j n_j) ** eta``.

    Parameters
    ----------
    X : csr_matrix, users x items
        The click log; ``n_i`` is the number of users who clicked item ``i``.
    eta : float >= 0, default 0.5
        0 gives uniform propensities (no debiasing); 1 proportional to popularity.

    Returns
    -------
    ndarray (n_items,), float64 in (0, 1]
        Items never clicked get the propensity of one click, ``(1 / max n) ** eta``, so every
        value stays a valid propensity (they carry no positive term in training anyway).
    """
    X = check_csr(X, "X")
    if isinstance(eta, bool) or not isinstance(eta, (numbers.Real, np.floating)) or not (0 <= eta < np.inf):
        raise ValueError(f"eta == {eta!r}, must be a finite number >= 0.")
    counts = np.bincount(X.indices[X.data != 0], minlength=X.shape[1]).astype(np.float64)
    top = counts.max() if counts.size else 0.0
    if top <= 0:
        raise DataError("X has no clicks; item-popularity propensities need at least one.")
    return (np.maximum(counts, 1.0) / top) ** float(eta)


def interaction_propensity(X, propensity) -> np.ndarray:
    """The propensity of each stored interaction of ``X``, in CSR order (for ``sample_weight``).

    ``propensity`` is per item ``(n_items,)`` or per pair ``(n_users, n_items)`` (dense).
    """
    X = check_csr(X, "X")
    p = check_propensity(propensity)
    users = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    if p.ndim == 1:
        if p.shape[0] != X.shape[1]:
            raise DataError(f"propensity has {p.shape[0]} entries, expected one per item ({X.shape[1]}).")
        return p[X.indices]
    if p.shape != X.shape:
        raise DataError(f"propensity has shape {p.shape}, expected (n_items,) = ({X.shape[1]},) or "
                        f"(n_users, n_items) = {X.shape}.")
    return p[users, X.indices]


def ips_weights(propensity, clip=None, self_normalize: bool = False, X=None) -> np.ndarray:
    """Inverse-propensity weights ``1 / max(theta, clip)``, optionally self-normalised (SNIPS).

    Parameters
    ----------
    propensity : array
        Propensities in (0, 1]; with ``X`` given, per item or per pair (see
        :func:`interaction_propensity`) and the weights come back per interaction of ``X``.
    clip : float in (0, 1], optional
        Lower bound on the propensity (weights at most ``1 / clip``).
    self_normalize : bool, default False
        Divide by the mean weight so the weights average 1 (SNIPS).
    X : csr_matrix, optional

    Examples
    --------
    IPS-weighted BPR through the generic per-interaction weights:

    >>> w = ips_weights(popularity_propensity(X), clip=0.1, self_normalize=True, X=X)  # doctest: +SKIP
    >>> MF(loss="bpr").fit(X, sample_weight=w)                                          # doctest: +SKIP
    """
    p = interaction_propensity(X, propensity) if X is not None else check_propensity(propensity)
    w = 1.0 / clip_propensity(p, clip)
    if self_normalize and w.size:
        w = w / w.mean()
    return w
