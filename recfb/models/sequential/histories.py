"""Packed per-user sequences: packing, left padding, holding out last items, trimming padding.

A set of sequences is packed CSR-style as ``(indptr, items)``: user ``u``'s items, oldest
first, are ``items[indptr[u]:indptr[u + 1]]``. Everything here is vectorised over users.
"""
from __future__ import annotations

import numpy as np


def pack_sequences(seqs) -> tuple[np.ndarray, np.ndarray]:
    """List of int arrays -> (indptr, items)."""
    lengths = np.fromiter((len(s) for s in seqs), np.int64, count=len(seqs))
    indptr = np.zeros(len(seqs) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    items = np.concatenate([np.asarray(s, np.int64) for s in seqs]) if len(seqs) else np.empty(0, np.int64)
    return indptr, items


def pad_left(indptr: np.ndarray, items: np.ndarray, rows: np.ndarray, max_len: int, *, drop_last: int = 0,
             drop_first: int = 0, shift: int = 1) -> np.ndarray:
    """Rows ``rows`` of a packed sequence set as a left-padded ``(len(rows), max_len)`` int64
    array of ``item + shift`` (0 = padding), keeping the last ``max_len`` items after dropping
    ``drop_first`` items from the start and ``drop_last`` from the end. Vectorised."""
    start = indptr[rows] + drop_first
    stop = indptr[rows + 1] - drop_last
    length = np.maximum(stop - start, 0)
    keep = np.minimum(length, max_len)
    out = np.zeros((rows.size, max_len), np.int64)
    r = np.repeat(np.arange(rows.size), keep)
    offset = np.arange(keep.sum()) - np.repeat(np.cumsum(keep) - keep, keep)  # 0..keep-1 within the row
    src = np.repeat(stop - keep, keep) + offset
    out[r, max_len - np.repeat(keep, keep) + offset] = items[src] + shift
    return out


def holdout_last(indptr: np.ndarray, items: np.ndarray, min_length: int, n_users: int, seed):
    """Hold out the last item of up to ``n_users`` seeded random sequences longer than
    ``min_length`` (so each keeps at least ``min_length`` items). Returns the remaining packed
    sequences ``(indptr, items)``, the held-out sequences' rows (sorted) and their last items."""
    lengths = np.diff(indptr)
    eligible = np.flatnonzero(lengths > min_length)
    take = min(int(n_users), eligible.size)
    users = np.sort(np.random.default_rng(seed).choice(eligible, take, replace=False)) if take else eligible
    last = indptr[users + 1] - 1
    keep = np.ones(items.size, bool)
    keep[last] = False
    lengths = lengths.copy()
    lengths[users] -= 1
    out = np.zeros_like(indptr)
    np.cumsum(lengths, out=out[1:])
    return out, items[keep], users, items[last]


def trim(*arrays):
    """Drop the leading all-padding columns shared by left-padded arrays (the first array
    decides); returns the trimmed arrays and the number of columns dropped."""
    width = int((arrays[0] != 0).sum(axis=1).max()) if arrays[0].size else 0
    width = max(width, 1)
    offset = arrays[0].shape[1] - width
    return [a[:, offset:] for a in arrays], offset

