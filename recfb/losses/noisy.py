"""NBPO: noisy-label robust Bayesian point-wise optimisation (Yu & Qin, SIGIR 2020, "Sampler
Design for Implicit Feedback Data by Noisy-label Robust Learning")."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from recfb.losses.base import Objective


def nbpo_loss(pos: torch.Tensor, neg: torch.Tensor, flip_pos: torch.Tensor, flip_neg: torch.Tensor):
    """NBPO's surrogate loss, as the authors' code trains it.

    ``rho = sigmoid(score)`` is the probability that the user truly prefers the item; ``phi =
    sigmoid(flip logit)`` the probability that a true positive is observed as *unvoted* (a
    label flip). The observation likelihood is ``P(voted) = rho (1 - phi)`` and
    ``P(unvoted) = 1 - rho + rho phi``. The surrogate ascends, with the bracketed factors held
    constant (stop-gradient),

    - voted (u, i):   ``[1 - phi] log rho + [rho] log(1 - phi)``
    - unvoted (u, j): ``[phi] log rho + log(1 - rho) + [rho] log phi``

    so an unvoted item the model already likes is pushed down less (and may be pushed up) in
    proportion to its flip probability: the "adaptive sampler" of the paper, realised as
    weights on uniformly drawn unvoted items.

    pos (B,), neg (B, n) scores; flip_pos (B,), flip_neg (B, n) flip logits.
    Returns (positive part (B,), negative part summed over the n negatives (B,)).
    """
    rho_p, phi_p = torch.sigmoid(pos).detach(), torch.sigmoid(flip_pos)
    rho_n, phi_n = torch.sigmoid(neg).detach(), torch.sigmoid(flip_neg)
    pos_part = -(1 - phi_p.detach()) * F.logsigmoid(pos) + rho_p * F.softplus(flip_pos)
    neg_part = (-phi_n.detach() * F.logsigmoid(neg) + F.softplus(neg) + rho_n * F.softplus(-flip_neg)).sum(dim=1)
    return pos_part, neg_part


class NBPO(Objective):
    """NBPO objective: a second, low-rank factorisation ``gamma_ui = p_u . q_i`` gives each
    (user, item) its label-flip logit; both factorisations are trained jointly by the model's
    optimiser (``MF(loss="nbpo")``: the compiled per-sample SGD kernel, which steps the flip
    factors beside the model's; Adam on the autograd path). See :func:`nbpo_loss` for the
    likelihood.

    Parameters
    ----------
    flip_factors : int, default 50
        Rank of the flip model (the paper: 50).
    flip_regularization : float, default 0.3
        L2 on the flip factors a sample touches (``0.5 * reg * ||.||^2``). Chosen on clean
        validation on three injected-noise logs (``benchmarks/defaults.py --families denoise``;
        RESULTS.md, "Defaults (issue 13)", fifth session). At the authors' scale (1e-3) the
        flip model learns ``phi ~ 0.94-0.96`` on unvoted pairs, the collapse described below,
        and scored 0.80-1.04x plain BCE; at 0.25 it still learns per-pair flips (mean 0.55-0.66)
        and scored 0.99-1.19x; from 0.3 up the flip factors shrink to zero, so ``phi = 0.5`` on
        every pair: a constant flip rate, under which the loss is BCE with the positives at half
        weight and each unvoted score pulled towards ``sigmoid(s) = 1/3``. That limit scored
        1.003-1.20x plain BCE on every log and seed, the mildest worst case, hence the default.
        Lower it to let the per-pair flips learn (with early stopping).
    init_flip : float in (0, 1), default 0.002
        Initial flip probability; the flip factors start at
        ``p ~ a U(0,1)``, ``q ~ -a U(0,1)`` with ``a`` set so that ``sigmoid(p . q)`` averages
        about ``init_flip`` (the authors start at about 0.002).
    seed : int, default 0

    Negatives should be items the user has not interacted with (``negatives="verified"``); the
    authors draw 4 per positive.

    Caveat, measured: a flip model with enough capacity to separate voted from unvoted pairs
    (a small dense matrix) learns ``phi ~ 1`` on every unvoted pair, which then pulls all
    unvoted scores to the same level and erases the ranking; on a 30 x 30 checkerboard the
    hit rate falls from 0.8 at 30 epochs to 0.33 at 60. Keep the flip model small relative to
    the data (``flip_factors``, ``flip_regularization``) and use early stopping
    (``fit(valid_items=...)`` with ``patience``).
    """

    name = "nbpo"
    pointwise = True

    def __init__(self, flip_factors: int = 50, flip_regularization: float = 0.3, init_flip: float = 0.002,
                 seed: int = 0):
        super().__init__()
        if isinstance(flip_factors, bool) or not isinstance(flip_factors, int) or flip_factors < 1:
            raise ValueError(f"flip_factors == {flip_factors!r}, must be an int >= 1.")
        if not (isinstance(flip_regularization, (int, float)) and flip_regularization >= 0):
            raise ValueError(f"flip_regularization == {flip_regularization!r}, must be >= 0.")
        if not (isinstance(init_flip, float) and 0 < init_flip < 1):
            raise ValueError(f"init_flip == {init_flip!r}, must be a float in (0, 1).")
        self.flip_factors, self.flip_regularization = flip_factors, float(flip_regularization)
        self.init_flip, self.seed = init_flip, seed
        self.user_flip = self.item_flip = None

    def setup(self, X, device):
        n_users, n_items = X.shape
        gen = torch.Generator().manual_seed(int(self.seed))
        # E[p . q] = -k a^2 / 4 = logit(init_flip)
        a = math.sqrt(4 * -math.log(self.init_flip / (1 - self.init_flip)) / self.flip_factors)
        self.user_flip = torch.nn.Parameter((a * torch.rand(n_users, self.flip_factors, generator=gen)).to(device))
        self.item_flip = torch.nn.Parameter((-a * torch.rand(n_items, self.flip_factors, generator=gen)).to(device))

    def flip_probability(self, users, items) -> torch.Tensor:
        """``phi_ui`` for users (B,) and items (B,) or (B, n)."""
        return torch.sigmoid(self._logit(users, items))

    def _logit(self, users, items):
        pu = self.user_flip[users]
        if items.dim() == 2:
            return torch.bmm(self.item_flip[items], pu.unsqueeze(2)).squeeze(2)
        return (pu * self.item_flip[items]).sum(dim=1)

    def forward(self, pos, neg, batch=None):
        if batch is None or self.user_flip is None:
            raise RuntimeError("NBPO needs the training loop's batch (users, items) and setup(X).")
        pos_part, neg_part = nbpo_loss(pos, neg, self._logit(batch.users, batch.items),
                                       self._logit(batch.users, batch.negatives))
        if self.flip_regularization:
            pu, qi, qj = self.user_flip[batch.users], self.item_flip[batch.items], self.item_flip[batch.negatives]
            reg = pu.pow(2).sum(1) + qi.pow(2).sum(1) + qj.pow(2).sum(2).mean(1)
            neg_part = neg_part + 0.5 * self.flip_regularization * reg
        return pos_part, neg_part

