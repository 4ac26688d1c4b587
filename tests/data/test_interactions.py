"""Interactions: construction from pairs, popularity, splits and cold-target selection."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from venomkit.data import (
    Interactions,
    cold_items,
    leave_one_out_split,
    make_split,
    ratio_split,
    select_cold_targets,
)


def _random_interactions(seed: int = 0, n_users: int = 40, n_items: int = 30, n: int = 600, timestamps: bool = True):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    # Long-tailed item choice so that cold items exist.
    items = np.minimum(rng.geometric(0.08, n) - 1, n_items - 1)
    stamps = rng.permutation(n).astype(np.float64) if timestamps else None
    return users, items, Interactions.from_pairs(users, items, n_users, n_items, timestamps=stamps), stamps


def _pair_set(inter: Interactions) -> set[tuple[int, int]]:
    users, items = inter.pairs()
    return set(zip(users.tolist(), items.tolist()))


def test_from_pairs_merges_repeats_keeping_the_latest_timestamp():
    users = [0, 0, 1, 0, 1]
    items = [2, 2, 0, 2, 1]
    stamps = [10.0, 30.0, 5.0, 20.0, 0.0]
    inter = Interactions.from_pairs(users, items, 2, 3, timestamps=stamps)
    assert inter.nnz == 3
    assert inter.matrix.toarray().tolist() == [[0, 0, 1], [1, 1, 0]]
    dense_ts = inter.timestamps.toarray()
    assert dense_ts[0, 2] == 30.0  # max of 10, 30, 20 (not their sum)
    assert dense_ts[1, 0] == 5.0
    # A timestamp of 0 is stored explicitly, so the pattern matches the matrix.
    assert inter.timestamps.nnz == inter.nnz
    # The row order of the input does not matter.
    perm = [4, 3, 2, 1, 0]
    again = Interactions.from_pairs(np.array(users)[perm], np.array(items)[perm], 2, 3, np.array(stamps)[perm])
    assert (again.timestamps != inter.timestamps).nnz == 0


def test_from_pairs_validates_ranges_and_lengths():
    with pytest.raises(ValueError, match="user index"):
        Interactions.from_pairs([0, 3], [0, 1], 3, 2)
    with pytest.raises(ValueError, match="item index"):
        Interactions.from_pairs([0, 1], [0, 2], 3, 2)
    with pytest.raises(ValueError, match="timestamps"):
        Interactions.from_pairs([0, 1], [0, 1], 3, 2, timestamps=[1.0])


def test_interactions_do_not_binarise_the_callers_matrix_and_check_timestamp_pattern():
    matrix = sp.csr_matrix(np.array([[0, 3.0], [2.0, 0]], dtype=np.float32))
    inter = Interactions(matrix)
    assert matrix.data.tolist() == [3.0, 2.0]
    assert inter.matrix.data.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="sparsity pattern"):
        Interactions(matrix, timestamps=sp.csr_matrix(np.array([[1.0, 0], [0, 0]])))


def test_popularity_equals_a_naive_count():
    users, items, inter, _ = _random_interactions(seed=1)
    unique_pairs = set(zip(users.tolist(), items.tolist()))
    naive = Counter(item for _, item in unique_pairs)
    assert inter.popularity().tolist() == [naive.get(i, 0) for i in range(inter.n_items)]
    assert inter.user_degree().sum() == len(unique_pairs) == inter.nnz


@pytest.mark.parametrize("method", ["ratio", "loo"])
def test_splits_are_deterministic_disjoint_and_cover_everything(method):
    _, _, inter, _ = _random_interactions(seed=2)
    split = make_split(inter, method, seed=5)
    again = make_split(inter, method, seed=5)
    parts = [_pair_set(split.train), _pair_set(split.valid), _pair_set(split.test)]
    assert parts == [_pair_set(again.train), _pair_set(again.valid), _pair_set(again.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == _pair_set(inter)
    for part in (split.train, split.valid, split.test):
        assert part.matrix.shape == inter.matrix.shape
        assert part.timestamps is not None and part.timestamps.nnz == part.nnz


def test_ratio_split_proportions_and_seed_dependence():
    _, _, inter, _ = _random_interactions(seed=3, n=1500)
    split = ratio_split(inter, seed=0)
    assert abs(split.train.nnz / inter.nnz - 0.8) < 0.03
    assert abs(split.test.nnz / inter.nnz - 0.1) < 0.03
    other = ratio_split(inter, seed=1)
    assert _pair_set(other.test) != _pair_set(split.test)
    with pytest.raises(ValueError, match="ratios"):
        ratio_split(inter, ratios=(0.5, 0.2, 0.2))


def test_leave_one_out_holds_out_the_latest_interactions():
    _, _, inter, _ = _random_interactions(seed=4)
    split = leave_one_out_split(inter)
    ts = inter.timestamps.toarray()
    test, valid = split.test.matrix.toarray(), split.valid.matrix.toarray()
    for u in range(inter.n_users):
        items = inter.items_of(u)
        if len(items) < 3:
            assert test[u].sum() == 0 and valid[u].sum() == 0
            continue
        by_time = items[np.argsort(ts[u, items])]
        assert np.flatnonzero(test[u]).tolist() == [by_time[-1]]
        assert np.flatnonzero(valid[u]).tolist() == [by_time[-2]]


def test_leave_one_out_without_timestamps_is_seeded():
    _, _, inter, _ = _random_interactions(seed=5, timestamps=False)
    a, b = leave_one_out_split(inter, seed=0), leave_one_out_split(inter, seed=0)
    assert _pair_set(a.test) == _pair_set(b.test)
    assert _pair_set(leave_one_out_split(inter, seed=1).test) != _pair_set(a.test)
    eligible = int((inter.user_degree() >= 3).sum())
    assert a.test.nnz == eligible == a.valid.nnz


def test_cold_target_selection_respects_the_interaction_bounds():
    _, _, inter, _ = _random_interactions(seed=6, n_items=80)
    train = ratio_split(inter).train
    pop = train.popularity()
    cold = cold_items(train, max_interactions=2)
    assert cold.tolist() == [i for i in range(train.n_items) if pop[i] <= 2]
    targets = select_cold_targets(train, n_targets=3, max_interactions=2, seed=0)
    assert len(set(targets.tolist())) == 3 and np.all(pop[targets] <= 2)
    assert np.array_equal(targets, select_cold_targets(train, 3, max_interactions=2, seed=0))
    assert np.all(np.diff(targets) > 0)
    warm = select_cold_targets(train, 1, max_interactions=10**6, min_interactions=int(pop.max()), seed=0)
    assert pop[warm[0]] == pop.max()
    with pytest.raises(ValueError, match="targets"):
        select_cold_targets(train, n_targets=len(cold) + 1, max_interactions=2)


def test_make_split_rejects_unknown_methods():
    _, _, inter, _ = _random_interactions(seed=7)
    with pytest.raises(ValueError, match="split method"):
        make_split(inter, "temporal")


def test_leave_one_out_is_recboles_and_an_empty_test_split_is_named():
    """RecBole's _split_index_by_leave_one_out: 1 interaction -> train; 2 -> train + test; >= 3 ->
    train + valid + test, by time. A ratio split of one-or-two-purchase logs has no test item:
    training on it is refused with a message that names the data and the way out."""
    import pytest

    from venomkit.data.catalog import Catalog
    from venomkit.data.dataset import Dataset, make_split, require_test_interactions

    users, items = [0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2]
    stamps = [5.0, 9.0, 3.0, 1.0, 7.0, 4.0]
    inter = Interactions.from_pairs(np.array(users), np.array(items), 3, 3, timestamps=np.array(stamps))
    split = make_split(inter, "loo")
    assert split.train.matrix.toarray().tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert split.valid.matrix.toarray().tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert split.test.matrix.toarray().tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    catalog = Catalog(item_ids=["a", "b", "c"], texts=["x", "y", "z"])
    purchases = Dataset("shop-logs", catalog, inter, split=make_split(inter, "ratio"))
    assert purchases.split.test.nnz == 0
    with pytest.raises(ValueError, match=r"dataset 'shop-logs': its split has no test interaction .*--split loo"):
        require_test_interactions(purchases)
    require_test_interactions(Dataset("shop-logs", catalog, inter, split=split))  # leave-one-out tests 2 users
