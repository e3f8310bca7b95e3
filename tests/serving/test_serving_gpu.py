"""GPU paths match the CPU reference; skipped where no GPU is visible."""
import numpy as np
import pytest
import torch
from serving_helpers import assert_exact_topk, brute_scores, recall_at_k

from recfb.serving import ItemIndex, _faiss

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
needs_faiss_gpu = pytest.mark.skipif(not _faiss.faiss_gpu_available(), reason="faiss has no GPU support or sees no GPU")


@needs_cuda
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_on_cuda_matches_cpu(metric):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 32)).astype(np.float32)
    Q = rng.standard_normal((500, 32)).astype(np.float32)
    excl = [rng.choice(20000, 200, replace=False) for _ in range(500)]
    gpu = ItemIndex.from_vectors(X, metric=metric, device="cuda")
    assert gpu.device == "cuda"
    for k in (10, 3000):  # beyond faiss GPU's 2048 cap as well
        ids, scores = gpu.search(Q, k, exclude=excl)
        assert_exact_topk(ids, scores, brute_scores(Q, X, metric, exclude=excl), k, rtol=1e-3, atol=1e-3)


@needs_faiss_gpu
def test_faiss_gpu_ivf_matches_cpu_and_handles_k_above_2048():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 32)).astype(np.float32)
    Q = rng.standard_normal((200, 32)).astype(np.float32)
    gpu = ItemIndex.from_vectors(X, kind="ivf", nlist=64, nprobe=64, device="cuda")
    cpu = ItemIndex.from_vectors(X, kind="ivf", nlist=64, nprobe=64, device="cpu")
    S = brute_scores(Q, X, "ip")
    assert recall_at_k(gpu.search(Q, 10)[0], S, 10) >= 0.99
    assert recall_at_k(cpu.search(Q, 10)[0], S, 10) >= 0.99
    ids, _ = gpu.search(Q[:5], 3000)  # over faiss GPU's k cap: answered by the CPU reference
    assert ids.shape == (5, 3000) and (ids >= 0).all()


def test_cuda_request_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="device='cuda'.*unavailable"):
        ItemIndex.from_vectors(np.eye(3, dtype=np.float32), device="cuda")
    with pytest.raises(ValueError, match="no GPU HNSW"):
        ItemIndex.from_vectors(np.eye(3, dtype=np.float32), kind="hnsw", device="cuda")
    assert ItemIndex.from_vectors(np.eye(3, dtype=np.float32), device="auto").device == "cpu"
