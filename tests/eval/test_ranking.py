"""Full-ranking evaluation against naive per-user Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from venomkit.eval.ranking import (
    evaluate_targets,
    full_sort_topk,
    hit_matrix,
    rank_statistics,
    ranking_metrics,
    relative_improvement,
    target_eligibility,
    target_hit_ratio,
    target_ranks,
)

N_USERS, N_ITEMS, DIM = 67, 53, 6


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    user = torch.from_numpy(rng.normal(size=(N_USERS, DIM)))
    item = torch.from_numpy(rng.normal(size=(N_ITEMS, DIM)))
    train = rng.random((N_USERS, N_ITEMS)) < 0.25
    test = (rng.random((N_USERS, N_ITEMS)) < 0.08) & ~train  # disjoint from train, as a real split is
    test[3, :] = False  # a user with no test items (left out of the averages)
    train[5, : N_ITEMS - 4] = True  # a user with only 4 rankable items (fewer than k below)
    return user, item, sp.csr_matrix(train.astype(np.float32)), sp.csr_matrix(test.astype(np.float32))


# ----- naive references: one user at a time, plain Python/numpy --------------------------


def naive_ranking(user, item, train, u):
    scores = (user[u].numpy() @ item.numpy().T).astype(np.float64)
    seen = set(train[u].indices.tolist())
    order = [int(j) for j in np.argsort(-scores, kind="stable") if int(j) not in seen]
    return scores, order


def naive_metrics(user, item, train, test, k):
    recalls, ndcgs, precisions, hits = [], [], [], []
    for u in range(user.shape[0]):
        gt = set(test[u].indices.tolist())
        if not gt:
            continue
        _, order = naive_ranking(user, item, train, u)
        top = order[:k]
        found = [j in gt for j in top]
        recalls.append(sum(found) / len(gt))
        precisions.append(sum(found) / k)
        hits.append(float(any(found)))
        dcg = sum(1.0 / math.log2(r + 2) for r, f in enumerate(found) if f)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(gt), k)))
        ndcgs.append(dcg / idcg)
    return {
        f"recall@{k}": np.mean(recalls),
        f"ndcg@{k}": np.mean(ndcgs),
        f"precision@{k}": np.mean(precisions),
        f"hit@{k}": np.mean(hits),
    }


# ----- full-sort top-K ------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 5, 16, 1000])
def test_topk_matches_naive_sort(problem, block_size):
    user, item, train, _ = problem
    k = 10
    scores, index = full_sort_topk(user, item, k, exclude=train, block_size=block_size)
    for u in range(N_USERS):
        naive_scores, order = naive_ranking(user, item, train, u)
        expected = order[:k] + [-1] * (k - len(order[:k]))
        assert index[u].tolist() == expected
        valid = index[u] >= 0
        np.testing.assert_allclose(scores[u][valid].numpy(), naive_scores[index[u][valid].numpy()], rtol=1e-12)
        assert torch.isneginf(scores[u][~valid]).all()


def test_training_items_never_in_topk(problem):
    user, item, train, _ = problem
    _, index = full_sort_topk(user, item, 20, exclude=train, block_size=8)
    dense = train.toarray() > 0
    for u in range(N_USERS):
        got = [j for j in index[u].tolist() if j >= 0]
        assert not dense[u, got].any()
        # every rankable item is used before a slot is left empty
        assert len(got) == min(20, N_ITEMS - int(dense[u].sum()))


def test_block_size_and_user_subset_invariance(problem):
    user, item, train, _ = problem
    ref_scores, ref_index = full_sort_topk(user, item, 15, exclude=train, block_size=N_USERS)
    for block_size in (1, 3, 17):
        scores, index = full_sort_topk(user, item, 15, exclude=train, block_size=block_size)
        assert torch.equal(index, ref_index)
        # A GEMM's last bits may depend on the block shape, so scores are compared to rounding.
        torch.testing.assert_close(scores, ref_scores)
    users = torch.tensor([40, 2, 5, 5, 66, 0])
    scores, index = full_sort_topk(user, item, 15, exclude=train, users=users, block_size=4)
    assert torch.equal(index, ref_index[users])
    torch.testing.assert_close(scores, ref_scores[users])


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")  # torch says so on every CSR tensor made
def test_sparse_input_kinds_agree(problem):
    from venomkit.data.interactions import Interactions

    user, item, train, _ = problem
    ref = full_sort_topk(user, item, 7, exclude=train)[1]
    torch_csr = torch.sparse_csr_tensor(
        torch.from_numpy(train.indptr.astype(np.int64)),
        torch.from_numpy(train.indices.astype(np.int64)),
        torch.from_numpy(train.data),
        size=train.shape,
        check_invariants=True,
    )
    for mask in (train.tocoo(), torch_csr, torch_csr.to_sparse_coo(), Interactions(train)):
        assert torch.equal(full_sort_topk(user, item, 7, exclude=mask)[1], ref)
    unmasked = full_sort_topk(user, item, 7)[1]
    assert torch.equal(unmasked, torch.topk(user @ item.T, 7).indices)


def test_topk_argument_errors(problem):
    user, item, train, _ = problem
    with pytest.raises(ValueError, match="k must be"):
        full_sort_topk(user, item, N_ITEMS + 1)
    with pytest.raises(ValueError, match="shape"):
        full_sort_topk(user, item, 5, exclude=train[:10])
    with pytest.raises(ValueError, match="block_size"):
        full_sort_topk(user, item, 5, block_size=0)
    with pytest.raises(ValueError, match="dims"):
        full_sort_topk(user, item[:, :3], 5)
    with pytest.raises(ValueError, match="users"):
        full_sort_topk(user, item, 5, users=[N_USERS])


# ----- hit matrix and RecBole metrics ----------------------------------------------------


def test_hit_matrix_matches_naive(problem):
    user, item, train, test = problem
    users = torch.tensor([1, 4, 9, 30])
    _, index = full_sort_topk(user, item, 12, exclude=train, users=users)
    hits = hit_matrix(index, test, users=users)
    for r, u in enumerate(users.tolist()):
        gt = set(test[u].indices.tolist())
        assert hits[r].tolist() == [j in gt for j in index[r].tolist()]


@pytest.mark.parametrize("block_size", [4, 64])
def test_ranking_metrics_match_naive(problem, block_size):
    user, item, train, test = problem
    ks = (1, 5, 10, 20)
    got = ranking_metrics(user, item, train, test, ks=ks, block_size=block_size)
    assert got["n_users"] == int((np.diff(test.indptr) > 0).sum())
    assert got["n_users"] < N_USERS  # the user without test items is left out
    for k in ks:
        for name, value in naive_metrics(user, item, train, test, k).items():
            assert got[name] == pytest.approx(value, abs=1e-12), name


def test_ndcg_hand_computed():
    # One user, items ranked 0 > 1 > 2 > 3; test items {0, 2}: hits at ranks 0 and 2.
    user = torch.tensor([[1.0]])
    item = torch.tensor([[4.0], [3.0], [2.0], [1.0]])
    test = sp.csr_matrix(np.array([[1, 0, 1, 0]], dtype=np.float32))
    got = ranking_metrics(user, item, None, test, ks=(1, 3))
    assert got["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert got["ndcg@1"] == pytest.approx(1.0)  # ideal DCG over min(|gt|, K) = 1 item
    assert got["recall@1"] == pytest.approx(0.5)
    assert got["precision@3"] == pytest.approx(2 / 3)


def test_ranking_metrics_errors(problem):
    user, item, train, test = problem
    with pytest.raises(ValueError, match="no user has a test item"):
        ranking_metrics(user, item, train, sp.csr_matrix(test.shape, dtype=np.float32))
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(user, item, train, test, ks=(N_ITEMS + 1,))


# ----- target items ------------------------------------------------------------------------


def naive_target_rank(user, item, train, u, t):
    scores = user[u].numpy() @ item.numpy().T
    seen = set(train[u].indices.tolist())
    return sum(1 for j in range(N_ITEMS) if j != t and j not in seen and scores[j] > scores[t])


@pytest.mark.parametrize("block_size", [3, 100])
def test_target_ranks_match_naive(problem, block_size):
    user, item, train, _ = problem
    targets = [0, 17, 17, 52, 8]  # a repeated target gets the same column twice
    ranks = target_ranks(user, item, targets, exclude=train, block_size=block_size)
    assert ranks.shape == (N_USERS, len(targets))
    for u in range(N_USERS):
        order = naive_ranking(user, item, train, u)[1]
        for c, t in enumerate(targets):
            assert ranks[u, c].item() == naive_target_rank(user, item, train, u, t)
            if t in order:  # not a training item of u: the rank is its argsort position
                assert ranks[u, c].item() == order.index(t)


def test_target_ranks_ties_are_optimistic():
    user = torch.tensor([[1.0], [1.0]])
    item = torch.tensor([[2.0], [1.0], [1.0], [1.0], [0.0]])  # items 1, 2, 3 tie
    ranks = target_ranks(user, item, [2, 4, 0], users=[1])
    assert ranks.tolist() == [[1, 4, 0]]  # only strictly higher items count
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    assert target_ranks(user, item, [2], exclude=train).tolist() == [[0], [1]]


def test_target_hit_ratio_matches_naive(problem):
    user, item, train, _ = problem
    targets = [2, 11, 40, 52]
    ks = (1, 5, 20)
    ranks = target_ranks(user, item, targets, exclude=train, block_size=9)
    eligible = target_eligibility(train, targets, N_USERS, N_ITEMS)
    hr = target_hit_ratio(ranks, eligible, ks)
    stats = rank_statistics(ranks, eligible)
    for c, t in enumerate(targets):
        elig_users = [u for u in range(N_USERS) if train[u, t] == 0]
        assert eligible[:, c].sum().item() == len(elig_users)
        naive_ranks = [naive_ranking(user, item, train, u)[1].index(t) for u in elig_users]
        for k in ks:
            shown = [t in naive_ranking(user, item, train, u)[1][:k] for u in elig_users]
            assert hr[f"hr@{k}"][c].item() == pytest.approx(np.mean(shown), abs=1e-12)
        assert stats["mean_rank"][c].item() == pytest.approx(np.mean(naive_ranks))
        assert stats["median_rank"][c].item() == pytest.approx(np.median(naive_ranks))
    combined = evaluate_targets(user, item, targets, train, ks=ks, block_size=9)
    for key in ("hr@1", "hr@5", "hr@20", "mean_rank", "median_rank"):
        torch.testing.assert_close(combined[key], (hr | stats)[key])
    assert combined["n_eligible"].tolist() == eligible.sum(0).tolist()


def test_target_hit_ratio_no_eligible_user_is_nan():
    ranks = torch.tensor([[0, 3], [1, 0]])
    eligible = torch.tensor([[False, True], [False, True]])
    hr = target_hit_ratio(ranks, eligible, ks=(1,))["hr@1"]
    assert math.isnan(hr[0].item()) and hr[1].item() == pytest.approx(0.5)
    stats = rank_statistics(ranks, eligible)
    assert math.isnan(stats["mean_rank"][0].item()) and stats["median_rank"][1].item() == pytest.approx(1.5)


def test_target_arguments_errors(problem):
    user, item, _, _ = problem
    with pytest.raises(ValueError, match="targets"):
        target_ranks(user, item, [N_ITEMS])
    with pytest.raises(ValueError, match="targets"):
        target_ranks(user, item, [])
    with pytest.raises(ValueError, match="ks"):
        target_hit_ratio(torch.zeros(2, 1, dtype=torch.long), ks=(0,))


# ----- relative improvement ------------------------------------------------------------------


def test_relative_improvement_rule():
    assert relative_improvement(0.1, 0.35) == pytest.approx(2.5)
    assert relative_improvement(0.2, 0.1) == pytest.approx(-0.5)
    assert relative_improvement(0.0, 0.05) == math.inf  # from never shown to shown
    assert relative_improvement(0.0, 0.0) == 0.0  # no change
    assert math.isnan(relative_improvement(math.nan, 0.3))
    got = relative_improvement(torch.tensor([0.5, 0.0, 0.0]), torch.tensor([0.5, 0.2, 0.0]))
    assert isinstance(got, torch.Tensor) and got.tolist() == [0.0, math.inf, 0.0]
    arr = relative_improvement(np.array([0.25]), np.array([1.0]))
    assert isinstance(arr, np.ndarray) and arr.tolist() == [3.0]
    with pytest.raises(ValueError, match=">= 0"):
        relative_improvement(-0.1, 0.2)
