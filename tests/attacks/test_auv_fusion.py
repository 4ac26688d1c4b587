"""AUV-Fusion: the user model's kNN graph, the MLP's training items, gradients through the whole
pass, eta = 0 as plain img2img, and a run whose saved PNGs are what was scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from venomkit.attacks.auv_fusion import AUVFusion, AUVFusionConfig
from venomkit.attacks.auv_fusion.user_model import DualViewConfig, DualViewGCN, knn_edges
from venomkit.attacks.base import PrepareContext
from venomkit.attacks.targets import Knowledge

SMALL = dict(user_epochs=3, mlp_items=8, mlp_epochs=1, mlp_batch=4, group_size=10, knn_k=5, num_steps=10, strength=0.3)


@pytest.fixture(scope="module")
def shop():
    from venomkit.data.loaders import load_dataset

    return load_dataset("toyshop:n_users=120,n_items=80")


@pytest.fixture(scope="module")
def prepared(shop, tmp_path_factory):
    """An amortised AUV-Fusion prepared on the small shop, the targets kept out of training."""
    targets = [3, 17, 42]
    attack = AUVFusion(AUVFusionConfig(**SMALL))
    train = shop.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=shop.catalog.texts, images=shop.catalog.image_list)
    folder = tmp_path_factory.mktemp("auv")
    attack.prepare(PrepareContext(shop, knowledge, targets, folder))
    return attack, targets, folder, knowledge


def test_knn_graph_has_k_neighbours_per_item_and_is_sparse():
    features = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    edges = knn_edges(features, k=4, block=7)  # blocks of 7 rows: the block boundaries must not matter
    assert edges.shape == (2, 200)
    counts = torch.bincount(edges[0], minlength=50)
    assert bool((counts == 4).all()) and not bool((edges[0] == edges[1]).any())  # k each, never itself
    sim = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(features, dim=1).T
    sim.fill_diagonal_(-2)
    assert set(edges[1][edges[0] == 7].tolist()) == set(sim[7].topk(4).indices.tolist())
    from venomkit.attacks.auv_fusion.user_model import row_normalised

    adjacency = row_normalised(edges, 50)
    assert adjacency.is_sparse and adjacency._nnz() == 200 and torch.allclose(torch.sparse.sum(adjacency, 1).to_dense(), torch.ones(50))


def test_the_user_model_learns_and_its_visual_view_can_be_dropped(shop):
    from venomkit.victims.training import train_bpr, validation_metrics

    features = torch.randn(shop.n_items, 16, generator=torch.Generator().manual_seed(1))
    for visual in (True, False):
        torch.manual_seed(0)
        model = DualViewGCN(DualViewConfig(n_users=shop.n_users, n_items=shop.n_items, embed_dim=16, visual_dim=16, visual_view=visual), train=shop.split.train)
        if visual:
            model.set_clean_features({"visual": features})
            model.set_knn_graph()
        before = validation_metrics(model, shop.split)["recall@20"]
        train_bpr(model, shop.split, epochs=5, lr=0.01, patience=None, progress=False)
        assert validation_metrics(model, shop.split)["recall@20"] > before
        assert hasattr(model, "visual_projection") == visual


def test_evaluated_targets_are_never_mlp_training_items(prepared):
    attack, targets, folder, _ = prepared
    info = json.loads((folder / "prepared.json").read_text())
    items = info["mlp"]["items"]
    assert len(items) == SMALL["mlp_items"] and not set(items) & set(targets)
    assert (folder / "attacker.safetensors").is_file() and info["user_model"]["recall@20"] > 0


def test_gradients_reach_the_mlp_weights_through_the_whole_pass(prepared, shop):
    attack, _, _, _ = prepared
    mlp = attack.mlp
    items = [5, 6]
    images = torch.stack(shop.catalog.image_list(items))
    e_group, p_group, _ = attack.groups(images, torch.tensor(items), shop.split.train)
    mlp.zero_grad()
    delta = mlp(e_group, attack.generator.encode_images(images))
    adv = attack.generate(images, delta, None, [1, 2])
    loss, terms = attack.loss(adv, images, p_group)
    loss.sum().backward()
    grads = [p.grad for p in mlp.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert set(terms) == {"l_clip", "l_ssim", "l_align"} and all(bool((t >= -1e-6).all()) for t in terms.values())


def test_a_photo_of_its_own_size_is_attacked_at_the_working_size_and_comes_back_at_its_own(prepared, shop):
    """A 72 x 100 photo: the pass runs at toyshop-sd's 64-px working size (64 x 88), delta has
    that latent shape, and the adversarial photo is 72 x 100, differentiable in delta."""
    attack, _, _, _ = prepared
    photo = torch.nn.functional.interpolate(shop.catalog.image_list([5])[0][None], size=(72, 100), mode="bilinear").clamp(0, 1)
    e_group, p_group, _ = attack.groups(photo, torch.tensor([5]), shop.split.train)
    z0 = attack.clean_latents(photo)
    assert tuple(z0.shape) == (1, 4, 8, 11) and attack.generator.working_size_for(72, 100) == (64, 88)
    delta = attack.mlp(e_group, z0).detach().requires_grad_(True)
    adv = attack.generate(photo, delta, None, [3])
    assert tuple(adv.shape) == (1, 3, 72, 100) and float(adv.detach().min()) >= 0 and float(adv.detach().max()) <= 1
    loss, _ = attack.loss(adv, photo, p_group)
    loss.sum().backward()
    assert delta.grad is not None and float(delta.grad.abs().sum()) > 0


def test_eta_zero_is_plain_img2img(prepared, shop):
    attack, _, folder, knowledge = prepared
    plain = AUVFusion(AUVFusionConfig(**{**SMALL, "eta": 0.0}))
    plain.prepare(PrepareContext(shop, knowledge, [3, 17, 42], folder))  # loads the trained state
    victim_free_images = torch.stack(shop.catalog.image_list([3, 17]))
    e_group, _, _ = plain.groups(victim_free_images, torch.tensor([3, 17]), shop.split.train)
    delta = plain.mlp(e_group, plain.generator.encode_images(victim_free_images))
    assert float(delta.detach().abs().max()) > 0  # a real perturbation, scaled by eta = 0
    with torch.no_grad():
        injected = plain.generate(victim_free_images, delta, None, [1, 2])
        reference = plain.generator.run(victim_free_images, None, strength=0.3, num_steps=10, seed=[1, 2]).images
    assert torch.equal(injected, reference)



def test_uninjected_reference_returns_the_photo_without_injection(prepared, shop):
    """reference: uninjected keeps only the injection's change: eta = 0 gives the photos back
    exactly (the generator's reconstruction error is not part of the change), eta = 1 changes them."""
    attack, targets, folder, knowledge = prepared
    photos = torch.stack(shop.catalog.image_list([3, 17]))
    for eta, same in ((0.0, True), (1.0, False)):
        variant = AUVFusion(AUVFusionConfig(**{**SMALL, "eta": eta, "reference": "uninjected"}))
        variant.prepare(PrepareContext(shop, knowledge, targets, folder))
        e_group, _, _ = variant.groups(photos, torch.tensor([3, 17]), shop.split.train)
        with torch.no_grad():
            adv = variant.generate(photos, variant.mlp(e_group, variant.clean_latents(photos)), None, [1, 2])
        assert torch.equal(adv, photos) is same
    with pytest.raises(ValueError, match="reference must be photo or uninjected"):
        AUVFusionConfig(reference="clean")
    # The pass without injection is computed once per photo and reused (same values as recomputing it).
    with torch.no_grad():
        delta = variant.mlp(e_group, variant.clean_latents(photos))
        plain = variant.plain_passes(photos, None, [1, 2])
        assert torch.equal(variant.generate(photos, delta, None, [1, 2], plain), variant.generate(photos, delta, None, [1, 2]))
    assert attack.plain_passes(photos, None, [1, 2]) is None  # reference: photo has none


def test_diagnostics_say_where_the_alignment_started(prepared, shop):
    """l_align_clean is the alignment term of the clean photo: with eta = 0 and the uninjected
    reference the attack returns the photos, so the two are equal; with eta = 1 they differ."""
    from venomkit.attacks.targets import TargetBatch

    _, targets, folder, knowledge = prepared
    photos = torch.stack(shop.catalog.image_list([3, 17]))
    for eta in (0.0, 1.0):
        variant = AUVFusion(AUVFusionConfig(**{**SMALL, "eta": eta, "reference": "uninjected"}))
        variant.prepare(PrepareContext(shop, knowledge, targets, folder))
        adv, _, diag = variant.perturb(None, TargetBatch([3, 17], photos, None, knowledge=knowledge))
        assert torch.equal(diag["l_align"], diag["l_align_clean"]) is (eta == 0.0) and torch.equal(adv, photos) is (eta == 0.0)
        assert "group_score_adv" not in diag  # no recommender of its own to score with


def test_a_run_on_the_engine_scores_the_saved_pngs(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
    from run_helpers import REPO, naive_hr, rows

    from venomkit.data.catalog import load_image_file
    from venomkit.data.loaders import load_dataset
    from venomkit.runs import RunFlags, execute, load_run
    from venomkit.victims.checkpoint import load_victim

    overrides = [f"{k}={v}" for k, v in SMALL.items()] + ["victims.vbpr.train.epochs=2"]
    run = load_run(REPO / "attacks" / "auv_fusion.yaml", overrides, RunFlags(victim="vbpr", data="toyshop:n_users=120,n_items=80", targets=3, max_interactions=40))
    run.recipe.outputs.report = False
    summary = execute(run, tmp_path, progress=False)
    assert (tmp_path / "attackers" / "auv_fusion" / "prepared.json").is_file() and summary["n_targets"] == 3
    dataset = load_dataset("toyshop:n_users=120,n_items=80")
    victim = load_victim(tmp_path / "victims" / "vbpr")
    for r in rows(tmp_path / "results.csv"):
        t, adv = int(r["item_index"]), load_image_file(tmp_path / r["adv_image"])
        with torch.no_grad():
            features = {"visual": victim.image_encoder(adv[None]), "text": victim.text_encoder([dataset.catalog.texts[t]])}
        assert float(r["hr@50_after"]) == pytest.approx(naive_hr(victim, dataset, t, features, 50), abs=1e-9)
        assert 0 < float(r["ssim"]) <= 1 and "diag_l_align" in r


def test_amortised_and_refined_attacks_of_one_run_share_one_trained_mlp(tmp_path, monkeypatch):
    """The MLP does not depend on the refinement steps: a run that holds the MLP alone and
    refined variants trains it once (also without a cache), so the rows differ by refinement only."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runs"))
    from run_helpers import REPO

    from venomkit.runs import RunFlags, execute, load_run
    from venomkit.runs.engine import attacker_cache_key

    trained = []
    original = AUVFusion._train_mlp
    monkeypatch.setattr(AUVFusion, "_train_mlp", lambda self, *a, **k: trained.append(self.config.mode) or original(self, *a, **k))
    small = ", ".join(f"{k}: {v}" for k, v in SMALL.items())
    attacks = ("attacks=[" + ", ".join(
        f"{{name: {name}, recipe: attacks/auv_fusion.yaml, config: {{{small}{extra}}}}}"
        for name, extra in [("mlp", ""), ("refined1", ", mode: refined, refine_steps: 1"), ("refined2", ", mode: refined, refine_steps: 2"),
                            ("per_image", ", mode: per_image, image_steps: 1")]) + "]")
    run = load_run(REPO / "defenses" / "judge.yaml", [attacks, "victims=[{kind: vbpr, train: {epochs: 2}}]", "defenses=[]",
                                                       "outputs.tables=[promotion]", "outputs.report=false", "outputs.grids=false"],
                   RunFlags(data="toyshop:n_users=120,n_items=80", targets=2, max_interactions=40))
    keys = {r.spec.name: attacker_cache_key(r, "data", [1, 2], None) for r in run.attacks}
    assert keys["mlp"] == keys["refined1"] == keys["refined2"] != keys["per_image"]
    execute(run, tmp_path, cache_dir=None, progress=False)
    assert trained == ["amortised"]
    weights = {name: (tmp_path / "attackers" / name / "attacker.safetensors").read_bytes() for name in keys}
    assert weights["mlp"] == weights["refined1"] == weights["refined2"]
    assert json.loads((tmp_path / "attackers" / "per_image" / "prepared.json").read_text()).get("mlp") is None


def test_promotion_on_the_user_model_raises_the_groups_scores_there(shop, tmp_path):
    """promotion_model: user_model needs no surrogate victim: per-image Adam on delta raises the
    target group's scores in the dual-view GCN (where L_align is measured), and the diagnostics
    report them; it refuses a user model without the visual view, which would not see the photo."""
    from venomkit.attacks.targets import TargetBatch

    train = shop.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=shop.catalog.texts, images=shop.catalog.image_list)
    config = {**SMALL, "mode": "per_image", "image_steps": 4, "image_lr": 0.2, "reference": "uninjected",
              "promotion_weight": 5.0, "promotion_model": "user_model"}
    attack = AUVFusion(AUVFusionConfig(**config))  # no surrogate_victim given
    attack.prepare(PrepareContext(shop, knowledge, [3, 17], tmp_path))
    photos = torch.stack(shop.catalog.image_list([3, 17]))
    _, _, diag = attack.perturb(None, TargetBatch([3, 17], photos, None, knowledge=knowledge))
    assert bool((diag["group_score_adv"] > diag["group_score_clean"]).all())
    assert torch.allclose(-diag["l_promo"], diag["group_score_adv"])
    with pytest.raises(ValueError, match="needs visual_view: true"):
        AUVFusionConfig(promotion_model="user_model", visual_view=False)
    with pytest.raises(ValueError, match="promotion_model must be surrogate or user_model"):
        AUVFusionConfig(promotion_model="victim")
    with pytest.raises(ValueError, match="or set promotion_model: user_model"):
        AUVFusion(AUVFusionConfig(promotion_weight=1.0))


def test_alignment_direction_is_the_visual_or_the_whole_group_preference(prepared, shop):
    """align_to: visual_preference aligns with the group's mean e_u_vis, preference with its mean
    e_u = e_u_id + e_u_vis (e_group); both need the visual view."""
    _, targets, folder, knowledge = prepared
    photos = torch.stack(shop.catalog.image_list([3, 17]))
    directions = {}
    for align_to in ("visual_preference", "preference"):
        variant = AUVFusion(AUVFusionConfig(**{**SMALL, "align_to": align_to}))
        variant.prepare(PrepareContext(shop, knowledge, targets, folder))
        e_group, p_group, group = variant.groups(photos, torch.tensor([3, 17]), shop.split.train)
        directions[align_to] = p_group
        with torch.no_grad():
            users_id, _ = variant.user_model.id_view()
            users_vis, _ = variant.user_model.visual_view()
        assert torch.allclose(e_group, (users_id + users_vis)[group].mean(1), atol=1e-6)
    assert torch.allclose(directions["visual_preference"], users_vis[group].mean(1), atol=1e-6)
    assert torch.equal(directions["preference"], e_group)
    with pytest.raises(ValueError, match="align_to: preference .* needs visual_view: true"):
        AUVFusionConfig(align_to="preference", visual_view=False)
