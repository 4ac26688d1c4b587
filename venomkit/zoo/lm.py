"""``toyshop-lm``: a tiny causal LM that rewrites a toyshop item description when prompted.

The default generator of the LLM-rewrite text attack (issue 4, TextSimu / RecTextAttack
style). A small Llama (``LlamaConfig``: hidden 128, 4 layers) with the zoo's BPE tokenizer is
trained from scratch on rewrite pairs: two independent renderings of the same item's
attributes by toyshop's description generator (:func:`venomkit.data.toyshop.describe`), in
the prompt format of :func:`venomkit.generators.llm_text.build_rewrite_prompt`::

    Rewrite: <rendering A>
    Rewrite: <rendering B></s>

Half of the pairs carry one or two ``Example:`` lines: descriptions of OTHER items rendered
with the same random template choices as the target (``describe`` draws its template
indices from its generator in a fixed order, so equal generator states give the same
template for any attributes). The model thereby learns to imitate an example's style while
keeping the original item's attributes -- what the attack asks of it with popular items'
texts as examples.

Quality (in the manifest): the share of sampled rewrites of HELD-OUT items (never seen in
training) that still name the item's category and colour, with and without style examples.
The folder is a transformers ``save_pretrained`` model + tokenizer, read back with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` like any hub LM.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from venomkit.config import check_int, check_number
from venomkit.generators.llm_text import build_rewrite_prompt, rewrite_tokens
from venomkit.progress import progress as progress_bar
from venomkit.zoo.item_descriptions import describe_item, item_attributes
from venomkit.zoo.optim import optimiser_step

@dataclass
class LMTrainConfig:
    """Size and training schedule of ``toyshop-lm`` (validated; ValueError names the field)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    vocab_size: int = 2048
    max_length: int = 320
    steps: int = 1600
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 100
    style_prob: float = 0.5
    heldout_fraction: float = 0.1
    eval_items: int = 60
    eval_samples: int = 2
    eval_temperature: float = 0.7

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length", "steps", "batch_size"):
            check_int(f"LMTrainConfig.{name}", getattr(self, name), 1)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"LMTrainConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        check_number("LMTrainConfig.style_prob", self.style_prob, 0, 1)
        check_number("LMTrainConfig.heldout_fraction", self.heldout_fraction, 0, 1, low_open=True, high_open=True)
        check_number("LMTrainConfig.lr", self.lr, 0, low_open=True)

    @classmethod
    def fast(cls) -> LMTrainConfig:
        """Minutes -> seconds: the same pipeline, undertrained (for tests and ``--fast``)."""
        return cls(hidden_size=64, num_layers=2, intermediate_size=128, steps=40, batch_size=8, warmup=5, eval_items=6, eval_samples=1)


def rewrite_example(
    items: Sequence[dict[str, str]], index: int, rng: np.random.Generator, style_prob: float
) -> tuple[str, str]:
    """One training pair (prompt, target) for item ``index``: see the module docstring."""
    source = describe_item(items[index], rng)
    template_seed = int(rng.integers(2**31))
    target = describe_item(items[index], np.random.default_rng(template_seed))
    examples: list[str] = []
    if len(items) > 1 and rng.random() < style_prob:
        for _ in range(int(rng.integers(1, 3))):
            other = int(rng.integers(len(items) - 1))
            other += other >= index
            examples.append(describe_item(items[other], np.random.default_rng(template_seed)))
    return build_rewrite_prompt(source, examples), target


def model_config(tokenizer, cfg: LMTrainConfig):
    """The tiny Llama's ``LlamaConfig`` (tied embeddings: the table is most of the weights)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=max(512, cfg.max_length),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def encode_pair(tokenizer, prompt: str, target: str, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the loss on the target and eos only (prompt labels = -100), cut to ``max_length``."""
    ids, labels = rewrite_tokens(tokenizer, prompt, target)
    return ids[:max_length], labels[:max_length]


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, (ids, lab) in enumerate(batch):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(ids)] = 1
    return input_ids, labels, mask


def lr_at(step: int, cfg_steps: int, warmup: int, lr: float) -> float:
    """Linear warm-up then cosine decay to 10% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg_steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _length_bucketed_batches(
    tokenizer, items: Sequence[dict[str, str]], cfg: LMTrainConfig, rng: np.random.Generator, n_batches: int
) -> list[list[tuple[list[int], list[int]]]]:
    # Pairs vary 2x in length (0-2 style examples); batching similar lengths cuts padding.
    pool = [
        encode_pair(tokenizer, *rewrite_example(items, int(rng.integers(len(items))), rng, cfg.style_prob), cfg.max_length)
        for _ in range(cfg.batch_size * n_batches)
    ]
    pool.sort(key=lambda pair: len(pair[0]))
    batches = [pool[k * cfg.batch_size : (k + 1) * cfg.batch_size] for k in range(n_batches)]
    return [batches[k] for k in rng.permutation(n_batches)]


def train_lm(model, tokenizer, items: Sequence[dict[str, str]], cfg: LMTrainConfig, seed: int) -> list[float]:
    """Train ``model`` on freshly rendered rewrite pairs of ``items``; returns the loss curve."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    losses: list[float] = []
    queue: list = []
    bar = progress_bar(range(cfg.steps), desc="toyshop-lm", unit="step")
    for step in bar:
        if not queue:
            queue = _length_bucketed_batches(tokenizer, items, cfg, rng, n_batches=8)
        input_ids, labels, mask = _collate(queue.pop(), tokenizer.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.steps, cfg.warmup, cfg.lr)
        # Mean over target tokens, as the model's own loss (labels are shifted inside).
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimiser_step(opt, loss, model.parameters(), losses, bar, step, "loss")
    model.eval()
    return losses


def names_word(text: str, word: str) -> bool:
    """Whether ``word`` occurs in ``text`` as a whole word (case-insensitive)."""
    return re.search(rf"(?<![\w-]){re.escape(word.lower())}(?![\w-])", text.lower()) is not None


def evaluate_rewrites(
    rewriter, dataset, items: Sequence[int], *, n: int, temperature: float, seed: int, style_items: Sequence[int] = ()
) -> dict:
    """Share of rewrites of ``items`` that name their category and colour (and other figures).

    Also reports, over all rewrites, how often pattern, material and brand survive when the
    catalog has those attributes.

    Each item's catalog text is rewritten ``n`` times without style examples and, when
    ``style_items`` are given, ``n`` times imitating the texts of ``style_items[:2]``.
    """
    attrs = dataset.catalog.attributes
    texts = [dataset.catalog.texts[i] for i in items]
    runs = {"plain": rewriter.rewrite(texts, n=n, temperature=temperature, seed=seed)}
    if len(style_items):
        examples = [dataset.catalog.texts[i] for i in list(style_items)[:2]]
        runs["style"] = rewriter.rewrite(texts, n=n, style_examples=examples, temperature=temperature, seed=seed)
    figures: dict[str, float | int | list] = {}
    all_keep = []
    for name, outputs in runs.items():
        keep, cat_ok, col_ok, changed = [], [], [], []
        for k, i in enumerate(items):
            for rewrite in outputs[k]:
                c = names_word(rewrite, attrs["category"][i])
                o = names_word(rewrite, attrs["colour"][i])
                cat_ok.append(c)
                col_ok.append(o)
                keep.append(c and o)
                changed.append(rewrite.strip() != texts[k].strip())
        figures[f"{name}_keeps_category_and_colour"] = float(np.mean(keep))
        figures[f"{name}_keeps_category"] = float(np.mean(cat_ok))
        figures[f"{name}_keeps_colour"] = float(np.mean(col_ok))
        figures[f"{name}_differs_from_original"] = float(np.mean(changed))
        all_keep.extend(keep)
    figures["keeps_category_and_colour"] = float(np.mean(all_keep))
    # The other attributes a faithful rewrite keeps (reported, not part of the acceptance).
    for attr in ("pattern", "material", "brand"):
        if attr in attrs:
            kept = [names_word(r, str(attrs[attr][i])) for outputs in runs.values() for k, i in enumerate(items) for r in outputs[k]]
            figures[f"keeps_{attr}"] = float(np.mean(kept))
    figures["n_rewrites"] = len(all_keep)
    figures["examples"] = [{"original": texts[k], "rewrite": runs["plain"][k][0]} for k in range(min(3, len(items)))]
    return figures


def build(out_dir: Path, dataset, *, fast: bool = False, seed: int = 0, config: LMTrainConfig | None = None) -> dict:
    """Train ``toyshop-lm`` on ``dataset`` and write it to ``out_dir``; returns quality figures.

    The folder holds ``config.json``, ``model.safetensors`` (float16), ``generation_config.json``
    and the tokenizer. Figures are measured on the saved folder through
    :class:`~venomkit.generators.llm_text.LLMRewriter`, i.e. what users load.
    """
    from transformers import LlamaForCausalLM

    from venomkit.generators.llm_text import LLMRewriter
    from venomkit.zoo.tokenizer import train_zoo_tokenizer

    cfg = config or (LMTrainConfig.fast() if fast else LMTrainConfig())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    items = item_attributes(dataset)
    order = np.random.default_rng(seed).permutation(len(items))
    n_heldout = max(1, round(cfg.heldout_fraction * len(items)))
    heldout, train_index = np.sort(order[:n_heldout]), np.sort(order[n_heldout:])

    tokenizer = train_zoo_tokenizer(dataset, vocab_size=cfg.vocab_size, seed=seed)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(model_config(tokenizer, cfg))
    losses = train_lm(model, tokenizer, [items[i] for i in train_index], cfg, seed)
    train_seconds = time.time() - started

    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.half().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    rewriter = LLMRewriter(out_dir, max_new_tokens=min(96, cfg.max_length))
    eval_items = heldout[: cfg.eval_items].tolist()
    popular = np.argsort(-dataset.split.train.popularity(), kind="stable")
    style_items = [int(i) for i in popular if i in set(train_index.tolist())][:2]
    figures = evaluate_rewrites(
        rewriter, dataset, eval_items, n=cfg.eval_samples, temperature=cfg.eval_temperature, seed=seed, style_items=style_items
    )
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "family": "lm",
        "architecture": "LlamaForCausalLM",
        "parameters": int(n_params),
        "dtype": "float16",
        "train_pairs_seen": cfg.steps * cfg.batch_size,
        "final_train_loss": float(np.mean(losses[-20:])),
        "heldout_items": int(n_heldout),
        "eval_items": len(eval_items),
        "eval_temperature": cfg.eval_temperature,
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.time() - started, 1),
        "config": asdict(cfg),
        **figures,
    }
