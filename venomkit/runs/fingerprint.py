"""What identifies a run's results: a fingerprint of everything that changes a number.

A run folder is tied to ONE fingerprint (in ``run.json``): the resolved settings (every attack,
defense and victim config, targets, batch size, seed, metrics, shop pipeline, device), a
content hash of the data (item ids, texts, image bytes, the split), content hashes of every
model the settings name (victim checkpoints; ``zoo:`` models and model folders), the venomkit
version and a hash of its source code. Resuming into a folder whose fingerprint differs is
refused with the differing entries named, so one run's numbers are never reported under
another run's settings. The number of processes is NOT part of it: sharded and single-process
runs give the same rows.

The same digests key the cache of trained victims (``venomkit.runs.victims``).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

import venomkit

# Entries of the resolved settings that name or describe things without changing a result.
_NOT_RESULTS = ("name", "description", "recipe", "outputs")


def sha256_json(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=None)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoised per process by path, size and modification time)."""
    stat = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def folder_digest(folder: str | Path) -> str:
    """SHA-256 over every file below ``folder`` (relative names and contents, sorted)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()


PRESENTATION_ONLY = ("__main__.py", "cli.py", "demo.py", "progress.py", "runs/cli.py", "runs/defend.py", "runs/report.py", "runs/tables.py", "zoo/build.py")
"""Sources that format, report or dispatch but compute no result: editing them changes no code digest."""

TRAINING_CODE = ("data", "encoders", "victims", "defenses", "models")
"""The sub-packages a trained or hardened victim depends on (the victim cache's code digest)."""


@lru_cache(maxsize=None)
def code_digest(packages: tuple[str, ...] | None = None) -> str:
    """SHA-256 of venomkit's Python sources that can change a number.

    ``packages`` restricts it to those sub-packages (the victim cache uses :data:`TRAINING_CODE`);
    files in :data:`PRESENTATION_ONLY` never count.
    """
    root = Path(venomkit.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in PRESENTATION_ONLY or (packages is not None and rel.split("/")[0] not in packages):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _update_tensor(h: "hashlib._Hash", tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    h.update(t.numpy().tobytes())


def dataset_digest(dataset: Any) -> str:
    """SHA-256 of a dataset's content: item ids, texts, images (file bytes or tensors), split."""
    catalog = dataset.catalog
    h = hashlib.sha256()
    h.update(f"{dataset.name}|{catalog.n_items}|".encode())
    for item_id, text in zip(catalog.item_ids, catalog.texts):
        h.update(item_id.encode() + b"\0" + text.encode("utf-8") + b"\0")
    for source in catalog.images:
        if source is None:
            h.update(b"none\0")
        elif isinstance(source, torch.Tensor):
            _update_tensor(h, source)
        else:
            h.update(file_digest(source).encode())
    for part in ("train", "valid", "test"):
        matrix = getattr(dataset.split, part).matrix.tocsr()
        for array in (matrix.indptr, matrix.indices):
            h.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return h.hexdigest()


def _model_specs(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _model_specs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _model_specs(v)
    elif isinstance(value, str) and value.startswith("zoo:"):
        yield value


def model_digests(settings: Mapping[str, Any]) -> dict[str, str]:
    """Content hashes of every ``zoo:NAME`` model the settings name (``{spec: sha256}``)."""
    from venomkit.zoo import resolve

    out = {}
    for spec in sorted(set(_model_specs(settings))):
        try:
            out[spec] = folder_digest(resolve(spec))
        except (FileNotFoundError, ValueError):
            out[spec] = "missing"
    return out


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a model object's tensors (and of its attached encoders' weights): an
    in-memory victim or encoder handed to the engine in Python."""
    h = hashlib.sha256()
    h.update(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        _update_tensor(h, tensor)
    for attr in ("image_encoder", "text_encoder"):
        encoder = getattr(module, attr, None)
        if isinstance(encoder, torch.nn.Module):
            h.update(attr.encode() + state_digest(encoder).encode())
    return h.hexdigest()


def checkpoint_digest(folder: str | Path) -> str:
    """SHA-256 of a victim checkpoint (``config.json`` + ``model.safetensors``)."""
    folder = Path(folder)
    parts = [file_digest(folder / name) for name in ("config.json", "model.safetensors") if (folder / name).is_file()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def result_settings(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved settings without what names or describes (paths of recipes, outputs).

    A checkpoint victim is identified by its content, not by where its folder is.
    """
    out = {k: v for k, v in resolved.items() if k not in _NOT_RESULTS}
    out["attacks"] = [{k: v for k, v in a.items() if k not in ("recipe", "description")} for a in resolved.get("attacks", [])]
    out["defenses"] = [{k: v for k, v in d.items() if k != "recipe"} for d in resolved.get("defenses", [])]
    victims = []
    for v in resolved.get("victims", []):
        v = dict(v)
        if "checkpoint" in v:
            v["checkpoint"] = "sha256:" + checkpoint_digest(v["checkpoint"])
        victims.append(v)
    out["victims"] = victims
    return out


def run_fingerprint(resolved: Mapping[str, Any], data_digest: str) -> dict[str, Any]:
    """The fingerprint stored in ``run.json`` (see the module docstring); ``data_digest`` from :func:`dataset_digest`."""
    settings = result_settings(resolved)
    fingerprint = {
        "settings": settings,
        "data": data_digest,
        "models": model_digests(settings),
        "venomkit_version": venomkit.__version__,
        "code": code_digest(),
    }
    return json_form(fingerprint)


def json_form(value: Any) -> Any:
    """``value`` as it reads back from run.json (tuples become lists, inf a string), so a
    fingerprint computed now compares equal to the stored one."""
    from venomkit.atomic import jsonable

    return json.loads(json.dumps(jsonable(value)))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, v in enumerate(value):
            label = v.get("name", i) if isinstance(v, Mapping) else i
            out.update(_flatten(v, f"{prefix}[{label}]"))
        return out
    return {prefix: value}


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> list[str]:
    """Human-readable entries where two fingerprints differ (``key: old -> new``), at most ``limit``."""

    def short(v: Any) -> str:
        text = json.dumps(v, default=str) if not isinstance(v, str) else v
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text[:12]
        if text.startswith("sha256:"):
            return text[:19]
        return text if len(text) <= 60 else text[:57] + "..."

    a, b = _flatten(old), _flatten(new)
    diffs = [f"{k}: {short(a.get(k, '(absent)'))} -> {short(b.get(k, '(absent)'))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f"... {len(diffs) - limit} more"]
    return diffs
