"""PGD promotion attack (Madry et al., ICLR 2018) on raw pixels, L-inf or L2.

Minimises the rank-promotion loss :class:`~venomkit.attacks.objectives.PromotionHinge`
(the target must pass each user's K-th score) with the shared loop of
:class:`~venomkit.attacks.base.IterativeImageAttack`: random start in the ball, ``steps``
signed (L-inf) or normalised (L2) gradient steps, projection after each step. The default
budget 8/255 is TAaMR's (Di Noia et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from venomkit.attacks.base import AttackConfig, IterativeConfig, IterativeImageAttack
from venomkit.attacks.objectives import PromotionHinge
from venomkit.config import check_int, check_number


@dataclass
class PromotionConfig:
    """Settings of the promotion objective (mixed into the pixel and text attack configs).

    Attributes:
        k: the rank the target must reach (the hinge compares with each user's K-th score).
        margin: how far above the K-th score to push (score units).
        objective: ``hinge`` (relu), ``soft`` (softplus / logsumexp(0, .) smoothing) or
            ``sigmoid`` (a smoothed 1 - HR@K, weighting users near the threshold).
        temperature: smoothing temperature of the soft variant.
    """

    k: int = 50
    margin: float = 0.0
    objective: Literal["hinge", "soft", "sigmoid"] = "hinge"
    temperature: float = 1.0

    def check_promotion(self) -> None:
        check_int("k", self.k)
        check_number("margin", self.margin)
        if self.objective not in ("hinge", "soft", "sigmoid"):
            raise ValueError(f"objective must be 'hinge', 'soft' or 'sigmoid', got {self.objective!r}")
        check_number("temperature", self.temperature, 0, low_open=True)

    def promotion_objective(self) -> PromotionHinge:
        return PromotionHinge(k=self.k, margin=float(self.margin), variant=self.objective, temperature=float(self.temperature))


@dataclass
class PGDConfig(IterativeConfig, PromotionConfig):
    """PGD: eps 8/255 L-inf, 10 steps of 2.5 * eps / steps, random start (see IterativeConfig)."""

    def __post_init__(self) -> None:
        IterativeConfig.__post_init__(self)
        self.check_promotion()


class PGD(IterativeImageAttack):
    """Projected gradient descent on the promotion loss (white-box, or grey-box via a surrogate)."""

    name: ClassVar[str] = "pgd"
    config_class: ClassVar[type[AttackConfig]] = PGDConfig

    def build_objective(self, model, batch):
        return self.config.promotion_objective().prepare(model, batch.item_index, batch.users, batch.knowledge)
