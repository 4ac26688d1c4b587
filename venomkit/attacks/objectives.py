"""Promotion objectives: per-target losses (B,) that an attack MINIMISES.

Every objective is prepared for a batch of targets (constants such as rank thresholds and
hook features are computed once, without gradients, from the CLEAN model) and then called on
a :class:`~venomkit.attacks.base.Forward` of the perturbed content. Constants never depend
on another target's perturbation, so the B targets of a batch do not interact.

Notation: ``s(u, t)`` the victim's score of target ``t`` for user ``u`` (``Forward.target_scores``:
``user_emb[u] . item_emb[t]`` for a feature victim, ``logit(yes) - logit(no)`` for the MLLM ranker;
:mod:`venomkit.victims.scoring`); ``U`` the user set of the objective (all users unless given); users who already
interacted with ``t`` in training are left out (full-sort ranking masks them).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from venomkit.attacks.base import Forward
from venomkit.attacks.targets import Knowledge
from venomkit.config import check_int
from venomkit.victims.base import Victim
from venomkit.victims.scoring import TargetScorer


class PromotionHinge:
    """Rank-promotion loss against the K-th score (the correct direction).

    For target ``t`` and user ``u``, let ``s_K(u, t)`` be the K-th highest clean score among
    the items ``u`` has not seen, target ``t`` itself excluded (a constant: the threshold the
    target must pass to enter u's top-K). The loss is

        hinge:  L_t = mean_u relu(s_K(u, t) - s(u, t) + margin)
        soft:   L_t = mean_u tau * logsumexp(0, (s_K(u, t) - s(u, t) + margin) / tau)
        sigmoid: L_t = mean_u sigmoid((s_K(u, t) - s(u, t) + margin) / tau)


    minimised. Every user still below the threshold has a gradient, unlike maximising
    ``relu(s(u, t) - s_K(u, t) + margin)`` (the UAT-MC release's form), whose gradient is zero
    for exactly those users. The soft variant (softplus) also keeps pushing users just above
    the threshold. The sigmoid variant is a smoothed 1 - HR@K: its gradient concentrates on
    the users near the threshold, the ones a small budget can win. Thresholds come from the clean model; for graph victims, whose other items
    move with the target, this is the usual first-order approximation.
    """

    def __init__(self, k: int = 50, margin: float = 0.0, variant: Literal["hinge", "soft", "sigmoid"] = "hinge", temperature: float = 1.0):
        check_int("k", k)
        if not math.isfinite(margin):
            raise ValueError(f"margin must be finite, got {margin!r}")
        if variant not in ("hinge", "soft", "sigmoid"):
            raise ValueError(f"variant must be 'hinge', 'soft' or 'sigmoid', got {variant!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.k, self.margin, self.variant, self.temperature = k, float(margin), variant, float(temperature)

    def prepare(self, model: TargetScorer, item_index: torch.Tensor, users: torch.Tensor | None, knowledge: Knowledge) -> "PromotionHinge":
        # The victim says what "the K-th score" is: full sort for feature victims, the user's
        # candidate list for the MLLM ranker (venomkit.victims.scoring).
        self.threshold, self.weight = model.rank_thresholds(users, item_index, self.k, knowledge.train)
        self.users = users
        return self

    def __call__(self, out: Forward) -> torch.Tensor:
        s = out.target_scores(self.users)  # (U', B)
        gap = self.threshold - s + self.margin
        if self.variant == "hinge":
            per_user = F.relu(gap)
        elif self.variant == "sigmoid":
            per_user = torch.sigmoid(gap / self.temperature)
        else:
            per_user = self.temperature * F.softplus(gap / self.temperature)
        return (per_user * self.weight).sum(0) / self.weight.sum(0).clamp_min(1.0)


class INSA:
    """INSA, the insider attack of AIP (Liu & Larson, "Adversarial Item Promotion", WWW 2021).

    Raise the mean exponentiated score of the target over all users:

        L_t = -log( mean_u exp(s(u, t)) )

    (the log keeps the step scale independent of the score scale; it is monotone in the
    mean exp-score, so the optimum is the same). Users who interacted with ``t`` are left out.
    """

    def prepare(self, model: TargetScorer, item_index: torch.Tensor, users: torch.Tensor | None, knowledge: Knowledge) -> "INSA":
        self.users = users
        self.weight = None
        if knowledge.train is not None:
            rows = knowledge.train if users is None else knowledge.train[users.cpu().numpy()]
            seen = np.asarray(rows[:, item_index.cpu().numpy()].todense()) > 0
            self.weight = torch.from_numpy(~seen).to(item_index.device)
        return self

    def __call__(self, out: Forward) -> torch.Tensor:
        s = out.target_scores(self.users)  # (U', B)
        if self.weight is not None:
            s = s.masked_fill(~self.weight, float("-inf"))
            count = self.weight.sum(0).clamp_min(1)
        else:
            count = torch.full((s.shape[1],), s.shape[0], device=s.device)
        return -(torch.logsumexp(s, dim=0) - count.float().log())


class EXPA:
    """EXPA, the expert attack of AIP (Liu & Larson, WWW 2021): look like a popular item.

    The adversary picks hook items -- the ``n_hooks`` most popular ones -- and moves the
    target image's visual feature towards their mean feature ``f_hook``:

        L_t = || f(x_t) - f_hook ||_2^2 / || f_hook ||_2^2

    It needs no recommender scores, only the visual feature extractor (the victim's or a
    surrogate's), which is why it transfers across recommenders.
    """

    def __init__(self, n_hooks: int = 1):
        check_int("n_hooks", n_hooks)
        self.n_hooks = n_hooks

    def prepare(self, model: TargetScorer, item_index: torch.Tensor, users, knowledge: Knowledge) -> "EXPA":
        if not isinstance(model, Victim):
            raise ValueError(f"EXPA moves the target towards popular items' feature vectors: {type(model).__name__} has no feature tables (use a feature victim such as VBPR as the surrogate)")
        if "visual" not in model.modalities:
            raise ValueError(f"EXPA moves visual features: victim {getattr(model, 'kind', type(model).__name__)} reads no images")
        hooks = knowledge.popular_items(self.n_hooks + item_index.numel())
        targets = set(item_index.tolist())
        hooks = [h for h in hooks.tolist() if h not in targets][: self.n_hooks]
        with torch.no_grad():
            self.hook_feature = model.clean_features()["visual"][torch.as_tensor(hooks, device=item_index.device)].mean(0)
        self.hooks = hooks
        return self

    def __call__(self, out: Forward) -> torch.Tensor:
        f = out.features["visual"]
        return (f - self.hook_feature).pow(2).sum(1) / self.hook_feature.pow(2).sum().clamp_min(1e-12)


class TAaMRObjective:
    """TAaMR (Di Noia, Malitesta & Merra, DSN-W 2020): move a CNN's class to a popular class.

    A classifier ``g`` (any ``nn.Module`` mapping (N, 3, H, W) in [0, 1] to logits (N, C);
    the victim's feature CNN in the paper) labels the catalog; the target class ``c*`` is the
    majority class among the ``n_popular`` most popular items. The loss is the targeted
    cross-entropy

        L_t = CE(g(x_t), c*)

    minimised: the image drifts into the popular category, and with it the CNN features the
    recommender reads.
    """

    def __init__(self, classifier: nn.Module, n_popular: int = 20, target_class: int | None = None):
        if not isinstance(classifier, nn.Module):
            raise ValueError(f"classifier must be an nn.Module returning logits, got {type(classifier).__name__}")
        check_int("n_popular", n_popular)
        check_int("target_class", target_class, 0, optional=True)
        self.classifier, self.n_popular, self.fixed_class = classifier, n_popular, target_class

    def prepare(self, model: Victim, item_index: torch.Tensor, users, knowledge: Knowledge) -> "TAaMRObjective":
        device = item_index.device
        if self.fixed_class is not None:
            self.target_class = self.fixed_class
        else:
            if knowledge.images is None:
                raise ValueError("TAaMR needs catalog images to find the popular class: pass Knowledge(images=...)")
            from venomkit.encoders.base import encode_images

            popular = knowledge.popular_items(self.n_popular).tolist()
            with torch.no_grad():
                logits = encode_images(self.classifier, [im.to(device) for im in knowledge.images(popular)])
            self.target_class = int(torch.mode(logits.argmax(1)).values)
        return self

    def __call__(self, out: Forward) -> torch.Tensor:
        logits = self.classifier(out.images)
        if self.target_class >= logits.shape[1]:
            raise ValueError(f"target_class {self.target_class} is out of range for {logits.shape[1]} classes")
        labels = torch.full((logits.shape[0],), self.target_class, device=logits.device, dtype=torch.long)
        return F.cross_entropy(logits, labels, reduction="none")


def gradient_alignment(
    loss: torch.Tensor,
    visual: torch.Tensor,
    text: torch.Tensor,
    projections: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cross-modal gradient alignment (UAT-MC, arXiv 2605.06238): cos(dL/df_v, dL/df_t) per target.

    ``loss`` (B,) per-target losses; ``visual`` (B, D) and ``text`` (B, D) the targets'
    re-encoded features in the graph of ``loss``. The gradients are taken with
    ``create_graph=True``, so the cosine itself is differentiable with respect to the
    pixels and token embeddings (a joint attack can maximise it; computing it without
    create_graph -- as the UAT-MC release does for MMGCN -- makes the term a constant).
    When the widths differ, ``projections`` (``Victim.feature_projections()``: per modality
    a (D_m, k) map into one shared space) carries both gradients there first.
    Returns (B,) cosines in [-1, 1].
    """
    if visual.shape != text.shape and projections is None:
        raise ValueError(
            f"gradient alignment compares gradients of the visual and text features, which must have the same "
            f"shape or come with feature projections; got {tuple(visual.shape)} and {tuple(text.shape)}"
        )
    g_v, g_t = torch.autograd.grad(loss.sum(), (visual, text), create_graph=True)
    if projections is not None:
        g_v, g_t = g_v @ projections["visual"], g_t @ projections["text"]
    return F.cosine_similarity(g_v, g_t, dim=1, eps=1e-12)
