"""``venomkit zoo build`` / ``venomkit zoo list``: train the zoo and describe it in a manifest.

Each model is built by ``venomkit.zoo.<family>.build(out_dir, dataset, *, fast, seed) -> dict``
(families: clip, cnn, sd, vlm, lm; imported lazily, so a missing family only fails when it is
asked for). The builder writes the model's native folder and returns its quality figures.
A builder may list, under the reserved key ``"float16"``, glob patterns (relative to its
folder) of safetensors files that :func:`build_zoo` converts to float16 afterwards; builders
that measure their figures on float16 weights write float16 themselves.

Every model is built in ``NAME.partial/`` and swapped in only when its builder returned, so an
interrupted build never leaves a half-written model. ``manifest.json`` in the zoo root is
updated model by model: files (bytes, sha256), the command that rebuilds it, seed, data,
thread count, quality figures and build seconds.

Data: ``--data toyshop`` (default) gives each builder the default shop
(``venomkit.data.toyshop.make()``) and writes the shipped names (``toyshop-clip``, ...).
``--data PATH`` (any spec of ``venomkit.data.loaders.load_dataset``: an atomic folder, the
ML-100K posters folder) writes ``<prefix>-<family>`` where the prefix is the dataset's name
made filename-safe (``ml100k-posters-clip`` for ML-100K posters) unless ``--prefix`` is given.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Sequence

from venomkit.zoo import ZOO_ENV, ZOO_MODELS, available, zoo_root

LOGGER = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FAMILIES = tuple(dict.fromkeys(ZOO_MODELS.values()))


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"cannot derive a model name from dataset name {name!r}; pass prefix=")
    return slug


def resolve_names(names: Sequence[str] | None) -> list[str]:
    """Families to build, in zoo order, from ``toyshop-clip``-style names or family names."""
    if not names:
        return list(FAMILIES)
    families = []
    for name in names:
        family = ZOO_MODELS.get(name, name if name in FAMILIES else None)
        if family is None:
            raise ValueError(f"unknown zoo model {name!r}; choose from {', '.join(ZOO_MODELS)} (or families {', '.join(FAMILIES)})")
        if family not in families:
            families.append(family)
    return [f for f in FAMILIES if f in families]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_files(folder: Path) -> list[dict]:
    """Every file under ``folder`` with its size in bytes and sha256, sorted by path."""
    return [
        {"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def convert_to_float16(folder: Path, patterns: Sequence[str]) -> list[str]:
    """Rewrite matching ``.safetensors`` files with float32/float64 tensors as float16."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    converted = []
    for path in sorted(folder.rglob("*.safetensors")):
        rel = str(path.relative_to(folder))
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in patterns):
            continue
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        tensors = {k: v.half() if v.dtype in (torch.float32, torch.float64) else v for k, v in tensors.items()}
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
        converted.append(rel)
    return converted


def read_manifest(root: Path | None = None) -> dict:
    path = Path(root or zoo_root()) / MANIFEST
    if not path.is_file():
        return {"models": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None


def update_manifest(root: Path, name: str, entry: dict | None) -> dict:
    """Set (or, with ``None``, remove) one model's entry in ``root/manifest.json``; returns it.

    Re-reads the file under an exclusive lock right before writing, so concurrent builds of
    different models (one process per model) do not drop each other's entries; the write is
    atomic (temporary file + rename).
    """
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / (MANIFEST + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            manifest = read_manifest(root)
            manifest.setdefault("models", {})
            if entry is None:
                manifest["models"].pop(name, None)
            else:
                manifest["models"][name] = entry
            manifest["models"] = dict(sorted(manifest["models"].items()))
            manifest["total_bytes"] = sum(m.get("bytes", 0) for m in manifest["models"].values())
            tmp = root / (MANIFEST + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, root / MANIFEST)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return manifest


def _load_data(data: str):
    if data == "toyshop":
        from venomkit.data import toyshop

        return toyshop.make()
    from venomkit.data.loaders import load_dataset

    return load_dataset(data)


def _command(family: str, data: str, fast: bool, seed: int, prefix: str | None, threads: int | None) -> str:
    parts = ["venomkit zoo build", f"--only {family if data != 'toyshop' else 'toyshop-' + family}"]
    if data != "toyshop":
        parts.append(f"--data {data}")
        if prefix:
            parts.append(f"--prefix {prefix}")
    if fast:
        parts.append("--fast")
    parts.append(f"--seed {seed}")
    if threads:
        parts.append(f"--threads {threads}")
    return " ".join(parts)


def build_zoo(
    names: Sequence[str] | None = None,
    data: str = "toyshop",
    fast: bool = False,
    seed: int = 0,
    root: str | Path | None = None,
    prefix: str | None = None,
    threads: int | None = None,
) -> dict:
    """Build the requested zoo models into ``root`` (default :func:`zoo_root`); returns the manifest.

    ``names``: ``toyshop-clip``-style names or families (``clip``); ``None`` builds all.
    ``threads`` sets ``torch.set_num_threads`` (results are deterministic given seed and thread count).
    """
    import torch

    families = resolve_names(names)
    root = Path(root) if root is not None else zoo_root()
    root.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(int(threads))
    dataset = _load_data(data)
    model_prefix = "toyshop" if data == "toyshop" else _slug(prefix or dataset.name)
    manifest = read_manifest(root)
    # Builders that use another zoo model (toyshop-sd's perceptual CNN, its CLIP figure) must
    # find it in the zoo being built, not in the default one.
    previous_root = os.environ.get(ZOO_ENV)
    os.environ[ZOO_ENV] = str(root)
    try:
        manifest = _build_families(families, root, dataset, data, model_prefix, manifest, fast, seed, prefix, threads)
    finally:
        if previous_root is None:
            os.environ.pop(ZOO_ENV, None)
        else:
            os.environ[ZOO_ENV] = previous_root
    return manifest


def _build_families(families, root: Path, dataset, data: str, model_prefix: str, manifest: dict, fast: bool, seed: int, prefix, threads) -> dict:
    import torch

    import venomkit

    for family in families:
        module = importlib.import_module(f"venomkit.zoo.{family}")
        name = f"{model_prefix}-{family}"
        final, partial = root / name, root / f"{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        started = time.time()
        LOGGER.info("zoo: building %s (%s, seed %s, data %s)", name, "fast" if fast else "full", seed, data)
        figures = dict(module.build(partial, dataset, fast=fast, seed=seed) or {})
        patterns = figures.pop("float16", None)
        converted = convert_to_float16(partial, patterns) if patterns else []
        seconds = time.time() - started
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        files = describe_files(final)
        entry = {
            "family": family,
            "folder": name,
            "files": files,
            "bytes": sum(f["bytes"] for f in files),
            "build_command": _command(family, data, fast, seed, prefix, threads),
            "seed": seed,
            "data": data,
            "fast": fast,
            "threads": torch.get_num_threads(),
            "build_seconds": round(seconds, 1),
            "float16_converted": converted,
            "quality": figures,
            "versions": {"venomkit": venomkit.__version__, "torch": torch.__version__},
        }
        manifest = update_manifest(root, name, entry)
        LOGGER.info("zoo: %s: %.2f MB in %.0f s", name, manifest["models"][name]["bytes"] / 1e6, seconds)
    return manifest


# --------------------------------------------------------------------------------------
# CLI: `venomkit zoo build ...`, `venomkit zoo list`.
# --------------------------------------------------------------------------------------


def add_zoo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Sub-commands of ``venomkit zoo``: ``build`` and ``list``."""
    sub = parser.add_subparsers(dest="zoo_command", metavar="{build,list}")
    sub.required = True
    b = sub.add_parser("build", help="train zoo models and write them under the zoo root with a manifest")
    b.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help=f"models to build ({', '.join(ZOO_MODELS)}; or families {', '.join(FAMILIES)}); default: all")
    b.add_argument("--data", default="toyshop",
                   help="'toyshop' (default: the shipped models) or a dataset folder/spec; other data writes PREFIX-FAMILY")
    b.add_argument("--prefix", default=None, help="name prefix for models trained on --data PATH (default: the dataset's name)")
    b.add_argument("--fast", action="store_true", help="tiny schedules for tests (figures are lower)")
    b.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    b.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; results depend on it)")
    b.add_argument("--root", type=Path, default=None, help="zoo folder to write (default: $VENOMKIT_ZOO or assets/zoo)")
    lst = sub.add_parser("list", help="list zoo models present and their quality figures")
    lst.add_argument("--root", type=Path, default=None, help="zoo folder (default: $VENOMKIT_ZOO or assets/zoo)")
    return parser


def _summary(quality: dict, limit: int = 8) -> str:
    """The first numeric figures of a quality dict (nested dicts flattened with dots)."""
    flat: list[str] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if key not in ("config", "model_cfg") and "seconds" not in key:
                    walk(f"{prefix}{key}.", sub)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat.append(f"{prefix[:-1]}={value}")

    walk("", quality)
    return ", ".join(flat[:limit])


def cli_zoo(args: argparse.Namespace) -> int:
    """Run ``venomkit zoo build`` or ``venomkit zoo list``; returns the exit code."""
    if args.zoo_command == "build":
        manifest = build_zoo(args.only, data=args.data, fast=args.fast, seed=args.seed, root=args.root,
                             prefix=args.prefix, threads=args.threads)
        print(json.dumps({k: v["quality"] for k, v in manifest["models"].items()}, indent=2))
        return 0
    root = Path(args.root) if args.root else zoo_root()
    manifest = read_manifest(root)
    present = available(root)
    names = list(dict.fromkeys(list(ZOO_MODELS) + present))
    print(f"zoo root: {root}")
    for name in names:
        entry = manifest.get("models", {}).get(name)
        if name in present:
            size = f"{entry['bytes'] / 1e6:.2f} MB" if entry else "?"
            print(f"  {name:<24} present  {size:>9}  {_summary(entry.get('quality', {})) if entry else 'not in manifest'}")
        else:
            hint = f"venomkit zoo build --only {name}" if name in ZOO_MODELS else ""
            print(f"  {name:<24} missing  {'':>9}  {hint}")
    if "total_bytes" in manifest:
        print(f"total: {manifest['total_bytes'] / 1e6:.2f} MB")
    return 0
