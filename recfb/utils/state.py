"""Nested training state (state dicts, RNG states, histories) <-> arrays + JSON, no pickle.

Tensors and arrays become entries of an ``.npz``; the structure (dicts with int or str keys,
lists, tuples, scalars) becomes JSON. Used for checkpoints, so resuming never unpickles.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def flatten_state(obj) -> tuple[dict, str]:
    arrays: dict[str, np.ndarray] = {}

    def enc(x):
        try:
            import torch
            if isinstance(x, torch.Tensor):
                key = f"t{len(arrays)}"
                arrays[key] = x.detach().cpu().numpy()
                return {"__tensor__": key}
        except ImportError:  # pragma: no cover
            pass
        if isinstance(x, np.ndarray):
            key = f"n{len(arrays)}"
            arrays[key] = x
            return {"__array__": key}
        if isinstance(x, dict):
            return {"__dict__": [[enc(k), enc(v)] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v) for v in x]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, (np.integer,)):
            return int(x)
        if isinstance(x, (np.floating,)):
            return float(x)
        if x is None or isinstance(x, (bool, int, float, str)):
            if isinstance(x, float) and not np.isfinite(x):
                return {"__float__": repr(x)}
            return x
        raise TypeError(f"cannot store {type(x).__name__} in a checkpoint")

    tree = enc(obj)
    return arrays, json.dumps(tree)


def unflatten_state(arrays: dict, tree_json: str):
    import torch

    def dec(x):
        if isinstance(x, dict):
            if "__tensor__" in x:
                return torch.from_numpy(np.array(arrays[x["__tensor__"]], copy=True))
            if "__array__" in x:
                return np.array(arrays[x["__array__"]], copy=True)
            if "__dict__" in x:
                return {dec(k): dec(v) for k, v in x["__dict__"]}
            if "__tuple__" in x:
                return tuple(dec(v) for v in x["__tuple__"])
            if "__float__" in x:
                return float(x["__float__"])
        if isinstance(x, list):
            return [dec(v) for v in x]
        return x

    return dec(json.loads(tree_json))


def atomic_savez(path, arrays: dict) -> Path:
    """``np.savez`` to ``<path>.tmp``, then renamed onto ``path``: a reader never sees a half
    written file, and a failed write leaves no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
