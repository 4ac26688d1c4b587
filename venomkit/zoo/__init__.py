"""The offline model zoo: tiny models trained here and shipped in ``assets/zoo/NAME/``.

No pretrained weights can be downloaded where venomkit is built, so ``venomkit zoo build``
trains small models on toyshop (or another catalog) and writes each in its family's NATIVE
format (open_clip ``local-dir:`` folder, torchvision state dict + config, diffusers /
transformers ``save_pretrained`` folders). ``zoo:NAME`` is only a name for such a folder:
every loader reads it with the same code that reads real weights from a local path.

The zoo root is ``<repo>/assets/zoo`` (located relative to the package), or the folder named
by the environment variable ``VENOMKIT_ZOO`` when it is set. ``resolve("zoo:NAME")`` gives a
model's folder; every loader reaches it through ``venomkit.models.resolve.resolve_model``.
"""

from __future__ import annotations

# The zoo's location and name resolution live in venomkit.models.resolve, below the packages
# that load models (the zoo's builders import them); they are this package's public names too.
from venomkit.models.resolve import ZOO_ENV, ZOO_MODELS, ZOO_PREFIX, available, is_zoo_spec, zoo_root
from venomkit.models.resolve import resolve_zoo as resolve

__all__ = ["ZOO_MODELS", "ZOO_ENV", "ZOO_PREFIX", "available", "is_zoo_spec", "resolve", "zoo_root"]
