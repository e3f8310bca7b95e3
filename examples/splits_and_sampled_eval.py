"""Leave-one-out by time, and the sampled (100 negatives) protocol beside full ranking.

Run: .venv/bin/python examples/splits_and_sampled_eval.py
"""
from recfb.data import split
from recfb.datasets import DatasetNotFoundError, load, make_world
from recfb.evaluation import ranking_metrics, sampled_ranking_metrics
from recfb.models import ItemKNN

try:
    data = load("ml-100k", download=False)
except DatasetNotFoundError:
    data = make_world(seed=0).clicks

train, valid, test = split.leave_one_out(data)          # last item = test, second-last = validation
model = ItemKNN(neighbors=200).fit(train.matrix, show_progress=False)
full = ranking_metrics(model, train.matrix, test.matrix, k=10)
sampled = sampled_ranking_metrics(model, train.matrix, test.matrix, n_negatives=100, k=10, seed=0)
print(f"full ranking: hit_rate@10={full['hit_rate@10']:.4f} ndcg@10={full['ndcg@10']:.4f}")
print(f"sampled-100:  hit_rate@10={sampled['hit_rate@10']:.4f} ndcg@10={sampled['ndcg@10']:.4f}"
      "  (sampled metrics are far higher and can reorder models; report full ranking)")
