"""Test-session settings. The models in the tests are tiny: one torch thread is faster than two
for them and immune to OpenMP spin-waiting when the machine is shared.

Hypothesis runs derandomized by default, so `make test` (and CI) is reproducible: a red run
is the same red run on every machine. ``HYPOTHESIS_PROFILE=explore`` draws fresh random
examples on every run, to hunt for new failures; each one found becomes a
deterministic regression test (as the zip-header test in tests/models/test_load_fuzz.py)."""
import os

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def interrupted_and_resumed(tmp_path):
    """``fit_pair(make, X, at_epoch=3, **fit_kwargs) -> (full, resumed)``: ``make()`` fitted on
    ``X`` without interruption, and ``make()`` fitted with a crash after epoch ``at_epoch`` (a
    ``TrainingInterrupted`` raised by a callback, writing a checkpoint) and then fitted again with
    ``resume=True``. A model that resumes correctly ends where the uninterrupted run ends."""
    from recfb.train import TrainingInterrupted

    def fit_pair(make, X, at_epoch: int = 3, **fit_kwargs):
        checkpoint = tmp_path / "resume.ckpt.npz"
        full = make().fit(X, show_progress=False, **fit_kwargs)

        def interrupt(epoch, logs):
            if epoch == at_epoch:
                raise TrainingInterrupted("simulated crash")

        with pytest.raises(TrainingInterrupted):
            make().fit(X, show_progress=False, checkpoint=checkpoint, callbacks=[interrupt], **fit_kwargs)
        resumed = make().fit(X, show_progress=False, checkpoint=checkpoint, resume=True, **fit_kwargs)
        return full, resumed
    return fit_pair
