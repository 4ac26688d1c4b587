"""What the MLLM ranker is asked about: user histories and candidate lists (VenomRec, arXiv 2602.06409).

A ranking prompt (:func:`venomkit.victims.mllm.ranker.build_ranking_prompt`) holds a user's
history as item titles and one candidate item. This module draws both, seeded:

* :func:`sample_history`: up to ``max_history`` of a user's training items, in random order
  (TALLRec / LLaRA prompts show a short sample of the history; toyshop histories carry no
  order that matters, see ``venomkit.data.toyshop``);
* :func:`sample_negative`: a uniform item the user never interacted with;
* :func:`sampled_candidates`: VenomRec's evaluation protocol, one held-out positive plus
  ``n_negatives`` (99) uniformly sampled never-interacted items per user (chance HR@K =
  K / (n_negatives + 1)); :func:`evaluation_users` adds each user's history;
* :func:`users_apart`: the same lists and histories for users outside a set (a poisoning
  attacker's own users), each drawn on its own;
* :func:`full_catalogue_candidates`: every item a user has not interacted with outside the
  evaluated split (the full-ranking protocol of RecBole).

Item indices are ints in ``[0, dataset.n_items)``; users in ``[0, dataset.n_users)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from venomkit.config import check_int


def item_titles(catalog) -> list[str]:
    """Short item names for prompts: the 'title' attribute, else the text's first six words."""
    if "title" in catalog.attributes:
        return [str(t) for t in catalog.attributes["title"]]
    return [" ".join(str(t).split()[:6]) for t in catalog.texts]


def sample_history(rng: np.random.Generator, items: np.ndarray, exclude: int, max_history: int) -> list[int]:
    """Up to ``max_history`` of ``items`` other than ``exclude``, drawn without replacement, in random order."""
    others = items[items != exclude]
    if len(others) > max_history:
        others = rng.choice(others, size=max_history, replace=False)
    return [int(i) for i in rng.permutation(others)]


def sample_negative(rng: np.random.Generator, seen: set[int], n_items: int, cumulative: np.ndarray | None = None) -> int:
    """An item in ``[0, n_items)`` not in ``seen`` (rejection sampling; ``seen`` must leave one out):
    uniform, or with ``cumulative`` (the (n_items,) cumulative sum of non-negative item weights,
    e.g. ``np.cumsum(training counts)``) drawn in proportion to the weights."""
    if len(seen) >= n_items:
        raise ValueError(f"no negative to sample: the user interacted with all {n_items} items")
    if cumulative is not None:
        weights = np.diff(cumulative, prepend=0.0)
        if not weights[[i for i in range(n_items) if i not in seen]].sum() > 0:
            raise ValueError("no negative to sample: every item with a positive weight is one the user interacted with")
        while True:
            j = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            if j < n_items and j not in seen:
                return j
    while True:
        j = int(rng.integers(n_items))
        if j not in seen:
            return j


class CandidateList(NamedTuple):
    """One user's evaluation list: the held-out ``positive`` and (n_negatives,) int ``negatives``."""

    user: int
    positive: int
    negatives: np.ndarray

    @property
    def items(self) -> np.ndarray:
        """(1 + n_negatives,) the positive first, then the negatives (the order scores come in)."""
        return np.concatenate([[self.positive], self.negatives]).astype(np.int64)


def sampled_candidates(
    dataset, *, n_users: int, n_negatives: int = 99, split: str = "test", seed: int = 0
) -> list[CandidateList]:
    """Evaluation lists: (user, held-out positive, ``n_negatives`` never-interacted items).

    Users are those with a held-out item in ``split`` and at least one training item; up to
    ``n_users`` of them are drawn (seeded), in increasing order. Negatives are drawn without
    replacement from the items the user never interacted with in ANY split (VenomRec's protocol:
    99 negatives + 1). The same ``seed`` gives the same lists.
    """
    _check_sizes(n_users, n_negatives)
    rng = np.random.default_rng(seed)
    eligible = _eligible_users(dataset, split)
    chosen = np.sort(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False))
    lists = [cl for cl in (_candidate_list(dataset, int(u), split, n_negatives, rng) for u in chosen) if cl is not None]
    return _nonempty(lists, dataset, n_negatives)


def evaluation_users(
    dataset, *, n_users: int, max_history: int, n_negatives: int = 99, split: str = "test", seed: int = 0
) -> tuple[list[CandidateList], list[list[int]]]:
    """VenomRec's evaluated users: :func:`sampled_candidates` (``seed``) and, in list order from one
    generator (``seed + 1``), a history of up to ``max_history`` training items for each."""
    lists = sampled_candidates(dataset, n_users=n_users, n_negatives=n_negatives, split=split, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return lists, [sample_history(rng, dataset.split.train.items_of(cl.user), -1, max_history) for cl in lists]


def users_apart(
    dataset, *, n_users: int, exclude, max_history: int, n_negatives: int = 99, split: str = "test", seed: int = 0
) -> tuple[list[CandidateList], list[list[int]]]:
    """Lists and histories of ``n_users`` users outside ``exclude`` (an attacker's own users, never evaluated).

    The users come in the order of one seeded permutation of the eligible users (those of
    :func:`sampled_candidates`), skipping ``exclude``; each user's positive, negatives and history
    come from a generator of its own (``(seed, user)``). So who is drawn, and with what, depends
    on the other settings only through ``exclude``: more evaluated users replace just those of
    the attacker's users who became evaluated.
    """
    _check_sizes(n_users, n_negatives)
    excluded = {int(u) for u in exclude}
    lists, histories = [], []
    for u in np.random.default_rng(seed).permutation(_eligible_users(dataset, split)):
        if len(lists) == n_users:
            break
        if int(u) in excluded:
            continue
        rng = np.random.default_rng([seed, int(u)])
        cl = _candidate_list(dataset, int(u), split, n_negatives, rng)
        if cl is not None:
            lists.append(cl)
            histories.append(sample_history(rng, dataset.split.train.items_of(cl.user), -1, max_history))
    return _nonempty(lists, dataset, n_negatives), histories


def _check_sizes(n_users: int, n_negatives: int) -> None:
    check_int("n_users", n_users, 1, numpy_ok=True)
    check_int("n_negatives", n_negatives, 1, numpy_ok=True)


def _eligible_users(dataset, split: str) -> np.ndarray:
    """Users with a held-out item in ``split`` and at least one training item."""
    return np.flatnonzero((_split(dataset, split).user_degree() > 0) & (dataset.split.train.user_degree() > 0))


def _candidate_list(dataset, user: int, split: str, n_negatives: int, rng: np.random.Generator) -> CandidateList | None:
    """``user``'s held-out positive and ``n_negatives`` never-interacted items drawn from ``rng``; None when too few."""
    seen = set(dataset.interactions.items_of(user).tolist())
    pool = np.array([i for i in range(dataset.n_items) if i not in seen])
    if len(pool) < n_negatives:
        return None
    positive = int(rng.choice(_split(dataset, split).items_of(user)))
    return CandidateList(user, positive, rng.choice(pool, size=n_negatives, replace=False))


def _nonempty(lists: list[CandidateList], dataset, n_negatives: int) -> list[CandidateList]:
    if not lists:
        raise ValueError(
            f"dataset {dataset.name!r}: no evaluated user has {n_negatives} never-interacted items to sample as "
            f"negatives (n_items={dataset.n_items}); lower n_negatives"
        )
    return lists


def full_catalogue_candidates(dataset, user: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(candidates, positives) of ``user`` for full ranking on ``split``.

    Candidates: every item except the user's interactions in the OTHER splits (train, and valid
    when ``split`` is test), as RecBole masks history; positives: the user's ``split`` items
    (a subset of the candidates). Both are sorted int64 arrays.
    """
    held = _split(dataset, split)
    masked: set[int] = set()
    for name in ("train", "valid", "test"):
        if name != split:
            masked |= set(_split(dataset, name).items_of(int(user)).tolist())
    candidates = np.array([i for i in range(dataset.n_items) if i not in masked], dtype=np.int64)
    return candidates, np.sort(held.items_of(int(user)).astype(np.int64))


def _split(dataset, name: str):
    if name not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {name!r}")
    return getattr(dataset.split, name)


__all__ = [
    "CandidateList", "evaluation_users", "full_catalogue_candidates", "item_titles", "sample_history", "sample_negative",
    "sampled_candidates", "users_apart",
]  # fmt: skip

