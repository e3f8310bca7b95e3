"""Most-popular baseline: every user gets the items with the most interactions."""
from __future__ import annotations

import numpy as np

from recfb.models.base import Recommender
from recfb.utils.params import Instance


class MostPopular(Recommender):
    """Scores an item by its popularity in the training matrix.

    Parameters
    ----------
    weighted : bool, default False
        Popularity is the sum of the interaction weights instead of the number of users.
    """

    search_space = {}  # nothing worth tuning (recfb.tune)

    _parameter_constraints = {"weighted": [Instance(bool)]}

    def __init__(self, *, weighted: bool = False):
        self.weighted = weighted

    def fit(self, user_items, show_progress: bool = True) -> "MostPopular":
        self._validate_params()
        X = self._validate_fit_input(user_items)
        if self.weighted:
            pop = np.asarray(X.sum(axis=0)).ravel()
        else:
            pop = np.bincount(X.indices[X.data > 0], minlength=X.shape[1])
        self.item_popularity_ = pop.astype(np.float32)
        return self

    def _score(self, userids, user_items):
        return np.broadcast_to(self.item_popularity_, (userids.size, self.n_items_))

    def _similar_scores(self, itemids):
        # Popularity carries no item-item signal; rank every item by popularity, itself first.
        s = np.broadcast_to(self.item_popularity_, (itemids.size, self.n_items_)).copy()
        s[np.arange(itemids.size), itemids] = self.item_popularity_.max() + 1.0
        return s

    def _get_state(self):
        return {"item_popularity_": self.item_popularity_}

    def _set_state(self, arrays):
        self.item_popularity_ = arrays["item_popularity_"]
