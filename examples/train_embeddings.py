"""Train BPR, CML and LightGCN on one loop, with early stopping and a resumable checkpoint.

Run: .venv/bin/python examples/train_embeddings.py   (ml-100k when found, else the synthetic world)
"""
from recfb.data import split
from recfb.datasets import DatasetNotFoundError, load, make_world
from recfb.evaluation import ranking_metrics
from recfb.models import BPR, CML, LightGCN

try:
    data = load("ml-100k", download=False)
except DatasetNotFoundError:
    data = make_world(seed=0).clicks

train_full, test = split.random_holdout(data, test_fraction=0.2, seed=0)
train, valid = split.random_holdout(train_full, test_fraction=0.1, seed=1)
X, V, T = train.matrix, valid.matrix, test.matrix

models = {
    # implicit's names work as written; fused_sgd is the compiled per-sample SGD kernel
    "BPR": BPR(factors=64, iterations=100, learning_rate=0.01, regularization=0.01, optimizer="fused_sgd"),
    "CML": CML(factors=64, iterations=40, learning_rate=0.005, batch_size=4096, patience=5),
    "LightGCN": LightGCN(factors=64, iterations=40, learning_rate=0.01, regularization=1e-3, batch_size=4096,
                         patience=5),
}
for name, model in models.items():
    # valid_items drives early stopping (NDCG@10) and restores the best epoch's weights;
    # checkpoint=... with resume=True continues an interrupted run exactly
    model.fit(X, valid_items=V, checkpoint=f"/tmp/recfb-{name}.ckpt.npz", resume=True)
    m = ranking_metrics(model, X, T, k=(10, 20))
    print(f"{name:<9} best epoch {model.best_epoch_}  ndcg@10 {m['ndcg@10']:.4f}  ndcg@20 {m['ndcg@20']:.4f}")

# cold users: fold a user in from their row without retraining
ids, _ = models["BPR"].recommend(0, X[0], N=5, recalculate_user=True)
print("folded-in user 0 ->", data.item_ids[ids].tolist())
