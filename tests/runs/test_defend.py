"""``venomkit defend``: defense recipes, hardening one checkpoint, and the judgement's flags
turned into overrides of ``defenses/judge.yaml``."""

from __future__ import annotations

import pytest
from run_helpers import REPO

from venomkit.cli import build_parser, parse_command_line
from venomkit.runs.defend import judge_overrides
from venomkit.runs.recipe import RecipeError, load_run, resolve_defense


def _parse(argv):
    parser, _ = build_parser("defend")
    return parse_command_line(parser, argv)


def test_recipes_load_with_the_paper_defaults():
    mc = resolve_defense(REPO / "defenses" / "uat_mc.yaml").config
    uat = resolve_defense(REPO / "defenses" / "uat.yaml").config
    assert (mc.method, mc.eps, mc.beta, mc.lambda_align, mc.steps) == ("uat_mc", 0.1, 1.0, 1.0, 1)
    assert (uat.method, uat.eps, uat.beta, uat.lambda_align) == ("uat", 0.1, 1.0, 0.0)
    assert resolve_defense(REPO / "defenses" / "uat_mc.yaml", ["steps=5", "lambda_align=4"]).config.steps == 5


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(RecipeError, match=r"command line: override 'epsilon=0.1': config.epsilon: unknown key 'epsilon' for defense uat_mc.*valid keys: eps"):
        resolve_defense(REPO / "defenses" / "uat_mc.yaml", ["epsilon=0.1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("defense: uat_mc\nconfig:\n  eps: -1\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:2: defense uat_mc: .*eps"):
        resolve_defense(bad)
    bad.write_text("defense: uat_mc\nconfig:\n  beta: lots\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:3: config.beta: expected a number, got 'lots'"):
        resolve_defense(bad)


def test_cli_parses_intermixed_and_reports_bad_overrides(tmp_path):
    args = _parse(["uat-mc", "lambda=3", "--victim", str(tmp_path), "--data", "toyshop", "--out", str(tmp_path / "o")])
    assert args.method == "uat_mc" and args.overrides == ["lambda=3"] and args.defend_command == "uat-mc"
    with pytest.raises(RecipeError, match="unknown key 'lambda'"):
        args._run(args)
    args = _parse(["mismatch", "--victim", "v", "--data", "d", "--out", "o", "--top-k", "7"])
    assert args.top_k == 7 and args.defend_command == "mismatch"


def test_judge_flags_become_recipe_overrides():
    args = _parse(["judge", "--data", "toyshop", "--out", "o", "--victims", "vbpr", "--attacks", "pgd,feature_pgd",
                   "--set", "uat_mc.lambda_align=10", "--set", "all.epochs=3", "--attack-set", "pgd.steps=20",
                   "--feature-eps", "0.2", "--train-epochs", "5", "--targets", "7"])
    overrides = judge_overrides(args)
    run = load_run(REPO / "defenses" / "judge.yaml", overrides)
    assert [v.name for v in run.recipe.victims] == ["vbpr"] and run.recipe.victims[0].train.epochs == 5
    assert [a.spec.name for a in run.attacks] == ["pgd", "feature_pgd"]
    assert run.attacks[0].config.steps == 20 and run.attacks[1].config.eps == pytest.approx(0.2)
    mc = next(d for d in run.defenses if d.method == "uat_mc")
    assert mc.config.lambda_align == 10 and mc.config.epochs == 3
    assert next(d for d in run.defenses if d.method == "uat").config.epochs == 3
    with pytest.raises(ValueError, match="--set 'uat_mc.lambda=1'|unknown key 'lambda'"):
        load_run(REPO / "defenses" / "judge.yaml", judge_overrides(_parse(["judge", "--data", "t", "--out", "o", "--set", "uat_mc.lambda=1"])))
    with pytest.raises(ValueError, match="is not one of uat, uat_mc, all"):
        judge_overrides(_parse(["judge", "--data", "t", "--out", "o", "--set", "uatt.eps=1"]))
