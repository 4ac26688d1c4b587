"""The poisoning run's config (settings by name, one-line errors) and its utility comparison with clean."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_utility_is_compared_with_clean_user_by_user(tmp_path):
    from venomkit.data.loaders import load_dataset

    dataset = load_dataset("toyshop:n_users=40,n_items=60,interactions_per_user=6")
    config = PoisoningRunConfig(
        targets=2, eval_users=6, n_negatives=12, objective_users=2, attacker_users=4, ks=[1, 5], mr=0.05,
        finetune={"steps": 3, "batch_size": 2, "warmup": 1, "lr": 5e-2},
        settings=["clean", {"name": "noisy", "attack": "random_injection", "config": {"max_edit_ratio": 0.5}},
                  {"name": "venomrec", "attack": "venomrec", "config": {"rounds": 1, "image_steps": 1, "exposure_items": 4, "exposure_k": 5}}],
    )
    summary = run_poisoning(config, dataset, tmp_path / "run", progress=False, report=False)
    assert [s["attack"] for s in summary["settings"]] == ["clean", "noisy", "venomrec"] and summary["num_processes"] == 1
    table = {r["setting"]: r for r in rows(tmp_path / "run" / "poisoning.csv")}
    clean, noisy = table["clean"], table["noisy"]
    for k in (1, 5):
        assert float(clean[f"utility_vs_clean_hr@{k}"]) == 0.0 and float(clean[f"utility_vs_clean_hr@{k}_se"]) == 0.0
        assert float(noisy[f"utility_vs_clean_hr@{k}"]) == pytest.approx(float(noisy[f"hr@{k}"]) - float(clean[f"hr@{k}"]))
        assert float(noisy[f"utility_vs_clean_hr@{k}_se"]) >= 0.0
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
    assert noisy_line.count("±") == 2
