"""Checkpoints: round trip gives identical scores; bad folders give clear errors; no pickle."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from victim_helpers import TinyImageEncoder, TinyTextEncoder, build

from venomkit.victims.checkpoint import CheckpointError, is_victim_checkpoint, load_victim, save_victim


@pytest.mark.parametrize("kind", ["vbpr", "amr", "mmgcn", "lightgcn"])
def test_round_trip_gives_identical_scores(kind, tiny_dataset, tmp_path):
    encoders = (TinyImageEncoder(8), TinyTextEncoder(5)) if kind != "lightgcn" else (None, None)
    victim = build(kind, tiny_dataset, *encoders, embed_dim=4, **({"latent_dim": 6} if kind == "mmgcn" else {})).eval()
    with torch.no_grad():
        for p in victim.model_parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the initial state
    folder = save_victim(victim, tmp_path / "ckpt", metrics={"recall@20": 0.5})
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "metrics.json"}
    assert is_victim_checkpoint(folder)
    stored = load_file(str(folder / "model.safetensors"))
    assert not any(k.startswith(("image_encoder", "text_encoder")) for k in stored)

    loaded = load_victim(folder, image_encoder=encoders[0], text_encoder=encoders[1])
    assert type(loaded) is type(victim) and loaded.config == victim.config
    with torch.no_grad():
        assert torch.equal(loaded.scores(), victim.scores())
    if kind != "lightgcn":
        targets = torch.tensor([1, 2])
        images = tiny_dataset.catalog.image_batch(targets) * 0.5
        texts = ["a red hat", "nice lamp"]
        with torch.no_grad():
            assert torch.equal(loaded.item_representations(images, texts, targets)[1], victim.item_representations(images, texts, targets)[1])
        # Without encoders the victim still scores its clean catalog.
        bare = load_victim(folder, load_encoders=False)
        assert bare.image_encoder is None and torch.equal(bare.scores(), loaded.scores())
    meta = json.loads((folder / "config.json").read_text())
    assert meta["kind"] == kind and meta["image_encoder"] == victim.config.image_encoder


def _saved(tiny_dataset, tmp_path):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), None, embed_dim=4)
    return save_victim(victim, tmp_path / "ckpt")


def test_missing_folder_and_files(tiny_dataset, tmp_path):
    with pytest.raises(CheckpointError, match="not a victim checkpoint folder"):
        load_victim(tmp_path / "nowhere")
    folder = _saved(tiny_dataset, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_victim(folder, load_encoders=False)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_victim(folder)


def test_corrupt_files(tiny_dataset, tmp_path):
    folder = _saved(tiny_dataset, tmp_path)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_victim(folder, load_encoders=False)
    (folder / "model.safetensors").write_bytes(weights)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[:-10])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_victim(folder, load_encoders=False)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(kind="transformer"), "field 'kind'"),
        (lambda m: m["config"].update(colour="red"), "colour"),
        (lambda m: m["config"].update(embed_dim=-3), "embed_dim"),
        (lambda m: m["config"].update(n_items=7), "does not match"),
        (lambda m: m.update(format_version=99), "format_version"),
    ],
)
def test_bad_config_fields_are_named(edit, message, tiny_dataset, tmp_path):
    folder = _saved(tiny_dataset, tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    edit(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_victim(folder, load_encoders=False)


def test_state_dict_round_trip_in_memory(tiny_dataset):
    a = build("mmgcn", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8), embed_dim=4, latent_dim=6, seed=1)
    b = build("mmgcn", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8), embed_dim=4, latent_dim=6, seed=2)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(a.scores(), b.scores())
    with pytest.raises(RuntimeError, match="unexpected"):
        b.load_state_dict({**a.state_dict(), "extra": torch.zeros(1)})
