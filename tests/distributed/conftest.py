"""One 2-rank gloo run (torch.multiprocessing spawn) serves every distributed test: starting
processes costs seconds, the checks themselves milliseconds."""
import dist_launch
import dist_workers
import numpy as np
import pytest


@pytest.fixture(scope="session")
def rank_results(tmp_path_factory):
    """``{check: [rank 0's results, rank 1's]}``; a check that raised has a traceback in 'error'."""
    out = tmp_path_factory.mktemp("two_ranks")
    dist_launch.write_parquet_log(out / "log")
    (out / "cli").mkdir()
    dist_workers.bpr().set_params(iterations=2).fit(dist_workers.train_matrix(), show_progress=False,
                                                    checkpoint=out / "ckpt_1rank.npz")
    dist_launch.run_ranks(dist_workers.all_checks, dist_launch.WORLD_SIZE, out)
    results = {}
    for name in dist_workers.CHECKS:
        results[name] = []
        for r in range(dist_launch.WORLD_SIZE):
            with np.load(out / f"{name}.rank{r}.npz", allow_pickle=False) as f:
                results[name].append({k: f[k] for k in f.files})
    return results, out
