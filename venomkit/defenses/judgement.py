"""Judging UAT / UAT-MC on raw content: the shape of the UAT-MC paper's Table 2.

For one dataset and each backbone (VBPR, MMGCN) three victims are trained -- w/o AT (plain
BPR), UAT and UAT-MC (both fine-tuned from the w/o-AT checkpoint, as the paper does) -- and
each is attacked on the SAME cold target items with

* the raw-content attacks of ``venomkit.attacks`` (pixel PGD / FGSM, the HotFlip token attack,
  the joint image+text attack): the adversarial PNGs and texts are re-encoded by the
  victim's own encoders before scoring, the threat model of a real shop;
* the paper's feature-space FGSM / PGD (``venomkit.defenses.feature_attack``) on the target's
  feature rows, eps a ratio of each row's norm, for comparison with the paper.

Reported per (backbone, defense, attack): mean HR@50 of the targets before / after, RI of the
means (``RI = HR_after / HR_before - 1``) and, per victim, Recall@20 / NDCG@20 on the clean
test split and NDCG@20's relative change against w/o AT. Output folder::

    victims/<backbone>/<defense>/        checkpoints (config.json, model.safetensors, metrics.json)
    attacks/<backbone>/<defense>/<attack>/  the attack runs (results.csv, summary.json, images/)
    table.csv, table.md, judge.json

Every step is skipped when its output exists (checkpoints; attack runs resume target by
target), so an interrupted judgement resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from venomkit.defenses.uat_mc import UATConfig

DEFENSES = ("none", "uat", "uat_mc")
DEFENSE_LABELS = {"none": "w/o AT", "uat": "UAT", "uat_mc": "UAT-MC"}
RAW_ATTACKS = ("pgd", "fgsm", "token_hotflip", "joint")
FEATURE_ATTACKS = ("feature_fgsm", "feature_pgd")
ATTACKS = RAW_ATTACKS + FEATURE_ATTACKS


@dataclass
class JudgeConfig:
    """What the judgement trains and runs.

    Attributes:
        victims: backbones, from ``vbpr``, ``mmgcn``, ``amr``.
        attacks: from :data:`ATTACKS` (raw: pgd, fgsm, token_hotflip, joint; feature:
            feature_fgsm, feature_pgd). A raw attack is run from its recipe
            ``attacks/<name>.yaml`` when the repository has one, else with its defaults.
        n_targets, max_interactions, seed: the cold targets (``select_cold_targets``).
        image_encoder, text_encoder: encoder specs of the victims.
        train_epochs, train_lr, train_batch_size, train_patience, embed_dim: plain training.
        feature_eps, feature_pgd_steps: the feature-space attacks (eps a ratio of the row norm).
        attack_batch_size: targets per batch of the raw attacks.
        attack_overrides: ``{attack: ["key=value", ...]}`` for the raw attacks.
        attack_recipes: folder of the raw attacks' recipes (default: the checkout's
            ``attacks/``). The recipe used is copied to ``<out>/recipes/`` on first use and that
            copy is used from then on, so every victim of a judgement meets the same attack
            even if the recipe file changes while it runs.
        device: torch device of everything.
    """

    victims: tuple[str, ...] = ("vbpr", "mmgcn")
    attacks: tuple[str, ...] = ATTACKS
    n_targets: int = 20
    max_interactions: int = 5
    seed: int = 0
    image_encoder: str = "zoo:toyshop-clip"
    text_encoder: str = "zoo:toyshop-clip"
    train_epochs: int = 200
    train_lr: float = 1e-3
    train_batch_size: int = 2048
    train_patience: int = 10
    embed_dim: int = 64
    feature_eps: float = 0.1
    feature_pgd_steps: int = 10
    attack_batch_size: int = 16
    attack_overrides: dict[str, list[str]] = field(default_factory=dict)
    attack_recipes: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        name = type(self).__name__
        self.victims = tuple(self.victims)
        self.attacks = tuple(self.attacks)
        bad = [v for v in self.victims if v not in ("vbpr", "mmgcn", "amr")]
        if bad or not self.victims:
            raise ValueError(f"{name}.victims must be names from vbpr, mmgcn, amr; got {list(self.victims)}")
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad or not self.attacks:
            raise ValueError(f"{name}.attacks: unknown {bad or 'none given'}; valid: {', '.join(ATTACKS)}")
        for key in ("n_targets", "train_epochs", "train_batch_size", "embed_dim", "feature_pgd_steps", "attack_batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.{key} must be an integer >= 1, got {value!r}")
        if not 0 < self.feature_eps <= 10:
            raise ValueError(f"{name}.feature_eps must be in (0, 10], got {self.feature_eps!r}")
        unknown = sorted(set(self.attack_overrides) - set(RAW_ATTACKS))
        if unknown:
            raise ValueError(f"{name}.attack_overrides: {unknown} are not raw attacks ({', '.join(RAW_ATTACKS)})")


@torch.no_grad()
def raw_feature_shift(victim: Any, dataset: Any, folder: Path, targets: Sequence[int]) -> dict[str, float]:
    """Mean ``||f(adv) - f(clean)|| / ||f(clean)||`` per modality of a raw attack's saved content.

    Read back from the run folder (``images/<id>_clean.png``/``_adv.png``, ``texts.csv``) and
    re-encoded by the victim's encoders: how far the raw attack moved the features, in the
    unit of the adversarial training budget ``eps`` (a ratio of the row norm).
    """
    from venomkit.attacks.runner import image_file_stem
    from venomkit.data.catalog import load_image_file

    out: dict[str, float] = {}
    ids = [dataset.catalog.item_ids[t] for t in targets]
    safe = [image_file_stem(i) for i in ids]
    if victim.image_encoder is not None and all((folder / "images" / f"{n}_adv.png").is_file() for n in safe):
        clean = torch.stack([load_image_file(folder / "images" / f"{n}_clean.png") for n in safe]).to(victim.device)
        adv = torch.stack([load_image_file(folder / "images" / f"{n}_adv.png") for n in safe]).to(victim.device)
        f_clean, f_adv = victim.image_encoder(clean), victim.image_encoder(adv)
        out["shift_visual"] = float(((f_adv - f_clean).norm(dim=1) / f_clean.norm(dim=1).clamp_min(1e-12)).mean())
    texts_path = folder / "texts.csv"
    if victim.text_encoder is not None and texts_path.is_file():
        with texts_path.open(newline="") as f:
            pairs = {r["item_id"]: (r["original"], r["adversarial"]) for r in csv.DictReader(f)}
        if all(i in pairs for i in ids):
            f_clean = victim.text_encoder([pairs[i][0] for i in ids])
            f_adv = victim.text_encoder([pairs[i][1] for i in ids])
            out["shift_text"] = float(((f_adv - f_clean).norm(dim=1) / f_clean.norm(dim=1).clamp_min(1e-12)).mean())
    return out


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _source_recipe(attack: str, folder: str | None) -> Path | None:
    """``<folder>/<attack>.yaml`` (default: the repository checkout's ``attacks/``) when it exists."""
    import venomkit

    base = Path(folder) if folder else Path(venomkit.__file__).resolve().parent.parent / "attacks"
    path = base / f"{attack}.yaml"
    return path if path.is_file() else None


def _clean_test(metrics: dict[str, Any]) -> dict[str, float]:
    test = metrics.get("test") or {}
    return {k: float(test[k]) for k in ("recall@20", "ndcg@20") if k in test}


class Judge:
    """Runs the judgement of one dataset into ``out_dir`` (see the module docstring)."""

    def __init__(self, dataset: Any, out_dir: str | Path, config: JudgeConfig | None = None, uat: UATConfig | None = None, uat_mc: UATConfig | None = None, progress: bool = True) -> None:
        self.dataset = dataset
        self.out = Path(out_dir)
        self.config = config or JudgeConfig()
        self.defense_configs = {"uat": uat or UATConfig(method="uat"), "uat_mc": uat_mc or UATConfig(method="uat_mc")}
        if self.defense_configs["uat"].method != "uat" or self.defense_configs["uat_mc"].method != "uat_mc":
            raise ValueError("the uat config must have method 'uat' and the uat_mc config method 'uat_mc'")
        self.progress = progress
        self._encoders: tuple[Any, Any] | None = None

    # ---------------------------------------------------------------------- victims
    def encoders(self) -> tuple[Any, Any]:
        if self._encoders is None:
            from venomkit.victims.pipeline import load_content_encoders

            self._encoders = load_content_encoders(self.config.image_encoder, self.config.text_encoder, self.config.device)
        return self._encoders

    def victim(self, kind: str, defense: str) -> tuple[Any, dict[str, Any]]:
        """The trained victim ``kind`` with ``defense`` (trained now or loaded) and its metrics."""
        from venomkit.victims.checkpoint import load_victim, save_victim

        folder = self.out / "victims" / kind / defense
        img, txt = self.encoders()
        if (folder / "config.json").is_file() and (folder / "metrics.json").is_file():
            victim = load_victim(folder, self.config.device, image_encoder=img, text_encoder=txt)
            return victim, json.loads((folder / "metrics.json").read_text())
        if defense == "none":
            from venomkit.victims.pipeline import train_victim

            c = self.config
            victim, metrics = train_victim(
                kind, self.dataset, img, txt, epochs=c.train_epochs, lr=c.train_lr, batch_size=c.train_batch_size,
                patience=c.train_patience, seed=c.seed, device=c.device, progress=self.progress, embed_dim=c.embed_dim,
            )
        else:
            from venomkit.defenses.uat_mc import adversarial_train

            base, _ = self.victim(kind, "none")
            victim, metrics = adversarial_train(base, self.dataset.split, self.defense_configs[defense], progress=self.progress)
        save_victim(victim, folder, metrics=metrics)
        return victim, metrics

    # ---------------------------------------------------------------------- attacks
    def targets(self) -> list[int]:
        from venomkit.data.interactions import select_cold_targets

        c = self.config
        return select_cold_targets(self.dataset.split.train, c.n_targets, max_interactions=c.max_interactions, seed=c.seed).tolist()

    def recipe(self, attack: str) -> str:
        """The frozen copy ``<out>/recipes/<attack>.yaml`` (made on first use), or the bare name."""
        frozen = self.out / "recipes" / f"{attack}.yaml"
        if not frozen.is_file():
            source = _source_recipe(attack, self.config.attack_recipes)
            if source is None:
                return attack
            frozen.parent.mkdir(parents=True, exist_ok=True)
            frozen.write_text(source.read_text())
        return str(frozen)

    def attack(self, victim: Any, kind: str, defense: str, attack: str, targets: Sequence[int]) -> dict[str, float]:
        """Run one attack on one victim; ``{"hr@50_before", "hr@50_after", "ri@50", "n_targets", ...}``."""
        folder = self.out / "attacks" / kind / defense / attack
        folder.mkdir(parents=True, exist_ok=True)
        if attack in FEATURE_ATTACKS:
            return self._feature_attack(victim, attack, targets, folder)
        from venomkit.attacks.runner import resolve_attack, run_attack
        from venomkit.victims.graph import GraphMixin

        overrides = list(self.config.attack_overrides.get(attack, []))
        if not any(o.startswith("seed=") for o in overrides):
            overrides.append(f"seed={self.config.seed}")
        if isinstance(victim, GraphMixin) and not any(o.startswith("batch_targets=") for o in overrides):
            # A graph victim couples items: optimise each target alone, as it is evaluated.
            overrides.append("batch_targets=false")
        attack_obj, meta = resolve_attack(self.recipe(attack), overrides, device=self.config.device)
        meta.update({"victim": f"{kind}/{defense}", "data": self.dataset.name})
        summary = run_attack(
            attack_obj, victim, self.dataset, folder, batch_size=self.config.attack_batch_size, seed=self.config.seed,
            targets=targets, meta=meta, progress=self.progress,
        )
        m = summary["means"]
        out = {"hr@50_before": m["hr@50_before"], "hr@50_after": m["hr@50_after"], "ri@50": summary["ri@50_of_means"], "n_targets": summary["n_targets"]}
        for key in ("ssim", "linf", "text_edit_ratio"):
            if key in m:
                out[key] = m[key]
        out.update(raw_feature_shift(victim, self.dataset, folder, targets))
        return out

    def _feature_attack(self, victim: Any, attack: str, targets: Sequence[int], folder: Path) -> dict[str, float]:
        from venomkit.defenses.feature_attack import (
            FeatureAttackConfig,
            config_dict,
            run_feature_attack,
        )
        from venomkit.eval.ranking import relative_improvement

        summary_path = folder / "summary.json"
        steps = 1 if attack == "feature_fgsm" else self.config.feature_pgd_steps
        cfg = FeatureAttackConfig(eps=self.config.feature_eps, steps=steps)
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            if summary.get("config") == config_dict(cfg) and summary.get("targets") == list(targets):
                return summary["result"]
        rows = run_feature_attack(victim, targets, self.dataset.split.train, cfg, progress=self.progress)
        with (folder / "results.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        before = sum(r["hr@50_before"] for r in rows) / len(rows)
        after = sum(r["hr@50_after"] for r in rows) / len(rows)
        result = {
            "hr@50_before": before,
            "hr@50_after": after,
            "ri@50": float(relative_improvement(before, after)),
            "n_targets": len(rows),
            **{f"shift_{m}": sum(r[f"shift_{m}"] for r in rows) / len(rows) for m in victim.modalities},
        }
        _write_json(summary_path, {"config": config_dict(cfg), "targets": list(targets), "result": result})
        return result

    # ---------------------------------------------------------------------- the run
    def run(self) -> list[dict[str, Any]]:
        """Train, attack and tabulate; returns the table rows (also written to the folder)."""
        self.out.mkdir(parents=True, exist_ok=True)
        targets = self.targets()
        rows: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        for kind in self.config.victims:
            clean_ref: dict[str, float] = {}
            for defense in DEFENSES:
                victim, metrics = self.victim(kind, defense)
                clean = _clean_test(metrics)
                if defense == "none":
                    clean_ref = clean
                for attack in self.config.attacks:
                    result = self.attack(victim, kind, defense, attack, targets)
                    row = {
                        "dataset": self.dataset.name,
                        "backbone": kind,
                        "defense": DEFENSE_LABELS[defense],
                        "attack": attack,
                        **result,
                        **clean,
                        "ndcg@20_rel_change": (clean["ndcg@20"] / clean_ref["ndcg@20"] - 1) if clean_ref.get("ndcg@20") else float("nan"),
                    }
                    rows.append(row)
                    self.write(rows, targets, time.perf_counter() - t0)
        return rows

    def write(self, rows: list[dict[str, Any]], targets: Sequence[int], seconds: float) -> None:
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        tmp = self.out / "table.csv.tmp"
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.out / "table.csv")
        (self.out / "table.md").write_text(format_table(rows))
        _write_json(
            self.out / "judge.json",
            {
                "dataset": self.dataset.name,
                "config": asdict(self.config),
                "uat": self.defense_configs["uat"].to_dict(),
                "uat_mc": self.defense_configs["uat_mc"].to_dict(),
                "targets": [self.dataset.catalog.item_ids[t] for t in targets],
                "seconds": seconds,
            },
        )


def _fmt(value: Any, spec: str = ".4f") -> str:
    try:
        value = float(value)  # RI may arrive as the JSON string "inf"
    except (TypeError, ValueError):
        return "-"
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return format(value, spec)


def _pct(value: Any) -> str:
    text = _fmt(None if value is None else 100 * float(value), "+.1f")
    return text if text in ("-", "inf") else text + "%"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per (backbone, defense, attack) with HR@50 before/after, RI, the mean
    feature shift of the targets (``||delta f|| / ||f||`` per modality, comparable with the
    training eps) and the victim's clean Recall/NDCG@20."""
    head = "| dataset | backbone | defense | attack | HR@50 before | HR@50 after | RI | feature shift v / t | Recall@20 | NDCG@20 | NDCG@20 vs w/o AT |\n"
    head += "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    lines = []
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['backbone']} | {r['defense']} | {r['attack']} | {_fmt(r.get('hr@50_before'))} | "
            f"{_fmt(r.get('hr@50_after'))} | {_fmt(r.get('ri@50'), '.3f')} | {_fmt(r.get('shift_visual'), '.3f')} / {_fmt(r.get('shift_text'), '.3f')} | {_fmt(r.get('recall@20'))} | "
            f"{_fmt(r.get('ndcg@20'))} | {_pct(r.get('ndcg@20_rel_change'))} |"
        )
    return head + "\n".join(lines) + "\n"
