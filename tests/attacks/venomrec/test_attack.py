"""VenomRec's content edit on the MLLM ranker: masks respected, budgets kept on the saved files, both families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mllm_helpers import tiny_qwen2vl_folder, tiny_shop, tiny_vlm_folder

from venomkit.attacks.targets import Knowledge, TargetBatch
from venomkit.attacks.venomrec.attack import VenomRec, VenomRecConfig
from venomkit.data.catalog import load_image_file, save_png
from venomkit.data.toyshop import make
from venomkit.eval.text_edits import text_edit_ratio
from venomkit.victims.mllm.ranker import MLLMRanker
from venomkit.victims.mllm.victim import MLLMVictim

SMALL = dict(rounds=2, image_steps=2, exposure_items=5, exposure_k=5)


def _targets(dataset, n):
    pop = dataset.split.train.popularity()
    return [int(i) for i in np.argsort(pop, kind="stable")[:n]]


def _batch(dataset, items):
    return TargetBatch(items, dataset.catalog.image_batch(items), [dataset.catalog.texts[i] for i in items],
                       knowledge=Knowledge(popularity=dataset.split.train.popularity()))


@pytest.fixture(scope="module")
def zoo_setup():
    dataset = make(n_users=50, n_items=70, image_size=64, interactions_per_user=8, seed=4)
    victim = MLLMVictim.from_dataset(MLLMRanker.load("zoo:toyshop-vlm"), dataset, n_users=8, n_negatives=20, objective_users=3)
    return dataset, victim


def test_edits_stay_in_the_masks_and_budgets_on_the_saved_files(zoo_setup, tmp_path):
    dataset, victim = zoo_setup
    items = _targets(dataset, 2)
    batch = _batch(dataset, items)
    attack = VenomRec(**SMALL, rho_v=0.25, rho_t=0.3, eps=12 / 255, eps_start=8 / 255)
    result = attack(victim, batch)
    pixels, tokens = attack.edit_masks["pixels"], attack.edit_masks["tokens"]
    for k, item in enumerate(items):
        save_png(batch.images[k], tmp_path / f"{item}_clean.png")
        save_png(result.adv_images[k], tmp_path / f"{item}_adv.png")
        clean, adv = load_image_file(tmp_path / f"{item}_clean.png"), load_image_file(tmp_path / f"{item}_adv.png")
        changed = (adv - clean).abs().amax(0) > 0
        assert changed.any() and not (changed & ~pixels[k, 0]).any()  # nothing outside the union of the masks
        assert (adv - clean).abs().max() <= 12 / 255 + 1 / 255 + 1e-6  # the cap, plus PNG rounding
        assert 0.2 <= pixels[k].float().mean() <= 0.6  # a quarter of the patches per round, two rounds
        assert text_edit_ratio(victim.text_tokens, batch.texts[k], result.adv_texts[k]) <= 0.15 + 1e-9
        clean_ids = victim.text_tokens.tokenize([batch.texts[k]])[0]
        adv_ids = victim.text_tokens.tokenize([result.adv_texts[k]])[0]
        edited = clean_ids != adv_ids
        assert not (edited & ~tokens[k]).any()  # substitutions only where the masks allowed them
    assert (result.diagnostics["objective_after"] < result.diagnostics["objective_before"]).all()


def test_single_modality_settings_leave_the_other_alone(zoo_setup):
    dataset, victim = zoo_setup
    items = _targets(dataset, 1)
    batch = _batch(dataset, items)
    text_only = VenomRec(**SMALL, edit="text")(victim, batch)
    assert torch.equal(text_only.adv_images, batch.images)
    image_only = VenomRec(**SMALL, edit="image", mask="random")(victim, batch)
    assert image_only.adv_texts == batch.texts and not torch.equal(image_only.adv_images, batch.images)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="eps_start"):
        VenomRecConfig(eps=4 / 255, eps_start=8 / 255)
    with pytest.raises(ValueError, match="mask"):
        VenomRecConfig(mask="gradient")
    with pytest.raises(ValueError, match="rho_v"):
        VenomRecConfig(rho_v=1.5)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_tiny_models_of_both_families_run_the_whole_attack(family, tmp_path):
    dataset = tiny_shop(n_users=30, n_items=40)
    folder = tiny_vlm_folder(tmp_path / "m", dataset) if family == "llava" else tiny_qwen2vl_folder(tmp_path / "m")
    ranker = MLLMRanker.load(folder)
    assert ranker.family.__class__.__name__.lower().startswith(family.split("_")[0])
    victim = MLLMVictim.from_dataset(ranker, dataset, n_users=6, n_negatives=10, objective_users=2)
    items = _targets(dataset, 2)
    batch = _batch(dataset, items)
    result = VenomRec(**SMALL)(victim, batch)
    assert result.adv_images.shape == batch.images.shape
    assert (result.adv_images - batch.images).abs().max() <= 16 / 255 + 1e-6
    assert torch.isfinite(result.diagnostics["objective_after"]).all()
    assert (result.diagnostics["objective_after"] <= result.diagnostics["objective_before"]).all()
