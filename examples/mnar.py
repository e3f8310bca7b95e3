"""Learn and evaluate under missing-not-at-random exposure (Coat when found, else a synthetic world).

Run: RECFB_DATA_DIR=../shared/datasets .venv/bin/python examples/mnar.py
"""
import numpy as np
import scipy.sparse as sp

from recfb.datasets import DatasetNotFoundError, load, make_world
from recfb.debias import ips_weights, popularity_propensity
from recfb.evaluation import ips_ranking_metrics, mar_ranking_metrics, true_relevance_metrics
from recfb.models import MF

common = dict(factors=32, iterations=20, regularization=1e-3, num_negatives=4, device="cpu")
models = {
    "naive MF-BCE": MF(loss="bce", **common),
    "Rel-MF (clip 0.1)": MF(loss="relmf", propensity="popularity", eta=0.5, clip=0.1, **common),
    "UBPR": MF(loss="ubpr", propensity="popularity", eta=0.5, clip=0.1, **common),
    "DR Rel-MF": MF(loss="relmf_dr", propensity="popularity", eta=0.5, clip=0.3, **common),
}

try:
    coat = load("coat", download=False)
    clicks = coat.train.matrix.copy()
    clicks.data = (clicks.data >= 4).astype(np.float32)  # MNAR: users chose what to rate
    clicks.eliminate_zeros()
    for name, model in models.items():
        model.fit(clicks, show_progress=False)
        for protocol in ("full", "saito"):  # the MAR test: uniformly random items per user
            m = mar_ranking_metrics(model, clicks, coat.test.matrix, k=5, protocol=protocol, threshold=4)
            print(f"{name:<18} {protocol:<5} DCG@5={m['dcg@5']:.4f} Recall@5={m['recall@5']:.4f} MAP@5={m['map@5']:.4f}")
except DatasetNotFoundError:
    world = make_world(n_users=500, n_items=300, popularity_exponent=1.0, seed=0)  # truth known
    clicks = world.clicks.matrix
    for name, model in models.items():
        model.fit(clicks, show_progress=False)
        true = true_relevance_metrics(model, clicks, world.relevance_prob, k=5)["dcg@5"]
        print(f"{name:<18} true DCG@5={true:.4f}")

# IPS-weighted BPR through the generic per-interaction weights (SNIPS-normalised, clipped)
theta = popularity_propensity(clicks, eta=0.5)
ips_bpr = MF(loss="bpr", **common).fit(clicks, sample_weight=ips_weights(theta, clip=0.1, self_normalize=True, X=clicks),
                                       show_progress=False)
# an IPS estimate of DCG@5 from an MNAR log (here the training log itself, train items not excluded)
empty = sp.csr_matrix(clicks.shape, dtype=np.float32)
print("IPS-BPR, capped IPS estimate of DCG@5 on the log:",
      round(ips_ranking_metrics(ips_bpr, empty, clicks, theta, k=5, ip_cap=20)["ips_dcg@5"], 4))
