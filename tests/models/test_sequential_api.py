"""The sequential models' unified arguments (issue 16): fit(valid_items=) as the other models
(valid= deprecated), weight_decay (l2= deprecated), one error type per kind of mistake, the
recfb.losses.sequence objective each loss name trains with, and the package layout's imports."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recfb.data.split import leave_one_out
from recfb.losses import GBCE, FullSoftmax, SampledSoftmax, SeqBCE
from recfb.models import BERT4Rec, SASRec, gSASRec, load
from recfb.testing import checkerboard_holdout, ordered_interactions

SMALL = dict(factors=8, iterations=3, batch_size=16, max_len=10, dropout=0.0, random_state=0, device="cpu")


def data():
    return ordered_interactions(checkerboard_holdout(20)[0])


def test_valid_items_takes_interactions_or_a_matrix_and_valid_is_deprecated():
    train, valid, _ = leave_one_out(data(), by="timestamp")
    new = SASRec(patience=2, **SMALL).fit(train, valid_items=valid, show_progress=False)
    as_matrix = SASRec(patience=2, **SMALL).fit(train, valid_items=valid.with_id_space(
        train.user_map, train.item_map).matrix, show_progress=False)
    with pytest.warns(DeprecationWarning, match=r"fit\(valid=...\) is deprecated; use fit\(valid_items=...\)"):
        old = SASRec(patience=2, **SMALL).fit(train, valid=valid, show_progress=False)
    scores = [[h["valid"] for h in m.history_] for m in (new, as_matrix, old)]
    assert scores[0] == scores[1] == scores[2] and len(scores[0]) == 3
    np.testing.assert_array_equal(new.item_factors, old.item_factors)
    with pytest.raises(TypeError, match="both valid_items and valid"):
        SASRec(**SMALL).fit(train, valid_items=valid, valid=valid, show_progress=False)
    with pytest.raises(TypeError, match="valid_items must be recfb.data.Interactions or a scipy.sparse"):
        SASRec(**SMALL).fit(train, valid_items=np.zeros((20, 20)), show_progress=False)
    with pytest.raises(Exception, match="valid_items has shape"):
        SASRec(**SMALL).fit(train, valid_items=sp.csr_matrix((3, 20), dtype=np.float32), show_progress=False)


@pytest.mark.parametrize("cls", [SASRec, gSASRec, BERT4Rec], ids=lambda c: c.__name__)
def test_weight_decay_is_adams_and_l2_its_deprecated_name(cls, tmp_path):
    kw = dict(SMALL, num_heads=2) if cls is BERT4Rec else SMALL
    plain = cls(**kw).fit(data(), show_progress=False)
    new = cls(weight_decay=0.5, **kw).fit(data(), show_progress=False)
    with pytest.warns(DeprecationWarning, match=r"l2=...\) is deprecated; use weight_decay=0.5"):
        old = cls(l2=0.5, **kw).fit(data(), show_progress=False)
    # float tolerance: the first gSASRec fit of a process differs from later ones by ~3e-8
    # (measured before the rename too; torch's CPU kernels), so equal weights show as 1e-7
    np.testing.assert_allclose(new.item_factors, old.item_factors, rtol=1e-5, atol=1e-6)
    assert np.abs(new.item_factors - plain.item_factors).max() > 1e-3
    with pytest.raises(ValueError, match="give weight_decay only"):
        cls(l2=0.5, weight_decay=0.1, **kw).fit(data(), show_progress=False)
    # a file written with l2 (as before the rename) loads as weight_decay, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load(old.save(tmp_path / "m.npz"))
    assert back.weight_decay == 0.5 and back.l2 is None
    np.testing.assert_array_equal(back.item_factors, old.item_factors)


@pytest.mark.parametrize("kw,err,match", [
    ({"dropout": "0.1"}, TypeError, r"dropout == '0.1', must be in \[0, 1\) \(got str\)"),
    ({"dropout": 1.0}, ValueError, r"dropout == 1.0, must be in \[0, 1\)"),
    ({"learning_rate": None}, TypeError, r"learning_rate == None, must be a finite number > 0 \(got NoneType\)"),
    ({"learning_rate": 0.0}, ValueError, r"learning_rate == 0.0, must be a finite number > 0"),
    ({"gbce_t": True}, TypeError, r"gbce_t == True, must be in \[0, 1\] \(got bool\)"),
    ({"gbce_t": float("nan")}, ValueError, "gbce_t == nan"),
    ({"weight_decay": -1.0}, ValueError, "weight_decay == -1.0"),
    ({"loss": 3}, TypeError, r"loss == 3, must be one of 'bce', 'gbce', 'sampled_softmax', 'softmax' \(got int\)"),
    ({"loss": "hinge"}, ValueError, "loss == 'hinge'"),
    ({"factors": 8.0}, TypeError, r"factors == 8.0, must be an int >= 1 \(got float\)"),
    ({"max_len": 0}, ValueError, "max_len == 0"),
    ({"patience": 1.5}, TypeError, r"patience == 1.5, must be an int >= 1 or None \(got float\)"),
    ({"valid_negatives": 0}, ValueError, "valid_negatives == 0"),
])
def test_one_error_type_per_kind_of_mistake(kw, err, match):
    """One InvalidParameterError for every bad parameter (a TypeError and a ValueError, so both
    kinds of except clause catch it), naming the value, the accepted forms and the type."""
    from recfb.utils.errors import InvalidParameterError
    with pytest.raises(InvalidParameterError, match=match) as info:
        SASRec(**{**SMALL, **kw}).fit(data(), show_progress=False)
    assert isinstance(info.value, err)


def test_mask_prob_errors():
    with pytest.raises(TypeError, match=r"mask_prob == '0.2', must be in \(0, 1\) \(got str\)"):
        BERT4Rec(mask_prob="0.2", num_heads=2, **SMALL).fit(data(), show_progress=False)
    with pytest.raises(ValueError, match=r"mask_prob == 1.0, must be in \(0, 1\)"):
        BERT4Rec(mask_prob=1.0, num_heads=2, **SMALL).fit(data(), show_progress=False)


@pytest.mark.parametrize("make,objective", [
    (lambda: SASRec(loss="bce", **SMALL), SeqBCE),
    (lambda: SASRec(loss="gbce", num_negatives=4, gbce_t=0.5, **SMALL), GBCE),
    (lambda: gSASRec(num_negatives=4, **SMALL), GBCE),
    (lambda: SASRec(loss="sampled_softmax", num_negatives=4, **SMALL), SampledSoftmax),
    (lambda: SASRec(loss="softmax", **SMALL), FullSoftmax),
    (lambda: BERT4Rec(num_heads=2, **SMALL), FullSoftmax),
])
def test_each_loss_trains_with_its_recfb_losses_objective(make, objective):
    m = make().fit(data(), show_progress=False)
    assert type(m.objective_) is objective
    if objective is GBCE:
        assert m.objective_.t == m.gbce_t and m.objective_.n_items == 20


def test_old_import_paths_still_work():
    import recfb.models.sequential as seq
    from recfb.models.sequential import (  # noqa: F401 - the names the single module had
        AUTO_MAX_EPOCHS,
        EVAL_STEPS,
        HOLDOUT_FRACTION,
        LOSSES,
        AutoStopping,
        SequenceEncoder,
        auto_eval_every,
        gbce_beta,
        holdout_last,
        pack_sequences,
        pad_left,
        trim,
    )
    assert seq.SASRec is SASRec and seq.gSASRec is gSASRec and seq.BERT4Rec is BERT4Rec
    assert LOSSES == ("bce", "gbce", "sampled_softmax", "softmax")
