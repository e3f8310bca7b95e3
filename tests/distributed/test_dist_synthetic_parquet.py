"""The per-rank synthetic generator and Parquet shard selection, in one process."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from recfb.data.interactions import Interactions
from recfb.distributed import synthetic_shard
from recfb.utils.errors import DataError

SHAPE = dict(n_users=1000, n_items=300, n_interactions=20_000, n_clusters=8, block_users=64)


def test_shards_are_disjoint_and_add_up_to_the_same_matrix_at_every_world_size():
    whole = synthetic_shard(**SHAPE, seed=4)
    for world in (2, 3, 7):
        parts = [synthetic_shard(**SHAPE, seed=4, rank=r, world_size=world) for r in range(world)]
        rows = [np.flatnonzero(np.diff(p.indptr)) for p in parts]
        assert sum(r.size for r in rows) == np.unique(np.concatenate(rows)).size  # no user on two ranks
        assert (sum(parts) != whole).nnz == 0  # the union is the world-size-1 matrix
    assert np.diff(whole.indptr).min() >= 1  # every user has an interaction
    assert whole.data.min() == whole.data.max() == 1.0 and whole.has_canonical_format


def test_generator_is_seeded_skewed_and_clustered():
    a, b = synthetic_shard(**SHAPE, seed=1), synthetic_shard(**SHAPE, seed=2)
    assert (a != synthetic_shard(**SHAPE, seed=1)).nnz == 0 and (a != b).nnz > 0
    assert 0.8 * SHAPE["n_interactions"] < a.nnz <= 1.05 * SHAPE["n_interactions"]
    pop = np.asarray(a.sum(axis=0)).ravel()
    assert pop[:10].sum() > 5 * pop[-10:].sum()  # popularity decays with the item id
    coo = a.tocoo()
    same_cluster = np.mean(coo.row % 8 == coo.col % 8)
    assert same_cluster > 0.5  # 0.6 from the cluster + 1/8 of the rest, vs 1/8 by chance


def test_generator_arguments_are_checked():
    with pytest.raises(ValueError, match="rank == 2, must be < world_size == 2"):
        synthetic_shard(10, 10, 20, rank=2, world_size=2)
    with pytest.raises(ValueError, match="n_interactions == 5"):
        synthetic_shard(10, 10, 5, n_clusters=2)
    with pytest.raises(ValueError, match="cluster_share == 1.5"):
        synthetic_shard(10, 10, 20, n_clusters=2, cluster_share=1.5)
    with pytest.raises(ValueError, match="n_clusters == 64, must be <= n_items == 10"):
        synthetic_shard(10, 10, 20)
    assert sp.issparse(synthetic_shard(10, 10, 20, n_clusters=2))


def write(path, users, items, row_group_size):
    pq.write_table(pa.table({"user": users, "item": items}), path, row_group_size=row_group_size)


def test_rank_selection_is_by_row_groups_of_equal_rows(tmp_path):
    write(tmp_path / "a.parquet", np.arange(8), np.arange(8) % 3, 2)  # 4 row groups of 2 rows
    parts = [Interactions.from_parquet(tmp_path, rank=r, world_size=2, id_maps="scan") for r in range(2)]
    assert [len(p) for p in parts] == [4, 4]
    assert parts[0].user_ids[parts[0].users].tolist() == [0, 1, 2, 3]
    assert all(p.n_users == 8 and p.n_items == 3 for p in parts)  # maps of the whole log on each rank


def test_bad_shard_requests_name_the_problem(tmp_path):
    write(tmp_path / "a.parquet", np.arange(4), np.arange(4), 4)  # one row group
    with pytest.raises(DataError, match=r"ranks \[1, 2\] would get none"):
        Interactions.from_parquet(tmp_path, rank=0, world_size=3)
    with pytest.raises(ValueError, match="give both or neither"):
        Interactions.from_parquet(tmp_path, rank=0)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        Interactions.from_parquet(tmp_path, rank=2, world_size=2)
    with pytest.raises(ValueError, match="id_maps == 'all'"):
        Interactions.from_parquet(tmp_path, rank=0, world_size=1, id_maps="all")
    write(tmp_path / "b.parquet", np.arange(4), np.arange(4), 4)  # now 2 row groups
    with pytest.raises(DataError, match="needs an initialised process group of world_size=2"):
        Interactions.from_parquet(tmp_path, rank=0, world_size=2, id_maps="gather")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no \\*.parquet file"):
        Interactions.from_parquet(empty)
