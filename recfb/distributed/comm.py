"""``Comm``: the one object through which recfb talks to a torch.distributed process group.

Everything that differs between one process and many lives here, so the training loop,
the evaluation and EASE call the same methods whatever the world size: at world size 1 every
method is a no-op (``shard`` returns the order, ``wrap`` the module, ``broadcast`` the object).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from recfb.utils.errors import FormatError

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_REDUCE_OPS = ("sum", "max", "min")


class Comm:
    """This process's place in a process group, and the collectives recfb needs.

    Build one with :func:`get_comm`. ``Comm()`` is the single-process (no-op) one.

    Parameters
    ----------
    group : torch.distributed ProcessGroup or None, default None
        None: the default group when one is initialised, else single process.
    owns_group : bool, default False
        Whether :meth:`close` should destroy the default process group (True when
        :func:`get_comm` initialised it).

    Attributes
    ----------
    rank, world_size, local_rank : int
        As torch.distributed numbers them (``local_rank`` from ``LOCAL_RANK``, default 0).
    is_main : bool
        ``rank == 0``: the process that alone writes checkpoints, models and progress bars.
    enabled : bool
        ``world_size > 1``; when False every collective is a no-op.
    backend : str or None
        "gloo", "nccl" (or another torch backend); None at world size 1 without a group.
    device : torch.device
        Where the tensors of a collective must live: ``cuda:<local_rank>`` under NCCL,
        else the CPU.
    """

    def __init__(self, group=None, *, owns_group: bool = False):
        import torch

        self._group = group
        self._owns_group = owns_group
        dist = _dist()
        if dist is not None and dist.is_initialized():
            self.rank = int(dist.get_rank(group))
            self.world_size = int(dist.get_world_size(group))
            self.backend = str(dist.get_backend(group))
        else:
            self.rank, self.world_size, self.backend = 0, 1, None
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0)) if self.backend else 0
        self.device = (torch.device("cuda", self.local_rank) if self.backend == "nccl"
                       else torch.device("cpu"))

    # ------------------------------------------------------------------ properties
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def __repr__(self) -> str:
        return f"Comm(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r})"

    # ------------------------------------------------------------------ data sharding
    def shard_size(self, n: int) -> int:
        """Length of every rank's :meth:`shard` of ``n`` examples: ``ceil(n / world_size)``."""
        return -(-int(n) // self.world_size)

    def shard(self, order, *, check: bool = True) -> np.ndarray:
        """This rank's slice of an epoch's order of examples (the same on every rank).

        Rank ``r`` gets ``order[r::world_size]`` after the order is padded **by wrapping**
        (its first ``(-n) % world_size`` entries appended, as torch's ``DistributedSampler``),
        so every rank gets ``ceil(n / world_size)`` examples and runs the same number of
        steps; no example is dropped, and at most ``world_size - 1`` are seen twice per epoch.
        The stride (rather than contiguous blocks) makes the union of the ranks' ``j``-th
        local batches of size ``b`` the ``j``-th global batch of size ``world_size * b`` of
        the unsharded order: with mean losses and averaged gradients, ``world_size`` ranks at
        batch ``b`` take the steps one process takes at batch ``world_size * b`` (exactly
        when ``n`` is a multiple of ``world_size``).

        ``check=True`` compares a fingerprint of ``order`` across ranks (one small
        all-reduce) and raises ``ValueError`` when the ranks disagree, e.g. an unseeded
        permutation.
        """
        order = np.asarray(order)
        if order.ndim != 1:
            raise ValueError(f"order must be a 1-D array of example indices, got shape {order.shape}.")
        if not self.enabled:
            return order
        if check:
            self._check_same(order)
        n = order.size
        if n == 0:
            return order
        padded = np.resize(order, self.shard_size(n) * self.world_size)  # np.resize repeats the array
        return padded[self.rank::self.world_size]

    def equalize(self, order) -> np.ndarray:
        """For data already sharded by rank (each rank passes the order of its own examples,
        e.g. read with ``from_parquet(rank=, world_size=)``): the order padded by wrapping to
        the longest rank's length (one small all-reduce), so every rank runs the same number
        of steps. A rank without examples raises ``ValueError`` on every rank."""
        order = np.asarray(order)
        if order.ndim != 1:
            raise ValueError(f"order must be a 1-D array of example indices, got shape {order.shape}.")
        if not self.enabled:
            return order
        sizes = self.all_reduce_array(_one_hot(self.rank, self.world_size, order.size), "sum")
        if (sizes == 0).any():
            raise ValueError(f"Comm.equalize: ranks {np.flatnonzero(sizes == 0).tolist()} have no examples; "
                             f"every rank needs at least one (sizes {sizes.tolist()}).")
        return np.resize(order, int(sizes.max()))

    def _check_same(self, order: np.ndarray) -> None:
        import torch

        fp = _fingerprint(order)
        t = torch.tensor([fp, -fp], dtype=torch.float64, device=self.device)
        self._all_reduce(t, "max")
        if t[0].item() != fp or -t[1].item() != fp:
            raise ValueError(f"Comm.shard: rank {self.rank}'s order ({order.size} entries) differs from another "
                             "rank's; every rank must pass the same epoch order (draw it from the same seed).")

    # ------------------------------------------------------------------ modules and gradients
    def wrap(self, module, **ddp_kwargs):
        """``torch.nn.parallel.DistributedDataParallel(module)`` when enabled, else ``module``.

        Under NCCL the module is moved to :attr:`device` and ``device_ids=[local_rank]``; a
        module with sparse-gradient embeddings is refused there (NCCL has no sparse
        all-reduce: build the embeddings with ``sparse=False``). Extra keyword arguments go
        to DDP."""
        if not self.enabled:
            return module
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self.backend == "nccl":
            sparse = [name for name, m in module.named_modules()
                      if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse]
            if sparse:
                raise ValueError(f"Comm.wrap: {sparse} have sparse gradients, which NCCL cannot all-reduce; "
                                 "build them with sparse=False (dense gradients) under NCCL.")
            module = module.to(self.device)
            ddp_kwargs.setdefault("device_ids", [self.local_rank])
        return DistributedDataParallel(module, process_group=self._group, **ddp_kwargs)

    def all_reduce_mean_(self, tensors):
        """In place: each tensor becomes its mean over the ranks (for manual gradient sync).

        ``tensors``: a tensor or an iterable of tensors (``None`` entries, e.g. parameters
        without a gradient, are skipped). Dense tensors of one dtype and device are
        flattened into one buffer, so a model's gradients cost one all-reduce per dtype.
        Sparse tensors raise TypeError (``.to_dense()`` them; NCCL has no sparse all-reduce).
        Returns ``tensors``."""
        items = [tensors] if _is_tensor(tensors) else [t for t in tensors if t is not None]
        if not self.enabled or not items:
            return tensors
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        for t in items:
            if t.is_sparse:
                raise TypeError("Comm.all_reduce_mean_ takes dense tensors; got a sparse one (call .to_dense(), "
                                "or build embeddings with sparse=False).")
        groups: dict = {}
        for t in items:
            groups.setdefault((t.dtype, t.device), []).append(t)
        for group in groups.values():
            flat = _flatten_dense_tensors(group)
            moved = flat.to(self.device)
            self._all_reduce(moved, "sum")
            moved /= self.world_size
            for t, synced in zip(group, _unflatten_dense_tensors(moved.to(flat.device), group)):
                t.copy_(synced)
        return tensors

    def all_reduce_(self, tensor, op: str = "sum"):
        """In place: ``tensor`` becomes its sum (``op="sum"``), max or min over the ranks."""
        if op not in _REDUCE_OPS:
            raise ValueError(f"op == {op!r}, must be one of {_REDUCE_OPS}.")
        if self.enabled:
            moved = tensor.to(self.device)
            self._all_reduce(moved, op)
            if moved is not tensor:
                tensor.copy_(moved)
        return tensor

    def all_reduce_array(self, array, op: str = "sum") -> np.ndarray:
        """A numpy array (same shape on every rank) reduced over the ranks; a new array."""
        import torch

        array = np.ascontiguousarray(array)
        if not self.enabled:
            return array.copy()
        t = torch.from_numpy(array.copy())
        self.all_reduce_(t, op)
        return t.numpy()

    def all_gather_array(self, array) -> np.ndarray:
        """Every rank's ``array`` (same dtype and trailing shape, any length) concatenated
        along axis 0 in rank order, on every rank."""
        import torch

        array = np.ascontiguousarray(array)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Comm.all_gather_array takes numeric or bool arrays, got dtype {array.dtype}.")
        if not self.enabled:
            return array.copy()
        dist = _dist()
        lengths = self.all_reduce_array(_one_hot(self.rank, self.world_size, array.shape[0]), "sum")
        longest = int(lengths.max())
        wire = array.dtype if array.dtype.kind != "u" or array.dtype.itemsize == 1 else np.dtype(f"i{array.dtype.itemsize}")
        buf = np.zeros((longest,) + array.shape[1:], array.dtype)
        buf[: array.shape[0]] = array
        mine = torch.from_numpy(buf.view(wire)).to(self.device)
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine, group=self._group)
        return np.concatenate([p.cpu().numpy().view(array.dtype)[: int(n)] for p, n in zip(parts, lengths)], axis=0)

    def all_gather_object(self, obj) -> list:
        """Every rank's ``obj``, as a list in rank order (``[obj]`` at world size 1); pickled
        between the processes of this one job, like :meth:`broadcast`."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        _dist().all_gather_object(out, obj, group=self._group)
        return out

    # ------------------------------------------------------------------ control
    def broadcast(self, obj, src: int = 0):
        """``src``'s ``obj`` on every rank (e.g. rank 0's early-stopping decision).

        A torch tensor is broadcast in place (same shape and dtype on every rank); anything
        else goes through ``torch.distributed.broadcast_object_list``, which pickles between
        the processes of this one job (never from a file)."""
        if not self.enabled:
            return obj
        dist = _dist()
        if not 0 <= int(src) < self.world_size:
            raise ValueError(f"src == {src!r}, must be a rank in 0..{self.world_size - 1}.")
        if _is_tensor(obj):
            moved = obj.to(self.device)
            dist.broadcast(moved, src=int(src), group=self._group)
            if moved is not obj:
                obj.copy_(moved)
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=int(src), group=self._group,
                                   device=self.device if self.backend == "nccl" else None)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            dist = _dist()
            if self.backend == "nccl":
                dist.barrier(group=self._group, device_ids=[self.local_rank])
            else:
                dist.barrier(group=self._group)

    def check_resume(self, stored_world_size) -> None:
        """Refuse to resume a checkpoint written at another world size.

        The epoch order is sharded by world size and the optimiser's steps depend on it, so
        a checkpoint resumes only with the number of processes that wrote it. ``None`` (a
        checkpoint from before recfb recorded it) counts as 1."""
        stored = 1 if stored_world_size is None else stored_world_size
        if isinstance(stored, np.ndarray) and stored.size == 1:
            stored = stored.reshape(-1)[0]
        if isinstance(stored, (bool, np.bool_)) or not isinstance(stored, (int, np.integer)) or stored < 1:
            raise FormatError(f"the checkpoint's world size is {stored_world_size!r}; expected an int >= 1.")
        if int(stored) != self.world_size:
            raise FormatError(f"the checkpoint was written by {int(stored)} process(es) (world size {int(stored)}) "
                              f"but this run has world size {self.world_size}; resume with the same number of "
                              f"processes (e.g. torchrun --nproc_per_node={int(stored)}) or start afresh without "
                              "the checkpoint.")

    def close(self) -> None:
        """Destroy the process group if :func:`get_comm` created it (else do nothing)."""
        dist = _dist()
        if self._owns_group and dist is not None and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    # ------------------------------------------------------------------ internals
    def _all_reduce(self, tensor, op: str) -> None:
        dist = _dist()
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(tensor, op=ops[op], group=self._group)


def get_comm(distributed=None, *, backend: str | None = None, timeout_s: float | None = None) -> Comm:
    """The :class:`Comm` for ``distributed`` (the ``fit``/``ranking_metrics`` argument).

    Parameters
    ----------
    distributed : bool or None, default None
        ``False``: single process, whatever is initialised. ``None``: the initialised default
        process group if there is one, else single process. ``True``: the initialised group,
        else initialise one from the torchrun environment (``RANK``, ``WORLD_SIZE``,
        ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, set by ``torchrun``, Ray Train and
        Spark's TorchDistributor); ``WORLD_SIZE`` unset or 1 gives the single-process Comm
        (with a warning when unset).
    backend : str, optional
        For a group initialised here: default "nccl" when CUDA is available, else "gloo".
    timeout_s : float, optional
        Collective timeout of a group initialised here (torch's default otherwise).
    """
    if distributed not in (True, False, None):
        raise ValueError(f"distributed == {distributed!r}, must be True, False or None.")
    dist = _dist()
    if distributed is False:
        return Comm()
    if dist is None:
        if distributed:
            raise RuntimeError("distributed=True but this torch build has no torch.distributed.")
        return Comm()
    if dist.is_initialized():
        return Comm()
    if distributed is None:
        return Comm()
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        warnings.warn("distributed=True but no process group is initialised and WORLD_SIZE is unset (not launched "
                      "by torchrun, Ray Train or TorchDistributor): running as a single process.", stacklevel=2)
        return Comm()
    try:
        world_size = int(world)
    except ValueError:
        raise ValueError(f"WORLD_SIZE == {world!r}, must be an int >= 1.") from None
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE == {world!r}, must be an int >= 1.")
    if world_size == 1:
        return Comm()
    missing = [v for v in _TORCHRUN_VARS if not os.environ.get(v)]
    if missing:
        raise RuntimeError(f"distributed=True with WORLD_SIZE={world_size} but {missing} unset; launch with torchrun "
                           "(or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT).")
    import torch

    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    kwargs = {}
    if timeout_s is not None:
        import datetime

        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
    dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return Comm(owns_group=True)


def _dist():
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - every torch build we support has it
        return None
    return dist if dist.is_available() else None


def _is_tensor(obj) -> bool:
    import torch

    return isinstance(obj, torch.Tensor)


def _one_hot(rank: int, world_size: int, value: int) -> np.ndarray:
    out = np.zeros(world_size, np.int64)
    out[rank] = value
    return out


def _fingerprint(order: np.ndarray) -> float:
    """A cheap order-sensitive checksum of an index array, exact in float64 (< 2**53)."""
    if order.size == 0:
        return 0.0
    a = order.astype(np.int64, copy=False) % 1_000_003
    w = np.arange(1, order.size + 1, dtype=np.int64) % 1_000_033
    return float(order.size * 1_000_003 + int(((a * w) % 2_147_483_647).sum() % 2_147_483_647))
