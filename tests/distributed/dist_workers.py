"""What each rank runs in the 2-process tests (one spawn runs every check; each check's
result or traceback goes to ``<outdir>/<check>.rank<r>.npz``, so each test reports alone)."""
from __future__ import annotations

import json
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

N_EXAMPLES = 16          # a multiple of the world size: DDP equals one process exactly
ODD_ORDER = 11           # not a multiple: shard pads by wrapping
LOCAL_BATCH = 2
LR = 0.1


def make_matrices(seed: int = 0, n_users: int = 61, n_items: int = 40):
    """A seeded users x items log split into train and test (some users without test items)."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.15
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    X = sp.csr_matrix(dense.astype(np.float32))
    coo = X.tocoo()
    test_mask = rng.random(coo.nnz) < 0.25
    test_mask[coo.row < 5] = False  # users 0..4: no test items (skipped by the metrics)
    train = sp.csr_matrix((coo.data[~test_mask], (coo.row[~test_mask], coo.col[~test_mask])), shape=X.shape)
    test = sp.csr_matrix((coo.data[test_mask], (coo.row[test_mask], coo.col[test_mask])), shape=X.shape)
    return train, test


def regression_data():
    import torch

    g = torch.Generator().manual_seed(5)
    X = torch.randn(N_EXAMPLES, 4, generator=g)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(N_EXAMPLES, 1, generator=g)
    order = np.random.default_rng(3).permutation(N_EXAMPLES)
    return X, y, order


def tiny_module():
    import torch

    torch.manual_seed(0)
    return torch.nn.Linear(4, 1)


def sgd_steps(module, X, y, order, batch, step_grads=None):
    """Plain SGD on mean squared error over ``order`` in batches of ``batch``."""
    import torch

    opt = torch.optim.SGD(module.parameters(), lr=LR)
    for start in range(0, len(order), batch):
        idx = torch.as_tensor(order[start:start + batch])
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(module(X[idx]), y[idx])
        loss.backward()
        if step_grads is not None:
            step_grads([p.grad for p in module.parameters()])
        opt.step()
    inner = getattr(module, "module", module)
    return np.concatenate([p.detach().numpy().reshape(-1) for p in inner.parameters()])


def ease_params():
    return dict(l2=5.0, method="sparse", max_neighbors=6, dtype="float64")


# ---------------------------------------------------------------------- the checks
def check_comm(comm, outdir):
    import torch

    from recfb.utils.errors import FormatError

    out = {"rank": comm.rank, "world_size": comm.world_size, "is_main": comm.is_main, "enabled": comm.enabled}
    order = np.random.default_rng(7).permutation(ODD_ORDER)
    out["order"] = order
    out["shard"] = comm.shard(order)
    try:
        comm.shard(np.arange(ODD_ORDER) + comm.rank)  # ranks disagree: refused on every rank
        out["mismatch_refused"] = False
    except ValueError:
        out["mismatch_refused"] = True
    a = torch.full((3,), float(comm.rank + 1))
    b = torch.arange(4, dtype=torch.float64).reshape(2, 2) * (10 * comm.rank)
    comm.all_reduce_mean_([a, None, b])
    out["mean_a"], out["mean_b"] = a.numpy(), b.numpy()
    out["bcast_obj"] = json.dumps(comm.broadcast({"stop": comm.rank == 0, "epoch": 3 + comm.rank}))
    t = torch.tensor([float(comm.rank), 7.0 * comm.rank])
    out["bcast_tensor"] = comm.broadcast(t, src=1).numpy()
    out["gathered"] = comm.all_gather_array(np.arange(comm.rank + 2, dtype=np.int64) + 100 * comm.rank)
    out["equalized"] = comm.equalize(np.arange(3 + 2 * comm.rank) * (comm.rank + 1))  # 3 and 5 examples
    comm.check_resume(comm.world_size)
    try:
        comm.check_resume(1)
        out["resume_msg"] = ""
    except FormatError as exc:
        out["resume_msg"] = str(exc)
    comm.barrier()
    return out


def check_ddp(comm, outdir):
    X, y, order = regression_data()
    mine = comm.shard(order)
    ddp = comm.wrap(tiny_module())
    out = {"ddp_weights": sgd_steps(ddp, X, y, mine, LOCAL_BATCH), "wrapped": type(ddp).__name__}
    out["manual_weights"] = sgd_steps(tiny_module(), X, y, mine, LOCAL_BATCH, step_grads=comm.all_reduce_mean_)
    return out


def check_eval(comm, outdir):
    from recfb.evaluation import ranking_metrics
    from recfb.models import EASE

    train, test = make_matrices()
    model = EASE(l2=10.0).fit(train, show_progress=False, distributed=False)
    res = ranking_metrics(model, train, test, k=(3, 10), distributed=True, per_user=True, batch_size=7,
                          extra=("novelty", "gini"))
    out = {f"metric:{k}": v for k, v in res.items()}
    out.update({f"per_user:{k}": v for k, v in res.per_user.items()})
    out["n_users"], out["n_skipped"] = res.n_users, res.n_skipped
    return out


def check_ease(comm, outdir):
    from recfb.models import EASE

    train, _ = make_matrices(1, 70, 45)
    B = EASE(**ease_params()).fit(train, show_progress=False, distributed=True).weights_
    return {"indptr": B.indptr, "indices": B.indices, "data": B.data}


def check_parquet(comm, outdir):
    from recfb.data.interactions import Interactions

    out = {}
    for mode in ("gather", "scan"):
        part = Interactions.from_parquet(Path(outdir) / "log", value_col="value", rank=comm.rank,
                                         world_size=comm.world_size, id_maps=mode)
        out[f"{mode}:user_ids"] = part.user_ids.astype(str)
        out[f"{mode}:item_ids"] = part.item_ids
        out[f"{mode}:users"], out[f"{mode}:items"], out[f"{mode}:values"] = part.users, part.items, part.values
    return out


def train_matrix():
    return make_matrices(2, 150, 60)[0]


def bpr():
    """Small, seeded, on the autograd path (the one distributed training takes)."""
    from recfb.models import BPR

    return BPR(factors=8, iterations=4, batch_size=64, optimizer="adam", learning_rate=0.05, random_state=0)


def stop_after_epoch_2(epoch, logs):
    from recfb.train.loop import TrainingInterrupted

    if logs["epoch"] == 2:
        raise TrainingInterrupted("simulated failure after epoch 2")


def check_train(comm, outdir):
    from recfb.train.loop import TrainingInterrupted
    from recfb.utils.errors import FormatError

    X = train_matrix()
    full = bpr().fit(X, show_progress=False, distributed=True)
    out = {"user_factors": full.user_factors, "item_factors": full.item_factors}
    ckpt = Path(outdir) / "ckpt_2ranks.npz"
    try:
        bpr().fit(X, show_progress=False, distributed=True, checkpoint=ckpt, callbacks=[stop_after_epoch_2])
        out["interrupted"] = False
    except TrainingInterrupted:
        out["interrupted"] = True
    comm.barrier()  # a restart begins after rank 0 has written the checkpoint (as torchrun's restart does)
    resumed = bpr().fit(X, show_progress=False, distributed=True, checkpoint=ckpt, resume=True)
    out["resumed_item_factors"], out["resumed_user_factors"] = resumed.item_factors, resumed.user_factors
    out["resumed_epochs"] = len(resumed.history_)
    try:  # written by one process (the parent), resumed by two: refused
        bpr().fit(X, show_progress=False, distributed=True, checkpoint=Path(outdir) / "ckpt_1rank.npz", resume=True)
        out["bad_world_size_msg"] = ""
    except FormatError as exc:
        out["bad_world_size_msg"] = str(exc)
    return out


def cli_args(output, distributed=True):
    args = ["train", "--dataset", "synthetic", "--model", "ease", "--param", "method=sparse", "--param",
            "max_neighbors=32", "-o", str(output)]
    return args + (["--distributed"] if distributed else [])


def check_cli(comm, outdir):
    """What `torchrun --nproc_per_node=2 -m recfb train ... --distributed` runs in each process."""
    import contextlib
    import io

    from recfb.cli.main import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(cli_args(Path(outdir) / "cli" / "two.npz"))
    return {"status": status, "stdout": printed.getvalue()}


def sequences():
    """A small ordered log for the sequential models."""
    from recfb.data import Interactions
    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(40), 6)
    return Interactions.from_arrays(users, rng.integers(0, 15, users.size), timestamps=np.arange(users.size),
                                    item_ids=np.arange(15))


def check_models(comm, outdir):
    """LightGCN and SASRec under fit(distributed=True): the weights every rank ends with."""
    from recfb.models import LightGCN, SASRec
    X = train_matrix()
    lgcn = LightGCN(factors=8, iterations=2, batch_size=64, device="cpu").fit(X, show_progress=False,
                                                                              distributed=True)
    seq = SASRec(factors=8, iterations=2, batch_size=8, max_len=5, dropout=0.2, random_state=0,
                 device="cpu").fit(sequences(), show_progress=False, distributed=True)
    return {"lgcn_items": lgcn.item_factors, "sasrec_items": seq.net_.item.weight.detach().numpy()}


CHECKS = {"cli": check_cli, "comm": check_comm, "ddp": check_ddp, "eval": check_eval, "ease": check_ease,
          "models": check_models, "parquet": check_parquet,
          "train": check_train}


def all_checks(comm, outdir):
    for name, check in CHECKS.items():
        try:
            result = check(comm, outdir)
            result["error"] = ""
        except Exception:
            result = {"error": traceback.format_exc()}
        np.savez(Path(outdir) / f"{name}.rank{comm.rank}.npz", **{k: np.asarray(v) for k, v in result.items()})
