"""``run_attack``: an attack (recipe, name or object) on a victim OBJECT, through the engine."""

from __future__ import annotations

import json

import pytest
import torch
from run_helpers import REPO, rows, tiny_shop_and_victim

from venomkit.attacks.pgd import PGD
from venomkit.data.catalog import load_image_file
from venomkit.runs.attack import run_attack
from venomkit.runs.store import RunFolderError

TARGETS = [25, 27, 29]


@pytest.fixture(scope="module")
def tiny():
    return tiny_shop_and_victim()


def test_recipe_name_and_object_give_the_same_rows(tiny, tmp_path):
    dataset, victim = tiny
    by_recipe = run_attack(REPO / "attacks" / "pgd.yaml", victim, dataset, tmp_path / "a", overrides=["steps=2"], targets=TARGETS, progress=False)
    attack = PGD(steps=2, objective="sigmoid", temperature=0.3)
    by_object = run_attack(attack, victim, dataset, tmp_path / "b", targets=TARGETS, progress=False)
    a, b = rows(tmp_path / "a" / "results.csv"), rows(tmp_path / "b" / "results.csv")
    assert [r["item_id"] for r in a] == ["it25", "it27", "it29"] and by_recipe["n_targets"] == by_object["n_targets"] == 3
    assert [r["hr@5_after"] for r in a] == [r["hr@5_after"] for r in b]
    for r in a:
        clean, adv = load_image_file(tmp_path / "a" / r["clean_image"]), load_image_file(tmp_path / "a" / r["adv_image"])
        assert float((adv - clean).abs().max()) <= 8 / 255 + 1 / 255 + 1e-6
    # The tiny encoders are not one CLIP: no clip_* figures, the victim's own cosine only.
    assert "clip_image_sim" not in a[0] and -1 <= float(a[0]["victim_image_sim"]) <= 1


def test_stealth_clip_figures_are_cosines_of_the_saved_pngs(tiny, tmp_path):
    dataset, victim = tiny
    pair = (victim.image_encoder, victim.text_encoder)  # stands in for a CLIP: both map to 8 dims
    run_attack("pgd", victim, dataset, tmp_path, overrides=["steps=2"], targets=TARGETS[:2], stealth_clip=pair, progress=False)
    for r, t in zip(rows(tmp_path / "results.csv"), TARGETS[:2]):
        clean, adv = load_image_file(tmp_path / r["clean_image"])[None], load_image_file(tmp_path / r["adv_image"])[None]
        with torch.no_grad():
            f_clean, f_adv, f_text = pair[0](clean), pair[0](adv), pair[1]([dataset.catalog.texts[t]])
        assert float(r["clip_image_sim"]) == pytest.approx(float(torch.cosine_similarity(f_clean, f_adv)), abs=1e-6)
        assert float(r["clip_text_sim_adv"]) == pytest.approx(float(torch.cosine_similarity(f_adv, f_text)), abs=1e-6)
        assert float(r["clip_text_sim_clean"]) == pytest.approx(float(torch.cosine_similarity(f_clean, f_text)), abs=1e-6)


def test_an_attack_class_of_ones_own_runs_without_registering(tiny, tmp_path):
    dataset, victim = tiny

    class Brighter(PGD):
        """A user's attack: PGD whose result is brightened (the base class still enforces the budget)."""

        name = "brighter"

        def perturb(self, model, batch):
            adv, adv_texts, diag = super().perturb(model, batch)
            return (adv + 1.0).clamp(0, 1), adv_texts, diag

    summary = run_attack(Brighter(steps=1, eps=4 / 255), victim, dataset, tmp_path, targets=TARGETS, progress=False)
    assert summary["settings"][0]["attack"] == "brighter"
    for r in rows(tmp_path / "results.csv"):
        assert float(r["linf"]) <= 4 / 255 + 1 / 255 + 1e-6  # the base class clipped the brightening to the budget
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["resolved"]["attacks"][0]["class"].endswith("Brighter")


def test_resume_and_refusal_with_objects(tiny, tmp_path):
    dataset, victim = tiny
    run_attack("pgd", victim, dataset, tmp_path, overrides=["steps=2"], targets=TARGETS, progress=False)
    table = (tmp_path / "results.csv").read_bytes()
    (tmp_path / "results.csv").unlink()
    run_attack("pgd", victim, dataset, tmp_path, overrides=["steps=2"], targets=TARGETS, progress=False)  # resumes: all done
    assert (tmp_path / "results.csv").read_bytes() == table
    other = type(victim)(victim.config)
    other.load_state_dict(victim.state_dict())
    other.attach_encoders(victim.image_encoder, victim.text_encoder)
    with torch.no_grad():
        other.item_bias.add_(1.0)
    with pytest.raises(RunFolderError, match=r"given\.victim"):
        run_attack("pgd", other.eval(), dataset, tmp_path, overrides=["steps=2"], targets=TARGETS, progress=False)


def test_targets_without_an_image_are_never_attacked(tiny, tmp_path):
    import dataclasses

    dataset, victim = tiny
    images = list(dataset.catalog.images)
    images[29] = None  # a cold item whose photo is missing (a loader's placeholder policy)
    catalog = dataclasses.replace(dataset.catalog, images=images)
    shop = dataclasses.replace(dataset, catalog=catalog, split=dataset.split)
    with pytest.raises(ValueError, match="item 'it29' has no readable image"):
        run_attack("fgsm", victim, shop, tmp_path / "a", targets=[27, 29], progress=False)
    cold = [i for i, n in enumerate(shop.split.train.popularity()) if n <= 3]
    assert 29 in cold  # it would be a candidate, but it has no photo
    summary = run_attack("fgsm", victim, shop, tmp_path / "b", n_targets=len(cold) - 1, max_interactions=3, progress=False)
    assert sorted(summary["targets"]) == sorted(f"it{i}" for i in cold if i != 29)
    with pytest.raises(ValueError, match="and an image"):
        run_attack("fgsm", victim, shop, tmp_path / "c", n_targets=len(cold), max_interactions=3, progress=False)


def test_batched_ranking_equals_ranking_each_target_alone(tiny, monkeypatch, tmp_path):
    """For a victim whose items do not interact (VBPR), the "after" ranking of a whole batch in
    one pass gives the per-target figures bit for bit."""
    dataset, victim = tiny
    targets = [21, 23, 25, 27, 29]
    run_attack("pgd", victim, dataset, tmp_path / "batched", overrides=["steps=2"], targets=targets, progress=False)
    monkeypatch.setattr(type(victim), "items_independent", False)
    run_attack("pgd", victim, dataset, tmp_path / "alone", overrides=["steps=2"], targets=targets, progress=False)
    batched, alone = rows(tmp_path / "batched" / "results.csv"), rows(tmp_path / "alone" / "results.csv")
    columns = [c for c in batched[0] if c.startswith(("hr@", "mean_rank", "median_rank", "ri@"))]
    assert len(columns) == 13
    assert [[r[c] for c in columns] for r in batched] == [[r[c] for c in columns] for r in alone]
