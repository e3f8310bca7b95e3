"""iterations=None's stopping rule (recfb.models.sequential.schedule): no stop while a run is on its
initial plateau, the holdout's epoch is the maximum of its smoothed curve, and the tuning spaces
hold the defaults. Fake validation curves drive the callback and the fit; no real learning is
needed."""
import math

import numpy as np
import pytest
from test_sequential_defaults import cyclic

from recfb.data.split import leave_one_out
from recfb.models import BERT4Rec, SASRec, gSASRec
from recfb.models.sequential import AutoStopping, choose_epoch, noise_band
from recfb.models.sequential import schedule as sequential  # the fit reads the rule's constants from here
from recfb.train import TrainConfig
from recfb.tune import check_space
from recfb.tune._search import _contains

N_USERS = 1000  # the holdout of a 1,500-user log: HOLDOUT_MIN
# gBCE's shape on the Video subsample: a first validation near popularity, a noise peak, a long
# plateau within noise of the first validation, then the climb (validations every 8 epochs)
PLATEAU = [0.0100, 0.0125, 0.0105, 0.0110, 0.0098, 0.0112, 0.0107, 0.0118, 0.0103, 0.0109, 0.0115, 0.0111,
           0.0106, 0.0113]
CLIMB = [0.0150, 0.0190, 0.0215, 0.0222, 0.0218, 0.0225, 0.0212, 0.0210, 0.0200, 0.0195, 0.0190, 0.0185, 0.0180,
         0.0175, 0.0170, 0.0170, 0.0165]
CURVE = PLATEAU + CLIMB
EPOCHS = [8 * (i + 1) for i in range(len(CURVE))]


class FakeTrainer:  # what AutoStopping reads: the loop's history, config and stopped_by
    def __init__(self, eval_every, epochs=500):
        self.history, self.stopped_by = [], "epochs"
        self.config = TrainConfig(eval_every=eval_every, epochs=epochs)


def drive(callback, trainer, curve, eval_every):
    """Feed ``curve`` (one validation every ``eval_every`` epochs) to the callback as the loop does;
    returns the epoch after which the loop would end."""
    for epoch in range(1, eval_every * len(curve) + 1):
        logs = {"epoch": epoch, "loss": 1.0}
        if epoch % eval_every == 0:
            logs["valid"] = curve[epoch // eval_every - 1]
        trainer.history.append(logs)
        callback(epoch, logs)
        if epoch >= trainer.config.epochs:
            return epoch
    return epoch


def old_rule_stop(curve, epochs, eval_every):
    """The rule before AutoStopping (GrowingPatience): stop after max(10, ceil(best_epoch / 2 /
    eval_every)) validations without a new (first) best."""
    for i in range(len(curve)):
        best = int(np.argmax(curve[:i + 1]))
        if i - best >= max(10, math.ceil(0.5 * epochs[best] / eval_every)):
            return epochs[i]
    return None


def test_noise_band_is_an_upper_bound_on_the_standard_error():
    assert noise_band(0.01, 1000) == pytest.approx(math.sqrt(0.01 * 0.99 / 1000))
    assert noise_band(0.0, 1000) == 0.0 and noise_band(1.0, 10) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):  # per-user NDCG@10 of one item: 0 or 1 / log2(rank + 1), rank 1..10
        hit = rng.random(500) < rng.uniform(0.01, 0.5)
        values = np.where(hit, 1 / np.log2(rng.integers(1, 11, 500) + 1), 0.0)
        assert values.std() / math.sqrt(values.size) <= noise_band(values.mean(), values.size) + 1e-12


def test_choose_epoch_is_the_maximum_of_the_moving_average():
    assert sequential.AUTO_SMOOTH == 5
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 7, 30):
        scores = rng.random(n).round(2)
        epochs = list(range(3, 3 * n + 1, 3))
        smoothed = [np.mean(scores[max(i - 2, 0):i + 3]) for i in range(n)]  # centred, shorter at the ends
        assert choose_epoch(epochs, scores) == epochs[int(np.argmax(smoothed))]
        assert choose_epoch(epochs, scores, window=1) == epochs[int(np.argmax(scores))]
    # a single noise peak early loses to the broad peak later
    assert choose_epoch([1, 2, 3, 4, 5, 6, 7, 8, 9], [0.1, 0.5, 0.1, 0.1, 0.4, 0.45, 0.4, 0.42, 0.1]) == 6


def test_a_run_on_its_initial_plateau_is_not_stopped_and_the_climb_is_found():
    # the old rule stops on the plateau, 10 validations after its noise peak, before the climb
    assert old_rule_stop(CURVE, EPOCHS, 8) == EPOCHS[11] < EPOCHS[len(PLATEAU)]
    # every plateau point is within noise of the first validation: the run has not left it
    first = PLATEAU[0]
    assert all(s <= first + noise_band(first, N_USERS) for s in PLATEAU)
    trainer = FakeTrainer(eval_every=8)
    rule = AutoStopping(trainer, N_USERS, steps_per_epoch=12)  # 14 plateau validations: 1,344 steps < 2,000
    stopped = drive(rule, trainer, CURVE, 8)
    best = EPOCHS[int(np.argmax(CURVE))]
    assert stopped == best + 8 * 10 and trainer.stopped_by == "patience"  # patience 10 from the best, on the climb
    assert rule.chosen_epoch == choose_epoch(EPOCHS[:stopped // 8], CURVE[:stopped // 8])
    assert EPOCHS[len(PLATEAU)] < rule.chosen_epoch <= best + 16  # on the climb's peak, not on the plateau
    # the replay used by the benchmarks agrees with the callback
    assert sequential.replay(CURVE, EPOCHS, N_USERS, 8, 12) == (rule.chosen_epoch, stopped)


def test_a_plateau_that_never_rises_stops_after_the_plateau_steps():
    flat = PLATEAU + PLATEAU + PLATEAU  # 42 validations, 8 epochs x 12 steps apart
    trainer = FakeTrainer(eval_every=8)
    stopped = drive(AutoStopping(trainer, N_USERS, steps_per_epoch=12), trainer, flat, 8)
    # the first validation at or after 2,000 steps (epoch 167) with 10 bad ones since the best (16)
    assert stopped == 168 and trainer.stopped_by == "patience"
    assert sequential.AUTO_PLATEAU_STEPS == 2000


def test_with_the_users_validation_the_raw_best_is_kept():
    trainer = FakeTrainer(eval_every=8)
    rule = AutoStopping(trainer, N_USERS, steps_per_epoch=12, smooth=False)
    drive(rule, trainer, CURVE, 8)
    assert rule.chosen_epoch == EPOCHS[int(np.argmax(CURVE))]


def test_an_explicit_patience_is_kept_fixed():
    curve = [0.01, 0.05, 0.04, 0.04, 0.04, 0.04]
    trainer = FakeTrainer(eval_every=1)
    stopped = drive(AutoStopping(trainer, N_USERS, steps_per_epoch=1, patience=3), trainer, curve, 1)
    assert stopped == 5  # 3 validations after the best at epoch 2


@pytest.mark.parametrize("cls", [SASRec, gSASRec], ids=lambda c: c.__name__)
def test_fit_on_a_fake_holdout_curve_refits_for_the_smoothed_peak(cls, monkeypatch):
    """The fit with ``iterations=None``: the holdout's validator replaced by the fake curve, so
    the selection run must stop where the rule says and the refit train the chosen epochs."""
    monkeypatch.setattr(sequential, "EVAL_STEPS", 3)  # 3 steps an epoch: validate every epoch
    monkeypatch.setattr(sequential, "AUTO_PLATEAU_STEPS", 60)
    curve = iter(CURVE)
    monkeypatch.setattr(cls, "_make_validator", lambda self, *a, **k: (lambda _net: next(curve)))
    train, _, _ = leave_one_out(cyclic(), by="row")
    extra = {"num_negatives": 4} if cls is gSASRec else {}
    model = cls(factors=8, max_len=8, batch_size=32, device="cpu", **extra).fit(train, show_progress=False)
    epochs = list(range(1, len(CURVE) + 1))
    # 80 sequences, 3 steps an epoch: the climb (epoch 15) comes before the guard's 60 steps (epoch 20)
    # would end the plateau; best 0.0225 at epoch 20, patience 10
    want_choice, want_stop = sequential.replay(CURVE, epochs, 80, 1, 3)
    assert want_stop == 20 + 10 and model.stopped_by_ == "patience"
    assert len(model.selection_history_) == want_stop and model.best_epoch_ == 20
    assert model.iterations_ == want_choice == choose_epoch(epochs[:want_stop], CURVE[:want_stop])
    assert len(model.history_) == model.iterations_


@pytest.mark.parametrize("cls", [SASRec, gSASRec, BERT4Rec], ids=lambda c: c.__name__)
def test_the_tuning_space_holds_the_defaults(cls):
    """recfb.tune's first trial is the model's own values: every default must be a point of its space."""
    model = cls()
    for name, dist in check_space(cls.search_space, cls).items():
        assert _contains(dist, getattr(model, name)), (name, getattr(model, name), dist)
