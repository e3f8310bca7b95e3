"""A recommender retrained on its own clicks: top-k vs Plackett-Luce sampling, naive vs IPS
retraining with the loop's exact logged propensities, on a seeded synthetic world.

    python examples/feedback_loops.py          # about a minute on 2 cores
"""
from recfb.datasets import make_world
from recfb.evaluation import diversity_metrics
from recfb.models import MF
from recfb.simulate import plot_histories, run_loop

world = make_world(n_users=500, n_items=400, density=0.03, seed=0)


def make_model():  # explicit, modest settings: a fresh model every round
    return MF(loss="bpr", factors=32, iterations=15, learning_rate=0.01, batch_size=2048, optimizer="adam",
              regularization=0.01, device="cpu")


runs = {
    "top-k, naive": run_loop(world, make_model, policy="topk", rounds=6, k=10, seed=0),
    "softmax, naive": run_loop(world, make_model, policy="softmax", rounds=6, seed=0),
    "softmax, IPS": run_loop(world, make_model, policy="softmax", rounds=6, seed=0,
                             weighting="ips", clip=0.05),
}
for name, result in runs.items():
    h = result.history
    print(f"{name:24s} exposure Gini {h.exposure_gini.iloc[0]:.3f} -> {h.exposure_gini.iloc[-1]:.3f}, "
          f"true DCG@10 {h.true_dcg.iloc[0]:.3f} -> {h.true_dcg.iloc[-1]:.3f}")

# every impression is logged with the policy's exact probability and the slot's examination
log = runs["softmax, IPS"].log
print(log[log["round"] == 0].head())

# beyond-accuracy figures of the last model's top-10 lists
last = runs["top-k, naive"].model
X = world.clicks.matrix
ids, _ = last.recommend(range(world.n_users), X, N=10)
print(diversity_metrics(ids, X, k=10))
plot_histories(runs, "feedback_loops.png")
print("curves written to feedback_loops.png")
