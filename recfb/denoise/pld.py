"""PLD: denoising by the user's personal loss distribution (Zhang et al., WWW 2025,
"Personalized Denoising Implicit Feedback for Robust Recommender System")."""
from __future__ import annotations

import torch

from recfb.denoise.base import Denoiser
from recfb.losses.objectives import Batch
from recfb.sampling.positive import PositiveSampler


class PLD(Denoiser):
    """Resample each training slot's positive from a candidate pool of its user's positives,
    by the user's personal loss distribution, so low-loss (normal) interactions are optimised
    more and high-loss (likely noisy) ones less.

    At every step, for each slot of the batch (user ``u``):

    1. draw a pool of ``pool_size`` of ``u``'s training positives uniformly (with replacement);
    2. draw one negative ``j`` with the model's negative sampler;
    3. compute, under ``no_grad`` with the current model, each pool item's loss with the
       model's objective (``softplus(s_uj - s_ui)`` for BPR);
    4. pick one pool item with probability ``softmax(-loss / temperature)`` over the pool;

    and the step trains on the picked positives. The first ``warmup_epochs`` epochs train on
    the plain epoch order. Defaults follow the authors' code (pool 5, temperature 0.1, five
    warm-up epochs). Differences from that code: slots are the usual BPR epoch (one per
    interaction, so users in proportion to their activity) instead of users drawn uniformly,
    and the pool is drawn with replacement.

    Use it as ``MF(loss="bpr", denoise=PLD())`` or on ``LightGCN``; the extra cost per step is
    one forward pass over ``pool_size`` candidates per slot (no backward).

    Parameters
    ----------
    pool_size : int >= 1, default 5
    temperature : float > 0, default 0.1
    warmup_epochs : int >= 0, default 5
    """

    def __init__(self, pool_size: int = 5, temperature: float = 0.1, warmup_epochs: int = 5):
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size == {pool_size!r}, must be an int >= 1.")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature == {temperature!r}, must be a number > 0.")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs == {warmup_epochs!r}, must be an int >= 0.")
        self.pool_size, self.temperature, self.warmup_epochs = pool_size, float(temperature), warmup_epochs
        self.sampler_ = PLDSampler(self)

    def positive_sampler(self) -> PositiveSampler:
        return self.sampler_

    def weights(self, losses, scores, step, index):
        return torch.ones_like(losses)

    def noise_scores(self):
        """The last pool loss of every training interaction (NaN if never in a pool)."""
        return self.sampler_.last_loss_.cpu().numpy()

    def state_dict(self):
        return self.sampler_.state_dict()

    def load_state_dict(self, state):
        self.sampler_.load_state_dict(state)


class PLDSampler(PositiveSampler):
    """The positive sampler behind :class:`PLD` (epoch order as usual; ``refine`` swaps each
    slot's positive for one resampled from the user's pool)."""

    def __init__(self, config: PLD):
        # private: the PLD holds this sampler, so a public back-reference would be a cycle for
        # anything that walks public attributes (the checkpoint fingerprint does)
        self._config = config

    def setup(self, users, items, n_users, n_items):
        super().setup(users, items, n_users, n_items)
        counts = torch.bincount(users, minlength=n_users)
        self.start = torch.cumsum(counts, 0) - counts  # CSR order: a user's interactions are contiguous
        self.count = counts
        self.last_loss_ = torch.full((users.numel(),), float("nan"), device=users.device)

    def epoch_indices(self, epoch, generator):
        return torch.randperm(self.users.numel(), generator=generator, device=generator.device)

    def refine(self, idx, scorer, objective, negatives, generator, epoch, step):
        cfg = self._config
        if epoch < cfg.warmup_epochs:
            return idx
        u = self.users[idx]
        k = cfg.pool_size
        offsets = (torch.rand((idx.numel(), k), generator=generator, device=idx.device)
                   * self.count[u].unsqueeze(1)).long()
        pool = self.start[u].unsqueeze(1) + offsets  # (B, k) interaction indices
        j = negatives.sample(u, 1, generator)
        items = self.items[pool]
        with torch.no_grad():
            # one scoring call: the negative as "positive" (B,) and the pool as "negatives" (B, k)
            s_neg, s_pool = scorer.batch_scores(u, j[:, 0], items)
            flat = pool.reshape(-1)
            batch = None
            if objective.needs_batch:
                batch = Batch(u.repeat_interleave(k), items.reshape(-1), j.repeat_interleave(k, dim=0), flat, step)
            loss, _ = objective(s_pool.reshape(-1), s_neg.repeat_interleave(k).unsqueeze(1), batch)
            loss = loss.view(-1, k)
            self.last_loss_[flat] = loss.reshape(-1)
            # softmax(-loss / T) sampling by the Gumbel-max trick (seeded by the loop's generator)
            g = torch.rand(loss.shape, generator=generator, device=idx.device).clamp_(1e-12, 1).log_().neg_().log_()
            choice = torch.argmax(loss.div_(-cfg.temperature).sub_(g), dim=1)
        return pool.gather(1, choice.unsqueeze(1)).squeeze(1)

    def state_dict(self):
        return {"last_loss": self.last_loss_.cpu()}

    def load_state_dict(self, state):
        if state:
            self.last_loss_ = state["last_loss"].to(self.last_loss_.device)
