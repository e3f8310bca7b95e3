"""Next-item recommendation with SASRec / gSASRec / BERT4Rec on the SASRec paper's Amazon Video
Games file, leave-one-out, full-ranking and sampled-100 evaluation, and FAISS export.

Run: .venv/bin/python examples/sequential.py   (needs sasrec-video: set RECFB_DATA_DIR, see README)
"""
import numpy as np
import scipy.sparse as sp

from recfb.data import concatenate
from recfb.data.split import leave_one_out
from recfb.datasets import load
from recfb.evaluation import ranking_metrics, sampled_ranking_metrics
from recfb.models import BERT4Rec, SASRec, gSASRec
from recfb.serving import ItemIndex

data = load("video")  # file order is time order
train, valid, test = leave_one_out(data, by="row")  # last item test, second-last validation

models = {
    "SASRec (BCE)": SASRec(loss="bce", dropout=0.5, patience=3, eval_every=5),
    "gSASRec (gBCE)": gSASRec(num_negatives=256, gbce_t=0.75, dropout=0.5, patience=3, eval_every=5),
    "BERT4Rec": BERT4Rec(patience=3, eval_every=5),
}
for name, model in models.items():
    # validation NDCG@10 drives early stopping; a few minutes each on a laptop CPU
    model.fit(train, valid_items=valid, time_limit=300, checkpoint=f"/tmp/recfb-{name[:6]}.npz", resume=True)
    model.set_histories(concatenate([train, valid]))  # predict the test item from train + valid
    H, T = model.history_matrix(), test.matrix
    full = ranking_metrics(model, H, T, k=10)
    sampled = sampled_ranking_metrics(model, H, T, n_negatives=100, k=10)
    print(f"{name:<15} full NDCG@10 {full['ndcg@10']:.4f}  sampled-100 HR@10 {sampled['hit_rate@10']:.4f}")

# serving: the final hidden state is the query, item embeddings are the index
model = models["gSASRec (gBCE)"]
index = ItemIndex.from_vectors(model.item_factors, metric="ip")
ids, scores = index.search(model.user_factors[:3], k=5)
print("top-5 next items of users 0-2:", data.item_ids[ids].tolist())
# a user unseen at fit: score from a history given at call time
no_filter = sp.csr_matrix((1, model.n_items_), dtype=np.float32)  # nothing to filter out
ids, _ = model.recommend(0, no_filter, N=5, histories=[10, 42, 7])
print("next items after [10, 42, 7]:", data.item_ids[ids].tolist())
