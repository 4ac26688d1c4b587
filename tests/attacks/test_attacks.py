"""Attack contract tests on the tiny VBPR-shaped victim (see conftest.py)."""

from __future__ import annotations

import pytest
import torch

from venomkit.attacks import ATTACK_NAMES, get_attack
from venomkit.attacks.base import IterativeConfig, pgd_loop, project, project_
from venomkit.attacks.fgsm import FGSM
from venomkit.attacks.pgd import PGD
from venomkit.attacks.insa import INSA
from venomkit.attacks.expa import EXPA
from venomkit.attacks.taamr import TAaMR
from venomkit.attacks.targets import TargetBatch
from venomkit.data.catalog import load_image_file, save_png

TARGETS = [24, 26, 27, 29]


class TinyClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5))

    def forward(self, x):
        return self.net(x)


def _pixel_attacks():
    return [
        FGSM(k=5),
        PGD(steps=5, k=5),
        PGD(norm="l2", eps=0.5, steps=5, k=5),
        INSA(steps=5),
        EXPA(steps=5),
        TAaMR(steps=5, classifier=TinyClassifier()),
    ]


def _run(attack, shop, targets=TARGETS):
    idx = torch.tensor(targets)
    return attack(shop["victim"], TargetBatch(idx, shop["images"][idx], [shop["texts"][i] for i in targets], knowledge=shop["knowledge"]))


@pytest.mark.parametrize("attack", _pixel_attacks(), ids=lambda a: f"{a.name}-{a.config.norm}")
def test_pixel_attack_within_budget_after_png_round_trip(attack, shop, tmp_path):
    result = _run(attack, shop)
    clean = shop["images"][torch.tensor(TARGETS)]
    eps = attack.config.eps
    for b in range(len(TARGETS)):
        save_png(result.adv_images[b], tmp_path / f"{b}.png")
        back = load_image_file(tmp_path / f"{b}.png")
        assert back.min() >= 0 and back.max() <= 1
        diff = back - clean[b]
        if attack.config.norm == "linf":
            assert diff.abs().max() <= eps + 1 / 255 + 1e-6
        else:
            # Rounding to 8 bits adds at most half a level per pixel.
            assert diff.norm() <= eps + 0.5 / 255 * diff.numel() ** 0.5 + 1e-6
    assert set(result.diagnostics) >= {"score_before", "score_after", "objective_before", "objective_after"}
    assert (result.diagnostics["objective_after"] <= result.diagnostics["objective_before"] + 1e-6).all()


@pytest.mark.parametrize("name,kwargs", [("fgsm", {"k": 5}), ("pgd", {"k": 5}), ("pgd", {"k": 5, "objective": "soft"})])
def test_promotion_attacks_raise_the_target_score(name, kwargs, shop):
    result = _run(get_attack(name)(**kwargs), shop)
    assert (result.diagnostics["score_after"] > result.diagnostics["score_before"]).all()
    assert (result.diagnostics["objective_after"] < result.diagnostics["objective_before"]).all()


def test_insa_raises_the_mean_exp_score(shop):
    result = _run(INSA(steps=5), shop)
    # INSA's loss is -log mean_u exp(s): lower loss = higher mean exp-score.
    assert (result.diagnostics["objective_after"] < result.diagnostics["objective_before"]).all()


def test_base_class_projects_whatever_the_subclass_returns(shop):
    class Wild(PGD):
        def perturb(self, *args):
            adv, t, d = super().perturb(*args)
            return adv + 0.5, t, d  # far outside the ball and [0, 1]

    result = _run(Wild(steps=1), shop)
    clean = shop["images"][torch.tensor(TARGETS)]
    assert (result.adv_images - clean).abs().max() <= 8 / 255 + 1e-6
    assert result.adv_images.max() <= 1 and result.adv_images.min() >= 0


def test_batched_equals_single_runs(shop):
    attack = PGD(steps=2, k=5)
    batched = _run(attack, shop)
    for b, target in enumerate(TARGETS):
        single = _run(attack, shop, [target])
        assert torch.allclose(single.adv_images[0], batched.adv_images[b], atol=1e-5)
        assert torch.allclose(single.diagnostics["score_after"], batched.diagnostics["score_after"][b : b + 1], atol=1e-5)


def test_per_target_mode_matches_batched(shop):
    a = _run(PGD(steps=2, k=5), shop)
    b = _run(PGD(steps=2, k=5, batch_targets=False), shop)
    assert torch.allclose(a.adv_images, b.adv_images, atol=1e-5)


def test_modes_and_requires_grad_are_restored(shop):
    victim = shop["victim"]
    victim.train()
    victim.text_encoder.train()  # an odd mix on purpose: every module's own flag must come back
    modes = [m.training for m in victim.modules()]
    flags = [p.requires_grad for p in victim.parameters()]
    _run(PGD(steps=1), shop)
    assert [m.training for m in victim.modules()] == modes
    assert victim.training and victim.text_encoder.training and not victim.image_encoder.training
    assert [p.requires_grad for p in victim.parameters()] == flags
    victim.eval()


def test_seeded(shop):
    a = _run(PGD(steps=2, seed=3), shop)
    b = _run(PGD(steps=2, seed=3), shop)
    c = _run(PGD(steps=2, seed=4), shop)
    assert torch.equal(a.adv_images, b.adv_images)
    assert not torch.equal(a.adv_images, c.adv_images)


def test_grey_box_surrogate_encoder_is_scored_on_the_victim(shop):
    from tests.attacks.conftest import TinyImageEncoder

    surrogate = TinyImageEncoder(seed=5).eval()
    result = _run(PGD(steps=3, k=5, surrogate=surrogate), shop)
    # Diagnostics are the victim's scores: recompute them by re-encoding through the victim.
    idx = torch.tensor(TARGETS)
    with torch.no_grad():
        u, i = shop["victim"].item_representations(result.adv_images, result.adv_texts, idx)
    assert torch.allclose((u @ i[idx].T).mean(0), result.diagnostics["score_after"], atol=1e-5)


BAD = [
    (PGD, {"eps": -1}, "eps"),
    (PGD, {"eps": 2.0}, "eps"),
    (PGD, {"norm": "l1"}, "norm"),
    (PGD, {"steps": 0}, "steps"),
    (PGD, {"step_size": 0}, "step_size"),
    (PGD, {"schedule": "warp"}, "schedule"),
    (PGD, {"k": 0}, "k"),
    (PGD, {"objective": "max"}, "objective"),
    (PGD, {"temperature": 0}, "temperature"),
    (PGD, {"seed": -1}, "seed"),
    (PGD, {"random_start": "maybe"}, "random_start"),
    (PGD, {"bogus": 1}, "valid keys"),
    (FGSM, {"eps": 0}, "eps"),
    (EXPA, {"n_hooks": 0}, "n_hooks"),
]


@pytest.mark.parametrize("cls,kwargs,word", BAD, ids=[f"{c.__name__}-{list(k)[0]}" for c, k, _ in BAD])
def test_bad_arguments_raise_value_error(cls, kwargs, word):
    with pytest.raises(ValueError, match=word):
        cls(**kwargs)


def test_bad_call_arguments(shop):
    victim, images, texts = shop["victim"], shop["images"], shop["texts"]
    attack = PGD(steps=1)
    idx = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="repeated"):
        attack(victim, TargetBatch(torch.tensor([1, 1]), images[[1, 1]], texts[:2]))
    with pytest.raises(ValueError, match="shape"):
        attack(victim, TargetBatch(idx, images[:3], texts[:2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(victim, TargetBatch(idx, images[:2] * 3, texts[:2]))
    with pytest.raises(ValueError, match="texts"):
        attack(victim, TargetBatch(idx, images[:2], texts[:3]))
    with pytest.raises(ValueError, match="TargetBatch"):
        attack(victim, images[:2])  # the old positional form: a clear message, not a traceback deep inside
    with pytest.raises(ValueError, match="classifier"):
        TAaMR()
    with pytest.raises(ValueError, match="unknown attack"):
        get_attack("nope")


def test_projection_l2_and_linf():
    clean = torch.rand(2, 3, 4, 4)
    adv = torch.rand(2, 3, 4, 4)
    p = project(adv, clean, 0.1, "linf")
    assert (p - clean).abs().max() <= 0.1 + 1e-7
    p = project(adv, clean, 0.3, "l2")
    assert ((p - clean).flatten(1).norm(dim=1) <= 0.3 + 1e-6).all()


def test_in_place_projection_equals_the_out_of_place_formula():
    clean = torch.rand(3, 3, 9, 7)
    adv = (clean + torch.randn(3, 3, 9, 7) * 0.2).clamp(-0.1, 1.1)
    for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
        delta = adv - clean
        if norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1)
        reference = (delta + clean).clamp(0.0, 1.0)
        kept, clean_kept = adv.clone(), clean.clone()
        assert torch.equal(project(adv, clean, eps, norm), reference)
        assert torch.equal(adv, kept) and torch.equal(clean, clean_kept)  # project leaves its inputs alone
        inplace = adv.clone()
        assert project_(inplace, clean, eps, norm) is inplace and torch.equal(inplace, reference)


def test_pgd_loop_steps_in_place_even_when_the_gradient_is_broadcast():
    # loss = sum of pixels: autograd hands back an expanded (stride-0) gradient, which cannot be
    # written in place; the loop must still take signed steps down to the ball's edge.
    clean = torch.full((2, 3, 5, 4), 0.5)
    cfg = IterativeConfig(eps=0.1, steps=4, random_start=False)
    adv, best, first = pgd_loop(lambda x: x.flatten(1).sum(1), clean, cfg, torch.tensor([0, 1]))
    assert torch.allclose(adv, torch.full_like(clean, 0.4))
    assert (best < first).all()
    assert torch.equal(clean, torch.full((2, 3, 5, 4), 0.5))


def test_registry_complete():
    for name in ATTACK_NAMES:
        assert get_attack(name).name == name
