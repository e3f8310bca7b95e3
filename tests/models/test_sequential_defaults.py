"""The sequential models' data-derived defaults: ``iterations=None`` chooses the epochs by early
stopping on held-out last items (``iterations_``), ``eval_every=None`` validates about every
EVAL_STEPS optimiser steps."""
import numpy as np
import pytest

from recfb.data import Interactions
from recfb.data.split import leave_one_out
from recfb.evaluation import ranking_metrics
from recfb.models import BERT4Rec, SASRec, gSASRec
from recfb.models.sequential import AutoStopping, auto_eval_every, choose_epoch, holdout_last, pack_sequences
from recfb.models.sequential import schedule as sequential  # the fit reads the rule's constants from here
from recfb.train import TrainConfig

N_ITEMS = 12


def cyclic(n_users=80, seed=0, min_len=5, max_len=12):
    """Each user walks i -> i + 1 (mod N_ITEMS) from a random start (rows in time order)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(min_len, max_len + 1, n_users)
    start = rng.integers(N_ITEMS, size=n_users)
    users = np.repeat(np.arange(n_users), n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    items = (np.repeat(start, n) + offset) % N_ITEMS
    return Interactions.from_arrays(users, items, item_ids=np.arange(N_ITEMS))


def test_holdout_last_matches_a_loop():
    seqs = [np.array([3, 1, 4, 1, 5]), np.array([], np.int64), np.array([9, 2]), np.arange(10), np.array([7, 7, 7])]
    indptr, items = pack_sequences(seqs)
    out_indptr, out_items, users, held = holdout_last(indptr, items, 2, 10, seed=0)
    eligible = [u for u, s in enumerate(seqs) if len(s) > 2]  # more than min_length items
    assert users.tolist() == eligible
    assert held.tolist() == [seqs[u][-1] for u in eligible]
    want = [s[:-1] if u in eligible else s for u, s in enumerate(seqs)]
    want_indptr, want_items = pack_sequences(want)
    np.testing.assert_array_equal(out_indptr, want_indptr)
    np.testing.assert_array_equal(out_items, want_items)
    # at most n_users sequences, a seeded choice among the eligible ones
    _, _, few, few_held = holdout_last(indptr, items, 2, 2, seed=1)
    assert few.size == 2 and set(few) <= set(eligible) and np.all(np.diff(few) > 0)
    assert few_held.tolist() == [seqs[u][-1] for u in few]
    np.testing.assert_array_equal(holdout_last(indptr, items, 2, 2, seed=1)[2], few)


def test_auto_eval_every_is_about_eval_steps_optimiser_steps():
    assert sequential.EVAL_STEPS == 100
    assert auto_eval_every(22_363, 128) == 1  # Beauty: 175 steps an epoch
    assert auto_eval_every(943, 128) == 12  # ml-100k: 8 steps an epoch, 100 / 8 = 12.5 -> 12
    assert auto_eval_every(2_000, 128) == 6  # 16 steps
    assert auto_eval_every(10, 128) == 100  # one step an epoch


@pytest.mark.parametrize("cls", [SASRec, gSASRec, BERT4Rec], ids=lambda c: c.__name__)
def test_defaults_derive_epochs_by_early_stopping_on_held_out_last_items(cls, monkeypatch):
    monkeypatch.setattr(sequential, "EVAL_STEPS", 6)  # 3 steps an epoch here: validate every 2 epochs
    monkeypatch.setattr(sequential, "AUTO_MAX_EPOCHS", 80)
    assert sequential.AUTO_PATIENCE_FRACTION == 0.5
    seen = {}
    make_validator = cls._make_validator

    def spy(self, hist_X, valid_X, users=None, metric=None):
        seen["train_rows"], seen["valid"], seen["users"] = hist_X.copy(), valid_X.copy(), users
        return make_validator(self, hist_X, valid_X, users, metric)
    monkeypatch.setattr(cls, "_make_validator", spy)
    extra = {"num_negatives": 8} if cls is gSASRec else {}
    data = cyclic()
    train, valid, _ = leave_one_out(data, by="row")
    model = cls(factors=16, max_len=8, batch_size=32, learning_rate=5e-3, dropout=0.0, device="cpu", **extra)
    assert model.iterations is None and model.eval_every is None and model.patience is None
    model.fit(train, show_progress=False)

    # brute force: every sequence longer than the model's minimum (80 < HOLDOUT_MIN, so all of
    # them) lends its last item, which is validated on and left out of the training histories
    seqs = train.sequences("row")
    held = [u for u, s in enumerate(seqs) if len(s) > model._min_length()]
    assert len(held) == len(seqs) == 80
    np.testing.assert_array_equal(seen["users"], held)
    V = seen["valid"].toarray()
    for u in held:
        assert V[u].sum() == 1 and V[u, seqs[u][-1]] == 1
        assert seen["train_rows"][u].nnz == np.unique(seqs[u][:-1]).size
    # validated every eval_every_ = round(6 / 3) = 2 epochs, stopped after AUTO_PATIENCE bad ones
    assert model.eval_every_ == 2 and model.patience_ == sequential.AUTO_PATIENCE == 10
    selection = model.selection_history_
    epochs = [h["epoch"] for h in selection if "valid" in h]
    scores = [h["valid"] for h in selection if "valid" in h]
    assert epochs == list(range(2, len(selection) + 1, 2))
    if model.stopped_by_ == "patience":  # 10 validations, or half the best epoch when that is more
        waited = max(10, int(np.ceil(0.5 * model.best_epoch_ / 2)))
        assert epochs[-1] - model.best_epoch_ == 2 * waited
    else:
        assert model.stopped_by_ == "epochs" and len(selection) == 80
    # the epochs kept: the maximum of the holdout's curve averaged over 5 validations (brute force)
    smoothed = [np.mean(scores[max(i - 2, 0):i + 3]) for i in range(len(scores))]
    assert model.iterations_ == epochs[int(np.argmax(smoothed))] == choose_epoch(epochs, scores)
    # then refitted on everything for iterations_ epochs, without validation
    assert len(model.history_) == model.iterations_ and not any("valid" in h for h in model.history_)
    # the stored histories are the whole train sequences again (held-out items restored) ...
    np.testing.assert_array_equal(model.hist_items_, np.concatenate(seqs))
    # ... and the model is trained: the cyclic next item is found for most users
    assert ranking_metrics(model, model.history_matrix(), valid.matrix, k=1)["hit_rate@1"] > 0.8


def test_fixed_iterations_train_exactly_that_many_epochs_on_everything():
    train, _, _ = leave_one_out(cyclic(), by="row")
    model = SASRec(iterations=3, factors=16, max_len=8, batch_size=32, device="cpu").fit(train, show_progress=False)
    assert len(model.history_) == 3 and model.iterations_ == 3 and model.best_epoch_ is None
    assert not hasattr(model, "selection_history_")
    assert not any("valid" in h for h in model.history_) and model.patience_ is None and model.eval_every_ == 1


def test_no_sequence_to_hold_out_warns_and_trains_half_the_cap(monkeypatch):
    monkeypatch.setattr(sequential, "AUTO_MAX_EPOCHS", 6)
    pairs = Interactions.from_arrays(np.repeat(np.arange(20), 2), np.arange(40) % N_ITEMS, item_ids=np.arange(N_ITEMS))
    with pytest.warns(UserWarning, match="no sequence is longer than 2 items"):
        model = SASRec(factors=16, max_len=4, batch_size=8, device="cpu").fit(pairs, show_progress=False)
    assert len(model.history_) == 3 and model.iterations_ == 3


def test_bad_iterations_and_eval_every_are_refused():
    train, _, _ = leave_one_out(cyclic(), by="row")
    for kw in ({"iterations": 0}, {"eval_every": 0}, {"iterations": 2.5}):
        with pytest.raises((TypeError, ValueError), match=next(iter(kw))):
            SASRec(device="cpu", **kw).fit(train, show_progress=False)


def test_growing_patience_is_half_the_best_epoch_in_validations(monkeypatch):
    monkeypatch.setattr(sequential, "AUTO_PATIENCE", 5)
    class Trainer:  # the callback reads the loop's history and config only
        def __init__(self, eval_every):
            self.history, self.config, self.stopped_by = [], TrainConfig(eval_every=eval_every, epochs=500), "epochs"

    # validations every 4 epochs; 0.5 at epoch 44 is the (first) best: patience max(5, ceil(0.5 * 44 / 4)) = 6
    curve = {4: 0.1, 8: 0.3, 12: 0.2, 40: 0.3, 44: 0.5, 48: 0.4, 52: 0.4, 56: 0.4, 60: 0.4, 64: 0.4, 68: 0.5,
             72: 0.1}
    t = Trainer(eval_every=4)
    cb = AutoStopping(t, n_users=10_000, steps_per_epoch=1, smooth=False)
    for epoch in range(1, 73):
        logs = {"epoch": epoch, **({"valid": curve[epoch]} if epoch in curve else {})}
        t.history.append(logs)
        cb(epoch, logs)
        if t.config.epochs == epoch:  # the loop would end here
            break
    assert t.config.epochs == 68 and t.stopped_by == "patience" and cb.chosen_epoch == 44  # 6 after 44; ties: first


def test_defaults_with_a_validation_set_stop_on_it_and_keep_the_best_epoch(monkeypatch):
    monkeypatch.setattr(sequential, "EVAL_STEPS", 3)  # validate every epoch (3 steps an epoch)
    monkeypatch.setattr(sequential, "AUTO_MAX_EPOCHS", 12)
    train, valid, _ = leave_one_out(cyclic(), by="row")
    model = SASRec(factors=16, max_len=8, batch_size=32, device="cpu").fit(train, valid_items=valid, show_progress=False)
    assert not hasattr(model, "selection_history_") and model.eval_every_ == 1
    scores = [h["valid"] for h in model.history_]
    assert model.iterations_ == model.best_epoch_ == int(np.argmax(scores)) + 1
    np.testing.assert_array_equal(model.hist_items_, np.concatenate(train.sequences("row")))
