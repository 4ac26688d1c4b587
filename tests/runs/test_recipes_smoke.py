"""Every recipe of attacks/ and defenses/ runs end to end on the engine with tiny budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import FAST_VICTIM, REPO, SMALL_SHOP, rows

from venomkit.config import config_fields
from venomkit.runs import RunFlags, execute, load_run
from venomkit.runs.poisoning import poisoning_recipe
from venomkit.runs.recipe import read_recipe

TINY_CONFIG = {"steps": "1", "n_candidates": "2", "epochs": "1", "user_epochs": "2", "mlp_items": "4", "mlp_epochs": "1", "image_steps": "1"}
"""Tiny budgets for whichever of these fields a recipe's config class has."""

FLAGS = dict(data=SMALL_SHOP, targets=2, max_interactions=60)


def _tiny_overrides(run, prefix: str) -> list[str]:
    out = []
    for a in run.attacks:
        fields = config_fields(a.cls.config_class)
        out += [f"{prefix(a.spec.name, 'attacks')}{k}={v}" for k, v in TINY_CONFIG.items() if k in fields]
    for d in run.defenses:
        out += [f"{prefix(d.spec.name, 'defenses')}epochs=1"]
    return out


ENGINE_RECIPES = [p for p in sorted((REPO / "attacks").glob("*.yaml")) if not poisoning_recipe(str(p))]


@pytest.mark.parametrize("path", ENGINE_RECIPES, ids=lambda p: p.name)
def test_attack_recipe_runs(path, tmp_path):
    run = load_run(path, list(FAST_VICTIM), RunFlags(victim="vbpr", **FLAGS))
    run = load_run(path, [*FAST_VICTIM, *_tiny_overrides(run, lambda name, section: "")], RunFlags(victim="vbpr", **FLAGS))
    run.recipe.outputs.report = False
    summary = execute(run, tmp_path, progress=False)
    assert summary["n_rows"] == 2 and len(rows(tmp_path / "results.csv")) == 2
    assert all(0 <= float(r["hr@50_after"]) <= 1 for r in rows(tmp_path / "results.csv"))


@pytest.mark.parametrize("path", sorted((REPO / "defenses").glob("*.yaml")), ids=lambda p: p.name)
def test_defense_folder_recipe_runs(path, tmp_path):
    parsed = read_recipe(path)
    flags = RunFlags(victim="vbpr", **FLAGS) if parsed.kind == "defense" else RunFlags(**FLAGS)
    run = load_run(path, [], flags)
    trained = [f"victims.{v.name}.train.epochs=2" for v in run.recipe.victims if v.kind]
    prefix = (lambda name, section: "") if parsed.kind == "defense" else (lambda name, section: f"{section}.{name}.config.")
    run = load_run(path, [*trained, *_tiny_overrides(run, prefix)], flags)
    summary = execute(run, tmp_path, progress=False)
    assert summary["victims"], "the victims were built"
    for s in summary["settings"]:
        assert s["n_targets"] == 2
    if "judge" in run.recipe.outputs.tables:
        assert (tmp_path / "table.md").is_file() and len(summary["judge"]) == len(summary["settings"])
    report = (tmp_path / "report.html").read_text()
    for heading in ("1. Run", "2. Results", "3. Plots"):
        assert heading in report


def test_poisoning_recipe_runs(tmp_path, monkeypatch):
    """attacks/venomrec.yaml: a poisoning run (edits, poisoned fine-tunes, ER@K) from the command line, tiny."""
    from venomkit.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["attack", str(REPO / "attacks" / "venomrec.yaml"), "--data", "toyshop:n_users=40,n_items=60,interactions_per_user=6",
            "--targets", "2", "--out", "o", "--quiet", "rounds=1", "image_steps=1", "exposure_items=4", "exposure_k=5",
            "run.eval_users=4", "run.n_negatives=12", "run.objective_users=2", "run.ks=1,5", "run.mr=0.05",
            "run.finetune.steps=2", "run.finetune.batch_size=2", "run.finetune.warmup=1"]
    assert main(argv) == 0
    results = rows(tmp_path / "o" / "results.csv")
    assert len(results) == 2 * 10  # two targets x the ten default settings
    assert {r["attack"] for r in results} >= {"clean", "venomrec", "shadowcast", "venomrec_decoupled"}
    assert all(0 <= float(r["er@5"]) <= 1 and float(r["chance@5"]) == 5 / 13 for r in results)
    assert (tmp_path / "o" / "texts.csv").is_file() and (tmp_path / "o" / "poisoning.md").is_file()
    page = (tmp_path / "o" / "report.html").read_text()
    assert "ER@20" not in page and "ER@5" in page and "utility HR@10" not in page  # ks 1, 5: the columns present
    assert page.count('class="card"') >= 2 and "venomrec" in page and "A poisoning run (VenomRec)" in page
    assert "Judgement (w/o AT" in page and "No judgement table" in page
