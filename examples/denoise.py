"""Train MF on noisy implicit feedback with T-CE, R-CE, PLD and NBPO, at their defaults, and
look at which training clicks T-CE treated as noise. T-CE, R-CE, PLD and NBPO run inside the
compiled kernel, as the plain losses do (``model.optimizer_`` says so).

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

models = {  # every setting not written here is derived from the data at fit (see the README)
    "BCE": MF(loss="bce"),
    # drop the 20% highest-loss positives of each batch, a rate reached 30% into training
    "BCE + T-CE": MF(loss="bce", denoise=TCE(drop_rate=0.2, warmup=0.3)),
    # weight positives by sigmoid(score)^beta and negatives by (1 - sigmoid(score))^beta
    "BCE + R-CE": MF(loss="bce", denoise=RCE()),
    "BPR": MF(loss="bpr"),
    # resample each positive from a pool of 5 of the user's items by softmax(-loss / 0.3)
    "BPR + PLD": MF(loss="bpr", denoise=PLD()),
    # the label-flip likelihood of a low-rank flip model (its default L2 shrinks it to a
    # constant flip rate; lower flip_regularization lets per-pair flips learn)
    "NBPO": MF(loss=NBPO(), negatives="verified"),
}
for name, model in models.items():
    model.fit(X, show_progress=False)
    m = ranking_metrics(model, X, T, k=20)
    print(f"{name:<11} recall@20 {m['recall@20']:.4f}  ndcg@20 {m['ndcg@20']:.4f}")

dropped = models["BCE + T-CE"].denoise.dropped_.numpy()
print(f"T-CE dropped {dropped.sum():,} of {dropped.size:,} training clicks at their last visit; "
      f"ratings < 4 are {np.mean(ratings[dropped] < 4):.1%} of them and {np.mean(ratings < 4):.1%} of all clicks")
