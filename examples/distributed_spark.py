"""The same training function on Spark's ``TorchDistributor`` (pyspark >= 3.4).

    python examples/distributed_spark.py --processes 2 --local     # on the driver, 2 processes
    spark-submit examples/distributed_spark.py --processes 8 --gpu # 8 GPU tasks on the cluster

``TorchDistributor(num_processes=N, local_mode=..., use_gpu=...).run(fn, config)`` starts N
processes through ``torchrun`` (on the driver with ``local_mode=True``, else as barrier tasks on
the executors) and sets the torchrun environment; :func:`distributed_train.train` calls
``get_comm(True)``, which initialises the group from it. ``run`` returns rank 0's return value.
Every executor needs recfb installed and the data at ``$RECFB_DATA_DIR`` (or its cache); for
logs larger than one machine, write them as Parquet and read each rank's share with
``Interactions.from_parquet(dir, rank=comm.rank, world_size=comm.world_size)``.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def train_fn(config):
    sys.path.insert(0, config.pop("examples_dir"))
    from distributed_train import train

    return train(config)


def main(argv=None):
    from pyspark.ml.torch.distributor import TorchDistributor
    from pyspark.sql import SparkSession

    p = argparse.ArgumentParser(description="recfb on Spark's TorchDistributor")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--local", action="store_true", help="run the processes on the driver")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--model", default="bpr")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    builder = SparkSession.builder.master(f"local[{args.processes}]") if args.local else SparkSession.builder
    spark = builder.getOrCreate()
    config = {"dataset": args.dataset, "model": args.model, "epochs": args.epochs, "output": args.output,
              "threads": 1, "examples_dir": HERE}
    result = TorchDistributor(num_processes=args.processes, local_mode=args.local, use_gpu=args.gpu).run(
        train_fn, config)
    print("TorchDistributor result (rank 0):", result)
    spark.stop()


if __name__ == "__main__":
    main()
