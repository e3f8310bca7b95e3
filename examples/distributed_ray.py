"""The same training function on Ray Train's ``TorchTrainer`` (``pip install 'recfb[ray]'``).

    python examples/distributed_ray.py --workers 2 --model bpr            # local Ray, 2 CPU workers
    python examples/distributed_ray.py --address auto --workers 8 --gpu   # an existing Ray cluster

Ray starts the workers, initialises the torch.distributed group itself (gloo, or NCCL with
``--gpu``) and runs ``train_loop_per_worker`` in each; ``recfb.distributed.get_comm`` finds that
group, so :func:`distributed_train.train` runs unchanged. Each worker reports its metrics
with ``ray.train.report``; rank 0 also reports its model file as the Ray checkpoint, which
``-o`` copies out. The result holds rank 0's metrics.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def train_loop_per_worker(config):
    import tempfile

    import ray.train

    sys.path.insert(0, config.pop("examples_dir"))
    from distributed_train import train

    main_rank = ray.train.get_context().get_world_rank() == 0
    with tempfile.TemporaryDirectory() as folder:  # rank 0's model file becomes the Ray checkpoint
        metrics = train({**config, "output": os.path.join(folder, "model.npz") if main_rank else None})
        checkpoint = ray.train.Checkpoint.from_directory(folder) if main_rank else None
        ray.train.report(metrics, checkpoint=checkpoint)


def main(argv=None):
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    p = argparse.ArgumentParser(description="recfb on Ray Train")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--model", default="bpr")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("-o", "--output", help="model file (written by rank 0)")
    args = p.parse_args(argv)
    # the workers inherit the data location: $RECFB_DATA_DIR, or the user cache
    env = {k: os.environ[k] for k in ("RECFB_DATA_DIR",) if k in os.environ}
    ray.init(address=args.address, runtime_env={"env_vars": env}, include_dashboard=False)
    config = {"dataset": args.dataset, "model": args.model, "epochs": args.epochs, "output": args.output,
              "threads": 1, "examples_dir": HERE}
    trainer = TorchTrainer(train_loop_per_worker, train_loop_config=config,
                           scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=args.gpu),
                           run_config=RunConfig(name="recfb-distributed", storage_path=os.path.abspath("ray_results")))
    result = trainer.fit()
    print("Ray Train result (rank 0):", result.metrics)
    if args.output and result.checkpoint is not None:
        import shutil

        with result.checkpoint.as_directory() as folder:
            shutil.copy(os.path.join(folder, "model.npz"), args.output)
        print("model written to", args.output)
    ray.shutdown()


if __name__ == "__main__":
    main()
