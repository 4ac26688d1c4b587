"""VBPR: Visual Bayesian Personalized Ranking (He & McAuley, AAAI 2016).

Score of user u for item i (paper Eq. 3, with MMRec's reading of text features too):

    s(u, i) = gamma_u . gamma_i  +  theta_u . (sum_m E_m f_{i,m})  +  beta_i  +  sum_m beta'_m . f_{i,m}

where f_{i,m} is item i's feature vector of modality m (visual from the image encoder, text
from the text encoder), E_m (content_dim x D_m) projects it, gamma are ID factors, beta_i an
item bias and beta'_m a per-modality content bias (the user bias beta_u cancels in ranking
and is left out, as in the paper's BPR form). The biases are folded into one extra column:

    user_emb = [gamma_u, theta_u, 1]            (U, embed_dim + content_dim + 1)
    item_emb = [gamma_i, sum_m E_m f_m, beta_i + sum_m beta'_m . f_m]

so ``scores = user_emb @ item_emb.T`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from venomkit.victims.base import Features, Victim, VictimConfig, _check_float, _check_int


@dataclass
class VBPRConfig(VictimConfig):
    """VBPR hyper-parameters (see ``VictimConfig`` for the shared fields).

    Attributes:
        content_dim: width of theta_u and of the projected content E_m f_m; 0 means embed_dim.
        use_bias: keep the item bias beta_i and the content bias beta'_m (paper Eq. 3).
        init_std: std of the normal initialisation of the ID factors (> 0).
    """

    content_dim: int = 0
    use_bias: bool = True
    init_std: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self, "content_dim", minimum=0)
        if not isinstance(self.use_bias, bool):
            raise ValueError(f"{type(self).__name__}.use_bias must be true or false, got {self.use_bias!r}")
        _check_float(self, "init_std", minimum=0.0, strict_min=True)
        if not self.modalities:
            raise ValueError(f"{type(self).__name__}: VBPR needs content: set visual_dim and/or text_dim > 0")
        if self.content_dim == 0:
            self.content_dim = self.embed_dim


class VBPR(Victim):
    """VBPR over visual and/or text features (see module docstring for the equations)."""

    kind = "vbpr"
    items_independent = True  # an item's row is its ID embedding and its own features' projection
    config_class = VBPRConfig
    config: VBPRConfig

    def __init__(self, config: VBPRConfig) -> None:
        super().__init__(config)
        c = config
        self.gamma_user = nn.Parameter(torch.randn(c.n_users, c.embed_dim) * c.init_std)
        self.gamma_item = nn.Parameter(torch.randn(c.n_items, c.embed_dim) * c.init_std)
        self.theta_user = nn.Parameter(torch.randn(c.n_users, c.content_dim) * c.init_std)
        # One projection per modality (equivalent to MMRec's single linear on the concatenation),
        # so each modality's gradient and width stay separate for the feature adversary.
        self.projection = nn.ModuleDict({m: nn.Linear(c.feature_dim(m), c.content_dim, bias=False) for m in self.modalities})
        for layer in self.projection.values():
            nn.init.xavier_uniform_(layer.weight)
        if c.use_bias:
            self.item_bias = nn.Parameter(torch.zeros(c.n_items))
            self.content_bias = nn.ModuleDict({m: nn.Linear(c.feature_dim(m), 1, bias=False) for m in self.modalities})
            for layer in self.content_bias.values():
                nn.init.zeros_(layer.weight)

    @property
    def embedding_dim(self) -> int:
        """Width d of ``user_emb`` and ``item_emb``."""
        return self.config.embed_dim + self.config.content_dim + 1

    def forward(self, features: Features | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.resolve_features(features)
        content = sum(self.projection[m](feats[m]) for m in self.modalities)
        if self.config.use_bias:
            bias = self.item_bias + sum(self.content_bias[m](feats[m]).squeeze(-1) for m in self.modalities)
        else:
            bias = torch.zeros(self.n_items, device=self.gamma_item.device, dtype=self.gamma_item.dtype)
        ones = torch.ones(self.n_users, 1, device=self.gamma_user.device, dtype=self.gamma_user.dtype)
        user_emb = torch.cat([self.gamma_user, self.theta_user, ones], dim=1)
        item_emb = torch.cat([self.gamma_item, content, bias.unsqueeze(1)], dim=1)
        return user_emb, item_emb

    def reg_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, user_emb: torch.Tensor, item_emb: torch.Tensor
    ) -> torch.Tensor:
        # The constant 1 column of the user side is not a parameter: leave it out of the L2 term.
        return super().reg_loss(users, pos, neg, user_emb[:, :-1], item_emb)

    def feature_projections(self) -> dict[str, torch.Tensor]:
        """E_m^T (D_m, content_dim): how each modality's features enter the shared content space."""
        return {m: self.projection[m].weight.T for m in self.modalities}
