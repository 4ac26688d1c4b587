"""Fine-tuning the MLLM ranker (TALLRec's LoRA / full): only adapters change, seeded, rows for poisoning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from venomkit.victims.mllm.finetune import FinetuneConfig, TrainingRow, add_lora, finetune, lr_schedule
from venomkit.victims.mllm.ranker import MLLMRanker


def _ranker(folder) -> MLLMRanker:
    return MLLMRanker.load(folder, max_history=3)


FAST = dict(steps=3, batch_size=4, lr=5e-2, warmup=1)


def test_config_validation_names_the_field():
    cases = {
        "mode": dict(mode="qlora"),
        "exactly one of steps and epochs": dict(steps=10, epochs=1.0),
        "steps": dict(steps=0),
        "epochs": dict(steps=None, epochs=-1.0),
        "lora_r": dict(lora_r=0),
        "lora_dropout": dict(lora_dropout=1.0),
        "text_drop": dict(text_drop=-0.1),
        "lr": dict(lr=0.0),
        "lora_targets": dict(lora_targets=()),
        "max_history": dict(max_history=-1),
        "batch_size": dict(batch_size=2.5),
        "popular_negatives": dict(popular_negatives=1.5),
    }
    for field, kwargs in cases.items():
        with pytest.raises(ValueError, match=field):
            FinetuneConfig(**kwargs)
    cfg = FinetuneConfig(lora_targets=["q_proj"], epochs=0.5, steps=None)
    assert cfg.lora_targets == ("q_proj",)
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown field 'rank'"):
        FinetuneConfig.from_dict({"rank": 8})


def test_defaults_are_tallrecs_lora_on_the_language_model():
    cfg = FinetuneConfig()
    assert (cfg.mode, cfg.lora_r, cfg.lora_alpha, cfg.lora_targets) == ("lora", 8, 16.0, ("q_proj", "v_proj"))
    import re

    regex = cfg.lora_regex()
    assert re.fullmatch(regex, "model.language_model.layers.0.self_attn.q_proj")
    assert not re.fullmatch(regex, "model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert not re.fullmatch(regex, "model.language_model.layers.0.self_attn.k_proj")


def test_lora_changes_only_adapter_weights(folder, dataset):
    ranker = _ranker(folder)
    before = {name: p.detach().clone() for name, p in ranker.model.named_parameters()}
    result = finetune(ranker, dataset, FinetuneConfig(**FAST), progress=False)
    assert result.adapter is not None and result.adapter.get_base_model() is ranker.model
    after = dict(ranker.model.named_parameters())
    adapters = {n: p for n, p in after.items() if ".lora_" in n}
    # adapters sit on the language model's q/v projections only, never on the vision tower
    assert adapters and all(".language_model." in n and (".q_proj." in n or ".v_proj." in n) for n in adapters)
    assert len(adapters) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    base = {n.replace(".base_layer", ""): p for n, p in after.items() if ".lora_" not in n}
    assert set(base) == set(before)
    for name, p in base.items():
        assert torch.equal(p, before[name]), f"base parameter {name} changed"
        assert not p.requires_grad
    for name, p in adapters.items():
        if ".lora_B." in name:  # B starts at zero: training moved it
            assert p.abs().sum() > 0, name
    assert result.trainable_parameters == sum(p.numel() for p in adapters.values())
    assert len(result.losses) == 3 and all(np.isfinite(result.losses)) and not ranker.model.training


def test_full_finetune_changes_the_base_weights(folder, dataset):
    ranker = _ranker(folder)
    before = {name: p.detach().clone() for name, p in ranker.model.named_parameters()}
    result = finetune(ranker, dataset, FinetuneConfig(mode="full", **FAST), progress=False)
    assert result.adapter is None and result.trainable_parameters == result.total_parameters
    changed = [n for n, p in ranker.model.named_parameters() if not torch.equal(p, before[n])]
    assert any("language_model" in n for n in changed) and any("vision_tower" in n for n in changed)


def test_finetune_is_seeded(folder, dataset):
    runs = []
    for _ in range(2):
        ranker = _ranker(folder)
        result = finetune(ranker, dataset, FinetuneConfig(text_drop=0.5, lora_dropout=0.1, **FAST), progress=False)
        runs.append((result.losses, {n: p.detach().clone() for n, p in ranker.model.named_parameters() if ".lora_" in n}))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][n], runs[1][1][n]) for n in runs[0][1])


class _Spy:
    """Records every batch the ranker's forward receives during fine-tuning."""

    def __init__(self, ranker):
        self.ranker = ranker
        self.batches = []
        original = ranker.forward

        def forward(histories, images, texts, output_attentions=False):
            self.batches.append((list(histories), list(texts)))
            return original(histories, images, texts, output_attentions)

        ranker.forward = forward


def test_rows_are_balanced_and_extra_rows_replace_excluded_users(folder, dataset):
    ranker = _ranker(folder)
    titles = dataset.catalog.attributes["title"]
    texts = dataset.catalog.texts
    target, user = 7, 2
    seen = set(dataset.interactions.items_of(user).tolist()) | {target}
    extra = [TrainingRow(user=user, item=target, history=(3, 4)), (user, target, (5,))]
    spy = _Spy(ranker)
    result = finetune(
        ranker, dataset, FinetuneConfig(**FAST), extra_rows=extra, exclude_users=range(dataset.n_users), progress=False
    )
    assert result.positives == 2 and result.extra_rows == 2 and len(spy.batches) == 3
    for histories, shown in spy.batches:
        assert len(shown) == 2 * 4  # each positive with one negative: as many "no" as "yes"
        for pos in range(0, len(shown), 2):
            assert shown[pos] == texts[target]
            assert histories[pos] == histories[pos + 1] in ([titles[3], titles[4]], [titles[5]])
            assert texts.index(shown[pos + 1]) not in seen  # the negative: never interacted, not the poisoned item


def test_popular_negatives_are_drawn_by_training_popularity(folder, dataset):
    """popular_negatives = 1: every negative is drawn in proportion to its training count, so the
    negatives are as popular as the positives on average (uniform ones are far less popular)."""
    texts = dataset.catalog.texts
    counts = np.asarray(dataset.split.train.popularity(), dtype=float)
    mean_count = {}
    for share in (0.0, 1.0):
        spy = _Spy(_ranker(folder))
        cfg = FinetuneConfig(**{**FAST, "steps": 6, "batch_size": 8}, popular_negatives=share)
        finetune(spy.ranker, dataset, cfg, progress=False)
        negatives = [texts.index(t) for _, shown in spy.batches for t in shown[1::2]]
        assert all(counts[i] > 0 for i in negatives) or share == 0.0
        mean_count[share] = counts[negatives].mean()
    positives_mean = (counts**2).sum() / counts.sum()  # a training row's item: drawn in proportion to its count
    assert mean_count[0.0] < 0.6 * positives_mean < mean_count[1.0]


def test_exclude_users_drops_their_clean_rows(folder, dataset):
    excluded = [0, 1, 2]
    result = finetune(_ranker(folder), dataset, FinetuneConfig(**FAST), exclude_users=excluded, progress=False)
    kept = dataset.split.train.nnz - sum(len(dataset.split.train.items_of(u)) for u in excluded)
    assert result.positives == kept and result.excluded_users == excluded
    epochs = finetune(_ranker(folder), dataset, FinetuneConfig(steps=None, epochs=0.05, batch_size=8), progress=False)
    assert epochs.steps == int(np.ceil(0.05 * dataset.split.train.nnz / 8))


def test_a_fine_tune_is_reproduced_by_its_seed_and_thread_count(folder, dataset):
    """Same seed, same threads: the same weights, bit for bit (``venomkit train`` records the thread count)."""
    runs = [finetune(_ranker(folder), dataset, FinetuneConfig(mode="full", seed=3, **FAST), progress=False) for _ in range(2)]
    first, second = (r.ranker.model.state_dict() for r in runs)
    assert runs[0].losses == runs[1].losses and all(torch.equal(first[k], second[k]) for k in first)
    other = finetune(_ranker(folder), dataset, FinetuneConfig(mode="full", seed=4, **FAST), progress=False)
    assert other.losses != runs[0].losses  # the seed is what is reproduced, not a constant


def test_bad_rows_and_targets_are_errors(folder, dataset):
    with pytest.raises(ValueError, match=r"extra_rows\[0\]: item 999"):
        finetune(_ranker(folder), dataset, FinetuneConfig(**FAST), extra_rows=[TrainingRow(0, 999)], progress=False)
    with pytest.raises(ValueError, match="exclude_users: user -1"):
        finetune(_ranker(folder), dataset, FinetuneConfig(**FAST), exclude_users=[-1], progress=False)
    with pytest.raises(ValueError, match="no training row"):
        finetune(_ranker(folder), dataset, FinetuneConfig(**FAST), exclude_users=range(dataset.n_users), progress=False)
    with pytest.raises(ValueError, match="lora_targets"):
        finetune(_ranker(folder), dataset, FinetuneConfig(lora_targets=("wq",), **FAST), progress=False)
    ranker = _ranker(folder)
    add_lora(ranker, FinetuneConfig())
    with pytest.raises(ValueError, match="already carries LoRA"):
        finetune(ranker, dataset, FinetuneConfig(**FAST), progress=False)


def test_lr_schedule_warms_up_then_decays_to_five_percent():
    assert lr_schedule(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_schedule(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_schedule(100, 100, 1.0, 10) == pytest.approx(0.05)


def _train_args(*flags: str):
    import argparse

    from venomkit.victims.pipeline import add_train_arguments

    return add_train_arguments(argparse.ArgumentParser()).parse_args(["--data", "tiny", *flags])


def test_venomkit_train_victim_mllm_writes_a_loadable_ranker(folder, dataset, tmp_path, monkeypatch, capsys):
    import json

    import venomkit.data.loaders as loaders
    from venomkit.victims.mllm.checkpoint import load_ranker
    from venomkit.victims.pipeline import cli_train

    monkeypatch.setattr(loaders, "load_dataset", lambda spec, **kw: dataset)
    out = tmp_path / "ranker"
    args = _train_args("--victim", "mllm", "--out", str(out), "--base", str(folder), "--steps", "2", "--batch-size", "2",
                       "--lora-r", "4", "--max-history", "2", "--eval-users", "4", "--negatives", "10", "--device", "cpu",
                       "--threads", "1", "--no-progress")  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert cli_train(args) == 0
    finally:
        torch.set_num_threads(threads)
    table = capsys.readouterr().out
    assert "1 thread" in table  # the figures depend on the thread count: it is printed and recorded
    assert "popularity" in table and "images only" in table and "ranker checkpoint written to" in table
    info = json.loads((out / "ranker.json").read_text())
    assert info["mode"] == "lora" and info["base"] == str(folder) and info["max_history"] == 2
    assert info["finetune"]["config"]["lora_r"] == 4 and info["finetune"]["steps"] == 2
    metrics = info["metrics"]
    assert metrics["eval_users"] == 4 and metrics["random"]["hr@10"] == pytest.approx(10 / 11)
    assert set(metrics["test"]) >= {"hr@10", "ndcg@10", "recall@10"} and 0 <= metrics["image_only"]["hr@10"] <= 1
    versus = metrics["vs_popularity"]  # the paired comparison with popularity, printed under the table
    assert versus["hr@10"] == pytest.approx(metrics["test"]["hr@10"] - metrics["popularity"]["hr@10"]) and versus["hr@10_se"] >= 0
    assert "mllm - popularity" in table and "standard error" in table
    assert load_ranker(out).ranker.max_history == 2 and metrics["threads"] == 1


@pytest.mark.parametrize(
    "flags, words",
    [
        (("--victim", "mllm", "--embed-dim", "8"), ("--embed-dim", "--victim mllm")),
        (("--victim", "mllm", "--image-encoder", "resnet18"), ("--image-encoder",)),
        (("--victim", "vbpr", "--lora-r", "4"), ("--lora-r", "--victim vbpr")),
        (("--victim", "mllm", "--lora-r", "0"), ("--lora-r must be an integer >= 1",)),
        (("--victim", "mllm", "--steps", "5", "--epochs", "1"), ("--steps or --epochs",)),
        (("--victim", "mllm", "--negatives", "0"), ("--negatives must be an integer >= 1, got 0",)),
        (("--victim", "vbpr", "--threads", "0"), ("--threads must be an integer >= 1, got 0",)),
    ],
)
def test_train_flags_of_the_other_family_or_bad_values_are_one_line_errors(tmp_path, flags, words):
    from venomkit.victims.pipeline import cli_train

    with pytest.raises(ValueError) as info:
        cli_train(_train_args("--out", str(tmp_path / "x"), *flags))  # fails before any data loads
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
