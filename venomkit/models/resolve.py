"""Where a named model's files are: the ONE resolver every model loader calls.

A model spec names weights in one of these forms, whatever the model family:

==============================  ==========================================================
``zoo:NAME``                    a folder of venomkit's zoo, ``<zoo root>/NAME`` (:func:`zoo_root`)
``local-dir:PATH``              a local folder (open_clip's spelling, accepted by every loader)
``PATH``                        an existing local folder
``hf-hub:OWNER/NAME``           a hub id, read from the local Hugging Face cache only
``OWNER/NAME`` or ``NAME``      the same without the prefix, where the family has no other
                                reading of it (``bare_hub_ids``; open_clip reads ``ARCH/TAG``)
==============================  ==========================================================

:func:`resolve_model` turns any of them into a local folder: the zoo's folder, the folder
itself, or the hub id's snapshot folder in the local Hugging Face cache. Each loader then reads
that folder with its family's own code (``from_pretrained``, open_clip's ``local-dir:``, a
torchvision ``config.json``), so the tiny zoo models and real weights go through the same code.
Nothing is ever downloaded: a hub id that is not cached raises :class:`WeightsNotAvailableError`,
one sentence naming the id and what to pass instead (:func:`weights_not_cached_error`).

Family-specific forms stay in their loaders: open_clip's built-in ``ARCH/TAG`` pretrained tags
(``venomkit.encoders.openclip``, which finds a tag's file with :func:`cached_hub_file`) and
torchvision's ``resnet18[:WEIGHTS]`` (``venomkit.encoders.torchvision_cnn``).

Why this module and not ``venomkit.zoo``: the zoo's package holds the builders, which import
the encoders, generators and victims; those in turn load models by name. Keeping the resolver
(and the zoo's location, which ``venomkit.zoo`` re-exports) in ``venomkit.models``, which
imports no other venomkit package, lets every loader call it without an import running back up.
"""

from __future__ import annotations

import contextlib
import importlib

import os
import re
from pathlib import Path
from typing import Any, Iterator

import venomkit

ZOO_PREFIX = "zoo:"
ZOO_ENV = "VENOMKIT_ZOO"
LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"

ZOO_MODELS: dict[str, str] = {
    "toyshop-clip": "clip",
    "toyshop-cnn": "cnn",
    "toyshop-sd": "sd",
    "toyshop-vlm": "vlm",
    "toyshop-lm": "lm",
}
"""The models ``venomkit zoo build`` trains, with the module (``venomkit.zoo.<family>``) that
builds each one."""

DEFAULT_HINT = "copy the model folder here and pass its path (or zoo:NAME for a zoo model)"
"""What a not-cached error tells the user to do instead, unless the loader gives its own hint."""

# A Hugging Face repo id: NAME or OWNER/NAME (letters, digits, '-', '_', '.'), no path syntax.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class WeightsNotAvailableError(FileNotFoundError):
    """A hub id or pretrained tag whose weights are not in the local cache (venomkit never downloads)."""


# ------------------------------------------------------------------------------------- the zoo
def zoo_root() -> Path:
    """The folder holding one sub-folder per zoo model (``$VENOMKIT_ZOO`` or ``<repo>/assets/zoo``)."""
    override = os.environ.get(ZOO_ENV)
    if override:
        return Path(override).expanduser()
    return Path(venomkit.__file__).resolve().parent.parent / "assets" / "zoo"


def is_zoo_spec(spec: Any) -> bool:
    """True when ``spec`` is a string starting with ``zoo:``."""
    return isinstance(spec, str) and spec.startswith(ZOO_PREFIX)


def available(root: str | Path | None = None) -> list[str]:
    """Names of the zoo models present under ``root`` (default :func:`zoo_root`): non-empty folders.

    Folders ending in ``.partial`` (a build in progress or interrupted) are not models.
    """
    root = Path(root) if root is not None else zoo_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.endswith(".partial") and any(p.iterdir()))


def resolve_zoo(name: str) -> Path:
    """``"zoo:NAME"`` or ``"NAME"`` -> the model's folder ``<zoo root>/NAME``.

    Raises ValueError for a malformed name and FileNotFoundError (one sentence: the models
    present and the command that builds the missing one) when the folder is missing or empty.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"zoo model name must be a non-empty string, got {name!r}")
    bare = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
    if not bare or "/" in bare or "\\" in bare or bare in (".", ".."):
        raise ValueError(f"invalid zoo model name {name!r}; expected 'zoo:NAME' such as 'zoo:toyshop-clip'")
    folder = zoo_root() / bare
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    present = available()
    if bare in ZOO_MODELS:
        how = f"build it with `venomkit zoo build --only {bare}`"
    else:
        family = bare.rsplit("-", 1)[-1]
        how = (
            f"models trained on other data are built with `venomkit zoo build --only {family} --data PATH` "
            f"(the shipped ones are {', '.join(ZOO_MODELS)})"
        )
    raise FileNotFoundError(
        f"zoo model {bare!r} is not built in {zoo_root()} "
        f"(present: {', '.join(present) if present else 'none'}); {how}"
    )


# ------------------------------------------------------------------ the Hugging Face cache
def is_hub_id(text: str) -> bool:
    """True when ``text`` has the shape of a hub repo id (``NAME`` or ``OWNER/NAME``, no path syntax)."""
    return isinstance(text, str) and _HUB_ID.fullmatch(text) is not None


def cached_hub_file(repo_id: str, filename: str) -> Path | None:
    """The local file ``filename`` of hub repo ``repo_id`` in the Hugging Face cache, or None.

    Never touches the network.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    try:
        found = try_to_load_from_cache(repo_id=repo_id, filename=filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def cached_hub_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of hub repo ``repo_id`` (its default revision) in the local cache, or None.

    Never touches the network (``snapshot_download(..., local_files_only=True)``).
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a valid repo id
        return None
    return Path(folder) if os.path.isdir(folder) else None


def weights_not_cached_error(spec: str, what: str = "model", hint: str = DEFAULT_HINT) -> WeightsNotAvailableError:
    """The one-sentence error for weights named by ``spec`` that are not on this machine.

    ``what`` names the kind of model ("model", "open_clip model", ...); ``hint`` says what to
    pass instead.
    """
    return WeightsNotAvailableError(
        f"{what} {spec!r} is not a local folder and is not in the Hugging Face cache, and venomkit never "
        f"downloads weights (it reads hub ids from the local Hugging Face cache only): {hint}"
    )


# ----------------------------------------------------------------------------- the resolver
def is_location_spec(spec: Any) -> bool:
    """True when ``spec`` names a location in a family-independent form.

    That is ``zoo:NAME``, ``local-dir:PATH``, ``hf-hub:ID`` or an existing folder; a bare hub
    id is not included, because a family may read ``X/Y`` otherwise (open_clip's ``ARCH/TAG``).
    """
    if not isinstance(spec, (str, Path)):
        return False
    text = str(spec).strip()
    if text.startswith((ZOO_PREFIX, LOCAL_DIR_PREFIX, HF_HUB_PREFIX)):
        return True
    return bool(text) and Path(text).expanduser().is_dir()


def resolve_model(
    spec: str | Path, *, what: str = "model", bare_hub_ids: bool = True, hint: str = DEFAULT_HINT
) -> Path:
    """The local folder that holds the model named by ``spec`` (see the module docstring).

    Args:
        spec: ``zoo:NAME``, ``local-dir:PATH``, a folder path, ``hf-hub:OWNER/NAME`` or (with
            ``bare_hub_ids``) ``OWNER/NAME`` / ``NAME``.
        what: the kind of model, for messages ("Stable Diffusion model", "open_clip model").
        bare_hub_ids: read an unprefixed ``OWNER/NAME`` or ``NAME`` as a hub id.
        hint: what the not-cached error tells the user to pass instead.

    Returns:
        an existing folder: the zoo's, the given one, or the hub snapshot in the local cache.

    Raises:
        ValueError: an empty spec, a malformed zoo name or hub id, or a file instead of a folder.
        FileNotFoundError: a missing folder or zoo model; :class:`WeightsNotAvailableError` (a
            subclass) for a hub id that is not in the local cache. Each is one sentence.
    """
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ValueError(f"{what} spec must be a non-empty string (zoo:NAME, a folder or a hub id), got {spec!r}")
    text = str(spec).strip()
    if text.startswith(ZOO_PREFIX):
        return resolve_zoo(text)
    if text.startswith(LOCAL_DIR_PREFIX):
        folder = Path(text[len(LOCAL_DIR_PREFIX):]).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder {str(folder)!r} (from {text!r}) does not exist")
        return folder
    if text.startswith(HF_HUB_PREFIX):
        return _hub_snapshot(text[len(HF_HUB_PREFIX):], text, what, hint)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{what} spec {text!r} is a file; expected a model folder, zoo:NAME or a hub id (OWNER/NAME)")
    if bare_hub_ids and is_hub_id(text):
        return _hub_snapshot(text, text, what, hint)
    raise FileNotFoundError(
        f"{what} {text!r} does not exist: it is neither a zoo name (zoo:NAME), an existing folder, "
        "nor a hub id (OWNER/NAME)"
    )


def _hub_snapshot(repo_id: str, spec: str, what: str, hint: str) -> Path:
    if not is_hub_id(repo_id):
        raise ValueError(f"{what} spec {spec!r}: {repo_id!r} is not a hub id (OWNER/NAME)")
    folder = cached_hub_snapshot(repo_id)
    if folder is None:
        raise weights_not_cached_error(spec, what, hint)
    return folder


@contextlib.contextmanager
def library_progress_bars_off() -> Iterator[None]:
    """transformers' / diffusers' own "Loading weights" bars off while loading (venomkit reports progress itself)."""
    switched = []
    for name in ("transformers", "diffusers"):
        try:
            logging_utils = importlib.import_module(f"{name}.utils.logging")
        except ImportError:
            continue
        if logging_utils.is_progress_bar_enabled():
            logging_utils.disable_progress_bar()
            switched.append(logging_utils)
    try:
        yield
    finally:
        for logging_utils in switched:
            logging_utils.enable_progress_bar()


def load_pretrained(loader: Any, spec: str | Path, *, what: str = "model", **kwargs: Any) -> Any:
    """``loader.from_pretrained`` on the folder :func:`resolve_model` finds for ``spec``.

    For the transformers and diffusers classes (``AutoModelForCausalLM``, ``AutoProcessor``,
    ...); ``kwargs`` go to ``from_pretrained``. A folder the loader cannot read raises one
    line naming the spec, the folder and the loader: FileNotFoundError for missing files,
    ValueError for files it does not understand.
    """
    folder = resolve_model(spec, what=what)
    try:
        with library_progress_bars_off():
            return loader.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        name = getattr(loader, "__name__", type(loader).__name__)
        error = FileNotFoundError if isinstance(exc, OSError) else ValueError
        raise error(f"{what} {str(spec)!r}: {name} cannot read {str(folder)!r} ({reason})") from None


__all__ = [
    "DEFAULT_HINT", "HF_HUB_PREFIX", "LOCAL_DIR_PREFIX", "WeightsNotAvailableError", "ZOO_ENV", "ZOO_MODELS", "ZOO_PREFIX",
    "available", "cached_hub_file", "cached_hub_snapshot", "is_hub_id", "is_location_spec", "is_zoo_spec",
    "library_progress_bars_off", "load_pretrained", "resolve_model", "resolve_zoo", "weights_not_cached_error", "zoo_root",
]
