"""Fine-tuned MLLM ranker checkpoints: a folder loadable by peft / transformers, plus ``ranker.json``.

A LoRA fine-tune (TALLRec's recipe, :mod:`venomkit.victims.mllm.finetune`) saves only the
adapters; the base model is reloaded from its spec (``zoo:toyshop-vlm``, a folder, a hub id)::

    ranker.json                 {"format": "venomkit-mllm-ranker", "format_version": 1, "mode": "lora",
                                 "base": "zoo:toyshop-vlm", "max_history": 8, "finetune": {...},
                                 "metrics": {...}, "venomkit_version": "...",
                                 "library_versions": {"torch": "...", "transformers": "...", "peft": "..."}}
    adapter_config.json         peft ``save_pretrained`` (PeftModel.from_pretrained reads the folder)
    adapter_model.safetensors

A full fine-tune saves the whole model and its processor with ``save_pretrained`` (so the
folder is itself a transformers folder: ``MLLMRanker.load(folder)`` works) next to the same
``ranker.json`` (``"mode": "full"``, ``"base"`` naming what it was fine-tuned from).

Weights are safetensors; nothing is un-pickled. Files are first written to a staging folder
and moved in; ``ranker.json`` is written last through ``venomkit.atomic`` and removed first
when a folder is overwritten, so a folder holding ``ranker.json`` is always complete. A folder
that cannot be read raises :class:`RankerCheckpointError`: one line naming the file and what
was expected.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import venomkit
from venomkit.atomic import TMP_PREFIX, write_json
from venomkit.models.resolve import library_progress_bars_off
from venomkit.victims.mllm.finetune import MODES, has_adapters, peft_wrapping
from venomkit.victims.mllm.ranker import MLLMRanker

INFO_FILE = "ranker.json"
FORMAT = "venomkit-mllm-ranker"
FORMAT_VERSION = 1
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
FULL_FILES = ("config.json", "model.safetensors")


class RankerCheckpointError(ValueError):
    """A ranker checkpoint folder that cannot be read (the message names the file and the expected form)."""


@dataclass
class RankerCheckpoint:
    """A loaded checkpoint: the ``ranker`` (eval mode), its ``adapter`` (``peft.PeftModel`` or None) and ``info`` (ranker.json)."""

    ranker: MLLMRanker
    adapter: Any
    info: dict[str, Any]


def is_ranker_checkpoint(folder: str | Path) -> bool:
    """True when ``folder`` holds a ``ranker.json`` (a folder :func:`save_ranker` wrote)."""
    return (Path(folder) / INFO_FILE).is_file()


def save_ranker(
    folder: str | Path,
    ranker: MLLMRanker,
    *,
    adapter: Any = None,
    base: str | None = None,
    finetune: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``ranker`` to ``folder`` (see the module docstring); returns the folder.

    Args:
        ranker: the fine-tuned ranker.
        adapter: the ``peft.PeftModel`` :func:`~venomkit.victims.mllm.finetune.finetune` returned
            (LoRA): only the adapters are saved. None saves the whole model (full fine-tune).
        base: the spec the base model is reloaded from (default ``ranker.spec``).
        finetune: the fine-tune summary/config to record; metrics: figures to record.
    """
    folder = Path(folder)
    base = str(base or ranker.spec)
    if not base:
        raise ValueError("save_ranker: the ranker has no spec; pass base= (the model it was loaded from)")
    if adapter is None and has_adapters(ranker.model):
        raise ValueError("save_ranker: the ranker's model carries LoRA adapters; pass adapter= (the PeftModel finetune returned)")
    if adapter is not None and adapter.get_base_model() is not ranker.model:
        raise ValueError("save_ranker: adapter= wraps another model than ranker.model")
    mode = "lora" if adapter is not None else "full"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INFO_FILE).unlink(missing_ok=True)  # the folder is incomplete until the new one is written
    stage = folder / f"{TMP_PREFIX}{os.getpid()}-stage"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with library_progress_bars_off():
            if adapter is not None:
                adapter.save_pretrained(stage)
                keep = ADAPTER_FILES
            else:
                ranker.model.save_pretrained(stage)
                ranker.processor.save_pretrained(stage)
                keep = None
        for name in FULL_FILES + ADAPTER_FILES:  # what a checkpoint of the other mode left here
            (folder / name).unlink(missing_ok=True)
        for path in sorted(stage.iterdir()):
            if path.is_file() and (keep is None or path.name in keep):
                os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "venomkit_version": venomkit.__version__,
        "library_versions": {name: _version(name) for name in ("torch", "transformers", "peft")},
        "mode": mode,
        "base": base,
        "max_history": int(ranker.max_history),
        "finetune": finetune or {},
        "metrics": metrics or {},
    }
    write_json(folder / INFO_FILE, info)
    return folder


def _version(package: str) -> str | None:
    """``package.__version__`` (torch's with its build tag); recorded because a fine-tune's figures move with it."""
    import importlib

    try:
        return str(importlib.import_module(package).__version__)
    except ImportError:
        return None


def read_info(folder: str | Path) -> dict[str, Any]:
    """``ranker.json`` of ``folder``, checked (RankerCheckpointError naming the file and the expected form)."""
    folder = Path(folder)
    path = folder / INFO_FILE
    if not folder.is_dir():
        raise RankerCheckpointError(f"{folder}: not a folder; expected a ranker checkpoint folder with {INFO_FILE}")
    if not path.is_file():
        raise RankerCheckpointError(
            f"{path}: missing; expected a ranker checkpoint written by venomkit (venomkit train --victim mllm, save_ranker)"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RankerCheckpointError(f"{path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise RankerCheckpointError(f"{path}: expected a JSON object with \"format\": \"{FORMAT}\"")
    if info.get("format_version") != FORMAT_VERSION:
        raise RankerCheckpointError(
            f"{path}: format_version {info.get('format_version')!r} is not supported; expected {FORMAT_VERSION}"
        )
    if info.get("mode") not in MODES:
        raise RankerCheckpointError(f"{path}: \"mode\" must be one of {list(MODES)}, got {info.get('mode')!r}")
    if not isinstance(info.get("base"), str) or not info["base"]:
        raise RankerCheckpointError(f"{path}: \"base\" must name the base model (e.g. \"zoo:toyshop-vlm\")")
    history = info.get("max_history")
    if not isinstance(history, int) or isinstance(history, bool) or history < 0:
        raise RankerCheckpointError(f"{path}: \"max_history\" must be an integer >= 0, got {history!r}")
    needed = ADAPTER_FILES if info["mode"] == "lora" else FULL_FILES
    for name in needed:
        if not (folder / name).is_file():
            what = "peft save_pretrained" if info["mode"] == "lora" else "transformers save_pretrained"
            raise RankerCheckpointError(f"{folder / name}: missing; a {info['mode']} checkpoint needs it ({what})")
    return info


def load_ranker(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "eager",
) -> RankerCheckpoint:
    """Rebuild the fine-tuned ranker of ``folder``: base via :meth:`MLLMRanker.load`, then the adapters.

    LoRA: ``MLLMRanker.load(info["base"])`` then ``peft.PeftModel.from_pretrained`` on its model
    (``ranker.model`` then carries the adapters). Full: ``MLLMRanker.load(folder)``.
    """
    from peft import PeftModel
    from safetensors import SafetensorError

    folder = Path(folder)
    info = read_info(folder)
    kwargs = {"device": device, "dtype": dtype, "attn_implementation": attn_implementation, "max_history": info["max_history"]}
    if info["mode"] == "full":
        ranker = MLLMRanker.load(folder, **kwargs)
        return RankerCheckpoint(ranker, None, info)
    ranker = MLLMRanker.load(info["base"], **kwargs)
    try:
        with peft_wrapping():
            adapter = PeftModel.from_pretrained(ranker.model, str(folder), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise RankerCheckpointError(
            f"{folder / ADAPTER_FILES[1]}: cannot be applied to the base model {info['base']!r} ({reason})"
        ) from None
    adapter.to(device)
    ranker.model.eval()
    return RankerCheckpoint(ranker, adapter, info)


__all__ = [
    "FORMAT", "FORMAT_VERSION", "INFO_FILE", "RankerCheckpoint", "RankerCheckpointError", "is_ranker_checkpoint",
    "load_ranker", "read_info", "save_ranker",
]  # fmt: skip
