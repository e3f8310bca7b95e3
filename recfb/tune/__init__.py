"""Hyper-parameter tuning on Optuna: ``recfb.tune.search(model, train_X, valid_X, ...)``.

::

    from recfb.models import BPR
    from recfb import tune

    result = tune.search(BPR(iterations=50), train.matrix, valid.matrix, metric="ndcg@10", n_trials=30)
    result.best_params, result.best_value          # tuned values; metric of best_model on valid
    result.best_model.recommend(...)               # refitted with best_params
    result.trials                                  # pandas DataFrame: params, value, duration, state

- **Space**: each model class declares ``search_space`` next to its parameters in the spec
  format of :mod:`recfb.tune.space`; ``space=`` overrides it (same format, or a
  ``callable(trial) -> dict``). Parameters set explicitly on the model stay fixed.
- **Sampler and pruner**: TPE seeded by ``seed``; the embedding and sequential models
  validate after every epoch on the tuning metric (``fit(valid_metric=...)``), which feeds
  a median pruner, so bad trials stop early.
- **Protocols** (:mod:`recfb.tune.protocols`): ``"full"``, ``"sampled"``, ``"loo"``
  (sequential models), ``"ips"`` (MNAR validation log with propensities), ``"clean"``
  (denoisers), or instances with options (``Sampled(n_negatives=100)``,
  ``IPS(propensity=theta, ip_cap=100)``, ``FullRanking(fold_in=F)`` ...).
- **Storage**: ``storage="sqlite:///study.db"`` (any Optuna URL) or a journal file path;
  calling ``search`` again with the same storage and study name continues the study, and
  processes or machines sharing one storage tune together, each with its own ``seed``.
- **CLI**: ``recfb tune --dataset ml-100k --model bpr --trials 30 -o bpr.npz --plot tune.png``.
"""
from recfb.tune._search import TuneResult, build, explicit_params, open_storage, search
from recfb.tune.protocols import IPS, Clean, FullRanking, LeaveOneOut, Protocol, Sampled, make_protocol
from recfb.tune.space import check_space, suggest, to_distribution

__all__ = ["search", "TuneResult", "Protocol", "FullRanking", "Sampled", "LeaveOneOut", "IPS", "Clean",
           "make_protocol", "check_space", "to_distribution", "suggest", "explicit_params", "build", "open_storage",
           "plot"]


def plot(result, path, *, top: int = 10):
    """Draw the optimisation history and the parameter importances of ``result`` (a
    :class:`TuneResult` or an ``optuna.Study``) into one PNG at ``path``. Needs matplotlib."""
    from recfb.tune._plot import plot as _plot

    return _plot(result, path, top=top)
