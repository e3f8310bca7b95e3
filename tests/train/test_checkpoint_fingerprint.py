"""A checkpoint resumes only the run it was written for: every model parameter, the objective,
samplers, denoiser, sample weights and the whole matrix (values included) are fingerprinted,
and a mismatch is refused naming what differs."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfb.denoise import TCE
from recfb.models import MF, SASRec
from recfb.testing import checkerboard_holdout
from recfb.train.loop import EpochLoop, TrainConfig, _fingerprint
from recfb.utils.errors import FormatError


def small(**kw):
    params = dict(factors=4, iterations=2, batch_size=128, learning_rate=0.05, random_state=0, device="cpu",
                  optimizer="adam", lr_schedule=None)
    params.update(kw)
    return MF(**params)


@pytest.fixture
def written(tmp_path):
    X = checkerboard_holdout(30)[0]
    ckpt = tmp_path / "c.npz"
    small().fit(X, show_progress=False, checkpoint=ckpt)
    return X, ckpt


@pytest.mark.parametrize("change,part", [
    (dict(loss="bce"), "model.loss"),
    (dict(regularization=0.5), "model.regularization"),
    (dict(negatives="popularity"), "model.negatives"),
    (dict(denoise=TCE(drop_rate=0.2)), "model.denoise"),
    (dict(biases=True), "model.biases"),
    (dict(factors=6), "model.factors"),
    (dict(num_negatives=3), "model.num_negatives"),
])
def test_other_settings_are_refused_naming_the_part(written, change, part):
    X, ckpt = written
    with pytest.raises(FormatError, match=part.replace(".", r"\.") + " differs"):
        small(**change).fit(X, show_progress=False, checkpoint=ckpt, resume=True)


def test_other_data_values_and_weights_are_refused(written):
    X, ckpt = written
    Y = X.copy()
    Y.data = Y.data * 2  # same pattern, other values
    with pytest.raises(FormatError, match=r"data\.values differs"):
        small().fit(Y, show_progress=False, checkpoint=ckpt, resume=True)
    with pytest.raises(FormatError, match=r"sample_weight differs"):
        small().fit(X, show_progress=False, checkpoint=ckpt, resume=True, sample_weight=np.full(X.nnz, 2.0))
    # the same run resumes (nothing left to train: it ends where it was)
    small().fit(X, show_progress=False, checkpoint=ckpt, resume=True)


def test_data_differing_only_after_the_first_mebibyte_is_seen():
    rng = np.random.default_rng(0)
    n_users, n_items = 2000, 1000
    X = sp.random(n_users, n_items, density=0.2, format="csr", dtype=np.float32, random_state=0)
    assert X.indices.nbytes > 1 << 20
    Y = X.copy()
    row = Y.indices.size - 1  # move the very last interaction to another free column of its row
    last_row_cols = set(Y.indices[Y.indptr[-2]:])
    free = next(c for c in rng.permutation(n_items) if c not in last_row_cols and c > Y.indices[row - 1])
    Y.indices[row] = free
    a, b = _fingerprint(X, TrainConfig()), _fingerprint(Y, TrainConfig())
    assert a["data.indptr"] == b["data.indptr"]
    assert a["data.indices"] != b["data.indices"]
    Z = X.copy()
    Z.data[-1] += 1
    assert _fingerprint(Z, TrainConfig())["data.values"] != a["data.values"]


def test_resume_without_a_checkpoint_says_it_trains_from_scratch(tmp_path):
    X = checkerboard_holdout(30)[0]
    with pytest.warns(UserWarning, match="no checkpoint.*from scratch"):
        small().fit(X, show_progress=False, checkpoint=tmp_path / "none.npz", resume=True)
    assert (tmp_path / "none.npz").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an existing checkpoint resumes without a warning
        small().fit(X, show_progress=False, checkpoint=tmp_path / "none.npz", resume=True)


class _Loop(EpochLoop):
    def _fingerprint(self):
        return {"same": 1}

    def _run_epoch(self, epoch, gen, state, opts):
        return 1.0, 1


def test_other_tensor_shapes_give_a_recfb_error_not_a_torch_one(tmp_path):
    ckpt = tmp_path / "c.npz"
    cfg = dict(epochs=1, show_progress=False, checkpoint=str(ckpt))
    _Loop(torch.nn.Linear(2, 3), TrainConfig(**cfg), "cpu")._run()
    with pytest.raises(FormatError, match=r"'weight' has shape \(3, 2\) in the checkpoint, \(4, 2\)"):
        _Loop(torch.nn.Linear(2, 4), TrainConfig(resume=True, **cfg), "cpu")._run()
    with pytest.raises(FormatError, match="tensors"):
        _Loop(torch.nn.Linear(2, 3, bias=False), TrainConfig(resume=True, **cfg), "cpu")._run()


def test_sequential_checkpoint_sees_the_whole_history_and_every_parameter(tmp_path):
    from recfb.data import Interactions
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 5)
    ds = Interactions.from_arrays(users, rng.integers(0, 10, users.size), item_ids=np.arange(10))
    kw = dict(factors=8, iterations=1, batch_size=8, max_len=4, random_state=0, device="cpu")
    ckpt = tmp_path / "s.npz"
    SASRec(**kw).fit(ds, show_progress=False, checkpoint=ckpt)
    with pytest.raises(FormatError, match=r"model\.dropout differs"):
        SASRec(dropout=0.5, **kw).fit(ds, show_progress=False, checkpoint=ckpt, resume=True)
