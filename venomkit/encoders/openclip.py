"""open_clip image and text encoders, loaded by name with the same code for zoo and real weights.

Accepted specs (see :func:`load_open_clip`):

- ``zoo:NAME``            a zoo folder, read as ``local-dir:``;
- ``local-dir:PATH`` or a folder path holding ``open_clip_config.json`` and weights;
- ``hf-hub:ORG/REPO``     read from the local Hugging Face cache only (never downloaded);
- ``ARCH/TAG``            an open_clip built-in architecture with a pretrained tag
                          (``ViT-B-32/openai``), read from the local cache only;
- ``ARCH/PATH``           a built-in architecture with weights from a local file
                          (``ViT-B-32//data/vit_b_32.safetensors``);
- ``ARCH``                a built-in architecture with random weights (a warning says so).

``zoo:``, folders and ``hf-hub:`` ids are found by ``venomkit.models.resolve.resolve_model``,
the resolver every loader shares; the ``ARCH`` forms are open_clip's own. Nothing is ever
downloaded: a tag that is not cached fails at once with one sentence naming the id and the
ways to point at local weights. All paths end in
``open_clip.create_model(...)``, the library's own loader (``local-dir:`` for folders).

Features are open_clip's ``encode_image`` / ``encode_text`` outputs (not L2-normalised; the
CLIP papers compare them by cosine similarity). Radford et al. 2021, "Learning Transferable
Visual Models From Natural Language Supervision" (CLIP).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from venomkit.encoders.base import ImageEncoder, Images, TextEncoder, images_to
from venomkit.encoders.preprocess import PreprocessConfig, TorchPreprocess
from venomkit.models.freeze import freeze
from venomkit.models.resolve import (
    LOCAL_DIR_PREFIX,
    WeightsNotAvailableError,
    cached_hub_file,
    is_location_spec,
    resolve_model,
    weights_not_cached_error,
)

OPEN_CLIP_CONFIG = "open_clip_config.json"

SPEC_FORMS = (
    "'zoo:NAME' (e.g. zoo:toyshop-clip), 'local-dir:PATH' or a folder with open_clip_config.json, "
    "'hf-hub:ORG/REPO' (local cache only), 'ARCH/TAG' (e.g. ViT-B-32/openai, local cache only), "
    "'ARCH/PATH-TO-WEIGHTS', or a bare open_clip architecture name (random weights)"
)


@dataclass
class OpenClipBundle:
    """A loaded open_clip model with what the encoders need around it."""

    model: nn.Module
    tokenizer: Any
    preprocess: PreprocessConfig
    spec: str
    source: str  # what was handed to open_clip: 'local-dir:...' or 'ARCH' + pretrained


NOT_CACHED_HINT = (
    "point at local weights instead with 'local-dir:/path/to/folder' (open_clip_config.json + "
    "open_clip_model.safetensors), 'ARCH//path/to/weights.safetensors', or 'zoo:toyshop-clip'"
)
"""What to pass instead of open_clip weights that are not on this machine."""


def _not_cached(spec: str) -> WeightsNotAvailableError:
    return weights_not_cached_error(spec, what="open_clip model", hint=NOT_CACHED_HINT)


def _cached_pretrained(arch: str, tag: str, spec: str) -> tuple[str, dict]:
    """Local file of an open_clip pretrained tag plus the tag's preprocessing/quick_gelu settings."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ValueError(
            f"open_clip spec {spec!r}: {tag!r} is neither a known pretrained tag of {arch} "
            f"(known: {', '.join(tags) if tags else 'none'}) nor an existing weights file"
        )
    if "file" in cfg and os.path.isfile(cfg["file"]):
        return cfg["file"], cfg
    hub = cfg.get("hf_hub", "")
    if hub:
        # open_clip's convention: 'org/repo/file' or 'org/repo/' (default weights file name);
        # it prefers a .safetensors twin of a pickled file when the repo has one
        repo_id, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        candidates = [filename]
        if filename == "open_clip_pytorch_model.bin":
            candidates.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for name in candidates:
            found = cached_hub_file(repo_id, name)
            if found is not None:
                return str(found), cfg
    url = cfg.get("url", "")
    if url:
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return str(target), cfg
    raise _not_cached(spec)


def _local_dir(folder: Path, spec: str) -> str:
    """``local-dir:FOLDER`` after checking the folder holds a config and a weights file."""
    if not (folder / OPEN_CLIP_CONFIG).is_file():
        raise FileNotFoundError(f"open_clip folder {str(folder)!r} (from {spec!r}) has no {OPEN_CLIP_CONFIG}")
    if not any(any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.pth")):
        # open_clip would silently initialise at random; a named model without weights is an error
        raise FileNotFoundError(f"open_clip folder {str(folder)!r} (from {spec!r}) has no weights file (.safetensors, .bin or .pth)")
    return LOCAL_DIR_PREFIX + str(folder)


def parse_open_clip_spec(spec: str) -> tuple[str, str | None, dict]:
    """Map a venomkit spec to ``(model_name, pretrained_file_or_None, tag_cfg)`` for open_clip.

    ``model_name`` is ``'local-dir:FOLDER'`` for folder-like specs or a built-in architecture.
    Raises ValueError for an unknown form, WeightsNotAvailableError for uncached hub weights.
    """
    import open_clip

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"open_clip spec must be a non-empty string; accepted forms: {SPEC_FORMS}")
    spec = spec.strip()
    if is_location_spec(spec):  # zoo:NAME, local-dir:PATH, hf-hub:ID or a folder
        folder = resolve_model(spec, what="open_clip model", bare_hub_ids=False, hint=NOT_CACHED_HINT)
        return _local_dir(folder, spec), None, {}
    arch, _, pretrained = spec.partition("/")
    models = set(open_clip.list_models())
    if arch not in models:
        raise ValueError(f"unknown open_clip model spec {spec!r}; accepted forms: {SPEC_FORMS}")
    if not pretrained:
        return arch, None, {}
    if os.path.isfile(pretrained):
        return arch, pretrained, {}
    file, cfg = _cached_pretrained(arch, pretrained, spec)
    return arch, file, cfg


def load_open_clip(spec: str, device: str | torch.device = "cpu") -> OpenClipBundle:
    """Load an open_clip model, its tokenizer and its preprocessing config, offline.

    The model is returned in eval mode with frozen parameters (``requires_grad=False``).
    """
    import open_clip

    model_name, pretrained, tag_cfg = parse_open_clip_spec(spec)
    force_pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    if not model_name.startswith(LOCAL_DIR_PREFIX) and pretrained is None:
        warnings.warn(f"open_clip model {spec!r} has no weights given: it is randomly initialised", stacklevel=2)
    # open_clip logs a warning for a random init and info for everything else; keep it quiet
    # because the loaders above already say what matters.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        model = open_clip.create_model(
            model_name,
            pretrained=pretrained,
            device=device,
            force_quick_gelu=quick_gelu,
            force_preprocess_cfg=force_pp or None,
            # built-in configs with HF text towers must not fetch base weights
            pretrained_text=False,
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    except OSError as exc:  # HF tokenizer/text tower ids that would need the hub
        raise WeightsNotAvailableError(f"{_not_cached(spec)} ({exc})") from exc
    finally:
        logger.setLevel(level)
    freeze(model)
    pp = open_clip.get_model_preprocess_cfg(model)
    return OpenClipBundle(model, tokenizer, PreprocessConfig.from_open_clip(pp), spec, model_name)


def _param_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.float32


class OpenClipImageEncoder(ImageEncoder):
    """open_clip vision tower behind :class:`TorchPreprocess`: (N, 3, H, W) [0, 1] -> (N, embed_dim).

    Also takes a list of (3, H_i, W_i) photos at their own sizes. Equals
    ``model.encode_image(preprocess_val(pil_image))`` up to the PIL/torch resize difference
    documented in :mod:`venomkit.encoders.preprocess` (one grey level; feature cosine
    >= 0.99999 measured on a 1166 x 1750 photo for the 64 px zoo CLIP and a random ViT-B-32);
    gradients reach the native pixels.
    """

    def __init__(self, model: nn.Module, preprocess: PreprocessConfig, spec: str) -> None:
        super().__init__()
        self.visual = model.visual
        self.preprocess = TorchPreprocess(preprocess)
        self.spec = spec
        out = getattr(self.visual, "output_dim", None)
        if out is None:
            with torch.no_grad():
                out = self.visual(torch.zeros(1, 3, *preprocess.size, device=_device(self.visual))).shape[-1]
        self.output_dim = int(out)

    @classmethod
    def from_spec(cls, spec: str, device: str | torch.device = "cpu") -> "OpenClipImageEncoder":
        bundle = load_open_clip(spec, device)
        return cls(bundle.model, bundle.preprocess, spec)

    def forward(self, images: Images) -> torch.Tensor:
        x = self.preprocess(images_to(images, _device(self.visual)))
        return self.visual(x.to(_param_dtype(self.visual)))


def _device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


class OpenClipTextEncoder(TextEncoder):
    """open_clip text tower with the hooks token-level attacks need: texts -> (N, embed_dim).

    ``forward_embeddings`` reproduces ``model.encode_text`` from (N, L, width) token
    embeddings: add positional embeddings, run the causal transformer, ``ln_final``, pool at
    the end-of-text token (``argmax`` of the ids for CLIP's BPE, whose EOT id is the largest,
    or the tokenizer's EOS id), project with ``text_projection``. Supports open_clip's own text
    transformer (``CLIP`` and ``CustomTextCLIP`` without a CoCa CLS token); Hugging Face text
    towers are refused at construction.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, spec: str) -> None:
        super().__init__()
        text = getattr(model, "text", None)
        tower = text if text is not None else model
        if not hasattr(tower, "token_embedding"):
            raise ValueError(
                f"open_clip model {spec!r} has a Hugging Face text tower ({type(tower).__name__}); "
                "venomkit's text encoder supports open_clip's own text transformer only"
            )
        if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
            raise ValueError(f"open_clip model {spec!r}: text towers with a CLS token or pad mask (CoCa) are not supported")
        # keep the whole model registered so .to(device) moves every text part, whatever its owner
        self.model = model
        self._tower_is_model = text is None
        self.tokenizer = tokenizer
        self.spec = spec
        proj = tower.text_projection
        if proj is None:
            self.output_dim = int(tower.transformer.width)
        elif isinstance(proj, nn.Linear):
            self.output_dim = int(proj.out_features)
        else:
            self.output_dim = int(proj.shape[1])
        self.pool_type = tower.text_pool_type if self._tower_is_model else tower.pool_type
        self.eos_id = getattr(tower, "text_eos_id", None) if self._tower_is_model else getattr(tower, "eos_id", None)
        self.context_length = int(getattr(tower, "context_length", 77))

    @classmethod
    def from_spec(cls, spec: str, device: str | torch.device = "cpu") -> "OpenClipTextEncoder":
        bundle = load_open_clip(spec, device)
        return cls(bundle.model, bundle.tokenizer, spec)

    @property
    def _tower(self) -> nn.Module:
        return self.model if self._tower_is_model else self.model.text

    @property
    def token_embedding(self) -> nn.Embedding:
        return self._tower.token_embedding

    @property
    def eot_token_id(self) -> int | None:
        return getattr(self.tokenizer, "eot_token_id", self.eos_id)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(N, context_length) int64 token ids: SOT, BPE tokens, EOT, zero padding (truncated)."""
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(list(texts))

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        """Token ids (N, L) or (L,) -> texts, without start/end markers and padding."""
        if token_ids.dim() == 1:
            token_ids = token_ids.unsqueeze(0)
        out = []
        inner = getattr(self.tokenizer, "tokenizer", None)  # open_clip HFTokenizer wraps an HF one
        for row in token_ids.tolist():
            if inner is not None and hasattr(inner, "decode"):
                out.append(inner.decode(row, skip_special_tokens=True).strip())
                continue
            sot = getattr(self.tokenizer, "sot_token_id", None)
            eot = getattr(self.tokenizer, "eot_token_id", None)
            if sot is not None and row and row[0] == sot:
                row = row[1:]
            if eot is not None and eot in row:
                row = row[: row.index(eot)]
            out.append(self.tokenizer.decode(row).strip())
        return out

    def forward_embeddings(self, embeddings: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """(N, L, width) token embeddings + (N, L) ids -> (N, embed_dim) text features."""
        from open_clip.transformer import text_global_pool

        tower = self._tower
        if embeddings.dim() != 3 or token_ids.shape != embeddings.shape[:2]:
            raise ValueError(
                f"forward_embeddings expects embeddings (N, L, d) and token_ids (N, L), "
                f"got {tuple(embeddings.shape)} and {tuple(token_ids.shape)}"
            )
        transformer = tower.transformer
        cast_dtype = transformer.get_cast_dtype()
        seq_len = embeddings.shape[1]
        x = embeddings.to(cast_dtype) + tower.positional_embedding[:seq_len].to(cast_dtype)
        attn_mask = tower.attn_mask
        if attn_mask is not None:
            attn_mask = attn_mask[:seq_len, :seq_len]
        x = transformer(x, attn_mask=attn_mask)
        x = tower.ln_final(x)
        x = text_global_pool(x, token_ids.to(x.device), self.pool_type, eos_token_id=self.eos_id)
        proj = tower.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x


def load_open_clip_encoders(
    spec: str, device: str | torch.device = "cpu"
) -> tuple[OpenClipImageEncoder, OpenClipTextEncoder]:
    """Both encoders over ONE loaded model (shared weights, loaded once)."""
    bundle = load_open_clip(spec, device)
    return (
        OpenClipImageEncoder(bundle.model, bundle.preprocess, spec),
        OpenClipTextEncoder(bundle.model, bundle.tokenizer, spec),
    )
