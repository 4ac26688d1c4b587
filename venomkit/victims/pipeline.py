"""From a dataset to a trained, evaluated victim: ``train_victim`` and ``venomkit train``.

``train_victim(kind, dataset, image_encoder, text_encoder, **config)`` loads the encoders by
spec, extracts the clean catalog's features (batched, cached by the encoders package),
builds the victim, trains it with BPR and early stopping (``training.train_bpr``) and
evaluates it on the test split: Recall/NDCG@{10,20,50} over all test interactions and over
those of cold items, next to a popularity baseline.

``venomkit train --data DIR_OR_NAME --victim vbpr|amr|mmgcn|lightgcn --out DIR`` writes the
checkpoint folder (``config.json``, ``model.safetensors``) and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from venomkit.data import loaders
from venomkit.encoders import features as feature_module
from venomkit.data.dataset import require_test_interactions
from venomkit.encoders.base import ImageEncoder, TextEncoder
from venomkit.encoders.loading import load_content_encoders, resolve_device
from venomkit.victims.base import Victim
from venomkit.victims.checkpoint import save_victim, victim_class
from venomkit.victims.graph import GraphMixin
from venomkit.victims.training import evaluate_embeddings, evaluate_victim, train_bpr

DEFAULT_ENCODER = "zoo:toyshop-clip"
"""Default image and text encoder of content victims (built by ``venomkit zoo build``)."""

KINDS = ("vbpr", "amr", "mmgcn", "lightgcn")

DEFAULT_LR = {"vbpr": 1e-3, "amr": 1e-3, "mmgcn": 1e-3, "lightgcn": 1e-2}
"""Adam learning rates ``train_victim`` uses when none is given. LightGCN's ID-only
embeddings sit on a popularity plateau for many epochs at 1e-3 with batches of 2048, long
enough for early stopping to end the run there (measured on toyshop); 1e-2 leaves it."""


def extract_catalog_features(
    encoder: ImageEncoder | TextEncoder,
    catalog: Any,
    modality: str,
    batch_size: int = 64,
    cache_dir: str | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """(I, D) clean features of every catalog item through ``encoder`` (no grad, float32, CPU)."""
    extract = feature_module.extract_image_features if modality == "visual" else feature_module.extract_text_features
    return extract(encoder, catalog, batch_size=batch_size, cache_dir=cache_dir, progress=progress).float()


def build_victim(kind: str, n_users: int, n_items: int, train: Any = None, **config: Any) -> Victim:
    """A fresh victim of ``kind`` with ``config`` fields; graph victims get the ``train`` graph."""
    cls = victim_class(kind)
    cfg = cls.config_class(n_users=n_users, n_items=n_items, **config)
    if issubclass(cls, GraphMixin):
        if train is None:
            raise ValueError(f"{kind} propagates over the training graph: pass train=")
        return cls(cfg, train=train)  # type: ignore[call-arg]
    return cls(cfg)


def popularity_metrics(split: Any, ks: tuple[int, ...] = (10, 20, 50), cold_max_interactions: int = 5) -> dict[str, Any]:
    """The same test figures as ``evaluate_victim`` for the most-popular-items baseline."""
    pop = torch.from_numpy(split.train.popularity().astype(np.float32))
    user_emb = torch.ones(split.train.n_users, 1)
    return evaluate_embeddings(user_emb, pop.unsqueeze(1), split, ks=ks, cold_max_interactions=cold_max_interactions)


def train_victim(
    kind: str,
    dataset: Any,
    image_encoder: str | ImageEncoder | None = DEFAULT_ENCODER,
    text_encoder: str | TextEncoder | None = DEFAULT_ENCODER,
    *,
    epochs: int = 200,
    lr: float | None = None,
    batch_size: int = 2048,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    eval_every: int = 1,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    feature_batch_size: int = 64,
    feature_cache: str | None = None,
    cold_max_interactions: int = 5,
    progress: bool = True,
    **config: Any,
) -> tuple[Victim, dict[str, Any]]:
    """Extract features, train and evaluate a victim on ``dataset`` (a ``venomkit.data.Dataset``).

    Args:
        kind: "vbpr", "amr", "mmgcn" or "lightgcn".
        image_encoder, text_encoder: specs (``zoo:NAME``, a folder, ``resnet18``, ...) or
            encoder objects; None leaves that modality out. LightGCN reads no content and
            ignores the defaults (passing other encoders to it is an error).
        epochs ... eval_every, seed: ``train_bpr``'s; ``seed`` also seeds the initialisation;
            ``lr`` None takes ``DEFAULT_LR[kind]``.
        device: "auto" (cuda when available), "cpu", "cuda", ...
        feature_batch_size, feature_cache: batch size and optional cache folder of the
            feature extraction (``venomkit.encoders.features``).
        config: the victim's config fields (embed_dim, reg_weight, n_layers, adv_eps, ...).

    Returns:
        ``(victim, metrics)``: the trained victim (best validation state, eval mode, encoders
        attached) and a JSON-ready dict with ``test``, ``cold`` (test interactions of items with
        at most ``cold_max_interactions`` training interactions), ``popularity`` baseline,
        ``train`` (the ``TrainResult``), and the set-up.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown victim kind {kind!r}; expected one of {KINDS}")
    require_test_interactions(dataset)  # a victim is never trained without a test to report
    device = resolve_device(device)
    if kind == "lightgcn":
        for name, enc in (("image_encoder", image_encoder), ("text_encoder", text_encoder)):
            if enc is not None and enc != DEFAULT_ENCODER:
                raise ValueError(f"lightgcn reads no content; do not pass {name}={enc!r}")
        image_encoder = text_encoder = None
    elif image_encoder is None and text_encoder is None:
        raise ValueError(f"{kind} reads content: give an image_encoder and/or a text_encoder")

    t0 = time.perf_counter()
    torch.manual_seed(seed)  # an encoder without weights (``resnet18``) is then the same in every run
    img_enc, txt_enc = load_content_encoders(image_encoder, text_encoder, device)
    features: dict[str, torch.Tensor] = {}
    for modality, enc in (("visual", img_enc), ("text", txt_enc)):
        if enc is not None:
            enc.to(device).eval()
            features[modality] = extract_catalog_features(
                enc, dataset.catalog, modality, feature_batch_size, feature_cache, None if progress else False
            )
    t_features = time.perf_counter() - t0

    torch.manual_seed(seed)
    fields = dict(config)
    if img_enc is not None:
        fields.update(visual_dim=int(features["visual"].shape[1]), image_encoder=img_enc.spec)
    if txt_enc is not None:
        fields.update(text_dim=int(features["text"].shape[1]), text_encoder=txt_enc.spec)
    split = dataset.split
    victim = build_victim(kind, dataset.n_users, dataset.n_items, train=split.train, **fields)
    victim.set_clean_features(features)
    victim.to(device)
    victim.attach_encoders(img_enc, txt_enc)

    lr = DEFAULT_LR[kind] if lr is None else lr
    result = train_bpr(
        victim, split, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, patience=patience,
        eval_every=eval_every, seed=seed, progress=progress,
    )
    evaluation = evaluate_victim(victim, split, cold_max_interactions=cold_max_interactions)
    metrics: dict[str, Any] = {
        "kind": kind,
        "dataset": getattr(dataset, "name", None),
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_train": split.train.nnz,
        "n_valid": split.valid.nnz,
        "n_test": split.test.nnz,
        "image_encoder": victim.config.image_encoder,
        "text_encoder": victim.config.text_encoder,
        "device": str(device),
        "seed": seed,
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "patience": patience,
        "feature_seconds": t_features,
        **evaluation,
        "popularity": popularity_metrics(split, cold_max_interactions=cold_max_interactions),
        "train": result.to_dict(),
        "config": victim.config.to_dict(),
    }
    return victim, metrics


# ------------------------------------------------------------------------------------ CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``venomkit train``."""
    parser.add_argument("--data", required=True, help="dataset: 'toyshop', a folder in atomic format, or the ML-100K posters folder")
    parser.add_argument("--victim", required=True, choices=KINDS, help="recommender to train")
    parser.add_argument("--out", required=True, help="checkpoint folder to write (config.json, model.safetensors, metrics.json)")
    parser.add_argument("--image-encoder", default=DEFAULT_ENCODER, help=f"image encoder spec, or 'none' (default {DEFAULT_ENCODER})")
    parser.add_argument("--text-encoder", default=DEFAULT_ENCODER, help=f"text encoder spec, or 'none' (default {DEFAULT_ENCODER})")
    parser.add_argument("--split", choices=("ratio", "loo"), default=None, help="re-split the data (default: the dataset's own split)")
    parser.add_argument(
        "--missing-images", choices=loaders.MISSING_IMAGE_POLICIES, default=None,
        help="items whose image file is missing or unreadable: placeholder (grey image, a counted warning; the default), "
             "drop (the item and its interactions), error (stop); dataset folders only",
    )  # fmt: skip
    parser.add_argument(
        "--empty-texts", choices=loaders.EMPTY_TEXT_POLICIES + ("title",), default=None,
        help="items with an empty text: error (the default for atomic folders), keep, drop, or title "
             "(the ML-100K posters folder's default: the movie title); dataset folders only",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3; lightgcn 1e-2)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    parser.add_argument("--patience", type=int, default=10, help="evaluations without a better valid Recall@20 before stopping (0: never)")
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--feature-batch-size", type=int, default=64)
    parser.add_argument("--feature-cache", default=None, help="folder caching extracted features (default: no cache)")
    parser.add_argument("--embed-dim", type=int, default=None, help="ID embedding width (default 64)")
    parser.add_argument("--reg-weight", type=float, default=None, help="weight of the victim's L2 term (default 1e-4; MMGCN: its ID embeddings and preferences, others: the batch's embeddings)")
    parser.add_argument("--layers", type=int, default=None, help="graph layers (mmgcn default 2, lightgcn 3)")
    parser.add_argument("--latent-dim", type=int, default=None, help="mmgcn: projected feature width (default 256)")
    parser.add_argument("--adv-eps", type=float, default=None, help="amr: perturbation radius as a ratio of the feature norm (default 0.1)")
    parser.add_argument("--adv-weight", type=float, default=None, help="amr: weight of the adversarial loss (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    pairs = [("embed_dim", args.embed_dim), ("reg_weight", args.reg_weight)]
    if args.victim in ("mmgcn", "lightgcn"):
        pairs.append(("n_layers", args.layers))
    if args.victim == "mmgcn":
        pairs.append(("latent_dim", args.latent_dim))
    if args.victim == "amr":
        pairs += [("adv_eps", args.adv_eps), ("adv_weight", args.adv_weight)]
    for name, value in pairs:
        if value is not None:
            config[name] = value
    ignored = [
        flag
        for flag, value, used in (
            ("--layers", args.layers, args.victim in ("mmgcn", "lightgcn")),
            ("--latent-dim", args.latent_dim, args.victim == "mmgcn"),
            ("--adv-eps", args.adv_eps, args.victim == "amr"),
            ("--adv-weight", args.adv_weight, args.victim == "amr"),
        )
        if value is not None and not used
    ]
    if ignored:
        raise ValueError(f"{', '.join(ignored)} do(es) not apply to --victim {args.victim}")
    return config


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """``load_dataset`` keywords from the data flags that were given (the loader's defaults otherwise)."""
    options: dict[str, Any] = {"split": args.split} if args.split else {}
    policies = {"missing_images": args.missing_images, "empty_texts": args.empty_texts}
    given = {name: value for name, value in policies.items() if value is not None}
    if given and str(args.data).split(":", 1)[0] == "toyshop" and not Path(args.data).exists():
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{flags}: apply to dataset folders, not to --data {args.data} (toyshop has no image files or empty texts)")
    return {**options, **given}


def _encoder_arg(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def cli_train(args: argparse.Namespace) -> int:
    """``venomkit train``: train, evaluate, write the checkpoint folder and metrics.json."""
    config = _config_from_args(args)  # flag errors before the data loads
    dataset = loaders.load_dataset(args.data, **_data_options(args))
    image_encoder, text_encoder = _encoder_arg(args.image_encoder), _encoder_arg(args.text_encoder)
    victim, metrics = train_victim(
        args.victim,
        dataset,
        image_encoder,
        text_encoder,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        patience=args.patience or None,
        eval_every=args.eval_every,
        seed=args.seed,
        device=args.device,
        feature_batch_size=args.feature_batch_size,
        feature_cache=args.feature_cache,
        progress=not args.no_progress,
        **config,
    )
    metrics["command"] = "venomkit train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    folder = save_victim(victim, args.out, metrics=metrics)
    print(format_metrics(metrics))
    print(f"checkpoint written to {folder}")
    return 0


def format_metrics(metrics: dict[str, Any]) -> str:
    """A small text table of the test figures of a ``train_victim`` run and its baseline."""
    keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (10, 20, 50)]
    keys = [k for k in keys if k in (metrics.get("test") or {})]
    rows = [f"{'':24s}" + "".join(f"{k:>12s}" for k in keys)]
    for label, block in (
        (f"{metrics['kind']} test", metrics.get("test")),
        (f"{metrics['kind']} cold items", metrics.get("cold")),
        ("popularity test", metrics.get("popularity", {}).get("test")),
        ("popularity cold items", metrics.get("popularity", {}).get("cold")),
    ):
        if block:
            rows.append(f"{label:24s}" + "".join(f"{block[k]:12.4f}" for k in keys))
    train = metrics.get("train", {})
    rows.append(f"best epoch {train.get('best_epoch')} of {train.get('epochs_run')} ({train.get('seconds', 0):.1f} s)")
    return "\n".join(rows)
