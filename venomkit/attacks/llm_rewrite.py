"""Black-box LLM rewrite of item descriptions (TextSimu / RecTextAttack style).

A language model proposes ``n_candidates`` rewrites of each target's description, prompted
with the descriptions of popular items as style examples
(``venomkit.generators.llm_text.LLMRewriter``; default ``zoo:toyshop-lm``, any transformers
causal LM folder or id works). The attack only QUERIES the victim: it keeps the candidate
with the lowest promotion loss among those whose text-encoder cosine similarity to the
original stays >= ``min_similarity`` (the original itself is always a candidate, so the
attack never makes a target worse). The base class reverts any text below the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence

import torch
import torch.nn.functional as F

from venomkit.attacks.base import Attack, AttackConfig, Forward
from venomkit.attacks.pgd import PromotionConfig
from venomkit.config import check_int, check_number
from venomkit.progress import progress as progress_bar
from venomkit.victims.base import Victim


class Rewriter(Protocol):
    def rewrite(self, texts: Sequence[str], n: int, style_examples: Sequence[str], temperature: float, seed: int) -> list[list[str]]: ...


@dataclass
class LLMRewriteConfig(AttackConfig, PromotionConfig):
    """LLM rewrite settings.

    Attributes:
        lm: the rewriting LM's spec (``zoo:toyshop-lm``, a folder, a transformers id).
        n_candidates: rewrites proposed per target.
        min_similarity: lowest text-encoder cosine to the original a kept rewrite may have.
        n_style_examples: popular items' descriptions shown to the LM.
        sampling_temperature: the LM's sampling temperature.
    """

    lm: str = "zoo:toyshop-lm"
    n_candidates: int = 8
    min_similarity: float = 0.8
    n_style_examples: int = 3
    sampling_temperature: float = 0.9

    def __post_init__(self) -> None:
        AttackConfig.__post_init__(self)
        self.check_promotion()
        if not isinstance(self.lm, str) or not self.lm:
            raise ValueError(f"lm must be a non-empty model spec, got {self.lm!r}")
        for name in ("n_candidates", "n_style_examples"):
            check_int(name, getattr(self, name))
        check_number("min_similarity", self.min_similarity, -1, 1)
        check_number("sampling_temperature", self.sampling_temperature, 0, low_open=True)


class LLMRewrite(Attack):
    """Keep the LM rewrite that most lowers the promotion loss within the similarity budget."""

    name: ClassVar[str] = "llm_rewrite"
    config_class: ClassVar[type[AttackConfig]] = LLMRewriteConfig
    perturbs: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, config: Any = None, *, rewriter: Rewriter | None = None, surrogate=None, **overrides: Any):
        super().__init__(config, surrogate=surrogate, **overrides)
        if rewriter is not None and not callable(getattr(rewriter, "rewrite", None)):
            raise ValueError("rewriter must have a rewrite(texts, n, style_examples, temperature, seed) method")
        self._rewriter = rewriter

    @property
    def rewriter(self) -> Rewriter:
        if self._rewriter is None:
            from venomkit.generators.llm_text import LLMRewriter

            self._rewriter = LLMRewriter(self.config.lm)
        return self._rewriter

    def similarity(self, victim: Victim, clean: Sequence[str], adv: Sequence[str]) -> torch.Tensor:
        """Text-encoder cosine similarity of each pair (B,)."""
        with torch.no_grad():
            return F.cosine_similarity(victim.text_encoder(list(clean)), victim.text_encoder(list(adv)), dim=1)

    def text_within_budget(self, victim: Victim, clean: str, adv: str) -> bool:
        return clean == adv or float(self.similarity(victim, [clean], [adv])[0]) >= self.config.min_similarity - 1e-6

    def perturb(self, model, batch):
        images, texts, item_index, users, knowledge = batch.images, batch.texts, batch.item_index, batch.users, batch.knowledge
        if "text" not in model.modalities or model.text_encoder is None:
            raise ValueError(f"{self.name} edits texts: the victim reads no text")
        cfg: LLMRewriteConfig = self.config  # type: ignore[assignment]
        if knowledge.texts is None:
            raise ValueError("llm_rewrite imitates popular items: pass Knowledge(popularity=..., texts=...)")
        targets = set(item_index.tolist())
        popular = [i for i in knowledge.popular_items(cfg.n_style_examples + len(targets)).tolist() if i not in targets]
        style = [knowledge.texts[i] for i in popular[: cfg.n_style_examples]]
        objective = cfg.promotion_objective().prepare(model, item_index, users, knowledge)
        fixed = self.fixed_features(model, images, texts)

        def loss_of_texts(batch_texts: list[str]) -> torch.Tensor:
            feats = dict(fixed)
            feats["text"] = model.text_encoder(batch_texts)
            return objective(Forward(model, item_index, feats))

        # One LM call per target with a seed of its own, so a target's rewrites do not depend on its batch.
        proposals: list[list[str]] = []
        calls = progress_bar(list(zip(texts, item_index.tolist())), desc=f"{self.name} rewrites", unit="target", leave=False)
        for text, item in calls:
            (cands,) = self.rewriter.rewrite([text], cfg.n_candidates, style, cfg.sampling_temperature, cfg.seed * 1_000_003 + item)
            proposals.append([c for c in cands if isinstance(c, str) and c.strip()])
        with torch.no_grad():
            best_loss = loss_of_texts(list(texts))
        first = best_loss.clone()
        best = list(texts)
        best_sim = torch.ones(len(texts))
        width = max((len(p) for p in proposals), default=0)
        for c in range(width):
            cand = [p[c] if c < len(p) else t for p, t in zip(proposals, texts)]
            sim = self.similarity(model, texts, cand).cpu()
            with torch.no_grad():
                loss = loss_of_texts(cand)
            for b in range(len(texts)):
                if c < len(proposals[b]) and sim[b] >= cfg.min_similarity and loss[b] < best_loss[b] - 1e-7:
                    best_loss[b], best[b], best_sim[b] = loss[b], cand[b], sim[b]
        n_valid = torch.tensor([float(len(p)) for p in proposals])
        return None, best, {"objective_before": first, "objective_after": best_loss, "similarity": best_sim, "proposals": n_valid}
