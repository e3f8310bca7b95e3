"""recfb: recommenders from implicit feedback, honest about exposure bias and noise."""
from recfb import data, models, utils
from recfb._version import __version__
from recfb.models.base import load

__all__ = ["__version__", "data", "models", "utils", "load"]


def __getattr__(name):
    # Subpackages with heavier imports load on first use.
    import importlib
    if name in ("datasets", "distributed", "evaluation", "serving", "simulate", "testing", "tune"):
        return importlib.import_module(f"recfb.{name}")
    raise AttributeError(f"module 'recfb' has no attribute {name!r}")
