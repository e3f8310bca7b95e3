"""Position-based examination model fitted by regression-EM (Wang et al., WSDM 2018).

"Position Bias Estimation for Unbiased Learning to Rank in Personal Search": a click on the
item shown at position ``k`` happens when the position is examined and the item is relevant,

    P(click | q, d, k) = theta_k * gamma_qd,

and EM recovers the examination propensities ``theta_k`` from the click log alone. They give
IPS weights ``1 / theta_k`` for counterfactual learning from ranked clicks (as in
CoRocchio's counterfactual dense-retrieval feedback).
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import minimize

from recfb.utils.errors import DataError, NotFittedError
from recfb.utils.validation import check_positive_int

__all__ = ["PositionBasedModel"]

_EPS = 1e-9


class PositionBasedModel:
    """Examination propensities per rank position, fitted by (regression-)EM.

    E-step: for an unclicked row at position ``k``,
    ``P(E=1, R=0 | C=0) = theta_k (1 - gamma) / (1 - theta_k gamma)`` and
    ``P(E=0, R=1 | C=0) = (1 - theta_k) gamma / (1 - theta_k gamma)``; clicked rows are examined
    and relevant. M-step: ``theta_k`` = mean posterior examination of the rows at ``k``;
    ``gamma`` = mean posterior relevance of each (query, item) pair, or, when ``features`` are
    given (regression-EM), a logistic regression of the posterior relevance on the row features
    (soft labels, where the paper samples binary labels and fits a GBDT).

    Parameters
    ----------
    iterations : int, default 100
    tol : float, default 1e-6
        Stop when no ``theta_k`` moves by more than ``tol``.
    l2 : float, default 1.0
        L2 strength of the relevance regression (``features`` only).

    Attributes
    ----------
    examination_ : ndarray (n_positions,)
        Fitted ``theta_k`` (position ``k`` at index ``k - 1``).
    propensity_ : ndarray (n_positions,)
        ``theta_k / theta_1``: relative propensities (the scale of ``theta`` and ``gamma`` is not
        identified by clicks alone), the usual IPS convention.
    n_iter_ : int
    """

    def __init__(self, iterations: int = 100, tol: float = 1e-6, l2: float = 1.0):
        self.iterations = iterations
        self.tol = tol
        self.l2 = l2

    def fit(self, queries, items, positions, clicks, features=None) -> PositionBasedModel:
        """Fit on a ranked click log: one row per shown (query or user, item, position >= 1, click 0/1)."""
        iterations = check_positive_int(self.iterations, "iterations")
        if not (isinstance(self.tol, numbers.Real) and self.tol >= 0):
            raise ValueError(f"tol == {self.tol!r}, must be >= 0.")
        q, d, k, c = (np.asarray(a) for a in (queries, items, positions, clicks))
        n = q.size
        for arr, name in ((q, "queries"), (d, "items"), (k, "positions"), (c, "clicks")):
            if arr.ndim != 1 or arr.size != n:
                raise DataError(f"{name} must be 1-D with one entry per row ({n}), got shape {arr.shape}.")
        if n == 0:
            raise DataError("the click log is empty.")
        if not np.issubdtype(k.dtype, np.integer):
            if not np.all(np.isfinite(k)) or np.any(k != np.round(k)):
                raise DataError("positions must be integers >= 1.")
            k = k.astype(np.int64)
        if k.min() < 1:
            raise DataError(f"position == {int(k.min())} at row {int(np.argmin(k))}, positions must be >= 1 "
                            "(1 = top of the list).")
        c = c.astype(np.float64)
        if not np.isin(c, (0.0, 1.0)).all():
            bad = c[~np.isin(c, (0.0, 1.0))][0]
            raise DataError(f"clicks == {bad}, must be 0 or 1.")
        if c.sum() == 0:
            raise DataError("the click log has no clicks; examination cannot be estimated.")
        n_pos = int(k.max())
        kk = k - 1
        count_k = np.bincount(kk, minlength=n_pos).astype(np.float64)
        if features is not None:
            X = np.asarray(features, dtype=np.float64)
            if X.ndim != 2 or X.shape[0] != n:
                raise DataError(f"features must be 2-D with one row per log row ({n}), got shape {X.shape}.")
            X = np.hstack([X, np.ones((n, 1))])
            coef = np.zeros(X.shape[1])
        else:
            _, pair = np.unique(np.stack([q.astype(np.int64), d.astype(np.int64)]), axis=1, return_inverse=True)
            pair = pair.ravel()
            count_pair = np.bincount(pair).astype(np.float64)
        theta = np.full(n_pos, 0.5)
        gamma = np.full(n, 0.5)
        n_iter = 0
        for _ in range(iterations):  # EM iterations; every step is vectorised over rows
            t = theta[kk]
            denom = np.maximum(1 - t * gamma, _EPS)
            exam = c + (1 - c) * t * (1 - gamma) / denom
            rel = c + (1 - c) * (1 - t) * gamma / denom
            new_theta = np.bincount(kk, exam, n_pos) / np.maximum(count_k, 1)
            new_theta = np.where(count_k > 0, new_theta, theta)
            if features is None:
                gamma = (np.bincount(pair, rel) / count_pair)[pair]
            else:
                coef = self._regress(X, rel, coef)
                gamma = 0.5 * (1 + np.tanh(0.5 * (X @ coef)))
            gamma = np.clip(gamma, _EPS, 1 - _EPS)
            n_iter += 1
            done = np.max(np.abs(new_theta - theta)) <= self.tol
            theta = np.clip(new_theta, _EPS, 1.0)
            if done:
                break
        self.examination_ = theta
        self.propensity_ = theta / theta[0]
        self.n_iter_ = n_iter
        self.relevance_ = gamma
        return self

    def _regress(self, X, target, coef):
        l2 = float(self.l2)

        def objective(w):
            z = X @ w
            loss = np.sum(np.logaddexp(0, z) - target * z) + 0.5 * l2 * (w[:-1] @ w[:-1])
            grad = X.T @ (0.5 * (1 + np.tanh(0.5 * z)) - target)
            grad[:-1] += l2 * w[:-1]
            return loss, grad
        return minimize(objective, coef, jac=True, method="L-BFGS-B").x

    def weights(self, positions, clip=None) -> np.ndarray:
        """IPS weights ``1 / max(theta_k / theta_1, clip)`` of rows shown at ``positions``."""
        from recfb.debias.propensity import check_clip
        if not hasattr(self, "propensity_"):
            raise NotFittedError("PositionBasedModel is not fitted; call fit(...) first.")
        k = np.asarray(positions)
        if k.size and (k.min() < 1 or k.max() > self.propensity_.size):
            raise DataError(f"positions must be in 1..{self.propensity_.size} (the fitted positions), got "
                            f"{k.min()}..{k.max()}.")
        clip = check_clip(clip)
        p = self.propensity_[k.astype(np.int64) - 1]
        return 1.0 / (p if clip is None else np.maximum(p, clip))
