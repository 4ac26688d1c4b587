"""Cross-modal gradient mismatch analysis (UAT-MC paper, arXiv 2605.06238, section 3).

A multi-user promotion attack on target item ``t`` minimises ``L = mean_u l_u`` with one
hinge term per user (``l_u = relu(s_K(u) - s(u, t) + margin)``, the correct direction).
Its update of modality ``m`` (visual / text rows ``f_{t,m}``) is the sum of the users'
gradients ``g_{u,m} = d l_u / d f_{t,m}``. The paper asks WHICH users drive each modality:

* **Directional contribution (Eq. 6)**: user u's share of the modality-m update along its
  final direction,  ``c_{u,m} = <g_{u,m}, G_m> / ||G_m||``  with  ``G_m = sum_u g_{u,m}``
  (the projection of u's gradient on the aggregate one; the ``c_{u,m}`` sum to ``||G_m||``).
* **Top-k users per modality**: ``U_m = top-k users by c_{u,m}`` (positive contributions only).
* **Jaccard (Eq. 7)**: ``J_t = |U_visual & U_text| / |U_visual | U_text|``. Low values mean
  the image and the text are pushed by different user groups: the two perturbations pull
  apart and a plain (uncoordinated) adversary underestimates the worst case -- the
  motivation of UAT-MC's alignment term.
* **Restricted attacks**: the feature-space attack re-run with its objective restricted to
  ``U_visual`` and to ``U_text``, and its HR@50 on every user, shows how much each group's
  direction alone promotes the item.

Per-user gradients are exact: the Jacobian of the target's scores for the users with respect
to its feature rows, by batched reverse mode when the victim supports it and by one
forward-over-reverse product per feature dimension otherwise (graph victims' sparse ops).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from venomkit.config import check_int
from venomkit.progress import progress as progress_bar
from venomkit.victims.base import Victim


def _score_jacobian(scores: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """(U', D) Jacobian of ``scores`` (U',) with respect to ``leaf`` (1, D); graph retained."""
    n, d = scores.shape[0], leaf.shape[1]
    if n <= d:
        try:
            eye = torch.eye(n, device=scores.device, dtype=scores.dtype)
            (jac,) = torch.autograd.grad(scores, leaf, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
            return jac.reshape(n, d)
        except RuntimeError:
            pass
    # J v for each basis vector v via the double-backward trick: d/dw <J^T w, v> = J v.
    w = torch.zeros_like(scores, requires_grad=True)
    (jt_w,) = torch.autograd.grad(scores, leaf, grad_outputs=w, create_graph=True, retain_graph=True)
    cols = []
    for j in range(d):
        (col,) = torch.autograd.grad(jt_w[0, j], w, retain_graph=True)
        cols.append(col)
    return torch.stack(cols, dim=1)


def per_user_gradients(
    victim: Victim,
    target: int,
    train: Any,
    k: int = 50,
    margin: float = 0.0,
    users: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Each user's gradient of their hinge term with respect to ``target``'s feature rows.

    Returns ``(grads, active, users)``: ``grads[m]`` (U', D_m) holds ``d l_u / d f_{t,m}``
    (zero for users whose hinge is inactive or who already interacted with ``t``),
    ``active`` (U',) bool marks users with a non-zero hinge, ``users`` the user indices.
    """
    from venomkit.attacks.targets import Knowledge
    from venomkit.attacks.objectives import PromotionHinge

    device = victim.device
    index = torch.tensor([int(target)], device=device)
    matrix = getattr(train, "matrix", train)
    all_users = torch.arange(victim.n_users, device=device) if users is None else users.to(device)
    was_training = victim.training
    victim.eval()
    try:
        with torch.no_grad():
            hinge = PromotionHinge(k=k, margin=margin).prepare(victim, index, all_users, Knowledge(train=matrix))
        leaves = {m: t[index].detach().clone().requires_grad_(True) for m, t in victim.clean_features().items()}
        with torch.enable_grad():
            user_emb, item_emb = victim(victim.features_with(index, leaves))
            scores = user_emb[all_users] @ item_emb[int(target)]  # (U',)
            gap = hinge.threshold[:, 0] - scores.detach() + margin
            weight = hinge.weight[:, 0]
            active = (gap > 0) & (weight > 0)
            grads = {}
            for m in victim.modalities:
                jac = _score_jacobian(scores, leaves[m])
                # d relu(thr - s + margin) / d f = -1[active] * d s / d f
                grads[m] = -(active.to(jac.dtype).unsqueeze(1) * jac).detach()
    finally:
        victim.train(was_training)
    return grads, active.detach(), all_users


def directional_contributions(grads: torch.Tensor) -> torch.Tensor:
    """Eq. 6: ``c_u = <g_u, G> / ||G||`` with ``G = sum_u g_u``; ``grads`` (U', D) -> (U',).

    The descent update is ``-G``; a user with a large positive ``c_u`` is one whose own
    gradient points along the aggregate, i.e. who dominates that modality's perturbation.
    """
    total = grads.sum(0)
    norm = total.norm()
    if norm == 0:
        return torch.zeros(grads.shape[0], dtype=grads.dtype, device=grads.device)
    return grads @ total / norm


def top_k_users(contributions: torch.Tensor, k: int) -> set[int]:
    """Positions of the ``k`` largest POSITIVE contributions (fewer when fewer are positive)."""
    check_int("k", k, 1, numpy_ok=True)
    positive = int((contributions > 0).sum())
    take = min(k, positive)
    if take == 0:
        return set()
    return set(torch.topk(contributions, take).indices.tolist())


def jaccard(a: set[int], b: set[int]) -> float:
    """Eq. 7: ``|a & b| / |a | b|``; NaN when both are empty."""
    union = a | b
    return len(a & b) / len(union) if union else float("nan")


def analyse_target(
    victim: Victim,
    target: int,
    train: Any,
    top_k: int = 50,
    k: int = 50,
    margin: float = 0.0,
) -> dict[str, Any]:
    """Mismatch figures of one target: Jaccard of the top-k users, cosine of the two updates.

    Returns ``{"item_index", "n_active", "jaccard", "grad_cos" (cosine of G_visual and G_text,
    compared after the victim's feature projections when widths differ), "top_visual",
    "top_text"}`` (user index lists).
    """
    if set(victim.modalities) != {"visual", "text"}:
        raise ValueError(f"the mismatch analysis needs a victim reading visual and text features; {victim.kind} reads {victim.modalities}")
    grads, active, users = per_user_gradients(victim, target, train, k=k, margin=margin)
    contrib = {m: directional_contributions(g) for m, g in grads.items()}
    top = {m: top_k_users(c, top_k) for m, c in contrib.items()}
    g_v, g_t = grads["visual"].sum(0), grads["text"].sum(0)
    if g_v.shape != g_t.shape:
        proj = victim.feature_projections()
        if proj is not None:
            g_v, g_t = g_v @ proj["visual"].detach(), g_t @ proj["text"].detach()
    cos = float(torch.nn.functional.cosine_similarity(g_v, g_t, dim=0)) if g_v.shape == g_t.shape else float("nan")
    user_list = users.tolist()
    return {
        "item_index": int(target),
        "n_active": int(active.sum()),
        "jaccard": jaccard(top["visual"], top["text"]),
        "grad_cos": cos,
        "top_visual": sorted(user_list[i] for i in top["visual"]),
        "top_text": sorted(user_list[i] for i in top["text"]),
    }


def restricted_attacks(
    victim: Victim,
    target: int,
    train: Any,
    groups: dict[str, Sequence[int]],
    config: Any = None,
) -> dict[str, float]:
    """HR@50 of ``target`` on ALL users after the feature attack restricted to each user group.

    ``groups`` maps a name to user indices (e.g. ``{"all": range(U), "visual": top_visual,
    "text": top_text}``); ``config`` is a ``FeatureAttackConfig`` (default PGD, 10 steps,
    eps 0.1). Returns ``{"hr@50_before": .., "hr@50_<group>": ..}``; an empty group gets NaN.
    """
    from venomkit.attacks.feature import (
        FeatureAttackConfig,
        feature_attack_one,
        target_figures,
    )

    config = config or FeatureAttackConfig(steps=10)
    out = {"hr@50_before": target_figures(victim, target, train)["hr@50"]}
    for name, members in groups.items():
        members = list(members)
        if not members:
            out[f"hr@50_{name}"] = float("nan")
            continue
        users = torch.tensor(members, dtype=torch.long, device=victim.device)
        adv = feature_attack_one(victim, target, train, config, users=users)
        out[f"hr@50_{name}"] = target_figures(victim, target, train, adv)["hr@50"]
    return out


def run_mismatch(
    victim: Victim,
    targets: Sequence[int],
    train: Any,
    top_k: int = 50,
    k: int = 50,
    attack_groups: bool = True,
    attack_config: Any = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """:func:`analyse_target` (and, with ``attack_groups``, :func:`restricted_attacks` on the
    groups all / visual-top / text-top / their union) for every target; one dict per target."""
    rows = []
    for t in progress_bar(list(targets), desc="gradient mismatch", unit="target", enabled=progress):
        row = analyse_target(victim, t, train, top_k=top_k, k=k)
        if attack_groups:
            groups = {
                "all": range(victim.n_users),
                "visual_top": row["top_visual"],
                "text_top": row["top_text"],
                "union_top": sorted(set(row["top_visual"]) | set(row["top_text"])),
            }
            row.update(restricted_attacks(victim, t, train, groups, attack_config))
        rows.append(row)
    return rows


def plot_jaccard(values: Sequence[float] | dict[str, Sequence[float]], path: str, title: str = "Cross-modal gradient mismatch") -> str:
    """Histogram PNG of per-target Jaccard similarities (one series per label when a dict).

    Uses matplotlib's Agg backend (no display needed); returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = values if isinstance(values, dict) else {"targets": values}
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    bins = np.linspace(0.0, 1.0, 21)
    for label, vals in series.items():
        arr = np.asarray([v for v in vals if not np.isnan(v)], dtype=float)
        if arr.size:
            ax.hist(arr, bins=bins, alpha=0.6, label=f"{label} (n={arr.size}, mean {arr.mean():.2f})")
    ax.set_xlabel("Jaccard of top-k visual vs textual users (Eq. 7)")
    ax.set_ylabel("targets")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
