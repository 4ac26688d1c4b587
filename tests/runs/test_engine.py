"""The run engine on a small toyshop with the zoo: files, figures from the saved files, resume,
refusal, text and feature attacks, the shop's JPEG pipeline, the judgement, the victim cache."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from run_helpers import FAST_VICTIM, REPO, SMALL_SHOP, attack_run, naive_hr, rows

from venomkit.data.catalog import load_image_file
from venomkit.runs import RunFlags, execute, load_run
from venomkit.runs.store import RunFolderError


@pytest.fixture(scope="module")
def pgd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pgd")
    summary = attack_run(out, "pgd", ["steps=2"], targets=4, batch_size=3)
    return out, summary


def test_attack_run_writes_the_folder_and_measures_the_saved_files(pgd_run):
    from skimage.metrics import structural_similarity

    from venomkit.data.loaders import load_dataset
    from venomkit.victims.checkpoint import load_victim

    out, summary = pgd_run
    table = rows(out / "results.csv")
    assert len(table) == 4 and summary["n_targets"] == 4 and summary["num_processes"] == 1
    assert {"run.json", "resolved.yaml", "summary.json", "results.csv", "records", "images", "victims"} <= {p.name for p in out.iterdir()}
    dataset = load_dataset(SMALL_SHOP)
    victim = load_victim(out / "victims" / "vbpr")
    for r in table:
        t = int(r["item_index"])
        clean = load_image_file(out / r["clean_image"])
        adv = load_image_file(out / r["adv_image"])
        assert r["clean_image"] == f"images/{r['item_id']}_clean.png" and (out / "images" / f"{r['item_id']}_grid.png").is_file()
        # The clean PNG is the catalog's pixels (8-bit), the adversarial one within the budget.
        original = dataset.catalog.image(t)
        assert torch.equal(clean, torch.round(original * 255) / 255)
        assert float((adv - clean).abs().max()) <= 8 / 255 + 1 / 255 + 1e-6
        assert float(r["linf"]) == pytest.approx(float((adv - clean).abs().max()), abs=1e-7)
        ssim = structural_similarity(clean.double().numpy(), adv.double().numpy(), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, channel_axis=0)
        assert float(r["ssim"]) == pytest.approx(ssim, abs=1e-9)
        # "after" re-encodes the saved PNG with only this target replaced.
        with torch.no_grad():
            features = {"visual": victim.image_encoder(adv[None]), "text": victim.text_encoder([dataset.catalog.texts[t]])}
        assert float(r["hr@5_after"]) == pytest.approx(naive_hr(victim, dataset, t, features, 5), abs=1e-9)
        assert float(r["hr@50_after"]) == pytest.approx(naive_hr(victim, dataset, t, features, 50), abs=1e-9)
        assert float(r["hr@50_before"]) == pytest.approx(naive_hr(victim, dataset, t, {}, 50), abs=1e-9)
    info = json.loads((out / "run.json").read_text())
    assert info["fingerprint"]["settings"]["attacks"][0]["config"]["steps"] == 2
    assert info["fingerprint"]["settings"]["victims"][0]["kind"] == "vbpr"


def test_resume_reruns_only_unfinished_batches_and_ends_equal(pgd_run, tmp_path, monkeypatch):
    from venomkit.runs import engine

    out, _ = pgd_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "results.csv").unlink()
    records = sorted((copy / "records" / "vbpr" / "pgd").glob("*.json"))
    assert len(records) == 4  # batches of 3: [t0, t1, t2], [t3]
    records[1].unlink()  # batch 0 half committed
    calls = []
    real = engine.attack_batch
    monkeypatch.setattr(engine, "attack_batch", lambda ctx, targets, memo=None: calls.append(list(targets)) or real(ctx, targets, memo))
    attack_run(copy, "pgd", ["steps=2"], targets=4, batch_size=3)
    assert len(calls) == 1 and len(calls[0]) == 3  # the half-done batch re-ran whole; the done one did not
    assert (copy / "results.csv").read_bytes() == (out / "results.csv").read_bytes()


def test_another_victim_in_the_same_folder_is_refused_naming_it(pgd_run, tmp_path):
    out, _ = pgd_run
    with pytest.raises(RunFolderError, match=r"holds a different run \(.*victims\[vbpr\]\.train\.epochs: 2 -> 3"):
        attack_run(out, "pgd", ["steps=2", "victims.vbpr.train.epochs=3"], targets=4, batch_size=3)
    with pytest.raises(RunFolderError, match=r"attacks\[pgd\]\.config\.steps: 2 -> 1"):
        attack_run(out, "pgd", ["steps=1"], targets=4, batch_size=3)
    # A checkpoint victim is identified by its content.
    ckpt_a, ckpt_b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(out / "victims" / "vbpr", ckpt_a)
    shutil.copytree(out / "victims" / "vbpr", ckpt_b)
    from safetensors.torch import load_file, save_file

    tensors = load_file(ckpt_b / "model.safetensors")
    tensors["item_bias"] = tensors["item_bias"] + 1.0
    save_file(tensors, ckpt_b / "model.safetensors")
    run_dir = tmp_path / "run"
    attack_run(run_dir, "fgsm", targets=2, victim=str(ckpt_a))
    with pytest.raises(RunFolderError, match=r"victims\[b\]|victims\[a\]"):
        attack_run(run_dir, "fgsm", targets=2, victim=str(ckpt_b))
    shutil.rmtree(ckpt_a)
    shutil.copytree(ckpt_b, ckpt_a)  # same path, other weights
    with pytest.raises(RunFolderError, match=r"victims\[a\]\.checkpoint: sha256:"):
        attack_run(run_dir, "fgsm", targets=2, victim=str(ckpt_a))
    run = load_run(REPO / "attacks" / "fgsm.yaml", flags=RunFlags(victim=str(ckpt_a), data=SMALL_SHOP, targets=2))
    run.recipe.outputs.report = False
    summary = execute(run, run_dir, overwrite=True, progress=False)
    assert summary["n_targets"] == 2


def test_text_attack_writes_texts_and_edit_ratios_on_real_tokens(tmp_path):
    from venomkit.encoders.loading import load_text_encoder

    summary = attack_run(tmp_path, "token_hotflip", ["max_edit_ratio=0.3"], targets=3)
    texts = rows(tmp_path / "texts.csv")
    assert [t["item_id"] for t in texts] == summary["targets"]
    encoder = load_text_encoder("zoo:toyshop-clip")
    for r, t in zip(rows(tmp_path / "results.csv"), texts):
        assert not r.get("clean_image") and "ssim" not in r
        clean_ids = [i for i in encoder.tokenize([t["original"]])[0].tolist() if i not in (0, 49406, 49407)]
        adv_ids = [i for i in encoder.tokenize([t["adversarial"]])[0].tolist() if i not in (0, 49406, 49407)]
        d = np.zeros((len(clean_ids) + 1, len(adv_ids) + 1), dtype=int)
        d[:, 0], d[0, :] = range(len(clean_ids) + 1), range(len(adv_ids) + 1)
        for i in range(1, len(clean_ids) + 1):
            for j in range(1, len(adv_ids) + 1):
                d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (clean_ids[i - 1] != adv_ids[j - 1]))
        assert float(r["text_edit_ratio"]) == pytest.approx(d[-1, -1] / len(clean_ids))
        assert float(r["text_edit_ratio"]) <= 0.3 + 1e-9


def test_shop_jpeg_pipeline_is_what_gets_scored(tmp_path):
    from skimage.metrics import structural_similarity

    attack_run(tmp_path, "pgd", ["steps=2"], targets=2, shop_transform="jpeg:90")
    for r in rows(tmp_path / "results.csv"):
        assert r["adv_image"].endswith("_adv_shop.jpg") and r["clean_image"].endswith("_clean_shop.jpg")
        assert (tmp_path / r["adv_image"].replace("_adv_shop.jpg", "_adv.png")).is_file()
        clean, adv = load_image_file(tmp_path / r["clean_image"]), load_image_file(tmp_path / r["adv_image"])
        ssim = structural_similarity(clean.double().numpy(), adv.double().numpy(), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, channel_axis=0)
        assert float(r["ssim"]) == pytest.approx(ssim, abs=1e-9)
    assert json.loads((tmp_path / "run.json").read_text())["fingerprint"]["settings"]["shop_transform"] == "jpeg:90"


def test_feature_attack_stays_in_its_ball(tmp_path):
    run = load_run(REPO / "defenses" / "judge.yaml", ["victims=vbpr", *FAST_VICTIM, "defenses=[]", "attacks=feature_pgd",
                                                     "attacks.feature_pgd.config.steps=3", "outputs.tables=[]"],
                   RunFlags(data=SMALL_SHOP, targets=3))
    run.recipe.outputs.report = False
    summary = execute(run, tmp_path, progress=False)
    table = rows(tmp_path / "results.csv")
    assert len(table) == 3 and summary["settings"][0]["attack"] == "feature_pgd"
    for r in table:
        assert float(r["shift_visual"]) <= 0.1 + 1e-5 and float(r["shift_text"]) <= 0.1 + 1e-5
        assert float(r["hr@50_after"]) >= float(r["hr@50_before"]) - 1e-9


def test_judgement_table_and_rerun_trains_nothing(tmp_path, caplog):
    overrides = ["victims=vbpr", *FAST_VICTIM, "defenses=defenses/uat_mc.yaml", "defenses.uat_mc.config.epochs=1",
                 "attacks=attacks/pgd.yaml,feature_fgsm", "attacks.pgd.config.steps=1"]
    run = load_run(REPO / "defenses" / "judge.yaml", overrides, RunFlags(data=SMALL_SHOP, targets=2))
    summary = execute(run, tmp_path / "judge", progress=False)
    table = (tmp_path / "judge" / "table.md").read_text()
    assert "| vbpr | w/o AT | pgd |" in table and "| vbpr | UAT-MC | feature_fgsm |" in table
    assert [(r["defense"], r["attack"]) for r in summary["judge"]] == [("w/o AT", "pgd"), ("w/o AT", "feature_fgsm"), ("UAT-MC", "pgd"), ("UAT-MC", "feature_fgsm")]
    assert summary["judge"][0]["ndcg@20_rel_change"] == 0.0
    assert (tmp_path / "judge" / "report.html").is_file()
    # A second recipe folder on the same data and settings: victims come from the cache.
    caplog.set_level("INFO", logger="venomkit")
    run = load_run(REPO / "defenses" / "judge.yaml", overrides, RunFlags(data=SMALL_SHOP, targets=2))
    again = execute(run, tmp_path / "again", progress=False)
    assert again["victims"]["vbpr"]["cached"] and again["victims"]["vbpr+uat_mc"]["cached"]
    assert "loaded from the cache" in caplog.text
    assert [r["hr@50_after"] for r in again["judge"]] == [r["hr@50_after"] for r in summary["judge"]]


def test_explicit_targets_and_their_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown item id 'nope'"):
        attack_run(tmp_path / "a", "fgsm", ["targets.items=[item0001,nope]"])
    summary = attack_run(tmp_path / "b", "fgsm", ["targets.items=[item0003,item0001]"])
    assert summary["targets"] == ["item0003", "item0001"]


def test_surrogate_victim_content_is_made_once_and_scored_by_each_victim(tmp_path, monkeypatch):
    """Grey-box PGD on the attacker's own VBPR (another seed, never attacked): the two victims
    score the same saved PNGs, made once per batch, equal to a run with one victim alone."""
    from venomkit.attacks.pgd import PGD

    calls = []
    original = PGD.__call__

    def counted(self, victim, images, *args, **kwargs):
        calls.append(len(images))
        return original(self, victim, images, *args, **kwargs)

    monkeypatch.setattr(PGD, "__call__", counted)
    victims = ("victims=[{name: vbpr, kind: vbpr, train: {epochs: 2}}, {name: amr, kind: amr, train: {epochs: 2}}, "
               "{name: mine, kind: vbpr, attacked: false, train: {epochs: 2, seed: 1}}]")
    grey = ["defenses=[]", "attacks=[{attack: pgd, config: {steps: 2}, surrogate_victim: mine}]", "outputs.tables=[promotion]", "metrics.ks=[5,50]"]
    run = load_run(REPO / "defenses" / "judge.yaml", [victims, *grey], RunFlags(data=SMALL_SHOP, targets=3, batch_size=2))
    run.recipe.outputs.report = False
    summary = execute(run, tmp_path / "both", progress=False)
    assert [s["victim"] for s in summary["settings"]] == ["vbpr", "amr"]  # the surrogate is never a target
    assert summary["victims"]["mine"]["role"] == "attacker's surrogate"
    assert calls == [2, 1]  # two batches, each made once for both victims
    table = rows(tmp_path / "both" / "results.csv")
    by_victim = {v: {r["item_id"]: r for r in table if r["victim"] == v} for v in ("vbpr", "amr")}
    for item, r in by_victim["vbpr"].items():
        same = by_victim["amr"][item]
        assert (tmp_path / "both" / r["adv_image"]).read_bytes() == (tmp_path / "both" / same["adv_image"]).read_bytes()
    promotion = rows(tmp_path / "both" / "promotion.csv")
    assert [(r["victim"], r["method"], float(r["budget"])) for r in promotion] == [("vbpr", "pgd", pytest.approx(8 / 255)), ("amr", "pgd", pytest.approx(8 / 255))]
    for r in promotion:
        mine_rows = by_victim[r["victim"]].values()
        for k in (5, 50):
            gain = np.mean([float(x[f"hr@{k}_after"]) for x in mine_rows]) - np.mean([float(x[f"hr@{k}_before"]) for x in mine_rows])
            assert float(r[f"hr@{k}_gain"]) == pytest.approx(gain, abs=1e-12)
        assert float(r["ssim"]) == pytest.approx(np.mean([float(x["ssim"]) for x in mine_rows]))
    assert (tmp_path / "both" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alone = ("victims=[{name: amr, kind: amr, train: {epochs: 2}}, {name: mine, kind: vbpr, attacked: false, train: {epochs: 2, seed: 1}}]")
    run = load_run(REPO / "defenses" / "judge.yaml", [alone, *grey], RunFlags(data=SMALL_SHOP, targets=3, batch_size=2))
    run.recipe.outputs.report = False
    execute(run, tmp_path / "alone", progress=False)
    for r in rows(tmp_path / "alone" / "results.csv"):
        shared = by_victim["amr"][r["item_id"]]
        assert (tmp_path / "alone" / r["adv_image"]).read_bytes() == (tmp_path / "both" / shared["adv_image"]).read_bytes()
        assert r["hr@50_after"] == shared["hr@50_after"]


def test_attacker_cache_key_names_the_surrogate_victim_it_trains_against():
    """AUV-Fusion's MLP with a promotion term is trained on its surrogate_victim: two runs whose
    attacker models differ must not share cached attacker models, even with equal attack configs."""
    from venomkit.runs.engine import attacker_cache_key

    attacks = {r.spec.name: r for r in load_run(REPO / "experiments" / "auv_fusion.yaml", [], RunFlags()).attacks}
    promo = attacks["auv_promo"]
    assert promo.spec.surrogate_victim == "attacker_vbpr"
    key = attacker_cache_key(promo, "data", [3, 1, 2], "vbpr-seed-1")
    assert key == attacker_cache_key(promo, "data", [1, 2, 3], "vbpr-seed-1")  # the targets as a set
    assert key != attacker_cache_key(promo, "data", [1, 2, 3], "vbpr-seed-2")  # another attacker model
    assert key != attacker_cache_key(promo, "data", [1, 2, 3], None)
    assert key != attacker_cache_key(attacks["auv_promo_no_align"], "data", [1, 2, 3], "vbpr-seed-1")
    assert key != attacker_cache_key(promo, "other data", [1, 2, 3], "vbpr-seed-1")
