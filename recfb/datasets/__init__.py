"""Known recommender datasets, their lookup/download with SHA-256 checks, and synthetic worlds.

    >>> from recfb import datasets
    >>> datasets.list_datasets()            # ['ml-100k', 'ml-1m', 'coat', ...]
    >>> ds = datasets.load("ml-100k")       # -> recfb.data.Interactions
    >>> world = datasets.make_world(seed=0) # known relevance, exposure and noise

Lookup order: ``data_dir`` argument, ``$RECFB_DATA_DIR``, the user cache (``~/.cache/recfb``
or ``$RECFB_CACHE_DIR``), then the dataset's canonical archive. Licensed data is never bundled:
see the cards in the repository's ``datasets/`` folder.
"""
from recfb.datasets import synthetic
from recfb.datasets.coat import CoatData
from recfb.datasets.download import ChecksumError, DownloadError, download
from recfb.datasets.lookup import cache_dir, load, load_item_names, locate, verify
from recfb.datasets.modcloth import ModClothData
from recfb.datasets.movielens import IncompleteDatasetWarning
from recfb.datasets.noise import NoisySplit, inject_noise, natural_noise_split
from recfb.datasets.registry import DATASETS, DatasetSpec, get_spec, info, list_datasets
from recfb.datasets.synthetic import SyntheticWorld, make_world
from recfb.utils.errors import DataError, DatasetNotFoundError

__all__ = [
    "DATASETS",
    "ChecksumError",
    "CoatData",
    "DataError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DownloadError",
    "IncompleteDatasetWarning",
    "ModClothData",
    "NoisySplit",
    "inject_noise",
    "natural_noise_split",
    "SyntheticWorld",
    "cache_dir",
    "download",
    "get_spec",
    "info",
    "list_datasets",
    "load",
    "load_item_names",
    "locate",
    "make_world",
    "synthetic",
    "verify",
]
