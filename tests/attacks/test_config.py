"""Recipes and key=value overrides: unknown keys list the valid ones; values are coerced."""

from __future__ import annotations

from pathlib import Path

import pytest

from venomkit.attacks import get_attack
from venomkit.attacks.pgd import PGDConfig
from venomkit.config import build_config, coerce, load_recipe, parse_overrides, replace_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "attacks").glob("*.yaml"))


def test_overrides_and_coercion():
    values = parse_overrides(["eps=8/255", "steps=20", "random_start=false", "norm=l2", "step_size=none"])
    cfg = build_config(PGDConfig, values)
    assert cfg.eps == pytest.approx(8 / 255) and cfg.steps == 20 and cfg.random_start is False
    assert cfg.norm == "l2" and cfg.step_size is None
    assert coerce("1,2", tuple[int, ...]) == (1, 2)
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["eps"])
    with pytest.raises(ValueError, match="integer"):
        build_config(PGDConfig, {"steps": "ten"})
    with pytest.raises(ValueError, match="steps"):
        replace_config(PGDConfig(), {"steps": 0})


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ValueError) as info:
        build_config(PGDConfig, {"epsilon": 0.1})
    assert "epsilon" in str(info.value) and "valid keys" in str(info.value) and "eps" in str(info.value)


def test_recipe_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attack: pgd\nconfig:\n  epsilon: 0.1\n")
    recipe = load_recipe(bad, "attack")
    with pytest.raises(ValueError, match="valid keys"):
        build_config(get_attack(recipe.name).config_class, recipe.config, where=str(bad))
    bad.write_text("attack: pgd\nbudget: 3\n")
    with pytest.raises(ValueError, match="valid keys: attack, config, description"):
        load_recipe(bad, "attack")
    bad.write_text("config: {}\n")
    with pytest.raises(ValueError, match="missing 'attack'"):
        load_recipe(bad, "attack")


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_load(path):
    recipe = load_recipe(path, "attack")
    cfg = build_config(get_attack(recipe.name).config_class, recipe.config, where=str(path))
    assert recipe.description
    assert cfg is not None


def test_recipes_exist():
    assert len(RECIPES) >= 8
