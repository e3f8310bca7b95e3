"""MF/BPR, CML and LightGCN on the shared loop: contract suite plus model-specific checks."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfb.models import BPR, CML, MF, LightGCN
from recfb.testing import RecommenderContract, checkerboard_holdout

FAST = dict(factors=8, batch_size=256, random_state=0, device="cpu")


class TestBPR(RecommenderContract):
    """optimizer="auto" -> the fused kernel; one thread so that the determinism check applies
    (Hogwild threads race, as in implicit)."""
    def make_model(self):
        return BPR(iterations=40, num_threads=1, **FAST)


class TestBPRAdam(RecommenderContract):
    def make_model(self):
        return BPR(iterations=40, learning_rate=0.05, optimizer="adam", **FAST)


class TestMFBCE(RecommenderContract):
    def make_model(self):
        return MF(loss="bce", iterations=40, biases=True, num_threads=1, **FAST)


class TestMFBCEAdam(RecommenderContract):
    def make_model(self):
        return MF(loss="bce", iterations=40, learning_rate=0.05, num_negatives=4, biases=True, optimizer="adam",
                  **FAST)


class TestCML(RecommenderContract):
    """optimizer="auto" -> CML's fused kernel; one thread for the determinism check."""
    def make_model(self):
        return CML(iterations=40, num_negatives=5, num_threads=1, **FAST)


class TestCMLAdam(RecommenderContract):
    def make_model(self):
        return CML(iterations=40, learning_rate=0.05, num_negatives=5, optimizer="adam", **FAST)


class TestLightGCN(RecommenderContract):
    def make_model(self):
        return LightGCN(iterations=40, learning_rate=0.05, num_layers=2, **FAST)


@pytest.mark.parametrize("cls", [BPR, CML, LightGCN])
def test_implicit_style_constructor_works_as_written(cls):
    X, _ = checkerboard_holdout(20)
    model = cls(factors=64, iterations=100, random_state=0)
    model.set_params(iterations=2, device="cpu")
    model.fit(X, show_progress=False)
    assert model.user_factors.dtype == np.float32 and model.item_factors.shape[0] == 20


def test_bias_folded_into_factors():
    X, _ = checkerboard_holdout(20)
    m = MF(loss="bce", biases=True, iterations=3, **FAST).fit(X, show_progress=False)
    s = m.scorer_
    with torch.no_grad():
        expected = s.user.weight @ s.item.weight.T + s.bias.weight.T
    np.testing.assert_allclose(m.score(np.arange(20), X), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert m.item_factors.shape[1] == 9 and np.all(m.user_factors[:, -1] == 1)


def test_cml_scores_are_negative_squared_distances_in_unit_ball():
    X, _ = checkerboard_holdout(20)
    m = CML(iterations=3, **FAST).fit(X, show_progress=False)
    assert np.all(np.linalg.norm(m.item_factors, axis=1) <= 1 + 1e-5)
    assert np.all(np.linalg.norm(m.user_factors, axis=1) <= 1 + 1e-5)
    d = ((m.user_factors[:, None, :] - m.item_factors[None]) ** 2).sum(-1)
    np.testing.assert_allclose(m.score(np.arange(20), X), -d, rtol=1e-4, atol=1e-5)
    assert m.metric == "l2"


def test_cml_places_cold_items_from_features():
    """Items with content features but no interactions are scored through f(features)."""
    X, _ = checkerboard_holdout(40)
    parity = np.arange(40) % 2
    features = np.stack([parity, 1 - parity], axis=1).astype(np.float32)  # the taste group is the feature
    X = X.tolil()
    X[:, 38] = 0  # item 38 (even) becomes a cold item
    X = X.tocsr()
    X.eliminate_zeros()
    m = CML(iterations=60, learning_rate=0.05, num_negatives=5, feature_weight=1.0, **FAST)
    m.fit(X, show_progress=False, item_features=features)
    ids, _ = m.recommend(np.arange(0, 40, 2), X[0:40:2], N=5, items=np.array([38, 39, 37, 35]))
    assert np.mean(ids[:, 0] == 38) >= 0.8  # even users prefer the cold even item over odd items
    new = m.item_vectors_from_features(features[[0, 1]])
    assert new.shape == (2, 8)
    with pytest.raises(Exception, match="without item_features"):
        CML(iterations=1, **FAST).fit(X, show_progress=False).item_vectors_from_features(features)


def test_lightgcn_propagation_matches_pyg_reference():
    from torch_geometric.nn import LGConv

    from recfb.models.lightgcn import LightGCNScorer, normalized_adjacency
    X = sp.random(30, 20, density=0.15, format="csr", random_state=0, dtype=np.float32)
    s = LightGCNScorer(30, 20, 8, torch.Generator().manual_seed(0), normalized_adjacency(X), num_layers=3)
    out = s.propagate()
    out.pow(2).sum().backward()
    grad = s.embedding.weight.grad.clone()
    s.embedding.weight.grad = None
    coo = X.tocoo()
    edges = np.hstack([np.vstack([coo.row, coo.col + 30]), np.vstack([coo.col + 30, coo.row])])
    conv, x = LGConv(normalize=True), s.embedding.weight
    acc = x
    for _ in range(3):
        x = conv(x, torch.as_tensor(edges, dtype=torch.long))
        acc = acc + x
    ref = acc / 4
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, s.embedding.weight.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls,kw", [(BPR, {}), (CML, dict(num_negatives=5)), (LightGCN, dict(num_layers=2))])
def test_recalculate_user_folds_in_unseen_users(cls, kw):
    X, held = checkerboard_holdout(40)
    m = cls(iterations=40, learning_rate=0.05, **FAST, **kw).fit(X[:30], show_progress=False)
    # users 30..39 were never seen: fold them in from their rows
    ids, _ = m.recommend(np.arange(30, 40), X[30:40], N=5, recalculate_user=True)
    assert np.mean(ids[:, 0] == held[30:40]) >= 0.9  # the one unseen same-parity item comes first
    with pytest.raises(Exception, match="not seen at fit"):
        m.recommend(35, X[35], N=5)


def test_all_zero_weights_rows_and_bad_features():
    X, _ = checkerboard_holdout(20)
    with pytest.raises(Exception, match="item_features must be"):
        CML(iterations=1, **FAST).fit(X, show_progress=False, item_features=np.ones((3, 2)))
    with pytest.raises(Exception, match="sample_weight has 3 entries"):
        BPR(iterations=1, **FAST).fit(X, show_progress=False, sample_weight=np.ones(3))


# ---------------------------------------------------------------- defaults derived at fit time
def test_auto_optimizer_takes_the_fused_kernel_only_where_it_applies():
    from recfb.denoise import PLD, TCE
    X, _ = checkerboard_holdout(20)
    kw = dict(factors=4, iterations=2, device="cpu")
    assert BPR(**kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    assert MF(loss="bce", **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    assert MF(loss="relmf", **kw).fit(X, show_progress=False).optimizer_ == "adam"  # objective without a kernel
    assert MF(loss="bpr", denoise=PLD(), **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"  # in the kernel
    assert MF(loss="bce", denoise=TCE(), **kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"  # in the kernel
    assert CML(**kw).fit(X, show_progress=False).optimizer_ == "fused_sgd"
    assert CML(**kw).fit(X, show_progress=False, item_features=np.ones((X.shape[1], 2))).optimizer_ == "adam"
    assert BPR(optimizer="adam", **kw).fit(X, show_progress=False).optimizer_ == "adam"  # explicit wins


def test_derived_settings_follow_the_documented_rules_and_explicit_values_win():
    from recfb.models.mf import mf_auto_settings
    X, _ = checkerboard_holdout(20)
    m = BPR(factors=4, device="cpu").fit(X, show_progress=False)
    rule = mf_auto_settings(X.nnz, "fused_sgd")
    assert (m.iterations_, m.learning_rate_, m.regularization_, m.lr_schedule_) == (
        rule["iterations"], rule["learning_rate"], rule["regularization"], rule["lr_schedule"])
    assert m.num_negatives_ == 1 and MF(loss="bce", factors=4, iterations=1, device="cpu").fit(
        X, show_progress=False).num_negatives_ == 4
    assert len(m.history_) == rule["iterations"]
    # the rules at the swept sizes: more epochs and more L2 for small logs, bounded both ways;
    # past the 100-epoch cap the step takes up the 4e7-update budget (up to 0.1)
    small, mid, large, huge = (mf_auto_settings(n, "fused_sgd") for n in (7e4, 3e5, 7e5, 1e8))
    assert small["iterations"] == 100 and large["iterations"] == 57 and huge["iterations"] == 30
    assert (small["learning_rate"], mid["learning_rate"], large["learning_rate"], huge["learning_rate"]) == (
        0.1, round(0.05 * 4e7 / (100 * 3e5), 4), 0.05, 0.05) and mid["iterations"] == 100
    assert small["regularization"] == 0.03 and 0.01 <= large["regularization"] < 0.012 and huge["regularization"] == 0.01
    e = BPR(factors=4, iterations=3, learning_rate=0.2, regularization=0.0, lr_schedule=None,
            device="cpu").fit(X, show_progress=False)
    assert (e.iterations_, e.learning_rate_, e.regularization_, e.lr_schedule_) == (3, 0.2, 0.0, None)
    assert e.get_params()["iterations"] == 3 and BPR().get_params()["iterations"] is None


@pytest.mark.parametrize("bad", [{"learning_rate": float("inf")}, {"learning_rate": -1.0},
                                 {"regularization": float("nan")}, {"iterations": 0}])
def test_bad_explicit_settings_are_refused(bad):
    X, _ = checkerboard_holdout(10)
    with pytest.raises(ValueError, match=next(iter(bad))):
        BPR(device="cpu", **bad).fit(X, show_progress=False)


def test_defaults_learn_beyond_popularity_on_a_synthetic_world():
    """BPR() and MF(loss="bce") as a user writes them beat MostPopular (MF-BCE at its old
    defaults did not)."""
    from recfb.data import split
    from recfb.datasets import make_world
    from recfb.evaluation import ranking_metrics
    from recfb.models import MostPopular
    world = make_world(seed=0)
    train, test = split.random_holdout(world.clicks, test_fraction=0.2, seed=0)
    X, T = train.matrix, test.matrix
    pop = ranking_metrics(MostPopular().fit(X), X, T, k=10)["ndcg@10"]
    for model in (BPR(num_threads=1), MF(loss="bce", num_threads=1)):
        assert ranking_metrics(model.fit(X, show_progress=False), X, T, k=10)["ndcg@10"] > 1.2 * pop


def test_cml_single_user_and_batch_scores_agree_near_zero_distance():
    """float32 ``2u.v - |u|^2 - |v|^2`` cancels when a user sits on an item; the scores are
    computed in float64, so one user's scores alone and in a batch agree with the difference form."""
    X, _ = checkerboard_holdout(20)
    m = CML(iterations=2, num_threads=1, **FAST).fit(X, show_progress=False)
    m.user_factors[3] = m.item_factors[5] + 1e-4  # a user almost on an item
    batch = m.score(np.arange(20), X)
    single = m.score(np.array([3]), X[3])
    exact = -((m.user_factors[3].astype(np.float64) - m.item_factors.astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(batch[3], single[0])
    np.testing.assert_allclose(single[0], exact, rtol=1e-5, atol=1e-9)


def test_lightgcn_batch_and_epochs_follow_the_size_of_the_log():
    """``batch_size=None``: about an eighth of the log as a power of two within [8192, 65536];
    ``iterations=None``: ``clip(4e6 / nnz, 30, 200)``; explicit values are used as given."""
    pytest.importorskip("torch_geometric")
    X, _ = checkerboard_holdout(20)
    m = LightGCN(factors=4, device="cpu")
    for nnz, batch, epochs in ((70_000, 8192, 57), (300_000, 32768, 30), (800_000, 65536, 30), (500, 8192, 200)):
        log = sp.csr_matrix((np.ones(nnz, np.float32), (np.arange(nnz) % 1000, np.arange(nnz) // 1000)))
        got = m._auto_settings(log, "adam")  # only the number of interactions enters the rule
        assert (got["batch_size"], got["iterations"]) == (batch, epochs), (nnz, got)
    fitted = LightGCN(factors=4, iterations=2, device="cpu").fit(X, show_progress=False)
    assert fitted.batch_size_ == 8192 and fitted.iterations_ == 2
    explicit = LightGCN(factors=4, iterations=2, batch_size=64, device="cpu").fit(X, show_progress=False)
    assert explicit.batch_size_ == 64 and len(explicit.history_) == 2
