"""Candidate lists and histories of the MLLM ranker: seeded, never an interacted item, the positive in."""

from __future__ import annotations

import numpy as np
import pytest

from venomkit.victims.mllm.candidates import (
    evaluation_users, full_catalogue_candidates, item_titles, sample_history, sample_negative, sampled_candidates, users_apart,
)  # fmt: skip


def test_lists_hold_the_held_out_positive_and_only_never_interacted_negatives(dataset):
    lists = sampled_candidates(dataset, n_users=10, n_negatives=10, seed=0)
    assert 0 < len(lists) <= 10
    assert [c.user for c in lists] == sorted({c.user for c in lists})
    for cand in lists:
        seen = set(dataset.interactions.items_of(cand.user).tolist())  # train, valid AND test items
        assert cand.positive in set(dataset.split.test.items_of(cand.user).tolist())
        negatives = cand.negatives.tolist()
        assert len(set(negatives)) == 10 and not seen & set(negatives)
        assert cand.items[0] == cand.positive and cand.items[1:].tolist() == negatives
        assert len(dataset.split.train.items_of(cand.user)) > 0


def test_lists_are_seeded(dataset):
    def as_rows(lists):
        return [(c.user, c.positive, c.negatives.tolist()) for c in lists]

    first = sampled_candidates(dataset, n_users=8, n_negatives=10, seed=3)
    assert as_rows(first) == as_rows(sampled_candidates(dataset, n_users=8, n_negatives=10, seed=3))
    assert as_rows(first) != as_rows(sampled_candidates(dataset, n_users=8, n_negatives=10, seed=4))
    valid = sampled_candidates(dataset, n_users=8, n_negatives=10, split="valid", seed=3)
    assert all(c.positive in set(dataset.split.valid.items_of(c.user).tolist()) for c in valid)


def test_evaluation_users_are_the_sampled_lists_with_seeded_histories(dataset):
    lists, histories = evaluation_users(dataset, n_users=8, max_history=3, n_negatives=10, seed=3)
    assert [(c.user, c.positive) for c in lists] == [(c.user, c.positive) for c in sampled_candidates(dataset, n_users=8, n_negatives=10, seed=3)]
    rng = np.random.default_rng(4)
    assert histories == [sample_history(rng, dataset.split.train.items_of(c.user), -1, 3) for c in lists]


def test_users_apart_avoid_the_excluded_and_depend_on_them_only(dataset):
    """An attacker's own users: never excluded ones, and a larger exclusion replaces only the users it takes."""
    def drawn(exclude):
        lists, histories = users_apart(dataset, n_users=6, exclude=exclude, max_history=3, n_negatives=10, seed=7)
        return {c.user: (c.positive, c.negatives.tolist(), h) for c, h in zip(lists, histories)}

    small = {c.user for c in sampled_candidates(dataset, n_users=3, n_negatives=10, seed=0)}
    large = small | {c.user for c in sampled_candidates(dataset, n_users=6, n_negatives=10, seed=1)}
    a, b = drawn(small), drawn(large)
    assert len(a) == len(b) == 6 and not set(a) & small and not set(b) & large
    kept = set(a) - large
    assert kept and kept <= set(b) and all(a[u] == b[u] for u in kept), "a user drawn in both draws the same list and history"
    for user, (positive, negatives, history) in b.items():
        seen = set(dataset.interactions.items_of(user).tolist())
        assert positive in set(dataset.split.test.items_of(user).tolist()) and not seen & set(negatives)
        assert set(history) <= set(dataset.split.train.items_of(user).tolist()) and len(history) <= 3
    assert drawn(small) == a  # seeded


def test_too_few_unseen_items_and_bad_arguments_are_errors(dataset):
    with pytest.raises(ValueError, match="negatives"):
        sampled_candidates(dataset, n_users=5, n_negatives=99)
    with pytest.raises(ValueError, match="split"):
        sampled_candidates(dataset, n_users=5, n_negatives=5, split="dev")
    with pytest.raises(ValueError, match="n_users"):
        sampled_candidates(dataset, n_users=0, n_negatives=5)


def test_full_catalogue_masks_the_other_splits_only(dataset):
    user = sampled_candidates(dataset, n_users=1, n_negatives=5, seed=0)[0].user
    candidates, positives = full_catalogue_candidates(dataset, user)
    train = set(dataset.split.train.items_of(user).tolist())
    valid = set(dataset.split.valid.items_of(user).tolist())
    assert set(candidates.tolist()) == set(range(dataset.n_items)) - train - valid
    assert set(positives.tolist()) == set(dataset.split.test.items_of(user).tolist()) <= set(candidates.tolist())


def test_history_is_a_seeded_sample_of_the_other_items():
    items = np.arange(20, 32)
    a = sample_history(np.random.default_rng(0), items, exclude=25, max_history=5)
    assert a == sample_history(np.random.default_rng(0), items, exclude=25, max_history=5)
    assert len(a) == 5 and len(set(a)) == 5 and 25 not in a and set(a) <= set(items.tolist())
    assert sorted(sample_history(np.random.default_rng(0), items[:3], exclude=-1, max_history=8)) == [20, 21, 22]
    assert sample_history(np.random.default_rng(0), items, exclude=-1, max_history=0) == []


def test_negatives_avoid_the_seen_items():
    rng = np.random.default_rng(0)
    assert {sample_negative(rng, {0, 1, 2, 4}, 6) for _ in range(50)} == {3, 5}
    with pytest.raises(ValueError, match="all 3 items"):
        sample_negative(rng, {0, 1, 2}, 3)


def test_weighted_negatives_follow_the_weights_and_avoid_the_seen_items():
    rng = np.random.default_rng(0)
    weights = np.array([5.0, 0.0, 1.0, 3.0, 0.0, 1.0])  # item 1 and 4 weightless; 0 seen
    draws = [sample_negative(rng, {0}, 6, np.cumsum(weights)) for _ in range(5000)]
    share = np.bincount(draws, minlength=6) / len(draws)
    assert share[0] == share[1] == share[4] == 0  # seen, and never drawn without weight
    assert np.allclose(share[[2, 3, 5]], [0.2, 0.6, 0.2], atol=0.03)
    with pytest.raises(ValueError, match="every item with a positive weight"):
        sample_negative(rng, {0, 2, 3, 5}, 6, np.cumsum(weights))


def test_titles_come_from_the_title_attribute(dataset):
    titles = item_titles(dataset.catalog)
    assert len(titles) == dataset.n_items and titles[0] == dataset.catalog.attributes["title"][0]
