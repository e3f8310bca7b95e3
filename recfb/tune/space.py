"""Search spaces: the declarative spec format models use for ``search_space``, its checks,
and the translation to Optuna distributions.

A space is a dict ``{parameter: spec}``; every key is an ``__init__`` parameter of the model
and every spec is one of

=====================================  ==================================================
``("int", low, high)``                 integers ``low..high`` (both included), uniform
``("int", low, high, "log")``          the same, log-uniform (``low >= 1``)
``("int", low, high, step)``           ``low, low + step, ...`` up to ``high``
``("float", low, high)``               uniform on ``[low, high]``
``("float", low, high, "log")``        log-uniform (``low > 0``)
``("float", low, high, step)``         ``low, low + step, ...`` up to ``high``
``("categorical", [c1, c2, ...])``     one of the choices: ``None``, bool, int, float or str
an ``optuna.distributions`` object     used as it is
=====================================  ==================================================

Model modules declare their spaces as plain tuples (no Optuna import there), e.g.
``{"factors": ("int", 16, 256, "log"), "loss": ("categorical", ["bpr", "bce"])}``. A value
that is not a primitive (a loss object, a denoiser) is tuned through a callable space,
``space=lambda trial: {"denoise": TCE(trial.suggest_float("drop_rate", 0.05, 0.4))}``.
"""
from __future__ import annotations

import inspect
import math
import numbers

KINDS = ("int", "float", "categorical")
_PRIMITIVES = (type(None), bool, int, float, str)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def to_distribution(name: str, spec):
    """The Optuna distribution of one spec (see the module docstring); a malformed spec raises
    ``ValueError`` naming the parameter, the spec and what was expected."""
    import optuna.distributions as od

    if isinstance(spec, od.BaseDistribution):
        return spec
    where = f"search space entry {name!r}: {spec!r}"
    if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
        raise ValueError(f"{where} must be a tuple whose first element is one of {KINDS} "
                         "(or an optuna distribution).")
    kind = spec[0]
    if kind == "categorical":
        if len(spec) != 2 or not isinstance(spec[1], (tuple, list)) or len(spec[1]) == 0:
            raise ValueError(f"{where}: a categorical spec is ('categorical', [choice, ...]) with at least one choice.")
        bad = [c for c in spec[1] if not isinstance(c, _PRIMITIVES)]
        if bad:
            raise ValueError(f"{where}: choice {bad[0]!r} is not None, bool, int, float or str; tune objects "
                             "through a callable space (space=lambda trial: {...}).")
        return od.CategoricalDistribution(list(spec[1]))
    if len(spec) not in (3, 4):
        raise ValueError(f"{where}: expected ({kind!r}, low, high) or ({kind!r}, low, high, 'log' | step).")
    low, high = spec[1], spec[2]
    option = spec[3] if len(spec) == 4 else None
    if not (_is_number(low) and _is_number(high)):
        raise ValueError(f"{where}: low and high must be finite numbers.")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ValueError(f"{where}: an int range needs integer bounds.")
    if not low <= high:
        raise ValueError(f"{where}: low == {low} must be <= high == {high}.")
    log, step = False, None
    if option == "log":
        log = True
        if low <= 0 or (kind == "int" and low < 1):
            raise ValueError(f"{where}: a log range needs low {'>= 1' if kind == 'int' else '> 0'}, got {low}.")
    elif option is not None:
        if not _is_number(option) or option <= 0 or (kind == "int" and not float(option).is_integer()):
            raise ValueError(f"{where}: the fourth element must be 'log' or a step > 0"
                             f"{' (an integer)' if kind == 'int' else ''}, got {option!r}.")
        step = option
    if kind == "int":
        return od.IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return od.FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def component_params(obj) -> dict:
    """``{name: value}`` of a component object's ``__init__`` parameters (a denoiser's), read
    from its attributes of the same names; an object that does not keep one raises ``TypeError``
    (it could not be rebuilt with one value changed)."""
    names = [n for n, p in inspect.signature(type(obj).__init__).parameters.items()
             if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise TypeError(f"{type(obj).__name__} does not keep its parameter {missing[0]!r} as an attribute, so its "
                        "parameters cannot be tuned by name; tune it through a callable space.")
    return {n: getattr(obj, n) for n in names}


def split_name(name: str):
    """``"denoise__beta"`` -> ``("denoise", "beta")``; a plain name -> ``(name, None)``."""
    head, sep, tail = name.partition("__")
    return (head, tail) if sep and head and tail else (name, None)


def check_space(space: dict, model_class, model=None) -> dict:
    """``{name: optuna distribution}`` of ``space`` after checking that every key is an
    ``__init__`` parameter of ``model_class``, or ``component__parameter`` of a component the
    ``model`` instance holds (its ``denoise``), and every spec is well-formed."""
    if not isinstance(space, dict):
        raise TypeError(f"space must be a dict {{parameter: spec}} or a callable(trial) -> dict, "
                        f"got {type(space).__name__}.")
    valid = model_class._param_names()
    out = {}
    for name, spec in space.items():
        head, sub = split_name(name)
        if head not in valid:
            raise ValueError(f"parameter {name!r} is not a parameter of {model_class.__name__}; valid parameters: "
                             f"{valid}.")
        if sub is not None:
            part = getattr(model, head, None) if model is not None else None
            if part is None or isinstance(part, _PRIMITIVES):
                raise ValueError(f"parameter {name!r}: the model's {head!r} is {part!r}, not a component with "
                                 f"parameters of its own.")
            own = component_params(part)
            if sub not in own:
                raise ValueError(f"parameter {name!r}: {sub!r} is not a parameter of {type(part).__name__}; valid "
                                 f"parameters: {sorted(own)}.")
            if head in space:
                raise ValueError(f"space holds both {head!r} and {name!r}; give one of them.")
        out[name] = to_distribution(name, spec)
    return out


def component_space(model) -> dict:
    """The declared spaces of the components ``model`` holds (a denoiser's ``search_space``), as
    ``{"component__parameter": spec}``, less the parameters set on the component (those that
    differ from its ``__init__`` defaults, which stay fixed as the model's own do)."""
    out = {}
    for head, part in model.get_params().items():
        declared = getattr(type(part), "search_space", None)
        if isinstance(part, _PRIMITIVES) or not isinstance(declared, dict):
            continue
        defaults = {n: p.default for n, p in inspect.signature(type(part).__init__).parameters.items()}
        own = component_params(part)
        for sub, spec in declared.items():
            if sub in own and own[sub] == defaults.get(sub, inspect.Parameter.empty):
                out[f"{head}__{sub}"] = spec
    return out


def suggest(trial, distributions: dict) -> dict:
    """Ask ``trial`` for one value of each distribution (through the public ``suggest_*``)."""
    import optuna.distributions as od

    params = {}
    for name, d in distributions.items():
        if isinstance(d, od.CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, od.IntDistribution):
            params[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        elif isinstance(d, od.FloatDistribution):
            params[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        else:
            raise TypeError(f"search space entry {name!r}: unsupported distribution {d!r}.")
    return params
