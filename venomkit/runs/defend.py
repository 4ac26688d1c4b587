"""``venomkit defend``: adversarial training (uat, uat-mc), its judgement, the mismatch analysis.

    venomkit defend uat-mc --victim CKPT --data SPEC --out DIR [--recipe defenses/uat_mc.yaml] [key=value ...]
    venomkit defend uat    --victim CKPT --data SPEC --out DIR [--recipe defenses/uat.yaml] [key=value ...]
    venomkit defend judge  --data SPEC --out DIR [--victims vbpr,mmgcn] [--targets 20] [--attacks ...]
    venomkit defend mismatch --victim CKPT --data SPEC --out DIR [--targets 20] [--top-k 50]

``key=value`` overrides any field of :class:`venomkit.defenses.uat_mc.UATConfig` (``eps=0.1
beta=1 lambda_align=4 steps=5 epochs=20``); unknown keys are errors listing the valid ones.
``judge`` is the built-in run recipe ``defenses/judge.yaml`` on the run engine (``venomkit run
defenses/judge.yaml`` with the flags below turned into recipe overrides): it resumes, shards
under ``accelerate launch`` and writes ``table.md`` / ``table.csv`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_RECIPES = {"uat": "defenses/uat.yaml", "uat_mc": "defenses/uat_mc.yaml"}
JUDGE_RECIPE = "defenses/judge.yaml"
FEATURE_ATTACKS = ("feature_fgsm", "feature_pgd")


def add_defend_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Sub-commands of ``venomkit defend``."""
    from venomkit.runs.cli import add_run_flags

    sub = parser.add_subparsers(dest="defend_command", metavar="{uat-mc,uat,judge,mismatch}")
    sub.required = True
    for name, method in (("uat-mc", "uat_mc"), ("uat", "uat")):
        p = sub.add_parser(name, help=f"fine-tune a trained victim with {name.upper()} and write the hardened checkpoint")
        p.set_defaults(method=method)
        p.add_argument("overrides", nargs="*", metavar="key=value", help="UATConfig overrides, e.g. eps=0.1 beta=1 lambda_align=4 steps=5")
        p.add_argument("--victim", required=True, help="normally trained victim checkpoint folder (venomkit train)")
        p.add_argument("--data", required=True, help="the dataset the victim was trained on (same spec as venomkit train)")
        p.add_argument("--out", required=True, help="checkpoint folder to write (config.json, model.safetensors, metrics.json)")
        p.add_argument("--recipe", default=None, help=f"defense recipe YAML (default: {DEFAULT_RECIPES[method]})")
        p.add_argument("--device", default="cpu")
        p.add_argument("--quiet", action="store_true", help="no progress bars or lines")

    j = sub.add_parser("judge", help="train w/o AT, UAT and UAT-MC victims and attack each (Table 2 of the paper), on the run engine")
    j.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides of defenses/judge.yaml, e.g. targets.n=50")
    j.add_argument("--recipe", default=JUDGE_RECIPE, help=f"the judgement's run recipe (default {JUDGE_RECIPE})")
    j.add_argument("--victims", default=None, help="comma-separated backbones (default: the recipe's, vbpr,mmgcn)")
    j.add_argument("--attacks", default=None, help="comma-separated attacks: recipe names of attacks/ (pgd, fgsm, token_hotflip, joint, ...) or feature_fgsm, feature_pgd")
    j.add_argument("--image-encoder", default=None, help="image encoder of the trained victims (default zoo:toyshop-clip)")
    j.add_argument("--text-encoder", default=None, help="text encoder of the trained victims (default zoo:toyshop-clip)")
    j.add_argument("--train-epochs", type=int, default=None)
    j.add_argument("--train-patience", type=int, default=None)
    j.add_argument("--embed-dim", type=int, default=None)
    j.add_argument("--feature-eps", type=float, default=None, help="feature-space attacks: radius as a ratio of the row norm (default 0.1)")
    j.add_argument("--uat-recipe", default=None, help="recipe of the UAT victims (default defenses/uat.yaml)")
    j.add_argument("--uat-mc-recipe", default=None, help="recipe of the UAT-MC victims (default defenses/uat_mc.yaml)")
    j.add_argument("--set", action="append", default=[], metavar="DEFENSE.key=value", help="override a defense field, e.g. uat_mc.lambda_align=4 or all.epochs=10")
    j.add_argument("--attack-recipes", default=None, help="folder of the raw attacks' recipe YAMLs (default: the checkout's attacks/)")
    j.add_argument("--attack-set", action="append", default=[], metavar="ATTACK.key=value", help="override an attack field, e.g. pgd.steps=20")
    add_run_flags(j)

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
    m.add_argument("--quiet", action="store_true")
    return parser


def _cli_train(args: argparse.Namespace) -> int:
    """Harden one checkpoint with UAT / UAT-MC into ``--out``."""
    from venomkit.data.loaders import load_dataset
    from venomkit.defenses.uat_mc import adversarial_train
    from venomkit.runs.recipe import resolve_defense
    from venomkit.victims.checkpoint import load_victim, save_victim

    resolved = resolve_defense(args.recipe or DEFAULT_RECIPES[args.method], args.overrides)
    if resolved.method != args.method:
        raise ValueError(f"{resolved.recipe}: the recipe is for defense {resolved.method!r}, not {args.method!r}")
    config = resolved.config
    dataset = load_dataset(args.data)
    victim = load_victim(args.victim, device=args.device)
    victim, metrics = adversarial_train(victim, dataset.split, config, progress=not args.quiet)
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


def _split_set(items: Sequence[str], valid: Sequence[str] | None, what: str) -> list[tuple[str, str, str]]:
    """``["uat_mc.lambda_align=4"]`` -> ``[("uat_mc", "lambda_align", "4")]`` (names checked when ``valid``)."""
    out = []
    for item in items:
        head, sep, value = item.partition("=")
        scope, dot, key = head.partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"{what} {item!r} is not of the form NAME.key=value")
        if valid is not None and scope not in valid:
            raise ValueError(f"{what} {item!r}: {scope!r} is not one of {', '.join(valid)}")
        out.append((scope.strip(), key.strip(), value.strip()))
    return out


def judge_overrides(args: argparse.Namespace) -> list[str]:
    """The judgement's flags as overrides of its run recipe."""
    out: list[str] = []
    if args.victims:
        victims = [v.strip() for v in args.victims.split(",") if v.strip()]
        out.append("victims=" + ",".join(victims))
    else:
        victims = None
    if args.attacks:
        attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
        folder = Path(args.attack_recipes) if args.attack_recipes else None
        refs = [a if a in FEATURE_ATTACKS else str((folder / f"{a}.yaml") if folder else f"attacks/{a}.yaml") for a in attacks]
        out.append("attacks=" + ",".join(refs))
    elif args.attack_recipes:
        raise ValueError("--attack-recipes needs --attacks (the names of the recipes to take from that folder)")
    if args.uat_recipe or args.uat_mc_recipe:
        out.append(f"defenses={args.uat_recipe or DEFAULT_RECIPES['uat']},{args.uat_mc_recipe or DEFAULT_RECIPES['uat_mc']}")
    for victim in victims or ["vbpr", "mmgcn"] if args.victims is None else victims:
        for flag, key in (("train_epochs", "train.epochs"), ("train_patience", "train.patience"), ("embed_dim", "config.embed_dim"),
                          ("image_encoder", "image_encoder"), ("text_encoder", "text_encoder")):
            value = getattr(args, flag)
            if value is not None:
                out.append(f"victims.{victim}.{key}={value}")
    if args.feature_eps is not None:
        present = [a for a in FEATURE_ATTACKS if not args.attacks or a in args.attacks.split(",")]
        out += [f"attacks.{a}.config.eps={args.feature_eps}" for a in present]
    for scope, key, value in _split_set(args.set, ("uat", "uat_mc", "all"), "--set"):
        for defense in (("uat", "uat_mc") if scope == "all" else (scope,)):
            out.append(f"defenses.{defense}.config.{key}={value}")
    for scope, key, value in _split_set(args.attack_set, None, "--attack-set"):
        out.append(f"attacks.{scope}.config.{key}={value}")
    return out


def _cli_judge(args: argparse.Namespace) -> int:
    from venomkit.runs.cli import run_from_args

    return run_from_args(args.recipe, args.overrides, args, extra_overrides=judge_overrides(args))


def _cli_mismatch(args: argparse.Namespace) -> int:
    import csv

    from venomkit.data.interactions import select_cold_targets
    from venomkit.data.loaders import load_dataset
    from venomkit.attacks.feature import FeatureAttackConfig
    from venomkit.defenses.gradient_mismatch import plot_jaccard, run_mismatch
    from venomkit.victims.checkpoint import load_victim

    dataset = load_dataset(args.data)
    victim = load_victim(args.victim, device=args.device)
    train = dataset.split.train
    targets = select_cold_targets(train, args.targets, max_interactions=args.max_interactions, seed=args.seed).tolist()
    rows = run_mismatch(
        victim, targets, train, top_k=args.top_k, k=args.rank_k, attack_groups=not args.no_attacks,
        attack_config=FeatureAttackConfig(eps=args.feature_eps, steps=10, k=args.rank_k), progress=not args.quiet,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat = [{**{k: v for k, v in r.items() if not k.startswith("top_")}, "item_id": dataset.catalog.item_ids[r["item_index"]], "n_top_visual": len(r["top_visual"]), "n_top_text": len(r["top_text"])} for r in rows]
    from venomkit.atomic import write_csv, write_json

    write_csv(out / "mismatch.csv", flat)
    values = [r["jaccard"] for r in rows]
    plot_jaccard({victim.kind: values}, str(out / "jaccard.png"), title=f"Gradient mismatch, {victim.kind} on {dataset.name} (top-{args.top_k})")
    finite = [v for v in values if not math.isnan(v)]
    summary: dict[str, Any] = {"n_targets": len(rows), "top_k": args.top_k, "mean_jaccard": sum(finite) / max(len(finite), 1)}
    for key in flat[0]:
        if key.startswith("hr@50_") or key == "grad_cos":
            vals = [r[key] for r in flat if r[key] == r[key]]
            summary[f"mean_{key}"] = sum(vals) / max(len(vals), 1)
    write_json(out / "summary.json", summary)
    for key, value in summary.items():
        print(f"  {key:<22}{value:.4f}" if isinstance(value, float) else f"  {key:<22}{value}")
    print(f"plot written to {out / 'jaccard.png'}")
    return 0


def cli_defend(args: argparse.Namespace) -> int:
    """Run ``venomkit defend <sub-command>``; bad input raises ValueError (one line, exit 2 in the CLI)."""
    command = args.defend_command
    if command in ("uat-mc", "uat"):
        return _cli_train(args)
    if command == "judge":
        return _cli_judge(args)
    return _cli_mismatch(args)
