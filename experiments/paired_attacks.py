"""Two attacks of one run, compared target by target: the HR@K gain difference and its standard error.

    python experiments/paired_attacks.py runs/auv-align auv_promo1_per_image_uninj auv_promo1_per_image_no_align_uninj
    python experiments/paired_attacks.py runs/auv-fusion auv_promo auv_promo_no_align --victim vbpr --ks 5 20

A run's table gives each attack's mean HR@K gain (after - before) over the targets; whether two
of them differ needs the spread of their difference. Both attacks of a run attack the same
targets against the same victim, so this pairs their ``results.csv`` rows by target and prints,
per K, each attack's mean gain and the mean of (gain A - gain B) +- its standard error (sample
standard deviation / sqrt(targets)), plus both mean SSIMs. Pairing removes the targets that
every attack finds easy or hard, so the standard error is the comparison's, not either mean's.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def _rows(results: Path, victim: str | None, attack: str) -> dict[str, dict]:
    with open(results, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["attack"] == attack and (victim is None or r["victim"] == victim)]
    victims = sorted({r["victim"] for r in rows})
    if len(victims) > 1:
        raise SystemExit(f"{results}: attack {attack!r} ran against {len(victims)} victims ({', '.join(victims)}); pick one with --victim")
    return {r["item_id"]: r for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (holds results.csv)")
    parser.add_argument("attack_a")
    parser.add_argument("attack_b")
    parser.add_argument("--victim", default=None, help="the victim whose rows to pair (needed when the run attacked several)")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    args = parser.parse_args(argv)

    results = args.run / "results.csv"
    if not results.is_file():
        parser.error(f"{results}: no such file (a run folder written by venomkit run / attack)")
    import numpy as np

    from venomkit.victims.mllm.evaluate import mean_and_standard_error

    a, b = (_rows(results, args.victim, name) for name in (args.attack_a, args.attack_b))
    for name, rows in ((args.attack_a, a), (args.attack_b, b)):
        if not rows:
            parser.error(f"{results}: no rows for attack {name!r}" + (f" and victim {args.victim!r}" if args.victim else ""))
    targets = sorted(a.keys() & b.keys())
    if len(targets) != len(a) or len(targets) != len(b):
        parser.error(f"{results}: the two attacks' targets differ ({len(a)} and {len(b)} rows, {len(targets)} shared)")

    def column(rows: dict[str, dict], key: str) -> np.ndarray:
        return np.array([float(rows[t][key]) for t in targets])

    def gain(rows: dict[str, dict], k: int) -> np.ndarray:
        return column(rows, f"hr@{k}_after") - column(rows, f"hr@{k}_before")

    print(f"{len(targets)} targets; A = {args.attack_a}, B = {args.attack_b}")
    print("| K | gain A | gain B | A - B (paired ± SE) |")
    print("|---:|---:|---:|---:|")
    for k in args.ks:
        gain_a, gain_b = gain(a, k), gain(b, k)
        diff, se = mean_and_standard_error(gain_a - gain_b)
        print(f"| {k} | {gain_a.mean():+.4f} | {gain_b.mean():+.4f} | {diff:+.4f} ± {se:.4f} |")
    print(f"mean SSIM: A {column(a, 'ssim').mean():.3f}, B {column(b, 'ssim').mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
