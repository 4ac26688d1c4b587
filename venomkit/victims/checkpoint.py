"""Victim checkpoints: a folder with ``config.json`` and ``model.safetensors``; no pickle.

``config.json``::

    {"format": "venomkit-victim", "format_version": 1, "venomkit_version": "0.1.0",
     "kind": "vbpr", "config": {...every config field, encoder specs included...},
     "image_encoder": "zoo:toyshop-clip", "text_encoder": "zoo:toyshop-clip"}

``model.safetensors`` holds the model's tensors (parameters, the clean feature tables, the
training graph of graph victims) -- never the encoders, which are reloaded from their specs
by ``venomkit.encoders.loading``. ``metrics.json``, when given, is written next to them.
Files are written to a temporary name and renamed, so a crash never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

import venomkit
from venomkit.encoders.base import ImageEncoder, TextEncoder
from venomkit.encoders.loading import load_content_encoders
from venomkit.victims.amr import AMR
from venomkit.victims.base import Victim
from venomkit.victims.lightgcn import LightGCN
from venomkit.victims.mmgcn import MMGCN
from venomkit.victims.vbpr import VBPR

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
FORMAT = "venomkit-victim"
FORMAT_VERSION = 1

VICTIMS: dict[str, type[Victim]] = {cls.kind: cls for cls in (VBPR, AMR, MMGCN, LightGCN)}
"""Registry: checkpoint ``kind`` -> victim class."""


class CheckpointError(ValueError):
    """A victim checkpoint folder that cannot be read (names the file and what is wrong)."""


def victim_class(kind: str) -> type[Victim]:
    try:
        return VICTIMS[kind]
    except KeyError:
        raise ValueError(f"unknown victim kind {kind!r}; expected one of {sorted(VICTIMS)}") from None


def register_victim(cls: type[Victim]) -> type[Victim]:
    """Add a victim class to the registry (usable as a decorator)."""
    VICTIMS[cls.kind] = cls
    return cls


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_victim(victim: Victim, folder: str | Path, metrics: dict | None = None) -> Path:
    """Write ``victim`` to ``folder`` (created if needed) as config.json + model.safetensors."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if victim.kind not in VICTIMS:
        raise ValueError(f"victim kind {victim.kind!r} is not registered; call register_victim({type(victim).__name__})")
    tensors = {k: v.detach().cpu().contiguous() for k, v in victim.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "venomkit_version": venomkit.__version__,
        "kind": victim.kind,
        "config": victim.config.to_dict(),
        "image_encoder": victim.config.image_encoder,
        "text_encoder": victim.config.text_encoder,
    }
    _write_atomic(folder / WEIGHTS_FILE, save(tensors, metadata={"format": FORMAT, "kind": victim.kind}))
    _write_atomic(folder / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    if metrics is not None:
        _write_atomic(folder / METRICS_FILE, (json.dumps(metrics, indent=2, default=float) + "\n").encode())
    return folder


def read_victim_config(folder: str | Path) -> dict[str, Any]:
    """The parsed, checked ``config.json`` of a checkpoint folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a victim checkpoint folder (it does not exist or is not a folder)")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a victim checkpoint holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a venomkit victim config (field 'format' must be {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: field 'format_version' is {meta.get('format_version')!r}; this venomkit reads {FORMAT_VERSION}")
    for key in ("kind", "config"):
        if key not in meta:
            raise CheckpointError(f"{path}: field {key!r} is missing")
    if meta["kind"] not in VICTIMS:
        raise CheckpointError(f"{path}: field 'kind' is {meta['kind']!r}; known kinds are {sorted(VICTIMS)}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: field 'config' must be an object")
    return meta


def load_victim(
    folder: str | Path,
    device: str | torch.device = "cpu",
    load_encoders: bool = True,
    image_encoder: ImageEncoder | None = None,
    text_encoder: TextEncoder | None = None,
) -> Victim:
    """Rebuild a victim from ``save_victim``'s folder, without unpickling anything.

    Encoders: the given ``image_encoder`` / ``text_encoder`` objects are attached as they are;
    otherwise, with ``load_encoders``, they are loaded from the specs in the config
    (``venomkit.encoders.loading``). Without encoders the victim still scores its clean
    catalog and any feature tables, but ``item_representations`` needs them.
    Returns the victim on ``device`` in eval mode.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_victim_config(folder)
    cls = VICTIMS[meta["kind"]]
    try:
        config = cls.config_class.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: field 'config': {exc}") from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing; a victim checkpoint holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: corrupt or not a safetensors file ({exc})") from None
    victim = cls(config)
    try:
        victim.load_state_dict(tensors)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: does not match {CONFIG_FILE} ({exc})") from None
    victim.to(device)
    if load_encoders:
        want_image = image_encoder is None and "visual" in victim.modalities and config.image_encoder is not None
        want_text = text_encoder is None and "text" in victim.modalities and config.text_encoder is not None
        loaded_image, loaded_text = load_content_encoders(
            config.image_encoder if want_image else None, config.text_encoder if want_text else None, device
        )
        image_encoder = image_encoder if image_encoder is not None else loaded_image
        text_encoder = text_encoder if text_encoder is not None else loaded_text
    victim.attach_encoders(image_encoder, text_encoder)
    victim.eval()
    return victim


def is_victim_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a victim ``config.json`` (for ``--victim DIR``)."""
    return (Path(path) / CONFIG_FILE).is_file()
