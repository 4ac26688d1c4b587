"""The user-item bipartite graph that graph victims (MMGCN, LightGCN) propagate over.

Nodes are users ``0..U-1`` followed by items ``U..U+I-1``. The graph is the training
interactions, stored in the victim as a buffer ``graph_edges`` (2, E) of (user, item) pairs
so a checkpoint carries it; the normalised sparse adjacency (N, N) is rebuilt from it on the
victim's device and cached, together with its ``Propagation`` (the CSR form the forward pass
multiplies with).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from venomkit.victims.base import Victim


def interaction_edges(train: object) -> torch.Tensor:
    """(2, E) int64 (user, item) pairs of an ``Interactions`` (or a scipy sparse matrix)."""
    matrix = getattr(train, "matrix", train)
    coo = matrix.tocoo()
    return torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))


def normalized_adjacency(edges: torch.Tensor, n_users: int, n_items: int, norm: str) -> torch.Tensor:
    """Sparse (N, N) adjacency of the symmetric bipartite graph, N = U + I.

    ``norm="sym"``: D^-1/2 A D^-1/2 (LightGCN, He et al. 2020, Eq. 7).
    ``norm="mean"``: D^-1 A, the mean over neighbours (MMGCN's ``aggr='mean'``).
    Isolated nodes keep an all-zero row.
    """
    if norm not in ("sym", "mean"):
        raise ValueError(f"norm must be 'sym' or 'mean', got {norm!r}")
    n = n_users + n_items
    users, items = edges[0], edges[1] + n_users
    rows = torch.cat([users, items])
    cols = torch.cat([items, users])
    deg = torch.zeros(n, device=edges.device).index_add_(0, rows, torch.ones_like(rows, dtype=torch.float32))
    inv = deg.clamp_min(1.0)
    if norm == "sym":
        values = inv.rsqrt()[rows] * inv.rsqrt()[cols]
    else:
        values = 1.0 / inv[rows]
    adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False)
    return adj.coalesce()


def layer_mean(x: torch.Tensor, propagate: "Propagation", n_layers: int) -> torch.Tensor:
    """LightGCN's layer combination (He et al. 2020, Eq. 4 with alpha_k = 1/(K+1)): the mean of
    ``x, P x, P^2 x, ..., P^K x`` for ``propagate`` P and K = ``n_layers``; (N, d) -> (N, d)."""
    total = x
    for _ in range(n_layers):
        x = propagate(x)
        total = total + x
    return total / (n_layers + 1)


class GraphMixin:
    """Storage of the training graph for a ``Victim`` subclass (call ``_init_graph`` in __init__)."""

    graph_norm: str = "sym"

    def _init_graph(self: Victim, train: object | None) -> None:  # type: ignore[misc]
        edges = interaction_edges(train) if train is not None else torch.zeros(2, 0, dtype=torch.long)
        self.register_buffer("graph_edges", edges)
        # (device, edges' data_ptr, adjacency, operators built from it on first use)
        self._adj_cache: tuple[torch.device, int, torch.Tensor, dict[str, object]] | None = None
        if train is not None:
            self.set_graph(train)

    def set_graph(self: Victim, train: object) -> None:  # type: ignore[misc]
        """Use the interactions of ``train`` (an ``Interactions``) as the propagation graph."""
        matrix = getattr(train, "matrix", train)
        if tuple(matrix.shape) != (self.n_users, self.n_items):
            raise ValueError(f"{self.kind}: graph is {tuple(matrix.shape)}, model is ({self.n_users}, {self.n_items})")
        self.set_graph_edges(interaction_edges(train))

    def set_graph_edges(self: Victim, edges: torch.Tensor) -> None:  # type: ignore[misc]
        edges = torch.as_tensor(edges, dtype=torch.long)
        if edges.dim() != 2 or edges.shape[0] != 2:
            raise ValueError(f"{self.kind}: graph_edges must have shape (2, E), got {tuple(edges.shape)}")
        if edges.numel() and (edges[0].min() < 0 or edges[0].max() >= self.n_users or edges[1].min() < 0 or edges[1].max() >= self.n_items):
            raise ValueError(f"{self.kind}: graph_edges hold user/item indices out of range")
        self.graph_edges = edges.to(self.graph_edges.device)
        self._adj_cache = None

    def _graph_cache(self: Victim) -> tuple[torch.device, int, torch.Tensor, dict[str, object]]:  # type: ignore[misc]
        if self.graph_edges.shape[1] == 0:
            raise ValueError(f"{self.kind} has no training graph: build it with train=... or call set_graph(train)")
        device = self.graph_edges.device
        key = self.graph_edges.data_ptr()
        if self._adj_cache is None or self._adj_cache[0] != device or self._adj_cache[1] != key:
            adj = normalized_adjacency(self.graph_edges, self.n_users, self.n_items, self.graph_norm)
            self._adj_cache = (device, key, adj, {})
        return self._adj_cache

    def adjacency(self: Victim) -> torch.Tensor:  # type: ignore[misc]
        """The normalised adjacency (N, N) as a coalesced sparse COO tensor."""
        return self._graph_cache()[2]

    def propagation(self: Victim) -> "Propagation":  # type: ignore[misc]
        """``x -> adjacency() @ x`` (N, d) -> (N, d), the operator LightGCN's forward pass applies."""
        _, _, adj, operators = self._graph_cache()
        if "square" not in operators:
            operators["square"] = Propagation(adj)
        return operators["square"]  # type: ignore[return-value]

    def bipartite_propagation(self: Victim) -> "BipartitePropagation":  # type: ignore[misc]
        """The same operator as two block products, users from items and items from users (MMGCN's)."""
        _, _, adj, operators = self._graph_cache()
        if "bipartite" not in operators:
            operators["bipartite"] = BipartitePropagation(adj, self.n_users)
        return operators["bipartite"]  # type: ignore[return-value]

    def _prepare_load(self: Victim, state_dict) -> None:  # type: ignore[misc,no-untyped-def]
        if "graph_edges" in state_dict:
            self.set_graph_edges(state_dict["graph_edges"])


class _SparseMatmul(torch.autograd.Function):
    """``matrix @ x`` for a constant sparse CSR ``matrix`` (R, C) and dense ``x`` (C, d); the
    gradient is ``transpose @ grad``, computed by this same Function, so the product is
    differentiable to any order (UAT-MC's alignment term backpropagates through the backward
    pass)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.matrix, ctx.transpose = matrix, transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        return _SparseMatmul.apply(grad, ctx.transpose, ctx.matrix), None, None


class Propagation:
    """A fixed sparse (R, C) matrix applied to dense (C, d) node states: ``propagation(x) = A @ x``.

    Kept in CSR form together with its transpose (the backward pass multiplies by ``A^T``):
    on CPU a CSR product is about 3x faster than the COO ``torch.sparse.mm`` for the
    toyshop graph (1600 nodes, 46k non-zeros), and the transpose is built once, not per
    backward. Copies for other dtypes are made on first use.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        if not matrix.is_sparse or matrix.dim() != 2:
            raise ValueError(f"Propagation needs a 2-D sparse COO matrix, got {matrix.layout} {tuple(matrix.shape)}")
        self.shape = tuple(matrix.shape)
        self._forms: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}
        self._coo = matrix.coalesce()

    def _csr(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if dtype not in self._forms:
            coo = self._coo.to(dtype)
            with warnings.catch_warnings():
                # torch flags CSR as beta; the product used here is the stable one.
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._forms[dtype] = (coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr())
        return self._forms[dtype]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[0] != self.shape[1]:
            raise ValueError(f"propagation of a {self.shape} graph needs node states of shape ({self.shape[1]}, d), got {tuple(x.shape)}")
        matrix, transpose = self._csr(x.dtype)
        return _SparseMatmul.apply(x, matrix, transpose)


class BipartitePropagation:
    """The (N, N) adjacency of a user-item graph as its two non-zero blocks, N = U + I.

    ``users_from_items`` is ``A[:U, U:]`` (U, I) and ``items_from_users`` is ``A[U:, :U]``
    (I, U): with node states kept as a user block and an item block, one propagation is
    ``(users_from_items(z_items), items_from_users(z_users))`` -- the same products as
    ``A @ cat([z_users, z_items])``, without the zero blocks, and each output block depends on
    one input block only (autograd then skips whatever a perturbed block does not reach).
    """

    def __init__(self, adjacency: torch.Tensor, n_users: int) -> None:
        if not adjacency.is_sparse or adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1] or not 0 <= n_users <= adjacency.shape[0]:
            raise ValueError(f"BipartitePropagation needs a square sparse (U+I, U+I) matrix and 0 <= U <= U+I, got {adjacency.layout} {tuple(adjacency.shape)}, U={n_users}")
        adj = adjacency.coalesce()
        n = adj.shape[0]
        rows, cols = adj.indices()
        values = adj.values()
        user_row = rows < n_users
        if bool((user_row == (cols < n_users)).any()):
            raise ValueError("BipartitePropagation: the adjacency has user-user or item-item entries")
        n_items = n - n_users
        ui = torch.sparse_coo_tensor(torch.stack([rows[user_row], cols[user_row] - n_users]), values[user_row], (n_users, n_items), check_invariants=False)
        iu = torch.sparse_coo_tensor(torch.stack([rows[~user_row] - n_users, cols[~user_row]]), values[~user_row], (n_items, n_users), check_invariants=False)
        self.users_from_items = Propagation(ui)
        self.items_from_users = Propagation(iu)

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One propagation of (U, d) user and (I, d) item states: ``(A_ui @ items, A_iu @ users)``."""
        return self.users_from_items(items), self.items_from_users(users)


__all__ = ["BipartitePropagation", "GraphMixin", "Propagation", "interaction_edges", "normalized_adjacency"]
