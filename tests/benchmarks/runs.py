"""Benchmark: what the run engine costs around an attack, and 2 processes against 1.

    OMP_NUM_THREADS=1 python tests/benchmarks/runs.py               # toyshop, VBPR, PGD (attacks/pgd.yaml), 64 targets
    python tests/benchmarks/runs.py --targets 32 --reps 3 --processes

Part 1 (one process, measured side by side, ``--reps`` alternating repetitions, medians), the
same victim checkpoint, data and targets in all three:

* **attack only**: load the victim, call the attack on each batch
  (``attack(victim, TargetBatch(index, images, texts))``) -- adversarial content, no figure at all;
* **batch function**: load the victim, call the engine's "batch in, rows out" function
  (``venomkit.runs.engine.attack_batch``) directly on each batch: the attack, saving every PNG
  and reading it back, and every metric collector (HR@K before/after per target, SSIM, CLIP
  similarities) -- what the old ``run_attack`` did, without any run bookkeeping;
* **engine**: ``venomkit.runs.execute`` of the recipe: the same batches, plus the recipe, the
  fingerprint (data and code hashes), the plan, the atomic target records and the merged tables
  (``report.html`` off; its time is printed apart).

engine / batch function is what the engine adds (target <= 1.05): the median of the ratios of
repetitions run back to back (this shared 2-core VM drifts by +-10% between minutes, so pairs
compare better than medians of separate columns). engine / attack only also counts measuring
every target from its saved files, printed so nobody mistakes one for the other.

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


def _direct(checkpoint: Path, dataset, run, measure: bool, out: Path) -> float:
    """Load the victim, then per batch the attack alone or the engine's batch function; seconds."""
    from venomkit.attacks.targets import Knowledge, TargetBatch
    from venomkit.runs.engine import BatchContext, attack_batch, build_attack, select_targets, stealth_clip_pair
    from venomkit.runs.plan import Setting, batches
    from venomkit.runs.shop import ShopTransform
    from venomkit.victims.checkpoint import load_victim

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    victim = load_victim(checkpoint)
    resolved = run.attacks[0]
    attack = build_attack(resolved, victim, "cpu")
    train = dataset.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=dataset.catalog.texts, images=dataset.catalog.image_list)
    ctx = BatchContext(
        setting=Setting("vbpr", "vbpr", "none", resolved.spec.name), victim=victim, attack=attack, dataset=dataset, knowledge=knowledge,
        collectors=run.recipe.metrics.collectors, ks=run.recipe.metrics.ks, shop=ShopTransform("png"),
        stealth_clip=stealth_clip_pair(None, victim, "cpu"), image_dir=out / "images", out=out, grids=True,
    )
    for batch in batches(select_targets(dataset, run), run.recipe.targets.batch_size):
        if measure:
            attack_batch(ctx, batch)
        else:
            attack(victim, TargetBatch(torch.tensor(batch), dataset.catalog.image_list(batch), dataset.catalog.text_batch(batch), knowledge=knowledge))
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
    parser.add_argument("--process-targets", type=int, default=160, help="targets of the process comparison (start-up is paid per process)")
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
        times: dict[str, list[float]] = {"attack": [], "batch": [], "engine": []}
        summary: dict = {}
        for rep in range(args.reps):
            order = ["attack", "batch", "engine"] if rep % 2 == 0 else ["engine", "batch", "attack"]
            for what in order:
                if what == "engine":
                    seconds, summary = _engine(run, dataset, root / "engine")
                else:
                    seconds = _direct(checkpoint, dataset, run, what == "batch", root / what)
                times[what].append(seconds)
        from venomkit.runs.report import build_report

        t0 = time.perf_counter()
        build_report(root / "engine")
        report_seconds = time.perf_counter() - t0

        med = {k: statistics.median(v) for k, v in times.items()}
        span = {k: f"{min(v):.2f}..{max(v):.2f}" for k, v in times.items()}
        print(f"{args.recipe} on {args.data}, {args.targets} targets in batches of {args.batch_size}, torch threads {torch.get_num_threads()}, {args.reps} reps (median; min..max)")
        print("| what | seconds |")
        print("|---|---:|")
        print(f"| attack only: load victim + attack calls | {med['attack']:.2f} ({span['attack']}) |")
        print(f"| batch function: + save / read back PNGs + collectors | {med['batch']:.2f} ({span['batch']}) |")
        print(f"| engine: execute (+ recipe, fingerprint, plan, records, merged tables) | {med['engine']:.2f} ({span['engine']}) |")
        print(f"| report.html (apart) | {report_seconds:.2f} |")
        paired = statistics.median(e / b for e, b in zip(times["engine"], times["batch"]))
        print(f"ratio engine / batch function: {paired:.3f} (median of the {args.reps} paired repetitions; min over min "
              f"{min(times['engine']) / min(times['batch']):.3f}; target <= 1.05)")
        print(f"ratio engine / attack only: {med['engine'] / med['attack']:.3f} (measuring each target from its saved files included)")
        print(f"attack mean HR@50 {summary['means']['hr@50_before']:.4f} -> {summary['means']['hr@50_after']:.4f}")

        if args.processes:
            command = ["-m", "venomkit", "run", args.recipe, "--victim", str(checkpoint), "--data", args.data, "--targets", str(args.process_targets),
                       "--batch-size", str(args.batch_size), "--max-interactions", str(args.max_interactions), "--no-report", "--quiet", "--no-cache"]
            one = _subprocess_run([sys.executable, *command, "--out", str(root / "one")])
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "assets" / "accelerate" / "cpu-2proc.yaml")]
            two = _subprocess_run([*launch, *command, "--out", str(root / "two")])
            same = (root / "one" / "results.csv").read_bytes() == (root / "two" / "results.csv").read_bytes()
            print()
            print(f"{args.process_targets} targets, one thread per process:")
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
