"""INSA: the insider attack of AIP (Liu & Larson, "Adversarial Item Promotion: Vulnerabilities
at the Core of Top-N Recommenders that Use Images to Address Cold Start", WWW 2021).

The insider knows the recommender and raises the target's mean exp-score over all users
(:class:`~venomkit.attacks.objectives.INSA`) with the shared PGD loop. Default budget 32/255
as in AIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from venomkit.attacks.base import AttackConfig, IterativeConfig, IterativeImageAttack
from venomkit.attacks.objectives import INSA as INSAObjective


@dataclass
class INSAConfig(IterativeConfig):
    """INSA: eps 32/255 L-inf, 20 steps (see IterativeConfig for every field)."""

    eps: float = 32 / 255
    steps: int = 20


class INSA(IterativeImageAttack):
    """AIP's insider attack on raw pixels."""

    name: ClassVar[str] = "insa"
    config_class: ClassVar[type[AttackConfig]] = INSAConfig

    def build_objective(self, model, batch):
        return INSAObjective().prepare(model, batch.item_index, batch.users, batch.knowledge)
