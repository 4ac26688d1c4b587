"""torchvision ResNet image encoders: penultimate (global-average-pooled) features from raw pixels.

Specs (see :func:`TorchvisionImageEncoder.from_spec`):

- ``resnet18`` / ``resnet34`` / ``resnet50`` / ``resnet101``: random weights (a warning says so);
- ``resnet18:/path/weights.safetensors``: a torchvision state dict (``.safetensors``, or
  ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``), e.g. ImageNet weights the
  user converted; the classifier size is taken from ``fc.weight``;
- a folder (or ``zoo:NAME``, ``local-dir:PATH``, a cached ``hf-hub:`` id) with ``config.json`` + ``model.safetensors``: the config names
  the ``architecture`` and may override stage ``widths``/``stem_width`` (the zoo's
  ``toyshop-cnn`` is resnet18 at a quarter of the width), the input size, normalisation and
  the layout of the classifier output (``heads``).

Every variant is built by :func:`build_resnet` from torchvision's own ``ResNet`` class and
``_make_layer``, so module names and state-dict keys are torchvision's: the zoo CNN and real
resnet18/50 weights go through the same code. He et al. 2016, "Deep Residual Learning for
Image Recognition". Features are the ``avgpool`` output flattened, (N, widths[-1] * expansion)
(512 for resnet18, 2048 for resnet50), as in VBPR-style visual features.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from venomkit.encoders.base import ImageEncoder, Images, images_to
from venomkit.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, TorchPreprocess
from venomkit.models.freeze import freeze
from venomkit.models.resolve import is_location_spec, resolve_model

RESNET_ARCHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}
DEFAULT_WIDTHS = [64, 128, 256, 512]
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ResNetConfig:
    """What ``config.json`` of a CNN folder holds.

    Attributes:
        architecture: one of ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` (topology).
        widths: planes of the four stages (torchvision: 64, 128, 256, 512).
        stem_width: channels of the 7x7 stem convolution (torchvision: 64).
        num_classes: outputs of ``fc`` (all heads concatenated).
        image_size: input side after preprocessing (centre crop size).
        resize_size: shorter side before the crop; ``None`` = ``image_size``.
        mean, std, interpolation: preprocessing (ImageNet statistics, bilinear by default).
            The defaults (resize 256, crop 224, bilinear) are torchvision's ``IMAGENET1K_V1``
            presets; :meth:`from_torchvision_weights` reads any preset (ResNet50 V2: 232).
        heads: ordered ``{name: [class labels]}`` laying out ``fc``'s outputs, e.g.
            ``{"category": [...], "colour": [...]}``; empty for a plain classifier.
        weights: weights file name inside the folder.
    """

    architecture: str = "resnet18"
    widths: list[int] = field(default_factory=lambda: list(DEFAULT_WIDTHS))
    stem_width: int = 64
    num_classes: int = 1000
    image_size: int = 224
    resize_size: int | None = 256
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    interpolation: str = "bilinear"
    heads: dict[str, list[str]] = field(default_factory=dict)
    weights: str = WEIGHTS_FILE

    def __post_init__(self) -> None:
        if self.architecture not in RESNET_ARCHS:
            raise ValueError(f"ResNetConfig.architecture must be one of {sorted(RESNET_ARCHS)}, got {self.architecture!r}")
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"ResNetConfig.widths must be 4 positive ints, got {self.widths}")
        if self.stem_width < 1:
            raise ValueError(f"ResNetConfig.stem_width must be positive, got {self.stem_width}")
        if self.num_classes < 1:
            raise ValueError(f"ResNetConfig.num_classes must be positive, got {self.num_classes}")
        if self.heads and sum(len(v) for v in self.heads.values()) != self.num_classes:
            raise ValueError(
                f"ResNetConfig.heads lay out {sum(len(v) for v in self.heads.values())} outputs "
                f"but num_classes is {self.num_classes}"
            )
        if self.image_size < 8:
            raise ValueError(f"ResNetConfig.image_size must be >= 8, got {self.image_size}")
        # validates size / mean / std / interpolation with the preprocessing's own checks
        PreprocessConfig(size=self.image_size, resize_size=self.resize_size, mean=tuple(self.mean),
                         std=tuple(self.std), interpolation=self.interpolation)

    @classmethod
    def from_file(cls, path: str | Path) -> "ResNetConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known - {"family", "format", "note", "training"})
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_torchvision_weights(cls, preset, **overrides) -> "ResNetConfig":
        """The architecture, classifier size and preprocessing of a torchvision weights preset.

        ``preset`` is a weights enum member (``torchvision.models.ResNet50_Weights.IMAGENET1K_V2``)
        or its name (``"ResNet50_Weights.IMAGENET1K_V2"``). The preprocessing is the preset's
        ``transforms()`` (ResNet50 V2: resize 232 bilinear, crop 224; ResNet18 V1: resize 256,
        crop 224; ImageNet statistics), read without any weights file; :class:`TorchPreprocess`
        then equals it on a PIL image to one grey level (see
        ``tests/encoders/test_native_photo_preprocessing.py``). ``overrides`` replace fields,
        e.g. ``weights="resnet50.safetensors"`` for a converted weights file in a folder.
        """
        if isinstance(preset, str):
            import torchvision.models

            enum_name, _, member = preset.partition(".")
            enum = getattr(torchvision.models, enum_name, None)
            if enum is None or not member or member not in enum.__members__:
                raise ValueError(f"unknown torchvision weights {preset!r}; expected e.g. 'ResNet50_Weights.IMAGENET1K_V2'")
            preset = enum[member]
        arch = type(preset).__name__.removesuffix("_Weights").lower()
        if arch not in RESNET_ARCHS:
            raise ValueError(f"torchvision weights {preset} are not for one of {sorted(RESNET_ARCHS)}")
        pp = PreprocessConfig.from_torchvision(preset.transforms())
        if pp.size[0] != pp.size[1]:
            raise ValueError(f"torchvision weights {preset}: non-square crop {pp.size} is not supported")
        fields = dict(
            architecture=arch,
            num_classes=len(preset.meta["categories"]),
            image_size=pp.size[0],
            resize_size=pp.resize_size,
            mean=list(pp.mean),
            std=list(pp.std),
            interpolation=pp.interpolation,
        )
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(
            size=self.image_size,
            resize_size=self.resize_size,
            mean=tuple(self.mean),
            std=tuple(self.std),
            interpolation=self.interpolation,
        )


def build_resnet(config: ResNetConfig) -> ResNet:
    """A torchvision ``ResNet`` with the config's topology, widths and classifier size.

    With default widths this is exactly ``torchvision.models.resnetXX(num_classes=...)``;
    other widths rebuild the stem and stages with torchvision's ``_make_layer`` so the
    module tree and state-dict keys stay torchvision's.
    """
    block, layers = RESNET_ARCHS[config.architecture]
    model = ResNet(block, layers, num_classes=config.num_classes)
    if list(config.widths) == DEFAULT_WIDTHS and config.stem_width == 64:
        return model
    model.inplanes = config.stem_width
    model.conv1 = nn.Conv2d(3, config.stem_width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(config.stem_width)
    model.layer1 = model._make_layer(block, config.widths[0], layers[0])
    model.layer2 = model._make_layer(block, config.widths[1], layers[1], stride=2)
    model.layer3 = model._make_layer(block, config.widths[2], layers[2], stride=2)
    model.layer4 = model._make_layer(block, config.widths[3], layers[3], stride=2)
    model.fc = nn.Linear(config.widths[3] * block.expansion, config.num_classes)
    # the same initialisation ResNet.__init__ applies
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from ``.safetensors`` or (without unpickling code) ``.pt``/``.pth``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}


class TorchvisionImageEncoder(ImageEncoder):
    """ResNet penultimate features from raw pixels: (N, 3, H, W) [0, 1] -> (N, output_dim).

    Also takes a list of (3, H_i, W_i) photos at their own sizes. Preprocessing (resize the
    shorter side to ``config.resize_size``, centre crop ``config.image_size``, normalise) runs
    in torch, so gradients reach the native pixels; with a config from
    :meth:`ResNetConfig.from_torchvision_weights` it equals the weights' ``transforms()`` on a
    PIL image to one grey level (feature cosine >= 0.9999 measured, random weights). ``logits``/``head_logits`` expose the classifier, e.g.
    the zoo CNN's attribute heads for class-targeted attacks (TAaMR).
    """

    def __init__(self, model: ResNet, config: ResNetConfig, spec: str) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.preprocess = TorchPreprocess(config.preprocess())
        self.spec = spec
        self.output_dim = int(model.fc.in_features)

    @classmethod
    def from_spec(cls, spec: str, device: str | torch.device = "cpu") -> "TorchvisionImageEncoder":
        """Load ``resnetXX``, ``resnetXX:WEIGHTS`` or a folder / ``zoo:NAME`` with config.json.

        Folders and ``zoo:NAME`` are found by ``venomkit.models.resolve.resolve_model``; the
        ``resnetXX`` forms are torchvision's own. Returns the encoder frozen, on ``device``.
        """
        if is_location_spec(spec):
            folder = resolve_model(spec, what="CNN")
            config_path = folder / CONFIG_FILE
            if not config_path.is_file():
                raise FileNotFoundError(f"CNN folder {str(folder)!r} has no {CONFIG_FILE}")
            config = ResNetConfig.from_file(config_path)
            model = build_resnet(config)
            weights = folder / config.weights
            _load_into(model, read_state_dict(weights), weights)
        else:
            arch, _, weights_path = spec.partition(":")
            if arch not in RESNET_ARCHS:
                raise ValueError(
                    f"unknown torchvision CNN spec {spec!r}; expected one of {sorted(RESNET_ARCHS)}, "
                    "optionally ':/path/to/weights.safetensors', or a folder / zoo:NAME with config.json"
                )
            if weights_path:
                state = read_state_dict(weights_path)
                num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
                config = ResNetConfig(architecture=arch, num_classes=num_classes)
                model = build_resnet(config)
                _load_into(model, state, Path(weights_path))
            else:
                warnings.warn(
                    f"CNN {spec!r} has no weights given ('{arch}:/path/to/weights.safetensors'): it is randomly initialised",
                    stacklevel=2,
                )
                config = ResNetConfig(architecture=arch)
                model = build_resnet(config)
        return freeze(cls(model, config, spec).to(device))

    def _trunk(self, images: Images) -> torch.Tensor:
        m = self.model
        x = self.preprocess(images_to(images, m.conv1.weight.device)).to(m.conv1.weight.dtype)
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return torch.flatten(m.avgpool(x), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._trunk(images)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Classifier outputs (N, num_classes) (all heads concatenated)."""
        return self.model.fc(self._trunk(images))

    def head_logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-head logits ``{name: (N, n_classes)}`` following ``config.heads``."""
        if not self.config.heads:
            return {"fc": self.logits(images)}
        return split_heads(self.logits(images), self.config.heads)


def split_heads(logits: torch.Tensor, heads: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, labels in heads.items():
        out[name] = logits[:, start : start + len(labels)]
        start += len(labels)
    return out


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the architecture: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, the architecture needs {tuple(expected[key].shape)}")
    # float16 files (the zoo stores halves) load into float32 parameters
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
