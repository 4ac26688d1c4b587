"""FGSM promotion attack (Goodfellow et al., ICLR 2015) on raw pixels.

One step of length ``eps`` along the sign (L-inf) or the normalised gradient (L2) of the
promotion loss, from the clean image: the shared loop with ``steps=1``, no random start.
Default budget 8/255 (TAaMR, Di Noia et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from venomkit.attacks.base import AttackConfig, IterativeConfig, IterativeImageAttack, check_budget
from venomkit.attacks.pgd import PromotionConfig


@dataclass
class FGSMConfig(AttackConfig, PromotionConfig):
    """FGSM budget: ``eps`` (8/255) in the ``norm`` ball (``linf`` or ``l2``)."""

    eps: float = 8 / 255
    norm: Literal["linf", "l2"] = "linf"

    def __post_init__(self) -> None:
        AttackConfig.__post_init__(self)
        check_budget(self.eps, self.norm)
        self.check_promotion()

    def loop(self) -> IterativeConfig:
        return IterativeConfig(seed=self.seed, eps=self.eps, norm=self.norm, steps=1, step_size=self.eps, random_start=False, keep_best=False)


class FGSM(IterativeImageAttack):
    """Fast gradient sign method on the promotion loss."""

    name: ClassVar[str] = "fgsm"
    config_class: ClassVar[type[AttackConfig]] = FGSMConfig

    def build_objective(self, model, batch):
        return self.config.promotion_objective().prepare(model, batch.item_index, batch.users, batch.knowledge)

    def loop_config(self) -> IterativeConfig:
        return self.config.loop()
