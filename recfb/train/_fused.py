"""A compiled per-sample SGD epoch for matrix factorisation with the BPR or BCE objective.

The autograd loop spends most of an MF epoch on tensor temporaries and embedding backward
passes (memory-bound on CPU); this kernel does what implicit's BPR does — one SGD update per
(user, positive, negatives) sample, Hogwild across threads — for the same objectives, fed by
the same samplers (the epoch's positive order and negatives are drawn in torch beforehand).
With ``num_threads=1`` it is deterministic; with more threads updates race (as in implicit).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

BPR, BCE = 0, 1


@njit(cache=True, fastmath=True)
def _softplus(x):
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


@njit(cache=True, fastmath=True)
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@njit(cache=True, fastmath=True)
def _dot(a, b):
    x = np.float32(0.0)
    for f in range(a.size):
        x += a[f] * b[f]
    return x


@njit(cache=True, fastmath=True)
def _sample_update(U, V, b, has_bias, u, i, negs, w, lr, reg, kind, grad_u, coef):
    """One SGD step on one positive and its negatives: every score is computed with the old
    parameters, then item rows and finally the user row are updated."""
    d = U.shape[1]
    n = negs.size
    pu = U[u]
    vi = V[i]
    s_pos = _dot(pu, vi) + (b[i] if has_bias else np.float32(0.0))
    loss = 0.0
    c_pos = np.float32(0.0)
    for k in range(n):
        j = negs[k]
        s_neg = _dot(pu, V[j]) + (b[j] if has_bias else np.float32(0.0))
        if kind == BPR:
            x = s_pos - s_neg
            loss += _softplus(-x) / n
            z = np.float32(w * _sigmoid(-x) / n)
            c_pos += z
            coef[k] = -z
        else:
            loss += _softplus(s_neg)
            coef[k] = -np.float32(_sigmoid(s_neg))
    if kind == BCE:
        loss += _softplus(-s_pos)
        c_pos = np.float32(w * _sigmoid(-s_pos))
    # d(-loss)/du = c_pos v_i + sum_k coef_k v_jk ; d(-loss)/dv = coef u
    for f in range(d):
        grad_u[f] = c_pos * vi[f]
    for k in range(n):
        vj = V[negs[k]]
        ck = coef[k]
        for f in range(d):
            grad_u[f] += ck * vj[f]
    for f in range(d):
        vi[f] += lr * (c_pos * pu[f] - reg * vi[f])
    for k in range(n):
        vj = V[negs[k]]
        ck = coef[k]
        for f in range(d):
            vj[f] += lr * (ck * pu[f] - reg * vj[f])
    if has_bias:
        b[i] += lr * c_pos
        for k in range(n):
            b[negs[k]] += lr * coef[k]
    for f in range(d):
        pu[f] += lr * (grad_u[f] - reg * pu[f])
    return loss


@njit(cache=True, parallel=True, fastmath=True)
def _epoch(U, V, b, has_bias, users, items, order, negatives, weights, has_weights, lr, reg, kind, n_chunks):
    n = order.size
    losses = np.zeros(n_chunks)
    for c in prange(n_chunks):
        grad_u = np.empty(U.shape[1], np.float32)
        coef = np.empty(negatives.shape[1], np.float32)
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        acc = 0.0
        for p in range(lo, hi):
            s = order[p]
            w = weights[s] if has_weights else 1.0
            acc += _sample_update(U, V, b, has_bias, users[s], items[s], negatives[p], w, lr, reg, kind, grad_u, coef)
        losses[c] = acc
    return losses.sum()


def mf_sgd_epoch(U, V, bias, users, items, order, negatives, weights, learning_rate, regularization,
                 objective: str, num_threads: int = 0) -> float:
    """One epoch of per-sample SGD, in place on float32 arrays ``U``, ``V`` (and ``bias``).

    ``order`` (n,) are the interaction indices to visit, ``negatives`` (n, k) their sampled
    negatives. Returns the summed loss (for the loop's logging and NaN check).
    """
    import numba
    kind = {"bpr": BPR, "bce": BCE}[objective]
    threads = numba.config.NUMBA_NUM_THREADS if num_threads in (0, None) else int(num_threads)
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(1, np.float32)
    has_weights = weights is not None
    w = weights if has_weights else np.zeros(1, np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return float(_epoch(U, V, b, has_bias, users, items, order, negatives, w, has_weights,
                            np.float32(learning_rate), np.float32(regularization), kind, threads))
    finally:
        numba.set_num_threads(previous)
