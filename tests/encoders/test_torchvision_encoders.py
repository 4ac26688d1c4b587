"""torchvision ResNet encoders: same module tree as torchvision, weights files, gradients."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from venomkit.encoders.loading import load_image_encoder, load_text_encoder
from venomkit.encoders.torchvision_cnn import ResNetConfig, TorchvisionImageEncoder, build_resnet


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_default_widths_are_torchvision_architecture(arch):
    ours = build_resnet(ResNetConfig(architecture=arch)).state_dict()
    theirs = getattr(torchvision.models, arch)().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_weights_file_gives_torchvision_penultimate_features(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=7).eval()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    encoder = load_image_encoder(f"resnet18:{path}")
    assert isinstance(encoder, TorchvisionImageEncoder) and encoder.output_dim == 512
    x = torch.rand(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(encoder.preprocess(x))
        assert torch.allclose(encoder(x), expected, atol=1e-5)
    assert encoder.preprocess.config.size == (224, 224)


def test_random_init_warns():
    with pytest.warns(UserWarning, match="randomly initialised"):
        encoder = load_image_encoder("resnet18")
    assert encoder.output_dim == 512


def test_folder_with_config_and_heads(tiny_cnn_dir):
    encoder = load_image_encoder(str(tiny_cnn_dir))
    x = torch.rand(3, 3, 64, 64)
    assert encoder(x).shape == (3, 64)
    heads = encoder.head_logits(x)
    assert heads["a"].shape == (3, 2) and heads["b"].shape == (3, 3)
    assert torch.allclose(torch.cat([heads["a"], heads["b"]], 1), encoder.logits(x))


def test_gradients_reach_pixels_through_cnn(tiny_cnn_dir, product_images):
    encoder = load_image_encoder(str(tiny_cnn_dir))
    x = product_images.clone().requires_grad_(True)
    encoder(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not encoder.training and all(not p.requires_grad for p in encoder.parameters())


def test_bad_weights_are_named(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"conv1.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_image_encoder(f"resnet18:{path}")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_image_encoder(f"resnet18:{tmp_path / 'missing.safetensors'}")


def test_bad_config_names_file_and_field(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "widths": [1, 2]}))
    with pytest.raises(ValueError, match=r"config\.json.*widths"):
        load_image_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "colour": 3}))
    with pytest.raises(ValueError, match="unknown field"):
        load_image_encoder(str(tmp_path))


def test_cnn_has_no_text_encoder(tiny_cnn_dir):
    with pytest.raises(ValueError, match="no text encoder"):
        load_text_encoder(str(tiny_cnn_dir))
