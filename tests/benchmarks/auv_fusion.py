"""Benchmark: AUV-Fusion amortised (one MLP forward + one pass per new target) against per-image
optimisation (the public port's method: delta from zero by Adam through the pass), side by side.

    OMP_NUM_THREADS=1 python tests/benchmarks/auv_fusion.py                 # toyshop, zoo, CPU, 20 cold targets, VBPR
    OMP_NUM_THREADS=1 python tests/benchmarks/auv_fusion.py --promotion-weight 1 --reference uninjected --targets 50
    OMP_NUM_THREADS=1 python tests/benchmarks/auv_fusion.py --promotion-weight 0.6 --reference uninjected --targets 50 --refine-steps 1 2 3
    OMP_NUM_THREADS=1 python tests/benchmarks/auv_fusion.py --promotion-weight 0.6 --reference uninjected --targets 50 --refine-steps 2 --refine-lr 0.1
    python tests/benchmarks/auv_fusion.py --targets 50 --image-steps 30
    python tests/benchmarks/auv_fusion.py --device cuda                     # the SD-1.5-shaped pass on a GPU (below)

One run of the run engine (``venomkit.runs.execute``, no victim cache) on toyshop: a VBPR victim
(``zoo:toyshop-clip`` features), ``attacks/auv_fusion.yaml`` as ``amortised`` (the paper's
method: the MLP trained once across ``mlp_items`` training items) and as ``per_image``
(``image_steps`` Adam steps per image from delta = 0), on the same cold targets, in one process.
Printed: seconds per new target of each (the attack's own time per batch divided by its
targets: the pass(es), the user group and the loss; saving and measuring excluded), the ratio
per-image / amortised (target >= 10x), the one-off cost of the amortised attack (the MLP's
training; the user model is shared), the number of targets after which amortising pays, and
each one's HR@5 gain (after - before, mean over targets) with the ratio amortised / per-image
(target: within 20%, i.e. >= 0.8). With the paper's loss both gains are zero on toyshop;
``--promotion-weight W`` adds venomkit's promotion term, optimised on an attacker VBPR (another
seed, never attacked), to both, so that the ratio compares non-zero gains (SSIM printed next to
them: the two need not land at the same stealth). ``--refine-steps K [K ...]`` adds a
row ``refinedK`` per K (the MLP's delta, then K Adam steps per image: the issue's optional
refinement; every refined row starts from the amortised row's MLP, trained once), timed and
compared with per-image optimisation the same way; ``--refine-lr`` sets their Adam step size.

``--device cuda``: runs ``auv_fusion_generator.py --device cuda`` (Stable Diffusion 1.5's shapes
with random weights, 512 px, float16, with and without gradient checkpointing: time and peak
memory per image of one AUV-Fusion optimisation pass), which needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def recipe_overrides(args: argparse.Namespace) -> list[str]:
    common = f"reference: {args.reference}, promotion_weight: {args.promotion_weight}"
    surrogate = ", surrogate_victim: attacker_vbpr" if args.promotion_weight > 0 else ""
    refine_lr = f", image_lr: {args.refine_lr}" if args.refine_lr is not None else ""
    attacks = (f"attacks=[{{name: amortised, recipe: attacks/auv_fusion.yaml, config: {{{common}}}{surrogate}}}, "
               f"{{name: per_image, recipe: attacks/auv_fusion.yaml, config: {{mode: per_image, image_steps: {args.image_steps}, {common}}}{surrogate}}}"
               + "".join(f", {{name: refined{k}, recipe: attacks/auv_fusion.yaml, config: {{mode: refined, refine_steps: {k}{refine_lr}, {common}}}{surrogate}}}"
                         for k in args.refine_steps) + "]")
    victims = "{kind: vbpr, train: {epochs: %d}}" % args.victim_epochs
    if args.promotion_weight > 0:  # the attacker's own VBPR (another seed, never attacked), as in experiments/auv_fusion.yaml
        victims += ", {name: attacker_vbpr, kind: vbpr, attacked: false, train: {epochs: %d, seed: 1}}" % args.victim_epochs
    return [f"victims=[{victims}]", "defenses=[]", attacks,
            "metrics.ks=[5,10,20]", "outputs.tables=[promotion]", "outputs.report=false", "outputs.grids=false"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="toyshop")
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--image-steps", type=int, default=30, help="per-image Adam steps (public port: 30)")
    parser.add_argument("--refine-steps", type=int, nargs="+", default=[], metavar="K",
                        help="also time mode refined with K Adam steps per image, a row per K (default: none)")
    parser.add_argument("--refine-lr", type=float, default=None,
                        help="Adam step size of the refined rows (image_lr; default: the recipe's, as per image)")
    parser.add_argument("--victim-epochs", type=int, default=100)
    parser.add_argument("--promotion-weight", type=float, default=0.0,
                        help="venomkit's promotion term on an attacker VBPR (0: the paper's loss, which promotes nothing on toyshop)")
    parser.add_argument("--reference", choices=("photo", "uninjected"), default="photo", help="AUV-Fusion's reference (attack config)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.refine_steps) or len(set(args.refine_steps)) < len(args.refine_steps):
        parser.error(f"--refine-steps takes distinct integers >= 1, got {' '.join(map(str, args.refine_steps))}")
    if args.refine_lr is not None and not args.refine_lr > 0:
        parser.error(f"--refine-lr must be > 0, got {args.refine_lr}")
    if args.device != "cpu":
        return subprocess.call([sys.executable, str(Path(__file__).with_name("auv_fusion_generator.py")), "--device", args.device])

    from venomkit.runs import RunFlags, execute, load_run

    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="venomkit-auv-bench-"))
    run = load_run(REPO / "defenses" / "judge.yaml", recipe_overrides(args),
                   RunFlags(data=args.data, targets=args.targets, batch_size=args.batch_size, threads=args.threads))
    summary = execute(run, out, cache_dir=None, progress=True)  # progress lines on stderr, also when it is not a terminal
    prepared = json.loads((out / "attackers" / "amortised" / "prepared.json").read_text())
    n = summary["n_targets"]
    seconds = {s["attack"]: summary["attack_seconds"][f"{s['victim']}/{s['attack']}"] / n for s in summary["settings"]}
    gains = {r["attack"]: r["hr@5_gain"] for r in summary["promotion"]}
    ssims = {r["attack"]: r.get("ssim") for r in summary["promotion"]}
    mlp_seconds = prepared["seconds"]["mlp"]
    saving = seconds["per_image"] - seconds["amortised"]
    print(f"AUV-Fusion on {args.data}, VBPR victim, {n} cold targets in batches of {args.batch_size}, torch threads {args.threads}, "
          f"reference {args.reference}, promotion weight {args.promotion_weight:g}, "
          f"per-image {args.image_steps} Adam steps" + (f", refined at step size {args.refine_lr:g}" if args.refine_lr else "") + f"; MLP trained on {len(prepared['mlp']['items'])} items x {len(prepared['mlp']['history'])} epochs")
    print("| mode | seconds / new target | HR@5 gain (after - before) | mean SSIM |")
    print("|---|---:|---:|---:|")
    for mode in seconds:  # the run's settings in recipe order: amortised, per_image[, refinedK ...]
        print(f"| {mode} | {seconds[mode]:.3f} | {gains[mode]:+.5f} | {ssims[mode]:.3f} |")
    print(f"one-off: MLP training {mlp_seconds:.1f} s (user model {prepared['seconds']['user_model']:.1f} s, shared by both); "
          f"amortising pays after {mlp_seconds / saving:.0f} targets" if saving > 0 else "amortising never pays here")
    print(f"ratio time per-image / amortised: {seconds['per_image'] / seconds['amortised']:.1f}x (target >= 10x)")
    ratio = gains["amortised"] / gains["per_image"] if gains["per_image"] else float("nan")
    print(f"ratio HR@5 gain amortised / per-image: {ratio:.2f} (target >= 0.8)")
    for k in args.refine_steps:
        refined = gains[f"refined{k}"] / gains["per_image"] if gains["per_image"] else float("nan")
        print(f"refined ({k} steps): time per-image / refined {seconds['per_image'] / seconds[f'refined{k}']:.1f}x (target >= 10x), "
              f"HR@5 gain refined / per-image {refined:.2f} (target >= 0.8)")
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
