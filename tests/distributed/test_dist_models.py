"""LightGCN and SASRec under fit(distributed=True) on 2 gloo ranks: every rank ends with the
same weights, and they differ from one process's (the ranks trained on halves of each epoch),
and SASRec's ranks drew their negatives from their own generators."""
import dist_workers as W
import numpy as np
from dist_launch import results_of

from recfb.models import LightGCN, SASRec


def test_lightgcn_and_sasrec_ranks_end_identical(rank_results):
    r0, r1 = results_of(rank_results, "models")
    for key in ("lgcn_items", "sasrec_items"):
        np.testing.assert_array_equal(r0[key], r1[key])
        assert np.isfinite(r0[key]).all()
    one = LightGCN(factors=8, iterations=2, batch_size=64, device="cpu").fit(W.train_matrix(), show_progress=False)
    assert not np.array_equal(one.item_factors, r0["lgcn_items"])
    seq = SASRec(factors=8, iterations=2, batch_size=8, max_len=5, dropout=0.2, random_state=0,
                 device="cpu").fit(W.sequences(), show_progress=False)
    assert not np.array_equal(seq.net_.item.weight.detach().numpy(), r0["sasrec_items"])
