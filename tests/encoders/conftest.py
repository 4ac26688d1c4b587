"""Tiny model folders in the same native formats as the zoo (random weights, built in < 1 s), and a large photo."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pytest runs with --import-mode=importlib

from photo_helpers import make_photo, pil_to_tensor  # noqa: E402


def write_tiny_clip(folder: Path, seed: int = 0, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)) -> Path:
    """An open_clip ``local-dir`` folder with the toyshop-clip architecture and random weights."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    from venomkit.zoo.clip import MODEL_CFG

    torch.manual_seed(seed)
    cfg = copy.deepcopy(MODEL_CFG)
    model = CLIP(**cfg)
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {"size": 64, "mean": list(mean), "std": list(std), "interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def write_tiny_cnn(folder: Path, seed: int = 0) -> Path:
    """A torchvision CNN folder (config.json + model.safetensors), quarter-width resnet18."""
    from safetensors.torch import save_file

    from venomkit.encoders.torchvision_cnn import ResNetConfig, build_resnet

    torch.manual_seed(seed)
    config = ResNetConfig(
        architecture="resnet18", widths=[8, 16, 32, 64], stem_width=8, num_classes=5, image_size=64,
        resize_size=None, heads={"a": ["x", "y"], "b": ["p", "q", "r"]},
    )
    model = build_resnet(config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("zoo") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_cnn_dir(tmp_path_factory) -> Path:
    return write_tiny_cnn(tmp_path_factory.mktemp("zoo") / "tiny-cnn")


@pytest.fixture(scope="session")
def product_images() -> torch.Tensor:
    """(4, 3, 96, 80) real-looking product images (toyshop renders, cropped non-square)."""
    from venomkit.data import toyshop

    specs = [("mug", "red", "striped", "ceramic"), ("hat", "blue", "checked", "wool"),
             ("watch", "yellow", "zigzag", "metal"), ("lamp", "green", "polka-dot", "wood")]
    images = [toyshop.render_item(*s, size=96, rng=np.random.default_rng(k)) for k, s in enumerate(specs)]
    return torch.stack(images)[:, :, :, 8:88].contiguous()


@pytest.fixture(scope="session")
def large_photo():
    """(PIL image, (1, 3, 1750, 1166) tensor): a 1166 x 1750 (W x H) JPEG photo, see :func:`make_photo`."""
    image = make_photo()
    return image, pil_to_tensor(image)[None]
