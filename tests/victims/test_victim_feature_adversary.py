"""The feature-space adversary (AMR, UAT, UAT-MC): budget, alignment term, modality order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from victim_helpers import TinyImageEncoder, TinyTextEncoder, build

from venomkit.victims.feature_adversary import (
    FeatureAdversaryConfig,
    adversarial_bpr_loss,
    adversarial_feature_deltas,
    alignment_cosine,
    batch_item_rows,
    fgm_feature_perturbation,
)
from venomkit.victims.training import NegativeSampler, bpr_loss


def _toy_loss(weights):
    def loss_fn(x):
        return torch.tanh(x["visual"] @ weights["visual"]).sum() + torch.sin(x["text"] @ weights["text"]).pow(2).sum()

    return loss_fn


def _rows(seed=0, b=6, dv=5, dt=7):
    g = torch.Generator().manual_seed(seed)
    return {"visual": torch.randn(b, dv, generator=g), "text": torch.randn(b, dt, generator=g) * 3}


def _batch(dataset, n=64, seed=0):
    """A BPR batch in which items repeat (as in real training batches)."""
    rng = np.random.default_rng(seed)
    users, items = dataset.split.train.pairs()
    idx = rng.choice(len(users), size=n, replace=False)
    neg = NegativeSampler(dataset.split.train, rng).sample(users[idx])
    return torch.from_numpy(users[idx]), torch.from_numpy(items[idx]), torch.from_numpy(neg)


def test_fgm_reaches_each_rows_own_radius_per_modality():
    rows = _rows()
    weights = {"visual": torch.randn(5, 3), "text": torch.randn(7, 2)}
    eps = {"visual": 0.05, "text": 0.3}  # asymmetric on purpose: a swap of modalities would show
    deltas = fgm_feature_perturbation(_toy_loss(weights), rows, eps_ratio=eps)
    assert set(deltas) == {"visual", "text"}
    for m in ("visual", "text"):
        assert deltas[m].shape == rows[m].shape
        ratio = deltas[m].norm(dim=1) / rows[m].norm(dim=1)
        assert torch.allclose(ratio, torch.full_like(ratio, eps[m]), atol=1e-5)
    # FGM direction is the normalised gradient of each modality's own rows.
    x = {m: r.clone().requires_grad_(True) for m, r in rows.items()}
    _toy_loss(weights)(x).backward()
    for m in ("visual", "text"):
        cos = torch.nn.functional.cosine_similarity(deltas[m], x[m].grad, dim=1)
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)


def test_modality_order_given_in_any_order_is_matched_by_name():
    rows = _rows(seed=1)
    weights = {"visual": torch.randn(5, 3), "text": torch.randn(7, 2)}
    a = fgm_feature_perturbation(_toy_loss(weights), rows, eps_ratio={"visual": 0.1, "text": 0.2}, modalities=("visual", "text"))
    b = fgm_feature_perturbation(_toy_loss(weights), rows, eps_ratio={"text": 0.2, "visual": 0.1}, modalities=("text", "visual"))
    for m in a:
        assert torch.allclose(a[m], b[m])
    only_visual = fgm_feature_perturbation(_toy_loss(weights), rows, eps_abs=0.5, modalities=("visual",))
    assert set(only_visual) == {"visual"}
    assert torch.allclose(only_visual["visual"].norm(dim=1), torch.full((6,), 0.5), atol=1e-5)


def test_pgd_stays_in_the_ball_and_increases_the_loss():
    rows = _rows(seed=2)
    weights = {"visual": torch.randn(5, 3), "text": torch.randn(7, 2)}
    loss_fn = _toy_loss(weights)
    deltas = fgm_feature_perturbation(loss_fn, rows, eps_ratio=0.2, steps=7, random_start=True, generator=torch.Generator().manual_seed(0))
    for m in rows:
        assert (deltas[m].norm(dim=1) <= 0.2 * rows[m].norm(dim=1) + 1e-5).all()
    adv = {m: rows[m] + deltas[m] for m in rows}
    assert loss_fn(adv) > loss_fn(rows)


def test_argument_validation():
    rows = _rows()
    loss_fn = _toy_loss({"visual": torch.randn(5, 3), "text": torch.randn(7, 2)})
    with pytest.raises(ValueError, match="exactly one of eps_ratio and eps_abs"):
        fgm_feature_perturbation(loss_fn, rows, eps_ratio=0.1, eps_abs=0.1)
    with pytest.raises(ValueError, match="align_weight needs both"):
        fgm_feature_perturbation(loss_fn, rows, eps_ratio=0.1, modalities=("visual",), align_weight=1.0)
    with pytest.raises(ValueError, match="steps"):
        fgm_feature_perturbation(loss_fn, rows, eps_ratio=0.1, steps=0)
    with pytest.raises(ValueError, match="equal width"):
        fgm_feature_perturbation(loss_fn, rows, eps_ratio=0.1, align_weight=1.0)
    with pytest.raises(ValueError, match="modalities"):
        FeatureAdversaryConfig(modalities=("audio",))


@pytest.mark.parametrize("kind", ["vbpr", "mmgcn"])
def test_alignment_term_has_a_gradient_and_changes_the_perturbation(kind, tiny_dataset):
    victim = build(kind, tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8), embed_dim=4, **({"latent_dim": 6} if kind == "mmgcn" else {}))
    users, pos, neg = _batch(tiny_dataset)
    items, rows = batch_item_rows(victim, pos, neg)
    assert len(items) < len(pos) + len(neg)  # items repeat across the batch's pairs

    # The term itself: cos(g_visual, g_text) has a non-zero gradient w.r.t. the features only
    # because the gradients are built with create_graph=True.
    x = {m: r.clone().requires_grad_(True) for m, r in rows.items()}
    loss = bpr_loss(victim, users, pos, neg, features=victim.features_with(items, x), reg=False)
    g_v, g_t = torch.autograd.grad(loss, [x["visual"], x["text"]], create_graph=True)
    cos = alignment_cosine(g_v, g_t)
    d_v, d_t = torch.autograd.grad(cos, [x["visual"], x["text"]])
    assert d_v.abs().sum() > 0 and d_t.abs().sum() > 0

    plain = adversarial_feature_deltas(victim, users, pos, neg, FeatureAdversaryConfig(eps=0.1))[2]
    stats: dict = {}
    aligned = adversarial_feature_deltas(victim, users, pos, neg, FeatureAdversaryConfig(eps=0.1, align_weight=5.0), stats)[2]
    assert "align_cos" in stats
    for m in ("visual", "text"):
        assert not torch.allclose(plain[m], aligned[m], atol=1e-6)
        assert (aligned[m].norm(dim=1) <= 0.1 * rows[m].norm(dim=1) + 1e-5).all()


def test_alignment_with_different_widths_uses_the_victims_projections(tiny_dataset):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(5), embed_dim=4)
    users, pos, neg = _batch(tiny_dataset, seed=3)
    _, rows, plain, *_ = adversarial_feature_deltas(victim, users, pos, neg, FeatureAdversaryConfig(eps=0.1))
    _, _, aligned, *_ = adversarial_feature_deltas(victim, users, pos, neg, FeatureAdversaryConfig(eps=0.1, align_weight=5.0))
    assert plain["visual"].shape[1] == 8 and plain["text"].shape[1] == 5
    assert aligned["visual"].shape == rows["visual"].shape and aligned["text"].shape == rows["text"].shape
    assert not torch.allclose(plain["visual"], aligned["visual"], atol=1e-6)


def test_visual_only_adversary_leaves_text_untouched_and_order_is_kept(tiny_dataset):
    # Widths 8 (visual) and 5 (text): a swap of modalities would break shapes or radii.
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(5), embed_dim=4)
    users, pos, neg = _batch(tiny_dataset, seed=4)
    _, rows, deltas, *_ = adversarial_feature_deltas(victim, users, pos, neg, FeatureAdversaryConfig(modalities=("visual",), eps=0.2))
    assert set(deltas) == {"visual"}
    ratio = deltas["visual"].norm(dim=1) / rows["visual"].norm(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.2), atol=1e-5)


def test_adversarial_bpr_loss_is_clean_plus_weighted_adversarial(tiny_dataset):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8), embed_dim=4)
    users, pos, neg = _batch(tiny_dataset, seed=5)
    cfg = FeatureAdversaryConfig(eps=0.5, adv_weight=2.0)
    stats: dict = {}
    total = adversarial_bpr_loss(victim, users, pos, neg, cfg, stats)
    clean = bpr_loss(victim, users, pos, neg)
    assert torch.isclose(total, clean + 2.0 * torch.tensor(stats["adv_loss"]), atol=1e-5)
    assert torch.isclose(torch.tensor(stats["clean_loss"]), clean, atol=1e-6)
    assert stats["adv_loss"] > float(bpr_loss(victim, users, pos, neg, reg=False).detach())
    total.backward()
    assert victim.gamma_user.grad is not None and victim.projection["visual"].weight.grad.abs().sum() > 0
    # PGD path (no reuse of the clean forward pass) gives a finite loss too.
    pgd = adversarial_bpr_loss(victim, users, pos, neg, FeatureAdversaryConfig(eps=0.5, steps=3))
    assert torch.isfinite(pgd)


def test_amr_training_loss_perturbs_only_visual_features(tiny_dataset):
    victim = build("amr", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8), embed_dim=4, adv_eps=0.3)
    users, pos, neg = _batch(tiny_dataset, seed=6)
    assert victim.config.adversary().modalities == ("visual",)
    assert victim.training_loss(users, pos, neg) > bpr_loss(victim, users, pos, neg)


@pytest.mark.parametrize("kind", ["vbpr", "mmgcn"])
@pytest.mark.parametrize("align_weight", [0.0, 5.0])
def test_adversarial_loss_gradient_equals_the_naive_two_pass_gradient(kind, align_weight, tiny_dataset):
    # adversarial_bpr_loss takes the clean loss's parameter gradient from the adversary's own
    # backward pass; it must equal backpropagating L_BPR(clean) + reg + beta L_BPR(adv) afresh.
    victim = build(kind, tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8), embed_dim=4, reg_weight=0.05, **({"latent_dim": 6} if kind == "mmgcn" else {}))
    users, pos, neg = _batch(tiny_dataset, seed=5)
    adversary = FeatureAdversaryConfig(eps=0.1, adv_weight=0.7, align_weight=align_weight)
    params = victim.model_parameters()

    victim.zero_grad()
    fused = adversarial_bpr_loss(victim, users, pos, neg, adversary)
    fused.backward()
    fused_grads = [p.grad.clone() for p in params]

    inner = adversarial_feature_deltas(victim, users, pos, neg, adversary)
    assert inner.clean_forward is None and inner.clean_param_grads is None  # nothing reused unless asked
    victim.zero_grad()
    naive = bpr_loss(victim, users, pos, neg) + 0.7 * bpr_loss(
        victim, users, pos, neg, features=victim.features_with(inner.items, {m: inner.rows[m] + inner.deltas[m] for m in inner.deltas}), reg=False
    )
    naive.backward()
    assert torch.allclose(fused, naive, atol=1e-6)
    for p, g in zip(params, fused_grads):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in fused_grads)


def test_first_loss_params_need_a_list_to_receive_their_gradients():
    rows = _rows()
    weight = torch.randn(5, 3, requires_grad=True)
    with pytest.raises(ValueError, match="first_loss_grads"):
        fgm_feature_perturbation(lambda x: (x["visual"] @ weight).sum() + x["text"].sum(), rows, eps_ratio=0.1, first_loss_params=[weight])
    grads: list = []
    fgm_feature_perturbation(lambda x: (x["visual"] @ weight).pow(2).sum() + x["text"].sum(), rows, eps_ratio=0.1, first_loss_params=[weight], first_loss_grads=grads)
    expected = torch.autograd.grad((rows["visual"] @ weight).pow(2).sum(), weight)[0]
    assert len(grads) == 1 and torch.allclose(grads[0], expected)
