"""Feature-space promotion attacks (FGSM / PGD on a target item's feature rows), the threat
model of the UAT-MC paper's Table 2, kept for comparison with the raw-content attacks.

The attacker moves the visual and textual feature rows ``f_{t,m}`` of target item ``t``
within ``||delta_m||_2 <= eps * ||f_{t,m}||_2`` (eps as a ratio of the row's norm, the paper's
convention) to MINIMISE the promotion hinge of ``venomkit.attacks.objectives.PromotionHinge``
(``relu(s_K(u) - s(u, t) + margin)`` averaged over the chosen users: every user still below
their K-th score pulls, unlike the release's ``relu(s_t - s_K + m)``). Steps are L2-normalised
per modality (FGM for ``steps=1``, PGD with projection otherwise) by
``venomkit.victims.feature_adversary.fgm_feature_perturbation``; an optional cross-modal
alignment term (cosine of the two modalities' gradients, ``create_graph=True``) gives the
coordinated attacker the paper's section 3 motivates.

Targets are attacked one at a time: for graph victims (MMGCN) a target's new features move
the other items too, so targets are not independent in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from venomkit.config import check_int, check_number
from venomkit.progress import progress as progress_bar
from venomkit.victims.base import MODALITIES, Victim


@dataclass
class FeatureAttackConfig:
    """Settings of the feature-space attack.

    Attributes:
        eps: radius of each perturbed row as a fraction of its L2 norm (> 0).
        steps: 1 = FGSM/FGM, > 1 = PGD.
        step_size: PGD step as a fraction of the radius (default 2.5 / steps).
        k: the rank to reach (the hinge compares with each user's K-th score).
        margin: score margin of the hinge.
        align_weight: weight of the cross-modal alignment term (0 = off).
        modalities: the rows the attacker may change (canonical order).
    """

    eps: float = 0.1
    steps: int = 1
    step_size: float | None = None
    k: int = 50
    margin: float = 0.0
    align_weight: float = 0.0
    modalities: tuple[str, ...] = ("visual", "text")

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_number(f"{name}.eps", self.eps, 0, 10, low_open=True)
        for field_name in ("steps", "k"):
            check_int(f"{name}.{field_name}", getattr(self, field_name), 1)
        check_number(f"{name}.align_weight", self.align_weight, 0)
        mods = tuple(self.modalities)
        if not mods or any(m not in MODALITIES for m in mods):
            raise ValueError(f"{name}.modalities must be names from {MODALITIES}, got {self.modalities!r}")
        self.modalities = tuple(m for m in MODALITIES if m in mods)


def feature_attack_one(
    victim: Victim,
    target: int,
    train: Any,
    config: FeatureAttackConfig,
    users: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Adversarial feature rows ``{m: (1, D_m)}`` of ``target`` (clean rows + delta, detached).

    ``users`` (U',) restricts the objective to a user group (default: all users); ``train``
    (users x items CSR or ``Interactions``) masks seen items in the rank thresholds.
    """
    from venomkit.attacks.base import Forward
    from venomkit.attacks.targets import Knowledge
    from venomkit.attacks.objectives import PromotionHinge
    from venomkit.victims.feature_adversary import fgm_feature_perturbation

    mods = tuple(m for m in config.modalities if m in victim.modalities)
    if not mods:
        raise ValueError(f"the {victim.kind} victim reads {victim.modalities}; the attack perturbs {config.modalities}")
    device = victim.device
    index = torch.tensor([int(target)], device=device)
    matrix = getattr(train, "matrix", train)
    with torch.no_grad():
        objective = PromotionHinge(k=config.k, margin=config.margin).prepare(victim, index, users, Knowledge(train=matrix))
    clean = {m: t[index].detach() for m, t in victim.clean_features().items()}

    def loss_fn(rows: dict[str, torch.Tensor]) -> torch.Tensor:
        # fgm_feature_perturbation maximises: the promotion loss is minimised.
        return -objective(Forward(victim, index, rows)).sum()

    align = config.align_weight if set(mods) == set(MODALITIES) else 0.0
    projections = None
    if align and clean["visual"].shape[1] != clean["text"].shape[1]:
        projections = {m: p.detach() for m, p in (victim.feature_projections() or {}).items()} or None
    deltas = fgm_feature_perturbation(
        loss_fn, clean, eps_ratio=float(config.eps), modalities=mods, steps=config.steps, step_size=config.step_size,
        align_weight=align, align_projections=projections,
    )
    return {m: clean[m] + deltas[m] if m in deltas else clean[m] for m in clean}


@torch.no_grad()
def target_figures(victim: Victim, target: int, train: Any, rows: dict[str, torch.Tensor] | None = None, ks: Sequence[int] = (5, 10, 20, 50), users: torch.Tensor | None = None) -> dict[str, float]:
    """HR@K / rank figures of one target with its rows replaced by ``rows`` (None: clean)."""
    from venomkit.eval.ranking import evaluate_targets

    index = torch.tensor([int(target)], device=victim.device)
    user_emb, item_emb = victim(None if rows is None else victim.features_with(index, rows))
    out = evaluate_targets(user_emb, item_emb, [int(target)], getattr(train, "matrix", train), ks=ks, users=users)
    return {k: float(v[0]) for k, v in out.items()}


def run_feature_attack(victim: Victim, targets: Sequence[int], train: Any, config: FeatureAttackConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Attack each target; one row per target with hr@K before/after, ranks, RI@50 and the row shifts."""
    from venomkit.eval.ranking import relative_improvement

    was_training = victim.training
    victim.eval()
    rows_out = []
    try:
        for t in progress_bar(list(targets), desc=f"feature attack steps={config.steps}", unit="target", enabled=progress):
            before = target_figures(victim, t, train)
            adv = feature_attack_one(victim, t, train, config)
            after = target_figures(victim, t, train, adv)
            row: dict[str, Any] = {"item_index": int(t)}
            for key in before:
                if key.startswith("hr@") or key.endswith("rank"):
                    row[f"{key}_before"], row[f"{key}_after"] = before[key], after[key]
            row["ri@50"] = float(relative_improvement(before["hr@50"], after["hr@50"]))
            clean = victim.clean_features()
            for m, r in adv.items():
                row[f"shift_{m}"] = float((r[0] - clean[m][t]).norm() / clean[m][t].norm().clamp_min(1e-12))
            rows_out.append(row)
    finally:
        victim.train(was_training)
    return rows_out


@dataclass
class FeaturePGDConfig(FeatureAttackConfig):
    """Feature-space PGD: :class:`FeatureAttackConfig` with 10 steps."""

    steps: int = 10


class FeatureAttack:
    """The feature-space attack as a run-engine attack: it perturbs the targets' feature ROWS.

    It changes no content (``perturbs = ("features",)``): the engine measures the returned rows
    directly, with the same collectors as the raw-content attacks. Targets are attacked one
    at a time (see the module docstring).
    """

    name: ClassVar[str] = "feature_fgsm"
    config_class: ClassVar[type] = FeatureAttackConfig
    perturbs: ClassVar[tuple[str, ...]] = ("features",)

    def __init__(self, config: FeatureAttackConfig | None = None) -> None:
        config = config if config is not None else self.config_class()
        if not isinstance(config, FeatureAttackConfig):
            raise ValueError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    @classmethod
    def from_config(cls, config: FeatureAttackConfig, *, surrogate: Any = None, device: str = "cpu") -> "FeatureAttack":
        if surrogate is not None:
            raise ValueError(f"{cls.name} perturbs feature rows: a surrogate image encoder does not apply")
        return cls(config)

    def attack_rows(self, victim: Victim, item_index: torch.Tensor, train: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Adversarial rows ``{m: (B, D_m)}`` of targets ``item_index`` (B,) and diagnostics ``{name: (B,)}``."""
        from venomkit.models.freeze import frozen_eval

        rows: list[dict[str, torch.Tensor]] = []
        with frozen_eval(victim):
            for t in item_index.tolist():
                rows.append(feature_attack_one(victim, int(t), train, self.config))
        return {m: torch.cat([r[m] for r in rows]) for m in rows[0]}, {}


class FeatureFGSM(FeatureAttack):
    """Feature-space FGSM (one FGM step), the UAT-MC paper's Table 2 attack."""

    name: ClassVar[str] = "feature_fgsm"


class FeaturePGD(FeatureAttack):
    """Feature-space PGD (10 steps by default), the UAT-MC paper's Table 2 attack."""

    name: ClassVar[str] = "feature_pgd"
    config_class: ClassVar[type] = FeaturePGDConfig


def config_dict(config: FeatureAttackConfig) -> dict[str, Any]:
    out = asdict(config)
    out["modalities"] = list(config.modalities)
    return out
