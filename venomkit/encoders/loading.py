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

``zoo:NAME``, folders and ``hf-hub:`` ids are found by ``venomkit.models.resolve.resolve_model``
(the resolver every model loader shares); the family-specific forms (open_clip ``ARCH/TAG``,
torchvision ``resnet18``) are read by their family's module.

Encoders come back frozen (``venomkit.models.freeze.freeze``: eval mode, ``requires_grad=False``):
they stay differentiable with respect to their inputs (pixels, token embeddings), which is what
attacks need, while nothing trains them by accident.

:func:`load_content_encoders` loads a victim's image and text encoders from their specs (one
model for both when they name the same open_clip model); :func:`resolve_device` reads ``auto``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from venomkit.encoders.base import ImageEncoder, TextEncoder
from venomkit.models.freeze import freeze
from venomkit.models.resolve import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, is_location_spec, resolve_model

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
    if spec.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX)):
        return _OPEN_CLIP  # open_clip's own spellings of a folder and a hub id
    if spec.partition(":")[0] in RESNET_ARCHS:
        return _TORCHVISION
    if is_location_spec(spec):  # zoo:NAME or an existing folder
        return detect_folder_family(resolve_model(spec, what="encoder"))
    import open_clip

    if spec.partition("/")[0] in set(open_clip.list_models()):
        return _OPEN_CLIP
    hint = " (no such file or folder)" if ("/" in spec or "\\" in spec) else ""
    raise ValueError(f"unknown encoder spec {spec!r}{hint}; accepted forms: {SPEC_HELP}")


def load_image_encoder(spec: str, device: str | torch.device = "cpu") -> ImageEncoder:
    """An :class:`ImageEncoder` for ``spec`` (see module docstring), frozen, in eval mode."""
    family = detect_family(spec)
    if family == _TORCHVISION:
        from venomkit.encoders.torchvision_cnn import TorchvisionImageEncoder

        return freeze(TorchvisionImageEncoder.from_spec(spec.strip(), device))
    from venomkit.encoders.openclip import OpenClipImageEncoder

    return freeze(OpenClipImageEncoder.from_spec(spec.strip(), device))


def load_text_encoder(spec: str, device: str | torch.device = "cpu") -> TextEncoder:
    """A :class:`TextEncoder` for an open_clip ``spec``, frozen, in eval mode."""
    family = detect_family(spec)
    if family != _OPEN_CLIP:
        raise ValueError(f"encoder spec {spec!r} is a {family} image model and has no text encoder; use an open_clip spec")
    from venomkit.encoders.openclip import OpenClipTextEncoder

    return freeze(OpenClipTextEncoder.from_spec(spec.strip(), device))


def load_encoders(spec: str, device: str | torch.device = "cpu") -> tuple[ImageEncoder, TextEncoder | None]:
    """Image encoder and (for open_clip) text encoder sharing ONE loaded model; CNNs give ``None`` text."""
    family = detect_family(spec)
    if family == _TORCHVISION:
        return load_image_encoder(spec, device), None
    from venomkit.encoders.openclip import load_open_clip_encoders

    image, text = load_open_clip_encoders(spec.strip(), device)
    return freeze(image), freeze(text)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> cuda when available, else cpu; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_ENCODER_CHOICE = {
    "visual": "choose another image encoder (--image-encoder SPEC on the command line, image_encoder= in Python)",
    "text": "choose another text encoder (--text-encoder SPEC on the command line, text_encoder= in Python)",
}


def _load_encoder(spec: str | ImageEncoder | TextEncoder | None, modality: str, device: torch.device) -> Any:
    if spec is None or isinstance(spec, (ImageEncoder, TextEncoder)):
        return spec
    try:
        return load_image_encoder(spec, device) if modality == "visual" else load_text_encoder(spec, device)
    except FileNotFoundError as exc:
        raise type(exc)(f"{exc} ({_ENCODER_CHOICE[modality]})") from None


def load_content_encoders(
    image_spec: str | ImageEncoder | None, text_spec: str | TextEncoder | None, device: str | torch.device = "cpu"
) -> tuple[ImageEncoder | None, TextEncoder | None]:
    """Load the image and text encoders (specs or ready objects; None skips a modality).

    One open_clip spec for both loads the model once. A missing model (e.g. the zoo not
    built yet) raises FileNotFoundError saying how to choose another: there is no silent
    fallback to a different encoder. ``device`` is read by :func:`resolve_device`.
    """
    device = resolve_device(device)
    if isinstance(image_spec, str) and image_spec == text_spec:
        try:
            if detect_family(image_spec) == _OPEN_CLIP:
                return load_encoders(image_spec, device)
        except FileNotFoundError as exc:
            raise type(exc)(f"{exc} ({_ENCODER_CHOICE['visual']}; {_ENCODER_CHOICE['text']})") from None
    return _load_encoder(image_spec, "visual", device), _load_encoder(text_spec, "text", device)
