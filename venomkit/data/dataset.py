"""A dataset: a catalog of raw items, its interactions and their split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from venomkit.data.catalog import Catalog
from venomkit.data.interactions import Interactions, Split, leave_one_out_split, ratio_split


@dataclass
class Dataset:
    """Everything a recommender experiment reads: items (raw content), users, interactions.

    ``split`` is computed from ``interactions`` with :func:`make_split` unless given.
    """

    name: str
    catalog: Catalog
    interactions: Interactions
    split: Split | None = None
    user_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.interactions.n_items != self.catalog.n_items:
            raise ValueError(
                f"dataset {self.name!r}: interactions cover {self.interactions.n_items} items, "
                f"catalog has {self.catalog.n_items}"
            )
        if self.user_ids is None:
            self.user_ids = [str(u) for u in range(self.interactions.n_users)]
        if len(self.user_ids) != self.interactions.n_users:
            raise ValueError(f"dataset {self.name!r}: {len(self.user_ids)} user ids for {self.interactions.n_users} users")
        if self.split is None:
            self.split = make_split(self.interactions)

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.catalog.n_items


def make_split(interactions: Interactions, method: str = "ratio", seed: int = 0) -> Split:
    """Split by name: ``ratio`` (80/10/10 per user, seeded) or ``loo`` (RecBole's leave-one-out)."""
    if method == "ratio":
        return ratio_split(interactions, seed=seed)
    if method == "loo":
        return leave_one_out_split(interactions, seed=seed)
    raise ValueError(f"unknown split method {method!r}; expected 'ratio' or 'loo'")


def require_test_interactions(dataset: Dataset, method: str = "ratio") -> None:
    """ValueError naming the data when its split holds no test interaction.

    Purchase logs with one or two purchases per customer leave the 80/10/10 ratio split without
    a single test item; training and "evaluating" on that would report nothing while attacks
    still report gains against an untested victim. The message says what to do instead.
    """
    if dataset.split.test.nnz > 0 or dataset.interactions.nnz == 0:
        return
    degree = dataset.interactions.user_degree()
    if method == "loo" or int((degree >= 2).sum()) == 0:
        hint = "every user has a single interaction: there is nothing to hold out for testing"
    else:
        hint = "use the leave-one-out split (venomkit train --split loo, a recipe's data.split: loo), which tests every user with two or more"
    raise ValueError(
        f"dataset {dataset.name!r}: its split has no test interaction ({len(degree)} users, median {int(np.median(degree))} "
        f"interaction(s) each, {int((degree >= 2).sum())} with two or more): {hint}"
    )
