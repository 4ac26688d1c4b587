"""UAT and UAT-MC: untargeted adversarial training of a multimodal recommender.

"Band Together: Untargeted Adversarial Training with Multimodal Coordination against
Evasion-based Promotion Attacks" (Xian, Yang, Yu; IJCAI 2026, arXiv 2605.06238).

An evasion-time promotion attack moves ONE unknown target item's content features. UAT
does not know the target, so every item of a BPR batch (positives and negatives) is a
potential target: per batch, the visual and textual feature rows of those items are
perturbed within ``||delta_{i,m}||_2 <= eps * ||f_{i,m}||_2`` to MAXIMISE the batch's BPR loss,
and the model is trained on

    L = L_BPR(clean) + reg + beta * L_BPR(features + delta)                    (UAT)

UAT-MC makes the inner maximisation aware of the cross-modal gradient mismatch (paper
section 3: the visual and textual perturbations of a multi-user attack are pulled by
different user groups and partly cancel, so plain UAT trains against a weaker adversary
than a coordinated attacker): the perturbation maximises

    L_BPR(features + delta) + lambda_align * mean_i cos(g_{i,visual}, g_{i,text})   (UAT-MC)

with ``g_{i,m}`` the gradient of the BPR loss with respect to item i's modality-m row,
computed with ``create_graph=True`` so that the cosine is itself differentiable in the
features (the published code drops this for MMGCN, which turns the term into a constant).
When the two feature widths differ, the gradients are compared after the victim's first
linear map of each modality (``Victim.feature_projections``).

The inner maximisation and the adversarial loss are
``venomkit.victims.feature_adversary`` (shared with AMR); this module adds the paper's
configuration, the modes, starting from a normally trained checkpoint, and the bookkeeping.
Modalities are handled by NAME everywhere (``("visual", "text")``), never by position: the
published release swaps them during adversarial training.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from venomkit.config import check_int, check_number
from venomkit.victims.base import MODALITIES, Victim
from venomkit.victims.feature_adversary import (
    FeatureAdversaryConfig,
    adversarial_bpr_loss,
)

METHODS = ("uat", "uat_mc")


def normalise_method(name: str) -> str:
    """``"uat-mc"``/``"UAT_MC"``/``"uatmc"`` -> ``"uat_mc"``; ``"uat"`` -> ``"uat"``; else ValueError."""
    key = str(name).strip().lower().replace("-", "_")
    if key == "uatmc":
        key = "uat_mc"
    if key not in METHODS:
        raise ValueError(f"unknown defense {name!r}; expected one of uat, uat-mc")
    return key


@dataclass
class UATConfig:
    """Settings of UAT / UAT-MC (paper defaults; every field is a recipe key).

    Attributes:
        method: ``"uat"`` (no alignment term) or ``"uat_mc"`` (``"uat-mc"`` accepted).
        eps: perturbation radius of each item row as a fraction of its L2 norm (paper: 0.1).
        beta: weight of the adversarial BPR term (paper searches 0.1-10; default 1).
        lambda_align: weight of the cross-modal gradient-alignment term of UAT-MC (paper
            range 1-10; default 1). None means 1.0 for uat_mc and 0.0 for uat; uat with a
            non-zero value is an error (that would be UAT-MC).
        steps: inner maximisation steps: 1 = FGM, > 1 = PGD with projection.
        step_size: PGD step as a fraction of each row's radius (default 2.5 / steps; FGM 1).
        random_start: start PGD at a random point of the ball.
        align_reduction: ``"mean"`` or ``"sum"`` of the per-item cosines.
        modalities: the perturbed modalities, canonical order (both for uat_mc).
        epochs, lr, batch_size, weight_decay, patience, eval_every, seed: the fine-tuning
            run (``venomkit.victims.training.train_bpr``), started from the given, normally
            trained victim.
        keep: ``"best"`` restores the epoch with the best validation ``select_metric`` (as
            plain training does); ``"last"`` keeps the final epoch -- early epochs are the
            least robust ones, so ``best`` on clean accuracy favours weak defenses.
        select_metric: validation metric of ``keep="best"`` and of early stopping.
    """

    method: str = "uat_mc"
    eps: float = 0.1
    beta: float = 1.0
    lambda_align: float | None = None
    steps: int = 1
    step_size: float | None = None
    random_start: bool = False
    align_reduction: str = "mean"
    modalities: tuple[str, ...] = ("visual", "text")
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 2048
    weight_decay: float = 0.0
    patience: int | None = None
    eval_every: int = 1
    seed: int = 0
    keep: str = "last"
    select_metric: str = "recall@20"

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.method = normalise_method(self.method)
        if self.lambda_align is None:
            self.lambda_align = 1.0 if self.method == "uat_mc" else 0.0
        for field_name, low, high in (("eps", 0.0, 10.0), ("beta", 0.0, 1000.0), ("lambda_align", 0.0, 1000.0)):
            setattr(self, field_name, check_number(f"{name}.{field_name}", getattr(self, field_name), low, high))
        if self.eps == 0.0:
            raise ValueError(f"{name}.eps must be > 0 (0 is plain BPR training)")
        if self.beta == 0.0:
            raise ValueError(f"{name}.beta must be > 0 (0 is plain BPR training)")
        if self.method == "uat" and self.lambda_align != 0.0:
            raise ValueError(f"{name}.lambda_align must be 0 for method 'uat' (a non-zero value is UAT-MC), got {self.lambda_align}")
        if self.method == "uat_mc" and self.lambda_align == 0.0:
            raise ValueError(f"{name}.lambda_align must be > 0 for method 'uat_mc' (0 is plain UAT)")
        for field_name in ("steps", "epochs", "batch_size", "eval_every"):
            check_int(f"{name}.{field_name}", getattr(self, field_name), 1)
        check_int(f"{name}.patience", self.patience, 0, optional=True)
        check_number(f"{name}.step_size", self.step_size, 0, low_open=True, optional=True)
        check_number(f"{name}.lr", self.lr, 0, low_open=True)
        check_number(f"{name}.weight_decay", self.weight_decay, 0)
        if not isinstance(self.random_start, bool):
            raise ValueError(f"{name}.random_start must be true or false, got {self.random_start!r}")
        if self.align_reduction not in ("mean", "sum"):
            raise ValueError(f"{name}.align_reduction must be 'mean' or 'sum', got {self.align_reduction!r}")
        mods = tuple(self.modalities)
        if not mods or any(m not in MODALITIES for m in mods) or len(set(mods)) != len(mods):
            raise ValueError(f"{name}.modalities must be distinct names from {MODALITIES}, got {self.modalities!r}")
        self.modalities = tuple(m for m in MODALITIES if m in mods)
        if self.method == "uat_mc" and self.modalities != MODALITIES:
            raise ValueError(f"{name}.modalities must be {MODALITIES} for uat_mc: the alignment term compares the two")
        if self.keep not in ("best", "last"):
            raise ValueError(f"{name}.keep must be 'best' or 'last', got {self.keep!r}")
        if not isinstance(self.select_metric, str) or "@" not in self.select_metric:
            raise ValueError(f"{name}.select_metric must look like 'recall@20', got {self.select_metric!r}")

    def adversary(self) -> FeatureAdversaryConfig:
        """The inner maximisation as the shared feature-adversary config (eps as a norm ratio)."""
        return FeatureAdversaryConfig(
            modalities=self.modalities,
            eps=self.eps,
            eps_mode="ratio",
            adv_weight=self.beta,
            steps=self.steps,
            step_size=self.step_size,
            random_start=self.random_start,
            align_weight=float(self.lambda_align or 0.0),
            align_reduction=self.align_reduction,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["modalities"] = list(self.modalities)
        return out


class UATLoss:
    """``train_bpr``'s ``batch_loss`` hook for UAT / UAT-MC; also averages the adversary's figures.

    Callable as ``loss(victim, users, pos, neg) -> scalar``. ``epoch_stats()`` returns the
    per-batch means since its last call -- ``clean_loss`` and ``adv_loss`` (the BPR losses on
    clean and perturbed features), ``adv_inner_loss`` (the BPR loss at the adversary's last
    inner step) and, for UAT-MC, ``adv_align_cos`` (mean cosine of the two modalities'
    gradients at that step) -- then resets them.
    """

    def __init__(self, config: UATConfig) -> None:
        self.config = config
        self.adversary = config.adversary()
        self._sums: dict[str, float] = {}
        self._count = 0

    def __call__(self, victim: Victim, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        stats: dict[str, float] = {}
        loss = adversarial_bpr_loss(victim, users, pos, neg, self.adversary, stats=stats)
        for key, value in stats.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
        self._count += 1
        return loss

    # The feature adversary's stat names -> the names recorded in the training history.
    _NAMES: ClassVar[dict[str, str]] = {"loss": "adv_inner_loss", "align_cos": "adv_align_cos", "clean_loss": "clean_loss", "adv_loss": "adv_loss"}

    def epoch_stats(self) -> dict[str, float]:
        out = {self._NAMES.get(k, k): v / max(self._count, 1) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return out


def check_victim(victim: Victim, config: UATConfig) -> None:
    """ValueError naming what is missing when ``victim`` cannot be trained with ``config``."""
    if not isinstance(victim, Victim):
        raise ValueError(f"victim must be a venomkit Victim, got {type(victim).__name__}")
    missing = [m for m in config.modalities if m not in victim.modalities]
    if missing:
        raise ValueError(
            f"{config.method}: the {victim.kind} victim reads {victim.modalities or 'no content'}; it has no {missing} "
            f"features to perturb (set modalities= to those it reads{'' if config.method == 'uat' else ', and use method=uat'})"
        )


def adversarial_train(victim: Victim, split: Any, config: UATConfig | None = None, *, progress: bool = True) -> tuple[Victim, dict[str, Any]]:
    """Fine-tune a normally trained ``victim`` with UAT or UAT-MC, in place.

    Args:
        victim: a trained content victim (VBPR, MMGCN, AMR, or any ``Victim`` whose
            ``forward`` takes the feature tables), e.g. from ``load_victim``. As in the paper,
            adversarial training starts from a normally trained model.
        split: the ``Split`` the victim was trained on (train / valid / test).
        config: the settings (default ``UATConfig()``: UAT-MC, eps 0.1, beta 1, lambda 1, FGM).
        progress: progress over epochs (``venomkit.progress``: a bar on a terminal, log lines otherwise).

    Returns:
        ``(victim, metrics)``: the same victim object (eval mode) and a JSON-ready dict with
        ``config``, ``test_before`` / ``test_after`` (``evaluate_victim`` on the clean test
        split: Recall/NDCG@{10,20,50}, cold items), ``train`` (the ``TrainResult`` with the
        per-epoch adversary figures), ``seconds_per_epoch``.
    """
    from venomkit.victims.training import evaluate_victim, train_bpr

    config = config or UATConfig()
    check_victim(victim, config)
    before = evaluate_victim(victim, split)
    hook = UATLoss(config)
    last_state: dict[str, torch.Tensor] = {}

    def on_epoch_end(model: Victim, epoch: int, record: dict) -> None:
        record.update(hook.epoch_stats())
        if config.keep == "last":
            last_state.clear()
            last_state.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    t0 = time.perf_counter()
    result = train_bpr(
        victim,
        split,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        patience=config.patience or None,
        eval_every=config.eval_every,
        seed=config.seed,
        batch_loss=hook,
        on_epoch_end=on_epoch_end,
        select_metric=config.select_metric,
        progress=progress,
    )
    if config.keep == "last" and last_state:
        victim.load_state_dict(last_state)
        victim.eval()
    seconds = time.perf_counter() - t0
    after = evaluate_victim(victim, split)
    epoch_seconds = [r["seconds"] for r in result.history]
    metrics: dict[str, Any] = {
        "defense": config.method,
        "kind": victim.kind,
        "config": config.to_dict(),
        "test_before": before,
        "test_after": after,
        "test": after.get("test"),
        "train": result.to_dict(),
        "kept_epoch": result.history[-1]["epoch"] if config.keep == "last" else result.best_epoch,
        "seconds": seconds,
        "seconds_per_epoch": sum(epoch_seconds) / max(len(epoch_seconds), 1),
    }
    return victim, metrics
