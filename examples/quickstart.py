"""Train, evaluate and recommend in a dozen lines.

Run: .venv/bin/python examples/quickstart.py   (uses ml-100k when found, else the synthetic world)
"""
import recfb
from recfb.data import split
from recfb.datasets import DatasetNotFoundError, load, make_world
from recfb.evaluation import ranking_metrics
from recfb.models import ImplicitALS, ItemKNN, MostPopular

try:
    data = load("ml-100k", download=False)
except DatasetNotFoundError:
    data = make_world(seed=0).clicks
print(data)

train, test = split.random_holdout(data, test_fraction=0.2, seed=0)
for model in (MostPopular(), ItemKNN(neighbors=100), ImplicitALS(factors=64, iterations=15)):
    model.fit(train.matrix, show_progress=False)
    metrics = ranking_metrics(model, train.matrix, test.matrix, k=10)
    print(f"{type(model).__name__:<12} ndcg@10={metrics['ndcg@10']:.4f} recall@10={metrics['recall@10']:.4f}")

# recommend for an external user id; results come back as internal ids -> map them back
user = data.user_map.to_internal(data.user_ids[0])
ids, scores = model.recommend(user, train.matrix[user], N=5)
print("user", data.user_ids[0], "->", data.item_ids[ids].tolist())

# save without pickle, load back, same answers
path = model.save("/tmp/recfb-als.npz")
assert (recfb.load(path).recommend(user, train.matrix[user], N=5)[0] == ids).all()
