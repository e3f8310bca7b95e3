"""The denoisers at their defaults (issue 13): which path and settings they train with, and the
settings derived from the run (T-CE's warm-up as a fraction of the run's steps, PLD's warm-up
epochs), each against an independent computation."""
import math

import numpy as np
import pytest

from recfb.datasets import make_world
from recfb.denoise import PLD, RCE, TCE
from recfb.losses import NBPO
from recfb.models import MF
from recfb.models.mf import mf_auto_settings


@pytest.fixture(scope="module")
def X():
    return make_world(n_users=50, n_items=40, density=0.08, noise_rate=0.2, seed=1).clicks.matrix


@pytest.mark.parametrize("denoise,optimizer", [(None, "fused_sgd"), (TCE(), "adam")])
def test_nbpo_at_defaults_trains_with_the_documented_rule(X, denoise, optimizer):
    model = MF(loss="nbpo", denoise=denoise)
    model.iterations = 2  # the rest stays at the defaults
    model.fit(X, show_progress=False)
    # the compiled kernel (flip factors stepped beside the model's); with a denoiser the autograd loop
    assert model.optimizer_ == optimizer
    rule = mf_auto_settings(X.nnz, optimizer, "nbpo")
    assert (model.learning_rate_, model.regularization_, model.lr_schedule_) == (
        rule["learning_rate"], rule["regularization"], rule["lr_schedule"])
    # NBPO keeps BPR's L2 rule on the kernel, not BCE's larger one
    assert rule["regularization"] == mf_auto_settings(X.nnz, optimizer, "bpr")["regularization"]
    assert model.num_negatives_ == 4
    assert NBPO().flip_regularization == 0.3  # the documented default (constant-flip limit)
    # the epochs rule itself, at the sizes of the injected-noise protocol and beyond
    assert mf_auto_settings(46_000, "adam")["iterations"] == 100
    assert mf_auto_settings(2e5, "adam")["iterations"] == 50 and mf_auto_settings(1e8, "adam")["iterations"] == 20


def test_tce_default_warmup_is_thirty_percent_of_the_runs_steps(X):
    model = MF(loss="bce", denoise=TCE(), iterations=5, batch_size=64).fit(X, show_progress=False)
    steps = 5 * math.ceil(X.nnz / 64)  # independent: epochs x batches per epoch
    assert model.denoise.warmup_steps_ == round(0.3 * steps)
    assert model.denoise.drop_rate == 0.2
    # by the end every batch dropped 20% of its positives: about a fifth of the clicks are flagged
    assert 0.1 < float(model.denoise.dropped_.float().mean()) < 0.3


@pytest.mark.parametrize("denoiser", [RCE, TCE, PLD])
def test_rce_tce_and_pld_at_defaults_train_on_the_fused_kernel_with_its_rule(X, denoiser):
    """R-CE's weights are per sample, T-CE's per block, PLD's pool draw per sample: the
    compiled kernel applies all three, at the kernel's rule."""
    from recfb.losses import BCE, BPR
    model = MF(loss="bce", denoise=denoiser(), iterations=2).fit(X, show_progress=False)
    rule = mf_auto_settings(X.nnz, "fused_sgd", "bce")
    assert model.optimizer_ == "fused_sgd"
    assert (model.learning_rate_, model.regularization_, model.lr_schedule_) == (
        rule["learning_rate"], rule["regularization"], rule["lr_schedule"])
    assert model.num_negatives_ == 4
    # "auto": negatives reweighted for BCE (the paper), positives only with BPR
    assert RCE().reweights_negatives_for(BCE()) and not RCE().reweights_negatives_for(BPR())


def test_rce_and_pld_defaults_are_the_documented_ones():
    assert RCE().beta == 0.1 and RCE().negatives == "auto"
    p = PLD()
    assert (p.pool_size, p.temperature, p.warmup_epochs) == (5, 0.3, 5)
    assert np.isclose(TCE().warmup, 0.3)
