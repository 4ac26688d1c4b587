"""AMR: Adversarial Multimedia Recommendation (Tang et al., TKDE 2020).

The VBPR model (see ``vbpr.py``) trained with adversarial regularisation on its content
features (paper Eq. 9):

    L = L_BPR(Theta, f)  +  lambda_adv * L_BPR(Theta, f + delta_adv)
    delta_adv = eps * g / ||g||,   g = d L_BPR / d f     (FGM, per item row)

computed on the feature rows of the batch's items (``feature_adversary``); ``delta_adv`` is a
constant for the parameter update. AMR perturbs the visual features; the MMRec-style VBPR
here also reads text, which is left clean unless ``adv_modalities`` says otherwise. The
radius is a fraction of each row's L2 norm (``adv_eps_mode="ratio"``, the convention
UAT-MC uses) or absolute (``"abs"``, the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from venomkit.victims.base import MODALITIES
from venomkit.victims.feature_adversary import FeatureAdversaryConfig, adversarial_bpr_loss
from venomkit.victims.vbpr import VBPR, VBPRConfig


@dataclass
class AMRConfig(VBPRConfig):
    """VBPR's fields plus the adversary's.

    Attributes:
        adv_eps: perturbation radius per item row (>= 0; ratio of the row norm or absolute).
        adv_eps_mode: "ratio" or "abs".
        adv_weight: lambda_adv, weight of the adversarial BPR term (>= 0; paper default 1).
        adv_modalities: modalities the adversary perturbs (default the visual features only).
        adv_steps: 1 = FGM as in the paper; > 1 = PGD.
    """

    adv_eps: float = 0.1
    adv_eps_mode: str = "ratio"
    adv_weight: float = 1.0
    adv_modalities: tuple[str, ...] = ("visual",)
    adv_steps: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.adv_modalities = tuple(self.adv_modalities)
        missing = [m for m in self.adv_modalities if m not in self.modalities]
        if missing or not self.adv_modalities:
            raise ValueError(
                f"{type(self).__name__}.adv_modalities must be a non-empty subset of the modalities read "
                f"{self.modalities}, got {self.adv_modalities!r}"
            )
        self.adv_modalities = tuple(m for m in MODALITIES if m in self.adv_modalities)
        # Validate the adversary's fields once, here, with the same rules it applies.
        try:
            self.adversary()
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} adv_* fields: {exc}") from None

    def adversary(self) -> FeatureAdversaryConfig:
        return FeatureAdversaryConfig(
            modalities=self.adv_modalities,
            eps=self.adv_eps,
            eps_mode=self.adv_eps_mode,
            adv_weight=self.adv_weight,
            steps=self.adv_steps,
        )


class AMR(VBPR):
    """VBPR with adversarial training on content features (see module docstring)."""

    kind = "amr"
    config_class = AMRConfig
    config: AMRConfig

    def training_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """AMR's objective for one batch: clean BPR + lambda_adv * adversarial BPR."""
        return adversarial_bpr_loss(self, users, pos, neg, self.config.adversary())
