"""Scale-out on torch.distributed: one :class:`Comm` per process, launched by torchrun, Ray
Train's ``TorchTrainer`` or Spark's ``TorchDistributor`` (see the README's "Scale-out").

    from recfb.distributed import get_comm
    comm = get_comm(True)          # from the torchrun environment; a no-op at world size 1
    mine = comm.shard(order)       # this rank's slice of the epoch's seeded permutation
"""
from recfb.distributed.comm import Comm, get_comm
from recfb.distributed.synthetic import synthetic_shard

__all__ = ["Comm", "get_comm", "synthetic_shard"]
