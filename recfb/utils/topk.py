"""Row-wise top-k with the library's one padding rule: id ``-1``, score ``-inf``.

Every top-k in recfb (model ``recommend``, the serving indices, shard merging) comes from
here, so they agree on ties and padding:

- Scores are higher-is-better; an entry scored ``-inf`` is filtered (excluded, banned) and
  comes back as id ``pad_id`` (-1) unless ``keep_filtered``.
- Rows are best first. Ties: :func:`topk_rows` keeps the order ``np.argpartition`` leaves
  the k winners in, then sorts them stably (deterministic for a given numpy);
  :func:`topk_rows_torch` is ``torch.topk`` over candidate groups; :func:`merge_topk_rows`
  and :func:`merge_topk_torch` keep, among equal scores, the earlier part first.
- A row with fewer than ``k`` eligible items is padded with ``(-1, -inf)`` at its end.

numpy is the reference; the torch versions run inside the exact serving kernel (CPU or
CUDA), where the data already lives in tensors.
"""
from __future__ import annotations

import numpy as np

#: items per candidate group in :func:`topk_rows_torch`
GROUP = 32
PAD_ID = -1
PAD_SCORE = float("-inf")


def topk_rows(scores: np.ndarray, k: int, *, keep_filtered: bool = False, pad: bool = False,
              pad_id: int = PAD_ID, id_dtype=np.int32):
    """Row-wise top-``k`` of a dense ``(n, m)`` score block: ``(ids, scores float32)``, best first.

    ``k`` above ``m`` is clamped to ``m``, or, with ``pad``, the result has ``k`` columns and
    the missing ones are ``(pad_id, -inf)``. Entries scored ``-inf`` come back as ``pad_id``,
    or keep their ids (ranked last) with ``keep_filtered``.
    """
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    width = max(int(k), 0)
    k = min(width, n_cols)
    if k <= 0:
        ids, vals = np.empty((n_rows, 0), id_dtype), np.empty((n_rows, 0), np.float32)
    else:
        if k < n_cols:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
        vals = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        ids = np.take_along_axis(part, order, axis=1).astype(id_dtype)
        vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
        if not keep_filtered:
            ids[np.isneginf(vals)] = pad_id
    if pad and width > k:
        ids, vals = pad_columns(ids, vals, width, pad_id)
    return ids, vals


def pad_columns(ids: np.ndarray, scores: np.ndarray, k: int, pad_id: int = PAD_ID):
    """Widen ``(n, j)`` results to ``(n, k)`` with ``(pad_id, -inf)`` (no-op when j >= k)."""
    extra = k - ids.shape[1]
    if extra <= 0:
        return ids, scores
    return (np.pad(ids, ((0, 0), (0, extra)), constant_values=pad_id),
            np.pad(scores, ((0, 0), (0, extra)), constant_values=PAD_SCORE))


def merge_topk_rows(ids: np.ndarray, scores: np.ndarray, k: int, pad_id: int = PAD_ID):
    """Top-``k`` of concatenated per-part top lists ``(n, total)``; equal scores keep the
    earlier column first (a stable sort), and rows are padded to ``k``."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(ids, order, axis=1)
    vals = np.take_along_axis(scores, order, axis=1)
    return pad_columns(top, vals, k, pad_id)


def first_k_valid(ids: np.ndarray, scores: np.ndarray, valid: np.ndarray, k: int, pad_id: int = PAD_ID):
    """The first ``k`` entries with ``valid`` of each (already sorted) row, padded with
    ``(pad_id, -inf)``; also which rows had fewer than ``k`` valid entries."""
    n = ids.shape[0]
    rank = np.cumsum(valid, axis=1) - 1
    take = valid & (rank < k)
    r, c = np.nonzero(take)
    out_ids = np.full((n, k), pad_id, np.int64)
    out_scores = np.full((n, k), PAD_SCORE, np.float32)
    out_ids[r, rank[r, c]] = ids[r, c]
    out_scores[r, rank[r, c]] = scores[r, c]
    return out_ids, out_scores, valid.sum(axis=1) < k


# ----------------------------------------------------------------------------- torch
def topk_rows_torch(s, k: int):
    """Row-wise top-``k`` of a score tensor ``(rows, width)``, sorted best first, as
    ``(ids int64, scores)``; ``-inf`` entries are not masked (see :func:`mask_padding_torch`).

    Items are taken in groups of :data:`GROUP`: a row's top-k lies inside the ``k`` groups
    with the largest maxima (any other group's maximum is beaten by ``k`` chosen items), so
    ``torch.topk`` runs over ``k * GROUP`` gathered scores instead of the full width.
    """
    import torch
    rows, width = s.shape
    main = (width // GROUP) * GROUP
    if k == 0:
        return torch.empty((rows, 0), dtype=torch.long, device=s.device), s[:, :0]
    if main < 4 * k * GROUP or rows < 4:  # too narrow (or too few rows) for groups to pay off
        scores, ids = torch.topk(s, k, dim=1)
        return ids, scores
    groups = s[:, :main].reshape(rows, main // GROUP, GROUP).amax(2)
    top_groups = torch.topk(groups, k, dim=1).indices
    cand = (top_groups.unsqueeze(2) * GROUP + torch.arange(GROUP, device=s.device)).reshape(rows, -1)
    if main < width:  # the last < GROUP columns are always candidates
        tail = torch.arange(main, width, device=s.device).expand(rows, width - main)
        cand = torch.cat([cand, tail], 1)
    cand_scores = torch.gather(s, 1, cand)
    scores, pos = torch.topk(cand_scores, k, dim=1)
    return torch.gather(cand, 1, pos), scores


def merge_topk_torch(parts_ids, parts_scores, k: int):
    """Top-``k`` of several ``(ids, scores)`` tensor parts with the same rows."""
    import torch
    if len(parts_ids) == 1:
        return parts_ids[0], parts_scores[0]
    all_scores = torch.cat(parts_scores, 1)
    scores, pos = torch.topk(all_scores, min(k, all_scores.shape[1]), dim=1)
    return torch.gather(torch.cat(parts_ids, 1), 1, pos), scores


def mask_padding_torch(ids, scores, pad_id: int = PAD_ID):
    """``ids`` with ``pad_id`` wherever the score is ``-inf``."""
    import torch
    return ids.masked_fill(torch.isneginf(scores), pad_id)
