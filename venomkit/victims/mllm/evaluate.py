"""Held-out ranking quality of the MLLM ranker: HR@K, NDCG@K, Recall@K (VenomRec's protocol).

Sampled lists (:func:`evaluate_ranker`): each evaluated user's held-out positive is ranked
among ``n_negatives`` (99) sampled never-interacted items
(:func:`~venomkit.victims.mllm.candidates.sampled_candidates`), the history being a seeded
sample of the user's training items. With the 0-based rank ``r`` of the positive (the number
of negatives scoring AT LEAST as high: ties count against it)::

    HR@K = mean_u [r_u < K]       NDCG@K = mean_u [r_u < K] / log2(r_u + 2)

and Recall@K = HR@K (one positive per list). Chance: HR@K = K / (n_negatives + 1). The
popularity ranker (training interaction counts) is scored on the SAME lists; ``image_only``
blanks every candidate text so only the pixels speak. Whether the ranker beats popularity is
read from the paired per-user difference of hits (:func:`paired_difference`): its mean and
standard error, ``vs_popularity_hr@K`` and ``vs_popularity_hr@K_se`` (with 200 users the
unpaired standard error of one HR@10 near 0.6 is about 0.035).

Full catalogue (:func:`full_catalogue_metrics`, optional, C x users forward passes): every item
outside the user's other splits is scored; with the top-K hit vector ``h`` (ties broken by item
index) and ``P`` held-out positives (RecBole's definitions, as ``venomkit.eval.ranking``)::

    Recall@K = sum_{r<K} h_r / P    HR@K = [sum_{r<K} h_r > 0]
    NDCG@K   = (sum_{r<K} h_r / log2(r + 2)) / (sum_{r<min(P, K)} 1 / log2(r + 2))
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from venomkit.progress import progress as progress_bar
from venomkit.victims.mllm.candidates import (
    CandidateList, full_catalogue_candidates, item_titles, sample_history, sampled_candidates,
)  # fmt: skip
from venomkit.victims.mllm.finetune import catalog_images


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of cut-offs >= 1, got {list(ks)}")
    return ks


def rank_metrics(ranks: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """HR@K, NDCG@K and Recall@K from (U,) 0-based ranks of ONE positive per user (see the module docstring)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {}
    for k in _check_ks(ks):
        hit = ranks < k
        out[f"{prefix}hr@{k}"] = float(hit.mean())
        out[f"{prefix}ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2), 0.0).mean())
        out[f"{prefix}recall@{k}"] = out[f"{prefix}hr@{k}"]
    return out


def paired_difference(ranks: np.ndarray, other_ranks: np.ndarray, ks: Sequence[int], prefix: str) -> dict[str, float]:
    """Mean and standard error of the per-user difference of hits at each K: ``ranks`` minus ``other_ranks``.

    Both are (U,) 0-based ranks of the same users' positives in the same lists; pairing by user
    removes the users both rankers find easy or hard, so the standard error (sample standard
    deviation / sqrt(U), 0 for one user) is that of the comparison, not of either HR alone.
    """
    ranks, other_ranks = np.asarray(ranks), np.asarray(other_ranks)
    if ranks.shape != other_ranks.shape or ranks.ndim != 1:
        raise ValueError(f"paired_difference needs two (U,) rank vectors of one length, got {ranks.shape} and {other_ranks.shape}")
    out: dict[str, float] = {}
    for k in _check_ks(ks):
        mean, se = mean_and_standard_error((ranks < k).astype(np.float64) - (other_ranks < k).astype(np.float64))
        out[f"{prefix}hr@{k}"], out[f"{prefix}hr@{k}_se"] = mean, se
    return out


def mean_and_standard_error(values) -> tuple[float, float]:
    """Mean of (N,) values and its standard error, sample standard deviation / sqrt(N) (0 for N = 1)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("mean_and_standard_error needs at least one value")
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
    return float(values.mean()), se


def random_metrics(n_candidates: int, ks: Sequence[int]) -> dict[str, float]:
    """Expected HR@K and NDCG@K of a ranker that orders a list of ``n_candidates`` at random."""
    out: dict[str, float] = {}
    for k in _check_ks(ks):
        top = min(k, n_candidates)
        out[f"random_hr@{k}"] = top / n_candidates
        out[f"random_ndcg@{k}"] = float(sum(1.0 / np.log2(r + 2) for r in range(top)) / n_candidates)
    return out


def positive_ranks(scores: np.ndarray, counted: np.ndarray | None = None) -> np.ndarray:
    """(U,) rank of column 0 in each row of (U, C) scores: how many other columns score >= it.

    ``counted`` (optional (U, C - 1) bool): only those negatives count (the others are left out
    of the list, as if never sampled).
    """
    scores = np.asarray(scores)
    above = scores[:, 1:] >= scores[:, :1]
    if counted is not None:
        above = above & np.asarray(counted, dtype=bool)
    return above.sum(axis=1)


def evaluate_ranker(
    ranker,
    dataset,
    *,
    lists: Sequence[CandidateList] | None = None,
    n_users: int = 200,
    n_negatives: int = 99,
    ks: Sequence[int] = (10,),
    seed: int = 0,
    image_only: bool = False,
    split: str = "test",
    batch_size: int = 64,
    progress: bool = True,
    left_out: Collection[int] = (),
) -> dict[str, Any]:
    """HR/NDCG/Recall@K of ``ranker`` and of popularity over sampled candidate lists.

    Args:
        ranker: anything with ``score_candidates(history_titles, images, texts, batch_size=)``
            returning (C,) scores and a ``max_history`` (an :class:`MLLMRanker`).
        lists: candidate lists to rank (default: ``sampled_candidates(dataset, n_users=,
            n_negatives=, split=, seed=)``).
        ks: cut-offs; image_only: blank candidate texts; split: the held-out split.
        left_out: items (e.g. a poisoning run's targets) whose place as a NEGATIVE is also
            measured away: ``ranks_without_left_out`` ranks each positive among the other
            negatives only, from the same scores (no second forward).

    Returns:
        ``{hr@K, ndcg@K, recall@K, popularity_hr@K, popularity_ndcg@K, popularity_recall@K,
        random_hr@K, random_ndcg@K, vs_popularity_hr@K, vs_popularity_hr@K_se, users,
        candidates, ranks}``: floats in [0, 1] (the ``vs_popularity`` pair: the paired difference
        ranker - popularity of HR@K and its standard error, in [-1, 1]), counts, and ``ranks``
        the (U,) list of each list's positive's 0-based rank (for paired comparisons of two
        rankers on the same lists, :func:`paired_difference`); with ``left_out``, also
        ``ranks_without_left_out`` and ``left_out_in_lists`` (how many of the lists' negatives
        are left-out items).
    """
    ks = _check_ks(ks)
    if lists is None:
        lists = sampled_candidates(dataset, n_users=n_users, n_negatives=n_negatives, split=split, seed=seed)
    lists = list(lists)
    if not lists:
        raise ValueError("evaluate_ranker: no candidate list to rank")
    sizes = {len(c.negatives) for c in lists}
    if len(sizes) != 1:
        raise ValueError(f"evaluate_ranker: candidate lists have different lengths {sorted(sizes)}")
    titles = item_titles(dataset.catalog)
    pop = dataset.split.train.popularity().astype(np.float64)
    hist_rng = np.random.default_rng(seed + 1)
    train = dataset.split.train
    rows, pop_rows = [], []
    what = "image-only " if image_only else ""
    for cand in progress_bar(lists, desc=f"rank eval {what}".strip(), unit="user", leave=False, enabled=progress):
        items = cand.items
        history = [titles[i] for i in sample_history(hist_rng, train.items_of(cand.user), -1, ranker.max_history)]
        texts = ["" if image_only else dataset.catalog.texts[i] for i in items]
        scores = ranker.score_candidates(history, catalog_images(dataset.catalog, items), texts, batch_size=batch_size)
        rows.append(np.asarray(scores.detach().float().cpu().numpy(), dtype=np.float64))
        pop_rows.append(pop[items])
    scores = np.stack(rows)
    ranks, pop_ranks = positive_ranks(scores), positive_ranks(np.stack(pop_rows))
    without = {}
    if len(left_out):
        kept = ~np.isin(np.stack([c.negatives for c in lists]), np.asarray(list(left_out), dtype=np.int64))
        without = {"ranks_without_left_out": [int(r) for r in positive_ranks(scores, counted=kept)],
                   "left_out_in_lists": int((~kept).sum())}
    return {
        **rank_metrics(ranks, ks),
        **rank_metrics(pop_ranks, ks, prefix="popularity_"),
        **random_metrics(sizes.pop() + 1, ks),
        **paired_difference(ranks, pop_ranks, ks, prefix="vs_popularity_"),
        "users": len(lists),
        "candidates": len(lists[0].negatives) + 1,
        "ranks": [int(r) for r in ranks],
        **without,
    }


def topk_metrics(scores: np.ndarray, positives: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
    """Recall/HR/NDCG@K of ONE user's (C,) candidate ``scores`` with a (C,) bool ``positives`` mask.

    Ties are broken by candidate position (a stable sort), as ``torch.topk`` on CPU does in practice.
    """
    ks = _check_ks(ks)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    if n_pos == 0:
        raise ValueError("topk_metrics: the user has no positive among the candidates")
    hits = positives[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]
    discounts = 1.0 / np.log2(np.arange(len(hits)) + 2)
    out = {}
    for k in ks:
        top = hits[:k]
        out[f"{prefix}recall@{k}"] = float(top.sum() / n_pos)
        out[f"{prefix}hr@{k}"] = float(top.any())
        out[f"{prefix}ndcg@{k}"] = float((top * discounts[: len(top)]).sum() / discounts[: min(n_pos, k)].sum())
    return out


def full_catalogue_metrics(
    ranker,
    dataset,
    *,
    users: Sequence[int] | None = None,
    n_users: int = 50,
    ks: Sequence[int] = (10, 20),
    seed: int = 0,
    split: str = "test",
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Recall/HR/NDCG@K over the full catalogue (see the module docstring), ranker and popularity.

    ``users`` default to a seeded sample of ``n_users`` users with held-out items (the same
    users as :func:`sampled_candidates` with the same seed). Costs ~n_items forward passes per
    user: on CPU keep ``n_users`` small.
    """
    ks = _check_ks(ks)
    if users is None:
        users = [c.user for c in sampled_candidates(dataset, n_users=n_users, n_negatives=1, split=split, seed=seed)]
    titles = item_titles(dataset.catalog)
    pop = dataset.split.train.popularity().astype(np.float64)
    hist_rng = np.random.default_rng(seed + 1)
    train = dataset.split.train
    per_user: list[dict[str, float]] = []
    for u in progress_bar(list(users), desc="full-catalogue eval", unit="user", leave=False, enabled=progress):
        candidates, positives = full_catalogue_candidates(dataset, int(u), split)
        if len(positives) == 0:
            continue
        history = [titles[i] for i in sample_history(hist_rng, train.items_of(int(u)), -1, ranker.max_history)]
        texts = [dataset.catalog.texts[i] for i in candidates]
        scores = ranker.score_candidates(history, catalog_images(dataset.catalog, candidates), texts, batch_size=batch_size)
        mask = np.isin(candidates, positives)
        per_user.append({
            **topk_metrics(scores.detach().float().cpu().numpy(), mask, ks),
            **topk_metrics(pop[candidates], mask, ks, prefix="popularity_"),
        })  # fmt: skip
    if not per_user:
        raise ValueError(f"full_catalogue_metrics: none of the users has a held-out item in split {split!r}")
    out: dict[str, Any] = {key: float(np.mean([m[key] for m in per_user])) for key in per_user[0]}
    out["users"] = len(per_user)
    return out


__all__ = [
    "evaluate_ranker", "full_catalogue_metrics", "mean_and_standard_error", "paired_difference", "positive_ranks", "random_metrics", "rank_metrics", "topk_metrics",
]  # fmt: skip
