"""Batches of sequences on the common epoch loop (:class:`recfb.train.loop.EpochLoop`), for
the sequential models (SASRec, gSASRec, BERT4Rec).

An epoch visits every training sequence once, in a seeded random order cut into batches of
``batch_size`` sequences (random users, as the original SASRec sampler); each batch is one
optimiser step on the mean of its loss terms (positions, or masked items). On CUDA the forward
pass runs under bfloat16 autocast.

A model's batch loss may compute a batch in groups of similar length (:func:`length_groups`),
each trimmed to its longest sequence, so that a short history does not pay for ``max_len``
columns of padding; with padded keys masked this changes the speed, not the result, and the
item table is gathered once per batch (:func:`gather_rows`) so that the backward pass
scatters into it once.
"""
from __future__ import annotations

import numpy as np
import torch

from recfb.train.loop import EpochLoop, TrainConfig, config_parts


def gather_rows(weight: torch.Tensor, parts: list) -> list:
    """``[weight[p] for p in parts]`` through one gather of the distinct rows: the backward
    pass then accumulates into the (possibly large) table once instead of once per part."""
    flat = torch.cat([p.reshape(-1) for p in parts])
    uniq, inv = torch.unique(flat, return_inverse=True)
    rows = weight[uniq][inv]
    return [r.view(*p.shape, weight.shape[1]) for r, p in zip(rows.split([p.numel() for p in parts]), parts)]


def length_groups(widths: np.ndarray) -> list[np.ndarray]:
    """Positions (into ``widths``) grouped so that no group's widths differ by more than 2x
    (widths up to 4 share one group): groups ``<=4, 5-8, 9-16, ...``."""
    key = np.maximum(np.ceil(np.log2(np.maximum(widths, 1))), 2).astype(np.int64)
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, cuts)


class SequenceTrainer(EpochLoop):
    """Trains ``module`` on the sequences ``rows`` (user ids into the model's packed histories).

    Parameters
    ----------
    module : torch.nn.Module
        The network (its parameters are optimised; its state is checkpointed).
    batch_loss : callable(rows, gen) -> (loss_sum, count)
        Summed loss of a batch of sequences and the number of terms it sums (positions or
        masked items).
    rows : int array
        The sequences to train on.
    config : TrainConfig
    device : torch.device
    fingerprint : str
        Identifies the data and model settings; checkpoints of other data are refused.
    validate, callbacks, comm : as :class:`recfb.train.Trainer`.
    """

    def __init__(self, module, batch_loss, rows, config: TrainConfig, device, fingerprint: str,
                 validate=None, callbacks=(), comm=None):
        super().__init__(module, config, device, validate=validate, callbacks=callbacks, comm=comm)
        self.batch_loss, self.rows = batch_loss, np.asarray(rows, np.int64)
        self._data_fingerprint = fingerprint

    def fit(self):
        return self._run()

    def _fingerprint(self) -> dict:
        data = self._data_fingerprint
        return {**(data if isinstance(data, dict) else {"data": data}), **config_parts(self.config)}

    def _run_epoch(self, epoch, gen, state, opts):
        cfg, dev = self.config, self.device
        amp = dev.type == "cuda"
        perm = self._shard(torch.randperm(self.rows.size, generator=gen, device=dev)).cpu().numpy()
        total, count_all = 0.0, 0
        for start in range(0, perm.size, cfg.batch_size):
            # several ranks: the batch's random draws (negatives, masks) from a generator of this
            # rank and step, so that ranks do not draw the same ones for different sequences; a
            # function of (seed, rank, step) alone, so a resumed run draws what it would have
            batch_gen = gen if self.comm is None else _rank_step_generator(cfg.seed, self.comm.rank, state["step"], dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss_sum, count = self.batch_loss(self.rows[perm[start:start + cfg.batch_size]], batch_gen)
            loss = loss_sum.float() / max(count, 1)
            self._optimizer_step(loss, opts)
            total += float(loss.detach()) * count
            count_all += count
            state["step"] += 1
        return total, count_all


def _rank_step_generator(seed, rank: int, step: int, device) -> torch.Generator:
    """A generator seeded by (seed, rank, step) only (a distributed run's per-batch draws)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([0 if seed is None else int(seed), int(rank), int(step)])
                      .generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return g
