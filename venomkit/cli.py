"""The ``venomkit`` command line.

Each sub-command lives next to the code it drives and exposes two functions: one adding its
arguments to an argparse parser and one running it. Only the chosen sub-command's module is
imported, so ``venomkit --help`` answers at once and a command pays only for what it uses.

Conventions every command follows:

* options and ``key=value`` overrides may stand anywhere on the line (intermixed parsing);
* bad input -- a flag, a recipe, a data file, a checkpoint -- ends in ONE line on stderr,
  ``venomkit <command>: error: <what, where, and the expected form>``, and exit status 2;
* progress goes to stderr (bars on a terminal, periodic lines otherwise; ``--quiet`` where a
  command has it), results to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
        "tour venomkit on toyshop: victims, every attack, UAT-MC and the judgement, ending with report.html",
    ),
    "run": Command(
        "venomkit.runs.cli", "add_run_arguments", "cli_run",
        "run a recipe (a run, or an attack/defense recipe with --victim) on one process or many (accelerate launch)",
    ),
    "report": Command(
        "venomkit.runs.report", "add_report_arguments", "cli_report",
        "rebuild DIR/report.html of a run folder",
    ),
    "toyshop": Command(
        "venomkit.data.toyshop", "add_toyshop_arguments", "cli_toyshop",
        "write the synthetic toyshop catalog to a folder in RecBole atomic format",
    ),
    "train": Command(
        "venomkit.victims.pipeline", "add_train_arguments", "cli_train",
        "train a victim recommender (vbpr, amr, mmgcn, lightgcn) or fine-tune the MLLM ranker (mllm); write its checkpoint folder",
    ),
    "zoo": Command(
        "venomkit.zoo.build", "add_zoo_arguments", "cli_zoo",
        "build or list the offline model zoo (tiny CLIP, CNN, Stable Diffusion, VLM, LM)",
    ),
    "attack": Command(
        "venomkit.runs.cli", "add_attack_arguments", "cli_attack",
        "run a promotion attack on raw images/texts against a victim and measure HR and stealth",
    ),
    "stealth": Command(
        "venomkit.eval.stealth", "add_stealth_arguments", "cli_stealth",
        "stealth figures (SSIM, PSNR, L-inf, L2, CLIP similarity) between two folders of images",
    ),
    "defend": Command(
        "venomkit.runs.defend", "add_defend_arguments", "cli_defend",
        "adversarially train a victim (uat, uat-mc) and judge it against raw-content attacks",
    ),
}


class CommandLineError(Exception):
    """A bad command line (argparse's complaint), reported in one line."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and raise instead of exiting.

    ``add_subparsers`` makes its sub-command parsers of the same class, so they do too.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandLineError(f"{message} (see {self.prog} --help)")


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse with options and positionals intermixed (``venomkit attack pgd --out D eps=8/255``).

    argparse's ``parse_intermixed_args`` refuses parsers with sub-commands, so a sub-command
    (``venomkit defend judge``) is found first and its own parser parses the rest.
    """
    sub = _subparsers(parser)
    if sub is None:
        return parser.parse_intermixed_args(argv)
    position = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if position is None:
        if any(a in ("-h", "--help") for a in argv):
            parser.print_help()
            raise SystemExit(0)
        parser.error(f"choose one of {', '.join(sub.choices)}")
    name = argv[position]
    if name not in sub.choices:
        parser.error(f"unknown sub-command {name!r}; choose one of {', '.join(sub.choices)}")
    args = parse_command_line(sub.choices[name], argv[:position] + argv[position + 1 :])
    setattr(args, sub.dest, name)
    for key, value in parser._defaults.items():  # e.g. the command's run function
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def build_parser(name: str) -> tuple[argparse.ArgumentParser, Command]:
    """The parser of one sub-command (its module imported now)."""
    command = COMMANDS[name]
    parser = Parser(prog=f"venomkit {name}", description=command.help)
    module = importlib.import_module(command.module)
    getattr(module, command.add_arguments)(parser)
    parser.set_defaults(_run=getattr(module, command.run))
    return parser, command


def _top_help() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: venomkit COMMAND [options]", "", "Red-team multimodal recommender systems on raw images and texts.", "", "commands:"]
    lines += [f"  {name:<{width}}  {c.help}" for name, c in COMMANDS.items()]
    lines += ["", "venomkit COMMAND --help shows a command's options; venomkit --version its version."]
    return "\n".join(lines)


def configure_logging(quiet: bool = False) -> None:
    """Log venomkit's progress lines and notes to stderr (``[rank N]`` prefixed in a process group).

    The ``venomkit`` logger gets its own handler and stops propagating to the root logger
    (libraries that call ``logging.basicConfig`` would print every line twice); :func:`main`
    restores both when the command returns.
    """
    logger = logging.getLogger("venomkit")
    for handler in list(logger.handlers):
        if getattr(handler, "_venomkit", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    handler._venomkit = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help())
        return 0
    if argv[0] == "--version":
        print(f"venomkit {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"venomkit: error: unknown command {name!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    prog = f"venomkit {name}"
    from venomkit import progress

    was_quiet = progress.is_quiet()
    logger = logging.getLogger("venomkit")
    was = (logger.level, logger.propagate, list(logger.handlers))
    try:
        parser, _ = build_parser(name)
        args = parse_command_line(parser, argv[1:])
        quiet = bool(getattr(args, "quiet", False))
        configure_logging(quiet)
        progress.set_quiet(quiet)
        return int(args._run(args) or 0)
    except CommandLineError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, FloatingPointError) as exc:
        message = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    finally:
        # A command run in-process (a notebook, a test) leaves no switch behind.
        progress.set_quiet(was_quiet)
        logger.setLevel(was[0])
        logger.propagate = was[1]
        logger.handlers[:] = was[2]


if __name__ == "__main__":
    sys.exit(main())
