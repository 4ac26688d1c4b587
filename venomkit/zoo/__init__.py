"""The offline model zoo: tiny models trained here and shipped in ``assets/zoo/NAME/``.

No pretrained weights can be downloaded where venomkit is built, so ``venomkit zoo build``
trains small models on toyshop (or another catalog) and writes each in its family's NATIVE
format (open_clip ``local-dir:`` folder, torchvision state dict + config, diffusers /
transformers ``save_pretrained`` folders). ``zoo:NAME`` is only a name for such a folder:
every loader reads it with the same code that reads real weights from a local path.

The zoo root is ``<repo>/assets/zoo`` (located relative to the package), or the folder named
by the environment variable ``VENOMKIT_ZOO`` when it is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import venomkit

ZOO_PREFIX = "zoo:"
ZOO_ENV = "VENOMKIT_ZOO"

# The models `venomkit zoo build` knows how to train, with the module (venomkit.zoo.<family>)
# that builds each one.
ZOO_MODELS: dict[str, str] = {
    "toyshop-clip": "clip",
    "toyshop-cnn": "cnn",
    "toyshop-sd": "sd",
    "toyshop-vlm": "vlm",
    "toyshop-lm": "lm",
}


def zoo_root() -> Path:
    """The folder holding one sub-folder per zoo model (``$VENOMKIT_ZOO`` or ``<repo>/assets/zoo``)."""
    override = os.environ.get(ZOO_ENV)
    if override:
        return Path(override).expanduser()
    return Path(venomkit.__file__).resolve().parent.parent / "assets" / "zoo"


def is_zoo_spec(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(ZOO_PREFIX)


def available(root: str | Path | None = None) -> list[str]:
    """Names of the zoo models present under ``root`` (default :func:`zoo_root`): non-empty folders.

    Folders ending in ``.partial`` (a build in progress or interrupted) are not models.
    """
    root = Path(root) if root is not None else zoo_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.endswith(".partial") and any(p.iterdir()))


def resolve(name: str) -> Path:
    """``"zoo:NAME"`` or ``"NAME"`` -> the model's folder ``<zoo root>/NAME``.

    Raises FileNotFoundError (one sentence: the models present and the command that builds
    the missing one) when the folder does not exist or is empty.
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


__all__ = ["ZOO_MODELS", "ZOO_ENV", "ZOO_PREFIX", "available", "is_zoo_spec", "resolve", "zoo_root"]
