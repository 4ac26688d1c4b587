"""One attack against one victim OBJECT in Python, through the run engine.

``venomkit attack`` and ``venomkit run`` take checkpoint folders and recipes; in a notebook or
a test a researcher often holds a trained victim and a dataset as objects and an attack as a
recipe, a registry name, or an ``Attack`` of their own. :func:`run_attack` runs that as a run
(same folder, same figures from the saved files, same resume), the victim fingerprinted by
its weights and the attack by its class and config.

    summary = run_attack("attacks/pgd.yaml", vbpr, shop, "runs/pgd", overrides=["eps=4/255"], n_targets=50)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

KS = (5, 10, 20, 50)


def run_attack(
    attack: Any,
    victim: Any,
    dataset: Any,
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    n_targets: int = 50,
    targets: Sequence[int] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    max_interactions: int = 5,
    stealth_clip: tuple[Any, Any] | None = None,
    shop_transform: str = "png",
    ks: Sequence[int] = KS,
    report: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Attack cold targets of ``victim`` (a ``Victim`` object) on ``dataset`` into ``out_dir``.

    ``attack``: an attack recipe path, a registry name (``pgd``) with ``overrides``
    (``["eps=4/255"]``), or a ready ``Attack`` object (its class and config identify the run).
    ``targets`` (item indices) replaces the seeded draw of ``n_targets`` cold items. Returns
    the run summary (``summary["means"]`` holds the mean of every column over targets).
    """
    from venomkit.runs.engine import execute
    from venomkit.runs.recipe import (
        AttackSpec, DataSpec, MetricsSpec, OutputSpec, ResolvedAttack, ResolvedRun, RunRecipe, TargetSpec, VictimSpec, resolve_attack,
    )

    given_attacks: dict[str, Any] = {}
    if isinstance(attack, (str, Path)):
        resolved_attack = resolve_attack(attack, overrides, seed=seed)
    else:
        if overrides:
            raise ValueError("overrides apply to a recipe or an attack name; configure an Attack object directly")
        name = getattr(attack, "name", type(attack).__name__.lower())
        resolved_attack = ResolvedAttack(AttackSpec(name=name, attack=name), type(attack), attack.config, None, "", frozenset(f.name for f in dataclasses.fields(attack.config)))
        given_attacks[name] = attack
    items = None if targets is None else [dataset.catalog.item_ids[int(t)] for t in targets]
    recipe = RunRecipe(
        name="attack",
        data=DataSpec(spec=f"given:{dataset.name}"),
        victims=[VictimSpec(name="victim", given=True)],
        targets=TargetSpec(n=len(items) if items else n_targets, max_interactions=max_interactions, items=items, batch_size=batch_size),
        seed=seed,
        metrics=MetricsSpec(ks=list(ks)),
        outputs=OutputSpec(report=report),
        shop_transform=shop_transform,
        device=str(victim.device),
    )
    run = ResolvedRun(recipe, [resolved_attack], [])
    return execute(run, out_dir, dataset=dataset, victims={"victim": victim}, attacks=given_attacks, stealth_clip=stealth_clip,
                   overwrite=overwrite, cache_dir=None, progress=progress)
