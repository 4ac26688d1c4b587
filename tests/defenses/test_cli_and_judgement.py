"""Recipes, the ``venomkit defend`` command line and the judgement's table (tiny shop)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
from defense_helpers import SMALL, TinyImageEncoder, TinyTextEncoder

from venomkit.defenses.cli import add_defend_arguments, cli_defend, load_defense_config
from venomkit.defenses.judgement import Judge, JudgeConfig, format_table
from venomkit.defenses.uat_mc import UATConfig

REPO = Path(__file__).resolve().parents[2]


def test_recipes_load_with_the_paper_defaults():
    mc = load_defense_config("uat-mc", REPO / "defenses" / "uat_mc.yaml")
    uat = load_defense_config("uat", REPO / "defenses" / "uat.yaml")
    assert (mc.method, mc.eps, mc.beta, mc.lambda_align, mc.steps) == ("uat_mc", 0.1, 1.0, 1.0, 1)
    assert (uat.method, uat.eps, uat.beta, uat.lambda_align) == ("uat", 0.1, 1.0, 0.0)
    assert load_defense_config("uat_mc", REPO / "defenses" / "uat_mc.yaml", ["steps=5", "lambda_align=4"]).steps == 5


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        load_defense_config("uat_mc", REPO / "defenses" / "uat_mc.yaml", ["epsilon=0.1"])
    with pytest.raises(ValueError, match="not 'uat'"):
        load_defense_config("uat", REPO / "defenses" / "uat_mc.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("defense: uat_mc\nconfig:\n  eps: -1\n")
    with pytest.raises(ValueError, match="eps"):
        load_defense_config("uat_mc", bad)


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_defend_arguments(parser)
    return parser.parse_args(argv)


def test_cli_parses_and_reports_bad_overrides(tmp_path, capsys):
    args = _parse(["uat-mc", "--victim", str(tmp_path), "--data", "toyshop", "--out", str(tmp_path / "o"), "lambda=3"])
    assert args.method == "uat_mc" and args.overrides == ["lambda=3"]
    assert cli_defend(args) == 2
    assert "unknown key" in capsys.readouterr().err
    args = _parse(["judge", "--data", "toyshop", "--out", str(tmp_path), "--set", "uat_mc.lambda=1"])
    assert cli_defend(args) == 2
    args = _parse(["mismatch", "--victim", "v", "--data", "d", "--out", "o", "--top-k", "7"])
    assert args.top_k == 7 and args.defend_command == "mismatch"


def test_judge_config_validation():
    for kwargs in ({"victims": ("lightgcn",)}, {"attacks": ("nope",)}, {"n_targets": 0}, {"attack_overrides": {"feature_pgd": []}}):
        with pytest.raises(ValueError):
            JudgeConfig(**kwargs)


def test_judgement_writes_the_table_and_resumes(shop, tmp_path):
    config = JudgeConfig(
        victims=("vbpr",), attacks=("pgd", "feature_pgd"), n_targets=2, max_interactions=8, train_epochs=3, train_patience=0,
        embed_dim=SMALL["vbpr"]["embed_dim"], attack_batch_size=2, feature_pgd_steps=2, attack_overrides={"pgd": ["steps=2"]},
    )
    fast = {"epochs": 1, "batch_size": 128, "lr": 0.01}
    judge = Judge(shop, tmp_path, config, uat=UATConfig(method="uat", **fast), uat_mc=UATConfig(**fast), progress=False)
    judge._encoders = (TinyImageEncoder(), TinyTextEncoder())
    rows = judge.run()
    assert [(r["defense"], r["attack"]) for r in rows] == [(d, a) for d in ("w/o AT", "UAT", "UAT-MC") for a in ("pgd", "feature_pgd")]
    for r in rows:
        assert 0 <= r["hr@50_before"] <= 1 and 0 <= r["hr@50_after"] <= 1 and "ndcg@20" in r
    assert rows[0]["ndcg@20_rel_change"] == 0.0
    with (tmp_path / "table.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6
    assert "| UAT-MC | feature_pgd |" in (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "judge.json").read_text())["uat_mc"]["method"] == "uat_mc"
    # Re-running trains nothing and re-attacks nothing: checkpoints and results are reused.
    stamp = (tmp_path / "victims" / "vbpr" / "uat_mc" / "model.safetensors").stat().st_mtime_ns
    judge2 = Judge(shop, tmp_path, config, uat=UATConfig(method="uat", **fast), uat_mc=UATConfig(**fast), progress=False)
    judge2._encoders = judge._encoders
    rows2 = judge2.run()
    assert (tmp_path / "victims" / "vbpr" / "uat_mc" / "model.safetensors").stat().st_mtime_ns == stamp
    assert [r["hr@50_after"] for r in rows2] == [r["hr@50_after"] for r in rows]
    assert format_table(rows2).count("\n") == 8
