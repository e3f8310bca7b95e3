"""Propensities from an exposure (impression) log: which items each user was shown."""
from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import minimize

from recfb.utils.errors import DataError, NotFittedError
from recfb.utils.validation import check_positive_int

__all__ = ["ExposurePropensity", "check_exposure_log"]

_EPS = 1e-6


def check_exposure_log(users, items, shown, n_users, n_items):
    """Validate an exposure log (equal lengths, ids inside the catalogue, ``shown`` in {0, 1})."""
    users = np.asarray(users)
    items = np.asarray(items)
    for arr, name, n in ((users, "users", n_users), (items, "items", n_items)):
        if arr.ndim != 1:
            raise DataError(f"{name} must be 1-D, got shape {arr.shape}.")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integer ids, got dtype {arr.dtype}.")
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = arr[(arr < 0) | (arr >= n)][0]
            raise DataError(f"exposure log has {name[:-1]} id {int(bad)} outside the catalogue 0..{n - 1} "
                            f"({name[:-1]}s must be internal ids < n_{name} == {n}).")
    if users.shape != items.shape:
        raise DataError(f"users and items must have the same length, got {users.size} and {items.size}.")
    if users.size == 0:
        raise DataError("the exposure log is empty.")
    if shown is None:
        shown = np.ones(users.size)
    shown = np.asarray(shown, dtype=np.float64)
    if shown.shape != users.shape:
        raise DataError(f"shown must have one entry per log row ({users.size}), got shape {shown.shape}.")
    bad = ~np.isin(shown, (0.0, 1.0))
    if bad.any():
        raise DataError(f"shown == {shown[bad][0]} at row {int(np.flatnonzero(bad)[0])}, must be 0 or 1.")
    return users.astype(np.int64), items.astype(np.int64), shown


class ExposurePropensity:
    """Per-pair exposure propensities ``theta_ui`` fitted on an impression log.

    The log lists candidate pairs ``(user, item, shown)``; with ``shown=None`` every row is an
    impression and every (user, item) pair of the catalogue is a candidate.

    - ``model="frequency"``: ``theta_ui = min(1, rate_i * activity_u)`` with the Beta-smoothed
      item rate ``rate_i = (shown_i + a * base) / (candidates_i + a)`` and the user's smoothed
      rate relative to the base rate, ``activity_u``; ``a = smoothing``.
    - ``model="logistic"``: ``theta_ui = sigmoid(mu + a_u + b_i)``, user and item effects fitted
      by L2-regularised maximum likelihood (L-BFGS; ``smoothing`` is the L2 strength).

    Parameters
    ----------
    model : {"frequency", "logistic"}, default "frequency"
    smoothing : float >= 0, default 1.0
    min_propensity : float in (0, 1], default 1e-3
        Floor of the returned propensities (they feed ``1 / theta``).

    Attributes
    ----------
    propensity_ : ndarray (n_users, n_items) float64, after ``fit``.
    """

    def __init__(self, model: str = "frequency", smoothing: float = 1.0, min_propensity: float = 1e-3):
        self.model = model
        self.smoothing = smoothing
        self.min_propensity = min_propensity

    def fit(self, users, items, shown=None, *, n_users: int, n_items: int) -> ExposurePropensity:
        if self.model not in ("frequency", "logistic"):
            raise ValueError(f"model == {self.model!r}, must be 'frequency' or 'logistic'.")
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, numbers.Real) or not self.smoothing >= 0:
            raise ValueError(f"smoothing == {self.smoothing!r}, must be a number >= 0.")
        if not (isinstance(self.min_propensity, numbers.Real) and 0 < self.min_propensity <= 1):
            raise ValueError(f"min_propensity == {self.min_propensity!r}, must be in (0, 1].")
        n_users = check_positive_int(n_users, "n_users")
        n_items = check_positive_int(n_items, "n_items")
        all_candidates = shown is None
        users, items, shown = check_exposure_log(users, items, shown, n_users, n_items)
        if all_candidates:  # rows are impressions: every pair is a candidate, the rows the shown ones
            shown_mat = np.zeros((n_users, n_items))
            np.add.at(shown_mat, (users, items), 1.0)
            shown_mat = np.minimum(shown_mat, 1.0)
            users, items = (a.ravel() for a in np.indices((n_users, n_items)))
            shown = shown_mat.ravel()
        fit = self._frequency if self.model == "frequency" else self._logistic
        theta = fit(users, items, shown, n_users, n_items)
        self.propensity_ = np.clip(theta, self.min_propensity, 1.0)
        return self

    def _frequency(self, users, items, shown, n_users, n_items):
        a = float(self.smoothing)
        base = shown.mean()
        if base <= 0:
            raise DataError("no row of the exposure log has shown == 1; propensities cannot be estimated.")
        item_rate = (np.bincount(items, shown, n_items) + a * base) / (np.bincount(items, minlength=n_items) + a + _EPS)
        user_rate = (np.bincount(users, shown, n_users) + a * base) / (np.bincount(users, minlength=n_users) + a + _EPS)
        item_rate = np.where(np.bincount(items, minlength=n_items) + a > 0, item_rate, base)
        user_rate = np.where(np.bincount(users, minlength=n_users) + a > 0, user_rate, base)
        return np.minimum(1.0, np.outer(user_rate / base, item_rate))

    def _logistic(self, users, items, shown, n_users, n_items):
        l2 = float(self.smoothing)

        def objective(w):
            mu, a, b = w[0], w[1:1 + n_users], w[1 + n_users:]
            z = mu + a[users] + b[items]
            p = 0.5 * (1 + np.tanh(0.5 * z))
            nll = np.sum(np.logaddexp(0, z) - shown * z)
            r = p - shown
            grad = np.concatenate([[r.sum()], np.bincount(users, r, n_users) + l2 * a,
                                   np.bincount(items, r, n_items) + l2 * b])
            return nll + 0.5 * l2 * (a @ a + b @ b), grad

        base = np.clip(shown.mean(), _EPS, 1 - _EPS)
        w0 = np.zeros(1 + n_users + n_items)
        w0[0] = np.log(base / (1 - base))
        res = minimize(objective, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        w = res.x
        z = w[0] + w[1:1 + n_users, None] + w[None, 1 + n_users:]
        return 0.5 * (1 + np.tanh(0.5 * z))

    def predict(self, users, items) -> np.ndarray:
        """Propensities of the pairs ``(users[k], items[k])``."""
        if not hasattr(self, "propensity_"):
            raise NotFittedError("ExposurePropensity is not fitted; call fit(users, items, shown, ...) first.")
        n_users, n_items = self.propensity_.shape
        users, items, _ = check_exposure_log(users, items, None, n_users, n_items)
        return self.propensity_[users, items]
