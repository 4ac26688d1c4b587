"""Objective gradients point the right way: a small step against the gradient raises the score."""

from __future__ import annotations

import torch

from venomkit.attacks.base import Forward
from venomkit.attacks.objectives import EXPA, INSA, PromotionHinge, gradient_alignment

TARGETS = torch.tensor([24, 27, 29])


def _forward(shop, images):
    victim = shop["victim"]
    feats = {"visual": victim.image_encoder(images), "text": victim.text_encoder([shop["texts"][i] for i in TARGETS.tolist()])}
    return Forward(victim, TARGETS, feats, images=images)


def _step(shop, objective, size=1e-2):
    victim = shop["victim"].eval()
    x = shop["images"][TARGETS].clone().requires_grad_(True)
    loss = objective(_forward(shop, x))
    (g,) = torch.autograd.grad(loss.sum(), x)
    with torch.no_grad():
        before = _forward(shop, x).target_scores(None).mean(0)
        x2 = x - size * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        after_loss = objective(_forward(shop, x2))
        after = _forward(shop, x2).target_scores(None).mean(0)
    return loss.detach(), after_loss, before, after


def test_hinge_step_raises_score(shop):
    for variant in ("hinge", "soft", "sigmoid"):
        obj = PromotionHinge(k=5, variant=variant).prepare(shop["victim"], TARGETS, None, shop["knowledge"])
        loss, after_loss, before, after = _step(shop, obj)
        assert (after_loss < loss).all() and (after > before).all()


def test_hinge_threshold_excludes_target_and_seen_items(shop):
    victim = shop["victim"]
    obj = PromotionHinge(k=3).prepare(victim, TARGETS, None, shop["knowledge"])
    with torch.no_grad():
        scores = victim.scores()
    train = torch.from_numpy(shop["train"].toarray() > 0)
    for b, t in enumerate(TARGETS.tolist()):
        for u in range(5):
            s = scores[u].clone()
            s[train[u]] = float("-inf")
            s[t] = float("-inf")
            assert torch.isclose(obj.threshold[u, b], s.topk(3).values[-1])
            assert obj.weight[u, b] == (0.0 if train[u, t] else 1.0)


def test_insa_step_raises_mean_exp_score(shop):
    obj = INSA().prepare(shop["victim"], TARGETS, None, shop["knowledge"])
    loss, after_loss, _, _ = _step(shop, obj)
    assert (after_loss < loss).all()


def test_expa_step_moves_towards_hook(shop):
    obj = EXPA(n_hooks=2).prepare(shop["victim"], TARGETS, None, shop["knowledge"])
    assert set(obj.hooks).isdisjoint(TARGETS.tolist())
    loss, after_loss, _, _ = _step(shop, obj)
    assert (after_loss < loss).all()


def test_gradient_alignment_is_differentiable(shop):
    victim = shop["victim"]
    x = shop["images"][TARGETS].clone().requires_grad_(True)
    f_t = victim.text_encoder([shop["texts"][i] for i in TARGETS.tolist()]).detach().requires_grad_(True)
    f_v = victim.image_encoder(x)
    obj = PromotionHinge(k=5, variant="soft").prepare(victim, TARGETS, None, shop["knowledge"])
    loss = obj(Forward(victim, TARGETS, {"visual": f_v, "text": f_t}))
    cos = gradient_alignment(loss, f_v, f_t, victim.feature_projections())
    assert ((cos >= -1 - 1e-6) & (cos <= 1 + 1e-6)).all()
    (g,) = torch.autograd.grad(cos.sum(), x)
    assert g.abs().sum() > 0  # create_graph=True: the term reaches the pixels
