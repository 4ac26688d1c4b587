"""A dataset: a catalog of raw items, its interactions and their split."""

from __future__ import annotations

from dataclasses import dataclass

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
    """Split by name: ``ratio`` (80/10/10 per user, seeded) or ``loo`` (leave-one-out)."""
    if method == "ratio":
        return ratio_split(interactions, seed=seed)
    if method == "loo":
        return leave_one_out_split(interactions, seed=seed)
    raise ValueError(f"unknown split method {method!r}; expected 'ratio' or 'loo'")
