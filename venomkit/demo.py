"""``venomkit demo``: the built-in run recipe ``defenses/demo.yaml`` on the run engine.

On toyshop with the shipped zoo it trains an ID-only LightGCN and a content-aware VBPR
(features from ``zoo:toyshop-clip``), hardens VBPR with UAT-MC, runs every attack venomkit has
against VBPR and its hardened copy on the same cold targets, and writes the judgement table
and ``report.html`` (its path is the last line printed). ``--fast`` runs it small (fewer
targets, shorter training and schedules) for a first look; both sizes' wall times on a
2-core machine are in README.
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
    from venomkit.runs.cli import run_from_args

    return run_from_args(DEMO_RECIPE, args.overrides, args, extra_overrides=list(FAST) if args.fast else [])
