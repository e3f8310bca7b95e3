"""The shared training loop: reproducibility, resume, early stopping, hooks, failures."""
import numpy as np
import pytest
import torch

from recfb.denoise import Denoiser
from recfb.models import MF
from recfb.testing import checkerboard_holdout
from recfb.utils.errors import FormatError


def data():
    X, held = checkerboard_holdout(40)
    return X, held


def small(**kw):
    # the autograd loop (the fused kernel, which "auto" picks for MF, has its own tests)
    params = dict(factors=8, iterations=6, batch_size=128, learning_rate=0.05, random_state=0, device="cpu",
                  optimizer="adam", lr_schedule=None)
    params.update(kw)
    return MF(**params)


def test_same_seed_same_factors_other_seed_differs():
    X, _ = data()
    a = small().fit(X, show_progress=False)
    b = small().fit(X, show_progress=False)
    c = small(random_state=1).fit(X, show_progress=False)
    assert np.array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)


@pytest.mark.parametrize("schedule,optimizer", [(None, "adam"), ("cosine", "adagrad")])
def test_resume_after_interruption_ends_where_uninterrupted_run_ends(interrupted_and_resumed, schedule, optimizer):
    X, _ = data()
    full, resumed = interrupted_and_resumed(lambda: small(lr_schedule=schedule, optimizer=optimizer), X)
    assert np.array_equal(full.item_factors, resumed.item_factors)
    assert np.array_equal(full.user_factors, resumed.user_factors)
    assert [h["epoch"] for h in resumed.history_] == list(range(1, 7))
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in full.history_]


def test_checkpoint_errors(tmp_path):
    X, _ = data()
    ckpt = tmp_path / "c.npz"
    small(iterations=2).fit(X, show_progress=False, checkpoint=ckpt)
    with pytest.raises(FormatError, match="other data or settings"):
        small(iterations=2, learning_rate=0.1).fit(X, show_progress=False, checkpoint=ckpt, resume=True)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(FormatError, match="not a readable recfb checkpoint"):
        small(iterations=2).fit(X, show_progress=False, checkpoint=ckpt, resume=True)


def test_early_stopping_restores_best_weights(monkeypatch):
    X, held = data()
    import scipy.sparse as sp
    valid = sp.csr_matrix((np.ones(40, np.float32), (np.arange(40), held)), shape=X.shape)
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])
    snapshots = {}
    from recfb.models import _embedding

    def fake_validator(self, X, valid_items, valid_metric=None):
        def validate(scorer):
            snapshots[len(snapshots) + 1] = scorer.item.weight.detach().clone()
            return next(scores)
        return validate

    monkeypatch.setattr(_embedding.EmbeddingRecommender, "_make_validator", fake_validator)
    m = small(patience=2).fit(X, show_progress=False, valid_items=valid)
    assert m.best_epoch_ == 2 and len(m.history_) == 4  # stopped after two epochs without gain
    assert np.array_equal(m.item_factors, snapshots[2].numpy())


def test_real_validation_metric_is_logged():
    X, held = data()
    import scipy.sparse as sp
    valid = sp.csr_matrix((np.ones(40, np.float32), (np.arange(40), held)), shape=X.shape)
    m = small(iterations=3).fit(X, show_progress=False, valid_items=valid)
    assert all(0 <= h["valid"] <= 1 for h in m.history_)


class RecordingDenoiser(Denoiser):
    def __init__(self):
        self.calls = []

    def weights(self, losses, scores, step, index):
        self.calls.append((losses.shape, step, index.shape))
        return torch.zeros_like(losses)  # drop every positive


def test_denoiser_sees_per_positive_losses_and_can_mask_everything():
    X, _ = data()
    d = RecordingDenoiser()
    m = small(iterations=2, regularization=0.0, denoise=d).fit(X, show_progress=False)
    ref = small(iterations=2, regularization=0.0, learning_rate=1e-12).fit(X, show_progress=False)
    assert d.calls and all(shape == idx for shape, _, idx in d.calls)
    assert [c[1] for c in d.calls] == list(range(len(d.calls)))  # global step counter
    # BPR's loss is all in the positive part: masked positives leave the weights where they started
    np.testing.assert_allclose(m.item_factors, ref.item_factors, atol=1e-6)


class FirstUserOnly(Denoiser):
    """A denoiser that resamples: every slot of every batch becomes one of user 0's
    interactions; ``weights`` sees what was trained (the observation hook)."""

    def __init__(self):
        self.observed = []

    def resample(self, index, step, generator, epoch, step_number):
        first = torch.nonzero(self.users == 0).ravel()
        return first[torch.arange(index.numel()) % first.numel()]

    def setup(self, users, items, n_users, n_items, total_steps):
        super().setup(users, items, n_users, n_items, total_steps)
        self.users = users

    def weights(self, losses, scores, step, index):
        self.observed.append((index.clone(), losses.clone()))
        return torch.ones_like(losses)


def test_denoiser_resample_hook():
    X, _ = data()
    sampler = FirstUserOnly()
    m = small(iterations=2, regularization=0.0, denoise=sampler).fit(X, show_progress=False)
    ref = small(iterations=2, regularization=0.0, learning_rate=1e-12).fit(X, show_progress=False)
    visited = torch.cat([i for i, _ in sampler.observed])
    assert set(visited.tolist()) == set(range(int(X.indptr[1])))  # CSR order: user 0 comes first
    assert all(i.shape == loss.shape for i, loss in sampler.observed)
    # only user 0's vector moved
    assert not np.allclose(m.user_factors[0], ref.user_factors[0])
    np.testing.assert_allclose(m.user_factors[1:], ref.user_factors[1:], atol=1e-6)


def test_sample_weight_zero_means_no_positive_signal():
    X, _ = data()
    m = small(iterations=2, regularization=0.0).fit(X, show_progress=False, sample_weight=np.zeros(X.nnz))
    ref = small(iterations=2, regularization=0.0, learning_rate=1e-12).fit(X, show_progress=False)
    np.testing.assert_allclose(m.item_factors, ref.item_factors, atol=1e-6)


def test_nan_loss_stops_with_epoch_and_cause():
    X, _ = data()
    with pytest.raises(FloatingPointError, match="epoch 1.*learning rate"):
        small(learning_rate=1e30, iterations=2, loss="bce").fit(X, show_progress=False)


def test_schedule_and_sparse_adam():
    X, _ = data()
    m = small(lr_schedule="cosine").fit(X, show_progress=False)
    lrs = [h["lr"] for h in m.history_]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]
    s = small(optimizer="sparse_adam", iterations=30).fit(X, show_progress=False)
    assert s.history_[-1]["loss"] < s.history_[0]["loss"]


@pytest.mark.parametrize("kw,match", [
    (dict(factors=-1), "factors == -1"),
    (dict(learning_rate=0), "learning_rate == 0"),
    (dict(optimizer="rmsprop"), "optimizer == 'rmsprop'"),
    (dict(lr_schedule="linear"), "lr_schedule == 'linear'"),
    (dict(batch_size=0), "batch_size == 0"),
])
def test_bad_settings(kw, match):
    X, _ = data()
    with pytest.raises(ValueError, match=match):
        small(**kw).fit(X, show_progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is checked where one exists")
def test_cuda_matches_cpu_quality():
    X, held = data()
    cpu = small(iterations=30).fit(X, show_progress=False)
    gpu = small(iterations=30, device="cuda").fit(X, show_progress=False)
    a = cpu.recommend(np.arange(40), X, N=1)[0][:, 0]
    b = gpu.recommend(np.arange(40), X, N=1)[0][:, 0]
    assert np.mean(a == held) > 0.8 and np.mean(b == held) > 0.8


def test_training_leaves_the_callers_global_rng_alone():
    X = checkerboard_holdout()[0]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MF(factors=4, iterations=2, random_state=0, device="cpu").fit(X, show_progress=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_time_limit_stops_after_the_epoch_that_passes_it(monkeypatch):
    import types

    import recfb.train.loop as loop_module
    from recfb.train.loop import EpochLoop, TrainConfig

    clock = [0.0]  # a fake clock: each epoch takes exactly 0.05 s, however loaded the machine is
    monkeypatch.setattr(loop_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    class Slow(EpochLoop):
        def _fingerprint(self):
            return "x"

        def _run_epoch(self, epoch, gen, state, opts):
            clock[0] += 0.05
            return 1.0, 1

    loop = Slow(torch.nn.Linear(1, 1), TrainConfig(epochs=100, time_limit=0.12, show_progress=False), "cpu")
    loop._run()
    assert loop.stopped_by == "time_limit" and len(loop.history) == 3  # 0.15 s is the first past 0.12
    full = Slow(torch.nn.Linear(1, 1), TrainConfig(epochs=2, show_progress=False), "cpu")._run()
    assert full.stopped_by == "epochs" and len(full.history) == 2
    with pytest.raises(ValueError, match="time_limit"):
        TrainConfig(time_limit=0).validate()


def test_embedding_models_take_a_time_limit():
    X = checkerboard_holdout()[0]
    m = MF(factors=4, iterations=500, random_state=0, device="cpu").fit(X, show_progress=False, time_limit=1e-6)
    assert m.stopped_by_ == "time_limit" and len(m.history_) == 1
    m = MF(factors=4, iterations=2, random_state=0, device="cpu").fit(X, show_progress=False)
    assert m.stopped_by_ == "epochs" and len(m.history_) == 2
