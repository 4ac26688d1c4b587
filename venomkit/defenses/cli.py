"""``venomkit defend``: adversarial training (uat, uat-mc), its judgement, the mismatch analysis.

    venomkit defend uat-mc --victim CKPT --data SPEC --out DIR [--recipe defenses/uat_mc.yaml] [key=value ...]
    venomkit defend uat    --victim CKPT --data SPEC --out DIR [--recipe defenses/uat.yaml] [key=value ...]
    venomkit defend judge  --data SPEC --out DIR [--victims vbpr,mmgcn] [--targets 20] [--attacks ...]
    venomkit defend mismatch --victim CKPT --data SPEC --out DIR [--targets 20] [--top-k 50]

``key=value`` overrides any field of :class:`venomkit.defenses.uat_mc.UATConfig` (``eps=0.1
beta=1 lambda_align=4 steps=5 epochs=20``); unknown keys are errors listing the valid ones.
"""

from __future__ import annotations

import argparse
import math
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_RECIPES = {"uat": "uat.yaml", "uat_mc": "uat_mc.yaml"}


def add_defend_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Sub-commands of ``venomkit defend``."""
    sub = parser.add_subparsers(dest="defend_command", metavar="{uat-mc,uat,judge,mismatch}")
    sub.required = True
    for name, method in (("uat-mc", "uat_mc"), ("uat", "uat")):
        p = sub.add_parser(name, help=f"fine-tune a trained victim with {name.upper()} and write the hardened checkpoint")
        p.set_defaults(method=method)
        p.add_argument("overrides", nargs="*", metavar="key=value", help="UATConfig overrides, e.g. eps=0.1 beta=1 lambda_align=4 steps=5")
        p.add_argument("--victim", required=True, help="normally trained victim checkpoint folder (venomkit train)")
        p.add_argument("--data", required=True, help="the dataset the victim was trained on (same spec as venomkit train)")
        p.add_argument("--out", required=True, help="checkpoint folder to write (config.json, model.safetensors, metrics.json)")
        p.add_argument("--recipe", default=None, help=f"defense recipe YAML (default: defenses/{DEFAULT_RECIPES[method]} when present)")
        p.add_argument("--device", default="cpu")
        p.add_argument("--no-progress", action="store_true")

    j = sub.add_parser("judge", help="train w/o AT, UAT and UAT-MC victims and attack each (Table 2 of the paper)")
    j.add_argument("--data", required=True, help="dataset spec: toyshop, an atomic folder, the ML-100K posters folder")
    j.add_argument("--out", required=True, help="output folder (resumed when re-run)")
    j.add_argument("--victims", default="vbpr,mmgcn", help="comma-separated backbones (default vbpr,mmgcn)")
    j.add_argument("--attacks", default=None, help="comma-separated attacks (default: pgd,fgsm,token_hotflip,joint,feature_fgsm,feature_pgd)")
    j.add_argument("--targets", type=int, default=20, help="number of cold targets (default 20)")
    j.add_argument("--max-interactions", type=int, default=5)
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--image-encoder", default="zoo:toyshop-clip")
    j.add_argument("--text-encoder", default="zoo:toyshop-clip")
    j.add_argument("--train-epochs", type=int, default=200)
    j.add_argument("--train-patience", type=int, default=10)
    j.add_argument("--embed-dim", type=int, default=64)
    j.add_argument("--feature-eps", type=float, default=0.1, help="feature-space attacks: radius as a ratio of the row norm")
    j.add_argument("--uat-recipe", default=None, help="recipe of the UAT victims (default defenses/uat.yaml)")
    j.add_argument("--uat-mc-recipe", default=None, help="recipe of the UAT-MC victims (default defenses/uat_mc.yaml)")
    j.add_argument("--set", action="append", default=[], metavar="DEFENSE.key=value", help="override a defense field, e.g. uat_mc.lambda_align=4 or all.epochs=10")
    j.add_argument("--attack-recipes", default=None, help="folder of the raw attacks' recipe YAMLs (default: the checkout's attacks/); frozen into OUT/recipes/")
    j.add_argument("--attack-set", action="append", default=[], metavar="ATTACK.key=value", help="override a raw attack field, e.g. pgd.steps=20")
    j.add_argument("--device", default="cpu")
    j.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("mismatch", help="cross-modal gradient mismatch (paper section 3): Jaccard plot and restricted attacks")
    m.add_argument("--victim", required=True, help="victim checkpoint folder (reading visual and text features)")
    m.add_argument("--data", required=True)
    m.add_argument("--out", required=True, help="folder for mismatch.csv, summary.json and jaccard.png")
    m.add_argument("--targets", type=int, default=20)
    m.add_argument("--max-interactions", type=int, default=5)
    m.add_argument("--top-k", type=int, default=50, help="users per modality compared by the Jaccard index (default 50)")
    m.add_argument("--rank-k", type=int, default=50, help="the K of the promotion hinge (default 50)")
    m.add_argument("--no-attacks", action="store_true", help="skip the attacks restricted to each user group")
    m.add_argument("--feature-eps", type=float, default=0.1)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", default="cpu")
    m.add_argument("--no-progress", action="store_true")
    return parser


def default_recipe(method: str) -> Path | None:
    """``defenses/<uat|uat_mc>.yaml`` of the repository checkout, when it exists."""
    import venomkit

    path = Path(venomkit.__file__).resolve().parent.parent / "defenses" / DEFAULT_RECIPES[method]
    return path if path.is_file() else None


def load_defense_config(method: str, recipe: str | Path | None = None, overrides: Sequence[str] | dict[str, Any] = ()) -> Any:
    """A ``UATConfig`` from a recipe (``defense: uat|uat_mc`` + ``config:``) and overrides.

    The recipe's ``defense`` must name ``method``; unknown keys raise ValueError naming the
    file and listing the valid keys.
    """
    from venomkit.config import build_config, load_recipe, parse_overrides
    from venomkit.defenses.uat_mc import UATConfig, normalise_method

    method = normalise_method(method)
    values: dict[str, Any] = {}
    where = "defaults"
    path = Path(recipe) if recipe is not None else default_recipe(method)
    if path is not None:
        parsed = load_recipe(path, "defense")
        if normalise_method(parsed.name) != method:
            raise ValueError(f"{path}: recipe is for defense {parsed.name!r}, not {method!r}")
        values.update(parsed.config)
        where = str(path)
    values.update(overrides if isinstance(overrides, dict) else parse_overrides(list(overrides)))
    values["method"] = method
    return build_config(UATConfig, values, where=where)


def _cli_train(args: argparse.Namespace) -> int:
    from venomkit.data.loaders import load_dataset
    from venomkit.defenses.uat_mc import adversarial_train
    from venomkit.victims.checkpoint import load_victim, save_victim

    config = load_defense_config(args.method, args.recipe, args.overrides)
    dataset = load_dataset(args.data)
    victim = load_victim(args.victim, device=args.device)
    victim, metrics = adversarial_train(victim, dataset.split, config, progress=not args.no_progress)
    metrics["source_checkpoint"] = str(args.victim)
    metrics["data"] = str(args.data)
    metrics["command"] = "venomkit defend " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    save_victim(victim, args.out, metrics=metrics)
    b, a = metrics["test_before"].get("test", {}), metrics["test_after"].get("test", {})
    print(f"{config.method} on {victim.kind}: {metrics['train']['epochs_run']} epochs, {metrics['seconds_per_epoch']:.2f} s/epoch")
    for key in ("recall@20", "ndcg@20"):
        if key in b and key in a:
            print(f"  clean {key:<10} before {b[key]:.4f}  after {a[key]:.4f}  ({100 * (a[key] / b[key] - 1) if b[key] else float('nan'):+.1f}%)")
    print(f"checkpoint written to {args.out}")
    return 0


def _split_set(items: Sequence[str], valid: Sequence[str], what: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        scope, dot, key = head.partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"{what} {item!r} is not of the form NAME.key=value")
        if scope not in valid:
            raise ValueError(f"{what} {item!r}: {scope!r} is not one of {', '.join(valid)}")
        out.setdefault(scope, {})[key.strip()] = value.strip()
    return out


def _cli_judge(args: argparse.Namespace) -> int:
    from venomkit.data.loaders import load_dataset
    from venomkit.defenses.judgement import (
        ATTACKS,
        RAW_ATTACKS,
        Judge,
        JudgeConfig,
        format_table,
    )

    sets = _split_set(args.set, ("uat", "uat_mc", "all"), "--set")
    uat = load_defense_config("uat", args.uat_recipe, {**sets.get("all", {}), **sets.get("uat", {})})
    uat_mc = load_defense_config("uat_mc", args.uat_mc_recipe, {**sets.get("all", {}), **sets.get("uat_mc", {})})
    attack_sets = _split_set(args.attack_set, RAW_ATTACKS, "--attack-set")
    config = JudgeConfig(
        victims=tuple(v.strip() for v in args.victims.split(",") if v.strip()),
        attacks=tuple(a.strip() for a in args.attacks.split(",") if a.strip()) if args.attacks else ATTACKS,
        n_targets=args.targets,
        max_interactions=args.max_interactions,
        seed=args.seed,
        image_encoder=args.image_encoder,
        text_encoder=args.text_encoder,
        train_epochs=args.train_epochs,
        train_patience=args.train_patience,
        embed_dim=args.embed_dim,
        feature_eps=args.feature_eps,
        attack_overrides={k: [f"{kk}={vv}" for kk, vv in v.items()] for k, v in attack_sets.items()},
        attack_recipes=args.attack_recipes,
        device=args.device,
    )
    dataset = load_dataset(args.data)
    rows = Judge(dataset, args.out, config, uat=uat, uat_mc=uat_mc, progress=not args.no_progress).run()
    print(format_table(rows))
    print(f"table written to {Path(args.out) / 'table.md'} and table.csv")
    return 0


def _cli_mismatch(args: argparse.Namespace) -> int:
    import csv

    from venomkit.data.interactions import select_cold_targets
    from venomkit.data.loaders import load_dataset
    from venomkit.defenses.feature_attack import FeatureAttackConfig
    from venomkit.defenses.gradient_mismatch import plot_jaccard, run_mismatch
    from venomkit.victims.checkpoint import load_victim

    dataset = load_dataset(args.data)
    victim = load_victim(args.victim, device=args.device)
    train = dataset.split.train
    targets = select_cold_targets(train, args.targets, max_interactions=args.max_interactions, seed=args.seed).tolist()
    rows = run_mismatch(
        victim, targets, train, top_k=args.top_k, k=args.rank_k, attack_groups=not args.no_attacks,
        attack_config=FeatureAttackConfig(eps=args.feature_eps, steps=10, k=args.rank_k), progress=not args.no_progress,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat = [{**{k: v for k, v in r.items() if not k.startswith("top_")}, "item_id": dataset.catalog.item_ids[r["item_index"]], "n_top_visual": len(r["top_visual"]), "n_top_text": len(r["top_text"])} for r in rows]
    with (out / "mismatch.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    values = [r["jaccard"] for r in rows]
    plot_jaccard({victim.kind: values}, str(out / "jaccard.png"), title=f"Gradient mismatch, {victim.kind} on {dataset.name} (top-{args.top_k})")
    finite = [v for v in values if not math.isnan(v)]
    summary: dict[str, Any] = {"n_targets": len(rows), "top_k": args.top_k, "mean_jaccard": sum(finite) / max(len(finite), 1)}
    for key in flat[0]:
        if key.startswith("hr@50_") or key == "grad_cos":
            vals = [r[key] for r in flat if r[key] == r[key]]
            summary[f"mean_{key}"] = sum(vals) / max(len(vals), 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for key, value in summary.items():
        print(f"  {key:<22}{value:.4f}" if isinstance(value, float) else f"  {key:<22}{value}")
    print(f"plot written to {out / 'jaccard.png'}")
    return 0


def cli_defend(args: argparse.Namespace) -> int:
    """Run ``venomkit defend <sub-command>``; returns the exit status (2 on a bad argument)."""
    command = getattr(args, "defend_command", None)
    try:
        if command in ("uat-mc", "uat"):
            return _cli_train(args)
        if command == "judge":
            return _cli_judge(args)
        if command == "mismatch":
            return _cli_mismatch(args)
    except ValueError as exc:
        print(f"venomkit defend {command}: error: {exc}", file=sys.stderr)
        return 2
    print("venomkit defend: choose uat-mc, uat, judge or mismatch", file=sys.stderr)
    return 2
