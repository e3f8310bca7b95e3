"""recfb: recommenders from implicit feedback, honest about exposure bias and noise."""
from recfb import data, models, utils
from recfb._version import __version__
from recfb.models.base import load

#: every subpackage; those not imported above load on first attribute access
SUBPACKAGES = ("cli", "data", "datasets", "debias", "denoise", "distributed", "evaluation", "losses", "models",
               "sampling", "serving", "simulate", "testing", "train", "tune", "utils")

__all__ = ["__version__", "load", "cli", "data", "datasets", "debias", "denoise", "distributed", "evaluation", "losses",
           "models", "sampling", "serving", "simulate", "testing", "train", "tune", "utils"]


def __getattr__(name):
    # Subpackages with heavier imports load on first use.
    import importlib
    if name in SUBPACKAGES:
        return importlib.import_module(f"recfb.{name}")
    raise AttributeError(f"module 'recfb' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBPACKAGES))
