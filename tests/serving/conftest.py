"""Fixtures for the serving tests (helpers live in serving_helpers.py)."""
import faiss
import pytest
from serving_helpers import clustered


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """faiss's OpenMP threads spin at barriers: on a busy CI machine a 2-thread k-means of a few
    thousand points took 8 s instead of 0.1 s. The tests use small data, so one thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def clustered_data():
    return clustered(4000, dim=16, n_queries=200)
