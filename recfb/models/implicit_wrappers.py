"""implicit's ALS and BPR behind the recfb contract, as peers in benchmarks.

The wrapped model is implicit's own CPU implementation; recfb only adds the common
parameter names, validation, persistence without pickle and the shared ``recommend``.
"""
from __future__ import annotations

import numpy as np

from recfb.models.base import Recommender
from recfb.utils.validation import check_positive_int


def _blas_single_thread():
    """implicit asks for single-threaded BLAS; limit it only while implicit runs."""
    import implicit.cpu.als  # noqa: F401  (load implicit's BLAS users before limiting)
    import implicit.cpu.bpr  # noqa: F401

    from recfb.utils.threads import single_thread_blas
    return single_thread_blas()


class _ImplicitFactorModel(Recommender):
    needs_fitted_users = True

    def _make(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, user_items, show_progress: bool = True):
        X = self._validate_fit_input(user_items)
        check_positive_int(self.factors, "factors")
        check_positive_int(self.iterations, "iterations")
        if self.random_state is not None:
            check_positive_int(self.random_state, "random_state", minimum=0)
        with _blas_single_thread():
            model = self._make()
            model.fit(X, show_progress=show_progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.model_ = model
        return self

    def _score(self, userids, user_items):
        return self.user_factors[userids] @ self.item_factors.T

    def _get_state(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_state(self, arrays):
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        self.model_ = None


class ImplicitALS(_ImplicitFactorModel):
    """implicit's conjugate-gradient ALS (Hu, Koren & Volinsky, ICDM 2008).

    Parameters follow implicit: ``factors``, ``regularization``, ``alpha`` (confidence
    ``alpha * x_ui``), ``iterations``, ``random_state``. With ``recalculate_user=True``
    a user unseen at fit is folded in from their row by one least-squares step.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`).
    search_space = {"factors": ("int", 16, 256, "log"), "regularization": ("float", 1e-3, 10.0, "log"),
                    "alpha": ("float", 0.1, 50.0, "log"), "iterations": ("int", 5, 30)}

    def __init__(self, *, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, random_state: int | None = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    supports_fold_in = True

    def _make(self):
        from implicit.cpu.als import AlternatingLeastSquares
        return AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                       iterations=self.iterations, random_state=self.random_state)

    def _score_call(self, userids, user_items, call):
        if call.recalculate:
            return self.fold_in(user_items) @ self.item_factors.T
        return self._score(userids, user_items)

    def fold_in(self, user_items) -> np.ndarray:
        """User factors for rows of ``user_items`` by implicit's ALS normal equations:
        ``(Y^T Y + reg I + Y^T (C_u - I) Y) x_u = Y^T C_u p_u`` with ``C_u = alpha * x_u``."""
        Y = self.item_factors.astype(np.float64)
        YtY = Y.T @ Y + self.regularization * np.eye(Y.shape[1])
        out = np.zeros((user_items.shape[0], Y.shape[1]), np.float32)
        X = user_items.tocsr()
        # one small solve per user of the request batch (inference-time fold-in, not training)
        for r in range(X.shape[0]):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            if hi == lo:
                continue
            conf = self.alpha * X.data[lo:hi].astype(np.float64)
            Yi = Y[X.indices[lo:hi]]
            A = YtY + (Yi.T * (conf - 1.0)) @ Yi
            out[r] = np.linalg.solve(A, Yi.T @ conf)
        return out


class ImplicitBPR(_ImplicitFactorModel):
    """implicit's Bayesian Personalised Ranking (Rendle et al., UAI 2009), SGD on CPU.

    ``num_threads=0`` uses every core (Hogwild updates, so runs are not bit-reproducible);
    ``num_threads=1`` with a ``random_state`` gives identical factors run after run.
    """

    #: Default space of :func:`recfb.tune.search` (spec format: :mod:`recfb.tune.space`).
    search_space = {"factors": ("int", 16, 256, "log"), "learning_rate": ("float", 1e-3, 0.1, "log"),
                    "regularization": ("float", 1e-5, 0.1, "log"), "iterations": ("int", 20, 200, "log")}

    def __init__(self, *, factors: int = 64, learning_rate: float = 0.01, regularization: float = 0.01,
                 iterations: int = 100, verify_negative_samples: bool = True, random_state: int | None = 0,
                 num_threads: int = 0):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.random_state = random_state
        self.num_threads = num_threads

    def _make(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        return BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                           regularization=self.regularization, iterations=self.iterations,
                                           verify_negative_samples=self.verify_negative_samples,
                                           random_state=self.random_state, num_threads=self.num_threads)
