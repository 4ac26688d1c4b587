"""The plan of a run: settings (victim x attack) and jobs (a setting x one batch of targets).

Targets are cut into batches of ``targets.batch_size`` in a fixed order, and a batch is the
unit of work: it is attacked as one tensor, assigned whole to one process, and re-run whole
when a run resumes after an interruption that left it half committed. A target's float32
result depends on which targets share its batch (batched convolutions sum in another order),
so keeping batches fixed is what makes a sharded run equal a single-process one, and a
resumed run equal an uninterrupted one, row for row.

Jobs are dealt to processes round-robin over the pending ones (``pending[rank::world]``):
each target exactly once, no padding duplicates (accelerate's ``split_between_processes``
pads uneven splits by repeating the last element; this plan never needs that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Setting:
    """One victim attacked by one attack.

    ``victim`` is the victim's name in the run (``vbpr``, ``vbpr+uat_mc``), ``backbone`` the
    undefended victim it comes from and ``defense`` its defense (``none`` when undefended).
    """

    victim: str
    backbone: str
    defense: str
    attack: str

    @property
    def key(self) -> str:
        """``victim/attack``: the setting's folder below ``records/`` (and ``images/``)."""
        return f"{self.victim}/{self.attack}"


@dataclass(frozen=True)
class Job:
    """A batch of targets of one setting; ``index`` is the batch's position in the target list."""

    setting: Setting
    index: int
    targets: tuple[int, ...]


@dataclass
class Plan:
    """Settings that run, settings skipped (with why), and every job in a fixed order."""

    settings: list[Setting]
    skipped: list[dict[str, str]]
    jobs: list[Job]

    def pending(self, is_done: Any, item_ids: Sequence[str]) -> list[Job]:
        """Jobs with at least one target not yet committed (``is_done(setting_key, item_id)``)."""
        return [j for j in self.jobs if not all(is_done(j.setting.key, item_ids[t]) for t in j.targets)]


def batches(targets: Sequence[int], batch_size: int) -> list[tuple[int, ...]]:
    """Consecutive batches of ``batch_size`` targets (the last may be shorter)."""
    return [tuple(targets[i : i + batch_size]) for i in range(0, len(targets), batch_size)]


def shard(jobs: Sequence[Job], rank: int, world: int) -> list[Job]:
    """This process's jobs: every ``world``-th unit of pending jobs starting at ``rank``.

    A unit is a run of consecutive jobs of one attack on one batch of targets (the same batch
    against each victim): it stays in one process, so an attack whose content does not depend
    on the victim scored (AUV-Fusion, any attack on a surrogate victim) makes it once.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside a world of {world} processes")
    units: list[list[Job]] = []
    for job in jobs:
        if units and (units[-1][0].setting.attack, units[-1][0].targets) == (job.setting.attack, job.targets):
            units[-1].append(job)
        else:
            units.append([job])
    return [job for unit in units[rank::world] for job in unit]


def make_plan(
    victims: Sequence[dict[str, Any]],
    attacks: Sequence[Any],
    targets: Sequence[int],
    batch_size: int,
) -> Plan:
    """Expand victims x attacks into settings and jobs.

    ``victims``: ``{"name", "backbone", "defense", "modalities"}`` per victim; ``attacks``:
    resolved attacks (``.spec.name`` and ``.cls.perturbs``). A pair where the attack changes
    nothing the victim reads (a pixel attack on ID-only LightGCN) is skipped, with the reason
    recorded in the summary.
    """
    settings: list[Setting] = []
    skipped: list[dict[str, str]] = []
    for v in victims:
        for a in attacks:
            perturbs = set(getattr(a.cls, "perturbs", ()))
            reads = set(v["modalities"])
            if "features" in perturbs:
                modalities = set(getattr(a.config, "modalities", reads))
                usable = bool(reads & modalities)
            else:
                usable = bool(reads & perturbs)
            if not usable:
                what = ", ".join(sorted(perturbs)) or "nothing"
                skipped.append({"victim": v["name"], "attack": a.spec.name,
                                "reason": f"{a.spec.name} changes {what}; {v['name']} reads {', '.join(sorted(reads)) or 'no content'}"})
                continue
            settings.append(Setting(v["name"], v["backbone"], v["defense"], a.spec.name))
    cut = batches(list(targets), batch_size)
    # attack-major, then batch, then victim: one batch's content is made, then scored by each victim
    jobs = [Job(s, i, b) for a in attacks for i, b in enumerate(cut) for s in settings if s.attack == a.spec.name]
    return Plan(settings, skipped, jobs)
