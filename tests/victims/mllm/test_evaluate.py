"""HR/NDCG/Recall@K of the MLLM ranker equal a naive reference; popularity and random on the same lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from venomkit.victims.mllm.candidates import sampled_candidates
from venomkit.victims.mllm.evaluate import (
    evaluate_ranker, full_catalogue_metrics, paired_difference, random_metrics, rank_metrics, topk_metrics,
)  # fmt: skip


class TableRanker:
    """Scores each candidate from a fixed per-item table (ties on purpose); records what it was shown."""

    max_history = 3

    def __init__(self, table: np.ndarray, texts: list[str]):
        self.table = table
        self.lookup = {t: i for i, t in enumerate(texts)}
        self.calls: list[tuple[list[str], list[str]]] = []

    def score_candidates(self, history, images, texts, batch_size=64):
        self.calls.append((list(history), list(texts)))
        assert len(images) == len(texts)
        index = [self.lookup[t] for t in texts]
        return torch.tensor(self.table[index], dtype=torch.float32)


def _naive(scores_per_user: list[np.ndarray], k: int) -> tuple[float, float]:
    """HR@k, NDCG@k with the positive at index 0, placed AFTER every tied negative (a pessimistic sort)."""
    hits, gains = [], []
    for scores in scores_per_user:
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], 0 if j else 1))
        rank = order.index(0)
        hits.append(1.0 if rank < k else 0.0)
        gains.append(1.0 / math.log2(rank + 2) if rank < k else 0.0)
    return float(np.mean(hits)), float(np.mean(gains))


def test_rank_metrics_equal_the_naive_reference():
    rng = np.random.default_rng(0)
    scores = [rng.integers(0, 6, size=12).astype(float) for _ in range(40)]  # many ties
    ranks = np.array([(s[1:] >= s[0]).sum() for s in scores])
    for k in (1, 3, 5, 12):
        hr, ndcg = _naive(scores, k)
        got = rank_metrics(ranks, [k])
        assert got[f"hr@{k}"] == pytest.approx(hr, abs=1e-12)
        assert got[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-12)
        assert got[f"recall@{k}"] == got[f"hr@{k}"]
    with pytest.raises(ValueError, match="ks"):
        rank_metrics(ranks, [0])


def test_paired_difference_of_identical_rankers_is_zero_with_zero_error():
    ranks = np.array([0, 4, 9, 2, 30])
    assert paired_difference(ranks, ranks, [5], "d_") == {"d_hr@5": 0.0, "d_hr@5_se": 0.0}
    one = paired_difference(np.array([0]), np.array([7]), [5], "")  # one user: no spread to estimate
    assert one == {"hr@5": 1.0, "hr@5_se": 0.0}
    with pytest.raises(ValueError, match="one length"):
        paired_difference(ranks, ranks[:3], [5], "")


def test_evaluate_ranker_on_constructed_scores(dataset):
    lists = sampled_candidates(dataset, n_users=10, n_negatives=10, seed=0)
    table = np.random.default_rng(1).integers(0, 4, size=dataset.n_items).astype(float)
    texts = dataset.catalog.texts
    ranker = TableRanker(table, texts)
    assert len(ranker.lookup) == dataset.n_items  # texts identify items
    got = evaluate_ranker(ranker, dataset, lists=lists, ks=(3, 5), progress=False)
    pop = dataset.split.train.popularity().astype(float)
    for k in (3, 5):
        hr, ndcg = _naive([table[c.items] for c in lists], k)
        assert got[f"hr@{k}"] == pytest.approx(hr) and got[f"ndcg@{k}"] == pytest.approx(ndcg)
        pop_hr, pop_ndcg = _naive([pop[c.items] for c in lists], k)
        assert got[f"popularity_hr@{k}"] == pytest.approx(pop_hr) and got[f"popularity_ndcg@{k}"] == pytest.approx(pop_ndcg)
        assert got[f"random_hr@{k}"] == pytest.approx(k / 11)
        # paired ranker - popularity: the mean of per-user differences is the difference of HRs;
        # its standard error is that of the per-user differences, computed naively here
        diffs = [_naive([table[c.items]], k)[0] - _naive([pop[c.items]], k)[0] for c in lists]
        mean = sum(diffs) / len(diffs)
        se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
        assert got[f"vs_popularity_hr@{k}"] == pytest.approx(hr - pop_hr) == pytest.approx(mean)
        assert got[f"vs_popularity_hr@{k}_se"] == pytest.approx(se)
    assert got["users"] == len(lists) and got["candidates"] == 11
    for (history, shown), cand in zip(ranker.calls, lists):
        assert shown == [texts[i] for i in cand.items]  # positive first, its own text
        train_titles = {dataset.catalog.attributes["title"][i] for i in dataset.split.train.items_of(cand.user)}
        assert 0 < len(history) <= 3 and set(history) <= train_titles


def test_left_out_items_rank_as_if_never_sampled(dataset):
    """``left_out``: each positive ranked among the other negatives equals ranking the shortened list."""
    lists = sampled_candidates(dataset, n_users=12, n_negatives=10, seed=0)
    table = np.random.default_rng(2).integers(0, 4, size=dataset.n_items).astype(float)  # ties on purpose
    left_out = sorted({int(c.negatives[0]) for c in lists[:6]} | {int(lists[7].negatives[3])})
    got = evaluate_ranker(TableRanker(table, dataset.catalog.texts), dataset, lists=lists, ks=(3,), progress=False, left_out=left_out)
    plain = evaluate_ranker(TableRanker(table, dataset.catalog.texts), dataset, lists=lists, ks=(3,), progress=False)
    expected, in_lists = [], 0
    for c in lists:
        kept = [int(n) for n in c.negatives if int(n) not in left_out]
        in_lists += len(c.negatives) - len(kept)
        expected.append(int(sum(table[n] >= table[c.positive] for n in kept)))
    assert got["ranks_without_left_out"] == expected
    assert got["left_out_in_lists"] == in_lists >= 7
    assert got["ranks"] == plain["ranks"] and "ranks_without_left_out" not in plain  # the plain figures are untouched
    assert any(a < b for a, b in zip(expected, got["ranks"]))  # something was really left out


class OrderRanker:
    """Scores by position in the list: the positive (first) wins (sign 1), loses (-1) or ties (0)."""

    max_history = 3

    def __init__(self, sign: float):
        self.sign = sign
        self.texts: list[str] = []

    def score_candidates(self, history, images, texts, batch_size=64):
        self.texts += list(texts)
        return self.sign * -torch.arange(len(texts), dtype=torch.float32)


def test_best_worst_ties_and_image_only(dataset):
    kw = dict(n_users=10, n_negatives=10, ks=(3,), progress=False)
    best = evaluate_ranker(OrderRanker(1.0), dataset, **kw)
    worst = evaluate_ranker(OrderRanker(-1.0), dataset, **kw)
    ties = evaluate_ranker(OrderRanker(0.0), dataset, **kw)
    assert best["hr@3"] == 1.0 and best["ndcg@3"] == 1.0
    assert worst["hr@3"] == 0.0 and ties["hr@3"] == 0.0  # ties count against the positive
    blind = OrderRanker(1.0)
    evaluate_ranker(blind, dataset, image_only=True, **kw)
    assert blind.texts and set(blind.texts) == {""}


def test_random_metrics_match_their_definition():
    got = random_metrics(100, [10, 200])
    assert got["random_hr@10"] == pytest.approx(0.1)
    assert got["random_ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 2) for r in range(10)) / 100)
    assert got["random_hr@200"] == 1.0


def test_topk_metrics_equal_the_recbole_formulas():
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.3, 0.6])
    positives = np.array([False, True, True, False, False, True])  # ranked order: 0, 2, 3, 5, 4, 1
    got = topk_metrics(scores, positives, [2, 4])
    assert got["recall@2"] == pytest.approx(1 / 3) and got["hr@2"] == 1.0
    assert got["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert got["recall@4"] == pytest.approx(2 / 3)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / idcg)
    with pytest.raises(ValueError, match="no positive"):
        topk_metrics(scores, np.zeros(6, dtype=bool), [2])


class ItemIdRanker:
    """Scores every candidate by minus its item index (texts identify items)."""

    max_history = 2

    def __init__(self, texts):
        self.lookup = {t: i for i, t in enumerate(texts)}

    def score_candidates(self, history, images, texts, batch_size=64):
        return -torch.tensor([self.lookup[t] for t in texts], dtype=torch.float32)


def test_full_catalogue_metrics_equal_a_naive_loop(dataset):
    got = full_catalogue_metrics(ItemIdRanker(dataset.catalog.texts), dataset, n_users=5, ks=(5,), progress=False)
    users = [c.user for c in sampled_candidates(dataset, n_users=5, n_negatives=1, seed=0)]
    recalls = []
    for u in users:
        masked = set(dataset.split.train.items_of(u).tolist()) | set(dataset.split.valid.items_of(u).tolist())
        top = [i for i in range(dataset.n_items) if i not in masked][:5]  # lowest indices score highest
        test = set(dataset.split.test.items_of(u).tolist())
        recalls.append(len(test & set(top)) / len(test))
    assert got["users"] == len(users) and got["recall@5"] == pytest.approx(np.mean(recalls))
    assert 0.0 <= got["popularity_recall@5"] <= 1.0 and 0.0 <= got["ndcg@5"] <= 1.0
