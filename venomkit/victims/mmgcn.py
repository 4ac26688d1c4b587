"""MMGCN: Multi-modal Graph Convolution Network (Wei et al., ACM MM 2019).

One graph convolution network per modality m over the user-item bipartite graph of the
training interactions (nodes: U users then I items). Its input is a modality-specific user
preference ``P_m`` (U, latent) stacked on the projected item features ``MLP_m(f_m)``
(I, latent), L2-normalised per node. Each layer l (paper Eqs. 1-8, ``concat=False`` /
``aggr="mean"`` as in the authors' runs):

    h     = leaky_relu( A_mean @ (x W_l) )                         aggregation (Eq. 1-2)
    x_hat = leaky_relu( x L_l ) + e_id                             node's own state + ID (Eq. 5)
    x     = leaky_relu( h G_l + x_hat )       (concat: leaky_relu([h, x_hat] G_l))   combination (Eq. 6-7)

with ``A_mean = D^-1 A`` the neighbour mean and ``e_id`` an ID embedding shared by the
modalities. The final representation of a node is the SUM of its modality outputs (Eq. 9),
and scores are dot products of user and item representations (Eq. 10).

``forward(features)`` runs the full propagation with sparse CSR matmuls, so it is
differentiable (twice: UAT-MC's ``create_graph`` alignment term) in every feature table.
The graph has only user-item edges, so node states are carried as a user block and an item
block, and ``A_mean @ [z_u; z_i] = [A_ui z_i; A_iu z_u]`` is two block products: the same
arithmetic as one (N, N) product (tested against it), but each block's dependence on the
content stays visible to autograd -- in layer 1 only the users' aggregation and the items'
own state depend on the item features, so UAT-MC's Hessian-vector product skips the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from venomkit.victims.base import Features, Victim, VictimConfig, _check_int
from venomkit.victims.graph import BipartitePropagation, GraphMixin


@dataclass
class MMGCNConfig(VictimConfig):
    """MMGCN hyper-parameters (see ``VictimConfig`` for the shared fields).

    Attributes:
        latent_dim: width of the projected features and preferences (the paper's dim_latent).
        n_layers: graph convolution layers per modality (paper: 2).
        concat: combine by concatenation instead of addition (paper's ``concat`` flag).
        has_id: add the ID embedding in every layer (paper's ``has_id``).
    """

    latent_dim: int = 256
    n_layers: int = 2
    concat: bool = False
    has_id: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "latent_dim", minimum=1)
        _check_int(self, "n_layers", minimum=1)
        for name in ("concat", "has_id"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{type(self).__name__}.{name} must be true or false, got {getattr(self, name)!r}")
        if not self.modalities:
            raise ValueError(f"{type(self).__name__}: MMGCN needs content: set visual_dim and/or text_dim > 0")


class ModalityGCN(nn.Module):
    """The graph network of one modality: (features (I, D_m), ID embedding, graph) -> user and item states."""

    def __init__(self, n_users: int, feature_dim: int, config: MMGCNConfig) -> None:
        super().__init__()
        c = config
        self.concat, self.has_id = c.concat, c.has_id
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, c.latent_dim)))
        self.mlp = nn.Linear(feature_dim, c.latent_dim)
        dims = [c.latent_dim] + [c.embed_dim] * (c.n_layers - 1)
        self.conv = nn.ModuleList(nn.Linear(d, d, bias=False) for d in dims)
        self.linear = nn.ModuleList(nn.Linear(d, c.embed_dim) for d in dims)
        self.combine = nn.ModuleList(nn.Linear(d + c.embed_dim if c.concat else d, c.embed_dim) for d in dims)
        for layer in [self.mlp, *self.conv, *self.linear, *self.combine]:
            nn.init.xavier_uniform_(layer.weight)

    def forward(
        self, features: torch.Tensor, id_embedding: torch.Tensor, propagate: BipartitePropagation
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(I, D_m) features -> ((U, embed_dim) user, (I, embed_dim) item) states of this modality."""
        n_users = self.preference.shape[0]
        ids = (id_embedding[:n_users], id_embedding[n_users:])
        users, items = F.normalize(self.preference, dim=1), F.normalize(self.mlp(features), dim=1)
        for conv, linear, combine in zip(self.conv, self.linear, self.combine):
            h_users, h_items = propagate(conv(users), conv(items))
            users = self._combine(combine, F.leaky_relu(h_users), self._own_state(linear, users, ids[0]))
            items = self._combine(combine, F.leaky_relu(h_items), self._own_state(linear, items, ids[1]))
        return users, items

    def _own_state(self, linear: nn.Linear, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x_hat = F.leaky_relu(linear(x))
        return x_hat + ids if self.has_id else x_hat

    def _combine(self, combine: nn.Linear, h: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(combine(torch.cat([h, x_hat], dim=1)) if self.concat else combine(h) + x_hat)


class MMGCN(GraphMixin, Victim):
    """MMGCN over visual and/or text features (see module docstring).

    ``train`` (an ``Interactions``, users x items) is the graph; it is saved with the model.
    """

    kind = "mmgcn"
    config_class = MMGCNConfig
    config: MMGCNConfig
    graph_norm = "mean"

    def __init__(self, config: MMGCNConfig, train: object | None = None) -> None:
        super().__init__(config)
        c = config
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(c.n_users + c.n_items, c.embed_dim)))
        self.gcn = nn.ModuleDict({m: ModalityGCN(c.n_users, c.feature_dim(m), c) for m in self.modalities})
        self._init_graph(train)

    def forward(self, features: Features | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.resolve_features(features)
        propagate = self.bipartite_propagation()
        per_modality = [self.gcn[m](feats[m], self.id_embedding, propagate) for m in self.modalities]
        return sum(u for u, _ in per_modality), sum(i for _, i in per_modality)

    def reg_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, user_emb: torch.Tensor, item_emb: torch.Tensor
    ) -> torch.Tensor:
        """MMGCN's own L2 term (the authors' ``loss``, kept by MMRec), on parameters, not outputs:

            reg_weight * ( mean over the batch's (user, item) rows of e_id[u]^2 + e_id[i]^2
                           + sum_m mean(P_m^2) )

        where each user row is counted once with its positive and once with its negative item,
        and the mean runs over rows and dimensions. ``user_emb`` / ``item_emb`` are not used.
        A parameter-level term has a gradient without a backward pass through the graph, which
        adversarial training relies on (``feature_adversary.adversarial_bpr_loss``).
        """
        ids, width = self.id_embedding, self.id_embedding.shape[1]
        sq = 2 * ids[users].pow(2).sum(1) + ids[self.n_users + pos].pow(2).sum(1) + ids[self.n_users + neg].pow(2).sum(1)
        reg = sq.mean() / (2 * width) + sum(self.gcn[m].preference.pow(2).mean() for m in self.modalities)
        return self.config.reg_weight * reg

    def feature_projections(self) -> dict[str, torch.Tensor]:
        """The first projection MLP_m^T (D_m, latent_dim) of each modality."""
        return {m: self.gcn[m].mlp.weight.T for m in self.modalities}
