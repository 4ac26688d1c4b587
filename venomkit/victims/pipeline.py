"""From a dataset to a trained, evaluated victim: ``train_victim`` and ``venomkit train``.

``train_victim(kind, dataset, image_encoder, text_encoder, **config)`` loads the encoders by
spec, extracts the clean catalog's features (batched, cached by the encoders package),
builds the victim, trains it with BPR and early stopping (``training.train_bpr``) and
evaluates it on the test split: Recall/NDCG@{10,20,50} over all test interactions and over
those of cold items, next to a popularity baseline.

``venomkit train --data DIR_OR_NAME --victim vbpr|amr|mmgcn|lightgcn --out DIR`` writes the
checkpoint folder (``config.json``, ``model.safetensors``) and ``metrics.json``.

``venomkit train --victim mllm`` fine-tunes the multimodal-LLM ranker instead (VenomRec's
victim, TALLRec's LoRA by default; :func:`train_mllm_ranker`): same command, same data flags,
same ``--out`` folder convention (the ranker checkpoint of ``venomkit.victims.mllm.checkpoint``:
adapters or the full model, plus ``ranker.json`` holding the metrics). Flags of one family
given to the other are an error naming the flag.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from venomkit.config import check_int
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
MLLM = "mllm"
"""``--victim mllm``: the multimodal-LLM ranker (``venomkit.victims.mllm``), fine-tuned, not BPR-trained."""

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
    parser.add_argument("--victim", required=True, choices=KINDS + (MLLM,), help="recommender to train (mllm: fine-tune the MLLM ranker)")
    parser.add_argument("--out", required=True, help="checkpoint folder to write (config.json, model.safetensors, metrics.json; mllm: adapters + ranker.json)")
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
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 200; mllm: passes over the training interactions, instead of --steps)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3; lightgcn 1e-2; mllm: AdamW, 1e-3)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 2048 (mllm: positive rows per step, each with one negative; 16)")
    parser.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default 0)")
    parser.add_argument("--patience", type=int, default=None, help="evaluations without a better valid Recall@20 before stopping (default 10; 0: never)")
    parser.add_argument("--eval-every", type=int, default=None, help="epochs between validations (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core); float sums differ with the count, so a "
                             "result is reproduced with the seed and the thread count its metrics record")
    parser.add_argument("--feature-batch-size", type=int, default=None, help="feature extraction batch size (default 64)")
    parser.add_argument("--feature-cache", default=None, help="folder caching extracted features (default: no cache)")
    parser.add_argument("--embed-dim", type=int, default=None, help="ID embedding width (default 64)")
    parser.add_argument("--reg-weight", type=float, default=None, help="weight of the victim's L2 term (default 1e-4; MMGCN: its ID embeddings and preferences, others: the batch's embeddings)")
    parser.add_argument("--layers", type=int, default=None, help="graph layers (mmgcn default 2, lightgcn 3)")
    parser.add_argument("--latent-dim", type=int, default=None, help="mmgcn: projected feature width (default 256)")
    parser.add_argument("--adv-eps", type=float, default=None, help="amr: perturbation radius as a ratio of the feature norm (default 0.1)")
    parser.add_argument("--adv-weight", type=float, default=None, help="amr: weight of the adversarial loss (default 1)")
    parser.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress bars or progress lines (--no-progress: the older spelling)")
    mllm = parser.add_argument_group("MLLM ranker (--victim mllm; TALLRec-style fine-tuning, VenomRec's victim)")
    mllm.add_argument("--base", default=None, help=f"the ranker to fine-tune: zoo:NAME, a folder or a hub id (default {DEFAULT_RANKER})")
    mllm.add_argument("--mode", choices=("lora", "full"), default=None, help="lora (adapters on the language model; the default) or full")
    mllm.add_argument("--steps", type=int, default=None, help="optimiser steps (default 600; or give --epochs)")
    mllm.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default 20)")
    mllm.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default 8)")
    mllm.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default 16)")
    mllm.add_argument("--lora-dropout", type=float, default=None, help="LoRA dropout (default 0.05)")
    mllm.add_argument("--lora-targets", default=None, help="comma-separated Linear names under the language model (default q_proj,v_proj)")
    mllm.add_argument("--max-history", type=int, default=None, help="history titles per prompt (default: the base ranker's, 8)")
    mllm.add_argument("--text-drop", type=float, default=None, help="probability of blanking a training row's candidate text (default 0)")
    mllm.add_argument("--pairwise-weight", type=float, default=None, help="weight of a BPR term on the yes/no margins (default 0)")
    mllm.add_argument("--popular-negatives", type=float, default=None,
                      help="probability that a training negative is drawn by training popularity instead of uniformly (default 0)")
    mllm.add_argument("--eval-users", type=int, default=None, help="test users ranked over their candidate lists (default 200)")
    mllm.add_argument("--negatives", type=int, default=None, help="sampled never-interacted negatives per list (default 99)")
    mllm.add_argument("--full-catalogue-users", type=int, default=None, help="also rank the full catalogue for this many users (default 0: off; slow)")
    return parser


DEFAULT_RANKER = "zoo:toyshop-vlm"
"""The MLLM ranker ``venomkit train --victim mllm`` fine-tunes when no ``--base`` is given."""

_FEATURE_ONLY = (
    "patience", "eval_every", "feature_batch_size", "feature_cache", "embed_dim", "reg_weight", "layers", "latent_dim",
    "adv_eps", "adv_weight",
)  # fmt: skip
_MLLM_ONLY = (
    "base", "mode", "steps", "warmup", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "max_history", "text_drop",
    "pairwise_weight", "popular_negatives", "eval_users", "negatives", "full_catalogue_users",
)  # fmt: skip
_FEATURE_DEFAULTS = {"epochs": 200, "batch_size": 2048, "weight_decay": 0.0, "patience": 10, "eval_every": 1, "feature_batch_size": 64}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_family_flags(args: argparse.Namespace) -> None:
    """ValueError naming the flags that belong to the other victim family (feature victims vs mllm)."""
    if args.victim == MLLM:
        wrong = [_flag(n) for n in _FEATURE_ONLY if getattr(args, n, None) is not None]
        wrong += [_flag(n) for n in ("image_encoder", "text_encoder") if getattr(args, n) not in (None, DEFAULT_ENCODER)]
    else:
        wrong = [_flag(n) for n in _MLLM_ONLY if getattr(args, n, None) is not None]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do(es) not apply to --victim {args.victim}")


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
    _check_family_flags(args)  # flag errors before the data loads
    if args.threads is not None:
        check_int("--threads", args.threads, 1)
        torch.set_num_threads(args.threads)
    if args.victim == MLLM:
        return _cli_train_mllm(args)
    for name, value in _FEATURE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    config = _config_from_args(args)
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
    metrics["threads"] = torch.get_num_threads()
    folder = save_victim(victim, args.out, metrics=metrics)
    print(format_metrics(metrics))
    print(f"checkpoint written to {folder}")
    return 0


def _threads_note(metrics: dict[str, Any]) -> str:
    """``", 2 threads"`` for a table's last line; empty for metrics written before the count was recorded."""
    n = metrics.get("threads")
    return f", {n} thread{'s' if n > 1 else ''}" if n else ""


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
    rows.append(f"best epoch {train.get('best_epoch')} of {train.get('epochs_run')} ({train.get('seconds', 0):.1f} s{_threads_note(metrics)})")
    return "\n".join(rows)


# ------------------------------------------------------------------------- the MLLM ranker
RANKER_KS = (5, 10, 20)


def train_mllm_ranker(
    dataset: Any,
    config: Any = None,
    *,
    base: str = DEFAULT_RANKER,
    device: str | torch.device | None = "auto",
    eval_users: int = 200,
    n_negatives: int = 99,
    full_catalogue_users: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune the MLLM ranker ``base`` on ``dataset`` and evaluate it on the test split.

    ``config`` is a :class:`~venomkit.victims.mllm.finetune.FinetuneConfig` (default: TALLRec's
    LoRA). Evaluation (``venomkit.victims.mllm.evaluate``): HR/NDCG/Recall@{5,10,20} over
    ``eval_users`` lists of 1 held-out positive + ``n_negatives`` sampled never-interacted
    items (seeded by ``seed``), with texts and with images only, popularity and random on the
    same lists; optionally Recall/NDCG over the full catalogue for ``full_catalogue_users``.

    Returns:
        ``(result, metrics)``: the :class:`~venomkit.victims.mllm.finetune.FinetuneResult`
        (its ``ranker`` and ``adapter``) and a JSON-ready dict.
    """
    from venomkit.victims.mllm.evaluate import evaluate_ranker, full_catalogue_metrics
    from venomkit.victims.mllm.finetune import FinetuneConfig, finetune
    from venomkit.victims.mllm.ranker import MLLMRanker

    require_test_interactions(dataset)
    cfg = config or FinetuneConfig()
    device = resolve_device(device)
    started = time.perf_counter()
    load_kw = {"max_history": cfg.max_history} if cfg.max_history is not None else {}
    ranker = MLLMRanker.load(base, device=device, **load_kw)
    result = finetune(ranker, dataset, cfg, progress=progress)
    eval_kw = {"n_users": eval_users, "n_negatives": n_negatives, "ks": RANKER_KS, "seed": seed, "progress": progress}
    t_eval = time.perf_counter()
    with torch.no_grad():
        test = evaluate_ranker(ranker, dataset, **eval_kw)
        image_only = evaluate_ranker(ranker, dataset, image_only=True, **eval_kw)
        full = (
            full_catalogue_metrics(ranker, dataset, n_users=full_catalogue_users, ks=RANKER_KS, seed=seed, progress=progress)
            if full_catalogue_users
            else None
        )
    scores = ("hr", "ndcg", "recall")
    metrics: dict[str, Any] = {
        "kind": MLLM,
        "base": base,
        "dataset": getattr(dataset, "name", None),
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "n_train": dataset.split.train.nnz,
        "n_test": dataset.split.test.nnz,
        "device": str(device),
        "protocol": f"1 held-out test positive + {n_negatives} sampled never-interacted negatives per user, seed {seed}",
        "test": {f"{m}@{k}": test[f"{m}@{k}"] for m in scores for k in RANKER_KS},
        "image_only": {f"{m}@{k}": image_only[f"{m}@{k}"] for m in scores for k in RANKER_KS},
        "popularity": {f"{m}@{k}": test[f"popularity_{m}@{k}"] for m in scores for k in RANKER_KS},
        "random": {f"{m}@{k}": test[f"random_{m}@{k}"] for m in ("hr", "ndcg") for k in RANKER_KS},
        "vs_popularity": {key: test[f"vs_popularity_{key}"] for k in RANKER_KS for key in (f"hr@{k}", f"hr@{k}_se")},
        "eval_users": test["users"],
        "full_catalogue": full,
        "train": result.summary(),
        "eval_seconds": round(time.perf_counter() - t_eval, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result, metrics


def _cli_train_mllm(args: argparse.Namespace) -> int:
    """``venomkit train --victim mllm``: fine-tune, evaluate, write the ranker checkpoint."""
    from venomkit.victims.mllm.checkpoint import save_ranker
    from venomkit.victims.mllm.finetune import FinetuneConfig

    fields: dict[str, Any] = {}
    for name in ("mode", "steps", "epochs", "batch_size", "lr", "warmup", "weight_decay", "lora_r", "lora_alpha",
                 "lora_dropout", "max_history", "text_drop", "pairwise_weight", "popular_negatives", "seed"):  # fmt: skip
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.epochs is not None and args.steps is None:
        fields["steps"] = None
    if args.lora_targets is not None:
        fields["lora_targets"] = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    for flag, value, minimum in (("--eval-users", args.eval_users, 1), ("--negatives", args.negatives, 1), ("--full-catalogue-users", args.full_catalogue_users, 0)):
        if value is not None:  # not given: the config's default
            check_int(flag, value, minimum)
    try:
        config = FinetuneConfig(**fields)
    except ValueError as exc:  # name the flag, not the Python field
        message = str(exc)
        for name in fields:
            message = message.replace(f"FinetuneConfig.{name} ", f"{_flag(name)} ")
        message = message.replace("FinetuneConfig: set exactly one of steps and epochs", "give --steps or --epochs, not both")
        raise ValueError(message) from None
    dataset = loaders.load_dataset(args.data, **_data_options(args))
    base = args.base or DEFAULT_RANKER
    result, metrics = train_mllm_ranker(
        dataset, config, base=base, device=args.device, eval_users=args.eval_users or 200,
        n_negatives=args.negatives or 99, full_catalogue_users=args.full_catalogue_users or 0, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    metrics["command"] = "venomkit train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    metrics["threads"] = torch.get_num_threads()
    folder = save_ranker(args.out, result.ranker, adapter=result.adapter, base=base, finetune=result.summary(), metrics=metrics)
    print(format_ranker_metrics(metrics))
    print(f"ranker checkpoint written to {folder}")
    return 0


def format_ranker_metrics(metrics: dict[str, Any]) -> str:
    """A small text table of a :func:`train_mllm_ranker` run: ranker, images only, popularity, random."""
    keys = [f"{m}@{k}" for m in ("hr", "ndcg") for k in RANKER_KS]
    rows = [f"{'':24s}" + "".join(f"{k:>10s}" for k in keys)]
    for label, block in (
        (f"mllm ({metrics['train']['config']['mode']})", metrics["test"]),
        ("mllm, images only", metrics["image_only"]),
        ("popularity", metrics["popularity"]),
        ("random", metrics["random"]),
    ):
        rows.append(f"{label:24s}" + "".join(f"{block[k]:10.4f}" for k in keys))
    versus = metrics.get("vs_popularity")
    if versus:  # paired per-user difference of hits, ranker - popularity (absent from checkpoints written before it)
        rows.append(f"{'mllm - popularity':24s}" + "".join(
            f"{versus[k]:+10.4f}" if k in versus else f"{'':10s}" for k in keys) + "   (paired, per user)")
        rows.append(f"{'  standard error':24s}" + "".join(
            f"{versus[k + '_se']:10.4f}" if k in versus else f"{'':10s}" for k in keys))
    rows.append(
        f"{metrics['eval_users']} users, {metrics['protocol'].split(',')[0]}; "
        f"{metrics['train']['steps']} steps in {metrics['train']['train_seconds']:.0f} s{_threads_note(metrics)}"
    )
    return "\n".join(rows)
