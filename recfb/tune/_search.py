"""``recfb.tune.search``: Optuna's TPE over a model's search space, pruned by the training
loop's per-epoch validation, resumable and shareable through an Optuna storage."""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field

from recfb.tune.protocols import make_protocol
from recfb.tune.space import check_space, component_params, component_space, split_name, suggest


@dataclass
class TuneResult:
    """What :func:`search` found.

    Attributes
    ----------
    best_params : dict
        The tuned parameters of the best completed trial (the parameters fixed on the model
        passed in are not repeated here; ``best_model.get_params()`` has them all). A
        component's parameter is keyed ``component__parameter`` (``"denoise__beta"``).
    best_value : float
        The validation metric of ``best_model`` on ``valid_X``.
    best_model : Recommender
        A fresh copy of the model, fitted with ``best_params`` on ``train_X`` as the trials were.
    study : optuna.Study
        The study (with every trial of the storage, other processes' included).
    best_trial_value : float
        The best trial's own value; equal to ``best_value`` when training is deterministic.
    """

    best_params: dict
    best_value: float
    best_model: object
    study: object
    best_trial_value: float = float("nan")
    metric: str = ""
    protocol: object = None
    fixed_params: dict = field(default_factory=dict)

    @property
    def trials(self):
        """pandas DataFrame, one row per trial: ``number``, ``value``, ``duration``, ``state``
        and one ``params_<name>`` column per tuned parameter."""
        try:
            import pandas  # noqa: F401
        except ImportError:  # pragma: no cover - pandas is in the dev extra
            raise ImportError("TuneResult.trials needs pandas: pip install pandas") from None
        return self.study.trials_dataframe(attrs=("number", "value", "duration", "state", "params"))

    def best_trials(self, n: int = 5):
        """The ``n`` best completed trials as a DataFrame (best first)."""
        df = self.trials
        df = df[df["state"] == "COMPLETE"]
        return df.sort_values("value", ascending=False).head(n)


def search(model, train_X, valid_X, *, metric: str = "ndcg@10", n_trials: int | None = 50, timeout=None,
           space=None, seed: int = 0, storage=None, study_name: str | None = None, protocol="full",
           show_progress: bool = True, pruner=None, refit: bool = True, start_from_model: bool = True,
           **fit_kwargs) -> TuneResult:
    """Tune ``model``'s hyper-parameters on a validation split with Optuna.

    Each trial builds a fresh copy of ``model`` with parameters from the search space, fits
    it on ``train_X`` and scores it on ``valid_X`` by ``metric`` under ``protocol``. The
    sampler is Optuna's TPE (seeded); the embedding and sequential models validate after
    every epoch on the same metric, which feeds a median pruner (bad trials stop early) and
    restores each trial's best epoch. At the end the best parameters are refitted (same seed,
    same fit) into ``best_model``.

    Parameters
    ----------
    model : Recommender
        An unfitted recfb model. Parameters set explicitly on it (different from the class
        default) stay fixed and are removed from the search space; to fix one at its default,
        pass a ``space`` without it.
    train_X, valid_X : csr_matrix (users x items), or Interactions
        The training data and the validation split (never the test split). With
        ``protocol="loo"`` (sequential models) both are :class:`~recfb.data.Interactions`.
    metric : str, default "ndcg@10"
        ``name@k`` of the protocol's evaluator (see :mod:`recfb.tune.protocols`); maximised.
    n_trials : int, default 50
        Trials to run in this call (added to those already in the storage). None runs until
        ``timeout``.
    timeout : float, optional
        Seconds after which no new trial starts.
    space : dict or callable(trial) -> dict, optional
        Overrides ``type(model).search_space``: a dict in the spec format of
        :mod:`recfb.tune.space`, or a function of an ``optuna.Trial`` returning model
        parameters (for parameters that are objects: losses, denoisers). The default space is the
        model's, plus the declared space of each component it holds, prefixed by the parameter
        that holds it: ``MF(denoise=RCE())`` also tunes ``"denoise__beta"``. A dict may name a
        component's parameter the same way. Parameters set on the model, or on its component
        (a value other than the component's default), stay fixed.
    seed : int, default 0
        Seed of the TPE sampler. For a resumed study it is mixed with the number of trials
        already there, so a continued study does not repeat its first trials; give each
        parallel process its own seed.
    storage : str, path or optuna storage, optional
        An Optuna storage URL (``"sqlite:///study.db"``, ``"postgresql://..."``), a journal
        file path (anything without ``://``, e.g. ``"study.log"``) or a storage object.
        Calling ``search`` again with the same storage and ``study_name`` continues the
        study, and several processes or machines pointed at one storage tune together
        (Optuna's distributed optimisation). None keeps the study in memory.
    study_name : str, optional
        Default ``"recfb-<Model>-<metric>"``.
    protocol : str or Protocol, default "full"
        ``"full"``, ``"sampled"``, ``"loo"``, ``"ips"``, ``"clean"`` or an instance of
        :class:`FullRanking`, :class:`Sampled`, :class:`LeaveOneOut`, :class:`IPS`,
        :class:`Clean` with its options.
    show_progress : bool, default True
        A tqdm bar over trials (with the best value so far).
    pruner : optuna pruner, optional
        Default ``MedianPruner(n_startup_trials=5, n_warmup_steps=w)`` with ``w = max(2,
        ceil(PRUNER_WARMUP_FRACTION * epochs))`` for the model's epochs as passed or derived
        (``iterations``; 2 where the model has none): no trial is stopped in the first half of
        its run. Earlier warm-ups stopped the slow starters of a 100-epoch cosine schedule (large
        factors, lower learning rates), the eventual winners: with a fixed 2 epochs T-CE and NBPO
        tied their defaults in 30 trials, and with a fifth T-CE and R-CE still tied once the
        denoiser's own knob joined the space, while unpruned they found +4.1% and +4.8% and with
        half the run +5.5% (T-CE) on clean validation (benchmarks/tune_protocols_results.md,
        "Seventh session"). The cost is time: the pruned trials run longer. Nor is a trial stopped before its
        :data:`PRUNER_MIN_VALIDATIONS`-th validation: a model that validates every few epochs
        (the sequential models at ``iterations=None``, every ~100 optimiser steps, 8 epochs on a
        1,500-user log) would otherwise be judged on its first validation, which the epoch
        warm-up of an early-stopping model (2) does not cover. A pruner passed here is used
        as given. ``False`` disables pruning.
    start_from_model : bool, default True
        The first trial of a new study evaluates ``model``'s own values of the tuned parameters
        (those inside the space; a dict space only; a parameter left at None takes the value fit
        would derive, :meth:`~recfb.models.base.Recommender.derived_params`), so the result is
        never worse on validation than the model as passed. Only the call that creates the study enqueues it:
        workers joining a shared storage sample from their first trial.
    refit : bool, default True
        Fit ``best_model`` with the best parameters. False skips that fit (when the caller
        refits on train + validation anyway): ``best_model`` is None and ``best_value`` the
        best trial's value.
    **fit_kwargs
        Passed to every ``model.fit`` (``sample_weight``, ``item_features``, ``time_limit`` ...).

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        Unknown metric or protocol, a parameter that is not the model's, ``n_trials < 1``,
        ``timeout <= 0``, an unreachable storage.
    DataError
        Empty validation data.
    RuntimeError
        When no trial completed (all pruned or failed).
    """
    import optuna

    from recfb.models.base import Recommender

    if inspect.isclass(model) or not isinstance(model, Recommender):
        raise TypeError(f"model must be an unfitted recfb model instance such as BPR(), got {model!r}.")
    if n_trials is not None:
        if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral):
            raise TypeError(f"n_trials must be an int or None, got {n_trials!r}.")
        if n_trials < 1:
            raise ValueError(f"n_trials == {n_trials}, must be >= 1.")
    if timeout is not None and not (isinstance(timeout, numbers.Real) and not isinstance(timeout, bool)
                                    and timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout == {timeout!r}, must be None or seconds > 0.")
    if n_trials is None and timeout is None:
        raise ValueError("n_trials is None and timeout is None: the search would never end; give one of them.")
    for reserved in ("valid_items", "valid", "valid_metric", "callbacks", "show_progress"):
        if reserved in fit_kwargs:
            raise ValueError(f"fit argument {reserved!r} is set by recfb.tune.search (from valid_X and the "
                             "protocol); do not pass it.")
    proto = make_protocol(protocol)
    key, k = proto.parse_metric(metric)
    bound = proto.bind(model, train_X, valid_X)
    cls = type(model)
    fixed = explicit_params(model)
    space_fn, dists = _space(model, space, fixed)
    name = study_name or f"recfb-{cls.__name__}-{key}"

    store = open_storage(storage)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        n_before = _n_existing(store, name)
        sampler = optuna.samplers.TPESampler(seed=_sampler_seed(seed, n_before))
        derived = model.derived_params(bound.fit_X)
        if pruner is None:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5,
                                                 n_warmup_steps=pruner_warmup({**model.get_params(), **derived}))
            min_validations = PRUNER_MIN_VALIDATIONS
        else:
            min_validations = 1
        if pruner is False:
            pruner = optuna.pruners.NopPruner()
        # Creating the study is the one atomic step the storages offer (a unique name in RDB, the
        # ordered log in a journal): only the process whose create wins enqueues the model's own
        # parameters, so workers started together never both run the start trial.
        created = True
        try:
            try:
                study = optuna.create_study(storage=store, study_name=name, sampler=sampler, pruner=pruner,
                                            direction="maximize")
            except optuna.exceptions.DuplicatedStudyError:
                created = False
                study = optuna.load_study(storage=store, study_name=name, sampler=sampler, pruner=pruner)
        except Exception as exc:  # noqa: BLE001 - any storage failure: name the storage
            raise ValueError(f"storage {storage!r} is unreachable or not an Optuna storage: {exc}") from None
        _check_study(study, cls, key, proto)
        if start_from_model and dists and created:
            # the model's own values, with those it derives from the data at fit (None -> l2_ ...)
            own = {**model.get_params(), **derived, **_component_values(model, dists)}
            start = {n: v for n, v in own.items() if n in dists and _contains(dists[n], v)}
            if start:
                study.enqueue_trial(start)
        if dists is not None and not dists and n_trials is not None and n_trials > 1:
            warnings.warn(f"nothing to tune for {cls.__name__} (empty search space or every parameter fixed); "
                          "running one trial.", stacklevel=2)
            n_trials = 1

        def fit_score(trial_params, trial=None):
            m = build(model, trial_params)
            callbacks = [] if trial is None else [_pruning_callback(trial, min_validations)]
            valid_kwargs = bound.valid_kwargs(lambda fitted: float(bound.evaluate(fitted, (k,))[key]))
            if valid_kwargs:
                valid_kwargs["callbacks"] = callbacks
            m.fit(bound.fit_X, show_progress=False, **valid_kwargs, **fit_kwargs)
            return m, float(bound.evaluate(m, (k,))[key])

        def objective(trial):
            params = space_fn(trial)
            m, value = fit_score(params, trial)
            if getattr(m, "best_epoch_", None) is not None:
                trial.set_user_attr("best_epoch", int(m.best_epoch_))
            return value

        from tqdm.auto import tqdm

        bar = tqdm(total=n_trials, disable=not show_progress, desc=f"tuning {cls.__name__}", unit="trial")

        def progress(study, trial):
            bar.update(1)
            with contextlib.suppress(ValueError):  # ValueError: no completed trial yet
                bar.set_postfix({key: round(study.best_value, 4), "pruned": _count(study, "PRUNED")})

        try:
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(FloatingPointError,),
                           callbacks=[progress])
        finally:
            bar.close()
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            states = sorted({t.state.name for t in study.trials})
            raise RuntimeError(f"no trial completed ({len(study.trials)} trials, states {states}); widen the "
                               "search space, check the data, or pass pruner=False.")
        best = study.best_trial
        best_params = space_fn(optuna.trial.FixedTrial(best.params, best.number))
        best_model, best_value = fit_score(best_params) if refit else (None, float(best.value))
    finally:
        optuna.logging.set_verbosity(previous)
    if not math.isclose(best_value, best.value, rel_tol=1e-6, abs_tol=1e-9):
        warnings.warn(f"the refitted best model scores {key} {best_value:.6g} on valid_X but its trial scored "
                      f"{best.value:.6g}: training is not deterministic here (threads racing, or a trial "
                      "from another process on other hardware); best_value is the refitted model's.", stacklevel=2)
    return TuneResult(best_params=best_params, best_value=best_value, best_model=best_model, study=study,
                      best_trial_value=float(best.value), metric=key, protocol=proto, fixed_params=fixed)


# ---------------------------------------------------------------------- helpers
def explicit_params(model) -> dict:
    """The parameters of ``model`` that differ from its class defaults (``__init__``)."""
    sig = inspect.signature(type(model).__init__)
    out = {}
    for name, value in model.get_params().items():
        default = sig.parameters[name].default
        try:
            same = default is not inspect.Parameter.empty and bool(default == value)
        except (TypeError, ValueError):  # arrays and objects without a plain ==
            same = False
        if not same:
            out[name] = value
    return out


def build(model, params: dict):
    """A fresh, unfitted copy of ``model`` with ``params`` set (the originals untouched);
    ``component__parameter`` keys give the copy a new component (its ``denoise``) with that
    parameter changed and the others as they were."""
    base = copy.deepcopy(model.get_params())
    nested = {}
    for name, value in params.items():
        head, sub = split_name(name)
        if sub is None:
            base[name] = value
        else:
            nested.setdefault(head, {})[sub] = value
    for head, subs in nested.items():
        part = base[head]
        base[head] = type(part)(**{**component_params(part), **subs})
    return type(model)(**base)


def _component_values(model, dists) -> dict:
    """The current values of the ``component__parameter`` entries of ``dists`` on ``model``."""
    out = {}
    for name in dists:
        head, sub = split_name(name)
        if sub is not None:
            out[name] = getattr(getattr(model, head), sub)
    return out


def _space(model, space, fixed):
    """(callable(trial) -> params, distributions or None for a callable space)."""
    cls = type(model)
    if callable(space) and not isinstance(space, dict):
        valid = cls._param_names()

        def from_callable(trial):
            params = space(trial)
            if not isinstance(params, dict):
                raise TypeError(f"space(trial) must return a dict of model parameters, got {type(params).__name__}.")
            for p in params:
                if p not in valid:
                    raise ValueError(f"parameter {p!r} is not a parameter of {cls.__name__}; valid parameters: "
                                     f"{valid}.")
            return params
        return from_callable, None
    if space is None:
        dists = {n: d for n, d in check_space(getattr(cls, "search_space", {}), cls).items() if n not in fixed}
        # the components' own declared spaces (a denoiser's), as "denoise__beta"
        dists.update(check_space(component_space(model), cls, model))
    else:
        dists = check_space(space, cls, model)
        clash = sorted(set(dists) & set(fixed))
        if clash:
            raise ValueError(f"parameter {clash[0]!r} is set on the model ({fixed[clash[0]]!r}) and also in space; "
                             "remove it from one of them.")
    return (lambda trial: suggest(trial, dists)), dists


def _contains(dist, value) -> bool:
    """Whether ``value`` is a point of the Optuna distribution ``dist``."""
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return any(type(c) is type(value) and c == value for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(dist, od.IntDistribution) and not float(value).is_integer():
        return False
    if not dist.low <= value <= dist.high:
        return False
    step = getattr(dist, "step", None)
    return step is None or math.isclose((value - dist.low) / step, round((value - dist.low) / step), abs_tol=1e-9)


def _sampler_seed(seed, n_before: int):
    """``seed`` for a new study; mixed with the number of trials already stored for a resumed
    one, so that a continued study (or a second process with ``seed + 1``) does not repeat draws."""
    if seed is None or n_before == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([int(seed), int(n_before)]).generate_state(1)[0])


#: the fraction of a trial's epochs before the default pruner may stop it
PRUNER_WARMUP_FRACTION = 0.5
#: validations a trial reports before the default pruner may stop it: the sequential models at
#: their defaults validate every ~100 optimiser steps and stop after 16-24 validations on the
#: 1,500-user Beauty and Video logs (benchmarks/RESULTS.md, "The epoch rule after the plateau
#: fix"), a fifth of which is 3-5; a model validated every epoch meets it within the epoch warm-up
PRUNER_MIN_VALIDATIONS = 3


def pruner_warmup(params: dict) -> int:
    """Epochs before the default median pruner may stop a trial: ``max(2, ceil(0.5 *
    iterations))`` for a model with an epoch count (``params["iterations"]``, as passed or
    derived), else 2."""
    epochs = params.get("iterations")
    if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and epochs > 0:
        return max(2, math.ceil(PRUNER_WARMUP_FRACTION * int(epochs)))
    return 2


def _pruning_callback(trial, min_validations: int = 1):
    """An epoch callback that reports each validation to ``trial`` and, from the
    ``min_validations``-th on, stops the fit when the study's pruner says so."""
    import optuna

    seen = 0

    def report(epoch, logs):
        nonlocal seen
        if "valid" not in logs:
            return
        trial.report(float(logs["valid"]), epoch)
        seen += 1
        if seen >= min_validations and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (validation {logs['valid']:.6g})")
    return report


def _count(study, state: str) -> int:
    return sum(t.state.name == state for t in study.get_trials(deepcopy=False))


def open_storage(storage):
    """``None``, an Optuna storage, an RDB URL (``scheme://...``) or a journal file path ->
    an Optuna storage (or None); an unreachable one raises ``ValueError`` naming it."""
    import optuna

    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise TypeError(f"storage must be None, a URL, a journal file path or an optuna storage, got {storage!r}.")
    text = os.fspath(storage)
    try:
        if "://" in text:
            kwargs = {"connect_args": {"timeout": 60}} if text.startswith("sqlite") else None
            return optuna.storages.RDBStorage(text, engine_kwargs=kwargs)
        folder = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"folder {folder} does not exist")
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        return JournalStorage(JournalFileBackend(text))
    except Exception as exc:  # noqa: BLE001 - any failure to open: name the storage
        raise ValueError(f"storage {text!r} is unreachable: {type(exc).__name__}: {exc}") from None


def _n_existing(store, name) -> int:
    if store is None:
        return 0
    import optuna

    try:
        return len(optuna.load_study(study_name=name, storage=store).trials)
    except KeyError:  # no such study yet
        return 0


def _check_study(study, cls, key, proto) -> None:
    """A resumed study must be about the same model and metric."""
    attrs = study.user_attrs
    mine = {"recfb_model": cls.__name__, "recfb_metric": key, "recfb_protocol": proto.name}
    for attr, value in mine.items():
        if attr in attrs and attrs[attr] != value:
            raise ValueError(f"study {study.study_name!r} in this storage was made for {attr[6:]} "
                             f"{attrs[attr]!r}, not {value!r}; pass another study_name.")
        if attr not in attrs:
            study.set_user_attr(attr, value)
