"""Ranker checkpoints: adapter folder (or full model) + ranker.json; the loader gives identical scores."""

from __future__ import annotations

import json

import pytest
import torch

from venomkit.victims.mllm.checkpoint import (
    FORMAT, RankerCheckpointError, is_ranker_checkpoint, load_ranker, read_info, save_ranker,
)  # fmt: skip
from venomkit.victims.mllm.finetune import FinetuneConfig, finetune
from venomkit.victims.mllm.ranker import MLLMRanker

FAST = dict(steps=3, batch_size=4, lr=5e-2, warmup=1)


def _scores(ranker, dataset):
    items = list(range(8))
    history = dataset.catalog.attributes["title"][10:14]
    with torch.no_grad():
        return ranker.score([history] * len(items), dataset.catalog.image_batch(items), dataset.catalog.texts[:8])


@pytest.fixture(scope="module")
def lora_checkpoint(folder, dataset, tmp_path_factory):
    ranker = MLLMRanker.load(folder, max_history=3)
    result = finetune(ranker, dataset, FinetuneConfig(max_history=2, **FAST), progress=False)
    out = save_ranker(
        tmp_path_factory.mktemp("ckpt") / "lora", ranker, adapter=result.adapter, finetune=result.summary(),
        metrics={"hr@10": 0.5},
    )  # fmt: skip
    return out, _scores(ranker, dataset)


def test_lora_round_trip_gives_identical_scores(lora_checkpoint, folder, dataset):
    out, expected = lora_checkpoint
    assert {"ranker.json", "adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    assert not (out / "model.safetensors").exists()  # adapters only: the base is reloaded by spec
    assert not [p for p in out.iterdir() if p.name.startswith(".venomkit-tmp")]
    loaded = load_ranker(out)
    assert loaded.info["base"] == str(folder) and loaded.info["mode"] == "lora" and loaded.info["format"] == FORMAT
    assert loaded.info["finetune"]["config"]["lora_r"] == 8 and loaded.info["metrics"] == {"hr@10": 0.5}
    import peft
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    assert loaded.info["library_versions"] == versions  # a fine-tune's figures move with them
    assert loaded.ranker.max_history == 2 and loaded.adapter.get_base_model() is loaded.ranker.model
    assert torch.equal(_scores(loaded.ranker, dataset), expected)
    base = _scores(MLLMRanker.load(folder, max_history=2), dataset)
    assert not torch.equal(base, expected)  # the adapters matter


def test_full_round_trip_gives_identical_scores(folder, dataset, tmp_path):
    ranker = MLLMRanker.load(folder, max_history=3)
    finetune(ranker, dataset, FinetuneConfig(mode="full", **FAST), progress=False)
    out = save_ranker(tmp_path / "full", ranker)
    assert is_ranker_checkpoint(out) and read_info(out)["mode"] == "full"
    loaded = load_ranker(out)
    assert loaded.adapter is None and loaded.info["base"] == str(folder)
    assert torch.equal(_scores(loaded.ranker, dataset), _scores(ranker, dataset))
    assert torch.equal(_scores(MLLMRanker.load(out, max_history=3), dataset), _scores(ranker, dataset))  # a transformers folder


def test_saving_a_ranker_with_adapters_needs_the_adapter(folder, dataset, tmp_path):
    ranker = MLLMRanker.load(folder)
    finetune(ranker, dataset, FinetuneConfig(**FAST), progress=False)
    with pytest.raises(ValueError, match="adapter="):
        save_ranker(tmp_path / "x", ranker)


def _break(out, tmp_path, name, how):
    import shutil

    bad = tmp_path / name
    shutil.copytree(out, bad)
    how(bad)
    return bad


BAD = {
    # name: (how to break a good LoRA folder, words the one-line message must hold)
    "no ranker.json": (lambda d: (d / "ranker.json").unlink(), ("ranker.json", "missing", "venomkit train --victim mllm")),
    "not json": (lambda d: (d / "ranker.json").write_text("{oops"), ("ranker.json", "not valid JSON")),
    "other format": (lambda d: (d / "ranker.json").write_text('{"format": "x"}'), ("ranker.json", "venomkit-mllm-ranker")),
    "future version": (
        lambda d: _edit(d, format_version=9), ("ranker.json", "format_version 9", "expected 1"),
    ),
    "bad mode": (lambda d: _edit(d, mode="qlora"), ("ranker.json", '"mode"', "'qlora'")),
    "bad history": (lambda d: _edit(d, max_history="8"), ("ranker.json", '"max_history"', "integer")),
    "no adapter weights": (
        lambda d: (d / "adapter_model.safetensors").unlink(), ("adapter_model.safetensors", "missing", "peft save_pretrained"),
    ),
    "corrupt adapter weights": (
        lambda d: (d / "adapter_model.safetensors").write_bytes(b"not safetensors"),
        ("adapter_model.safetensors", "cannot be applied"),
    ),
}


def _edit(folder, **changes):
    info = json.loads((folder / "ranker.json").read_text())
    info.update(changes)
    (folder / "ranker.json").write_text(json.dumps(info))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_folders_fail_in_one_line_naming_the_file(lora_checkpoint, tmp_path, case):
    how, words = BAD[case]
    bad = _break(lora_checkpoint[0], tmp_path, case.replace(" ", "-"), how)
    with pytest.raises(RankerCheckpointError) as info:
        load_ranker(bad)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    for word in words:
        assert word in message, (word, message)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(RankerCheckpointError, match="not a folder"):
        load_ranker(tmp_path / "nothing")
