"""recfb.utils.topk: the one top-k with -1/-inf padding, against brute force and the model's
own topk (bit-identical), numpy and torch versions agreeing."""
import numpy as np
import pytest
import torch

from recfb.models.base import topk as model_topk
from recfb.utils.topk import (
    first_k_valid,
    mask_padding_torch,
    merge_topk_rows,
    merge_topk_torch,
    pad_columns,
    topk_rows,
    topk_rows_torch,
)


def _brute(scores, k):
    """Sorted by (-score, column) with -inf entries as -1: the reference for tie-free data."""
    ids = np.full((scores.shape[0], k), -1, np.int64)
    vals = np.full((scores.shape[0], k), -np.inf, np.float32)
    for r, row in enumerate(scores):
        order = sorted(range(row.size), key=lambda c: (-row[c], c))[:k]
        for j, c in enumerate(order):
            vals[r, j] = row[c]
            ids[r, j] = c if np.isfinite(row[c]) else -1
    return ids, vals


@pytest.mark.parametrize("k", [1, 5, 40, 60])
def test_topk_rows_matches_brute_force_with_filtered_and_padding(k):
    rng = np.random.default_rng(k)
    s = rng.permutation(30 * 40).reshape(30, 40).astype(np.float32)  # distinct scores: no ties
    s[rng.random(s.shape) < 0.3] = -np.inf
    s[3] = -np.inf  # a row with nothing eligible
    ids, vals = topk_rows(s, k, pad=True, id_dtype=np.int64)
    ref_ids, ref_vals = _brute(s, min(k, 40))
    ref_ids, ref_vals = pad_columns(ref_ids, ref_vals, k)
    assert ids.shape == (30, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(vals, ref_vals)
    assert (ids[3] == -1).all()


def test_topk_rows_is_bit_identical_to_the_models_topk_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, (50, 300)).astype(np.float32)  # many ties
    s[rng.random(s.shape) < 0.2] = -np.inf
    for k in (1, 7, 299, 300, 301):
        for keep in (False, True):
            a = topk_rows(s, k, keep_filtered=keep)
            b = model_topk(s, k, keep_filtered=keep)
            np.testing.assert_array_equal(a[0], b[0])
            assert a[0].dtype == b[0].dtype == np.int32
            np.testing.assert_array_equal(a[1].view(np.uint32), b[1].view(np.uint32))


def test_torch_topk_equals_numpy_on_distinct_scores_in_both_branches():
    rng = np.random.default_rng(1)
    for rows, width, k in [(2, 50, 5), (16, 5000, 10), (16, 5000 + 17, 3)]:  # plain topk, grouped, grouped + tail
        s = rng.standard_normal((rows, width)).astype(np.float32)
        ids_t, vals_t = topk_rows_torch(torch.from_numpy(s), k)
        ids_n, vals_n = topk_rows(s, k, id_dtype=np.int64)
        np.testing.assert_array_equal(ids_t.numpy(), ids_n)
        np.testing.assert_array_equal(vals_t.numpy(), vals_n)


def test_merges_keep_the_best_and_pad():
    a_ids, a_s = np.array([[0, 1]]), np.array([[5.0, 1.0]], np.float32)
    b_ids, b_s = np.array([[7, 8]]), np.array([[5.0, 3.0]], np.float32)
    top, vals = merge_topk_rows(np.hstack([a_ids, b_ids]), np.hstack([a_s, b_s]), 6)
    np.testing.assert_array_equal(top, [[0, 7, 8, 1, -1, -1]])  # equal scores: the earlier part first
    np.testing.assert_array_equal(vals, [[5, 5, 3, 1, -np.inf, -np.inf]])
    t_ids, t_s = merge_topk_torch([torch.tensor(a_ids), torch.tensor(b_ids)], [torch.tensor(a_s), torch.tensor(b_s)], 3)
    assert t_s.tolist() == [[5.0, 5.0, 3.0]] and sorted(t_ids[0, :2].tolist()) == [0, 7] and t_ids[0, 2] == 8
    masked = mask_padding_torch(torch.tensor([[3, 4]]), torch.tensor([[1.0, -np.inf]]))
    assert masked.tolist() == [[3, -1]]


def test_first_k_valid_compacts_and_reports_short_rows():
    ids = np.array([[4, 5, 6, 7], [1, 2, 3, -1]])
    scores = np.array([[4, 3, 2, 1], [9, 8, 7, -np.inf]], np.float32)
    valid = np.array([[True, False, True, True], [False, False, True, False]])
    out_ids, out_s, short = first_k_valid(ids, scores, valid, 2)
    np.testing.assert_array_equal(out_ids, [[4, 6], [3, -1]])
    np.testing.assert_array_equal(out_s, [[4, 2], [7, -np.inf]])
    np.testing.assert_array_equal(short, [False, True])
