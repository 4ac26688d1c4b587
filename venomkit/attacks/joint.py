"""Joint image + text promotion attack, with or without cross-modal gradient alignment.

PGD on the pixels and HotFlip on the tokens, alternating: after every ``flip_every`` pixel
steps one token-flip round runs. With ``align_weight = lambda > 0`` both modalities minimise

    L = L_promo(x, t) - lambda * cos(dL_promo/df_v, dL_promo/df_t)

(the multimodal coordination term of UAT-MC, arXiv 2605.06238, computed with
``create_graph=True`` by :func:`~venomkit.attacks.objectives.gradient_alignment`), so the
two perturbations push the target's representation the same way. The term has a gradient
only when the promotion loss is curved in the features: use ``objective=soft`` (the
hinge's feature gradient is piecewise constant for a VBPR-style linear victim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from venomkit.attacks.base import Attack, AttackConfig, Forward, IterativeConfig, pgd_loop
from venomkit.attacks.objectives import gradient_alignment
from venomkit.attacks.pgd import PromotionConfig
from venomkit.attacks.token_hotflip import TextBudgetConfig, TextFlipper
from venomkit.config import check_int, check_number


@dataclass
class JointConfig(IterativeConfig, PromotionConfig, TextBudgetConfig):
    """PGD (eps 8/255) + HotFlip (max_edit_ratio 0.25); ``align_weight`` lambda (0 = no alignment).

    ``flip_every``: a token-flip round after every this many pixel steps.
    """

    align_weight: float = 0.0
    flip_every: int = 2
    keep_best: bool = False

    def __post_init__(self) -> None:
        IterativeConfig.__post_init__(self)
        self.check_promotion()
        self.check_text_budget()
        check_number("align_weight", self.align_weight, 0)
        check_int("flip_every", self.flip_every)
        if self.keep_best:
            raise ValueError("keep_best must be false for the joint attack (the text changes between pixel steps)")


class JointAttack(Attack):
    """Alternating PGD on pixels and HotFlip on tokens (UAT-MC-style alignment optional)."""

    name: ClassVar[str] = "joint"
    config_class: ClassVar[type[AttackConfig]] = JointConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual", "text")

    def text_within_budget(self, victim, clean, adv):
        return self.config.within_text_budget(victim.text_encoder, clean, adv)

    def perturb(self, model, batch):
        images, texts, item_index, users, knowledge = batch.images, batch.texts, batch.item_index, batch.users, batch.knowledge
        for m in ("visual", "text"):
            if m not in model.modalities:
                raise ValueError(f"the joint attack needs a victim reading images and texts; {model.kind} lacks {m}")
        cfg: JointConfig = self.config  # type: ignore[assignment]
        objective = cfg.promotion_objective().prepare(model, item_index, users, knowledge)
        enc = model.text_encoder
        flipper = TextFlipper(enc, list(texts), cfg, knowledge, item_index.device)
        state = {"images": images.detach(), "loss": None, "align": torch.zeros(item_index.numel())}

        def total(f_v: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
            promo = objective(Forward(model, item_index, {"visual": f_v, "text": f_t}))
            if cfg.align_weight == 0:
                return promo
            projections = model.feature_projections() if f_v.shape != f_t.shape else None
            cos = gradient_alignment(promo, f_v, f_t, projections)
            state["align"] = cos.detach().cpu()
            return promo - cfg.align_weight * cos

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            state["images"] = x.detach()
            f_v = model.image_encoder(x)
            with torch.no_grad():
                f_t = enc.forward_tokens(flipper.ids)
            f_t = f_t.requires_grad_(cfg.align_weight > 0)
            if cfg.align_weight > 0 and not f_v.requires_grad:
                f_v = f_v.detach().requires_grad_(True)
            with torch.enable_grad():
                out = total(f_v, f_t)
            return out if x.requires_grad else out.detach()

        def flip_round(t: int) -> None:
            if (t + 1) % cfg.flip_every or not bool(flipper.active().any()):
                return
            with torch.no_grad():
                f_v = model.image_encoder(state["images"])

            def loss_of_texts(batch_texts):
                with torch.enable_grad():
                    f_t = enc(batch_texts)
                    fv = f_v.detach().requires_grad_(cfg.align_weight > 0)
                    f_t = f_t.detach().requires_grad_(cfg.align_weight > 0)
                    return total(fv, f_t).detach()

            emb = flipper.embeddings().detach().requires_grad_(True)
            fv = f_v.detach().requires_grad_(cfg.align_weight > 0)
            loss = total(fv, enc.forward_embeddings(emb, flipper.ids))
            (grad,) = torch.autograd.grad(loss.sum(), emb)
            with torch.no_grad():
                current = loss_of_texts(flipper.texts)
            flipper.step(grad, loss_of_texts, current)

        adv, final, first = pgd_loop(loss_fn, images, cfg, item_index, extra_step=flip_round, desc=f"{self.name} steps")
        out_texts = [t if int(n) > 0 else c for t, c, n in zip(flipper.texts, texts, flipper.edits)]
        return adv, out_texts, {
            "objective_before": first,
            "objective_after": final,
            "edits": flipper.edits.float(),
            "alignment": state["align"],
        }
