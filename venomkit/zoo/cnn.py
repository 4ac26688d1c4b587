"""``toyshop-cnn``: a torchvision ResNet trained to recognise toyshop attributes.

Architecture: torchvision ``resnet18`` topology (BasicBlock, [2, 2, 2, 2]) at a quarter of the
width (stem 16, stages 16/32/64/128 channels; ~0.7 M parameters, ~1.4 MB in float16), built
by :func:`venomkit.encoders.torchvision_cnn.build_resnet` -- the same code that builds a real
resnet18/50 from ``config.json`` -- so the folder (``config.json`` + ``model.safetensors``)
loads through ``load_image_encoder('zoo:toyshop-cnn')`` like real weights. Its 128-d
penultimate features are the visual features of VBPR/AMR-style victims; its classifier
(``fc``) holds one head per attribute (category 10, colour 8, pattern 5, material 8 classes,
concatenated; layout in ``config.json['heads']``) for class-targeted attacks (TAaMR).

Training: summed cross-entropy over the heads, AdamW with warm-up and cosine decay, random
horizontal flips and shifts of up to 4 px, on items drawn fresh from the toyshop generator
(the same draw as toyshop-clip, never the shop's own items). Quality figures: per-head
accuracy on held-out items and on the shop's catalog, measured on the saved float16 folder.
On another catalog, heads are that catalog's categorical attributes with 2-50 values.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.config import check_int, check_number
from venomkit.data.catalog import Catalog
from venomkit.zoo.images import fitted_images
from venomkit.models.freeze import freeze
from venomkit.progress import progress as progress_bar

#: Stage widths and stem of toyshop-cnn (torchvision resnet18 uses 64/128/256/512 and 64).
WIDTHS = [16, 32, 64, 128]
STEM_WIDTH = 16
IMAGE_SIZE = 64


@dataclass
class CnnTrainConfig:
    """Data and schedule of the toyshop-cnn build (validated; ValueError names the field)."""

    n_train_items: int = 3000
    n_eval_items: int = 500
    steps: int = 800
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 30
    max_shift: int = 4
    eval_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("n_train_items", "n_eval_items", "steps", "batch_size"):
            check_int(f"CnnTrainConfig.{name}", getattr(self, name), 2)
        for name in ("warmup", "max_shift"):
            check_int(f"CnnTrainConfig.{name}", getattr(self, name), 0)
        check_number("CnnTrainConfig.lr", self.lr, 0, low_open=True)
        check_number("CnnTrainConfig.weight_decay", self.weight_decay, 0)
        check_number("CnnTrainConfig.eval_fraction", self.eval_fraction, 0, 1, low_open=True, high_open=True)

    @classmethod
    def fast(cls) -> "CnnTrainConfig":
        """A schedule for tests (seconds); the figures are lower and say so."""
        return cls(n_train_items=400, n_eval_items=200, steps=30, batch_size=64, warmup=3)


def _images_uint8(catalog: Catalog, indices: Sequence[int]) -> torch.Tensor:
    return fitted_images(catalog, indices, IMAGE_SIZE, uint8=True)


def _labels(catalog: Catalog, indices: Sequence[int], heads: dict[str, list[str]]) -> torch.Tensor:
    """(N, n_heads) int64 class index per head."""
    cols = []
    for name, classes in heads.items():
        lookup = {c: k for k, c in enumerate(classes)}
        cols.append([lookup[str(catalog.attributes[name][i])] for i in indices])
    return torch.tensor(cols, dtype=torch.int64).T.contiguous()


def train_cnn(encoder, images: torch.Tensor, labels: torch.Tensor, heads: dict[str, list[str]], cfg: CnnTrainConfig, seed: int) -> list[float]:
    """Multi-head cross-entropy training of ``encoder`` (a TorchvisionImageEncoder) in place."""
    from venomkit.encoders.torchvision_cnn import split_heads
    from venomkit.zoo.clip import augment_images

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    params = list(encoder.model.parameters())
    for p in params:
        p.requires_grad_(True)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))

    n = images.shape[0]
    batch = min(cfg.batch_size, n)
    order, cursor = rng.permutation(n), 0
    losses = []
    encoder.train()
    for step in progress_bar(range(cfg.steps), desc="toyshop-cnn", unit="step", leave=False):
        if cursor + batch > n:
            order, cursor = rng.permutation(n), 0
        idx = torch.from_numpy(order[cursor : cursor + batch])
        cursor += batch
        x = augment_images(images[idx].float().div(255), cfg.max_shift, gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = split_heads(encoder.logits(x), heads)
        loss = sum(F.cross_entropy(logits[name], labels[idx, k]) for k, name in enumerate(heads))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    freeze(encoder)
    return losses


@torch.no_grad()
def head_accuracy(encoder, images: torch.Tensor, labels: torch.Tensor, heads: dict[str, list[str]], batch_size: int = 256) -> dict[str, float]:
    """Accuracy per head of ``encoder.head_logits`` on uint8 images with (N, n_heads) labels."""
    correct = torch.zeros(len(heads))
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].float().div(255)
        logits = encoder.head_logits(x)
        for k, name in enumerate(heads):
            correct[k] += (logits[name].argmax(1) == labels[start : start + batch_size, k]).sum()
    return {name: round(float(correct[k]) / images.shape[0], 4) for k, name in enumerate(heads)}


def save_cnn_folder(encoder, out_dir: Path) -> None:
    """Write ``config.json`` + float16 ``model.safetensors`` (torchvision state-dict keys)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    config = encoder.config.to_dict()
    config["note"] = "torchvision resnet18 topology at reduced width; loads with venomkit.encoders.load_image_encoder"
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in encoder.model.state_dict().items()
    }
    # one metadata key only: safetensors writes several in random order, and the bytes (sha256
    # in the manifest) must be the same on every build
    save_file(state, str(out_dir / encoder.config.weights), metadata={"format": "pt"})


def build(out_dir: Path, dataset, *, fast: bool = False, seed: int = 0, config: CnnTrainConfig | None = None) -> dict:
    """Train toyshop-cnn (or a CNN for ``dataset``'s attributes) and write it to ``out_dir``.

    Returns the quality figures for the manifest (measured on the saved float16 folder).
    """
    from venomkit.encoders.loading import load_image_encoder
    from venomkit.encoders.torchvision_cnn import ResNetConfig, TorchvisionImageEncoder, build_resnet
    from venomkit.zoo.clip import categorical_attributes, fresh_toyshop_catalog, is_toyshop_catalog

    cfg = config or (CnnTrainConfig.fast() if fast else CnnTrainConfig())
    out_dir = Path(out_dir)
    started = time.time()
    torch.manual_seed(seed)
    catalog: Catalog = dataset.catalog
    toy = is_toyshop_catalog(catalog)
    if toy:
        from venomkit.data import toyshop

        source = fresh_toyshop_catalog(cfg.n_train_items + cfg.n_eval_items, IMAGE_SIZE, seed + 1)
        train_idx = list(range(cfg.n_train_items))
        eval_idx = list(range(cfg.n_train_items, cfg.n_train_items + cfg.n_eval_items))
        heads = {
            "category": list(toyshop.CATEGORIES),
            "colour": list(toyshop.COLOURS),
            "pattern": list(toyshop.PATTERNS),
            "material": list(toyshop.MATERIALS),
        }
    else:
        source = catalog
        order = np.random.default_rng(seed).permutation(catalog.n_items)
        n_eval = max(2, int(round(cfg.eval_fraction * catalog.n_items)))
        eval_idx, train_idx = sorted(order[:n_eval].tolist()), sorted(order[n_eval:].tolist())
        heads = categorical_attributes(catalog, range(catalog.n_items))
        if not heads:
            raise ValueError(
                f"dataset {dataset.name!r} has no categorical attribute with 2-50 values to train a CNN on "
                f"(attributes: {sorted(catalog.attributes)})"
            )
    data_seconds = time.time() - started

    rn_config = ResNetConfig(
        architecture="resnet18",
        widths=list(WIDTHS),
        stem_width=STEM_WIDTH,
        num_classes=sum(len(v) for v in heads.values()),
        image_size=IMAGE_SIZE,
        resize_size=None,
        heads=heads,
    )
    encoder = TorchvisionImageEncoder(build_resnet(rn_config), rn_config, "training")
    train_images = _images_uint8(source, train_idx)
    losses = train_cnn(encoder, train_images, _labels(source, train_idx, heads), heads, cfg, seed)
    train_seconds = time.time() - started - data_seconds
    save_cnn_folder(encoder, out_dir)

    shipped = load_image_encoder(str(out_dir))
    figures: dict = {
        "heldout_accuracy": head_accuracy(shipped, _images_uint8(source, eval_idx), _labels(source, eval_idx, heads), heads),
        "heldout_items": len(eval_idx),
    }
    if toy:
        all_idx = list(range(catalog.n_items))
        figures["shop_catalog_accuracy"] = head_accuracy(shipped, _images_uint8(catalog, all_idx), _labels(catalog, all_idx, heads), heads)
    figures.update(
        {
            "feature_dim": shipped.output_dim,
            "train_items": len(train_idx),
            "train_steps": cfg.steps,
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "parameters": int(sum(p.numel() for p in shipped.model.parameters())),
            "data_seconds": round(data_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "config": asdict(cfg),
        }
    )
    return figures
