"""Fine-tuning the MLLM ranker on interactions: TALLRec's recipe, ready for VenomRec's poisoning.

TALLRec (Bao et al., RecSys 2023) tunes an LLM recommender with LoRA (r=8, alpha=16, dropout
0.05 on the attention's q/v projections) on yes/no instructions; VenomRec (arXiv 2602.06409)
poisons exactly this stage, adding training rows of compromised users whose histories end
with the (perturbed) target item. :func:`finetune` implements it for
:class:`~venomkit.victims.mllm.ranker.MLLMRanker`:

* **Rows.** Every training interaction (u, i) of a user not in ``exclude_users`` is a
  positive row; ``extra_rows`` (a poisoning step's ``TrainingRow(user, item, history)``)
  join them. An epoch is one pass over these positives in a seeded random order. Each
  positive gets ONE negative row for the same user and history: a uniform item the user
  never interacted with (balanced: as many "no" as "yes" answers). A clean row's history is
  up to ``max_history`` of the user's other training items, redrawn each time
  (:func:`~venomkit.victims.mllm.candidates.sample_history`).
* **Loss** (TALLRec's causal-LM loss on the answer token), over the 2B rows of a step::

      L = mean_r CE(logits_r, y_r)  +  pairwise_weight * mean_b -log sigmoid(s_pos_b - s_neg_b)

  with ``logits_r`` (2B, V) the next-token logits at the answer position, ``y_r`` the id of
  `` yes`` (positives) or `` no`` (negatives), and ``s = logit(yes) - logit(no)`` the
  ranking score; ``pairwise_weight`` defaults to 0 (the plain balanced yes/no loss).
* **What trains.** ``mode="lora"``: ``peft.get_peft_model`` puts LoRA adapters
  ``W x + (alpha / r) B A x`` (A: (r, d_in), B: (d_out, r), B initialised at 0) in place of
  the ``lora_targets`` Linear layers under ``lora_scope`` (the LANGUAGE model; the CLIP
  vision tower has q_proj/v_proj too and stays untouched); every base weight is frozen, so
  after training they are bit-identical. ``ranker.model`` is the same object and now carries
  the adapters; the :class:`peft.PeftModel` is returned for ``save_pretrained``.
  ``mode="full"``: every parameter of the model trains.
* ``text_drop``: each row's candidate text is blanked with this probability, so the ranker
  must also read the image (raw-pixel attacks need one that looks at pixels).

AdamW, linear warm-up then cosine decay to 5% of ``lr`` (:func:`lr_schedule`), gradient
clipping, seeded (``seed`` fixes the LoRA initialisation, the row order, negatives,
histories and text drops).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.config import check_int, check_number
from venomkit.progress import progress as progress_bar
from venomkit.victims.mllm.candidates import item_titles, sample_history, sample_negative

MODES = ("lora", "full")


@dataclass
class FinetuneConfig:
    """How :func:`finetune` trains the ranker (validated at construction; ValueError names the field).

    Attributes:
        mode: "lora" (adapters only; the base stays bit-identical) or "full" (every weight).
        steps: optimiser steps; exactly one of ``steps`` / ``epochs`` is set.
        epochs: passes over the positive rows (> 0, may be fractional), instead of ``steps``.
        batch_size: positive rows per step (each with one negative: 2 x batch_size prompts).
        lr: peak AdamW learning rate; warmup: steps of linear warm-up before the cosine decay.
        weight_decay: AdamW weight decay (>= 0); grad_clip: max gradient norm (> 0).
        lora_r, lora_alpha, lora_dropout: LoRA rank (>= 1), scale numerator (> 0), dropout [0, 1).
        lora_targets: names of the Linear layers that get adapters (TALLRec: q_proj, v_proj).
        lora_scope: module-path component the targets must lie under ("language_model").
        max_history: history titles per prompt (>= 0); None keeps the ranker's. The fine-tuned
            ranker keeps this value (it is saved with the checkpoint).
        text_drop: probability in [0, 1) that a row's candidate text is left out.
        pairwise_weight: weight (>= 0) of the BPR term on the yes/no margins of each pair.
        popular_negatives: probability in [0, 1] that a row's negative is drawn in proportion to
            the items' training counts instead of uniformly. With uniform negatives popularity
            alone tells most positives from their negatives, and a small ranker learns that
            and ignores the history; a popularity-drawn negative is as popular as a positive on
            average, so only the user's history separates the pair.
        seed: seeds everything random in the run.
    """

    mode: str = "lora"
    steps: int | None = 600
    epochs: float | None = None
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lora_scope: str = "language_model"
    max_history: int | None = None
    text_drop: float = 0.0
    pairwise_weight: float = 0.0
    popular_negatives: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"FinetuneConfig.mode must be one of {MODES}, got {self.mode!r}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"FinetuneConfig: set exactly one of steps and epochs, got steps={self.steps!r}, epochs={self.epochs!r}"
            )
        if self.steps is not None:
            check_int("FinetuneConfig.steps", self.steps, 1, hint="or None with epochs")
        if self.epochs is not None:
            check_number("FinetuneConfig.epochs", self.epochs, 0, low_open=True, hint="or None with steps")
        for name in ("batch_size", "lora_r"):
            check_int(f"FinetuneConfig.{name}", getattr(self, name), 1)
        for name in ("warmup", "seed"):
            check_int(f"FinetuneConfig.{name}", getattr(self, name), 0)
        for name in ("lr", "lora_alpha", "grad_clip"):
            check_number(f"FinetuneConfig.{name}", getattr(self, name), 0, low_open=True)
        for name in ("weight_decay", "pairwise_weight"):
            check_number(f"FinetuneConfig.{name}", getattr(self, name), 0)
        for name in ("lora_dropout", "text_drop"):
            check_number(f"FinetuneConfig.{name}", getattr(self, name), 0, 1, high_open=True)
        check_number("FinetuneConfig.popular_negatives", self.popular_negatives, 0, 1)
        check_int("FinetuneConfig.max_history", self.max_history, 0, optional=True)
        targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else self.lora_targets
        if not isinstance(targets, Iterable) or not targets or not all(
            isinstance(t, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t) for t in targets
        ):
            raise ValueError(
                f"FinetuneConfig.lora_targets must be a non-empty list of module names such as ['q_proj', 'v_proj'], "
                f"got {self.lora_targets!r}"
            )
        self.lora_targets = tuple(targets)
        if not isinstance(self.lora_scope, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.lora_scope):
            raise ValueError(f"FinetuneConfig.lora_scope must be a module path such as 'language_model', got {self.lora_scope!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready fields (``lora_targets`` as a list)."""
        out = asdict(self)
        out["lora_targets"] = list(self.lora_targets)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """The inverse of :meth:`to_dict`; an unknown key is a ValueError naming it and the valid keys."""
        valid = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in valid]
        if unknown:
            raise ValueError(f"FinetuneConfig: unknown field {unknown[0]!r}; valid fields: {', '.join(valid)}")
        values = dict(data)
        if isinstance(values.get("lora_targets"), list):
            values["lora_targets"] = tuple(values["lora_targets"])
        return cls(**values)

    def lora_regex(self) -> str:
        """The peft ``target_modules`` regex: a ``lora_targets`` Linear under a ``lora_scope`` module."""
        scope = re.escape(self.lora_scope)
        names = "|".join(re.escape(t) for t in self.lora_targets)
        return rf"(?:.*\.)?{scope}\..*\.(?:{names})"


@dataclass(frozen=True)
class TrainingRow:
    """One positive ("yes") training row: ``user`` liked ``item`` after ``history``.

    ``history`` (item indices, oldest first) is shown as titles; None draws it from the user's
    training items each time the row is used. Poisoning steps pass fixed histories.
    """

    user: int
    item: int
    history: tuple[int, ...] | None = None


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        ranker: the same ranker, fine-tuned in place (eval mode).
        adapter: the ``peft.PeftModel`` around ``ranker.model`` (``mode="lora"``), else None.
        config: the run's :class:`FinetuneConfig`.
        losses: per-step loss values.
        steps, positives: optimiser steps run and positive rows in the pool (clean + extra).
        trainable_parameters, total_parameters: counts at training time.
        seconds: wall time of the training loop.
    """

    ranker: Any
    adapter: Any
    config: FinetuneConfig
    losses: list[float]
    steps: int
    positives: int
    trainable_parameters: int
    total_parameters: int
    seconds: float
    excluded_users: list[int] = field(default_factory=list)
    extra_rows: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no tensors): config, steps, final loss, parameter counts, time."""
        tail = self.losses[-20:]
        return {
            "config": self.config.to_dict(),
            "steps": self.steps,
            "positives": self.positives,
            "extra_rows": self.extra_rows,
            "excluded_users": len(self.excluded_users),
            "final_loss": float(np.mean(tail)) if tail else None,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "train_seconds": round(self.seconds, 1),
        }


def lr_schedule(step: int, total: int, lr: float, warmup: int) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up over ``warmup`` steps, then cosine to 5% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def has_adapters(model: torch.nn.Module) -> bool:
    """True when ``model`` already carries peft LoRA layers."""
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def add_lora(ranker, config: FinetuneConfig):
    """Wrap ``ranker.model`` with LoRA adapters (in place); returns the ``peft.PeftModel``.

    Only the Linear layers matching :meth:`FinetuneConfig.lora_regex` get adapters; every
    other parameter is frozen. ValueError when no module matches (names the targets).
    """
    from peft import LoraConfig, get_peft_model

    if has_adapters(ranker.model):
        raise ValueError("the ranker's model already carries LoRA adapters; load the base model again to fine-tune anew")
    regex = config.lora_regex()
    matched = [n for n, m in ranker.model.named_modules() if isinstance(m, torch.nn.Linear) and re.fullmatch(regex, n)]
    if not matched:
        raise ValueError(
            f"FinetuneConfig.lora_targets {list(config.lora_targets)} under lora_scope {config.lora_scope!r} match no "
            f"Linear layer of {type(ranker.model).__name__}"
        )
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=regex, bias="none",
    )  # fmt: skip
    with peft_wrapping():
        return get_peft_model(ranker.model, lora)


@contextlib.contextmanager
def peft_wrapping():
    """Around peft's model wrapping (``get_peft_model``, ``PeftModel.from_pretrained``): peft 0.21
    reads transformers' deprecated ``is_gradient_checkpointing`` alias, whose FutureWarning
    (transformers 5.2x) would print on every fine-tune and every LoRA victim loaded; the alias is
    theirs to change, so only that one message is silenced, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _positive_rows(dataset, exclude: set[int], extra_rows: Sequence[TrainingRow]) -> list[TrainingRow]:
    users, items = dataset.split.train.pairs()
    rows = [TrainingRow(int(u), int(i)) for u, i in zip(users, items) if int(u) not in exclude]
    return rows + list(extra_rows)


def _check_rows(dataset, extra_rows: Sequence[TrainingRow], exclude_users: Iterable[int]) -> tuple[list[TrainingRow], set[int]]:
    rows = []
    for k, row in enumerate(extra_rows):
        if not isinstance(row, TrainingRow):
            row = TrainingRow(*row)
        history = row.history
        if not (0 <= int(row.user) < dataset.n_users):
            raise ValueError(f"extra_rows[{k}]: user {row.user} is out of range [0, {dataset.n_users})")
        if not (0 <= int(row.item) < dataset.n_items):
            raise ValueError(f"extra_rows[{k}]: item {row.item} is out of range [0, {dataset.n_items})")
        if history is not None:
            history = tuple(int(i) for i in history)
            if any(not 0 <= i < dataset.n_items for i in history):
                raise ValueError(f"extra_rows[{k}]: a history item is out of range [0, {dataset.n_items})")
        rows.append(TrainingRow(int(row.user), int(row.item), history))
    exclude = set()
    for u in exclude_users:
        if not (0 <= int(u) < dataset.n_users):
            raise ValueError(f"exclude_users: user {u} is out of range [0, {dataset.n_users})")
        exclude.add(int(u))
    return rows, exclude


def finetune(
    ranker,
    dataset,
    config: FinetuneConfig | None = None,
    *,
    extra_rows: Sequence[TrainingRow] | None = None,
    exclude_users: Iterable[int] | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``ranker`` (an :class:`MLLMRanker`) on ``dataset``'s training interactions; see the module docstring.

    Args:
        ranker: the ranker; its model is changed in place (LoRA adapters added, or all weights).
        dataset: a ``venomkit.data.Dataset``; prompts read ``dataset.catalog`` (a poisoning
            step passes a dataset whose catalog holds the perturbed target content).
        config: a :class:`FinetuneConfig` (default: TALLRec's LoRA).
        extra_rows: more positive rows (``TrainingRow`` or (user, item, history) tuples),
            e.g. compromised users' poisoned interactions; their users' negatives avoid the
            rows' items too.
        exclude_users: users whose CLEAN rows are left out (extra rows are kept).
        progress: show a progress bar / log lines (``venomkit.progress``).

    Returns:
        a :class:`FinetuneResult` (ranker in eval mode).
    """
    cfg = config or FinetuneConfig()
    extra, exclude = _check_rows(dataset, extra_rows or (), exclude_users or ())
    positives = _positive_rows(dataset, exclude, extra)
    if not positives:
        raise ValueError(f"dataset {dataset.name!r}: no training row left to fine-tune on (after exclude_users)")
    if cfg.max_history is not None:
        ranker.max_history = cfg.max_history
    max_history = ranker.max_history
    steps = cfg.steps if cfg.steps is not None else max(1, math.ceil(cfg.epochs * len(positives) / cfg.batch_size))

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    adapter = add_lora(ranker, cfg) if cfg.mode == "lora" else None
    if adapter is None:
        for p in ranker.model.parameters():
            p.requires_grad_(True)
    params = [p for p in ranker.model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in ranker.model.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    catalog = dataset.catalog
    titles = item_titles(catalog)
    texts = catalog.texts
    train = dataset.split.train
    seen: dict[int, set[int]] = {}
    for row in extra:
        seen.setdefault(row.user, set(dataset.interactions.items_of(row.user).tolist())).add(row.item)
    yes_no = torch.tensor([ranker.yes_id, ranker.no_id], device=ranker.device)
    popularity = np.cumsum(np.asarray(train.popularity(), dtype=np.float64)) if cfg.popular_negatives > 0 else None

    order = rng.permutation(len(positives))
    cursor = 0
    losses: list[float] = []
    started = time.perf_counter()
    ranker.model.train()
    try:
        bar = progress_bar(range(steps), desc=f"fine-tune mllm ranker ({cfg.mode})", unit="step", enabled=progress)
        for step in bar:
            histories, candidates, cand_texts = [], [], []
            for _ in range(cfg.batch_size):
                if cursor == len(order):
                    order, cursor = rng.permutation(len(positives)), 0
                row = positives[order[cursor]]
                cursor += 1
                user_seen = seen.get(row.user)
                if user_seen is None:
                    user_seen = seen[row.user] = set(dataset.interactions.items_of(row.user).tolist())
                popular = popularity is not None and rng.random() < cfg.popular_negatives
                negative = sample_negative(rng, user_seen, dataset.n_items, popularity if popular else None)
                if row.history is None:
                    history_items = sample_history(rng, train.items_of(row.user), row.item, max_history)
                else:
                    history_items = list(row.history)
                history = [titles[i] for i in history_items]
                for item in (row.item, negative):
                    histories.append(history)
                    candidates.append(item)
                    cand_texts.append("" if rng.random() < cfg.text_drop else texts[item])
            for group in opt.param_groups:
                group["lr"] = lr_schedule(step, steps, cfg.lr, cfg.warmup)
            out = ranker(histories, catalog_images(catalog, candidates), cand_texts)
            loss = F.cross_entropy(out.logits, yes_no.repeat(cfg.batch_size))
            if cfg.pairwise_weight:
                margins = out.scores.view(-1, 2)
                loss = loss + cfg.pairwise_weight * -F.logsigmoid(margins[:, 0] - margins[:, 1]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    finally:
        ranker.model.eval()
    return FinetuneResult(
        ranker=ranker, adapter=adapter, config=cfg, losses=losses, steps=steps, positives=len(positives),
        trainable_parameters=sum(p.numel() for p in params), total_parameters=total,
        seconds=time.perf_counter() - started, excluded_users=sorted(exclude), extra_rows=len(extra),
    )  # fmt: skip


def catalog_images(catalog, items: Sequence[int]) -> torch.Tensor | list[torch.Tensor]:
    """Images of ``items`` as the ranker takes them: (B, 3, H, W) when all share a size, else B native photos."""
    images = catalog.image_list([int(i) for i in items])
    if len({tuple(im.shape) for im in images}) == 1:
        return torch.stack(images)
    return images


__all__ = [
    "FinetuneConfig", "FinetuneResult", "MODES", "TrainingRow", "add_lora", "catalog_images", "finetune",
    "has_adapters", "lr_schedule",
]  # fmt: skip
