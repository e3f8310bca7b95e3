"""Checkpoints in recfb's one container: checksummed (a damaged array is refused, not
resumed from), and an older checkpoint version is refused with a message that says so."""
import json

import numpy as np
import pytest

from recfb.models import MF
from recfb.testing import checkerboard_holdout
from recfb.train.loop import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, read_checkpoint
from recfb.utils.container import METADATA_KEY
from recfb.utils.errors import FormatError


def _fit(path, **kw):
    X, _ = checkerboard_holdout(12)
    return MF(factors=4, iterations=2, optimizer="adam", device="cpu", **kw).fit(
        X, show_progress=False, checkpoint=path, resume=True)


def test_a_damaged_checkpoint_array_is_refused_by_its_checksum(tmp_path):
    path = tmp_path / "ck.npz"
    _fit(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    victim = next(k for k, v in arrays.items() if k != METADATA_KEY and v.dtype.kind == "f" and v.size > 4)
    arrays[victim] = arrays[victim].copy()
    arrays[victim].flat[0] += 1.0
    np.savez(path, **arrays)
    with pytest.raises(FormatError, match="checksum mismatch"):
        _fit(path)


def test_an_older_checkpoint_version_is_refused_clearly(tmp_path):
    path = tmp_path / "ck.npz"
    _fit(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays[METADATA_KEY].tobytes())
    assert meta["format"] == CHECKPOINT_FORMAT and meta["format_version"] == CHECKPOINT_VERSION
    meta["format_version"] = CHECKPOINT_VERSION - 1
    arrays[METADATA_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(FormatError, match=f"older recfb in format version {CHECKPOINT_VERSION - 1}"):
        read_checkpoint(path, {})
    with pytest.raises(FormatError, match="older recfb"):
        _fit(path)
