"""TAaMR: targeted adversarial attack against multimedia recommenders (Di Noia, Malitesta &
Merra, DSN-W 2020).

A CNN classifier labels the catalog; the attack pushes the target image into the class of the
popular items with a targeted cross-entropy (:class:`~venomkit.attacks.objectives.TAaMRObjective`),
FGSM or PGD at eps 8/255 as in the paper. The classifier is any ``nn.Module`` returning logits
for (N, 3, H, W) images in [0, 1] (``zoo:toyshop-cnn``'s category head on toyshop). Needs
``Knowledge(popularity=..., images=...)`` unless ``target_class`` is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from venomkit.attacks.base import AttackConfig, IterativeConfig, IterativeImageAttack
from venomkit.attacks.objectives import TAaMRObjective
from venomkit.config import check_int
from venomkit.models.freeze import freeze, frozen_eval


@dataclass
class TAaMRConfig(IterativeConfig):
    """TAaMR: eps 8/255 L-inf, 10 PGD steps (``steps=1 step_size=eps random_start=false`` is FGSM).

    Attributes:
        classifier: spec of the classifier the runner loads (``zoo:toyshop-cnn``), or None
            when the caller passes the module.
        head: which attribute head of a multi-head classifier gives the logits.
        n_popular: popular items whose majority class is the target class.
        target_class: fix the target class instead.
    """

    classifier: str | None = "zoo:toyshop-cnn"
    head: str | None = "category"
    n_popular: int = 20
    target_class: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("n_popular", self.n_popular)
        check_int("target_class", self.target_class, 0, optional=True)


class TAaMR(IterativeImageAttack):
    """Class-targeted pixel attack; ``classifier`` is required (an nn.Module returning logits)."""

    name: ClassVar[str] = "taamr"
    config_class: ClassVar[type[AttackConfig]] = TAaMRConfig

    def __init__(self, config: Any = None, *, classifier: nn.Module | None = None, surrogate=None, **overrides: Any):
        super().__init__(config, surrogate=surrogate, **overrides)
        if classifier is None or not isinstance(classifier, nn.Module):
            raise ValueError("classifier must be an nn.Module returning logits (N, C) for images in [0, 1]")
        self.classifier = classifier

    @classmethod
    def from_config(cls, config: TAaMRConfig, *, surrogate=None, device: str = "cpu") -> "TAaMR":
        """TAaMR with its classifier loaded from ``config.classifier`` (a spec, e.g. ``zoo:toyshop-cnn``)."""
        if config.classifier is None:
            raise ValueError("taamr: set classifier=SPEC (e.g. zoo:toyshop-cnn): the CNN whose class the attack moves")
        return cls(config, classifier=load_classifier(config.classifier, config.head, device=device), surrogate=surrogate)

    def __call__(self, victim, batch):
        with frozen_eval(self.classifier):
            return super().__call__(victim, batch)

    def build_objective(self, model, batch):
        cfg = self.config
        self.classifier.to(batch.images.device)
        return TAaMRObjective(self.classifier, cfg.n_popular, cfg.target_class).prepare(model, batch.item_index, batch.users, batch.knowledge)


class HeadClassifier(nn.Module):
    """Logits of one head of a multi-head CNN (``head_logits``) or its whole ``logits``."""

    def __init__(self, encoder: nn.Module, head: str | None = None):
        super().__init__()
        self.encoder, self.head = encoder, head
        if head is not None and hasattr(encoder, "head_logits"):
            heads = getattr(getattr(encoder, "config", None), "heads", None) or {}
            if heads and head not in heads:
                raise ValueError(f"classifier has heads {sorted(heads)}; head {head!r} is not one of them")

    def forward(self, images):
        if self.head is not None and hasattr(self.encoder, "head_logits"):
            heads = self.encoder.head_logits(images)
            if self.head in heads:
                return heads[self.head]
        if hasattr(self.encoder, "logits"):
            return self.encoder.logits(images)
        return self.encoder(images)


def load_classifier(spec: str, head: str | None = None, device: str = "cpu") -> nn.Module:
    """A frozen classifier by spec: a torchvision CNN folder / ``zoo:NAME`` / ``resnetXX:WEIGHTS``."""
    from venomkit.encoders.torchvision_cnn import TorchvisionImageEncoder

    return freeze(HeadClassifier(TorchvisionImageEncoder.from_spec(spec, device=device), head))
