"""AUV-Fusion's user preference model: a dual-view GCN (the attacker's surrogate).

AUV-Fusion (arXiv 2507.22880, section 3.1) models what users like from two views of the
training interactions, and shares no weight with any victim:

* the **ID view**: LightGCN (He et al. 2020) over the user-item graph,
  ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)``, ``E_id = mean_k E^(k)`` (``venomkit.victims.graph``);
* the **visual view**: items' features from a PUBLIC image encoder (the attacker's), projected
  ``h_i = W f_i`` and propagated over a sparse kNN item-item graph (``k`` nearest items by
  cosine of the features, row-normalised: ``h^(l+1) = A_knn h^(l)``, ``h = mean_l h^(l)``);
  a user's visual preference is the mean of the visual embeddings of the items they bought
  (one propagation over the user-item graph, with the ID view's normalised adjacency:
  ``e_u_vis = A_ui h``).

``e_u = e_u_id + e_u_vis``, ``e_i = e_i_id + h_i``, scores are dot products, and the model is
trained with BPR on the training interactions (``venomkit.victims.training.train_bpr``: it
is a :class:`~venomkit.victims.base.Victim` for that purpose, never attacked). The attack
reads from it the preference of a target's user group and the visual space its alignment
loss is measured in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from venomkit.victims.base import Features, Victim, VictimConfig, _check_int
from venomkit.victims.graph import GraphMixin, Propagation, layer_mean


@dataclass
class DualViewConfig(VictimConfig):
    """The dual-view GCN's sizes.

    Attributes:
        n_layers: LightGCN layers on the user-item graph (paper: 2-3).
        knn_k: neighbours of each item in the item-item graph.
        knn_layers: propagation layers on the kNN graph (0: the projected features alone).
        visual_view: False drops the visual view (the paper's "w/o visual GCN" ablation):
            ``e_u = e_u_id``, ``e_i = e_i_id``.
    """

    n_layers: int = 2
    knn_k: int = 10
    knn_layers: int = 1
    visual_view: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "n_layers", minimum=0)
        _check_int(self, "knn_k", minimum=1)
        _check_int(self, "knn_layers", minimum=0)
        if self.visual_view and self.visual_dim < 1:
            raise ValueError(f"{type(self).__name__}: the visual view needs visual_dim >= 1")
        if self.knn_k >= self.n_items:
            raise ValueError(f"{type(self).__name__}.knn_k must be < n_items ({self.n_items}), got {self.knn_k}")


def knn_edges(features: torch.Tensor, k: int, block: int = 2048) -> torch.Tensor:
    """(2, I*k) edges (item, neighbour): each item's ``k`` most cosine-similar OTHER items.

    ``features`` (I, D); computed in blocks of rows so memory stays (block, I). Ties are broken
    by ``torch.topk``'s order.
    """
    x = F.normalize(features.float(), dim=1)
    rows, cols = [], []
    for start in range(0, x.shape[0], block):
        sim = x[start : start + block] @ x.T
        sim[torch.arange(sim.shape[0]), torch.arange(start, start + sim.shape[0])] = -float("inf")  # not its own neighbour
        nearest = sim.topk(k, dim=1).indices
        rows.append(torch.arange(start, start + sim.shape[0]).repeat_interleave(k))
        cols.append(nearest.reshape(-1))
    return torch.stack([torch.cat(rows), torch.cat(cols)])


@torch.no_grad()
def nearest_items(query: torch.Tensor, table: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the rows of ``table`` (I, D) most cosine-similar to ``query`` (B, D)."""
    sim = F.normalize(query.float(), dim=1) @ F.normalize(table.float(), dim=1).T
    return sim.topk(min(k, table.shape[0]), dim=1).indices


def row_normalised(edges: torch.Tensor, n: int) -> torch.Tensor:
    """Sparse (n, n) matrix with ``1 / deg(row)`` at every edge: the mean over a node's neighbours."""
    deg = torch.zeros(n).index_add_(0, edges[0], torch.ones(edges.shape[1]))
    values = 1.0 / deg.clamp_min(1.0)[edges[0]]
    return torch.sparse_coo_tensor(edges, values, (n, n), check_invariants=False).coalesce()


class DualViewGCN(GraphMixin, Victim):
    """The dual-view GCN (module docstring). ``train``: the user-item graph; the clean visual
    feature table (``set_clean_features``) defines the kNN graph (:meth:`set_knn_graph`)."""

    kind = "auv_dual_view"
    config_class = DualViewConfig
    config: DualViewConfig
    graph_norm = "sym"

    def __init__(self, config: DualViewConfig, train: object | None = None) -> None:
        if not config.visual_view:
            config.visual_dim = 0  # no visual features are read at all
        super().__init__(config)
        c = config
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c.n_users, c.embed_dim)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c.n_items, c.embed_dim)))
        if c.visual_view:
            self.visual_projection = nn.Linear(c.visual_dim, c.embed_dim, bias=False)
            nn.init.xavier_uniform_(self.visual_projection.weight)
            self.register_buffer("knn_graph_edges", torch.zeros(2, 0, dtype=torch.long))
        self._knn: Propagation | None = None
        self._init_graph(train)

    # -- the kNN item-item graph -------------------------------------------------------------
    def set_knn_graph(self) -> None:
        """Build the kNN graph from the clean visual feature table (call after ``set_clean_features``)."""
        self.knn_graph_edges = knn_edges(self.features_visual, self.config.knn_k).to(self.features_visual.device)
        self._knn = None

    def knn_propagation(self) -> Propagation:
        if self.knn_graph_edges.shape[1] == 0:
            raise ValueError("the kNN graph is not built: call set_knn_graph() after set_clean_features()")
        if self._knn is None:
            self._knn = Propagation(row_normalised(self.knn_graph_edges.cpu(), self.n_items).to(self.knn_graph_edges.device))
        return self._knn

    def _prepare_load(self, state_dict) -> None:  # type: ignore[no-untyped-def]
        super()._prepare_load(state_dict)
        if "knn_graph_edges" in state_dict:
            self.knn_graph_edges = state_dict["knn_graph_edges"].to(self.graph_edges.device)
            self._knn = None

    # -- the model ---------------------------------------------------------------------------
    def id_view(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LightGCN over the user-item graph: ((U, d), (I, d))."""
        out = layer_mean(torch.cat([self.user_embedding, self.item_embedding]), self.propagation(), self.config.n_layers)
        return out[: self.n_users], out[self.n_users :]

    def project(self, visual: torch.Tensor) -> torch.Tensor:
        """Visual features (N, D) -> the visual view's space (N, d), before propagation."""
        return self.visual_projection(visual)

    def visual_view(self, features: Features | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """((U, d) users' visual preferences, (I, d) items' propagated visual embeddings)."""
        table = self.resolve_features(features)["visual"]
        items = layer_mean(self.project(table), self.knn_propagation(), self.config.knn_layers)
        users = self.bipartite_propagation().users_from_items(items)
        return users, items

    def forward(self, features: Features | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self.id_view()
        if self.config.visual_view:
            u_vis, i_vis = self.visual_view(features)
            users, items = users + u_vis, items + i_vis
        return users, items

    # -- what the attack reads ---------------------------------------------------------------
    @torch.no_grad()
    def target_group(self, neighbours: torch.Tensor, n_users: int, exclude: np.ndarray | None = None) -> torch.Tensor:
        """(B, n) users the attacker wants to reach for each target: those who score the target's
        visual neighbours highest (the mean surrogate score over ``neighbours`` (B, k)), users
        in ``exclude`` (B, U) bool -- e.g. those who bought the target -- left out."""
        users, items = self()
        affinity = (users @ items[neighbours.reshape(-1)].T).reshape(users.shape[0], *neighbours.shape).mean(-1).T  # (B, U)
        if exclude is not None:
            affinity = affinity.masked_fill(torch.as_tensor(exclude, device=affinity.device), -float("inf"))
        return affinity.topk(min(n_users, affinity.shape[1]), dim=1).indices
