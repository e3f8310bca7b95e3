"""One training function for every launcher: torchrun, Ray Train, Spark's TorchDistributor.

Each launcher starts N processes and gives each the torchrun environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or an initialised process group; ``train(config)`` runs
in every one of them. Each rank loads the same data, fits with ``distributed=True`` (its shard
of every epoch, gradients averaged, identical weights everywhere), evaluates its shard of the
users (``ranking_metrics(distributed=True)``, exact), and rank 0 alone writes the model.

Single node, 2 processes (gloo on CPU, NCCL on GPUs):

    torchrun --standalone --nproc_per_node=2 examples/distributed_train.py --model bpr -o bpr.npz

Two machines, 4 processes each (run the same line on both; HOST is one of them):

    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \\
        --rdzv-id=recfb-bpr examples/distributed_train.py --model bpr -o bpr.npz

Ray Train: examples/distributed_ray.py. Spark: examples/distributed_spark.py. Without a
launcher the script runs as one process (with a warning).
"""
from __future__ import annotations

import argparse
import time


def make_model(name: str, epochs: int):
    from recfb.models import BPR, CML, EASE, MF, LightGCN

    models = {"bpr": lambda: BPR(iterations=epochs, random_state=0),
              "mf-bce": lambda: MF(loss="bce", iterations=epochs, random_state=0),
              "cml": lambda: CML(iterations=epochs, random_state=0),
              "lightgcn": lambda: LightGCN(iterations=epochs, random_state=0),
              "ease-sparse": lambda: EASE(method="sparse", max_neighbors=128)}
    if name not in models:
        raise ValueError(f"model {name!r} is not one of {sorted(models)}")
    return models[name]()


def train(config: dict) -> dict:
    """Fit ``config["model"]`` on ``config["dataset"]`` across the ranks; rank 0 saves it.
    Returns the test metrics (the same on every rank) and the fit time."""
    import torch

    import recfb
    from recfb.data import split
    from recfb.distributed import get_comm
    from recfb.evaluation import ranking_metrics

    torch.set_num_threads(int(config.get("threads", 1)))
    comm = get_comm(True)  # from the launcher's environment; a no-op in one process
    ds = recfb.datasets.load(config.get("dataset", "ml-100k"), quiet=True)
    train_part, test_part = split.random_holdout(ds, test_fraction=0.2, seed=0)  # seeded: same on every rank
    train_X, test_X = train_part.matrix, test_part.matrix
    model = make_model(config.get("model", "bpr"), int(config.get("epochs", 10)))
    t0 = time.perf_counter()
    model.fit(train_X, show_progress=comm.is_main, distributed=True)
    fit_s = time.perf_counter() - t0
    metrics = ranking_metrics(model, train_X, test_X, k=10, distributed=True)
    if comm.is_main and config.get("output"):
        model.save(config["output"], metadata={"dataset": config.get("dataset", "ml-100k"),
                                               "world_size": comm.world_size})
    comm.barrier()
    result = {"rank": comm.rank, "world_size": comm.world_size, "fit_seconds": round(fit_s, 3),
              "ndcg@10": metrics["ndcg@10"], "recall@10": metrics["recall@10"]}
    if comm.is_main:
        print(f"{type(model).__name__} on {comm.world_size} rank(s): {result}", flush=True)
    comm.close()  # destroys the group only if get_comm made it (torchrun), not Ray's or Spark's
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description="train one recfb model across torchrun's processes")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--model", default="bpr", help="bpr, mf-bce, cml, lightgcn, ease-sparse")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("-o", "--output", help="model file (written by rank 0)")
    args = p.parse_args(argv)
    train(vars(args))


if __name__ == "__main__":
    main()
