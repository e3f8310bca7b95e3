"""Train MF on noisy implicit feedback with T-CE, R-CE, PLD and NBPO, and look at which
training clicks T-CE treated as noise.

Run: .venv/bin/python examples/denoise.py   (needs ml-100k: set RECFB_DATA_DIR, see README)
"""
import numpy as np

from recfb.datasets import load, natural_noise_split
from recfb.denoise import PLD, RCE, TCE
from recfb.evaluation import ranking_metrics
from recfb.losses import NBPO
from recfb.models import MF

# natural noise: every rating is a training positive; only ratings >= 4 are test positives
split = natural_noise_split(load("ml-100k", download=False), clean_threshold=4, seed=0)
ratings = split.train.matrix.data.copy()  # CSR order, the order of the training interactions
X = split.train.matrix.copy()
X.data[:] = 1
T = split.test.matrix

common = dict(factors=64, iterations=20, batch_size=2048, learning_rate=0.005, regularization=1e-5)
models = {
    "BCE": MF(loss="bce", num_negatives=4, **common),
    # drop the 20% highest-loss positives of each batch, a rate reached 30% into training
    "BCE + T-CE": MF(loss="bce", num_negatives=4, denoise=TCE(drop_rate=0.2, warmup=0.3), **common),
    # weight positives by sigmoid(score)^beta and negatives by (1 - sigmoid(score))^beta
    "BCE + R-CE": MF(loss="bce", num_negatives=4, denoise=RCE(beta=0.25), **common),
    "BPR": MF(loss="bpr", **common),
    # resample each positive from a pool of 5 of the user's items by softmax(-loss / 0.1)
    "BPR + PLD": MF(loss="bpr", denoise=PLD(pool_size=5, temperature=0.1), **common),
    # label-flip likelihood with a learned rank-16 flip model
    "NBPO": MF(loss=NBPO(flip_factors=16), num_negatives=4, negatives="verified", **common),
}
for name, model in models.items():
    model.fit(X, show_progress=False)
    m = ranking_metrics(model, X, T, k=20)
    print(f"{name:<11} recall@20 {m['recall@20']:.4f}  ndcg@20 {m['ndcg@20']:.4f}")

dropped = models["BCE + T-CE"].denoise.dropped_.numpy()
print(f"T-CE dropped {dropped.sum():,} of {dropped.size:,} training clicks at their last visit; "
      f"ratings < 4 are {np.mean(ratings[dropped] < 4):.1%} of them and {np.mean(ratings < 4):.1%} of all clicks")
