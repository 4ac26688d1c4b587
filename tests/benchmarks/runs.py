"""Benchmark: what the run engine costs around an attack, and 2 processes against 1.

    OMP_NUM_THREADS=1 python tests/benchmarks/runs.py               # toyshop, VBPR, PGD (attacks/pgd.yaml), 64 targets
    python tests/benchmarks/runs.py --targets 32 --reps 3 --processes

Part 1 (one process, measured side by side, ``--reps`` alternating repetitions, medians):

* **direct**: what a researcher's own script does -- load the victim checkpoint, then call the
  attack on the same targets, batch by batch (``attack(victim, images, texts, index)``);
* **engine**: ``venomkit.runs.execute`` of the same recipe on the same victim and data: the
  same attack calls, plus saving every PNG and reading it back, re-encoding it, every metric
  collector (HR@K before/after per target, SSIM, CLIP similarities), the atomic target records,
  the fingerprint and the merged tables (``report.html`` off; its time is printed apart).

The ratio engine / direct is the engine's overhead (target <= 1.05).

Part 2 (``--processes``): the same run as a subprocess, ``venomkit run`` against
``accelerate launch --config_file assets/accelerate/cpu-2proc.yaml -m venomkit run``, wall
times of both (including Python start-up and model loading in each process), and whether the
two ``results.csv`` are identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _victim_checkpoint(root: Path, dataset, epochs: int) -> Path:
    """A VBPR trained on the data (zoo:toyshop-clip features), saved as a checkpoint folder."""
    from venomkit.victims.checkpoint import save_victim
    from venomkit.victims.pipeline import train_victim

    folder = root / "vbpr"
    victim, metrics = train_victim("vbpr", dataset, "zoo:toyshop-clip", "zoo:toyshop-clip", epochs=epochs, progress=False, device="cpu")
    save_victim(victim, folder, metrics=metrics)
    return folder


def _direct(checkpoint: Path, dataset, run) -> float:
    """Load the victim, run the attack on every batch of the run's targets; seconds."""
    from venomkit.attacks.base import Knowledge
    from venomkit.runs.engine import select_targets
    from venomkit.runs.plan import batches
    from venomkit.victims.checkpoint import load_victim

    t0 = time.perf_counter()
    victim = load_victim(checkpoint)
    resolved = run.attacks[0]
    attack = resolved.cls.from_config(resolved.config)
    train = dataset.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=dataset.catalog.texts, images=dataset.catalog.image_batch)
    for batch in batches(select_targets(dataset, run), run.recipe.targets.batch_size):
        attack(victim, dataset.catalog.image_batch(batch), dataset.catalog.text_batch(batch), torch.tensor(batch), knowledge=knowledge)
    return time.perf_counter() - t0


def _engine(run, dataset, out: Path) -> tuple[float, dict]:
    from venomkit.runs.engine import execute

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = execute(run, out, dataset=dataset, cache_dir=None, progress=False)
    return time.perf_counter() - t0, summary


def _subprocess_run(args: list[str]) -> float:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="toyshop")
    parser.add_argument("--recipe", default="attacks/pgd.yaml")
    parser.add_argument("--targets", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-interactions", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the benchmark's victim")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--processes", action="store_true", help="also time 2 processes (accelerate launch) against 1")
    args = parser.parse_args()

    from venomkit.data.loaders import load_dataset
    from venomkit.runs import RunFlags, load_run

    root = Path(tempfile.mkdtemp(prefix="venomkit-bench-runs-"))
    try:
        dataset = load_dataset(args.data)
        checkpoint = _victim_checkpoint(root, dataset, args.epochs)
        flags = RunFlags(victim=str(checkpoint), data=args.data, targets=args.targets, batch_size=args.batch_size, max_interactions=args.max_interactions)
        run = load_run(args.recipe, flags=flags)
        run.recipe.outputs.report = False
        direct, engine = [], []
        summary: dict = {}
        for rep in range(args.reps):
            order = ("direct", "engine") if rep % 2 == 0 else ("engine", "direct")
            for what in order:
                if what == "direct":
                    direct.append(_direct(checkpoint, dataset, run))
                else:
                    seconds, summary = _engine(run, dataset, root / "engine")
                    engine.append(seconds)
        from venomkit.runs.report import build_report

        t0 = time.perf_counter()
        build_report(root / "engine")
        report_seconds = time.perf_counter() - t0

        d, e = statistics.median(direct), statistics.median(engine)
        print(f"{args.recipe} on {args.data}, {args.targets} targets in batches of {args.batch_size}, torch threads {torch.get_num_threads()}, {args.reps} reps (median; min..max)")
        print(f"| what | seconds |")
        print(f"|---|---:|")
        print(f"| direct: load victim + attack calls | {d:.2f} ({min(direct):.2f}..{max(direct):.2f}) |")
        print(f"| engine: execute (save, read back, collectors, records, tables) | {e:.2f} ({min(engine):.2f}..{max(engine):.2f}) |")
        print(f"| report.html (apart) | {report_seconds:.2f} |")
        print(f"ratio engine / direct: {e / d:.3f} (target <= 1.05)")
        print(f"attack mean HR@50 {summary['means']['hr@50_before']:.4f} -> {summary['means']['hr@50_after']:.4f}")

        if args.processes:
            command = ["-m", "venomkit", "run", args.recipe, "--victim", str(checkpoint), "--data", args.data, "--targets", str(args.targets),
                       "--batch-size", str(args.batch_size), "--max-interactions", str(args.max_interactions), "--no-report", "--quiet", "--no-cache"]
            one = _subprocess_run([sys.executable, *command, "--out", str(root / "one")])
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "assets" / "accelerate" / "cpu-2proc.yaml")]
            two = _subprocess_run([*launch, *command, "--out", str(root / "two")])
            same = (root / "one" / "results.csv").read_bytes() == (root / "two" / "results.csv").read_bytes()
            print()
            print(f"| processes | wall seconds (subprocess, incl. start-up) |")
            print(f"|---|---:|")
            print(f"| 1 (venomkit run) | {one:.1f} |")
            print(f"| 2 (accelerate launch, cpu-2proc.yaml) | {two:.1f} |")
            print(f"speed-up 1 / 2 processes: {one / two:.2f}x; results.csv identical: {same}")
            if not same:
                return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
