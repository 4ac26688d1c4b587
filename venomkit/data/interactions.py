"""User-item interactions (implicit feedback, CSR), splits, popularity and cold targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from venomkit.config import check_int


@dataclass
class Interactions:
    """Implicit feedback as a binary users x items CSR matrix.

    ``timestamps`` (optional, same sparsity pattern) orders each user's history for the
    leave-one-out split; without it, leave-one-out holds out a seeded random item.
    """

    matrix: sp.csr_matrix
    timestamps: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        # copy=True: the caller's matrix must not be binarised in place.
        self.matrix = sp.csr_matrix(self.matrix, dtype=np.float32, copy=True)
        self.matrix.sum_duplicates()
        self.matrix.data[:] = 1.0
        self.matrix.sort_indices()
        if self.timestamps is not None:
            self.timestamps = sp.csr_matrix(self.timestamps, dtype=np.float64, copy=True)
            self.timestamps.sort_indices()
            # The splits read timestamps.data aligned with matrix.data: the patterns must match
            # (a timestamp of 0 must be stored explicitly, not dropped as a sparse zero).
            same = (
                self.timestamps.shape == self.matrix.shape
                and np.array_equal(self.timestamps.indptr, self.matrix.indptr)
                and np.array_equal(self.timestamps.indices, self.matrix.indices)
            )
            if not same:
                raise ValueError("Interactions: timestamps must have exactly the sparsity pattern of the interaction matrix")

    @classmethod
    def from_pairs(
        cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, timestamps: np.ndarray | None = None
    ) -> "Interactions":
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"user index out of range [0, {n_users})")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item index out of range [0, {n_items})")
        if len(users) != len(items):
            raise ValueError(f"{len(users)} users for {len(items)} items")
        ts = None
        if timestamps is not None:
            stamps = np.asarray(timestamps, dtype=np.float64)
            if len(stamps) != len(users):
                raise ValueError(f"{len(stamps)} timestamps for {len(users)} interactions")
            # A repeated (user, item) pair is one interaction whose time is its LATEST occurrence:
            # sort by (user, item, time) and keep the last row of each pair.
            order = np.lexsort((stamps, items, users))
            users, items, stamps = users[order], items[order], stamps[order]
            last = np.ones(len(users), dtype=bool)
            if len(users) > 1:
                last[:-1] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
            users, items, stamps = users[last], items[last], stamps[last]
            # Built from unique pairs, so coo -> csr sums nothing and keeps explicit zeros.
            ts = sp.coo_matrix((stamps, (users, items)), shape=(n_users, n_items)).tocsr()
        matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
        return cls(matrix, ts)

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) index arrays of every interaction, in CSR order."""
        coo = self.matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)

    def items_of(self, user: int) -> np.ndarray:
        start, end = self.matrix.indptr[user], self.matrix.indptr[user + 1]
        return self.matrix.indices[start:end]

    def popularity(self) -> np.ndarray:
        """Number of interactions per item, shape (n_items,)."""
        return np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)

    def user_degree(self) -> np.ndarray:
        return np.diff(self.matrix.indptr).astype(np.int64)

    def to_torch_csr(self) -> torch.Tensor:
        m = self.matrix
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            check_invariants=False,  # a scipy CSR matrix's arrays: valid by construction
        )

    def _subset(self, keep: np.ndarray) -> "Interactions":
        coo = self.matrix.tocoo()
        rows, cols = coo.row[keep], coo.col[keep]
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=self.matrix.shape)
        ts = None
        if self.timestamps is not None:
            tcoo = self.timestamps.tocoo()
            ts = sp.csr_matrix((tcoo.data[keep], (rows, cols)), shape=self.matrix.shape)
        return Interactions(matrix, ts)


@dataclass
class Split:
    """Train / valid / test interactions over the same users and items."""

    train: Interactions
    valid: Interactions
    test: Interactions


def leave_one_out_split(interactions: Interactions, seed: int = 0) -> Split:
    """RecBole's leave-one-out split (``LS: valid_and_test``): per user, the last interaction is
    the test item and the one before it the validation item.

    "Last" follows timestamps when present, else a seeded random order. As RecBole does
    (``_split_index_by_leave_one_out``), a user with 2 interactions gives one to train and one
    to TEST (no validation item), and a user with 1 keeps it in train. Deterministic given ``seed``.
    """
    rng = np.random.default_rng(seed)
    m = interactions.matrix
    role = np.zeros(m.nnz, dtype=np.int8)  # 0 train, 1 valid, 2 test, aligned with CSR data
    for u in range(m.shape[0]):
        start, end = m.indptr[u], m.indptr[u + 1]
        n = end - start
        if n < 2:
            continue
        if interactions.timestamps is not None:
            # Timestamps share the CSR pattern (both sorted by column index).
            order = np.argsort(interactions.timestamps.data[start:end], kind="stable")
        else:
            order = rng.permutation(n)
        role[start + order[-1]] = 2
        if n >= 3:
            role[start + order[-2]] = 1
    return _split_by_role(interactions, role)


def ratio_split(interactions: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Split each user's interactions at random in the given train/valid/test ratios (seeded)."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    rng = np.random.default_rng(seed)
    m = interactions.matrix
    role = np.zeros(m.nnz, dtype=np.int8)
    for u in range(m.shape[0]):
        start, end = m.indptr[u], m.indptr[u + 1]
        n = end - start
        order = rng.permutation(n)
        n_test = int(round(n * ratios[2]))
        n_valid = int(round(n * ratios[1]))
        if n - n_test - n_valid < 1:
            continue
        role[start + order[:n_test]] = 2
        role[start + order[n_test : n_test + n_valid]] = 1
    return _split_by_role(interactions, role)


def _split_by_role(interactions: Interactions, role: np.ndarray) -> Split:
    # CSR data order equals COO order from tocoo() on a canonical CSR matrix.
    return Split(
        train=interactions._subset(role == 0),
        valid=interactions._subset(role == 1),
        test=interactions._subset(role == 2),
    )


def cold_items(train: Interactions, max_interactions: int = 5) -> np.ndarray:
    """Indices of items with at most ``max_interactions`` training interactions (ascending)."""
    return np.flatnonzero(train.popularity() <= max_interactions)


def select_cold_targets(
    train: Interactions,
    n_targets: int,
    max_interactions: int = 5,
    seed: int = 0,
    min_interactions: int = 0,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Pick ``n_targets`` cold items (seeded) as promotion targets, as the attack papers do.

    ``allowed`` (optional (I,) bool) restricts the pool further, e.g. to items with an image.
    Returns sorted item indices. Raises ValueError when fewer cold items exist than asked for.
    """
    check_int("the number of targets", n_targets, 1, numpy_ok=True)
    pop = train.popularity()
    eligible = (pop <= max_interactions) & (pop >= min_interactions)
    if allowed is not None:
        eligible &= np.asarray(allowed, dtype=bool)
    candidates = np.flatnonzero(eligible)
    if len(candidates) < n_targets:
        pool = f"with {min_interactions} to {max_interactions} training interactions" + (" and an image" if allowed is not None else "")
        raise ValueError(
            f"only {len(candidates)} cold items ({pool}) exist but {n_targets} targets were asked for: "
            f"ask for fewer targets or raise the cold threshold (max_interactions)"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=n_targets, replace=False))
