"""The poisoning run's config (settings by name, one-line errors) and its utility comparison with clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from run_helpers import rows

from venomkit.config import build_config
from venomkit.runs.poisoning import DEFAULT_SETTINGS, PoisoningRunConfig, run_poisoning


def test_settings_by_name_are_the_default_settings():
    config = build_config(PoisoningRunConfig, {"settings": "clean, venomrec_text_only,venomrec"}, where="command line")
    assert [s.name for s in config.parsed_settings] == ["clean", "venomrec_text_only", "venomrec"]
    assert config.settings[1] == next(d for d in DEFAULT_SETTINGS if d["name"] == "venomrec_text_only")
    config.settings[1]["config"]["edit"] = "image"  # a copy: the defaults are not shared
    assert next(d for d in DEFAULT_SETTINGS if d["name"] == "venomrec_text_only")["config"] == {"edit": "text"}
    mixed = PoisoningRunConfig(settings=["clean", {"name": "mine", "attack": "venomrec", "config": {"rounds": 1}}])
    assert [s.name for s in mixed.parsed_settings] == ["clean", "mine"]


@pytest.mark.parametrize(
    "settings, words",
    [
        ("clean,nope", ("'nope' is not a default setting", "valid names: clean, direct_boosting")),
        ("venomrec", ("must be named 'clean'",)),
        ([], ("non-empty list",)),
        (["clean", 3], ("a mapping or a default setting's name",)),
    ],
)
def test_bad_settings_are_one_line_errors(settings, words):
    with pytest.raises(ValueError) as info:
        build_config(PoisoningRunConfig, {"settings": settings}, where="recipe")
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)


def test_utility_is_compared_with_clean_user_by_user(tmp_path, monkeypatch):
    from venomkit.data.loaders import load_dataset

    dataset = load_dataset("toyshop:n_users=40,n_items=60,interactions_per_user=6")
    config = PoisoningRunConfig(
        targets=2, eval_users=6, n_negatives=12, objective_users=2, attacker_users=4, ks=[1, 5], mr=0.05,
        finetune={"steps": 3, "batch_size": 2, "warmup": 1, "lr": 5e-2}, threads=1,
        settings=["clean", {"name": "noisy", "attack": "random_injection", "config": {"max_edit_ratio": 0.5}},
                  {"name": "venomrec", "attack": "venomrec", "config": {"rounds": 1, "image_steps": 1, "exposure_items": 4, "exposure_k": 5}}],
    )
    import importlib

    finetune_module = importlib.import_module("venomkit.victims.mllm.finetune")  # the package exports the function under the same name

    seen, finetune, before = [], finetune_module.finetune, torch.get_num_threads()
    monkeypatch.setattr(finetune_module, "finetune", lambda *a, **k: seen.append(torch.get_num_threads()) or finetune(*a, **k))
    torch.set_num_threads(2)
    try:
        summary = run_poisoning(config, dataset, tmp_path / "run", progress=False, report=False)
        assert torch.get_num_threads() == 2  # the run's count is the run's, restored afterwards
    finally:
        torch.set_num_threads(before)
    assert [s["attack"] for s in summary["settings"]] == ["clean", "noisy", "venomrec"] and summary["num_processes"] == 1
    assert summary["threads"] == 1 and seen == [1, 1, 1]  # every fine-tune ran on the run's one thread, and the summary says so
    table = {r["setting"]: r for r in rows(tmp_path / "run" / "poisoning.csv")}
    clean, noisy = table["clean"], table["noisy"]
    for k in (1, 5):
        assert float(clean[f"utility_vs_clean_hr@{k}"]) == 0.0 and float(clean[f"utility_vs_clean_hr@{k}_se"]) == 0.0
        assert float(noisy[f"utility_vs_clean_hr@{k}"]) == pytest.approx(float(noisy[f"hr@{k}"]) - float(clean[f"hr@{k}"]))
        assert float(noisy[f"utility_vs_clean_hr@{k}_se"]) >= 0.0
        # the same lists with the targets left out of the negatives: never a worse rank, paired with clean's the same way
        for name in ("clean", "noisy", "venomrec"):
            assert float(table[name][f"utility_without_targets_hr@{k}"]) >= float(table[name][f"hr@{k}"])
        assert float(clean[f"utility_without_targets_vs_clean_hr@{k}"]) == 0.0
        assert float(noisy[f"utility_without_targets_vs_clean_hr@{k}"]) == pytest.approx(
            float(noisy[f"utility_without_targets_hr@{k}"]) - float(clean[f"utility_without_targets_hr@{k}"]))
    # VenomRec minus each setting, target by target: the mean of per-target differences of ER@K
    per_target = {}
    for r in rows(tmp_path / "run" / "results.csv"):
        per_target.setdefault(r["attack"], {})[r["item_id"]] = float(r["er@5"])
    for name in ("clean", "noisy"):
        diffs = [per_target["venomrec"][i] - per_target[name][i] for i in per_target["venomrec"]]
        assert float(table[name]["venomrec_minus_er@5"]) == pytest.approx(np.mean(diffs))
        assert float(table[name]["venomrec_minus_er@5_se"]) == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
    assert float(table["venomrec"]["venomrec_minus_er@5"]) == 0.0 and float(table["venomrec"]["venomrec_minus_er@5_se"]) == 0.0
    markdown = (tmp_path / "run" / "poisoning.md").read_text()
    assert "HR@5 vs clean (paired over users, ± SE)" in markdown  # ks 1, 5: the largest K when 10 is not among them
    assert "ER@5: venomrec minus this (paired over targets, ± SE)" in markdown
    noisy_line = next(line for line in markdown.splitlines() if line.startswith("| noisy |"))
    assert "the same, targets left out of the lists" in markdown
    assert noisy_line.count("±") == 3
    # stealth of each edit, measured on what the ranker read; the saved PNGs give it to 8-bit rounding
    from venomkit.data import load_image_file
    from venomkit.eval.stealth import ssim

    for r in rows(tmp_path / "run" / "results.csv"):
        clean_png, adv_png = (load_image_file(tmp_path / "run" / r[key])[None].double() for key in ("clean_image", "adv_image"))
        assert float(r["ssim"]) == pytest.approx(float(ssim(clean_png, adv_png)), abs=5e-3)
        assert (float(r["ssim"]) == 1.0) is (float(r["linf"]) == 0.0)  # 1 exactly when the photo is untouched
    assert float(clean["ssim"]) == 1.0 and float(noisy["ssim"]) < 1.0 and noisy_line.endswith(f" {float(noisy['ssim']):.3f} |")


# ------------------------------------------------------------------ poisoning run recipes
TINY_SHOP = "toyshop:n_users=40,n_items=60,interactions_per_user=6"


def _args(**flags):
    import argparse

    return argparse.Namespace(**{"victim": None, "targets": None, "seed": None, "max_interactions": None, "data": None, **flags})


def _recipe(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_poisoning_run_recipe_is_the_command_line_run(tmp_path):
    """recipe + config + run in a file = the attack recipe with run.KEY=VALUE and KEY=VALUE overrides."""
    from venomkit.runs.poisoning import config_from_command_line

    path = _recipe(tmp_path, "recipe: attacks/venomrec.yaml\nconfig: {rounds: 2}\ndata: toyshop:n_users=40\n"
                             "run:\n  targets: 3\n  eval_users: 7\n  finetune: {lr: 0.01}\n  settings: [clean, venomrec]\n")
    from_file, data = config_from_command_line(str(path), [], _args())
    by_hand, _ = config_from_command_line("attacks/venomrec.yaml", ["rounds=2", "run.targets=3", "run.eval_users=7", "run.finetune.lr=0.01",
                                                                    "run.settings=clean,venomrec"], _args())
    assert data == "toyshop:n_users=40" and from_file.to_dict() == by_hand.to_dict()
    assert from_file.finetune_config.steps == 150  # the run's fine-tune default under the recipe's own fields
    assert from_file.parsed_settings[1].config["rounds"] == 2
    # the command line over the file, the flags over both
    changed, data = config_from_command_line(str(path), ["run.eval_users=9", "run.finetune.steps=5", "rounds=1"],
                                             _args(targets=4, data="toyshop:n_users=50"))
    assert (changed.eval_users, changed.targets, changed.finetune_config.steps, changed.finetune_config.lr) == (9, 4, 5, 0.01)
    assert changed.parsed_settings[1].config["rounds"] == 1 and data == "toyshop:n_users=50"
    from venomkit.runs.recipe import RecipeError, load_run

    with pytest.raises(RecipeError, match="a poisoning run recipe .* is run by venomkit run"):
        load_run(path)  # the engine's loader names the right entry point instead of misreading it


def test_a_poisoning_run_recipe_is_read_once_per_command(tmp_path, monkeypatch):
    """The command finds the poisoning run in the file and builds its config from that one reading."""
    import venomkit.runs.recipe as recipe_module
    from venomkit.runs.poisoning import config_from_command_line, poisoning_recipe

    path = _recipe(tmp_path, "recipe: attacks/venomrec.yaml\nrun: {targets: 3}\n")
    reads = []
    read = recipe_module.read_recipe
    monkeypatch.setattr(recipe_module, "read_recipe", lambda p: reads.append(Path(p).name) or read(p))
    found = poisoning_recipe(str(path))
    config, _ = config_from_command_line(found, [], _args())
    assert found.attack == "venomrec" and config.targets == 3 and reads.count("run.yaml") == 1
    assert poisoning_recipe("attacks/pgd.yaml") is None and poisoning_recipe("VenomRec").attack == "venomrec"


def test_threads_are_a_setting_of_the_run(tmp_path):
    """--threads N and run.threads=N are one setting (so one fingerprint); a bad count is one line, before any work."""
    from venomkit.cli import main
    from venomkit.runs.poisoning import config_from_command_line

    flag, _ = config_from_command_line("venomrec", [], _args(threads=1))
    override, _ = config_from_command_line("venomrec", ["run.threads=1"], _args())
    default, _ = config_from_command_line("venomrec", [], _args())
    assert flag.threads == 1 and flag.to_dict() == override.to_dict() and default.threads is None
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        PoisoningRunConfig(threads=0)
    assert main(["attack", "venomrec", "--data", TINY_SHOP, "--threads", "0", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert not (tmp_path / "o").exists()


def test_the_shipped_venomrec_experiment_is_the_readme_command():
    from run_helpers import REPO

    from venomkit.runs.poisoning import config_from_command_line

    recipe, data = config_from_command_line(str(REPO / "experiments" / "venomrec.yaml"), [], _args())
    command, _ = config_from_command_line("venomrec", ["run.eval_users=100", "run.finetune.steps=100"],
                                          _args(victim="runs/ranker", data="toyshop", targets=10, threads=1))
    assert data == "toyshop" and recipe.to_dict() == command.to_dict()


@pytest.mark.parametrize(
    "text, overrides, words",
    [
        ("recipe: attacks/venomrec.yaml\nrun:\n  targets: 3\n  nope: 1\n", [], (":4: run.nope: unknown key 'nope'", "valid keys: victim, targets")),
        ("recipe: attacks/venomrec.yaml\nrun:\n  targets: 0\n", [], (":3: run.targets:", ">= 1, got 0")),
        ("recipe: attacks/venomrec.yaml\nrun:\n  settings: [clean, nope]\n", [], (":3: run.settings:", "'nope' is not a default setting")),
        ("recipe: attacks/venomrec.yaml\nconfig:\n  rounds: -1\n", [], (":3: config.rounds:", "rounds must be")),
        ("recipe: attacks/venomrec.yaml\nvictims: [vbpr]\n", [], (":2: victims: unknown key 'victims' in a poisoning run recipe", "valid keys: name, description, recipe")),
        ("recipe: attacks/pgd.yaml\n", [], (":1: recipe: 'attacks/pgd.yaml' is not a poisoning attack", "valid attacks: venomrec")),
        ("recipe: attacks/nothere.yaml\n", [], (":1: recipe: recipe file 'attacks/nothere.yaml' not found",)),
        ("recipe: attacks/venomrec.yaml\nrun: {targets: 3}\n", ["run.targets=abc"], ("command line: override 'run.targets=abc'", "run.targets: expected an integer, got 'abc'")),
    ],
)
def test_bad_poisoning_run_recipes_are_one_line_errors(tmp_path, text, overrides, words):
    from venomkit.cli import main

    path = _recipe(tmp_path, text)
    with pytest.raises(ValueError) as info:
        from venomkit.runs.poisoning import config_from_command_line, poisoning_recipe

        assert poisoning_recipe(str(path)).attack == "venomrec"
        config_from_command_line(str(path), overrides, _args())
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) == (not overrides) and all(w in message for w in words), message
    assert main(["run", str(path), "--out", str(tmp_path / "o"), *overrides]) == 2 and not (tmp_path / "o").exists()


def test_a_recipe_run_resumes_as_the_same_command_line_run(tmp_path, monkeypatch):
    """`venomkit run RECIPE` then the same settings on the command line into the same folder: one fingerprint, nothing redone."""
    from venomkit.cli import main

    monkeypatch.chdir(tmp_path)
    run_settings = ["run.eval_users=4", "run.n_negatives=12", "run.objective_users=2", "run.attacker_users=4", "run.ks=1,5", "run.mr=0.05",
                    "run.finetune.steps=2", "run.finetune.batch_size=2", "run.finetune.warmup=1", "run.settings=clean,venomrec"]
    attack = ["rounds=1", "image_steps=1", "exposure_items=4", "exposure_k=5"]
    path = _recipe(tmp_path, f"recipe: attacks/venomrec.yaml\ndata: {TINY_SHOP}\nconfig: {{rounds: 1, image_steps: 1, exposure_items: 4, exposure_k: 5}}\n"
                             "run:\n  targets: 2\n  eval_users: 4\n  n_negatives: 12\n  objective_users: 2\n  attacker_users: 4\n  ks: [1, 5]\n"
                             "  mr: 0.05\n  finetune: {steps: 2, batch_size: 2, warmup: 1}\n  settings: [clean, venomrec]\n")
    assert main(["run", str(path), "--out", "o", "--quiet", "--no-report"]) == 0
    records = sorted((tmp_path / "o" / "records").rglob("*.json"))
    written = {p: p.stat().st_mtime_ns for p in records}
    first = rows(tmp_path / "o" / "results.csv")
    assert len(first) == 4 and {r["attack"] for r in first} == {"clean", "venomrec"}
    assert main(["attack", "venomrec", "--data", TINY_SHOP, "--targets", "2", "--out", "o", "--quiet", "--no-report", *attack, *run_settings]) == 0
    assert {p: p.stat().st_mtime_ns for p in sorted((tmp_path / "o" / "records").rglob("*.json"))} == written
    assert rows(tmp_path / "o" / "results.csv") == first
    # a different setting is another run: the folder refuses it instead of mixing the two
    assert main(["attack", "venomrec", "--data", TINY_SHOP, "--targets", "2", "--out", "o", "--quiet", "--no-report", *attack,
                 *run_settings, "run.eval_users=5"]) == 2
