"""The `venomkit attack` run: files, budgets on saved PNGs, per-target round trip, resume."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from venomkit.attacks.pgd import PGD
from venomkit.attacks.token_hotflip import TokenHotFlip
from venomkit.attacks.runner import add_attack_arguments, resolve_attack, run_attack
from venomkit.data.catalog import Catalog, load_image_file
from venomkit.data.dataset import Dataset
from venomkit.data.interactions import Interactions, Split

TARGETS = [25, 27, 29]


@pytest.fixture()
def dataset(shop):
    catalog = Catalog(
        item_ids=[f"it{i}" for i in range(30)],
        texts=list(shop["texts"]),
        image_size=16,
        attributes={"category": shop["categories"]},
        images=[img for img in shop["images"]],
    )
    inter = Interactions(shop["train"])
    empty = Interactions(sp.csr_matrix(shop["train"].shape, dtype=np.float32))
    return Dataset("tiny", catalog, inter, split=Split(inter, empty, empty))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_writes_files_and_round_trip_figures(shop, dataset, tmp_path):
    attack = PGD(steps=3, k=5)
    summary = run_attack(attack, shop["victim"], dataset, tmp_path, targets=TARGETS, batch_size=2, progress=False)
    rows = _rows(tmp_path / "results.csv")
    assert [r["item_id"] for r in rows] == [f"it{t}" for t in TARGETS]
    for r, t in zip(rows, TARGETS):
        clean = load_image_file(tmp_path / "images" / f"it{t}_clean.png")
        adv = load_image_file(tmp_path / "images" / f"it{t}_adv.png")
        assert (tmp_path / "images" / f"it{t}_grid.png").is_file()
        assert (adv - clean).abs().max() <= 8 / 255 + 1 / 255 + 1e-6
        assert float(r["linf"]) == pytest.approx(float((adv - clean).abs().max()), abs=1e-6)
        assert 0 < float(r["ssim"]) <= 1
        # "after" re-encodes the saved PNG with only this target replaced.
        victim = shop["victim"]
        with torch.no_grad():
            idx = torch.tensor([t])
            u, i = victim(victim.features_with(idx, victim.encode_content(adv[None], [shop["texts"][t]])))
            scores = u @ i.T
            scores[torch.from_numpy(shop["train"].toarray() > 0)] = float("-inf")
            scores[:, t] = float("-inf")  # the target is not its own competitor (and matmul rounding differs)
            eligible = ~torch.from_numpy(shop["train"].toarray()[:, t] > 0)
            target_score = (u @ i[t])
            rank = (scores > target_score[:, None]).sum(1)
            hr5 = ((rank < 5) & eligible).sum() / eligible.sum()
        assert float(r["hr@5_after"]) == pytest.approx(float(hr5), abs=1e-6)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n_targets"] == 3 and "hr@50_after" in s["means"] and summary["n_targets"] == 3
    # The tiny encoders are not one CLIP model: no clip_* figures, only the victim's own cosine.
    assert "clip_image_sim" not in rows[0] and "clip_text_sim_adv" not in rows[0]
    assert all(-1 - 1e-6 <= float(r["victim_image_sim"]) <= 1 + 1e-6 for r in rows)


def test_stealth_clip_figures_are_cosines_of_the_saved_pngs(shop, dataset, tmp_path):
    victim = shop["victim"]
    pair = (victim.image_encoder, victim.text_encoder)  # stands in for a CLIP: both map to 16 dims
    run_attack(PGD(steps=2, k=5), victim, dataset, tmp_path, targets=TARGETS[:2], progress=False, stealth_clip=pair)
    for r, t in zip(_rows(tmp_path / "results.csv"), TARGETS[:2]):
        clean = load_image_file(tmp_path / "images" / f"it{t}_clean.png")[None]
        adv = load_image_file(tmp_path / "images" / f"it{t}_adv.png")[None]
        with torch.no_grad():
            f_clean, f_adv, f_text = pair[0](clean), pair[0](adv), pair[1]([shop["texts"][t]])
        assert float(r["clip_image_sim"]) == pytest.approx(float(torch.cosine_similarity(f_clean, f_adv)), abs=1e-5)
        assert float(r["clip_text_sim_adv"]) == pytest.approx(float(torch.cosine_similarity(f_adv, f_text)), abs=1e-5)
        assert float(r["clip_text_sim_clean"]) == pytest.approx(float(torch.cosine_similarity(f_clean, f_text)), abs=1e-5)


def test_resume_skips_done_targets(shop, dataset, tmp_path):
    run_attack(PGD(steps=1, k=5), shop["victim"], dataset, tmp_path, targets=TARGETS[:2] + [TARGETS[2]], batch_size=2, progress=False)
    rows = _rows(tmp_path / "results.csv")
    # Simulate a kill after the first batch: drop the last row, then resume.
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:2])
    calls = []

    class Counting(PGD):
        def perturb(self, model, images, texts, item_index, users, knowledge):
            calls.append(item_index.tolist())
            return super().perturb(model, images, texts, item_index, users, knowledge)

    run_attack(Counting(steps=1, k=5), shop["victim"], dataset, tmp_path, targets=TARGETS, batch_size=2, progress=False)
    assert calls == [[TARGETS[2]]]
    assert [r["item_id"] for r in _rows(tmp_path / "results.csv")] == [f"it{t}" for t in TARGETS]
    with pytest.raises(ValueError, match="different run"):
        run_attack(PGD(steps=1), shop["victim"], dataset, tmp_path, targets=[1, 2], meta={"attack": "pgd"}, progress=False)


def test_text_attack_writes_texts_csv(shop, dataset, tmp_path):
    run_attack(TokenHotFlip(k=5, max_edit_ratio=0.5), shop["victim"], dataset, tmp_path, targets=TARGETS, progress=False)
    texts = _rows(tmp_path / "texts.csv")
    assert [t["item_id"] for t in texts] == [f"it{t}" for t in TARGETS]
    rows = _rows(tmp_path / "results.csv")
    assert all(float(r["text_edit_ratio"]) <= 0.5 + 1e-9 for r in rows)


def test_resolve_attack_from_recipe_and_overrides(tmp_path):
    attack, meta = resolve_attack("pgd", ["eps=4/255", "steps=3"])
    assert attack.config.eps == pytest.approx(4 / 255) and meta["attack"] == "pgd"
    with pytest.raises(ValueError, match="valid keys"):
        resolve_attack("pgd", ["epsilon=1"])
    parser = add_attack_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["pgd", "eps=2/255", "--victim", "v", "--data", "toyshop", "--out", str(tmp_path)])
    assert args.overrides == ["eps=2/255"] and args.targets == 50
