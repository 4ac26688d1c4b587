"""``venomkit demo``: the built-in run recipe ``defenses/demo.yaml`` on the run engine.

On toyshop with the shipped zoo it trains an ID-only LightGCN and a content-aware VBPR
(features from ``zoo:toyshop-clip``), hardens VBPR with UAT-MC, runs every attack venomkit has
against VBPR and its hardened copy on the same cold targets, and writes the judgement table
and ``report.html``. Then VenomRec poisons the zoo's multimodal-LLM ranker
(``zoo:toyshop-vlm``) on a few cold targets against the clean fine-tune and ShadowCast
(:mod:`venomkit.runs.poisoning`, into ``OUT/venomrec`` with its own ``report.html``); the
report paths are the last lines printed. ``--fast`` runs both small (fewer targets, shorter
training and schedules) for a first look; both sizes' wall times on a 2-core machine are in
README.
"""

from __future__ import annotations

import argparse

DEMO_RECIPE = "defenses/demo.yaml"

FAST = (
    "targets.n=6",
    "targets.batch_size=6",
    "victims.lightgcn.train.epochs=30",
    "victims.vbpr.train.epochs=30",
    "defenses.uat_mc.config.epochs=5",
    "attacks.insa.config.steps=10",
    "attacks.expa.config.steps=10",
    "attacks.llm_rewrite.config.n_candidates=4",
    "attacks.auv_fusion.config.mlp_items=16",
    "attacks.auv_fusion.config.mlp_epochs=1",
    "attacks.auv_fusion.config.user_epochs=10",
)
"""Overrides of ``--fast`` (the same recipe, smaller)."""

POISONING = {
    "victim": "zoo:toyshop-vlm", "targets": 4, "eval_users": 16, "attacker_users": 24, "objective_users": 8,
    "finetune": {"steps": 30},
    "settings": [
        {"name": "clean", "attack": "direct_boosting", "poison": False},
        {"name": "shadowcast", "attack": "shadowcast"},
        {"name": "venomrec_text_only", "attack": "venomrec", "config": {"edit": "text", "rounds": 2}},
        {"name": "venomrec", "attack": "venomrec", "config": {"rounds": 2}},
    ],
}
"""The demo's VenomRec poisoning run (``venomkit.runs.poisoning.PoisoningRunConfig`` fields)."""

FAST_POISONING = {
    **POISONING, "targets": 2, "eval_users": 8, "attacker_users": 12, "objective_users": 4, "finetune": {"steps": 10},
    "settings": [POISONING["settings"][0], {"name": "venomrec", "attack": "venomrec", "config": {"rounds": 1, "image_steps": 3}}],
}
"""``--fast``: two targets, the clean fine-tune and VenomRec."""


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from venomkit.runs.cli import add_run_flags

    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help=f"overrides of {DEMO_RECIPE}, e.g. targets.n=10")
    parser.add_argument("--fast", action="store_true", help="a small run (6 targets, short training) in under 3 minutes on 2 cores")
    add_run_flags(parser)
    parser.set_defaults(out="runs/demo")
    for action in parser._actions:
        if action.dest == "out":
            action.required = False
            action.help = "output folder (default runs/demo; resumed when it holds the same run)"
    return parser


def cli_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from venomkit.config import build_config
    from venomkit.data.loaders import load_dataset
    from venomkit.runs.cli import run_from_args
    from venomkit.runs.poisoning import PoisoningRunConfig, run_poisoning

    status = run_from_args(DEMO_RECIPE, args.overrides, args, extra_overrides=list(FAST) if args.fast else [])
    if status != 0:
        return status
    values = dict(FAST_POISONING if args.fast else POISONING)
    if args.seed is not None:
        values["seed"] = args.seed
    config = build_config(PoisoningRunConfig, values, where="venomkit demo")
    out = Path(args.out) / "venomrec"
    summary = run_poisoning(config, load_dataset(args.data or "toyshop"), out, overwrite=args.overwrite, progress=not args.quiet,
                            device=args.device or "cpu", report=not args.no_report)
    print((out / "poisoning.md").read_text(), end="")
    if summary.get("report"):
        print(f"report (VenomRec): {summary['report']}")
    return 0
