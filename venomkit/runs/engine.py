"""The run engine: a resolved recipe in, a run folder out, on one process or many.

    resolve (venomkit.runs.recipe)  -> every setting checked before any work
    fingerprint + folder check      -> resume this run, or refuse another one (naming the difference)
    victims (venomkit.runs.victims) -> trained / loaded / hardened once, by the main process, cached
    plan (venomkit.runs.plan)       -> settings x target batches; finished batches skipped
    jobs, dealt to processes        -> attack a batch, save its content, read it back,
                                       measure it (venomkit.runs.collectors), commit each target
    merge (main process)            -> results.csv, texts.csv, summary.json, tables, report.html

A job is "batch in, rows out" (:func:`attack_batch`): the attack gets the B targets' clean
content as one batch; the adversarial images are saved as 8-bit PNGs (and passed through the
shop's pipeline, ``venomkit.runs.shop``) and READ BACK, and every figure comes from those files
re-encoded by the victim's own encoders, one target at a time (only that target's content
replaced). Each target's record is committed atomically after its images, so an interrupted
run resumes where it stopped and ends with the tables an uninterrupted run writes.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from venomkit.atomic import write_bytes
from venomkit.attacks.targets import TargetBatch
from venomkit.runs.collectors import AttackedBatch, collect_rows
from venomkit.runs.grids import grid_image
from venomkit.runs.fingerprint import code_digest, dataset_digest, run_fingerprint, sha256_json, state_digest
from venomkit.runs.plan import Job, Setting, make_plan, shard
from venomkit.runs.processes import Processes, torch_threads
from venomkit.runs.recipe import ResolvedAttack, ResolvedRun
from venomkit.runs.shop import ShopTransform, parse_save_format, save_jpeg
from venomkit.runs.store import RunStore, file_stem, save_png
from venomkit.runs.tables import format_judge_table, judge_rows, setting_summary
from venomkit.runs.victims import RunVictim, VictimBuilder, default_cache_dir

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------


def select_targets(dataset: Any, run: ResolvedRun) -> list[int]:
    """The run's target item indices, in order.

    Explicit ``targets.items`` (dataset ids) as given; otherwise ``targets.n`` cold items
    (at most ``max_interactions`` training interactions) that have an image, drawn with the
    run's seed. An explicit target without an image is an error: its "before" and "after"
    could not come from the same content.
    """
    from venomkit.data.interactions import select_cold_targets

    spec = run.recipe.targets
    catalog = dataset.catalog
    if spec.items is not None:
        out = []
        for item_id in spec.items:
            try:
                index = catalog.index_of(item_id)
            except KeyError:
                raise ValueError(f"targets.items: unknown item id {item_id!r} in dataset {dataset.name}") from None
            if not catalog.has_image(index):
                raise ValueError(f"targets.items: item {item_id!r} has no readable image; attack targets need one")
            out.append(index)
        return out
    with_image = np.asarray([catalog.has_image(i) for i in range(catalog.n_items)], dtype=bool)
    return select_cold_targets(dataset.split.train, spec.n, max_interactions=spec.max_interactions, seed=run.recipe.seed, allowed=with_image).tolist()


# ----------------------------------------------------------------------------------------
# One batch: attack, save, read back, measure
# ----------------------------------------------------------------------------------------


@dataclass
class BatchContext:
    """What every batch of one setting shares in this process."""

    setting: Setting
    victim: Any
    attack: Any
    dataset: Any
    knowledge: Any
    collectors: Sequence[str]
    ks: Sequence[int]
    shop: ShopTransform
    stealth_clip: tuple[Any, Any] | None
    image_dir: Path
    out: Path
    grids: bool
    jpeg_quality: int | None = None


def victim_independent_key(ctx: BatchContext, targets: Sequence[int]) -> tuple[Any, ...] | None:
    """A key for the batch's adversarial content when it cannot depend on the victim scored.

    True of an attack that never reads the victim (``victim_independent``: AUV-Fusion) and of
    one optimised on a surrogate victim; the key holds the attack's effective config, so two
    settings share content only when they would compute it identically.
    """
    from venomkit.victims.base import Victim

    attack = ctx.attack
    if not (getattr(attack, "victim_independent", False) or isinstance(getattr(attack, "surrogate", None), Victim)):
        return None
    return (ctx.setting.attack, tuple(int(t) for t in targets), repr(getattr(attack, "config", None)))


def attack_batch(ctx: BatchContext, targets: Sequence[int], memo: dict[tuple[Any, ...], Any] | None = None) -> list[dict[str, Any]]:
    """Attack B targets, save and read back their content, and return one record per target.

    A record is ``{"row": {...result columns...}, "text": {"original", "adversarial"} | None,
    "seconds": ...}``; the caller commits it. ``memo`` (one entry, kept by the caller across
    settings) reuses the content of an attack that does not depend on the victim
    (:func:`victim_independent_key`): the next victim scores the same images and texts, and
    its records report the seconds it took to make them (plus their own saving).
    """
    catalog = ctx.dataset.catalog
    attack, victim = ctx.attack, ctx.victim
    index = torch.tensor(list(targets))
    texts = catalog.text_batch(targets)
    perturbs = set(getattr(attack, "perturbs", ()))
    t0 = time.perf_counter()
    adv_rows = adv_texts = None
    adv_saved: list[torch.Tensor] | None = None
    clean_saved: list[torch.Tensor] | None = None
    paths: list[dict[str, str]] = [{} for _ in targets]
    key = victim_independent_key(ctx, targets) if memo is not None else None
    made_seconds = None
    if "features" in perturbs:
        adv_rows, diagnostics = attack.attack_rows(victim, index, ctx.dataset.split.train)
    else:
        images = [im.to(victim.device) for im in catalog.image_list(targets)]
        if key is not None and key in memo:
            result, made_seconds = memo[key]
            t0 = time.perf_counter()
        else:
            categories = catalog.attributes.get("category")
            knowledge = dataclasses.replace(ctx.knowledge, protected_words=[[str(categories[t])] for t in targets] if categories is not None else None)
            result = attack(victim, TargetBatch(index, images, texts, knowledge=knowledge))
            if key is not None:
                memo.clear()
                memo[key] = (result, time.perf_counter() - t0)
        diagnostics = result.diagnostics
        if "text" in perturbs:
            adv_texts = list(result.adv_texts)
        if "visual" in perturbs:
            clean_saved, adv_saved = [], []
            for b, t in enumerate(targets):
                clean, adv, files = _save_images(ctx, catalog.item_ids[t], images[b].cpu(), result.adv_images[b].cpu())
                clean_saved.append(clean)
                adv_saved.append(adv)
                paths[b] = files
    seconds = time.perf_counter() - t0 + (made_seconds or 0.0)  # a reused content's making counted

    batch = AttackedBatch(
        victim=victim, targets=list(targets), train=ctx.dataset.split.train.matrix, ks=ctx.ks, clean_texts=texts,
        adv_texts=adv_texts, clean_images=clean_saved, adv_images=adv_saved, adv_rows=adv_rows,
        diagnostics=diagnostics, stealth_clip=ctx.stealth_clip,
    )
    columns = collect_rows(ctx.collectors, batch)
    popularity = ctx.knowledge.popularity
    records = []
    for b, t in enumerate(targets):
        s = ctx.setting
        row: dict[str, Any] = {"victim": s.victim, "backbone": s.backbone, "defense": s.defense, "attack": s.attack,
                               "item_id": catalog.item_ids[t], "item_index": int(t), "popularity": int(popularity[t])}
        row.update(columns[b])
        row.update(paths[b])
        text = {"original": texts[b], "adversarial": adv_texts[b]} if adv_texts is not None else None
        records.append({"row": row, "text": text, "seconds": seconds / len(targets)})
    return records


def _save_images(ctx: BatchContext, item_id: str, clean: torch.Tensor, adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """Save clean and adversarial PNGs (and the shop's files), read them back; returns what is measured."""
    from venomkit.data.catalog import load_image_file

    stem = file_stem(item_id)
    clean_path = save_png(clean, ctx.image_dir / f"{stem}_clean.png")
    adv_path = save_png(adv, ctx.image_dir / f"{stem}_adv.png")
    if ctx.jpeg_quality is not None:
        save_jpeg(adv, ctx.image_dir / f"{stem}_adv.jpg", ctx.jpeg_quality)
    clean_back, adv_back = load_image_file(clean_path), load_image_file(adv_path)
    if not ctx.shop.identity:
        clean_path, clean_back = ctx.shop.save(clean_back, ctx.image_dir / f"{stem}_clean_shop")
        adv_path, adv_back = ctx.shop.save(adv_back, ctx.image_dir / f"{stem}_adv_shop")
    if ctx.grids:  # a picture for people, not a result: fast compression
        buffer = io.BytesIO()
        grid_image(clean_back, adv_back).save(buffer, format="PNG", compress_level=1)
        write_bytes(ctx.image_dir / f"{stem}_grid.png", buffer.getvalue())
    rel = {"clean_image": str(clean_path.relative_to(ctx.out)), "adv_image": str(adv_path.relative_to(ctx.out))}
    return clean_back, adv_back, rel


# ----------------------------------------------------------------------------------------
# Building what a setting needs
# ----------------------------------------------------------------------------------------


def build_attack(resolved: ResolvedAttack, victim: Any, device: str, surrogate_victim: Any = None) -> Any:
    """The attack object of a setting (its own models loaded by ``from_config``).

    A graph victim (MMGCN, LightGCN) couples items, so a batch of targets optimised in one
    tensor interact there; unless the recipe sets ``batch_targets``, each target is optimised
    alone on such a victim, as it is evaluated (the model optimised on decides: the
    ``surrogate_victim`` when there is one).
    """
    from venomkit.victims.graph import GraphMixin

    config = resolved.config
    optimised_on = surrogate_victim if surrogate_victim is not None else victim  # the model the gradients come from
    if isinstance(optimised_on, GraphMixin) and hasattr(config, "batch_targets") and "batch_targets" not in resolved.explicit:
        config = dataclasses.replace(config, batch_targets=False)
    surrogate = surrogate_victim
    if resolved.spec.surrogate:
        from venomkit.encoders.loading import load_image_encoder

        surrogate = load_image_encoder(resolved.spec.surrogate, device)
    return resolved.cls.from_config(config, surrogate=surrogate, device=device)


def stealth_clip_pair(spec: str | None, victim: Any, device: str) -> tuple[Any, Any] | None:
    """The CLIP of the ``clip_*`` figures: ``spec`` loaded, else the victim's encoders when they are one open_clip model."""
    from venomkit.encoders.openclip import OpenClipImageEncoder, OpenClipTextEncoder

    if spec:
        from venomkit.encoders.loading import load_encoders

        image, text = load_encoders(spec, device)
        if text is None:
            raise ValueError(f"metrics.stealth_clip {spec!r} has no text tower; give an open_clip spec")
        return image, text
    img, txt = getattr(victim, "image_encoder", None), getattr(victim, "text_encoder", None)
    if isinstance(img, OpenClipImageEncoder) and isinstance(txt, OpenClipTextEncoder) and img.spec == txt.spec:
        return img, txt
    return None


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------


def load_run_dataset(run: ResolvedRun) -> Any:
    from venomkit.data.loaders import load_dataset

    spec = run.recipe.data
    return load_dataset(spec.spec, split=spec.split, split_seed=spec.split_seed) if spec.split else load_dataset(spec.spec)


def execute(
    run: ResolvedRun,
    out: str | Path,
    *,
    overwrite: bool = False,
    cache_dir: str | Path | None = "default",
    progress: bool = True,
    dataset: Any = None,
    victims: dict[str, Any] | None = None,
    attacks: dict[str, Any] | None = None,
    stealth_clip: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Run ``run`` into ``out`` (see the module docstring); returns the summary (main process).

    ``cache_dir``: the cache of trained victims and encoded catalogs (``"default"``:
    ``$VENOMKIT_CACHE`` or ``~/.cache/venomkit``; None: no cache). In Python, ready objects
    may stand in for what a recipe names: ``dataset`` (else loaded from the data spec),
    ``victims`` (``{name: Victim}`` for the recipe's ``given`` victims), ``attacks``
    (``{name: Attack}`` objects used as they are, e.g. an attack class of your own) and
    ``stealth_clip`` (an ``(image, text)`` encoder pair). Objects are fingerprinted by their
    weights (attacks by class and config, which ``run.json`` holds).
    """
    t_start = time.perf_counter()
    recipe = run.recipe
    procs = Processes.current(recipe.device)
    device = procs.device(recipe.device)
    store = RunStore(out)
    cache = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir is not None else None)

    dataset = dataset if dataset is not None else load_run_dataset(run)
    digest = dataset_digest(dataset)
    resolved = run.to_dict()
    fingerprint = run_fingerprint(resolved, digest)
    given = {name: state_digest(v) for name, v in (victims or {}).items()}
    if stealth_clip is not None:
        given["stealth_clip"] = state_digest(stealth_clip[0]) + state_digest(stealth_clip[1])
    if given:
        fingerprint["given"] = given
    resume = store.check(fingerprint, overwrite=overwrite)
    targets = select_targets(dataset, run)
    procs.barrier()
    if procs.is_main:
        store.prepare(fingerprint, resolved, resume=resume, num_processes=procs.world)
        if resume:
            logger.info("resuming the run in %s", store.out)

    builder = VictimBuilder(run, dataset, digest, store.out, cache, device, progress=progress and procs.is_main, given=victims)
    planned = builder.planned()
    plan = make_plan([{"name": v.name, "backbone": v.backbone, "defense": v.defense, "modalities": v.modalities} for v in planned if v.attacked],
                     run.attacks, targets, recipe.targets.batch_size)
    if procs.is_main:
        built = builder.build_all()
        by_name = {v.name: v for v in built}
        prepare_attackers(run, dataset, digest, targets, store.out, cache, device, load_victim=lambda name: builder.load(by_name[name]),
                          victim_key=builder.content_key)
    procs.barrier()
    run_victims = {v.name: v for v in (built if procs.is_main else planned)}
    item_ids = dataset.catalog.item_ids
    pending = plan.pending(store.is_done, item_ids)
    mine = shard(pending, procs.rank, procs.world)
    n_done = len(plan.jobs) - len(pending)
    logger.info("%d settings x %d targets in %d batches: %d done, %d to run%s", len(plan.settings), len(targets), len(plan.jobs),
                n_done, len(pending), f", {len(mine)} on process {procs.rank} of {procs.world}" if procs.world > 1 else "")

    with torch_threads(recipe.threads):
        _run_jobs(run, mine, run_victims, builder, dataset, store, device, procs, progress, stealth_clip, attacks or {}, targets)
    procs.barrier()
    if not procs.is_main:
        return {}
    return finish(run, plan, targets, run_victims, builder, dataset, store, procs.world, time.perf_counter() - t_start)


def attacker_folder(out: Path, name: str) -> Path:
    """Where an attack's own trained models live in the run folder (``attackers/<attack>/``)."""
    return Path(out) / "attackers" / name


def attacker_cache_key(resolved: Any, data_digest: str, targets: Sequence[int], surrogate_key: str | None) -> str:
    """Content hash of an attack's trained attacker-side models: its class and the settings they
    depend on (``Attack.prepare_settings``: the config without per-target-only fields), the data,
    the targets it must not train on, venomkit's code, and the content key of the
    ``surrogate_victim`` it trains against (None without one)."""
    return sha256_json({"what": "attacker models", "class": resolved.to_dict()["class"], "config": resolved.cls.prepare_settings(resolved.config),
                        "data": data_digest, "targets": sorted(int(t) for t in targets), "code": code_digest(),
                        "surrogate_victim": surrogate_key})


def prepare_attackers(run: ResolvedRun, dataset: Any, data_digest: str, targets: Sequence[int], out: Path, cache: Path | None, device: str,
                      load_victim: Callable[[str], Any] | None = None, victim_key: Callable[[str], str] | None = None) -> None:
    """Main process: train the attacker-side models of every attack that has any (``prepare``).

    An attack with a ``prepare(ctx)`` method (AUV-Fusion's user model and MLP) is trained
    once per run, into ``attackers/<attack>/``, from where every process loads it; the state
    is cached by content hash (:func:`attacker_cache_key`), so another run with the same attack
    does not train it again, and attacks of this run with the same key train it once (copied
    from the first, also without a cache). ``load_victim(name)`` gives an attack its ``surrogate_victim`` (the
    attacker's own model) and ``victim_key(name)`` that model's content key.
    """
    import shutil
    import tempfile

    from venomkit.atomic import TMP_PREFIX

    in_run: dict[str, Path] = {}  # key -> the folder of an attack of this run that holds those models
    for resolved in run.attacks:
        if not hasattr(resolved.cls, "prepare"):
            continue
        folder = attacker_folder(out, resolved.spec.name)
        surrogate = resolved.spec.surrogate_victim
        key = attacker_cache_key(resolved, data_digest, targets, victim_key(surrogate) if surrogate and victim_key else None)
        if (folder / "prepared.json").is_file():
            in_run.setdefault(key, folder)
            continue
        if key in in_run:
            logger.info("attack %s: the same attacker models as attack %s, copied", resolved.spec.name, in_run[key].name)
            shutil.copytree(in_run[key], folder, dirs_exist_ok=True)
            continue
        in_run[key] = folder
        hit = cache / "attackers" / key[:32] if cache is not None else None
        if hit is not None and (hit / "prepared.json").is_file():
            logger.info("attack %s: its models were trained before, loaded from the cache (%s)", resolved.spec.name, hit)
            shutil.copytree(hit, folder, dirs_exist_ok=True)
            continue
        surrogate = load_victim(resolved.spec.surrogate_victim) if resolved.spec.surrogate_victim and load_victim else None
        attack = build_attack(resolved, None, device, surrogate)
        attack.prepare(_prepare_context(dataset, targets, folder, device))
        if hit is not None:
            hit.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=hit.parent))
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            try:
                os.replace(tmp, hit)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)


def _prepare_context(dataset: Any, targets: Sequence[int], folder: Path, device: str) -> Any:
    from venomkit.attacks.base import PrepareContext
    from venomkit.attacks.targets import Knowledge

    train = dataset.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=dataset.catalog.texts, images=dataset.catalog.image_list)
    return PrepareContext(dataset=dataset, knowledge=knowledge, targets=[int(t) for t in targets], folder=folder, device=device)


def _run_jobs(run: ResolvedRun, jobs: Sequence[Job], victims: dict[str, RunVictim], builder: VictimBuilder, dataset: Any,
              store: RunStore, device: str, procs: Processes, progress: bool, stealth_clip: tuple[Any, Any] | None,
              given_attacks: dict[str, Any], run_targets: Sequence[int]) -> None:
    from venomkit.attacks.targets import Knowledge
    from venomkit.progress import progress as progress_bar

    if not jobs:
        return
    recipe = run.recipe
    attacks = {a.spec.name: a for a in run.attacks}
    train = dataset.split.train
    knowledge = Knowledge(train=train.matrix, popularity=train.popularity(), texts=dataset.catalog.texts, images=dataset.catalog.image_list)
    shop = ShopTransform(recipe.shop_transform)
    single = len({j.setting for j in jobs}) == 1 and _is_single_setting(run)
    contexts: dict[Setting, BatchContext] = {}
    loaded: dict[str, Any] = {}
    memo: dict[tuple[Any, ...], Any] = {}  # the last victim-independent batch's content (jobs come attack, batch, victim)
    clip_spec = recipe.metrics.stealth_clip
    shared_clip = stealth_clip if stealth_clip is not None else (stealth_clip_pair(clip_spec, None, device) if clip_spec else None)
    bar = progress_bar(total=sum(len(j.targets) for j in jobs), desc="targets" if procs.world == 1 else f"targets (process {procs.rank})",
                       unit="target", enabled=progress)
    try:
        for job in jobs:
            s = job.setting
            if s not in contexts:
                if s.victim not in loaded:
                    loaded[s.victim] = builder.load(victims[s.victim])
                victim = loaded[s.victim]
                resolved = attacks[s.attack]
                surrogate = None
                if resolved.spec.surrogate_victim is not None:
                    name = resolved.spec.surrogate_victim
                    if name not in loaded:
                        loaded[name] = builder.load(victims[name])
                    surrogate = loaded[name]
                attack = given_attacks.get(s.attack) or build_attack(resolved, victim, device, surrogate)
                if hasattr(attack, "prepare"):
                    attack.prepare(_prepare_context(dataset, run_targets, attacker_folder(store.out, s.attack), device))
                contexts[s] = BatchContext(
                    setting=s, victim=victim, attack=attack, dataset=dataset,
                    knowledge=knowledge, collectors=recipe.metrics.collectors, ks=recipe.metrics.ks, shop=shop,
                    stealth_clip=shared_clip if shared_clip is not None else stealth_clip_pair(None, victim, device),
                    image_dir=store.out / "images" / ("" if single else s.key), out=store.out, grids=recipe.outputs.grids,
                    jpeg_quality=parse_save_format(recipe.outputs.save_format),
                )
            bar.set_postfix(setting=s.key)
            for t, record in zip(job.targets, attack_batch(contexts[s], job.targets, memo)):
                record["process"] = procs.rank
                store.commit(s.key, dataset.catalog.item_ids[t], record)
            bar.update(len(job.targets))
    finally:
        bar.close()


def _is_single_setting(run: ResolvedRun) -> bool:
    """One victim, no defense, one attack: images go straight to ``images/`` (``venomkit attack``'s layout)."""
    return len(run.recipe.victims) == 1 and not run.defenses and len(run.attacks) == 1


def finish(run: ResolvedRun, plan: Any, targets: Sequence[int], victims: dict[str, RunVictim], builder: VictimBuilder,
           dataset: Any, store: RunStore, num_processes: int, seconds: float) -> dict[str, Any]:
    """Main process: merge the records into results.csv / texts.csv / summary.json / tables / report."""
    recipe = run.recipe
    item_ids = dataset.catalog.item_ids
    rows, texts, settings = [], [], []
    attack_seconds: dict[str, float] = {}
    for s in plan.settings:
        records = [store.read_record(s.key, item_ids[t]) for t in targets]
        setting_rows = [r["row"] for r in records]
        rows += setting_rows
        texts += [{"victim": s.victim, "attack": s.attack, "item_id": r["row"]["item_id"], **r["text"]} for r in records if r.get("text")]
        summary = setting_summary(setting_rows, recipe.metrics.ks)
        settings.append({"victim": s.victim, "backbone": s.backbone, "defense": s.defense, "attack": s.attack, **summary})
        attack_seconds[s.key] = float(sum(r.get("seconds", 0.0) for r in records))
    store.write_results(rows)
    store.write_texts(texts)
    victim_summaries = {}
    for name, v in victims.items():
        v.metrics = v.metrics or builder.metrics_of(v)
        victim_summaries[name] = v.summary()
    summary: dict[str, Any] = {
        "name": recipe.name,
        "dataset": dataset.name,
        "n_targets": len(targets),
        "targets": [item_ids[t] for t in targets],
        "n_rows": len(rows),
        "settings": settings,
        "skipped": plan.skipped,
        "victims": victim_summaries,
        "num_processes": num_processes,
        "seconds": seconds,
        "attack_seconds": attack_seconds,
    }
    if len(settings) == 1:  # venomkit attack's summary: the one setting's means at the top level
        summary["means"] = settings[0]["means"]
        summary.update({k: v for k, v in settings[0].items() if k.startswith("ri@")})
    if "judge" in recipe.outputs.tables:
        table = judge_rows(dataset.name, settings, victim_summaries)
        store.write_table(table, format_judge_table(table))
        summary["judge"] = table
    if "promotion" in recipe.outputs.tables:
        from venomkit.runs.frontier import frontier_png
        from venomkit.runs.tables import attack_budget, format_promotion_table, promotion_rows

        info = {a.spec.name: {"method": a.cls.name, "budget": attack_budget(a.config)} for a in run.attacks}
        table = promotion_rows(dataset.name, settings, info, recipe.metrics.ks)
        store.write_table(table, format_promotion_table(table, recipe.metrics.ks), stem="promotion")
        summary["promotion"] = table
        if any(r.get("ssim") is not None for r in table):
            frontier_png(table, min(recipe.metrics.ks), store.out / "frontier.png")
    store.write_summary(summary)
    if recipe.outputs.report:
        from venomkit.runs.report import build_report

        summary["report"] = str(build_report(store.out, max_targets=recipe.outputs.report_targets))
    return summary
