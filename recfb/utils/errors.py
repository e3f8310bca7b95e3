"""Exceptions raised by recfb. Each subclasses the builtin a caller would naturally catch."""


class DataError(ValueError):
    """Input data is malformed: NaN weights, negative ids, mismatched lengths, empty input..."""


class UnknownIdError(DataError, IndexError):
    """A user or item id outside the ids the model knows (negative, or past the last one);
    also an IndexError, as implicit raises for out-of-range ids."""


class NotFittedError(ValueError, AttributeError):
    """An inference method was called before ``fit``."""


class FormatError(ValueError):
    """A saved file is truncated, tampered with, of another kind, or from a newer format."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset could not be found locally nor downloaded; the message says where we looked."""


class DeviceUnavailableError(ValueError, RuntimeError):
    """``device="cuda"`` asked where the computation cannot run on CUDA (no GPU, or a library
    build without GPU support). A ValueError (the argument cannot be honoured) and a
    RuntimeError (the environment lacks it)."""


class InvalidParameterError(ValueError, TypeError):
    """A parameter of a model, denoiser or objective that is not what it must be: the one
    error of every parameter check (a wrong type and a value out of range alike), a
    ValueError and a TypeError so that ``except`` clauses written for either catch it, as
    scikit-learn's ``InvalidParameterError``. The message names the parameter, the value and
    what is accepted."""
