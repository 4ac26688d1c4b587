"""``venomkit demo``: the embedded default, end to end on toyshop.

1. make the seeded toyshop (raw images and texts, long-tailed interactions);
2. train an ID-only LightGCN and a content-aware VBPR whose features come from the zoo's
   ``toyshop-clip`` encoders, and compare them (all items and cold items), next to popularity;
3. promote cold items with a raw-pixel PGD attack (8/255) against VBPR: adversarial PNGs are
   saved and re-encoded by the victim's own CLIP before HR@K is measured.

Everything lands in ``--out``: ``summary.json``, ``victims/<kind>/`` checkpoints and the
attack run folder ``attack_pgd/`` (results.csv, images/, summary.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

DEMO_VICTIMS = ("lightgcn", "vbpr")


def add_demo_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--users", type=int, default=1000, help="toyshop users (default 1000)")
    parser.add_argument("--items", type=int, default=600, help="toyshop items (default 600)")
    parser.add_argument("--targets", type=int, default=20, help="cold items to promote (default 20)")
    parser.add_argument("--epochs", type=int, default=100, help="maximum training epochs per victim")
    parser.add_argument("--encoder", default="zoo:toyshop-clip", help="image and text encoder of VBPR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-attack", action="store_true", help="stop after training and evaluation")
    return parser


def _recall_ndcg(metrics: dict[str, Any], group: str, k: int = 20) -> tuple[float, float]:
    block = metrics.get(group, {})
    return float(block.get(f"recall@{k}", float("nan"))), float(block.get(f"ndcg@{k}", float("nan")))


def format_victim_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | Recall@20 | NDCG@20 | cold Recall@20 | cold NDCG@20 |",
        "|---|---|---|---|---|",
    ]
    for name, metrics in rows.items():
        r, n = _recall_ndcg(metrics, "test")
        cr, cn = _recall_ndcg(metrics, "cold")
        lines.append(f"| {name} | {r:.4f} | {n:.4f} | {cr:.4f} | {cn:.4f} |")
    return "\n".join(lines)


def run_demo(
    out: str | Path,
    n_users: int = 1000,
    n_items: int = 600,
    n_targets: int = 20,
    epochs: int = 100,
    encoder: str = "zoo:toyshop-clip",
    seed: int = 0,
    attack: bool = True,
) -> dict[str, Any]:
    """Run the tour and return the summary written to ``out/summary.json``."""
    from venomkit.data import toyshop
    from venomkit.victims.checkpoint import save_victim
    from venomkit.victims.pipeline import popularity_metrics, train_victim

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    dataset = toyshop.make(n_users=n_users, n_items=n_items, seed=seed)
    print(f"toyshop: {dataset.n_users} users x {dataset.n_items} items, {dataset.interactions.nnz} interactions")

    metrics: dict[str, dict[str, Any]] = {"popularity": popularity_metrics(dataset.split)}
    victims = {}
    for kind in DEMO_VICTIMS:
        spec = None if kind == "lightgcn" else encoder
        victim, victim_metrics = train_victim(kind, dataset, spec, spec, epochs=epochs, seed=seed, device="cpu")
        save_victim(victim, out / "victims" / kind, metrics=victim_metrics)
        victims[kind] = victim
        metrics[kind] = victim_metrics
    table = format_victim_table(metrics)
    print("\n" + table + "\n")

    summary: dict[str, Any] = {"dataset": dataset.name, "n_users": dataset.n_users, "n_items": dataset.n_items,
                               "encoder": encoder, "victims": metrics, "victim_table": table}
    if attack:
        from venomkit.attacks.runner import resolve_attack, run_attack

        # The smoothed 1-HR@K objective of attacks/pgd.yaml (see attacks/README.md).
        pgd, info = resolve_attack("pgd", ["objective=sigmoid", "temperature=0.3"])
        attack_summary = run_attack(pgd, victims["vbpr"], dataset, out / "attack_pgd", n_targets=n_targets,
                                    seed=seed, meta=info)
        summary["attack_pgd"] = attack_summary
        print(json.dumps(attack_summary.get("means", attack_summary), indent=2, default=str))
    summary["seconds"] = round(time.time() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'summary.json'} in {summary['seconds']} s")
    return summary


def cli_demo(args: argparse.Namespace) -> int:
    run_demo(args.out, args.users, args.items, args.targets, args.epochs, args.encoder, args.seed, not args.no_attack)
    return 0
