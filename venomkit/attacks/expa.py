"""EXPA: the expert attack of AIP (Liu & Larson, WWW 2021).

The expert knows the visual feature extractor but not the recommender: it moves the target
image's features to the mean feature of the most popular ("hook") items
(:class:`~venomkit.attacks.objectives.EXPA`) with the shared PGD loop. Default budget 32/255
as in AIP. Needs ``Knowledge(popularity=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from venomkit.attacks.base import AttackConfig, IterativeConfig, IterativeImageAttack
from venomkit.attacks.objectives import EXPA as EXPAObjective
from venomkit.config import check_int


@dataclass
class EXPAConfig(IterativeConfig):
    """EXPA: eps 32/255 L-inf, 20 steps; ``n_hooks`` popular items whose mean feature is the goal."""

    eps: float = 32 / 255
    steps: int = 20
    n_hooks: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("n_hooks", self.n_hooks)


class EXPA(IterativeImageAttack):
    """AIP's expert attack on raw pixels."""

    name: ClassVar[str] = "expa"
    config_class: ClassVar[type[AttackConfig]] = EXPAConfig

    def build_objective(self, model, batch):
        return EXPAObjective(self.config.n_hooks).prepare(model, batch.item_index, batch.users, batch.knowledge)
