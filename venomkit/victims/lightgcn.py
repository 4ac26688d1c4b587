"""LightGCN (He et al., SIGIR 2020): the ID-only graph baseline.

Layer-0 embeddings E^(0) = [E_users; E_items] (U+I, d) are propagated without weights or
non-linearities over the symmetric-normalised bipartite graph (paper Eq. 7):

    E^(k+1) = D^-1/2 A D^-1/2 E^(k),        E = mean_{k=0..K} E^(k)   (Eq. 8, alpha_k = 1/(K+1))

and scores are dot products. It reads no content (``modalities == ()``), so it is the
reference a content-aware victim must beat on cold items, and immune to content attacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from venomkit.victims.base import Features, Victim, VictimConfig, _check_int
from venomkit.victims.graph import GraphMixin, layer_mean


@dataclass
class LightGCNConfig(VictimConfig):
    """LightGCN hyper-parameters: ``n_layers`` K (paper: 3). Reads no features."""

    n_layers: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "n_layers", minimum=0)
        if self.visual_dim or self.text_dim:
            raise ValueError(f"{type(self).__name__}: LightGCN reads no content; visual_dim and text_dim must be 0")
        if self.image_encoder is not None or self.text_encoder is not None:
            raise ValueError(f"{type(self).__name__}: LightGCN reads no content; image_encoder and text_encoder must be None")


class LightGCN(GraphMixin, Victim):
    """LightGCN (see module docstring). ``train`` (an ``Interactions``) is the graph, saved with the model."""

    kind = "lightgcn"
    config_class = LightGCNConfig
    config: LightGCNConfig
    graph_norm = "sym"

    def __init__(self, config: LightGCNConfig, train: object | None = None) -> None:
        super().__init__(config)
        c = config
        # RecBole initialises with xavier_uniform over the whole table.
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c.n_users, c.embed_dim)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(c.n_items, c.embed_dim)))
        self._init_graph(train)

    def forward(self, features: Features | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if features:
            raise ValueError(f"LightGCN reads no content features; got {sorted(features)}")
        x = torch.cat([self.user_embedding, self.item_embedding], dim=0)
        out = layer_mean(x, self.propagation(), self.config.n_layers) if self.config.n_layers else x
        return out[: self.n_users], out[self.n_users :]
