"""Spec dispatch and errors of the public loaders."""

from __future__ import annotations

import json

import pytest

from venomkit.encoders.loading import SPEC_HELP, detect_family, load_image_encoder


def test_family_detection(tiny_clip_dir, tiny_cnn_dir):
    assert detect_family(str(tiny_clip_dir)) == "open_clip"
    assert detect_family(f"local-dir:{tiny_clip_dir}") == "open_clip"
    assert detect_family(str(tiny_cnn_dir)) == "torchvision"
    assert detect_family("resnet50") == "torchvision"
    assert detect_family("resnet18:/w.safetensors") == "torchvision"
    assert detect_family("ViT-B-32/openai") == "open_clip"


@pytest.mark.parametrize("spec", ["", "no-such-model", "./missing/folder", "vgg16"])
def test_unknown_spec_lists_accepted_forms(spec):
    with pytest.raises(ValueError) as info:
        load_image_encoder(spec)
    assert "zoo:NAME" in str(info.value) and "resnet18" in str(info.value)


def test_folder_without_model_files(tmp_path):
    with pytest.raises(ValueError, match="neither open_clip_config.json"):
        load_image_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "llama"}))
    with pytest.raises(ValueError, match="'llama'"):
        load_image_encoder(str(tmp_path))


def test_missing_zoo_model_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="venomkit zoo build --only toyshop-clip"):
        load_image_encoder("zoo:toyshop-clip")


def test_spec_help_mentions_every_form():
    for form in ("zoo:NAME", "local-dir:PATH", "hf-hub:", "ViT-B-32/openai", "resnet50"):
        assert form in SPEC_HELP
