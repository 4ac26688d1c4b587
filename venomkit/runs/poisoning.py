"""A poisoning run: content edits, a poisoned fine-tune per setting, ER@K and utility (VenomRec).

VenomRec (arXiv 2602.06409) is measured after the shop's ranker is fine-tuned on data holding the
poison, so one run of it is, per setting (VenomRec and its baselines and ablations,
:mod:`venomkit.attacks.venomrec`):

1. edit the targets' content with the setting's attack against the victim ranker as the
   attacker sees it (:class:`~venomkit.victims.mllm.victim.MLLMVictim` over ``attacker_users``
   users of its own, never the evaluated ones);
2. put the edited content in the catalogue (the seller's upload) and add one poisoned row per
   compromised user (:mod:`venomkit.attacks.venomrec.poisoning`);
3. fine-tune a fresh copy of the victim on clean + poisoned rows (``finetune``; a LoRA victim's
   adapters are merged first, then new adapters train: the platform's next fine-tune);
4. measure ER@K of every target next to chance, and the utility (HR/NDCG@K on the evaluated
   users' held-out items, compromised users never among them) against the ``clean`` setting
   (the same fine-tune with no edit and no poisoned row).

Settings are independent, so ``accelerate launch -m venomkit attack venomrec ...`` (or
``torchrun``) deals them round-robin over the processes (:class:`~venomkit.runs.processes.Processes`);
each process writes its settings' records and the first merges the tables once all are done:
the same tables as one process.

The folder: ``run.json`` (fingerprint: settings, data digest, victim, code), ``records/<setting>/``
(one JSON per target and ``_setting.json``, written atomically once the setting is done: a
rerun skips finished settings), ``images/<setting>/<item>_clean.png`` / ``_adv.png``,
``texts.csv`` (clean and edited text), ``results.csv`` (one row per setting and target: ER@K,
chance@K, pixel L-inf, token edits), ``poisoning.md`` / ``.csv`` (means per setting, utility),
``summary.json`` and ``report.html`` (the run report: settings table with ER@K and utility,
image cards, text diffs).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from venomkit.atomic import jsonable
from venomkit.config import build_config, check_int, check_int_list, check_number
from venomkit.progress import progress as progress_bar

DEFAULT_FINETUNE: dict[str, Any] = {"steps": 150}
"""The poisoned fine-tune's settings where a run gives none (FinetuneConfig's defaults otherwise)."""
CLEAN = "clean"
REFERENCE = "venomrec"
"""The setting every other is compared with target by target (when the run has it)."""
DEFAULT_SETTINGS: tuple[dict[str, Any], ...] = (
    {"name": CLEAN, "attack": "direct_boosting", "poison": False},
    {"name": "direct_boosting", "attack": "direct_boosting"},
    {"name": "random_injection", "attack": "random_injection"},
    {"name": "popular_item_mimicking", "attack": "popular_item_mimicking"},
    {"name": "shadowcast", "attack": "shadowcast"},
    {"name": "venomrec_text_only", "attack": "venomrec", "config": {"edit": "text"}},
    {"name": "venomrec_image_only", "attack": "venomrec", "config": {"edit": "image"}},
    {"name": "venomrec_decoupled", "attack": "venomrec", "config": {"coupled": False}},
    {"name": "venomrec_random_masks", "attack": "venomrec", "config": {"mask": "random"}},
    {"name": "venomrec", "attack": "venomrec"},
)


@dataclass
class PoisoningSetting:
    """One row of the comparison: a named attack with its config; ``poison`` adds the poisoned rows."""

    name: str
    attack: str
    config: dict[str, Any] = field(default_factory=dict)
    poison: bool = True

    def __post_init__(self) -> None:
        from venomkit.attacks import POISONING_ATTACK_NAMES

        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"setting name must be a non-empty string without '/', got {self.name!r}")
        if self.attack not in POISONING_ATTACK_NAMES:
            raise ValueError(f"setting {self.name!r}: attack {self.attack!r} is not a poisoning content attack; valid: {', '.join(POISONING_ATTACK_NAMES)}")
        if not isinstance(self.config, dict):
            raise ValueError(f"setting {self.name!r}: config must be a mapping, got {type(self.config).__name__}")
        if not isinstance(self.poison, bool):
            raise ValueError(f"setting {self.name!r}: poison must be true or false, got {self.poison!r}")


@dataclass
class PoisoningRunConfig:
    """What a poisoning run does (YAML ``attacks/venomrec.yaml`` maps onto it; unknown keys are errors).

    Attributes:
        victim: the ranker: a model spec (``zoo:toyshop-vlm``, a folder, a hub id) or a folder
            written by ``venomkit train --victim mllm``.
        targets: cold targets (at most ``max_interactions`` training interactions), seeded.
        eval_users: users whose candidate lists measure ER@K and utility; n_negatives: 99.
        attacker_users: users the attacker ranks to find the exposed items, never evaluated
            (:func:`~venomkit.victims.mllm.candidates.users_apart`: each drawn on its own, so
            ``eval_users`` changes them only by taking some of them for evaluation);
            objective_users: how many of them the content attacks' score term averages over.
        ks: the K of ER@K / HR@K.
        mr: share of users compromised per target (``ceil(#users * mr)``, at least 1).
        finetune: :class:`~venomkit.victims.mllm.finetune.FinetuneConfig` fields of the poisoned fine-tune.
        settings: the compared settings (default: clean, the four baselines, four VenomRec ablations,
            VenomRec): mappings (``name``, ``attack``, ``config``, ``poison``) or names of the default
            settings (``run.settings=clean,venomrec_text_only,venomrec`` on the command line).
        seed: seeds targets, users, lists and every attack.
        threads: torch CPU threads of each process (attacks, fine-tunes, ranking); None: torch's
            count (one per core). Float sums split by thread, so ER@K and utility may depend
            on it; summary.json records the count used (``--threads 1`` repeats bit for bit).
    """

    victim: str = "zoo:toyshop-vlm"
    targets: int = 10
    max_interactions: int = 5
    eval_users: int = 50
    n_negatives: int = 99
    objective_users: int = 16
    attacker_users: int = 50
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    mr: float = 0.01
    finetune: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FINETUNE))
    settings: list[dict[str, Any] | str] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SETTINGS])
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        from venomkit.victims.mllm.finetune import FinetuneConfig

        for name in ("targets", "eval_users", "n_negatives", "objective_users", "attacker_users"):
            check_int(name, getattr(self, name), 1)
        check_int("max_interactions", self.max_interactions, 0)
        check_int_list("ks", self.ks)
        if self.threads is not None:
            check_int("threads", self.threads, 1, hint="or null: torch's count")
        check_number("mr", self.mr, 0, 1, low_open=True)
        if not isinstance(self.finetune, dict):
            raise ValueError(f"finetune must be a mapping of FinetuneConfig fields, got {self.finetune!r}")
        self.finetune_config = build_config(FinetuneConfig, dict(self.finetune), where="finetune")
        if isinstance(self.settings, str):
            self.settings = [part.strip() for part in self.settings.split(",") if part.strip()]
        if not isinstance(self.settings, list) or not self.settings:
            raise ValueError(f"settings must be a non-empty list of settings or of default setting names, got {self.settings!r}")
        defaults = {d["name"]: d for d in DEFAULT_SETTINGS}
        for k, item in enumerate(self.settings):
            if isinstance(item, str):
                if item not in defaults:
                    raise ValueError(f"settings: {item!r} is not a default setting; valid names: {', '.join(defaults)}")
                self.settings[k] = copy.deepcopy(defaults[item])
            elif not isinstance(item, (dict, PoisoningSetting)):
                raise ValueError(f"settings: each entry is a mapping or a default setting's name, got {item!r}")
        self.parsed_settings = [PoisoningSetting(**s) if isinstance(s, dict) else s for s in self.settings]
        names = [s.name for s in self.parsed_settings]
        if len(set(names)) != len(names):
            raise ValueError(f"settings: names must be unique, got {names}")
        if CLEAN not in names:
            raise ValueError(f"settings: one setting must be named {CLEAN!r} (no edit, no poisoned row): utility is measured against it")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["finetune"] = self.finetune_config.to_dict()
        return jsonable(out)


def load_victim_ranker(spec: str, device: str = "cpu"):
    """The ranker of ``spec``: a fine-tuned ranker folder (adapters merged) or a model spec."""
    from venomkit.victims.mllm.checkpoint import is_ranker_checkpoint, load_ranker
    from venomkit.victims.mllm.ranker import MLLMRanker

    if Path(spec).is_dir() and is_ranker_checkpoint(spec):
        loaded = load_ranker(spec, device=device)
        if loaded.adapter is not None:
            loaded.ranker.model = loaded.adapter.merge_and_unload()
        return loaded.ranker
    return MLLMRanker.load(spec, device=device)


def _victim_digest(spec: str) -> str:
    from venomkit.runs.fingerprint import folder_digest

    return folder_digest(spec) if Path(spec).is_dir() else spec


def run_poisoning(config: PoisoningRunConfig, dataset, out_dir: str | Path, *, overwrite: bool = False, progress: bool = True,
                  device: str = "cpu", report: bool = True) -> dict[str, Any]:
    """Run every setting of ``config`` on ``dataset`` into ``out_dir`` (module docstring); returns the summary.

    In a group of processes each runs its share of the settings; the first returns the summary,
    the others ``{}``. Runs on ``config.threads`` torch threads (restored afterwards).
    """
    from venomkit.runs.processes import torch_threads

    with torch_threads(config.threads):
        return _run_settings(config, dataset, out_dir, overwrite=overwrite, progress=progress, device=device, report=report)


def _run_settings(config: PoisoningRunConfig, dataset, out_dir: str | Path, *, overwrite: bool, progress: bool, device: str,
                  report: bool) -> dict[str, Any]:
    """:func:`run_poisoning`'s work, on the threads it set."""
    from venomkit.attacks import get_attack
    from venomkit.attacks.targets import Knowledge, TargetBatch
    from venomkit.attacks.venomrec.poisoning import compromised_users, exposure_table, poison_rows
    from venomkit.data.interactions import select_cold_targets
    from venomkit.eval import stealth
    from venomkit.runs.fingerprint import code_digest, dataset_digest, json_form
    from venomkit.runs.processes import Processes
    from venomkit.runs.store import RunStore, file_stem, save_png
    from venomkit.victims.mllm.candidates import evaluation_users, users_apart
    from venomkit.victims.mllm.evaluate import evaluate_ranker
    from venomkit.victims.mllm.finetune import finetune
    from venomkit.victims.mllm.victim import MLLMVictim

    started = time.perf_counter()
    procs = Processes.current(device)
    device = procs.device(device)
    store = RunStore(out_dir)
    resolved = config.to_dict()
    fingerprint = json_form({"settings": resolved, "data": dataset_digest(dataset), "victim": _victim_digest(config.victim),
                             "code": code_digest()})
    resume = store.check(fingerprint, overwrite=overwrite)
    procs.barrier()  # every process has compared the folder with this run before the first one prepares it
    if procs.is_main:
        store.prepare(fingerprint, {"kind": "poisoning", **resolved}, resume, num_processes=procs.world)
    procs.barrier()

    base = load_victim_ranker(config.victim, device)
    lists, history_items = evaluation_users(dataset, n_users=config.eval_users, max_history=base.max_history,
                                            n_negatives=config.n_negatives, seed=config.seed)
    histories = {cl.user: h for cl, h in zip(lists, history_items)}
    targets = [int(t) for t in select_cold_targets(dataset.split.train, config.targets, config.max_interactions, seed=config.seed)]
    compromised = compromised_users(dataset, targets, config.mr, exclude=[cl.user for cl in lists], seed=config.seed)
    rows = poison_rows(dataset, compromised, base.max_history, seed=config.seed)
    interacted = {cl.user: set(dataset.interactions.items_of(cl.user).tolist()) for cl in lists}
    catalog = dataset.catalog
    images, texts = catalog.image_batch(targets), [catalog.texts[t] for t in targets]
    train = dataset.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=catalog.texts, images=catalog.image_list)
    ks = tuple(config.ks)

    # The attacker's own users (never evaluated): the exposed items and the score term come from them.
    attacker_lists, attacker_histories = users_apart(dataset, n_users=config.attacker_users, exclude=[cl.user for cl in lists],
                                                     max_history=base.max_history, n_negatives=config.n_negatives, seed=config.seed + 7)
    attacker_victim = MLLMVictim(base, catalog, attacker_lists, attacker_histories, n_users=dataset.n_users, objective_users=config.objective_users)
    pending = [s for s in config.parsed_settings if not store.is_done(s.name, "_setting")]
    mine = pending[procs.rank :: procs.world]
    desc = "poisoning settings" if procs.world == 1 else f"poisoning settings (process {procs.rank} of {procs.world})"
    for setting in progress_bar(mine, desc=desc, unit="setting", enabled=progress):
        t0 = time.perf_counter()
        attack = get_attack(setting.attack)({"seed": config.seed, **setting.config})
        result = attack(attacker_victim, TargetBatch(targets, images, texts, knowledge=knowledge))
        adv_images = result.adv_images if result.adv_images is not None else images
        adv_texts = result.adv_texts if result.adv_texts is not None else texts
        attack_seconds = time.perf_counter() - t0
        poisoned = dataclasses.replace(dataset, catalog=catalog.with_content(targets, adv_images, adv_texts))
        ranker = copy.deepcopy(base)
        tuned = finetune(ranker, poisoned, config.finetune_config, extra_rows=rows if setting.poison else None, progress=progress)
        if tuned.adapter is not None:
            ranker.model = tuned.adapter.merge_and_unload()
        er = exposure_table(ranker, poisoned.catalog, lists, histories, targets, interacted=interacted, ks=ks,
                            exclude_users=[u for us in compromised.values() for u in us], progress=progress)
        utility = evaluate_ranker(ranker, poisoned, lists=lists, ks=ks, seed=config.seed, progress=False, left_out=targets)
        for k, t in enumerate(targets):
            stem = f"{setting.name}/{file_stem(catalog.item_ids[t])}"
            save_png(images[k], store.out / "images" / f"{stem}_clean.png")
            save_png(adv_images[k], store.out / "images" / f"{stem}_adv.png")
            clean_k, adv_k = images[k][None].double(), adv_images[k][None].double()  # what the ranker was tuned and scored on
            record = {"setting": setting.name, "attack": setting.attack, "item": t, "item_id": catalog.item_ids[t],
                      **{key: v for key, v in er[k].items() if key != "item"},
                      "linf": float(stealth.linf(clean_k, adv_k)), "ssim": float(stealth.ssim(clean_k, adv_k)),
                      "text_changed": adv_texts[k] != texts[k], "original": texts[k], "adversarial": adv_texts[k],
                      "compromised_users": compromised[t],
                      **{key: float(v[k]) for key, v in result.diagnostics.items()}}
            store.commit(setting.name, catalog.item_ids[t], record)
        store.commit(setting.name, "_setting", {"utility": utility, "finetune": tuned.summary(), "attack_seconds": attack_seconds,
                                                 "seconds": time.perf_counter() - t0, "poisoned_rows": len(rows) if setting.poison else 0,
                                                 "process": procs.rank})
    procs.barrier()
    if not procs.is_main:
        return {}
    return _merge(config, store, targets, dataset, started, report, procs.world)


def _merge(config: PoisoningRunConfig, store, targets: list[int], dataset, started: float, report: bool, num_processes: int = 1) -> dict[str, Any]:
    """results.csv, texts.csv, poisoning.csv/.md, summary.json (and report.html) from the records."""
    from venomkit.runs.store import file_stem
    from venomkit.victims.mllm.evaluate import mean_and_standard_error, paired_difference, rank_metrics

    ks = config.ks
    rows, text_rows, table, per_setting, per_target = [], [], [], {}, {}
    clean_utility = store.read_record(CLEAN, "_setting")["utility"]
    # the same lists with the targets left out of the negatives (from the same scores): is a utility
    # drop the edited targets outranking held-out items, or the fine-tune itself? (absent in records
    # written before it was measured)
    infos = {s.name: store.read_record(s.name, "_setting") for s in config.parsed_settings}
    without = all("ranks_without_left_out" in info["utility"] for info in infos.values())
    records_of = {s.name: [store.read_record(s.name, dataset.catalog.item_ids[t]) for t in targets] for s in config.parsed_settings}
    with_ssim = all("ssim" in r for records in records_of.values() for r in records)  # absent in records written before it was
    for setting in config.parsed_settings:
        info = infos[setting.name]
        records = records_of[setting.name]
        for r in records:
            stem = f"images/{setting.name}/{file_stem(r['item_id'])}"
            rows.append({"victim": config.victim, "attack": setting.name, "method": r["attack"],
                         **{k: v for k, v in r.items() if k not in ("setting", "attack", "original", "adversarial", "compromised_users")},
                         "clean_image": f"{stem}_clean.png", "adv_image": f"{stem}_adv.png"})
            if r["text_changed"]:
                text_rows.append({"victim": config.victim, "attack": setting.name, "item_id": r["item_id"], "original": r["original"], "adversarial": r["adversarial"]})
        means = {f"er@{k}": float(np.mean([r[f"er@{k}"] for r in records])) for k in ks}
        if with_ssim:
            means["ssim"] = float(np.mean([r["ssim"] for r in records]))
        utility = info["utility"]
        drop = {f"hr@{k}_drop": (clean_utility[f"hr@{k}"] - utility[f"hr@{k}"]) / max(clean_utility[f"hr@{k}"], 1e-12) for k in ks}
        # the same users and lists as the clean setting: paired per-user difference of hits and its standard error
        versus_clean = paired_difference(np.asarray(utility["ranks"]), np.asarray(clean_utility["ranks"]), ks, prefix="utility_vs_clean_")
        without_targets = {}
        if without:
            own, clean_own = np.asarray(utility["ranks_without_left_out"]), np.asarray(clean_utility["ranks_without_left_out"])
            without_targets = {f"utility_without_targets_{m}": v for m, v in rank_metrics(own, ks).items() if m.startswith(("hr@", "ndcg@"))}
            without_targets.update(paired_difference(own, clean_own, ks, prefix="utility_without_targets_vs_clean_"))
        per_setting[setting.name] = {**means, **{f"chance@{k}": records[0][f"chance@{k}"] for k in ks},
                                     **{f"hr@{k}": utility[f"hr@{k}"] for k in ks},
                                     **{f"utility_{m}@{k}": utility[f"{m}@{k}"] for m in ("hr", "ndcg") for k in ks},
                                     **drop, **versus_clean, **without_targets, "seconds": info["seconds"]}
        table.append({"setting": setting.name, **per_setting[setting.name]})
        per_target[setting.name] = {r["item_id"]: r for r in records}
    if REFERENCE in per_target:  # the reference minus each setting, paired over the same targets
        reference = per_target[REFERENCE]
        for row in table:
            for k in ks:
                diffs = [reference[item][f"er@{k}"] - r[f"er@{k}"] for item, r in per_target[row["setting"]].items()]
                row[f"{REFERENCE}_minus_er@{k}"], row[f"{REFERENCE}_minus_er@{k}_se"] = mean_and_standard_error(diffs)
    store.write_results(rows)
    store.write_texts(text_rows)
    k_versus, k_top = (10 if 10 in ks else ks[-1]), ks[-1]
    compared = REFERENCE in per_target
    header = ("| setting | " + " | ".join(f"ER@{k}" for k in ks) + " | " + " | ".join(f"HR@{k} (utility)" for k in ks)
              + f" | HR@{k_versus} vs clean (paired over users, ± SE) |"
              + (" the same, targets left out of the lists |" if without else "")
              + (f" ER@{k_top}: {REFERENCE} minus this (paired over targets, ± SE) |" if compared else "")
              + (" SSIM |" if with_ssim else ""))
    lines = [header, "|---|" + "---:|" * (2 * len(ks) + 1 + without + compared + with_ssim)]

    def versus(row: dict, prefix: str) -> str:
        return "" if row["setting"] == CLEAN else f"{row[f'{prefix}hr@{k_versus}']:+.3f} ± {row[f'{prefix}hr@{k_versus}_se']:.3f}"

    for row in table:
        line = (f"| {row['setting']} | " + " | ".join(f"{row[f'er@{k}']:.3f}" for k in ks) + " | "
                + " | ".join(f"{row[f'hr@{k}']:.3f}" for k in ks) + f" | {versus(row, 'utility_vs_clean_')} |")
        if without:
            line += f" {versus(row, 'utility_without_targets_vs_clean_')} |"
        if compared:
            minus = "" if row["setting"] == REFERENCE else f"{row[f'{REFERENCE}_minus_er@{k_top}']:+.3f} ± {row[f'{REFERENCE}_minus_er@{k_top}_se']:.3f}"
            line += f" {minus} |"
        if with_ssim:
            line += f" {row['ssim']:.3f} |"
        lines.append(line)
    lines.append("| chance | " + " | ".join(f"{table[0][f'chance@{k}']:.3f}" for k in ks) + " | " + " | ".join("" for _ in ks) + " | |"
                 + (" |" if without else "") + (" |" if compared else "") + (" |" if with_ssim else ""))
    store.write_table(table, "\n".join(lines) + "\n", stem="poisoning")
    import torch

    summary = {"kind": "poisoning", "name": "venomrec", "victim": config.victim,
               "targets": [dataset.catalog.item_ids[t] for t in targets],
               "settings": [{"victim": config.victim, "attack": name, "means": means, "n_targets": len(targets)}
                            for name, means in per_setting.items()],
               "num_processes": num_processes, "threads": torch.get_num_threads(),  # float sums, so the figures, depend on it
               "seconds": time.perf_counter() - started}
    store.write_summary(summary)
    if report:
        from venomkit.runs.report import build_report

        summary["report"] = str(build_report(store.out))
    return summary


def poisoning_config_from_yaml(values: dict[str, Any], where: str) -> PoisoningRunConfig:
    """A :class:`PoisoningRunConfig` from a recipe mapping (unknown keys name the valid ones)."""
    return build_config(PoisoningRunConfig, values, where=where)



# ---------------------------------------------------------------------------------------------
# Command line: ``venomkit attack venomrec ...`` / ``venomkit run attacks/venomrec.yaml ...``
# ---------------------------------------------------------------------------------------------

NOT_APPLICABLE = ("batch_size", "surrogate", "stealth_clip", "shop_transform", "save_format", "cache", "no_cache")


@dataclass(frozen=True)
class PoisoningRecipe:
    """What ``venomkit run`` / ``venomkit attack`` were given, when it is a poisoning run.

    ``attack``: the poisoning attack's registry name (``venomrec``); ``ref``: the reference as
    given (a registry name, an attack recipe, or a poisoning run recipe); ``file``: the parsed
    poisoning run recipe when ``ref`` is one (read once per command), else None.
    """

    attack: str
    ref: str
    file: Any = None


def _attack_ref(parsed) -> str:
    """A poisoning run recipe's ``recipe:``: a file (next to the run recipe, or in the checkout) or a registry name."""
    from venomkit.runs.recipe import RECIPE_SUFFIXES, RecipeError, find_recipe

    ref = str(parsed.data["recipe"])
    if not ref.endswith(RECIPE_SUFFIXES):
        return ref
    try:
        return str(find_recipe(ref, parsed.path.parent))
    except RecipeError as exc:
        raise parsed.source.error(("recipe",), str(exc)) from None


def poisoning_recipe(recipe: str) -> PoisoningRecipe | None:
    """The poisoning run ``recipe`` names (a registry name, an attack recipe, a poisoning run recipe), else None.

    A recipe file that is not found, or a name that is not a poisoning attack, gives None: the
    engine's loader reports it. A malformed file, or a poisoning run recipe whose ``recipe:`` is
    not a poisoning attack, is a :class:`~venomkit.runs.recipe.RecipeError` naming its line.
    """
    from venomkit.attacks import POISONING_ATTACK_NAMES
    from venomkit.runs.recipe import RECIPE_SUFFIXES, RecipeError, find_recipe, read_recipe

    key = str(recipe).strip().lower().replace("-", "_")
    if key in POISONING_ATTACK_NAMES:
        return PoisoningRecipe(key, str(recipe))
    if not str(recipe).endswith(RECIPE_SUFFIXES):
        return None
    try:
        path = find_recipe(str(recipe))
    except RecipeError:
        return None  # the loader reports it
    parsed = read_recipe(path)  # a malformed file is an error naming its line
    if parsed.kind == "attack":
        return PoisoningRecipe(parsed.name, str(recipe)) if parsed.name in POISONING_ATTACK_NAMES else None
    if parsed.kind != "poisoning":
        return None
    inner = poisoning_recipe(_attack_ref(parsed))
    if inner is None or inner.file is not None:
        raise parsed.source.error(("recipe",), f"{parsed.data['recipe']!r} is not a poisoning attack recipe or name "
                                               f"(valid attacks: {', '.join(POISONING_ATTACK_NAMES)}); a content attack is "
                                               f"run by a run recipe's attacks: list")
    return PoisoningRecipe(inner.attack, str(recipe), parsed)


FLAG_KEYS = (("victim", "victim"), ("targets", "targets"), ("seed", "seed"), ("max_interactions", "max_interactions"), ("threads", "threads"))
"""(flag, PoisoningRunConfig field) pairs: a flag replaces the recipe's value."""


def config_from_command_line(recipe: str | PoisoningRecipe, overrides: list[str], args) -> tuple[PoisoningRunConfig, str]:
    """The run config and dataset spec of a poisoning run.

    ``recipe`` is a poisoning attack (``venomrec``, ``attacks/venomrec.yaml``) or a poisoning run
    recipe (``experiments/venomrec.yaml``: ``recipe``, ``config``, ``data``, ``run``), by
    reference or as :func:`poisoning_recipe` found it. On top of
    the file: ``run.KEY=VALUE`` overrides (``run.finetune.steps=100``) set the run,
    bare ``key=value`` ones the attack's config, then the flags (``--victim``, ``--targets``,
    ``--seed``, ``--max-interactions``, ``--threads``, ``--data``). The same settings give the same config, and
    so the same run folder fingerprint, whichever way they were given.
    """
    from venomkit.attacks import POISONING_ATTACK_NAMES
    from venomkit.config import parse_overrides
    from venomkit.runs.recipe import AttackSpec, RecipeError, Source, build, resolve_attack_spec

    for name in NOT_APPLICABLE:
        if getattr(args, name, None) not in (None, False):
            raise ValueError(f"--{name.replace('_', '-')} does not apply to a poisoning run (VenomRec); leave it out")
    found = recipe if isinstance(recipe, PoisoningRecipe) else poisoning_recipe(recipe)
    if found is None:
        raise RecipeError(f"{recipe!r} is not a poisoning attack or poisoning run recipe (the poisoning attacks: "
                          f"{', '.join(POISONING_ATTACK_NAMES)})")
    parsed = found.file
    if parsed is not None:
        source, relative_to = parsed.source, parsed.path.parent
        attack_ref, attack_config = _attack_ref(parsed), dict(parsed.config)
        run_values = copy.deepcopy(dict(parsed.data.get("run") or {}))
        data = parsed.data.get("data") or "toyshop"
    else:
        source, relative_to = Source(file="command line"), None
        attack_ref, attack_config, run_values, data = found.ref, {}, {}, "toyshop"
    if isinstance(run_values.get("finetune"), dict):  # the run's fine-tune default, then the recipe's fields
        run_values["finetune"] = {**DEFAULT_FINETUNE, **run_values["finetune"]}
    for item in overrides:
        try:
            (key, value), = parse_overrides([item]).items()
        except ValueError as exc:
            raise RecipeError(f"command line: {exc} (run.KEY=VALUE for the run, KEY=VALUE for the attack's config)") from None
        if key.startswith("run.finetune."):
            finetune = run_values.get("finetune")
            run_values["finetune"] = finetune = dict(DEFAULT_FINETUNE) if not isinstance(finetune, dict) else finetune
            finetune[key[len("run.finetune."):]] = value
            source.overrides[("run", "finetune")] = item
        elif key.startswith("run."):
            run_values[key[len("run."):]] = value
            source.overrides[("run", key[len("run."):])] = item
        else:
            attack_config[key] = value
            source.overrides[("config", key)] = item
    for flag, key in FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is not None:
            run_values[key] = value
            source.overrides[("run", key)] = f"--{flag.replace('_', '-')} {value}"
    if getattr(args, "data", None):
        data = args.data
    config = build(PoisoningRunConfig, run_values, source, ("run",))
    spec = AttackSpec(**AttackSpec.expand(attack_ref), config=attack_config)
    resolved = resolve_attack_spec(spec, config.seed, source, (), relative_to)  # validates the attack config; the run's seed unless it sets one
    attack_config = {f.name: getattr(resolved.config, f.name) for f in dataclasses.fields(resolved.config)}
    # the recipe's attack config replaces that attack's defaults in every setting using it (ablations keep their changes)
    for setting in config.settings:
        if setting.get("attack") == resolved.cls.name:
            setting["config"] = {**attack_config, **setting.get("config", {})}
    return build_config(PoisoningRunConfig, {**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)}}, where="command line"), str(data)


def cli_poisoning(recipe: str | PoisoningRecipe, overrides: list[str], args) -> int:
    """Run a poisoning recipe from the command line and print its table; returns the exit status."""
    from venomkit.data.loaders import load_dataset

    config, data = config_from_command_line(recipe, overrides, args)
    dataset = load_dataset(data)
    summary = run_poisoning(config, dataset, args.out, overwrite=getattr(args, "overwrite", False),
                            progress=not getattr(args, "quiet", False), device=getattr(args, "device", None) or "cpu",
                            report=not getattr(args, "no_report", False))
    if not summary:  # a process other than the first of a group: the first prints the tables
        return 0
    print((Path(args.out) / "poisoning.md").read_text(), end="")
    print(f"results: {args.out}/results.csv ({len(summary['targets'])} targets x {len(summary['settings'])} settings, {summary['seconds']:.0f} s)")
    if summary.get("report"):
        print(f"report: {summary['report']}")
    return 0
