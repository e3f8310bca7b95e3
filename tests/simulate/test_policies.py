"""Policies: logged probabilities equal a brute-force computation of the sampling rule and
match Monte-Carlo frequencies; ineligible items are never shown; bad policy output is named."""
import itertools
import math

import numpy as np
import pytest

from recfb.simulate import epsilon_greedy_policy, examination_propensities, make_policy, softmax_policy, topk_policy
from recfb.simulate.policies import check_policy_output
from recfb.utils.errors import DataError

SCORES = np.array([[2.0, 1.0, 0.5, -np.inf, 0.0, 1.5],
                   [0.0, 0.3, -np.inf, 0.2, 3.0, -1.0]])


def _softmax_ref(scores, above, item, temperature):
    """pi(item | above): softmax over eligible items not above, by plain loops."""
    left = [j for j in range(len(scores)) if scores[j] > -math.inf and j not in above]
    return math.exp(scores[item] / temperature) / sum(math.exp(scores[j] / temperature) for j in left)


def _epsilon_ref(scores, above, item, epsilon):
    left = [j for j in range(len(scores)) if scores[j] > -math.inf and j not in above]
    best = max(left, key=lambda j: (scores[j], -j))
    return (1 - epsilon) * (item == best) + epsilon / len(left)


def _list_frequencies(items):
    keys, counts = np.unique(items, axis=0, return_counts=True)
    return {tuple(key): c / items.shape[0] for key, c in zip(keys, counts)}


@pytest.mark.parametrize("name, ref, kwargs", [
    ("softmax", _softmax_ref, {"temperature": 0.7}),
    ("epsilon", _epsilon_ref, {"epsilon": 0.3}),
])
def test_logged_probabilities_are_exact_and_match_monte_carlo(name, ref, kwargs):
    policy = make_policy(name, **kwargs)
    n_draws, k = 40_000, 2
    rng = np.random.default_rng(0)
    for u, row in enumerate(SCORES):
        items, probs = policy(np.tile(row, (n_draws, 1)), k, rng)
        assert (items >= 0).all() and not np.isin(items, np.flatnonzero(row == -np.inf)).any()
        assert (items[:, 0] != items[:, 1]).all()
        # exact: every logged probability is the rule's conditional probability given the slots above
        param = next(iter(kwargs.values()))
        for lst, p in zip(items[:300], probs[:300]):
            for slot in range(k):
                assert p[slot] == pytest.approx(ref(row, list(lst[:slot]), lst[slot], param), rel=1e-9)
        # Monte Carlo: each distinct list's frequency matches the product of its logged slot probabilities
        freq = _list_frequencies(items)
        logged = {tuple(lst): float(np.prod(p)) for lst, p in zip(items, probs)}
        assert 0.995 < sum(logged.values()) <= 1 + 1e-9  # the lists never drawn are the improbable ones
        for lst, p in logged.items():
            assert abs(freq[lst] - p) <= 4.5 * math.sqrt(p * (1 - p) / n_draws) + 1e-4, (u, lst)
        # and the slot-1 marginal frequencies match slot 1's logged probabilities
        for item in np.unique(items[:, 0]):
            p1 = probs[items[:, 0] == item, 0][0]
            assert abs(np.mean(items[:, 0] == item) - p1) <= 4.5 * math.sqrt(p1 * (1 - p1) / n_draws)


def test_softmax_probabilities_of_all_lists_sum_to_one():
    row = SCORES[0]
    eligible = np.flatnonzero(row > -np.inf)
    total = 0.0
    for lst in itertools.permutations(eligible, 3):
        total += math.prod(_softmax_ref(row, list(lst[:s]), lst[s], 1.3) for s in range(3))
    assert total == pytest.approx(1.0)


def test_softmax_stable_when_the_top_item_holds_all_the_mass():
    scores = np.array([[1000.0, 0.0, -5.0, 1.0]])
    items, probs = softmax_policy(scores, 3, np.random.default_rng(0), temperature=1.0)
    assert items[0, 0] == 0 and probs[0, 0] == pytest.approx(1.0)
    assert probs[0, 1] == pytest.approx(_softmax_ref(scores[0], [0], items[0, 1], 1.0))
    assert np.all(probs > 0)


def test_topk_is_deterministic_with_id_tie_break():
    scores = np.array([[1.0, 3.0, 3.0, -np.inf, 2.0]])
    items, probs = topk_policy(scores, 4)
    assert items.tolist() == [[1, 2, 4, 0]] and probs.tolist() == [[1.0] * 4]


def test_short_rows_get_empty_slots():
    scores = np.array([[1.0, -np.inf, -np.inf, 0.5]])
    for policy in (topk_policy, lambda s, k, r: softmax_policy(s, k, r), lambda s, k, r: epsilon_greedy_policy(s, k, r)):
        items, probs = policy(scores, 3, np.random.default_rng(1))
        assert sorted(items[0, :2].tolist()) == [0, 3] and items[0, 2] == -1 and np.isnan(probs[0, 2])
        check_policy_output((items, probs), scores, 3)


def test_epsilon_zero_is_topk_and_one_is_uniform():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(50, 8))
    greedy, p = epsilon_greedy_policy(scores, 3, rng, epsilon=0.0)
    assert np.array_equal(greedy, topk_policy(scores, 3)[0]) and np.all(p == 1.0)
    _, p = epsilon_greedy_policy(scores, 3, rng, epsilon=1.0)
    assert np.allclose(p, np.array([1 / 8, 1 / 7, 1 / 6]))


def test_policy_output_checks_name_the_problem():
    s = np.zeros((2, 4))
    with pytest.raises(DataError, match=r"\(2, 3\)"):
        check_policy_output((np.zeros((2, 2), int), np.ones((2, 2))), s, 3)
    with pytest.raises(DataError, match="twice"):
        check_policy_output((np.array([[0, 0, 1], [0, 1, 2]]), np.ones((2, 3))), s, 3)
    with pytest.raises(DataError, match=r"\(0, 1\]"):
        check_policy_output((np.array([[0, 1, 2], [0, 1, 2]]), np.zeros((2, 3))), s, 3)
    s[0, 1] = -np.inf
    with pytest.raises(DataError, match="ineligible"):
        check_policy_output((np.array([[0, 1, 2], [0, 1, 2]]), np.ones((2, 3))), s, 3)
    with pytest.raises(ValueError, match="policy == 'greedy'"):
        make_policy("greedy")
    with pytest.raises(ValueError, match="temperature"):
        make_policy("softmax", temperature=0)
    with pytest.raises(ValueError, match="epsilon"):
        make_policy("epsilon", epsilon=1.5)


def test_examination_propensities():
    assert examination_propensities("position", 3).tolist() == [1.0, 0.5, 1 / 3]
    assert examination_propensities(None, 2).tolist() == [1.0, 1.0]
    assert examination_propensities([0.9, 0.5, 0.2, 0.1], 3).tolist() == [0.9, 0.5, 0.2]
    with pytest.raises(ValueError, match="at least k"):
        examination_propensities([0.9], 3)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        examination_propensities([0.9, 0.0], 2)
