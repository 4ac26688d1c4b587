"""``venomkit attack NAME``: attack N cold targets of a trained victim and write the evidence.

Output folder::

    run.json      what ran (attack, config, victim, data, targets); a resumed run must match it
    results.csv   one row per target: hr@K before/after, mean/median rank before/after, RI,
                  stealth figures (computed on the SAVED PNGs), text figures
    summary.json  means over targets, RI of the mean HR@K, timings
    images/<item_id>_clean.png, <item_id>_adv.png, <item_id>_grid.png  (clean | adv | 10x diff)
    texts.csv     item, original, adversarial (text attacks)

Targets run in batches of ``batch_size`` (one tensor), but every figure is per target: the
"after" ranking of target t re-encodes t's saved adversarial PNG (and text) through the
victim, with only t's content replaced (the other targets stay clean), exactly as if t had
been attacked alone. Rows are appended atomically (tmp file + ``os.replace``) after each
batch, so an interrupted run resumes by skipping the targets already in results.csv.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.attacks import ATTACK_NAMES, get_attack
from venomkit.attacks.base import Attack, Knowledge, token_edit_ratio
from venomkit.config import build_config, load_recipe, parse_overrides
from venomkit.data.catalog import load_image_file, save_png
from venomkit.data.dataset import Dataset
from venomkit.data.interactions import select_cold_targets
from venomkit.victims.base import Victim

KS = (5, 10, 20, 50)
GRID_AMPLIFY = 10.0


# ----------------------------------------------------------------------------------------
# Building the attack
# ----------------------------------------------------------------------------------------


def resolve_attack(name: str, overrides: Sequence[str] = (), surrogate: Any = None, device: str = "cpu") -> tuple[Attack, dict]:
    """An attack from a registry name or a recipe YAML path, with ``key=value`` overrides.

    Returns (attack, description dict). Unknown keys raise ValueError listing the valid ones.
    Attacks that need extra models (TAaMR's classifier) get them loaded here by spec.
    """
    path = Path(name)
    if name.endswith((".yaml", ".yml")) or path.is_file():
        recipe = load_recipe(path, "attack")
        attack_name, values, where, description = recipe.name, dict(recipe.config), str(path), recipe.description
    else:
        attack_name, values, where, description = name, {}, "defaults", ""
    cls = get_attack(attack_name)
    values.update(parse_overrides(list(overrides)))
    config = build_config(cls.config_class, values, where=where)
    kwargs: dict[str, Any] = {"surrogate": surrogate}
    if cls.name == "taamr":
        from venomkit.attacks.taamr import load_classifier

        if config.classifier is None:
            raise ValueError("taamr: set classifier=SPEC (e.g. zoo:toyshop-cnn) to run it from the command line")
        kwargs["classifier"] = load_classifier(config.classifier, config.head, device=device)
    attack = cls(config, **kwargs)
    return attack, {"attack": cls.name, "recipe": where, "description": description, "config": _jsonable(dataclasses.asdict(config))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------


def image_stealth(clean: torch.Tensor, adv: torch.Tensor) -> dict[str, np.ndarray]:
    """SSIM / PSNR / L-inf / L2 per image pair (N, 3, H, W) in [0, 1] (the saved PNGs).

    SSIM: Gaussian 11x11 window, sigma 1.5, data_range 1 (skimage's ``gaussian_weights=True,
    use_sample_covariance=False``). Uses ``venomkit.eval.stealth`` when present.
    """
    try:
        from venomkit.eval import stealth  # type: ignore[attr-defined]

        return {
            "ssim": np.asarray(stealth.ssim(clean, adv), dtype=float).reshape(-1),
            "psnr": np.asarray(stealth.psnr(clean, adv), dtype=float).reshape(-1),
            "linf": np.asarray(stealth.linf(clean, adv), dtype=float).reshape(-1),
            "l2": np.asarray(stealth.l2(clean, adv), dtype=float).reshape(-1),
        }
    except (ImportError, AttributeError):
        pass
    from skimage.metrics import structural_similarity

    diff = (adv - clean).flatten(1).double()
    mse = diff.pow(2).mean(1)
    ssim = [
        structural_similarity(c.numpy(), a.numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0)
        for c, a in zip(clean.double(), adv.double())
    ]
    return {
        "ssim": np.asarray(ssim, dtype=float),
        "psnr": torch.where(mse > 0, 10 * torch.log10(1.0 / mse.clamp_min(1e-20)), torch.full_like(mse, float("inf"))).numpy(),
        "linf": diff.abs().max(1).values.numpy(),
        "l2": diff.norm(dim=1).numpy(),
    }


def grid_image(clean: torch.Tensor, adv: torch.Tensor, amplify: float = GRID_AMPLIFY, pad: int = 2) -> torch.Tensor:
    """(3, H, 3W + 2 pad): clean | adversarial | 0.5 + amplify * (adv - clean), white gaps."""
    diff = (0.5 + amplify * (adv - clean)).clamp(0, 1)
    gap = torch.ones(3, clean.shape[1], pad)
    return torch.cat([clean, gap, adv, gap, diff], dim=2)


def image_file_stem(item_id: str) -> str:
    """The file-name stem of an item's images in a run folder (``<stem>_clean.png``, ``_adv.png``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(item_id))


# ----------------------------------------------------------------------------------------
# Atomic, resumable result files
# ----------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows_atomic(path: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def _evaluate_one(victim: Victim, features: dict[str, torch.Tensor] | None, target: int, train) -> dict[str, float]:
    """HR@K and rank figures of ONE target with only its rows replaced by ``features``."""
    from venomkit.eval.ranking import evaluate_targets

    idx = torch.tensor([target], device=victim.device)
    user_emb, item_emb = victim(None if features is None else victim.features_with(idx, features))
    out = evaluate_targets(user_emb, item_emb, [target], train, ks=KS)
    return {k: float(v[0]) for k, v in out.items()}


def victim_clip_pair(victim: Victim) -> tuple[Any, Any] | None:
    """The victim's ``(image, text)`` encoders when they are one open_clip model, else None."""
    from venomkit.encoders.openclip import OpenClipImageEncoder, OpenClipTextEncoder

    img, txt = victim.image_encoder, victim.text_encoder
    if isinstance(img, OpenClipImageEncoder) and isinstance(txt, OpenClipTextEncoder) and img.spec == txt.spec:
        return img, txt
    return None


def run_attack(
    attack: Attack,
    victim: Victim,
    dataset: Dataset,
    out_dir: str | Path,
    n_targets: int = 50,
    batch_size: int = 16,
    seed: int = 0,
    max_interactions: int = 5,
    targets: Sequence[int] | None = None,
    meta: dict | None = None,
    progress: bool = True,
    stealth_clip: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Attack cold targets of ``victim`` on ``dataset`` and write the run folder; returns the summary.

    ``targets`` (item indices) overrides the seeded cold-target selection. Resumes from an
    existing ``results.csv`` when the run settings in ``run.json`` match.

    ``stealth_clip``: the ``(ImageEncoder, TextEncoder)`` CLIP pair of the ``clip_*`` stealth
    figures; None uses the victim's own encoders when they are one open_clip model, and
    otherwise leaves the ``clip_*`` columns out (a CNN's features are not CLIP's). The
    victim's own image encoder always gives ``victim_image_sim``.
    """
    from venomkit.eval.ranking import relative_improvement

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    catalog = dataset.catalog
    train = dataset.split.train
    if targets is None:
        targets = select_cold_targets(train, n_targets, max_interactions=max_interactions, seed=seed).tolist()
    targets = [int(t) for t in targets]
    run_info = {**(meta or {}), "targets": [catalog.item_ids[t] for t in targets], "dataset": dataset.name, "seed": seed}
    run_file = out / "run.json"
    if run_file.is_file():
        previous = json.loads(run_file.read_text())
        keys = ("attack", "config", "targets", "dataset")
        if any(previous.get(k) != run_info.get(k) for k in keys):
            raise ValueError(f"{out} holds a different run (attack, config, targets or dataset differ): use another --out")
    _write_json_atomic(run_file, run_info)

    results_path, texts_path = out / "results.csv", out / "texts.csv"
    rows = _read_rows(results_path)
    text_rows = _read_rows(texts_path)
    done = {r["item_id"] for r in rows}
    todo = [t for t in targets if catalog.item_ids[t] not in done]
    train_csr = train.matrix
    knowledge_base = Knowledge(
        train=train_csr,
        popularity=train.popularity(),
        texts=catalog.texts,
        images=catalog.image_batch,
    )
    categories = catalog.attributes.get("category")
    perturbs_text = "text" in attack.perturbs
    perturbs_image = "visual" in attack.perturbs
    fields: list[str] | None = list(rows[0].keys()) if rows else None
    device = victim.device
    clip_pair = stealth_clip if stealth_clip is not None else victim_clip_pair(victim)
    t_attack = 0.0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(targets), initial=len(targets) - len(todo), desc=f"attack {attack.name}", disable=None if progress else True)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        idx = torch.tensor(batch)
        images = catalog.image_batch(batch)
        texts = catalog.text_batch(batch)
        words = [[str(categories[t])] for t in batch] if categories is not None else None
        knowledge = dataclasses.replace(knowledge_base, protected_words=words)
        t0 = time.perf_counter()
        result = attack(victim, images.to(device), texts, idx, knowledge=knowledge)
        t_attack += time.perf_counter() - t0

        # Save, then read back: every figure below comes from the saved files.
        clean_png, adv_png = [], []
        for b, t in enumerate(batch):
            name = image_file_stem(catalog.item_ids[t])
            clean_path, adv_path = out / "images" / f"{name}_clean.png", out / "images" / f"{name}_adv.png"
            save_png(images[b], clean_path)
            clean_png.append(load_image_file(clean_path))
            if perturbs_image:
                save_png(result.adv_images[b].cpu(), adv_path)
                adv_png.append(load_image_file(adv_path))
                save_png(grid_image(clean_png[-1], adv_png[-1]), out / "images" / f"{name}_grid.png")
        clean_png_t = torch.stack(clean_png)
        adv_png_t = torch.stack(adv_png) if perturbs_image else clean_png_t
        adv_texts = result.adv_texts if result.adv_texts is not None else texts
        with torch.no_grad():
            feats = victim.encode_content(adv_png_t.to(device) if "visual" in victim.modalities else None, adv_texts if "text" in victim.modalities else None)
            txt_enc = victim.text_encoder
            clip = {}
            own = victim.image_encoder
            if own is not None:
                # The adversarial PNG's features are the ones just re-encoded for scoring.
                own_adv = feats["visual"] if "visual" in feats else own(adv_png_t.to(device))
                own_clean = own(clean_png_t.to(device))
                clip["victim_image_sim"] = F.cosine_similarity(own_clean, own_adv, dim=1).cpu().numpy()
            if clip_pair is not None:
                clip_img, clip_txt = clip_pair
                f_clean = own_clean if clip_img is own else clip_img(clean_png_t.to(device))
                f_adv = own_adv if clip_img is own else clip_img(adv_png_t.to(device))
                f_text = clip_txt(list(texts))
                clip["clip_image_sim"] = F.cosine_similarity(f_clean, f_adv, dim=1).cpu().numpy()
                clip["clip_text_sim_clean"] = F.cosine_similarity(f_clean, f_text, dim=1).cpu().numpy()
                clip["clip_text_sim_adv"] = F.cosine_similarity(f_adv, f_text, dim=1).cpu().numpy()
            if perturbs_text and txt_enc is not None:
                clip["text_sim"] = F.cosine_similarity(txt_enc(list(texts)), txt_enc(list(adv_texts)), dim=1).cpu().numpy()
        stealth = image_stealth(clean_png_t, adv_png_t) if perturbs_image else {}
        for b, t in enumerate(batch):
            before = _evaluate_one(victim, None, t, train_csr)
            after = _evaluate_one(victim, {m: f[b : b + 1] for m, f in feats.items()}, t, train_csr)
            row: dict[str, Any] = {"item_id": catalog.item_ids[t], "item_index": t, "popularity": int(knowledge_base.popularity[t])}
            for k in KS:
                row[f"hr@{k}_before"] = before[f"hr@{k}"]
                row[f"hr@{k}_after"] = after[f"hr@{k}"]
            row["mean_rank_before"], row["mean_rank_after"] = before["mean_rank"], after["mean_rank"]
            row["median_rank_before"], row["median_rank_after"] = before["median_rank"], after["median_rank"]
            row["ri@50"] = float(relative_improvement(before["hr@50"], after["hr@50"]))
            row["n_users"] = int(before["n_eligible"])
            for key, values in {**stealth, **clip}.items():
                row[key] = float(values[b])
            if perturbs_text:
                enc = victim.text_encoder
                row["text_edit_ratio"] = token_edit_ratio(enc.tokenize([texts[b]])[0].tolist(), enc.tokenize([adv_texts[b]])[0].tolist()) if enc is not None else float("nan")
                text_rows.append({"item_id": catalog.item_ids[t], "original": texts[b], "adversarial": adv_texts[b]})
            for key, values in result.diagnostics.items():
                row[f"diag_{key}"] = float(values[b])
            rows.append(row)
            if fields is None:
                fields = list(row.keys())
        _write_rows_atomic(results_path, rows, fields)
        if perturbs_text:
            _write_rows_atomic(texts_path, text_rows, ["item_id", "original", "adversarial"])
        bar.update(len(batch))
    bar.close()
    summary = summarise(rows, run_info)
    summary["attack_seconds_this_session"] = t_attack
    _write_json_atomic(out / "summary.json", summary)
    return summary


def summarise(rows: list[dict[str, Any]], run_info: dict) -> dict[str, Any]:
    """Means of every numeric column over targets, plus RI of the mean HR@K (UAT-MC's reading)."""
    from venomkit.eval.ranking import relative_improvement

    means: dict[str, float] = {}
    if rows:
        for key in rows[0]:
            if key in ("item_id", "item_index"):
                continue
            try:
                values = np.asarray([float(r[key]) for r in rows], dtype=float)
            except (TypeError, ValueError):
                continue
            finite = values[np.isfinite(values)]
            means[key] = float(finite.mean()) if finite.size else float("nan")
    ri = {f"ri@{k}_of_means": float(relative_improvement(means.get(f"hr@{k}_before", 0.0), means.get(f"hr@{k}_after", 0.0))) for k in KS if f"hr@{k}_before" in means}
    return _jsonable({"n_targets": len(rows), "means": means, **ri, "run": {k: v for k, v in run_info.items() if k != "targets"}})


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def add_attack_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``venomkit attack NAME --victim CKPT --data SPEC --targets N --out DIR [k=v ...]``."""
    parser.add_argument("name", help=f"attack name ({', '.join(ATTACK_NAMES)}) or a recipe YAML (attacks/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. eps=16/255 steps=20")
    parser.add_argument("--victim", required=True, help="victim checkpoint folder (save_victim)")
    parser.add_argument("--data", required=True, help="dataset spec: toyshop[:k=v,...], an atomic folder, the ML-100K posters folder")
    parser.add_argument("--targets", type=int, default=50, help="number of cold target items (default 50)")
    parser.add_argument("--out", required=True, help="output folder (resumed when it holds the same run)")
    parser.add_argument("--batch-size", type=int, default=16, help="targets attacked in one tensor (default 16)")
    parser.add_argument("--max-interactions", type=int, default=5, help="cold = at most this many training interactions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the target selection and of the attack")
    parser.add_argument("--surrogate", default=None, help="grey-box: image encoder spec the attack optimises on")
    parser.add_argument(
        "--stealth-clip",
        default=None,
        metavar="SPEC",
        help="CLIP of the clip_* stealth figures (default: the victim's encoders when they are one CLIP, else none; e.g. zoo:toyshop-clip)",
    )
    parser.add_argument("--device", default="cpu")
    return parser


def cli_attack(args: argparse.Namespace) -> int:
    """Run ``venomkit attack``; prints the summary table; returns the exit status."""
    from venomkit.data.loaders import load_dataset
    from venomkit.victims.checkpoint import load_victim

    try:
        surrogate = None
        if args.surrogate:
            from venomkit.encoders.loading import load_image_encoder

            surrogate = load_image_encoder(args.surrogate, device=args.device)
        overrides = list(args.overrides)
        if not any(o.startswith("seed=") for o in overrides):
            overrides.append(f"seed={args.seed}")
        attack, meta = resolve_attack(args.name, overrides, surrogate=surrogate, device=args.device)
        dataset = load_dataset(args.data)
        victim = load_victim(args.victim, device=args.device)
        stealth_clip = None
        if getattr(args, "stealth_clip", None):
            from venomkit.encoders.loading import load_encoders

            stealth_clip = load_encoders(args.stealth_clip, device=args.device)
            if stealth_clip[1] is None:
                raise ValueError(f"--stealth-clip {args.stealth_clip!r} has no text tower; give a CLIP (open_clip) spec")
        clip_spec = args.stealth_clip if stealth_clip is not None else (victim.image_encoder.spec if victim_clip_pair(victim) else None)
        meta.update({"victim": str(args.victim), "data": str(args.data), "surrogate": args.surrogate, "stealth_clip": clip_spec})
        summary = run_attack(
            attack,
            victim,
            dataset,
            args.out,
            n_targets=args.targets,
            batch_size=args.batch_size,
            seed=args.seed,
            max_interactions=args.max_interactions,
            meta=meta,
            stealth_clip=stealth_clip,
        )
    except ValueError as exc:
        print(f"venomkit attack: error: {exc}", file=sys.stderr)
        return 2
    m = summary["means"]
    print(f"{meta['attack']} on {summary['n_targets']} targets -> {args.out}")
    for k in KS:
        print(f"  HR@{k:<3} before {m.get(f'hr@{k}_before', float('nan')):.4f}  after {m.get(f'hr@{k}_after', float('nan')):.4f}")
    for key in ("ssim", "psnr", "linf", "text_sim", "text_edit_ratio"):
        if key in m:
            print(f"  {key:<16}{m[key]:.4f}")
    return 0
