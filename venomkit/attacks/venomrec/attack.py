"""VenomRec's content edit: Exposure Alignment + Cross-modal Interactive Perturbation, on raw content.

VenomRec (arXiv 2602.06409) poisons a multimodal-LLM recommender so that a target item is
exposed to many users. Its released code swaps keywords and moves a precomputed 512-d CLIP
vector; here the edit is made to what a seller uploads -- the target's PNG pixels and its
description -- and read by the ranker's own vision tower and tokenizer
(:class:`~venomkit.victims.mllm.victim.MLLMVictim`). The poisoning itself (compromised users
whose fine-tuning histories hold the edited target) is :mod:`venomkit.attacks.venomrec.poisoning`.

Objective, per target (minimised; Sec. 4.1-4.2)::

    L(x, w) = align_weight * (1 - cos(r(x, w), p)) - score_weight * mean_{u in U} s(u | x, w)

``r`` the fused representation, ``p`` the high-exposure prototype
(:mod:`venomkit.attacks.venomrec.exposure`), ``s`` the ranker's ``logit(yes) - logit(no)`` for
the objective users ``U`` (``TargetBatch.users``, default ``MLLMVictim.default_users()``).

Cross-modal Interactive Perturbation, ``rounds`` times::

    masks  <- cross-modal masks on (x, w)         (masks.py: attention | saliency | random)
    x      <- image_steps masked PGD steps: x - a * sign(grad_x L) * M_pixels, projected to
              ||x - x0||_inf <= eps_t and [0, 1]  (M_pixels: the photo pixels of the top-rho_v patches)
    masks  <- recomputed on the edited image         (``coupled``; the decoupled ablation keeps the first)
    w      <- token substitutions at the top-rho_t positions: first-order scores over the
              language model's embedding table (HotFlip's (E[v] - E[w]) . dL/de), real words
              only, exact re-scoring of the ``n_candidates`` best, kept only if L falls;
              at most ``max_edit_ratio`` of the text's tokens in all
    eps_t  <- min(eps_t * growth, eps) for targets whose L fell by >= ``progress`` (relative)

``edit`` selects both modalities or one (the single-modality ablations). Budgets: L-inf
``eps`` on the pixels (the base class projects to it), ``max_edit_ratio`` on the tokens; pixels
outside every round's mask are never changed.

Shape:
    images (B, 3, H, W) in [0, 1] (or same-size groups of native photos), texts B strings.

Example::

    victim = MLLMVictim.from_dataset(MLLMRanker.load("zoo:toyshop-vlm"), dataset, n_users=50)
    result = VenomRec(rounds=3)(victim, TargetBatch(targets, images, texts))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

import torch

from venomkit.attacks.base import Attack, AttackConfig, check_budget, target_generator
from venomkit.attacks.targets import TargetBatch
from venomkit.attacks.token_hotflip import TextBudgetConfig, TextFlipper
from venomkit.attacks.venomrec.exposure import ExposureRegion, exposure_region, fused_representations
from venomkit.attacks.venomrec.masks import CrossModalMasks, attention_scores, patch_scores_from_pixels, pixel_mask, random_scores, select
from venomkit.config import check_int, check_number
from venomkit.progress import progress as progress_bar
from venomkit.victims.scoring import TokenTexts


@dataclass
class VenomRecConfig(AttackConfig, TextBudgetConfig):
    """VenomRec's content edit (module docstring); token-budget fields from ``TextBudgetConfig``.

    Attributes:
        eps: the L-inf pixel budget's cap (in [0, 1] units); eps_start: the first rounds' budget;
            growth: its factor after a round of progress (the adaptive budget, capped at eps);
            progress: the relative fall of L that counts as progress.
        rounds: coupled image/text rounds; image_steps: masked PGD steps per round;
            step_size: PGD step (None: 2.5 * eps_start / image_steps).
        rho_t, rho_v: shares of text tokens / image patches selected.
        mask: ``attention`` (eager attention, text -> image), ``saliency`` (gradient norms) or
            ``random`` (ablation); layers: attention layers averaged (None: all).
        coupled: recompute the masks after each modality's edit (False: the decoupled ablation).
        edit: ``both``, ``image`` or ``text``.
        flips_per_round: token substitutions tried per round.
        align_weight, score_weight: weights of the two objective terms.
        exposure_k, exposure_items: the K of "exposed" and the size of the prototype's item set.
    """

    eps: float = 16 / 255
    eps_start: float = 8 / 255
    growth: float = 1.25
    progress: float = 0.02
    rounds: int = 3
    image_steps: int = 5
    step_size: float | None = None
    rho_t: float = 0.3
    rho_v: float = 0.3
    mask: Literal["attention", "saliency", "random"] = "attention"
    layers: list[int] | None = None
    coupled: bool = True
    edit: Literal["both", "image", "text"] = "both"
    flips_per_round: int = 1
    align_weight: float = 1.0
    score_weight: float = 1.0
    exposure_k: int = 20
    exposure_items: int = 20
    max_edit_ratio: float = 0.15

    def __post_init__(self) -> None:
        AttackConfig.__post_init__(self)
        self.check_text_budget()
        check_budget(self.eps)
        check_budget(self.eps_start, name="eps_start")
        check_number("progress", self.progress, 0, low_open=True)
        if self.eps_start > self.eps:
            raise ValueError(f"need eps_start <= eps (the budget grows from eps_start up to eps), got eps_start={self.eps_start}, eps={self.eps}")
        check_number("growth", self.growth, 1)
        for name in ("rho_t", "rho_v"):
            check_number(name, getattr(self, name), 0, 1, low_open=True)
        for name in ("rounds", "image_steps", "flips_per_round", "exposure_k", "exposure_items"):
            check_int(name, getattr(self, name), 1)
        if self.step_size is not None:
            check_number("step_size", self.step_size, 0, low_open=True)
        for name in ("align_weight", "score_weight"):
            check_number(name, getattr(self, name), 0)
        if self.align_weight == 0 and self.score_weight == 0:
            raise ValueError("align_weight and score_weight are both 0: the objective would be empty")
        if self.mask not in ("attention", "saliency", "random"):
            raise ValueError(f"mask must be 'attention', 'saliency' or 'random', got {self.mask!r}")
        if self.edit not in ("both", "image", "text"):
            raise ValueError(f"edit must be 'both', 'image' or 'text', got {self.edit!r}")
        if not isinstance(self.coupled, bool):
            raise ValueError(f"coupled must be true or false, got {self.coupled!r}")
        if self.layers is not None and (not isinstance(self.layers, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.layers)):
            raise ValueError(f"layers must be a list of integers or null, got {self.layers!r}")


class VenomRec(Attack):
    """Exposure-aligned, attention-guided coupled edits of a target's pixels and tokens (module docstring)."""

    name: ClassVar[str] = "venomrec"
    config_class: ClassVar[type[AttackConfig]] = VenomRecConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual", "text")

    def __init__(self, config: Any = None, *, surrogate: Any = None, **overrides: Any) -> None:
        super().__init__(config, surrogate=surrogate, **overrides)
        self._regions: dict[int, ExposureRegion] = {}
        self.edit_masks: dict[str, torch.Tensor] = {}

    def text_within_budget(self, victim, clean: str, adv: str) -> bool:
        return self.config.within_text_budget(victim.text_tokens, clean, adv)

    def region(self, model, exclude: Sequence[int] = ()) -> ExposureRegion:
        """The model's high-exposure region (computed once per model)."""
        key = id(model)
        if key not in self._regions:
            cfg: VenomRecConfig = self.config  # type: ignore[assignment]
            self._regions[key] = exposure_region(model, k=cfg.exposure_k, n_items=cfg.exposure_items, exclude=exclude)
        return self._regions[key]

    # -- the objective ------------------------------------------------------------------------
    def objective(self, model, region: ExposureRegion, batch: TargetBatch, images: torch.Tensor,
                  texts: list[str] | TokenTexts) -> tuple[torch.Tensor, torch.Tensor]:
        """(L (B,), alignment loss (B,)) of content ``images`` / ``texts`` (strings or TokenTexts)."""
        cfg: VenomRecConfig = self.config  # type: ignore[assignment]
        strings = texts.texts if isinstance(texts, TokenTexts) else list(texts)
        embeddings = model.text_tokens.row_embeddings(texts) if isinstance(texts, TokenTexts) else None
        fused = fused_representations(model.ranker, images, strings, text_embeddings=embeddings)
        align = region.alignment_loss(fused)
        loss = cfg.align_weight * align
        if cfg.score_weight > 0:
            scores = model.target_scores(batch.users, images, texts, batch.item_index)  # (U', B)
            loss = loss - cfg.score_weight * scores.mean(0)
        return loss, align

    # -- the masks ----------------------------------------------------------------------------
    def masks(self, model, region, batch: TargetBatch, images: torch.Tensor, flipper: TextFlipper, round_index: int) -> CrossModalMasks:
        cfg: VenomRecConfig = self.config  # type: ignore[assignment]
        ranker = model.ranker
        lengths = model.text_tokens.real_mask(flipper.ids).sum(1).tolist()  # each text's tokens (ranker.text_ids)
        n_patches = [int(ranker.family.token_index_map(*images.shape[-2:]).max()) + 1] * len(lengths)
        if cfg.mask == "attention":
            token_scores, patch_scores = attention_scores(ranker, images, flipper.texts, cfg.layers)
        elif cfg.mask == "random":
            seeds = [target_generator(cfg.seed + round_index, t).initial_seed() for t in batch.item_index.tolist()]
            token_scores, patch_scores = random_scores(lengths, n_patches, seeds)
        else:
            x = images.detach().requires_grad_(True)
            emb = flipper.embeddings().detach().requires_grad_(True)
            loss, _ = self.objective(model, region, batch, x, TokenTexts(flipper.ids, emb, list(flipper.texts)))
            grad_x, grad_e = torch.autograd.grad(loss.sum(), [x, emb])
            token_scores = [grad_e[k, : lengths[k]].norm(dim=-1).cpu() for k in range(len(lengths))]
            patch_scores = [patch_scores_from_pixels(ranker, grad_x[k], n_patches[k]) for k in range(len(lengths))]
        # only tokens the budget lets the attack edit (real words, not stop-words or the category) compete
        editable = flipper.editable.cpu()
        token_scores = [s.float().masked_fill(~editable[k, : s.numel()], float("-inf")) for k, s in enumerate(token_scores)]
        return select(token_scores, patch_scores, cfg.rho_t, cfg.rho_v)

    # -- the edit -----------------------------------------------------------------------------
    def perturb(self, model, batch: TargetBatch):
        if not hasattr(model, "ranker") or model.text_tokens is None:
            raise ValueError(f"{self.name} edits content for a multimodal-LLM ranker: pass an MLLMVictim, got {type(model).__name__}")
        cfg: VenomRecConfig = self.config  # type: ignore[assignment]
        clean = batch.images
        b = len(batch)
        region = self.region(model, exclude=batch.item_index.tolist())
        flipper = TextFlipper(model.text_tokens, list(batch.texts), cfg, batch.knowledge, batch.item_index.device)
        base_editable = flipper.editable.clone()
        x = clean.detach().clone()
        eps_t = torch.full((b,), float(cfg.eps_start))
        step = cfg.step_size if cfg.step_size is not None else 2.5 * cfg.eps_start / cfg.image_steps
        union = torch.zeros_like(clean[:, :1])
        token_union = torch.zeros_like(base_editable)
        with torch.no_grad():
            loss, align = self.objective(model, region, batch, x, list(flipper.texts))
        first_loss, first_align = loss.clone(), align.clone()
        masks = None
        rounds = progress_bar(range(cfg.rounds), desc=f"{self.name} rounds ({b} targets)", unit="round", leave=False)
        for r in rounds:
            if masks is None or cfg.coupled:
                masks = self.masks(model, region, batch, x, flipper, r)
            if cfg.edit in ("both", "image"):
                m = torch.stack([pixel_mask(model.ranker, masks.patches[k], *x.shape[-2:]) for k in range(b)]).to(x.device)
                union = torch.maximum(union, m)
                x = self._masked_pgd(model, region, batch, x, clean, flipper, m, eps_t, step)
                if cfg.coupled:
                    masks = self.masks(model, region, batch, x, flipper, r)
            if cfg.edit in ("both", "text"):
                token_union |= self._token_round(model, region, batch, x, flipper, base_editable, masks)
            with torch.no_grad():
                new_loss, align = self.objective(model, region, batch, x, list(flipper.texts))
            grew = (loss - new_loss) >= cfg.progress * loss.abs().clamp_min(1e-6)
            eps_t = torch.where(grew.cpu(), (eps_t * cfg.growth).clamp(max=cfg.eps), eps_t)
            loss = new_loss
        out_texts = [t if int(n) > 0 else c for t, c, n in zip(flipper.texts, batch.texts, flipper.edits)]
        self.edit_masks = {"pixels": union.bool().cpu(), "tokens": token_union.cpu()}  # what this call was allowed to edit
        return x.detach(), out_texts, {
            "objective_before": first_loss,
            "objective_after": loss,
            "alignment_before": first_align,
            "alignment_after": align,
            "eps_final": eps_t,
            "edits": flipper.edits.float(),
            "pixel_share": union.flatten(1).mean(1),
        }

    def _masked_pgd(self, model, region, batch, x, clean, flipper, mask, eps_t, step) -> torch.Tensor:
        """``image_steps`` signed steps on the masked pixels, projected to each target's eps_t."""
        cfg: VenomRecConfig = self.config  # type: ignore[assignment]
        eps = eps_t.view(-1, 1, 1, 1).to(x.device, x.dtype)
        best, best_loss = x.detach().clone(), None
        texts = list(flipper.texts)
        for _ in range(cfg.image_steps):
            x = x.detach().requires_grad_(True)
            loss, _ = self.objective(model, region, batch, x, texts)
            (grad,) = torch.autograd.grad(loss.sum(), x)
            with torch.no_grad():
                if best_loss is None:
                    best_loss = loss.detach()
                else:
                    better = loss.detach() < best_loss
                    best[better], best_loss = x.detach()[better], torch.where(better, loss.detach(), best_loss)
                x = x - step * grad.sign() * mask
                x = torch.min(torch.max(x, clean - eps), clean + eps).clamp(0.0, 1.0)
        with torch.no_grad():
            final, _ = self.objective(model, region, batch, x, texts)
            better = final < best_loss
            best[better] = x[better]
        return best

    def _token_round(self, model, region, batch, x, flipper: TextFlipper, base_editable: torch.Tensor, masks: CrossModalMasks) -> torch.Tensor:
        """Up to ``flips_per_round`` HotFlip substitutions per target, at the masked positions only; returns them (B, L)."""
        cfg: VenomRecConfig = self.config  # type: ignore[assignment]
        allowed = torch.zeros_like(base_editable)
        for k, tokens in enumerate(masks.tokens):
            allowed[k, : tokens.numel()] = tokens.to(allowed.device)
        flipper.editable = base_editable & allowed
        flipper.stopped[:] = False

        def loss_of_texts(texts: list[str]) -> torch.Tensor:
            return self.objective(model, region, batch, x, texts)[0]

        with torch.no_grad():
            current = loss_of_texts(list(flipper.texts))
        for _ in range(cfg.flips_per_round):
            if not bool(flipper.active().any()):
                break
            emb = flipper.embeddings().detach().requires_grad_(True)
            loss, _ = self.objective(model, region, batch, x, TokenTexts(flipper.ids, emb, list(flipper.texts)))
            (grad,) = torch.autograd.grad(loss.sum(), emb)
            current = flipper.step(grad, loss_of_texts, current)
        allowed_now = flipper.editable
        flipper.editable = base_editable
        return allowed_now

