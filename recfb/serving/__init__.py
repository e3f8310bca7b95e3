"""Top-k serving: FAISS-backed item indices, exclusion of seen items, persistence, sharding.

    >>> from recfb.serving import ItemIndex
    >>> index = ItemIndex.from_model(model, kind="hnsw")          # or "exact", "ivf"
    >>> ids, scores = index.search(model.user_factors[users], k=10, exclude=X[users])
    >>> index.save("items.index"); index = ItemIndex.load("items.index")

Item-item models (ItemKNN, EASE) index the same way; their queries are history rows
(``index.search(X[users], k, exclude=X[users])``). ``recfb export`` / :func:`export` bundle
the users, so a service only calls ``index.recommend_users(external_ids, k)``; ``recfb serve``
runs the HTTP service of :mod:`recfb.serving.app` over such an index. ``target_recall=`` (in
``from_vectors`` / ``from_model``) calibrates an HNSW or IVF index to a recall target
(:mod:`recfb.serving.calibrate`).
"""
from recfb.serving._params import DEFAULT_PARAMS
from recfb.serving.export import export
from recfb.serving.index import ItemIndex
from recfb.serving.sharding import ShardedIndex, ShardWorker, build_shards, split_index
from recfb.serving.users import UnknownUserError, UserTable

__all__ = ["DEFAULT_PARAMS", "ItemIndex", "ShardWorker", "ShardedIndex", "UnknownUserError", "UserTable",
           "build_shards", "export", "split_index"]
