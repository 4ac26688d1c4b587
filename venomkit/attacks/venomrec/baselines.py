"""VenomRec's baselines (arXiv 2602.06409, Sec. 5.1), as content edits within the same budgets.

Each is an :class:`~venomkit.attacks.base.Attack` on an ``MLLMVictim``, so the poisoning runner
treats it exactly like VenomRec (same compromised users, same fine-tune, same ER@K):

* :class:`DirectBoosting` -- the target is injected unedited (only the poisoned rows act);
* :class:`RandomInjection` -- random edits of the same size: uniform sign noise of ``eps`` on
  every pixel, and ``max_edit_ratio`` of the editable tokens replaced by random real words;
* :class:`PopularItemMimicking` -- look like the most popular item: each pixel moved towards
  that item's photo (resized to the target's size) by at most ``eps``, and editable tokens
  replaced by the popular item's title words;
* :class:`ShadowCast` -- a ShadowCast-style image poison (Xu et al., NeurIPS 2024): PGD on the
  pixels pulling the vision features the language model reads (``get_image_features``,
  mean over patches) towards the mean of the ``n_popular`` most popular items'.

The single-modality, decoupled and random-mask ablations are VenomRec settings
(``edit: image|text``, ``coupled: false``, ``mask: random``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from venomkit.attacks.base import Attack, AttackConfig, IterativeConfig, check_budget, pgd_loop, target_generator
from venomkit.attacks.targets import TargetBatch
from venomkit.attacks.token_hotflip import TextBudgetConfig, TextFlipper
from venomkit.config import check_int
from venomkit.encoders.preprocess import resize_images


@dataclass
class ContentBudgetConfig(AttackConfig, TextBudgetConfig):
    """The budgets VenomRec's edits use: L-inf ``eps`` on pixels, ``max_edit_ratio`` of the tokens."""

    eps: float = 16 / 255
    max_edit_ratio: float = 0.15

    def __post_init__(self) -> None:
        AttackConfig.__post_init__(self)
        self.check_text_budget()
        check_budget(self.eps)


class _ContentBaseline(Attack):
    config_class: ClassVar[type[AttackConfig]] = ContentBudgetConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual", "text")

    def text_within_budget(self, victim, clean: str, adv: str) -> bool:
        return self.config.within_text_budget(victim.text_tokens, clean, adv)

    def _flipper(self, model, batch: TargetBatch) -> TextFlipper:
        if getattr(model, "text_tokens", None) is None:
            raise ValueError(f"{self.name} edits the texts a ranker reads: the victim reads no text")
        return TextFlipper(model.text_tokens, list(batch.texts), self.config, batch.knowledge, batch.item_index.device)

    @staticmethod
    def _substitute(flipper: TextFlipper, row: int, choices: list[tuple[int, int]]) -> None:
        """Apply (position, token) substitutions in order while the budget lasts; each must round-trip."""
        for position, token in choices:
            if flipper.edits[row] >= flipper.budget[row]:
                return
            text = flipper.flipped_text(row, position, token)
            if text is not None:
                flipper.apply(row, position, token, text)


class DirectBoosting(_ContentBaseline):
    """The target as it is: only the compromised users' rows poison the fine-tune."""

    name: ClassVar[str] = "direct_boosting"

    def perturb(self, model, batch: TargetBatch):
        return batch.images.clone(), list(batch.texts), {}


class RandomInjection(_ContentBaseline):
    """Uniform sign noise of ``eps`` and random real-word substitutions (seeded per target)."""

    name: ClassVar[str] = "random_injection"

    def perturb(self, model, batch: TargetBatch):
        flipper = self._flipper(model, batch)
        images = []
        for row, item in enumerate(batch.item_index.tolist()):
            g = target_generator(self.config.seed, item)
            noise = (torch.rand(batch.images.shape[1:], generator=g) * 2 - 1).sign().to(batch.images)
            images.append((batch.images[row] + self.config.eps * noise).clamp(0, 1))
            positions = torch.nonzero(flipper.editable[row]).view(-1)
            order = positions[torch.randperm(len(positions), generator=g)].tolist()
            picks = flipper.candidate_ids[torch.randint(len(flipper.candidate_ids), (len(order),), generator=g)].tolist()
            self._substitute(flipper, row, list(zip(order, picks)))
        return torch.stack(images), list(flipper.texts), {"edits": flipper.edits.float()}


class PopularItemMimicking(_ContentBaseline):
    """Move the photo towards the most popular item's (by <= eps) and borrow its title words."""

    name: ClassVar[str] = "popular_item_mimicking"

    def perturb(self, model, batch: TargetBatch):
        knowledge = batch.knowledge
        targets = set(batch.item_index.tolist())
        popular = next(int(i) for i in knowledge.popular_items(len(targets) + 1) if int(i) not in targets)
        if knowledge.images is None:
            raise ValueError(f"{self.name} copies a popular item's photo: pass Knowledge(images=...)")
        photo = knowledge.images([popular])[0].to(batch.images)
        photo = resize_images(photo.unsqueeze(0), tuple(batch.images.shape[-2:]), "bicubic")[0]
        images = batch.images + (photo - batch.images).clamp(-self.config.eps, self.config.eps)
        flipper = self._flipper(model, batch)
        tokens = flipper.encoder
        title = model.titles[popular] if hasattr(model, "titles") else knowledge.texts[popular]
        words = [t for t in tokens.tokenize([title])[0].tolist() if t in set(flipper.candidate_ids.tolist())]
        for row in range(len(batch)):
            positions = torch.nonzero(flipper.editable[row]).view(-1).tolist()
            self._substitute(flipper, row, [(p, words[k % len(words)]) for k, p in enumerate(positions)] if words else [])
        return images.clamp(0, 1), list(flipper.texts), {"edits": flipper.edits.float(), "popular_item": torch.full((len(batch),), float(popular))}


@dataclass
class ShadowCastConfig(ContentBudgetConfig):
    """ShadowCast-style: ``steps`` PGD steps of 2.5 eps / steps towards ``n_popular`` items' vision features."""

    steps: int = 20
    n_popular: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps, 1)
        check_int("n_popular", self.n_popular, 1)


class ShadowCast(_ContentBaseline):
    """Pixel poison matching popular items' vision features (the text is left as it is)."""

    name: ClassVar[str] = "shadowcast"
    config_class: ClassVar[type[AttackConfig]] = ShadowCastConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual",)

    @staticmethod
    def vision_features(ranker, images) -> torch.Tensor:
        """(B, d) the image features the language model reads, mean over each image's tokens."""
        inputs = ranker.image_inputs(images)
        core = ranker._core()
        features = core.get_image_features(**inputs.model_kwargs)
        features = getattr(features, "pooler_output", features)
        if isinstance(features, (list, tuple)):
            return torch.stack([f.reshape(-1, f.shape[-1]).mean(0) for f in features])
        return features.reshape(len(inputs.n_tokens), -1, features.shape[-1]).mean(1)

    def perturb(self, model, batch: TargetBatch):
        cfg: ShadowCastConfig = self.config  # type: ignore[assignment]
        knowledge = batch.knowledge
        if knowledge.images is None:
            raise ValueError(f"{self.name} reads popular items' photos: pass Knowledge(images=...)")
        targets = set(batch.item_index.tolist())
        popular = [int(i) for i in knowledge.popular_items(cfg.n_popular + len(targets)) if int(i) not in targets][: cfg.n_popular]
        ranker = model.ranker
        with torch.no_grad():
            goal = self.vision_features(ranker, [im.to(batch.images) for im in knowledge.images(popular)]).mean(0)
        loop = IterativeConfig(seed=cfg.seed, eps=cfg.eps, steps=cfg.steps, random_start=False)

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            return (self.vision_features(ranker, x) - goal).pow(2).sum(1)

        adv, final, first = pgd_loop(loss_fn, batch.images, loop, batch.item_index, desc=f"{self.name} steps")
        return adv, None, {"objective_before": first, "objective_after": final}
