"""SASRec, gSASRec and BERT4Rec run the shared contract suite, fed ordered interactions (each
user's checkerboard items in a seeded shuffled order) through the suite's data hook. The
settings are the smallest that learn the checkerboard for seeds 0-2 (NDCG@5 1.0) in about a
second a fit; gSASRec's gBCE (t = 0.75) needs more epochs to leave its plateau."""
from recfb.models import BERT4Rec, SASRec, gSASRec
from recfb.testing import RecommenderContract, ordered_interactions

SMALL = dict(factors=16, max_len=25, num_blocks=1, dropout=0.0, device="cpu")


class TestSASRecContract(RecommenderContract):
    fit_data = staticmethod(ordered_interactions)

    def make_model(self):
        return SASRec(iterations=10, batch_size=50, learning_rate=3e-2, **SMALL)


class TestGSASRecContract(RecommenderContract):
    fit_data = staticmethod(ordered_interactions)

    def make_model(self):
        return gSASRec(iterations=60, batch_size=16, learning_rate=1e-2, num_negatives=4, **SMALL)


class TestBERT4RecContract(RecommenderContract):
    fit_data = staticmethod(ordered_interactions)

    def make_model(self):
        return BERT4Rec(iterations=20, batch_size=50, learning_rate=3e-2, num_heads=2, **SMALL)
