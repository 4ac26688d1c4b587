"""The ``venomkit`` command line.

Each sub-command lives next to the code it drives and exposes two functions: one adding its
arguments to an argparse parser and one running it. Only the chosen sub-command's module is
imported, so ``venomkit --help`` answers at once and a command pays only for what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from venomkit import __version__


@dataclass(frozen=True)
class Command:
    module: str
    add_arguments: str
    run: str
    help: str


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "venomkit.demo", "add_demo_arguments", "cli_demo",
        "tour venomkit on toyshop: data, victims, evaluation and an attack (the README's first command)",
    ),
    "toyshop": Command(
        "venomkit.data.toyshop", "add_toyshop_arguments", "cli_toyshop",
        "write the synthetic toyshop catalog to a folder in RecBole atomic format",
    ),
    "train": Command(
        "venomkit.victims.training", "add_train_arguments", "cli_train",
        "train a victim recommender (vbpr, amr, mmgcn, lightgcn) and write its checkpoint folder",
    ),
    "zoo": Command(
        "venomkit.zoo.build", "add_zoo_arguments", "cli_zoo",
        "build or list the offline model zoo (tiny CLIP, CNN, Stable Diffusion, VLM, LM)",
    ),
    "attack": Command(
        "venomkit.attacks.runner", "add_attack_arguments", "cli_attack",
        "run a promotion attack on raw images/texts against a victim and measure HR and stealth",
    ),
    "stealth": Command(
        "venomkit.eval.stealth", "add_stealth_arguments", "cli_stealth",
        "stealth figures (SSIM, PSNR, L-inf, L2, CLIP similarity) between two folders of images",
    ),
    "defend": Command(
        "venomkit.defenses.cli", "add_defend_arguments", "cli_defend",
        "adversarially train a victim (uat, uat-mc) and judge it against raw-content attacks",
    ),
}


def _chosen_command(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="venomkit",
        description="Red-team multimodal recommender systems on raw images and texts.",
    )
    parser.add_argument("--version", action="version", version=f"venomkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen_command(argv)
    for name, command in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        if name == chosen:
            module = importlib.import_module(command.module)
            getattr(module, command.add_arguments)(sub_parser)
            sub_parser.set_defaults(_run=getattr(module, command.run))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
