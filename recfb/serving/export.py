"""Export a saved recfb model as a serving index (what ``recfb export`` runs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recfb.serving.index import ItemIndex
from recfb.utils.errors import DataError


def export(model, out_path, kind: str = "exact", *, dataset: str | None = None, data_dir=None,
           user_items=None, user_ids=None, item_ids=None, include_users: bool = True,
           device: str = "cpu", quiet: bool = True, **index_params) -> ItemIndex:
    """Build an :class:`ItemIndex` from a model and save it to ``out_path`` (a directory).

    Parameters
    ----------
    model : path or fitted model
        A file written by ``model.save`` / ``recfb train`` (read with :func:`recfb.load`).
    out_path : path
        Directory to write (``ItemIndex.load`` reads it back).
    kind : "exact", "hnsw" or "ivf"
        Index kind for embedding models (item-item models are always exact).
    dataset, data_dir : optional
        The dataset whose external ids and interaction histories to bundle, so a service can
        answer ``recommend_users(external_id)`` and exclude everything a user has seen.
        Default: the dataset named in the model file's metadata (``recfb train`` records it).
        The full interaction matrix is bundled (all known interactions are excluded).
    user_items, user_ids, item_ids : optional
        Give the histories and ids directly instead of a dataset.
    include_users : bool, default True
        Bundle the user table (set False for an item index alone).
    device : str, default "cpu"
        Device the index is built on; the saved file is device-independent.
    **index_params
        Kind-specific parameters (M, efConstruction, efSearch; nlist, nprobe, pq_m, pq_bits).
    """
    import recfb
    if isinstance(model, (str, Path)):
        model = recfb.load(model)
    if include_users and user_items is None:
        name = dataset or getattr(model, "metadata_", {}).get("dataset")
        if name:
            from recfb import datasets
            data = datasets.load(name, data_dir=data_dir, quiet=quiet)
            if not hasattr(data, "matrix"):  # datasets with predefined parts (coat, modcloth)
                data = data.train
            if data.n_items != model.n_items_:
                raise DataError(f"the model has {model.n_items_} items but dataset {name!r} has {data.n_items}.")
            user_items, user_ids = data.matrix, data.user_ids
            item_ids = data.item_ids if item_ids is None else item_ids
    index = ItemIndex.from_model(model, kind=kind, device=device, item_ids=item_ids, **index_params)
    if include_users:
        vectors = getattr(model, "user_factors", None)
        if index.query_kind == "vector" and vectors is None:
            raise DataError(f"{type(model).__name__} has item_factors but no user_factors to bundle; "
                            "pass include_users=False.")
        if index.query_kind == "history" and user_items is None:
            raise DataError("an item-item model answers from user histories: give a dataset or user_items "
                            "(or include_users=False).")
        if user_items is not None or vectors is not None:
            if vectors is not None and user_items is not None and np.asarray(vectors).shape[0] != user_items.shape[0]:
                raise DataError(f"the model has {np.asarray(vectors).shape[0]} user vectors but the histories have "
                                f"{user_items.shape[0]} users; were they trained on this dataset?")
            index.attach_users(user_items=user_items, user_vectors=vectors if index.query_kind == "vector" else None,
                               user_ids=user_ids)
    index.save(out_path)
    return index
