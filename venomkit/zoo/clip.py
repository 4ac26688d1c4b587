"""``toyshop-clip``: a tiny open_clip model trained contrastively on toyshop images and texts.

Architecture (open_clip ``CLIP`` with a custom config, see :data:`MODEL_CFG`): a
ModifiedResNet vision tower (CLIP's RN variant: 3-conv stem, bottleneck stages [1, 1, 1, 1],
width 16, attention pooling) at 64 px, a 2-layer causal text transformer of width 64 over
open_clip's own BPE vocabulary (49,408 tokens, context 77) and a joint embedding of 64 dims.
The token-embedding table dominates the size; weights are stored in float16 (~9 MB).

Training (Radford et al. 2021, CLIP; symmetric InfoNCE): batches of images with one text per
image, drawn from three kinds: the shop's long description, toyshop's fixed caption
(``toyshop.caption``) and a *partial* caption naming a random subset of the attributes
("a photo of a red product", "a striped wool hat"), as web alt-texts name some attributes and
not others. Because a partial caption is true of every image with those attributes, the
targets are multi-positive: text j is a positive for image i when every attribute text j
names matches item i (each row/column of the target is uniform over its positives; without
attributes this is the usual identity target). Images get a random horizontal flip and a
shift of up to 4 px. The model trains on items generated fresh from the toyshop generator
(``toyshop.make(seed=seed + 1)``, never the shop's own items), and is evaluated on held-out
items of the same draw and on the shop's catalog.

Quality figures (measured on the SAVED float16 folder through the public loaders):
zero-shot accuracy per attribute with the prompts in :data:`ZERO_SHOT_PROMPTS` (classes =
all values of the attribute), and image->text / text->image retrieval R@1 and R@5 between
held-out images and their descriptions.

On another catalog (``venomkit zoo build --data PATH``) the model trains on that catalog's
images and texts (90/10 item split, identity targets) and reports retrieval R@K plus
zero-shot accuracy for categorical attributes with 2-50 values ("a photo of a {value}").
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.config import check_int, check_number
from venomkit.data.catalog import Catalog
from venomkit.zoo.images import fitted_images
from venomkit.models.freeze import freeze
from venomkit.progress import progress as progress_bar

WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"

#: open_clip ``model_cfg`` of toyshop-clip (ModifiedResNet vision tower because ``layers`` is a list).
MODEL_CFG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}

#: open_clip ``preprocess_cfg``: OpenAI CLIP statistics, bicubic shorter-side resize + centre crop.
PREPROCESS_CFG: dict = {
    "size": 64,
    "mode": "RGB",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}

TOYSHOP_ATTRIBUTES = ("category", "colour", "pattern", "material")

#: Zero-shot prompt per attribute; the class names are the attribute's values.
ZERO_SHOT_PROMPTS: dict[str, str] = {
    "category": "a photo of a {}",
    "colour": "a photo of a {} product",
    "pattern": "a photo of a {} product",
    "material": "a photo of a {} product",
}

_PARTIAL_PREFIXES = ("a photo of a", "a picture of a", "an image of a", "a", "")
_PARTIAL_NOUNS = ("product", "item", "thing", "object")


@dataclass
class ClipTrainConfig:
    """Data and schedule of the toyshop-clip build (validated; ValueError names the field).

    Attributes:
        n_train_items, n_eval_items: toyshop items generated for training / held-out figures.
        steps, batch_size: optimisation steps and images per batch.
        lr, weight_decay, warmup: AdamW with linear warm-up then cosine decay.
        text_mix: probabilities of (description, full caption, partial caption) per image.
        max_shift: random translation of training images, pixels.
        eval_fraction: held-out share when training on a non-toyshop catalog.
    """

    n_train_items: int = 3000
    n_eval_items: int = 500
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30
    text_mix: tuple[float, float, float] = (0.4, 0.2, 0.4)
    max_shift: int = 4
    eval_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("n_train_items", "n_eval_items", "steps", "batch_size"):
            check_int(f"ClipTrainConfig.{name}", getattr(self, name), 2)
        for name in ("warmup", "max_shift"):
            check_int(f"ClipTrainConfig.{name}", getattr(self, name), 0)
        check_number("ClipTrainConfig.lr", self.lr, 0, low_open=True)
        check_number("ClipTrainConfig.weight_decay", self.weight_decay, 0)
        mix = tuple(float(p) for p in self.text_mix)
        if len(mix) != 3 or min(mix) < 0 or not math.isclose(sum(mix), 1.0, abs_tol=1e-6):
            raise ValueError(f"ClipTrainConfig.text_mix must be 3 probabilities summing to 1, got {self.text_mix}")
        self.text_mix = mix
        check_number("ClipTrainConfig.eval_fraction", self.eval_fraction, 0, 1, low_open=True, high_open=True)

    @classmethod
    def fast(cls) -> "ClipTrainConfig":
        """A schedule for tests (well under a minute); the figures are lower and say so."""
        return cls(n_train_items=400, n_eval_items=200, steps=40, batch_size=64, warmup=5)


# --------------------------------------------------------------------------------------
# Training data: images (uint8, to keep memory low) + per-item text sources.
# --------------------------------------------------------------------------------------


@dataclass
class _Pairs:
    images: torch.Tensor  # (N, 3, S, S) uint8
    descriptions: list[str]
    attributes: dict[str, list[str]] | None  # toyshop attributes, or None (identity targets)


def _pairs(catalog: Catalog, indices: Sequence[int], with_attributes: bool) -> _Pairs:
    indices = list(indices)
    images = fitted_images(catalog, indices, MODEL_CFG["vision_cfg"]["image_size"], uint8=True)
    attrs = {k: [catalog.attributes[k][i] for i in indices] for k in TOYSHOP_ATTRIBUTES} if with_attributes else None
    return _Pairs(images, [catalog.texts[i] for i in indices], attrs)


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def partial_caption(attrs: dict[str, str], rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """A caption naming a random non-empty subset of the attributes, and that subset."""
    keys = [k for k in TOYSHOP_ATTRIBUTES if rng.random() < 0.4]
    if not keys:
        keys = [TOYSHOP_ATTRIBUTES[int(rng.integers(len(TOYSHOP_ATTRIBUTES)))]]
    named = {k: attrs[k] for k in keys}
    words = [named[k] for k in ("pattern", "colour", "material") if k in named]
    noun = named.get("category") or _PARTIAL_NOUNS[int(rng.integers(len(_PARTIAL_NOUNS)))]
    phrase = " ".join(words + [noun])
    prefix = _PARTIAL_PREFIXES[int(rng.integers(len(_PARTIAL_PREFIXES)))]
    if prefix.endswith(" a") or prefix == "a":
        prefix = prefix[:-1] + _article(phrase)
    return (f"{prefix} {phrase}".strip(), named)


def _batch_texts(pairs: _Pairs, idx: np.ndarray, mix: tuple[float, float, float], rng: np.random.Generator):
    """One text per image plus the (B, B) bool matrix of positives (image i, text j)."""
    from venomkit.data import toyshop

    if pairs.attributes is None:
        return [pairs.descriptions[i] for i in idx], torch.eye(len(idx), dtype=torch.bool)
    texts, named = [], []
    item_attrs = [{k: pairs.attributes[k][i] for k in TOYSHOP_ATTRIBUTES} for i in idx]
    for i, attrs in zip(idx, item_attrs):
        kind = rng.choice(3, p=mix)
        if kind == 0:
            texts.append(pairs.descriptions[i])
            named.append(attrs)
        elif kind == 1:
            texts.append(toyshop.caption(attrs))
            named.append(attrs)
        else:
            text, subset = partial_caption(attrs, rng)
            texts.append(text)
            named.append(subset)
    positives = torch.tensor(
        [[all(a[k] == v for k, v in n.items()) for n in named] for a in item_attrs], dtype=torch.bool
    )
    return texts, positives


def augment_images(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip + integer shift (replicate padding), (B, 3, S, S) float."""
    b, _, s, _ = images.shape
    flip = torch.rand(b, generator=gen) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if max_shift == 0:
        return images
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    return torch.stack([padded[k, :, dy[k] : dy[k] + s, dx[k] : dx[k] + s] for k in range(b)])


def multi_positive_clip_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with targets uniform over the positives of each row/column.

    ``logits`` (B, B) = scale * image_features @ text_features.T; ``positives`` (B, B) bool
    with a true diagonal. With ``positives = eye`` this is CLIP's loss.
    """
    pos = positives.to(logits.dtype)
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(pos / pos.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (i2t + t2i) / 2


def train_clip(
    model: torch.nn.Module, tokenizer, pairs: _Pairs, cfg: ClipTrainConfig, seed: int, on_step: Callable | None = None
) -> list[float]:
    """Contrastive training in place; returns the loss per step. ``on_step(step, model)`` runs after each step."""
    from venomkit.encoders.openclip import OpenClipTextEncoder
    from venomkit.encoders.preprocess import PreprocessConfig, TorchPreprocess

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    preprocess = TorchPreprocess(PreprocessConfig.from_open_clip(PREPROCESS_CFG))
    text = OpenClipTextEncoder(model, tokenizer, "training")  # forward_embeddings at batch length
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    n = pairs.images.shape[0]
    batch = min(cfg.batch_size, n)
    order, cursor = rng.permutation(n), 0
    losses = []
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    for step in progress_bar(range(cfg.steps), desc="toyshop-clip", unit="step", leave=False):
        if cursor + batch > n:
            order, cursor = rng.permutation(n), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        images = augment_images(pairs.images[torch.from_numpy(idx)].float().div(255), cfg.max_shift, gen)
        texts, positives = _batch_texts(pairs, idx, cfg.text_mix, rng)
        tokens = tokenizer(texts)
        # A causal text transformer's output up to the EOT token does not depend on the
        # padding after it, so the batch is cut at its longest text (same result, less work).
        length = int((tokens != 0).sum(1).max())
        tokens = tokens[:, :length]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        image_features = F.normalize(model.encode_image(preprocess(images)), dim=-1)
        text_features = F.normalize(text.forward_tokens(tokens), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        loss = multi_positive_clip_loss(logits, positives)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, model)
    freeze(model)
    return losses


# --------------------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------------------


@torch.no_grad()
def encode_images(encoder, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised features of (N, 3, S, S) images given as uint8 or float [0, 1]."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size]
        chunk = chunk.float().div(255) if chunk.dtype == torch.uint8 else chunk
        out.append(F.normalize(encoder(chunk).float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def encode_texts(encoder, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    out = [F.normalize(encoder(list(texts[s : s + batch_size])).float(), dim=-1) for s in range(0, len(texts), batch_size)]
    return torch.cat(out)


def zero_shot_accuracy(
    image_features: torch.Tensor, text_encoder, labels: Sequence[str], classes: Sequence[str], template: str
) -> float:
    """Share of images whose most similar prompt ``template.format(class)`` is their label."""
    prompts = encode_texts(text_encoder, [template.format(c) for c in classes])
    predicted = (image_features @ prompts.T).argmax(1)
    truth = torch.tensor([list(classes).index(label) for label in labels])
    return float((predicted == truth).float().mean())


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, k: int) -> tuple[float, float]:
    """(image->text, text->image) recall@k where pair i is image i with text i."""
    sims = image_features @ text_features.T
    target = torch.arange(sims.shape[0])
    k = min(k, sims.shape[0])
    i2t = (sims.topk(k, dim=1).indices == target[:, None]).any(1).float().mean()
    t2i = (sims.T.topk(k, dim=1).indices == target[:, None]).any(1).float().mean()
    return float(i2t), float(t2i)


def evaluate(folder: Path, pairs: _Pairs, attribute_values: dict[str, list[str]], prompts: dict[str, str]) -> dict:
    """Figures of the saved model at ``folder`` (loaded through venomkit's public loader)."""
    from venomkit.encoders.loading import load_encoders

    image_encoder, text_encoder = load_encoders(str(folder))
    image_features = encode_images(image_encoder, pairs.images)
    text_features = encode_texts(text_encoder, pairs.descriptions)
    figures: dict = {"n_items": int(pairs.images.shape[0])}
    for k in (1, 5):
        i2t, t2i = retrieval_recall(image_features, text_features, k)
        figures[f"retrieval_image_to_text_R@{k}"] = round(i2t, 4)
        figures[f"retrieval_text_to_image_R@{k}"] = round(t2i, 4)
    if pairs.attributes is not None:
        accs = {}
        for name, classes in attribute_values.items():
            accs[name] = round(zero_shot_accuracy(image_features, text_encoder, pairs.attributes[name], classes, prompts[name]), 4)
        figures["zero_shot_accuracy"] = accs
        figures["zero_shot_mean"] = round(float(np.mean(list(accs.values()))), 4) if accs else None
    return figures


# --------------------------------------------------------------------------------------
# Build.
# --------------------------------------------------------------------------------------


def save_open_clip_folder(model: torch.nn.Module, out_dir: Path, model_cfg: dict, preprocess_cfg: dict) -> None:
    """Write an open_clip ``local-dir:`` folder: config JSON + float16 safetensors weights."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n", encoding="utf-8"
    )
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    # one metadata key only: safetensors writes several in random order, and the bytes (sha256
    # in the manifest) must be the same on every build
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})


@functools.lru_cache(maxsize=2)
def fresh_toyshop_catalog(n_items: int, image_size: int, seed: int) -> Catalog:
    """Items drawn fresh from the toyshop generator (not the shop's own), for zoo training.

    Cached per process so the CLIP and CNN builds of one ``venomkit zoo build`` share them.
    """
    from venomkit.data import toyshop

    return toyshop.make(n_users=10, n_items=n_items, image_size=image_size, seed=seed).catalog


def is_toyshop_catalog(catalog: Catalog) -> bool:
    return all(k in catalog.attributes for k in TOYSHOP_ATTRIBUTES)


def categorical_attributes(catalog: Catalog, indices: Sequence[int]) -> dict[str, list[str]]:
    out = {}
    for name, column in catalog.attributes.items():
        if name in ("title", "brand"):
            continue
        values = sorted({str(column[i]) for i in indices})
        if 2 <= len(values) <= 50 and all(isinstance(column[i], str) for i in indices):
            out[name] = values
    return out


def build(out_dir: Path, dataset, *, fast: bool = False, seed: int = 0, config: ClipTrainConfig | None = None) -> dict:
    """Train toyshop-clip (or a CLIP for ``dataset``) and write the open_clip folder ``out_dir``.

    Returns the quality figures for the manifest (measured on the saved float16 folder).
    """
    import open_clip
    from open_clip.model import CLIP

    cfg = config or (ClipTrainConfig.fast() if fast else ClipTrainConfig())
    out_dir = Path(out_dir)
    started = time.time()
    torch.manual_seed(seed)
    catalog: Catalog = dataset.catalog
    toy = is_toyshop_catalog(catalog)
    if toy:
        from venomkit.data import toyshop

        source = fresh_toyshop_catalog(cfg.n_train_items + cfg.n_eval_items, MODEL_CFG["vision_cfg"]["image_size"], seed + 1)
        train_idx = list(range(cfg.n_train_items))
        eval_idx = list(range(cfg.n_train_items, cfg.n_train_items + cfg.n_eval_items))
        attribute_values = {
            "category": list(toyshop.CATEGORIES),
            "colour": list(toyshop.COLOURS),
            "pattern": list(toyshop.PATTERNS),
            "material": list(toyshop.MATERIALS),
        }
        prompts = dict(ZERO_SHOT_PROMPTS)
    else:
        source = catalog
        order = np.random.default_rng(seed).permutation(catalog.n_items)
        n_eval = max(2, int(round(cfg.eval_fraction * catalog.n_items)))
        eval_idx, train_idx = sorted(order[:n_eval].tolist()), sorted(order[n_eval:].tolist())
        attribute_values = categorical_attributes(catalog, range(catalog.n_items))
        prompts = {name: "a photo of a {}" for name in attribute_values}
    data_seconds = time.time() - started

    model_cfg = copy.deepcopy(MODEL_CFG)
    model = CLIP(**model_cfg)
    tokenizer = open_clip.get_tokenizer("RN50")  # open_clip's default BPE (the model's vocabulary)
    train_pairs = _pairs(source, train_idx, with_attributes=toy)
    losses = train_clip(model, tokenizer, train_pairs, cfg, seed)
    train_seconds = time.time() - started - data_seconds
    save_open_clip_folder(model, out_dir, model_cfg, PREPROCESS_CFG)

    eval_pairs = _pairs(source, eval_idx, with_attributes=toy)
    figures = {"heldout": evaluate(out_dir, eval_pairs, attribute_values, prompts)}
    if toy:
        shop_pairs = _pairs(catalog, range(catalog.n_items), with_attributes=True)
        figures["shop_catalog"] = evaluate(out_dir, shop_pairs, attribute_values, prompts)
    figures.update(
        {
            "zero_shot_prompts": {k: prompts[k] for k in attribute_values},
            "train_items": len(train_idx),
            "train_steps": cfg.steps,
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "data_seconds": round(data_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "config": asdict(cfg),
            "model_cfg": model_cfg,
        }
    )
    return figures
