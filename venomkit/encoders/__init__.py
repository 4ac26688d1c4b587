"""Image and text encoders over raw content (pixels, strings), loaded by name.

``load_image_encoder(spec)`` / ``load_text_encoder(spec)`` accept ``zoo:NAME``, local folders,
open_clip ``ARCH/TAG`` ids and ``resnet18``/``resnet50`` (see :mod:`venomkit.encoders.loading`);
``extract_image_features`` / ``extract_text_features`` encode a whole catalog, cached.
"""

from venomkit.encoders.base import ImageEncoder, TextEncoder
from venomkit.encoders.features import extract_features, extract_image_features, extract_text_features
from venomkit.encoders.loading import load_encoders, load_image_encoder, load_text_encoder

__all__ = [
    "ImageEncoder",
    "TextEncoder",
    "extract_features",
    "extract_image_features",
    "extract_text_features",
    "load_encoders",
    "load_image_encoder",
    "load_text_encoder",
]
