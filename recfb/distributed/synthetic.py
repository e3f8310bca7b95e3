"""A large synthetic interaction log generated shard by shard, never whole in one process."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from recfb.utils.validation import check_positive_int


def synthetic_shard(n_users: int, n_items: int, n_interactions: int, *, rank: int = 0, world_size: int = 1,
                    seed: int = 0, n_clusters: int = 64, cluster_share: float = 0.6, popularity: float = 0.8,
                    block_users: int = 16384) -> sp.csr_matrix:
    """This rank's users of a seeded synthetic log, as an ``n_users x n_items`` CSR matrix
    whose other rows are empty.

    Users come in blocks of ``block_users``; block ``b`` is drawn from its own generator
    ``SeedSequence([seed, b])``, and rank ``r`` of ``world_size`` draws only its contiguous
    range of blocks. So a rank's memory is its shard (plus one block), and the union of the
    shards is the same matrix at every world size (the test checks this).

    Each user is in cluster ``u % n_clusters`` and has ``1 + Poisson(m - 1)`` draws, ``m =
    n_interactions / n_users``. A draw is, with probability ``cluster_share``, an item of the
    user's cluster (items ``i`` with ``i % n_clusters == c``), else any item; in both cases
    the ``j``-th most popular item has weight ``(j + 1) ** -popularity``. Repeated draws of
    a (user, item) pair count once: the matrix is binary (float32), with ``nnz`` a little
    below the number of draws (which is ``n_interactions`` on average).

    Parameters
    ----------
    n_users, n_items, n_interactions : int
        Shape and expected number of draws (>= n_users, so every user has one).
    rank, world_size : int, default 0, 1
        Which shard (``0 <= rank < world_size``).
    seed : int, default 0
    n_clusters : int, default 64
        Taste clusters (<= n_items).
    cluster_share : float, default 0.6
        Probability in [0, 1] that a draw comes from the user's cluster.
    popularity : float, default 0.8
        Zipf exponent (>= 0) of the item weights.
    block_users : int, default 16384
        Users per seeded block; changing it changes the data.
    """
    n_users = check_positive_int(n_users, "n_users")
    n_items = check_positive_int(n_items, "n_items")
    n_interactions = check_positive_int(n_interactions, "n_interactions")
    world_size = check_positive_int(world_size, "world_size")
    rank = check_positive_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank == {rank}, must be < world_size == {world_size}.")
    seed = check_positive_int(seed, "seed", minimum=0)
    n_clusters = check_positive_int(n_clusters, "n_clusters")
    block_users = check_positive_int(block_users, "block_users")
    if n_clusters > n_items:
        raise ValueError(f"n_clusters == {n_clusters}, must be <= n_items == {n_items}.")
    if n_interactions < n_users:
        raise ValueError(f"n_interactions == {n_interactions}, must be >= n_users == {n_users} (one per user).")
    for name, value, hi in (("cluster_share", cluster_share, 1.0), ("popularity", popularity, np.inf)):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= hi):
            raise ValueError(f"{name} == {value!r}, must be a number in [0, {hi}].")

    n_blocks = -(-n_users // block_users)
    lo_block, hi_block = n_blocks * rank // world_size, n_blocks * (rank + 1) // world_size
    mean_extra = n_interactions / n_users - 1.0
    global_cdf = _zipf_cdf(n_items, popularity)
    per_cluster = -(-n_items // n_clusters)
    cluster_cdf = _zipf_cdf(per_cluster, popularity)

    counts = np.zeros(n_users, np.int64)
    indices = []
    for b in range(lo_block, hi_block):
        rng = np.random.default_rng(np.random.SeedSequence([seed, b]))
        u0, u1 = b * block_users, min(n_users, (b + 1) * block_users)
        draws = 1 + rng.poisson(mean_extra, size=u1 - u0)
        user = np.repeat(np.arange(u0, u1, dtype=np.int64), draws)
        from_cluster = rng.random(user.size) < cluster_share
        item = np.searchsorted(global_cdf, rng.random(user.size), side="right")
        rank_in_cluster = np.searchsorted(cluster_cdf, rng.random(user.size), side="right")
        clustered = rank_in_cluster * n_clusters + user % n_clusters
        # a cluster with fewer items than per_cluster (n_items not a multiple): wrap into range
        clustered = np.where(clustered < n_items, clustered, clustered % n_clusters)
        item = np.where(from_cluster, clustered, item)
        keys = np.unique((user - u0) * n_items + item)  # sorted: by user, then item
        counts[u0:u1] = np.bincount(keys // n_items, minlength=u1 - u0)
        indices.append((keys % n_items).astype(np.int32))
        del user, from_cluster, item, rank_in_cluster, clustered, keys
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    col = np.concatenate(indices) if indices else np.zeros(0, np.int32)
    data = np.ones(col.size, np.float32)
    return sp.csr_matrix((data, col, indptr), shape=(n_users, n_items))


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    cdf[-1] = 1.0 + 1e-12  # searchsorted(side="right") of a uniform in [0, 1) stays < n
    return cdf
