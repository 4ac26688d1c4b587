"""Load image/text encoders by name: one entry point for zoo models, local folders and hub ids.

Accepted specs:

=============================================  ===========================================
``zoo:NAME``                                   a zoo folder (family detected by its files)
``local-dir:PATH``                             an open_clip folder (open_clip_config.json)
``PATH`` (a folder)                            open_clip_config.json -> open_clip;
                                               config.json with a ResNet ``architecture``
                                               -> torchvision CNN
``hf-hub:ORG/REPO``                            open_clip, from the local HF cache only
``ARCH/TAG``, ``ARCH/PATH``, ``ARCH``          open_clip built-in architecture
                                               (``ViT-B-32/openai``; cache only)
``resnet18`` / ``resnet50`` [``:WEIGHTS``]     torchvision ResNet (random without weights)
=============================================  ===========================================

Encoders come back in eval mode with frozen parameters (``requires_grad=False``): they stay
differentiable with respect to their inputs (pixels, token embeddings), which is what attacks
need, while nothing trains them by accident.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from venomkit.encoders.base import ImageEncoder, TextEncoder

SPEC_HELP = (
    "'zoo:NAME' (e.g. zoo:toyshop-clip, zoo:toyshop-cnn), 'local-dir:PATH' or a folder holding "
    "open_clip_config.json (open_clip) or config.json with a ResNet 'architecture' (torchvision), "
    "'hf-hub:ORG/REPO' (local cache only), an open_clip 'ARCH/TAG' such as ViT-B-32/openai (local cache only), "
    "'ARCH/PATH-TO-WEIGHTS', or 'resnet18'/'resnet50' optionally followed by ':/path/to/weights.safetensors'"
)

_OPEN_CLIP = "open_clip"
_TORCHVISION = "torchvision"


def detect_folder_family(folder: str | Path) -> str:
    """``open_clip`` or ``torchvision`` from the files in a model folder (ValueError otherwise)."""
    from venomkit.encoders.openclip import OPEN_CLIP_CONFIG
    from venomkit.encoders.torchvision_cnn import CONFIG_FILE, RESNET_ARCHS

    folder = Path(folder)
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return _OPEN_CLIP
    config = folder / CONFIG_FILE
    if config.is_file():
        try:
            arch = json.loads(config.read_text(encoding="utf-8")).get("architecture")
        except (json.JSONDecodeError, AttributeError):
            arch = None
        if arch in RESNET_ARCHS:
            return _TORCHVISION
        raise ValueError(
            f"model folder {str(folder)!r}: {CONFIG_FILE} has architecture {arch!r}, "
            f"not an image encoder venomkit knows (open_clip folders hold {OPEN_CLIP_CONFIG}; "
            f"torchvision ones need one of {sorted(RESNET_ARCHS)})"
        )
    raise ValueError(
        f"model folder {str(folder)!r} holds neither {OPEN_CLIP_CONFIG} (open_clip) nor {CONFIG_FILE} (torchvision CNN)"
    )


def detect_family(spec: str) -> str:
    """Which loader a spec goes to: ``open_clip`` or ``torchvision`` (ValueError listing forms)."""
    from venomkit.encoders.torchvision_cnn import RESNET_ARCHS

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"encoder spec must be a non-empty string; accepted forms: {SPEC_HELP}")
    spec = spec.strip()
    if spec.startswith("zoo:"):
        from venomkit.zoo import resolve

        return detect_folder_family(resolve(spec))
    if spec.startswith(("local-dir:", "hf-hub:")):
        return _OPEN_CLIP
    if spec.partition(":")[0] in RESNET_ARCHS:
        return _TORCHVISION
    path = Path(spec).expanduser()
    if path.is_dir():
        return detect_folder_family(path)
    import open_clip

    if spec.partition("/")[0] in set(open_clip.list_models()):
        return _OPEN_CLIP
    hint = " (no such file or folder)" if ("/" in spec or "\\" in spec) else ""
    raise ValueError(f"unknown encoder spec {spec!r}{hint}; accepted forms: {SPEC_HELP}")


def _freeze(encoder: torch.nn.Module) -> torch.nn.Module:
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


def load_image_encoder(spec: str, device: str | torch.device = "cpu") -> ImageEncoder:
    """An :class:`ImageEncoder` for ``spec`` (see module docstring), frozen, in eval mode."""
    family = detect_family(spec)
    if family == _TORCHVISION:
        from venomkit.encoders.torchvision_cnn import TorchvisionImageEncoder

        return _freeze(TorchvisionImageEncoder.from_spec(spec.strip(), device))
    from venomkit.encoders.openclip import OpenClipImageEncoder

    return _freeze(OpenClipImageEncoder.from_spec(spec.strip(), device))


def load_text_encoder(spec: str, device: str | torch.device = "cpu") -> TextEncoder:
    """A :class:`TextEncoder` for an open_clip ``spec``, frozen, in eval mode."""
    family = detect_family(spec)
    if family != _OPEN_CLIP:
        raise ValueError(f"encoder spec {spec!r} is a {family} image model and has no text encoder; use an open_clip spec")
    from venomkit.encoders.openclip import OpenClipTextEncoder

    return _freeze(OpenClipTextEncoder.from_spec(spec.strip(), device))


def load_encoders(spec: str, device: str | torch.device = "cpu") -> tuple[ImageEncoder, TextEncoder | None]:
    """Image encoder and (for open_clip) text encoder sharing ONE loaded model; CNNs give ``None`` text."""
    family = detect_family(spec)
    if family == _TORCHVISION:
        return load_image_encoder(spec, device), None
    from venomkit.encoders.openclip import load_open_clip_encoders

    image, text = load_open_clip_encoders(spec.strip(), device)
    return _freeze(image), _freeze(text)
