"""Compiled per-sample SGD epochs: matrix factorisation (BPR or BCE) and collaborative metric learning.

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

from recfb.utils.threads import kernel_threads, single_thread_blas

BPR, BCE = 0, 1


@njit(cache=True, fastmath=True)
def _dot(a, b):
    x = np.float32(0.0)
    for f in range(a.size):
        x += a[f] * b[f]
    return x


@njit(cache=True, fastmath=True)
def _logistic(x):
    """``(softplus(x), sigmoid(x))`` from one exponential."""
    e = math.exp(-abs(x))
    sp = (x if x > 0 else 0.0) + math.log1p(e)
    return sp, (1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e))


@njit(cache=True, fastmath=True)
def _apply_update(U, V, b, has_bias, u, i, negs, lr, reg, c_pos, coef, grad_u):
    """The SGD step of one sample from its coefficients (``c_pos`` of the positive, ``coef[k]``
    of each negative, all from the old parameters): item rows first, then the user row.
    d(-loss)/du = c_pos v_i + sum_k coef_k v_jk ; d(-loss)/dv = coef u. Simple loops over the
    factors, each of which vectorises (a fused pass with an inner loop over the negatives was
    slower: benchmarks/RESULTS.md, "Why the code is shaped this way")."""
    d = U.shape[1]
    n = negs.size
    pu = U[u]
    vi = V[i]
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


@njit(cache=True, fastmath=True)
def _sample_update(U, V, b, has_bias, u, i, negs, w, lr, reg, kind, grad_u, coef):
    """One SGD step on one positive and its negatives: every score is computed with the old
    parameters, then :func:`_apply_update`. Returns the sample's loss."""
    n = negs.size
    pu = U[u]
    s_pos = _dot(pu, V[i]) + (b[i] if has_bias else np.float32(0.0))
    loss = 0.0
    c_pos = np.float32(0.0)
    for k in range(n):
        j = negs[k]
        s_neg = _dot(pu, V[j]) + (b[j] if has_bias else np.float32(0.0))
        if kind == BPR:
            sp, sig = _logistic(s_neg - s_pos)
            loss += sp / n
            z = np.float32(w * sig / n)
            c_pos += z
            coef[k] = -z
        else:
            sp, sig = _logistic(s_neg)
            loss += sp
            coef[k] = -np.float32(sig)
    if kind == BCE:
        sp, sig = _logistic(-s_pos)
        loss += sp
        c_pos = np.float32(w * sig)
    _apply_update(U, V, b, has_bias, u, i, negs, lr, reg, c_pos, coef, grad_u)
    return loss


@njit(cache=True, fastmath=True)
def _sample_update_rce(U, V, b, has_bias, u, i, negs, w, lr, reg, kind, grad_u, coef, beta, rce_neg, rec):
    """:func:`_sample_update` under R-CE (the denoiser :class:`recfb.denoise.RCE`, as the
    training step applies it): the positive's loss weighted by ``sigmoid(s_ui)^beta`` and, with
    ``rce_neg``, each negative's term (BCE) or pair term (BPR) by ``sigmoid(-s_uj)^beta``, the
    weights held constant. ``rec[0]``/``rec[1]`` receive the positive's loss and its weight
    (the denoiser's noise scores); the returned loss is the step's weighted one."""
    n = negs.size
    pu = U[u]
    s_pos = _dot(pu, V[i]) + (b[i] if has_bias else np.float32(0.0))
    wp = np.float32(_logistic(s_pos)[1] ** beta)
    loss = 0.0
    pos_loss = 0.0
    c_pos = np.float32(0.0)
    for k in range(n):
        j = negs[k]
        s_neg = _dot(pu, V[j]) + (b[j] if has_bias else np.float32(0.0))
        wn = np.float32(_logistic(-s_neg)[1] ** beta) if rce_neg else np.float32(1.0)
        if kind == BPR:
            sp, sig = _logistic(s_neg - s_pos)
            pos_loss += wn * sp / n
            z = np.float32(w * wp * wn * sig / n)
            c_pos += z
            coef[k] = -z
        else:
            sp, sig = _logistic(s_neg)
            loss += wn * sp
            coef[k] = -np.float32(wn * sig)
    if kind == BCE:
        sp, sig = _logistic(-s_pos)
        pos_loss = sp
        c_pos = np.float32(w * wp * sig)
    loss += w * wp * pos_loss
    rec[0] = pos_loss
    rec[1] = wp
    _apply_update(U, V, b, has_bias, u, i, negs, lr, reg, c_pos, coef, grad_u)
    return loss


@njit(cache=True, fastmath=True)
def _sample_update_nbpo(U, V, b, has_bias, u, i, negs, w, lr, reg, grad_u, coef, P, Q, reg_f, grad_f, coef_f):
    """One SGD step of NBPO (:func:`recfb.losses.nbpo_loss`) on one positive and its negatives:
    the scores ``s`` (``U``, ``V``, bias) and the flip logits ``g = P[u] . Q[.]`` are computed
    with the old parameters, ``rho = sigmoid(s)`` and ``phi = sigmoid(g)``; the surrogate's
    stop-gradient factors are those old values. Gradients of ``-loss``:

    - voted i:   ds = w (1 - phi) sigmoid(-s),  dg = -w rho sigmoid(g)
    - unvoted j: ds = phi sigmoid(-s) - sigmoid(s),  dg = rho sigmoid(-g)

    then both factorisations take :func:`_apply_update` (the flip model with L2 ``reg_f``, no
    bias). The sample weight ``w`` scales the positive's terms, as the training step does."""
    n = negs.size
    pu = U[u]
    fu = P[u]
    s_pos = _dot(pu, V[i]) + (b[i] if has_bias else np.float32(0.0))
    g_pos = _dot(fu, Q[i])
    sp_s, rho = _logistic(s_pos)  # softplus(s), sigmoid(s)
    sp_g, phi = _logistic(g_pos)
    loss = w * ((1.0 - phi) * (sp_s - s_pos) + rho * sp_g)  # softplus(-s) = softplus(s) - s
    c_pos = np.float32(w * (1.0 - phi) * (1.0 - rho))
    cf_pos = np.float32(-w * rho * phi)
    for k in range(n):
        j = negs[k]
        s_neg = _dot(pu, V[j]) + (b[j] if has_bias else np.float32(0.0))
        g_neg = _dot(fu, Q[j])
        sp_n, rho_n = _logistic(s_neg)
        spg_n, phi_n = _logistic(g_neg)
        loss += phi_n * (sp_n - s_neg) + sp_n + rho_n * (spg_n - g_neg)  # softplus(-g) = softplus(g) - g
        coef[k] = np.float32(phi_n * (1.0 - rho_n) - rho_n)
        coef_f[k] = np.float32(rho_n * (1.0 - phi_n))
    _apply_update(U, V, b, has_bias, u, i, negs, lr, reg, c_pos, coef, grad_u)
    _apply_update(P, Q, b, False, u, i, negs, lr, reg_f, cf_pos, coef_f, grad_f)
    return loss


@njit(cache=True, fastmath=True)
def _chunk(c, n, n_chunks):
    """The sample range ``[lo, hi)`` of chunk ``c`` when ``n`` samples are cut into ``n_chunks``
    contiguous chunks (one per thread, Hogwild)."""
    return c * n // n_chunks, (c + 1) * n // n_chunks


@njit(cache=True, parallel=True, fastmath=True)
def _epoch(U, V, b, has_bias, users, items, order, negatives, weights, has_weights, lr, reg, kind, n_chunks):
    n = order.size
    losses = np.zeros(n_chunks)
    for c in prange(n_chunks):
        grad_u = np.empty(U.shape[1], np.float32)
        coef = np.empty(negatives.shape[1], np.float32)
        lo, hi = _chunk(c, n, n_chunks)
        acc = 0.0
        for p in range(lo, hi):
            s = order[p]
            w = weights[s] if has_weights else 1.0
            acc += _sample_update(U, V, b, has_bias, users[s], items[s], negatives[p], w, lr, reg, kind, grad_u, coef)
        losses[c] = acc
    return losses.sum()


@njit(cache=True, parallel=True, fastmath=True)
def _epoch_rce(U, V, b, has_bias, users, items, order, negatives, weights, has_weights, lr, reg, kind, n_chunks,
               beta, rce_neg, last_loss, last_weight):
    """:func:`_epoch` under R-CE (a loop of its own: a branch in the plain loop cost the
    default path 5-10%), recording each visited interaction's loss and weight."""
    n = order.size
    losses = np.zeros(n_chunks)
    for c in prange(n_chunks):
        grad_u = np.empty(U.shape[1], np.float32)
        coef = np.empty(negatives.shape[1], np.float32)
        rec = np.empty(2)
        lo, hi = _chunk(c, n, n_chunks)
        acc = 0.0
        for p in range(lo, hi):
            s = order[p]
            w = weights[s] if has_weights else 1.0
            acc += _sample_update_rce(U, V, b, has_bias, users[s], items[s], negatives[p], w, lr, reg, kind, grad_u,
                                      coef, beta, rce_neg, rec)
            last_loss[s] = rec[0]
            last_weight[s] = rec[1]
        losses[c] = acc
    return losses.sum()


@njit(cache=True, fastmath=True)
def _positive_loss(U, V, b, has_bias, u, i, negs, kind, by_score):
    """The per-positive loss the training step hands a denoiser (BPR: the mean pair loss over
    the negatives; BCE, or ``by_score``: the positive's log loss), under the current parameters."""
    pu = U[u]
    s_pos = _dot(pu, V[i]) + (b[i] if has_bias else np.float32(0.0))
    if kind == BCE or by_score:
        return _logistic(-s_pos)[0]
    acc = 0.0
    for k in range(negs.size):
        j = negs[k]
        acc += _logistic(_dot(pu, V[j]) + (b[j] if has_bias else np.float32(0.0)) - s_pos)[0]
    return acc / negs.size


@njit(cache=True, parallel=True, fastmath=True)
def _epoch_tce(U, V, b, has_bias, users, items, order, negatives, weights, has_weights, lr, reg, kind, block,
               step0, drop_rate, warmup_steps, by_score, last_loss, last_weight):
    """T-CE (:class:`recfb.denoise.TCE`) on per-sample SGD: the order is cut into blocks of
    ``block`` samples (the autograd loop's batches, one step each); before a block is trained,
    every sample's positive loss is computed with the current parameters, the
    ``rate(step)`` fraction with the largest loss gets weight 0 and the rest ``m / (m -
    dropped)``, then the block's samples are updated (Hogwild across threads within a block)."""
    n = order.size
    n_blocks = (n + block - 1) // block
    losses = np.empty(block)
    weight = np.empty(block)
    total = 0.0
    for k in range(n_blocks):
        lo = k * block
        hi = min(n, lo + block)
        m = hi - lo
        for p in prange(lo, hi):
            s = order[p]
            losses[p - lo] = _positive_loss(U, V, b, has_bias, users[s], items[s], negatives[p], kind, by_score)
        rate = min(drop_rate * (step0 + k) / warmup_steps, drop_rate)
        n_drop = int(rate * m)
        scale = m / (m - n_drop)
        for q in range(m):
            weight[q] = scale
        if n_drop > 0:
            ranked = np.argsort(losses[:m])
            for q in range(m - n_drop, m):
                weight[ranked[q]] = 0.0
        acc = 0.0
        for p in prange(lo, hi):
            grad_u = np.empty(U.shape[1], np.float32)
            coef = np.empty(negatives.shape[1], np.float32)
            s = order[p]
            w = (weights[s] if has_weights else 1.0) * weight[p - lo]
            acc += _sample_update(U, V, b, has_bias, users[s], items[s], negatives[p], w, lr, reg, kind, grad_u,
                                  coef)
            last_loss[s] = losses[p - lo]
            last_weight[s] = weight[p - lo]
        total += acc
    return total


@njit(cache=True, fastmath=True)
def _pool_loss(U, V, b, has_bias, u, i, j, kind):
    """A PLD candidate's loss against its one negative ``j`` under the current parameters: BPR
    ``softplus(s_uj - s_ui)``, BCE ``softplus(-s_ui) + softplus(s_uj)`` (the objective's loss
    with one negative, as :meth:`recfb.train.step.PairStep.candidate_losses` computes it)."""
    pu = U[u]
    s_pos = _dot(pu, V[i]) + (b[i] if has_bias else np.float32(0.0))
    s_neg = _dot(pu, V[j]) + (b[j] if has_bias else np.float32(0.0))
    if kind == BPR:
        return _logistic(s_neg - s_pos)[0]
    return _logistic(-s_pos)[0] + _logistic(s_neg)[0]


@njit(cache=True, parallel=True, fastmath=True)
def _epoch_pld(U, V, b, has_bias, users, items, order, negatives, weights, has_weights, lr, reg, kind, n_chunks,
               pool, pool_neg, gumbel, inv_temp, last_loss):
    """PLD (:class:`recfb.denoise.PLD`) on per-sample SGD: before each sample is trained, the
    losses of its pool of the user's positives (``pool[p]``, interaction indices) against
    ``pool_neg[p]`` are computed with the current parameters, one is picked with probability
    ``softmax(-loss / T)`` (Gumbel-max with the pre-drawn ``gumbel[p]``), and the sample trains
    on the picked positive with its own negatives ``negatives[p]``. Each pool member's loss is
    recorded in ``last_loss`` (the denoiser's noise scores)."""
    n = order.size
    k = pool.shape[1]
    losses = np.zeros(n_chunks)
    for c in prange(n_chunks):
        grad_u = np.empty(U.shape[1], np.float32)
        coef = np.empty(negatives.shape[1], np.float32)
        lo, hi = _chunk(c, n, n_chunks)
        acc = 0.0
        for p in range(lo, hi):
            u = users[order[p]]
            best = pool[p, 0]
            best_key = -np.inf
            for q in range(k):
                s = pool[p, q]
                loss = _pool_loss(U, V, b, has_bias, u, items[s], pool_neg[p], kind)
                last_loss[s] = loss
                key = gumbel[p, q] - loss * inv_temp
                if key > best_key:
                    best_key = key
                    best = s
            w = weights[best] if has_weights else 1.0
            acc += _sample_update(U, V, b, has_bias, u, items[best], negatives[p], w, lr, reg, kind, grad_u, coef)
        losses[c] = acc
    return losses.sum()


@njit(cache=True, parallel=True, fastmath=True)
def _epoch_nbpo(U, V, b, has_bias, users, items, order, negatives, weights, has_weights, lr, reg, n_chunks, P, Q,
                reg_f):
    """NBPO (:class:`recfb.losses.NBPO`) on per-sample SGD: :func:`_sample_update_nbpo` per
    sample, the flip factors ``P``, ``Q`` updated in place beside the model's. A loop of its own,
    as :func:`_epoch_rce` (a branch and the flip buffers in the plain loop would slow the default
    path)."""
    n = order.size
    losses = np.zeros(n_chunks)
    for c in prange(n_chunks):
        grad_u = np.empty(U.shape[1], np.float32)
        coef = np.empty(negatives.shape[1], np.float32)
        grad_f = np.empty(P.shape[1], np.float32)
        coef_f = np.empty(negatives.shape[1], np.float32)
        lo, hi = _chunk(c, n, n_chunks)
        acc = 0.0
        for p in range(lo, hi):
            s = order[p]
            w = weights[s] if has_weights else 1.0
            acc += _sample_update_nbpo(U, V, b, has_bias, users[s], items[s], negatives[p], w, lr, reg, grad_u, coef,
                                       P, Q, reg_f, grad_f, coef_f)
        losses[c] = acc
    return losses.sum()


def mf_sgd_epoch(U, V, bias, users, items, order, negatives, weights, learning_rate, regularization,
                 objective: str, num_threads: int = 0, rce=None, tce=None, pld=None, nbpo=None) -> float:
    """One epoch of per-sample SGD, in place on float32 arrays ``U``, ``V`` (and ``bias``).

    ``order`` (n,) are the interaction indices to visit, ``negatives`` (n, k) their sampled
    negatives. ``rce``: an optional ``(beta, negatives, last_loss, last_weight)`` applying R-CE
    per sample (see :func:`_sample_update`), recording each visited interaction's loss and
    weight into the float32 arrays ``last_loss``/``last_weight`` (nnz,). ``tce``: an optional
    ``(drop_rate, warmup_steps, first_step, block, last_loss, last_weight, by_score)`` applying
    T-CE per block of ``block`` samples (see :func:`_epoch_tce`; ``by_score``: rank by the
    positive's log loss). ``pld``: an optional ``(pool, pool_neg,
    gumbel, temperature, last_loss)`` resampling each sample's positive from its pool (see
    :func:`_epoch_pld`). ``nbpo`` (``objective="nbpo"``): ``(P, Q, flip_regularization)``, the
    flip factors trained beside the model's (see :func:`_epoch_nbpo`). Returns the summed loss
    (for the loop's logging and NaN check).
    """
    kind = {"bpr": BPR, "bce": BCE, "nbpo": BCE}[objective]
    if (objective == "nbpo") != (nbpo is not None):
        raise ValueError("objective='nbpo' and the nbpo=(P, Q, flip_regularization) argument go together.")
    if nbpo is not None and (rce is not None or tce is not None or pld is not None):
        raise ValueError("the NBPO kernel takes no denoiser (NBPO is the noise model).")
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(1, np.float32)
    has_weights = weights is not None
    w = weights if has_weights else np.zeros(1, np.float32)
    if tce is not None:
        drop_rate, warmup_steps, first_step, block, last_loss, last_weight, by_score = tce
        with kernel_threads(num_threads):
            return float(_epoch_tce(U, V, b, has_bias, users, items, order, negatives, w, has_weights,
                                    np.float32(learning_rate), np.float32(regularization), kind, int(block),
                                    int(first_step), float(drop_rate), float(warmup_steps), bool(by_score), last_loss,
                                    last_weight))
    with kernel_threads(num_threads) as threads:
        if nbpo is not None:
            P, Q, flip_reg = nbpo
            return float(_epoch_nbpo(U, V, b, has_bias, users, items, order, negatives, w, has_weights,
                                     np.float32(learning_rate), np.float32(regularization), threads, P, Q,
                                     np.float32(flip_reg)))
        if pld is not None:
            pool, pool_neg, gumbel, temperature, last_loss = pld
            return float(_epoch_pld(U, V, b, has_bias, users, items, order, negatives, w, has_weights,
                                    np.float32(learning_rate), np.float32(regularization), kind, threads, pool,
                                    pool_neg, gumbel, np.float32(1.0 / temperature), last_loss))
        if rce is None:
            return float(_epoch(U, V, b, has_bias, users, items, order, negatives, w, has_weights,
                                np.float32(learning_rate), np.float32(regularization), kind, threads))
        beta, rce_neg, last_loss, last_weight = rce
        return float(_epoch_rce(U, V, b, has_bias, users, items, order, negatives, w, has_weights,
                                np.float32(learning_rate), np.float32(regularization), kind, threads,
                                float(beta), bool(rce_neg), last_loss, last_weight))


# ---------------------------------------------------------------- collaborative metric learning
@njit(cache=True, fastmath=True)
def _sqdist(a, b):
    x = np.float32(0.0)
    for f in range(a.size):
        t = a[f] - b[f]
        x += t * t
    return x


@njit(cache=True, fastmath=True)
def _clip_unit(row):
    """Project a row into the unit ball (torch.renorm(maxnorm=1)'s rule)."""
    norm = math.sqrt(_dot(row, row))
    if norm > 1.0:
        scale = np.float32(1.0 / (norm + 1e-7))
        for f in range(row.size):
            row[f] *= scale


@njit(cache=True, fastmath=True)
def _cml_update(U, V, u, i, negs, sw, lr, reg, margin, n_items):
    """One SGD step of CML's WARP hinge on one positive and its sampled negatives: distances
    with the old parameters, the hardest negative (nearest to the user) takes the hinge, the
    rank weight ``log(1 + floor(n_items * violators / n))`` times the sample weight ``sw``; L2
    ``reg`` on the user, the positive and each negative / n (the autograd path's
    regularization); the rows are then projected into the unit ball. Returns the loss."""
    d = U.shape[1]
    n = negs.size
    pu = U[u]
    vi = V[i]
    d_pos = _sqdist(pu, vi)
    violators = 0
    best = -1
    best_d = np.float32(np.inf)
    for k in range(n):
        dj = _sqdist(pu, V[negs[k]])
        if margin + d_pos - dj > 0:
            violators += 1
        if dj < best_d:
            best_d = dj
            best = negs[k]
    w = sw * math.log1p(math.floor(n_items * violators / n))
    if w == 0.0 and reg == 0:
        return 0.0
    c = np.float32(2.0 * w)
    # the hardest negative's L2 share, once per time it was drawn
    reg_j = np.float32(0.0)
    for k in range(n):
        if negs[k] == best:
            reg_j += reg / n
    vj = V[best]
    for f in range(d):
        uf, vif, vjf = pu[f], vi[f], vj[f]
        # d loss / d u = 2w (v_j - v_i); d / d v_i = -2w (u - v_i); d / d v_j = 2w (u - v_j)
        pu[f] = uf - lr * (c * (vjf - vif) + reg * uf)
        vi[f] = vif - lr * (-c * (uf - vif) + reg * vif)
        vj[f] = vjf - lr * (c * (uf - vjf) + reg_j * vjf)
    if reg > 0:  # the other negatives' L2 share
        for k in range(n):
            if negs[k] != best:
                vk = V[negs[k]]
                for f in range(d):
                    vk[f] -= lr * reg / n * vk[f]
    _clip_unit(pu)
    _clip_unit(vi)
    if best != i:
        _clip_unit(vj)
    return w * (margin + d_pos - best_d)


@njit(cache=True, parallel=True, fastmath=True)
def _cml_block(U, V, users, items, order, negatives, weights, has_weights, lo, hi, lr, reg, margin, n_items,
               n_chunks):
    n = hi - lo
    losses = np.zeros(n_chunks)
    for c in prange(n_chunks):
        a, b = _chunk(c, n, n_chunks)
        a, b = lo + a, lo + b
        acc = 0.0
        for p in range(a, b):
            s = order[p]
            sw = weights[s] if has_weights else 1.0
            acc += _cml_update(U, V, users[s], items[s], negatives[p], sw, lr, reg, margin, n_items)
        losses[c] = acc
    return losses.sum()


@njit(cache=True, fastmath=True)
def _gather_rows(U, V, users, items):
    X = np.empty((users.size + items.size, U.shape[1]), np.float32)
    for r in range(users.size):
        X[r] = U[users[r]]
    for r in range(items.size):
        X[users.size + r] = V[items[r]]
    return X


@njit(cache=True, fastmath=True)
def _scatter_step(U, V, users, items, G, step):
    """``rows -= step * G`` (repeated rows accumulate), then the touched rows into the unit ball."""
    for r in range(users.size):
        row = U[users[r]]
        for f in range(row.size):
            row[f] -= step * G[r, f]
    for r in range(items.size):
        row = V[items[r]]
        for f in range(row.size):
            row[f] -= step * G[users.size + r, f]
    for r in range(users.size):
        _clip_unit(U[users[r]])
    for r in range(items.size):
        _clip_unit(V[items[r]])


def _covariance_step(U, V, users, items, step):
    """One gradient step on CML's covariance penalty of the block's user and positive rows
    (``recfb.losses.covariance_penalty``: off-diagonal covariance, Frobenius norm squared / N;
    gradient ``4 X_c offdiag(C) / N^2``), rows then back into the unit ball. Returns the penalty."""
    X = _gather_rows(U, V, users, items)
    N = X.shape[0]
    X -= X.mean(axis=0, keepdims=True)
    C = X.T @ X / N
    np.fill_diagonal(C, 0.0)
    penalty = float(np.vdot(C, C) / N)
    _scatter_step(U, V, users, items, X @ C, np.float32(step * 4.0 / (N * N)))
    return penalty


def cml_sgd_epoch(U, V, users, items, order, negatives, weights, learning_rate, regularization, margin, n_items,
                  covariance, block_size, num_threads: int = 0) -> float:
    """One epoch of per-sample SGD on CML's loss, in place on float32 ``U``, ``V``.

    The samples are visited in blocks of ``block_size`` (the autograd path's batch): within a
    block one update per sample (Hogwild across threads, as :func:`mf_sgd_epoch`); after each
    block one step on the covariance penalty of the block's rows, scaled as the batch's mean loss
    is (``learning_rate * block_size * covariance``), its small matrix products on single-threaded
    BLAS (:func:`recfb.utils.threads.single_thread_blas`: alternating with the kernel's threads, a
    2-thread BLAS made the fit 3x slower on 2 cores). Returns the summed loss.
    """
    has_weights = weights is not None
    w = weights if has_weights else np.zeros(1, np.float32)
    lr, reg, m = np.float32(learning_rate), np.float32(regularization), np.float32(margin)
    total = 0.0
    with kernel_threads(num_threads) as threads, single_thread_blas():
        for lo in range(0, order.size, block_size):
            hi = min(lo + block_size, order.size)
            total += float(_cml_block(U, V, users, items, order, negatives, w, has_weights, lo, hi, lr, reg, m,
                                      float(n_items), min(threads, hi - lo)))
            if covariance:
                idx = order[lo:hi]
                total += (hi - lo) * covariance * _covariance_step(U, V, users[idx], items[idx],
                                                                   learning_rate * (hi - lo) * covariance)
    return total
