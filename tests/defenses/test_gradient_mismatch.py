"""Gradient mismatch analysis (paper section 3) and the feature-space attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from defense_helpers import trained_copy

from venomkit.attacks.base import Forward
from venomkit.attacks.targets import Knowledge
from venomkit.attacks.objectives import PromotionHinge
from venomkit.attacks.feature import (
    FeatureAttackConfig,
    feature_attack_one,
    run_feature_attack,
    target_figures,
)
from venomkit.defenses.gradient_mismatch import (
    _score_jacobian,
    analyse_target,
    directional_contributions,
    jaccard,
    per_user_gradients,
    plot_jaccard,
    run_mismatch,
    top_k_users,
)


def _cold(shop, n=4):
    from venomkit.data.interactions import select_cold_targets

    return select_cold_targets(shop.split.train, n, max_interactions=8, seed=0).tolist()


@pytest.mark.parametrize("kind", ["vbpr", "mmgcn"])
def test_per_user_gradients_sum_to_the_attack_gradient(kind, shop, trained):
    """Sum over users of d l_u / d f equals autograd's gradient of the summed hinge."""
    victim = trained_copy(kind, shop, trained)
    target = _cold(shop)[0]
    grads, active, users = per_user_gradients(victim, target, shop.split.train, k=10)
    assert active.any() and users.numel() == shop.n_users
    index = torch.tensor([target])
    hinge = PromotionHinge(k=10).prepare(victim, index, None, Knowledge(train=shop.split.train.matrix))
    leaves = {m: t[index].clone().requires_grad_(True) for m, t in victim.clean_features().items()}
    per_user = torch.relu(hinge.threshold - Forward(victim, index, leaves).target_scores(None)) * hinge.weight
    total = dict(zip(leaves, torch.autograd.grad(per_user.sum(), list(leaves.values()))))
    for m in ("visual", "text"):
        assert torch.allclose(grads[m].sum(0), total[m][0], atol=1e-4), m
        assert (grads[m][~active] == 0).all()


def test_both_jacobian_paths_agree():
    """Batched reverse mode (few outputs) and the column-by-column product (many) give the same J."""
    torch.manual_seed(0)
    w = torch.randn(5, 3)
    leaf = torch.randn(1, 3, requires_grad=True)
    scores = torch.tanh(w @ leaf[0]) * 2
    few = _score_jacobian(scores[:2], leaf)
    many = _score_jacobian(scores, leaf)
    expected = torch.autograd.functional.jacobian(lambda x: torch.tanh(w @ x[0]) * 2, leaf.detach())[:, 0, :]
    assert torch.allclose(many, expected, atol=1e-6) and torch.allclose(few, expected[:2], atol=1e-6)


def test_contributions_jaccard_and_top_k():
    g = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0], [0.0, 0.0]])
    c = directional_contributions(g)
    total = g.sum(0)
    assert torch.allclose(c.sum(), total.norm())  # Eq. 6 contributions add up to the update's length
    assert c[2] < 0 and c[3] == 0
    assert top_k_users(c, 3) == {0, 1}  # only positive contributors
    assert top_k_users(c, 1) == {1}
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and np.isnan(jaccard(set(), set()))
    with pytest.raises(ValueError):
        top_k_users(c, 0)


@pytest.mark.parametrize("kind", ["vbpr", "mmgcn"])
def test_analysis_and_restricted_attacks(kind, shop, trained, tmp_path):
    victim = trained_copy(kind, shop, trained)
    rows = run_mismatch(victim, _cold(shop, 2), shop.split.train, top_k=8, k=10, attack_config=FeatureAttackConfig(eps=0.3, steps=3, k=10), progress=False)
    for row in rows:
        assert 0.0 <= row["jaccard"] <= 1.0 and -1.0 <= row["grad_cos"] <= 1.0
        assert 0 < len(row["top_visual"]) <= 8 and 0 < len(row["top_text"]) <= 8
        for key in ("hr@50_before", "hr@50_all", "hr@50_visual_top", "hr@50_text_top", "hr@50_union_top"):
            assert 0.0 <= row[key] <= 1.0
    png = plot_jaccard({kind: [r["jaccard"] for r in rows]}, str(tmp_path / "j.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_analysis_needs_two_modalities(shop):
    from venomkit.victims.pipeline import build_victim

    victim = build_victim("vbpr", shop.n_users, shop.n_items, visual_dim=4, embed_dim=4)
    with pytest.raises(ValueError, match="visual and text"):
        analyse_target(victim, 0, shop.split.train)


@pytest.mark.parametrize("kind", ["vbpr", "mmgcn"])
def test_feature_attack_stays_in_budget_and_promotes(kind, shop, trained):
    victim = trained_copy(kind, shop, trained)
    targets = _cold(shop, 4)
    clean = victim.clean_features()
    for steps in (1, 5):
        adv = feature_attack_one(victim, targets[0], shop.split.train, FeatureAttackConfig(eps=0.2, steps=steps, k=10))
        for m in ("visual", "text"):
            ratio = (adv[m][0] - clean[m][targets[0]]).norm() / clean[m][targets[0]].norm()
            assert ratio <= 0.2 + 1e-5
    rows = run_feature_attack(victim, targets, shop.split.train, FeatureAttackConfig(eps=0.5, steps=10, k=10), progress=False)
    assert np.mean([r["mean_rank_after"] for r in rows]) < np.mean([r["mean_rank_before"] for r in rows])
    assert all(r["shift_visual"] <= 0.5 + 1e-5 and r["shift_text"] <= 0.5 + 1e-5 for r in rows)
    assert target_figures(victim, targets[0], shop.split.train)["hr@10"] == rows[0]["hr@10_before"]


def test_feature_attack_config_validation():
    for kwargs in ({"eps": 0}, {"steps": 0}, {"k": 0}, {"modalities": ("audio",)}, {"align_weight": -1}):
        with pytest.raises(ValueError):
            FeatureAttackConfig(**kwargs)
