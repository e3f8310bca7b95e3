"""Tune BPR's hyper-parameters with recfb.tune (Optuna) on a validation split, then test.

Run: .venv/bin/python examples/tune.py [--trials 12] [--storage sqlite:///bpr.db] [--plot tune.png]
(ml-100k when found, else the synthetic world). With --storage, running it again continues the
study, and several copies started at once (each with its own --seed) tune together.
"""
import argparse

from recfb import tune
from recfb.data import concatenate, split
from recfb.datasets import DatasetNotFoundError, load, make_world
from recfb.evaluation import ranking_metrics
from recfb.models import BPR

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--trials", type=int, default=12)
p.add_argument("--storage", default=None, help="Optuna storage URL or journal file (resume / parallel)")
p.add_argument("--seed", type=int, default=0, help="sampler seed (one per parallel process)")
p.add_argument("--plot", default=None, help="PNG of the optimisation history and parameter importances")
args = p.parse_args()

try:
    data, name = load("ml-100k", download=False), "ml-100k"
except DatasetNotFoundError:
    data, name = make_world(seed=0).clicks, "the synthetic world"
# per-user random 70/10/20: the validation part tunes, the test part is looked at once, at the end
train, valid, test = split.random_holdout(data, test_fraction=0.2, validation_fraction=0.1, seed=0)
print(f"tuning BPR on {name}: {train.matrix.nnz} train, {valid.matrix.nnz} valid, {test.matrix.nnz} test")

# iterations is set, so it stays fixed; every epoch is validated (NDCG@10), bad trials are pruned
# and each trial keeps its best epoch
model = BPR(iterations=30, device="cpu")
result = tune.search(model, train.matrix, valid.matrix, metric="ndcg@10", n_trials=args.trials, seed=args.seed,
                     storage=args.storage, study_name="example-bpr" if args.storage else None)
print("best parameters:", result.best_params)
print(f"valid ndcg@10: {result.best_value:.4f}")
columns = ["number", "value", "state"] + [c for c in result.trials if c.startswith("params_")]
print(result.best_trials(5)[columns].to_string(index=False))

default = BPR(iterations=30, device="cpu").fit(train.matrix, valid_items=valid.matrix, show_progress=False)
seen = concatenate([train, valid]).matrix  # excluded from the test ranking
for label, m in (("defaults", default), ("tuned", result.best_model)):
    r = ranking_metrics(m, seen, test.matrix, k=10)
    print(f"{label:<9} test ndcg@10 {r['ndcg@10']:.4f}  recall@10 {r['recall@10']:.4f}")
if args.plot:
    tune.plot(result, args.plot)
    print("plot:", args.plot)
