"""Full-ranking evaluation: blockwise full-sort top-K, Recall/NDCG/Precision@K, target HR@K, RI.

Scores are always ``user_emb @ item_emb.T`` (every victim folds its biases into extra
columns). For each block of users the evaluation does one matmul, sets the user's training
items to ``-inf`` with one ``index_fill_`` on the flattened block (flat positions come
straight from the CSR arrays, so there is no per-user Python loop), and one ``torch.topk``.
Memory is bounded by ``block_size x n_items`` scores.

Metric definitions follow RecBole (``recbole/evaluator/metrics.py``, collector style: one
top-K at the largest K, a boolean hit matrix, cumulative sums give every smaller K):

* Recall@K    = |hits in top-K| / |test items of the user|
* Precision@K = |hits in top-K| / K
* Hit@K       = 1 if the top-K holds at least one test item
* NDCG@K      = DCG@K / IDCG@K with DCG@K = sum_{r<K} hit_r / log2(r + 2) and the ideal DCG
  over min(|test items|, K) leading hits.

Each is averaged over users with at least one test item; users without test items are left
out, as RecBole does.

For target items (promotion attacks) the quantities are per target:

* rank: 0-based position of the target among the user's non-excluded items, computed without a
  full sort (see :func:`target_ranks` for ties);
* HR@K: share of *eligible* users (those who did not interact with the target in training)
  whose top-K holds the target, i.e. ``rank < K``;
* RI = HR_after / HR_before - 1 (UAT-MC, arXiv 2605.06238), with the rule for
  HR_before = 0 documented in :func:`relative_improvement`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from venomkit.progress import progress as progress_bar

SparseLike = Any  # scipy sparse matrix, torch sparse (CSR/COO) tensor, or venomkit Interactions

__all__ = [
    "full_sort_topk",
    "hit_matrix",
    "ranking_metrics",
    "target_ranks",
    "target_eligibility",
    "target_hit_ratio",
    "rank_statistics",
    "evaluate_targets",
    "relative_improvement",
]


# --------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------


def _to_scipy_csr(matrix: SparseLike, shape: tuple[int, int] | None, name: str) -> sp.csr_matrix:
    """Any supported sparse input -> a scipy CSR with sorted, unique, non-zero entries."""
    if hasattr(matrix, "matrix") and sp.issparse(matrix.matrix):
        matrix = matrix.matrix  # venomkit.data.interactions.Interactions
    if isinstance(matrix, torch.Tensor):
        if matrix.layout == torch.sparse_csr:
            m = matrix.detach().cpu()
            matrix = sp.csr_matrix(
                (m.values().numpy(), m.col_indices().numpy(), m.crow_indices().numpy()), shape=tuple(m.shape)
            )
        elif matrix.layout == torch.sparse_coo:
            m = matrix.detach().cpu().coalesce()
            idx = m.indices().numpy()
            matrix = sp.csr_matrix((m.values().numpy(), (idx[0], idx[1])), shape=tuple(m.shape))
        else:
            raise TypeError(f"{name}: expected a sparse tensor (CSR or COO), got layout {matrix.layout}")
    elif sp.issparse(matrix):
        if matrix.format == "csr" and matrix.has_canonical_format and (matrix.data != 0).all():
            if shape is not None and tuple(matrix.shape) != tuple(shape):
                raise ValueError(f"{name}: shape {tuple(matrix.shape)} does not match users x items {tuple(shape)}")
            return matrix  # already sorted, unique and non-zero: read as is, no copy
        matrix = sp.csr_matrix(matrix, copy=True)
    else:
        raise TypeError(f"{name}: expected a scipy sparse matrix, a torch sparse tensor or Interactions, got {type(matrix).__name__}")
    if shape is not None and tuple(matrix.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(matrix.shape)} does not match users x items {tuple(shape)}")
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def _check_embeddings(user_emb: torch.Tensor, item_emb: torch.Tensor) -> None:
    if user_emb.dim() != 2 or item_emb.dim() != 2:
        raise ValueError(f"user_emb and item_emb must be 2-D, got {tuple(user_emb.shape)} and {tuple(item_emb.shape)}")
    if user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError(f"user_emb has {user_emb.shape[1]} dims but item_emb has {item_emb.shape[1]}")
    if user_emb.device != item_emb.device:
        raise ValueError(f"user_emb is on {user_emb.device} but item_emb on {item_emb.device}")


def _user_index(users: torch.Tensor | Sequence[int] | np.ndarray | None, n_users: int, device) -> torch.Tensor | None:
    if users is None:
        return None
    users = torch.as_tensor(users, dtype=torch.long).reshape(-1).to(device)
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= n_users):
        raise ValueError(f"users: indices must lie in [0, {n_users})")
    return users


def _check_block_size(block_size: int) -> None:
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")


class _RowGather:
    """Flat positions ``local_row * n_cols + col`` of a CSR's entries for a block of rows.

    For the contiguous blocks ``[j * block_size, (j + 1) * block_size)`` of all rows this is a
    slice of one array computed once (``local_row = row % block_size``); for an arbitrary list
    of rows the entries are gathered with a repeat_interleave over the row lengths. Either way
    there is no per-row Python loop.
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device, block_size: int | None = None) -> None:
        self.n_cols = matrix.shape[1]
        self.block_size = block_size
        self.indptr = torch.from_numpy(matrix.indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(matrix.indices.astype(np.int64)).to(device)
        self._indptr_cpu = matrix.indptr.astype(np.int64)
        self._flat: torch.Tensor | None = None

    def _all_flat(self) -> torch.Tensor:
        if self._flat is None:
            lengths = self.indptr[1:] - self.indptr[:-1]
            rows = torch.arange(len(lengths), device=self.indptr.device)
            if self.block_size is not None:
                rows %= self.block_size
            self._flat = torch.repeat_interleave(rows * self.n_cols, lengths) + self.indices
        return self._flat

    def contiguous(self, start: int, stop: int) -> torch.Tensor:
        lo, hi = int(self._indptr_cpu[start]), int(self._indptr_cpu[stop])
        if self.block_size is not None:
            if start % self.block_size or stop - start > self.block_size:
                raise AssertionError("contiguous blocks must be aligned to block_size")
            return self._all_flat()[lo:hi]
        return self._all_flat()[lo:hi] - start * self.n_cols

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        if total == 0:
            return torch.empty(0, dtype=torch.long, device=rows.device)
        local_row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths, output_size=total)
        # Position of each entry inside its row: global running index minus the row's offset.
        offsets = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(total, device=rows.device) - offsets[local_row]
        cols = self.indices[starts[local_row] + within]
        return local_row * self.n_cols + cols

    def block(self, start: int, stop: int, rows: torch.Tensor | None) -> torch.Tensor:
        return self.contiguous(start, stop) if rows is None else self.rows(rows)


def _blocks(n: int, block_size: int, progress: bool, desc: str):
    starts = range(0, n, block_size)
    return progress_bar(starts, desc=desc, unit="block", enabled=progress, leave=False)


# --------------------------------------------------------------------------------------------
# Full-sort top-K and the RecBole-style metrics
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def full_sort_topk(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    k: int,
    exclude: SparseLike | None = None,
    users: torch.Tensor | Sequence[int] | None = None,
    block_size: int = 4096,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items for each user over the full catalog, training items excluded.

    Args:
        user_emb: (U, d) user embeddings; scores are ``user_emb @ item_emb.T``.
        item_emb: (I, d) item embeddings on the same device.
        k: list length, 1 <= k <= I.
        exclude: (U, I) sparse mask of items never to recommend (the training interactions),
            as a scipy sparse matrix, a torch sparse CSR/COO tensor or an ``Interactions``;
            ``None`` excludes nothing. Rows are indexed by the global user index.
        users: optional (U',) user indices to evaluate (default all U, in order).
        block_size: users per matmul; peak memory is about ``block_size * I`` scores.
        progress: show a progress bar over blocks.

    Returns:
        ``(scores, indices)``, each (U', k), sorted by decreasing score. A user with fewer than
        ``k`` non-excluded items gets score ``-inf`` and index ``-1`` in the remaining slots.
        Computed under ``no_grad``.
    """
    _check_embeddings(user_emb, item_emb)
    _check_block_size(block_size)
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    if not 1 <= int(k) <= n_items:
        raise ValueError(f"k must be in [1, n_items={n_items}], got {k}")
    device = item_emb.device
    rows_all = _user_index(users, n_users, device)
    n_eval = n_users if rows_all is None else len(rows_all)
    gather = None
    if exclude is not None:
        gather = _RowGather(_to_scipy_csr(exclude, (n_users, n_items), "exclude"), device, block_size=block_size)

    out_scores = torch.empty(n_eval, k, dtype=torch.promote_types(user_emb.dtype, item_emb.dtype), device=device)
    out_index = torch.empty(n_eval, k, dtype=torch.long, device=device)
    item_t = item_emb.t()  # a transposed view: the GEMM reads it without a copy
    # One score buffer reused by every block: a fresh (block x I) allocation per block costs
    # page faults (large CPU allocations are mmap-ed and returned on free) and two live blocks.
    buffer = torch.empty(min(block_size, n_eval), n_items, dtype=out_scores.dtype, device=device)
    for start in _blocks(n_eval, block_size, progress, "full-sort top-k"):
        stop = min(start + block_size, n_eval)
        rows = None if rows_all is None else rows_all[start:stop]
        block_users = user_emb[start:stop] if rows is None else user_emb[rows]
        scores = torch.mm(block_users, item_t, out=buffer[: stop - start])
        if gather is not None:
            scores.view(-1).index_fill_(0, gather.block(start, stop, rows), float("-inf"))
        torch.topk(scores, k, dim=1, largest=True, sorted=True, out=(out_scores[start:stop], out_index[start:stop]))
    out_index.masked_fill_(torch.isneginf(out_scores), -1)
    return out_scores, out_index


def hit_matrix(
    topk_indices: torch.Tensor, ground_truth: SparseLike, users: torch.Tensor | Sequence[int] | None = None
) -> torch.Tensor:
    """Boolean (U', K) matrix: is the r-th recommended item of each user a ground-truth item?

    ``topk_indices`` (U', K) as returned by :func:`full_sort_topk` (``-1`` never hits);
    ``ground_truth`` is (U, I) sparse, and row r of ``topk_indices`` belongs to user
    ``users[r]`` (default: user r). Vectorised as one ``torch.isin`` over flat
    ``row * I + item`` keys.
    """
    if topk_indices.dim() != 2:
        raise ValueError(f"topk_indices must be (U', K), got shape {tuple(topk_indices.shape)}")
    device = topk_indices.device
    n_rows = topk_indices.shape[0]
    gt = _to_scipy_csr(ground_truth, None, "ground_truth")
    n_items = gt.shape[1]
    rows = _user_index(users, gt.shape[0], device)
    if rows is None:
        if n_rows != gt.shape[0]:
            raise ValueError(f"topk_indices has {n_rows} rows but ground_truth has {gt.shape[0]} users; pass users=")
    elif len(rows) != n_rows:
        raise ValueError(f"users has {len(rows)} entries but topk_indices has {n_rows} rows")
    gather = _RowGather(gt, device)
    gt_keys = gather.contiguous(0, n_rows) if rows is None else gather.rows(rows)
    local = torch.arange(n_rows, device=device).unsqueeze(1)
    keys = torch.where(topk_indices >= 0, local * n_items + topk_indices, torch.full_like(topk_indices, -1))
    return torch.isin(keys, gt_keys)


def ranking_metrics(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    train: SparseLike | None,
    test: SparseLike,
    ks: Sequence[int] = (10, 20, 50),
    block_size: int = 4096,
    progress: bool = False,
) -> dict[str, float]:
    """Recall@K, NDCG@K, Precision@K and Hit@K (RecBole definitions, module docstring).

    ``train`` (U, I) items are excluded from the ranking (``None``: nothing excluded);
    ``test`` (U, I) is the ground truth. One top-K at ``max(ks)`` serves every K.
    Returns ``{"recall@10": ..., "ndcg@10": ..., "precision@10": ..., "hit@10": ..., ...,
    "n_users": number of users averaged over}``.
    """
    _check_embeddings(user_emb, item_emb)
    ks = sorted({int(k) for k in ks})
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    if not ks or ks[0] < 1 or ks[-1] > n_items:
        raise ValueError(f"ks must be non-empty integers in [1, n_items={n_items}], got {ks}")
    test_csr = _to_scipy_csr(test, (n_users, n_items), "test")
    n_gt = np.diff(test_csr.indptr)
    users = np.flatnonzero(n_gt > 0)
    if users.size == 0:
        raise ValueError("test: no user has a test item")
    device = item_emb.device
    users_t = torch.from_numpy(users).to(device)
    _, topk = full_sort_topk(user_emb, item_emb, ks[-1], exclude=train, users=users_t, block_size=block_size, progress=progress)
    hits = hit_matrix(topk, test_csr, users=users_t).double()
    n_gt_u = torch.from_numpy(n_gt[users]).to(device=device, dtype=torch.float64)
    n_hits = hits.cumsum(1)
    discount = 1.0 / torch.log2(torch.arange(2, ks[-1] + 2, device=device, dtype=torch.float64))
    dcg = (hits * discount).cumsum(1)
    ideal = discount.cumsum(0)  # ideal[j] = IDCG with j + 1 relevant items in the list

    result: dict[str, float] = {}
    for k in ks:
        found = n_hits[:, k - 1]
        idcg = ideal[torch.clamp(n_gt_u, max=k).long() - 1]
        result[f"recall@{k}"] = float((found / n_gt_u).mean())
        result[f"ndcg@{k}"] = float((dcg[:, k - 1] / idcg).mean())
        result[f"precision@{k}"] = float((found / k).mean())
        result[f"hit@{k}"] = float((found > 0).double().mean())
    result["n_users"] = int(users.size)
    return result


# --------------------------------------------------------------------------------------------
# Target items: ranks without a full sort, HR@K, rank statistics, RI
# --------------------------------------------------------------------------------------------


def _target_index(targets: torch.Tensor | Sequence[int] | np.ndarray, n_items: int, device) -> torch.Tensor:
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1).to(device)
    if targets.numel() == 0:
        raise ValueError("targets: at least one target item is needed")
    if int(targets.min()) < 0 or int(targets.max()) >= n_items:
        raise ValueError(f"targets: item indices must lie in [0, {n_items})")
    return targets


@torch.no_grad()
def target_ranks(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    exclude: SparseLike | None = None,
    users: torch.Tensor | Sequence[int] | None = None,
    block_size: int = 4096,
    progress: bool = False,
    target_table: torch.Tensor | None = None,
) -> torch.Tensor:
    """0-based rank of each target item in each user's full ranking, without sorting.

    ``rank[u, t]`` = number of items ``j != targets[t]`` that are not excluded for user ``u``
    and score *strictly* higher than the target: ties are resolved in the target's favour
    (optimistic rank), so ``rank < K`` means "in the top-K" whenever scores are distinct.
    (``torch.topk`` orders exact ties arbitrarily; with float embeddings exact ties are rare.)
    The target's own score is its raw score even when the user interacted with it in
    training, so a rank is defined for every (user, target) pair; use
    :func:`target_eligibility` to leave those users out.

    ``target_table`` (I, d), optional: the item table the TARGETS' scores come from, while
    every other item scores from ``item_emb``. This ranks several targets at once, each as
    if only its own row had changed (an attack's "after" with the other targets clean), for
    victims whose item rows do not depend on each other. The targets' scores are read from
    the full ``(U', I)`` product with that table, the same product a one-target evaluation
    computes, so the ranks are bit for bit those of ranking each target alone.

    Per user block the T target scores are sorted (T is small) and every item score is
    placed among them with one batched ``searchsorted``; a histogram of those positions and a
    suffix sum give the counts, in O(block * I * log T) time and about twice the memory of
    :func:`full_sort_topk` (an int32 position per score). On CPU this costs several times a
    full-sort top-K (``tests/benchmarks/ranking.py --targets 50`` measures it); on a GPU it is
    cheap.

    Returns (U', T) int64 ranks, rows in the order of ``users`` (default all users).
    """
    _check_embeddings(user_emb, item_emb)
    _check_block_size(block_size)
    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    device = item_emb.device
    targets = _target_index(targets, n_items, device)
    rows_all = _user_index(users, n_users, device)
    n_eval = n_users if rows_all is None else len(rows_all)
    gather = None
    if exclude is not None:
        gather = _RowGather(_to_scipy_csr(exclude, (n_users, n_items), "exclude"), device, block_size=block_size)
    n_targets = len(targets)

    ranks = torch.empty(n_eval, n_targets, dtype=torch.long, device=device)
    item_t = item_emb.t()
    buffer = torch.empty(min(block_size, n_eval), n_items, dtype=torch.promote_types(user_emb.dtype, item_emb.dtype), device=device)
    for start in _blocks(n_eval, block_size, progress, "target ranks"):
        stop = min(start + block_size, n_eval)
        b = stop - start
        rows = None if rows_all is None else rows_all[start:stop]
        block_users = user_emb[start:stop] if rows is None else user_emb[rows]
        scores = torch.mm(block_users, item_t, out=buffer[:b])
        if target_table is None:
            target_scores = scores[:, targets]  # raw scores, taken before masking
        else:
            target_scores = torch.mm(block_users, target_table.t())[:, targets]
        if gather is not None:
            # -inf is never strictly greater than a finite target score, so excluded items never count.
            scores.view(-1).index_fill_(0, gather.block(start, stop, rows), float("-inf"))
        sorted_ts, order = torch.sort(target_scores, dim=1)
        # pos[u, j] = number of target scores strictly below item j's score.
        pos = torch.searchsorted(sorted_ts.contiguous(), scores, right=False, out_int32=b * (n_targets + 1) < 2**31)
        pos += torch.arange(b, device=device, dtype=pos.dtype).unsqueeze(1) * (n_targets + 1)
        hist = torch.bincount(pos.view(-1), minlength=b * (n_targets + 1)).view(b, n_targets + 1)
        # Items above the j-th smallest target score are those with pos > j: a suffix sum.
        above = hist.flip(1).cumsum(1).flip(1)[:, 1:]
        ranks[start:stop].scatter_(1, order, above)
        if target_table is not None:
            # Each target's own clean row was counted when it beats the target's new score.
            ranks[start:stop] -= (scores[:, targets] > target_scores).long()
        del pos, hist, above  # free the (block x I) positions before the next block
    return ranks


def target_eligibility(
    exclude: SparseLike | None,
    targets: torch.Tensor | Sequence[int],
    n_users: int,
    n_items: int,
    users: torch.Tensor | Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(U', T) bool: True where the user did NOT interact with the target in training.

    These are the users HR@K is averaged over (a user who already bought the item is not
    someone a promotion attack can win).
    """
    targets_t = _target_index(targets, n_items, "cpu")
    rows = _user_index(users, n_users, "cpu")
    n_eval = n_users if rows is None else len(rows)
    if exclude is None:
        return torch.ones(n_eval, len(targets_t), dtype=torch.bool, device=device)
    csr = _to_scipy_csr(exclude, (n_users, n_items), "exclude")
    if rows is not None:
        csr = csr[rows.numpy()]
    seen = csr[:, targets_t.numpy()].toarray() != 0
    return torch.from_numpy(~seen).to(device)


def target_hit_ratio(
    ranks: torch.Tensor, eligible: torch.Tensor | None = None, ks: Sequence[int] = (5, 10, 20, 50)
) -> dict[str, torch.Tensor]:
    """HR@K per target: share of eligible users whose top-K holds it (``rank < K``).

    ``ranks`` (U', T) from :func:`target_ranks`; ``eligible`` (U', T) bool from
    :func:`target_eligibility` (default: every user). Returns ``{"hr@K": (T,) float64}``;
    a target without eligible users gets NaN.
    """
    if ranks.dim() != 2:
        raise ValueError(f"ranks must be (U', T), got shape {tuple(ranks.shape)}")
    if eligible is None:
        eligible = torch.ones_like(ranks, dtype=torch.bool)
    if eligible.shape != ranks.shape:
        raise ValueError(f"eligible has shape {tuple(eligible.shape)} but ranks {tuple(ranks.shape)}")
    eligible = eligible.to(ranks.device)
    n_eligible = eligible.sum(0).double()
    out: dict[str, torch.Tensor] = {}
    for k in sorted({int(k) for k in ks}):
        if k < 1:
            raise ValueError(f"ks must be >= 1, got {k}")
        hits = ((ranks < k) & eligible).sum(0).double()
        out[f"hr@{k}"] = torch.where(n_eligible > 0, hits / n_eligible.clamp(min=1), torch.full_like(hits, math.nan))
    return out


def rank_statistics(ranks: torch.Tensor, eligible: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean and median 0-based rank per target over eligible users: ``{"mean_rank", "median_rank"}``.

    Each is (T,) float64; the median of an even count is the mean of the two middle ranks
    (numpy convention); NaN for a target without eligible users.
    """
    if eligible is None:
        eligible = torch.ones_like(ranks, dtype=torch.bool)
    values = ranks.detach().cpu().double().numpy()
    values = np.where(eligible.cpu().numpy(), values, np.nan)
    empty = np.isnan(values).all(axis=0)
    values[:, empty] = 0.0  # nanmean/nanmedian would warn on an all-NaN column
    mean = np.nanmean(values, axis=0)
    median = np.nanmedian(values, axis=0)
    mean[empty] = np.nan
    median[empty] = np.nan
    return {"mean_rank": torch.from_numpy(mean), "median_rank": torch.from_numpy(median)}


def evaluate_targets(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    train: SparseLike | None,
    ks: Sequence[int] = (5, 10, 20, 50),
    users: torch.Tensor | Sequence[int] | None = None,
    block_size: int = 4096,
    progress: bool = False,
    target_table: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Everything a promotion attack reports per target, from one pass over the users.

    Returns ``{"hr@K": (T,), "mean_rank": (T,), "median_rank": (T,), "n_eligible": (T,)}``
    (training items of each user excluded from the ranking; users who interacted with a
    target in training left out of that target's figures). ``target_table``: see
    :func:`target_ranks`.
    """
    ranks = target_ranks(user_emb, item_emb, targets, exclude=train, users=users, block_size=block_size, progress=progress,
                         target_table=target_table)
    eligible = target_eligibility(train, targets, user_emb.shape[0], item_emb.shape[0], users=users, device=ranks.device)
    out = target_hit_ratio(ranks, eligible, ks)
    out.update(rank_statistics(ranks, eligible))
    out["n_eligible"] = eligible.sum(0).cpu()
    return out


def relative_improvement(hr_before, hr_after):
    """RI = HR_after / HR_before - 1 (UAT-MC, arXiv 2605.06238), elementwise.

    Rule when ``HR_before == 0`` (the ratio is undefined there): RI is ``+inf`` if
    ``HR_after > 0`` (the attack took the target from never shown to shown) and ``0.0`` if
    ``HR_after == 0`` (no change). NaN in either input gives NaN. Because of the ``+inf``
    case, report the RI of mean HRs over targets (as UAT-MC does) rather than the mean of
    per-target RIs.

    Accepts Python floats (returns a float), numpy arrays or torch tensors (returns the same
    kind, float64).
    """
    is_torch = isinstance(hr_before, torch.Tensor) or isinstance(hr_after, torch.Tensor)
    scalar = np.isscalar(hr_before) and np.isscalar(hr_after)
    before = np.asarray(hr_before.detach().cpu() if isinstance(hr_before, torch.Tensor) else hr_before, dtype=np.float64)
    after = np.asarray(hr_after.detach().cpu() if isinstance(hr_after, torch.Tensor) else hr_after, dtype=np.float64)
    if np.any(before < 0) or np.any(after < 0):
        raise ValueError("relative_improvement: hit ratios must be >= 0")
    before, after = np.broadcast_arrays(before, after)
    ri = np.empty(before.shape, dtype=np.float64)
    nonzero = before > 0
    np.divide(after, before, out=ri, where=nonzero)
    ri[nonzero] -= 1.0
    ri[~nonzero] = np.where(after[~nonzero] > 0, np.inf, 0.0)
    ri[np.isnan(before) | np.isnan(after)] = np.nan
    if scalar:
        return float(ri)
    if is_torch:
        return torch.from_numpy(ri)
    return ri
