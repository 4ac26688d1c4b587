"""``venomkit run`` and ``venomkit attack``: recipes through the run engine.

    venomkit run defenses/judge.yaml --data toyshop --out runs/judge targets.n=20
    venomkit run attacks/pgd.yaml --victim runs/vbpr --data toyshop --targets 6 steps=3 --out runs/pgd
    venomkit attack attacks/pgd.yaml --victim runs/vbpr --data toyshop --targets 50 --out runs/pgd eps=8/255
    accelerate launch --config_file assets/accelerate/cpu-2proc.yaml -m venomkit run attacks/pgd.yaml ...

``venomkit attack NAME_OR_RECIPE`` is ``venomkit run`` of an attack recipe (or a registry name)
with ``--victim`` required (VenomRec's defaults to ``zoo:toyshop-vlm``): the same outputs, ``results.csv``, ``summary.json``,
``images/<item>_clean.png``, ``_adv.png``, ``_grid.png``, ``texts.csv``, ``report.html``.
Overrides may stand anywhere on the line. The flags below fill or replace recipe sections;
``venomkit defend judge`` and ``venomkit demo`` are front-ends that call :func:`run_from_args`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from venomkit.config import check_int

logger = logging.getLogger(__name__)


def add_run_flags(parser: argparse.ArgumentParser, victim_required: bool = False) -> argparse.ArgumentParser:
    """The flags every run front-end shares (``venomkit run``, ``venomkit attack``)."""
    parser.add_argument("--out", required=True, help="output folder (resumed when it holds the same run)")
    parser.add_argument("--victim", required=victim_required, default=None,
                        help="victim: a checkpoint folder (venomkit train) or a kind to train (vbpr, amr, mmgcn, lightgcn); replaces the recipe's victims")
    parser.add_argument("--data", default=None, help="dataset: toyshop[:k=v,...], an atomic folder, the ML-100K posters folder")
    parser.add_argument("--targets", type=int, default=None, help="number of cold targets (targets.n)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the target selection, the attacks and the training")
    parser.add_argument("--batch-size", type=int, default=None, help="targets attacked in one tensor (targets.batch_size)")
    parser.add_argument("--max-interactions", type=int, default=None, help="cold = at most this many training interactions")
    parser.add_argument("--stealth-clip", default=None, metavar="SPEC", help="CLIP of the clip_* stealth figures (metrics.stealth_clip)")
    parser.add_argument("--shop-transform", default=None, metavar="PIPELINE", help="the shop's image pipeline: png (default), jpeg:Q, resize:S,jpeg:Q")
    parser.add_argument("--save-format", default=None, metavar="FORMAT", help="png (default), or jpeg:Q to also write a shop-ready <item>_adv.jpg")
    parser.add_argument("--device", default=None, help="cpu (default), cuda, ...")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per process while attacking (default 1; a poisoning run: torch's count); results depend on it, see README")
    parser.add_argument("--overwrite", action="store_true", help="replace a different run in --out instead of refusing")
    parser.add_argument("--cache", default=None, metavar="DIR", help="cache of trained victims and encoded catalogs (default $VENOMKIT_CACHE or ~/.cache/venomkit)")
    parser.add_argument("--no-cache", action="store_true", help="train every victim again, cache nothing")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress lines, only errors and the final table")
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``venomkit run``."""
    parser.add_argument("recipe", help="a run recipe (defenses/judge.yaml), an attack recipe (attacks/pgd.yaml) or a defense recipe")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="recipe overrides, e.g. targets.n=6 attacks.pgd.config.steps=3 (bare key=value sets an attack/defense recipe's config)")
    parser.add_argument("--surrogate", default=None, metavar="SPEC", help="grey-box: image encoder the attack optimises on (attack recipes)")
    return add_run_flags(parser)


def flags_from_args(args: argparse.Namespace) -> Any:
    from venomkit.runs.recipe import RunFlags

    return RunFlags(
        victim=getattr(args, "victim", None),
        data=getattr(args, "data", None),
        targets=getattr(args, "targets", None),
        seed=getattr(args, "seed", None),
        batch_size=getattr(args, "batch_size", None),
        max_interactions=getattr(args, "max_interactions", None),
        surrogate=getattr(args, "surrogate", None),
        stealth_clip=getattr(args, "stealth_clip", None),
        shop_transform=getattr(args, "shop_transform", None),
        device=getattr(args, "device", None),
        threads=getattr(args, "threads", None),
        save_format=getattr(args, "save_format", None),
    )


def check_flags(args: argparse.Namespace) -> None:
    """Bad numeric flags are named by their flag, before any work."""
    for flag, value, minimum in (("--targets", getattr(args, "targets", None), 1), ("--batch-size", getattr(args, "batch_size", None), 1),
                                 ("--seed", getattr(args, "seed", None), 0), ("--max-interactions", getattr(args, "max_interactions", None), 0),
                                 ("--threads", getattr(args, "threads", None), 1)):
        if value is not None:
            check_int(flag, value, minimum)


def run_from_args(recipe: str, overrides: list[str], args: argparse.Namespace, extra_overrides: list[str] = (),
                  victim_required: bool = False) -> int:
    """Load, run and print the end-of-run table; returns the exit status.

    ``victim_required`` (``venomkit attack``): a content attack needs ``--victim``; a poisoning
    attack defaults to the zoo ranker.
    """
    from venomkit.runs.engine import execute
    from venomkit.runs.recipe import load_run
    from venomkit.runs.tables import format_screen

    check_flags(args)
    from venomkit.runs.poisoning import cli_poisoning, poisoning_recipe

    poisoning = poisoning_recipe(recipe)  # the recipe file is read here, once
    if poisoning is not None:  # VenomRec: edits, a poisoned fine-tune per setting, ER@K (runs/poisoning.py)
        return cli_poisoning(poisoning, list(extra_overrides) + list(overrides), args)
    if victim_required and args.victim is None:
        raise ValueError(f"--victim is required for {recipe} (a checkpoint folder from venomkit train, or a kind to train)")
    run = load_run(recipe, list(extra_overrides) + list(overrides), flags_from_args(args))
    if getattr(args, "no_report", False):
        run.recipe.outputs.report = False
    cache: Any = None if getattr(args, "no_cache", False) else (args.cache if getattr(args, "cache", None) else "default")
    summary = execute(run, args.out, overwrite=getattr(args, "overwrite", False), cache_dir=cache, progress=not getattr(args, "quiet", False))
    if summary:  # the main process
        print(format_screen(summary))
        print(f"results: {args.out}/results.csv ({summary['n_rows']} rows, {summary['num_processes']} process{'es' if summary['num_processes'] > 1 else ''}, {summary['seconds']:.0f} s)")
        if summary.get("report"):
            print(f"report: {summary['report']}")
    return 0


def cli_run(args: argparse.Namespace) -> int:
    """``venomkit run``."""
    return run_from_args(args.recipe, args.overrides, args)


def add_attack_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``venomkit attack NAME --victim CKPT --data SPEC --targets N --out DIR [k=v ...]``."""
    from venomkit.attacks import ATTACK_NAMES, POISONING_ATTACK_NAMES

    parser.add_argument("name", help=f"attack name ({', '.join(ATTACK_NAMES + POISONING_ATTACK_NAMES)}) or a recipe YAML (attacks/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. eps=16/255 steps=20 (anywhere on the line)")
    parser.add_argument("--surrogate", default=None, metavar="SPEC", help="grey-box: image encoder spec the attack optimises on")
    return add_run_flags(parser, victim_required=False)


def cli_attack(args: argparse.Namespace) -> int:
    """``venomkit attack``."""
    return run_from_args(args.name, args.overrides, args, victim_required=True)
