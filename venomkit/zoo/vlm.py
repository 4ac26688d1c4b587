"""``toyshop-vlm``: a tiny LLaVA trained to answer "would this user like this item?".

The MLLM ranker victim's default (VenomRec, arXiv 2602.06409, attacks such a ranker). The
architecture is LLaVA's (``LlavaForConditionalGeneration``): a small CLIP vision tower
(``CLIPVisionConfig``: 64 px, 8 px patches -> 64 patch tokens, hidden 64, 2 layers), a
two-layer MLP projector, and a small Llama (hidden 128, 2 layers) with the zoo's BPE
tokenizer (``<image>`` special token). A ``LlavaProcessor`` with a ``CLIPImageProcessor``
at 64 px is saved next to the weights, so ``AutoProcessor.from_pretrained(folder)`` and
``AutoModelForImageTextToText.from_pretrained(folder)`` read it like ``llava-hf`` weights.

Training (from scratch; there is no pretrained LLaVA here) follows LLaVA's two stages.
Stage 1 (feature alignment, :func:`pretrain_captions`): the model learns to answer
``USER: <image> What is this item? ASSISTANT:`` with the item's title, which names its
category, colour, pattern and material. Optional stage 1b (:func:`pretrain_matching`,
``match_steps``; 0 in the shipped build): from catalogue content only, the model learns what a
candidate shares with a list of titles, the reading a pretrained LLM brings. Stage 2 (:func:`train_vlm`), on the training
interactions: each step takes users, one of their training items as the positive and a
sampled item they never interacted with as the negative, with up to ``max_history`` other
training items as the history, and fits the answer token (`` yes`` / `` no``) after the prompt
of :func:`venomkit.victims.mllm.ranker.build_ranking_prompt` -- next-token cross-entropy plus
a pairwise (BPR) term on the yes/no margins of the pair. With probability ``text_drop`` the
candidate's text is left out, so the model must also read the image (the raw-pixel attacks
need a ranker that looks at pixels).

Acceptance (issue 3): as a ranker over 99 sampled negatives + 1 held-out positive, HR@10 at
least twice the random baseline (0.10); the manifest also reports HR@10 with images only,
NDCG@10, the popularity ranker on the same candidates, and that attention maps and pixel
gradients come back. Histories, negatives, candidate lists and the metrics are the ranker's
own (``venomkit.victims.mllm.candidates`` / ``evaluate``), so the zoo's figures and those of a
fine-tuned ranker (``venomkit train --victim mllm``) are measured the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.config import check_int, check_number
from venomkit.progress import progress as progress_bar
from venomkit.victims.mllm.candidates import item_titles, sample_history, sample_negative
from venomkit.victims.mllm.evaluate import evaluate_ranker
from venomkit.victims.mllm.finetune import lr_schedule
from venomkit.victims.mllm.ranker import MLLMRanker
from venomkit.zoo.images import fitted_images
from venomkit.zoo.optim import optimiser_step


LOGGER = logging.getLogger(__name__)


MATCH_SCHEDULES = ("cosine", "constant")


@dataclass
class VLMTrainConfig:
    """Size and training schedule of ``toyshop-vlm`` (validated; ValueError names the field)."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384
    vocab_size: int = 2048
    max_history: int = 8
    caption_steps: int = 300
    caption_batch_size: int = 32
    match_steps: int = 0
    match_schedule: str = "cosine"
    steps: int = 1200
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 60
    text_drop: float = 0.4
    pairwise_weight: float = 1.0
    eval_users: int = 200
    n_negatives: int = 99
    k: int = 10

    def __post_init__(self) -> None:
        for name in (
            "image_size", "patch_size", "vision_hidden_size", "vision_layers", "vision_heads", "hidden_size",
            "num_layers", "num_heads", "intermediate_size", "vision_intermediate_size", "steps", "batch_size",
            "eval_users", "n_negatives", "k",
        ):  # fmt: skip
            check_int(f"VLMTrainConfig.{name}", getattr(self, name), 1)
        if self.image_size % self.patch_size:
            raise ValueError(f"VLMTrainConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.hidden_size % self.num_heads or self.vision_hidden_size % self.vision_heads:
            raise ValueError("VLMTrainConfig.hidden_size / vision_hidden_size must be divisible by their head counts")
        check_number("VLMTrainConfig.text_drop", self.text_drop, 0, 1, high_open=True)
        check_int("VLMTrainConfig.match_steps", self.match_steps, 0)
        if self.match_schedule not in MATCH_SCHEDULES:
            raise ValueError(f"VLMTrainConfig.match_schedule must be one of {', '.join(MATCH_SCHEDULES)}, got {self.match_schedule!r}")
        check_int("VLMTrainConfig.caption_steps", self.caption_steps, 0)
        check_int("VLMTrainConfig.caption_batch_size", self.caption_batch_size, 1)
        check_int("VLMTrainConfig.max_history", self.max_history, 0)
        check_number("VLMTrainConfig.lr", self.lr, 0, low_open=True)

    @classmethod
    def fast(cls) -> VLMTrainConfig:
        """The same pipeline in seconds (undertrained; for tests and ``--fast``)."""
        return cls(
            vision_hidden_size=32, vision_layers=1, hidden_size=64, num_layers=1, intermediate_size=128,
            vision_intermediate_size=64, caption_steps=10, caption_batch_size=8, steps=30, batch_size=8, warmup=5,
            eval_users=20, max_history=5,
        )  # fmt: skip


def build_processor(tokenizer, cfg: VLMTrainConfig):
    """A ``LlavaProcessor`` for the tiny model: CLIP image processor at ``cfg.image_size``."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    from venomkit.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token the "default" strategy drops
        image_token=tokenizer.image_token,
    )


def model_config(tokenizer, cfg: VLMTrainConfig):
    """``LlavaConfig`` of the tiny model (vision: ``CLIPVisionConfig``; text: ``LlamaConfig``)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        projection_dim=cfg.vision_hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,  # two layers only: the last one is the useful one
        image_seq_length=(cfg.image_size // cfg.patch_size) ** 2,
        tie_word_embeddings=True,
    )


def build_caption_prompt(image_token: str = "<image>") -> str:
    """The stage-1 (feature alignment) prompt; the answer is the item's title."""
    return f"USER: {image_token} What is this item? ASSISTANT:"


def pretrain_captions(ranker: MLLMRanker, dataset, cfg: VLMTrainConfig, seed: int) -> list[float]:
    """LLaVA stage 1: learn to name an item (its title) from its image alone.

    Titles name category, colour, pattern and material, so this teaches the vision tower
    and projector the attributes users' tastes act on before the ranking stage, which
    otherwise could lean on the candidate text alone.
    """
    if cfg.caption_steps == 0:
        return []
    rng = np.random.default_rng(seed + 17)
    tok = ranker.tokenizer
    titles = item_titles(dataset.catalog)
    images = fitted_images(dataset.catalog, range(dataset.n_items), cfg.image_size)
    # Not a ranking prompt (the ranker's tokenize splits those at the candidate): the whole prompt, its
    # <image> expanded to the patch tokens as LlavaProcessor does, BOS first.
    caption = build_caption_prompt(ranker.image_token).replace(ranker.image_token, ranker.image_token * ranker.n_image_tokens)
    prompt_ids = tok(caption).input_ids
    answers = [tok(" " + t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in titles]
    model = ranker.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    losses: list[float] = []
    bar = progress_bar(range(cfg.caption_steps), desc="toyshop-vlm captions", unit="step")
    for step in bar:
        index = rng.integers(dataset.n_items, size=cfg.caption_batch_size)
        width = len(prompt_ids) + max(len(answers[i]) for i in index)
        input_ids = torch.full((len(index), width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(index), width), -100, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for r, i in enumerate(index):
            ids = prompt_ids + answers[i]
            input_ids[r, : len(ids)] = torch.tensor(ids)
            labels[r, len(prompt_ids) : len(ids)] = torch.tensor(answers[i])
            mask[r, : len(ids)] = 1
        for group in opt.param_groups:
            group["lr"] = lr_schedule(step, cfg.caption_steps, cfg.lr, cfg.warmup)
        out = model(
            input_ids=input_ids.to(ranker.device),
            attention_mask=mask.to(ranker.device),
            pixel_values=ranker.pixel_values(images[index]),
            labels=labels.to(ranker.device),
        )
        optimiser_step(opt, out.loss, model.parameters(), losses, bar, step, "loss")
    model.eval()
    return losses


MATCH_ATTRIBUTES = ("category", "colour", "pattern", "material")


def matching_rows(rng: np.random.Generator, codes: np.ndarray, n_rows: int, length: int) -> tuple[list[int], list[list[int]], np.ndarray]:
    """Candidates, lists of ``length`` other items, and per attribute the share of each list
    sharing the candidate's value: ((n_rows,), n_rows lists, (n_rows, 4) in [0, 1]).

    ``codes``: (n_items, 4) integer attribute values. A row draws ``q ~ U(0, 1)``; each list
    slot is, with probability ``q``, an item sharing the candidate's value of one attribute
    (drawn uniformly), else a uniform item: shares spread over [0, 1] as users' histories do.
    """
    n_items = len(codes)
    candidates, lists = [], []
    for _ in range(n_rows):
        c = int(rng.integers(n_items))
        q = rng.random()
        row = []
        while len(row) < length:
            if rng.random() < q:
                a = int(rng.integers(codes.shape[1]))
                pool = np.flatnonzero(codes[:, a] == codes[c, a])
                i = int(rng.choice(pool))
            else:
                i = int(rng.integers(n_items))
            if i != c:
                row.append(i)
        candidates.append(c)
        lists.append(row)
    shares = (codes[np.asarray(lists)] == codes[np.asarray(candidates)][:, None, :]).mean(1)
    return candidates, lists, shares


MATCH_WINDOW = 50
MATCH_ADVANCE = 0.5


def match_lr(step: int, cfg: VLMTrainConfig) -> float:
    """The matching stage's learning rate: ``lr_schedule``'s warm-up and cosine decay over
    ``match_steps`` (``match_schedule="cosine"``), or the same warm-up then ``lr`` held
    (``"constant"``: the curriculum decides how long each length takes, a decay fixed in advance
    does not know)."""
    if cfg.match_schedule == "constant" and step >= cfg.warmup:
        return cfg.lr
    return lr_schedule(step, cfg.match_steps, cfg.lr, cfg.warmup)


def pretrain_matching(ranker: MLLMRanker, dataset, cfg: VLMTrainConfig, seed: int) -> tuple[list[float], int]:
    """Stage 1b (optional, ``match_steps``): learn what a candidate shares with a list of titles.

    A pretrained LLM brings this to a ranker (it sees that ``Orange checked wood watch`` and
    an orange watch's description share a colour and a category); the zoo's from-scratch
    model does not, and fine-tuned on interactions alone it ranks by popularity and ignores the
    history (``experiments/ranker_headroom.py --ranker``). This stage uses catalogue content
    only (no interaction): the ranking prompt with a list of titles as the history
    (:func:`matching_rows`) and the candidate's image and text (always shown: with the text
    left out at ``text_drop`` 0.4 the MSE was still 0.17 against the mean predictor's 0.19
    after 1,500 steps at one title; the ranking stage teaches the image-only case); a linear head on the answer position's last hidden state regresses the
    four per-attribute shares (MSE), and is thrown away afterwards. The yes/no answer is not
    trained here.

    A curriculum on the list's length: it starts at 1 title and grows by one each time the MSE
    over the last ``MATCH_WINDOW`` steps falls below ``MATCH_ADVANCE`` times the mean
    predictor's (the shares' variance in the same batches): a fixed schedule stalled at the mean
    predictor at six titles. Measured (4 layers, lr 2e-3, ``experiments/ranker_depth.py
    --match-steps 4000``): at one title the MSE falls to 0.132 against the mean predictor's
    0.194 and the list never grows; the ranker built on it does not beat popularity (README).
    Returns the losses and the length reached.
    """
    if cfg.match_steps == 0:
        return [], 0
    rng = np.random.default_rng(seed + 29)
    torch.manual_seed(seed + 29)
    attrs = dataset.catalog.attributes
    codes = np.stack([np.unique(np.asarray(attrs[a]), return_inverse=True)[1] for a in MATCH_ATTRIBUTES], axis=1)
    titles = item_titles(dataset.catalog)
    texts = dataset.catalog.texts
    images = fitted_images(dataset.catalog, range(dataset.n_items), cfg.image_size)
    model = ranker.model
    head = torch.nn.Linear(cfg.hidden_size, len(MATCH_ATTRIBUTES)).to(ranker.device)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    losses: list[float] = []
    baselines: list[float] = []  # the mean predictor's MSE on each step's batch
    length = 1
    bar = progress_bar(range(cfg.match_steps), desc="toyshop-vlm matching", unit="step")
    for step in bar:
        candidates, lists, shares = matching_rows(rng, codes, 2 * cfg.batch_size, length)
        histories = [[titles[i] for i in row] for row in lists]
        cand_texts = [texts[c] for c in candidates]
        for group in opt.param_groups:
            group["lr"] = match_lr(step, cfg)
        out = ranker(histories, images[candidates], cand_texts, output_hidden_states=True)
        last = out.hidden[torch.arange(len(candidates)), out.last_index]
        loss = F.mse_loss(head(last.float()), torch.as_tensor(shares, dtype=torch.float32, device=last.device))
        optimiser_step(opt, loss, [*model.parameters(), *head.parameters()], losses, bar, step, "mse")
        baselines.append(float(((shares - shares.mean(0)) ** 2).mean()))
        window = min(MATCH_WINDOW, len(baselines))
        if length < cfg.max_history and window == MATCH_WINDOW and np.mean(losses[-window:]) < MATCH_ADVANCE * np.mean(baselines[-window:]):
            length += 1
            baselines.clear()
            LOGGER.info("toyshop-vlm matching: step %d, the lists grow to %d titles", step, length)
    model.eval()
    return losses, length


def train_vlm(ranker: MLLMRanker, dataset, cfg: VLMTrainConfig, seed: int) -> list[float]:
    """Fine-tune ``ranker.model`` on yes/no answers for train positives and sampled negatives.

    The zoo's own ranking stage, kept apart from :func:`venomkit.victims.mllm.finetune.finetune`
    (which a user's fine-tune runs) because the shipped asset was built by it: it draws a user,
    then one of their positives (``finetune`` walks the positive rows), with AdamW betas
    (0.9, 0.98) and weight decay 0.01, and images fitted once at the build's size. Folding it
    into ``finetune`` changes ``zoo:toyshop-vlm``'s bytes and every figure measured on it.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train = dataset.split.train
    everything = dataset.interactions
    titles = item_titles(dataset.catalog)
    texts = dataset.catalog.texts
    images = fitted_images(dataset.catalog, range(dataset.n_items), cfg.image_size)
    users = np.flatnonzero(train.user_degree() >= 2)
    if len(users) == 0:
        raise ValueError(f"dataset {dataset.name!r}: no user has 2 training interactions; the ranker cannot be trained")
    model = ranker.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    yes_no = torch.tensor([ranker.yes_id, ranker.no_id])
    model.train()
    losses = []
    bar = progress_bar(range(cfg.steps), desc="toyshop-vlm", unit="step")
    for step in bar:
        histories, candidates, cand_texts = [], [], []
        for u in rng.choice(users, size=cfg.batch_size):
            items = train.items_of(int(u))
            positive = int(rng.choice(items))
            negative = sample_negative(rng, set(everything.items_of(int(u)).tolist()), dataset.n_items)
            history = [titles[i] for i in sample_history(rng, items, positive, cfg.max_history)]
            for item in (positive, negative):
                histories.append(history)
                candidates.append(item)
                cand_texts.append("" if rng.random() < cfg.text_drop else texts[item])
        for group in opt.param_groups:
            group["lr"] = lr_schedule(step, cfg.steps, cfg.lr, cfg.warmup)
        out = ranker(histories, images[candidates], cand_texts)
        targets = yes_no.repeat(cfg.batch_size)  # (pos: yes, neg: no) per pair
        answer_loss = F.cross_entropy(out.logits, targets)
        margins = out.scores.view(-1, 2)
        pairwise = -F.logsigmoid(margins[:, 0] - margins[:, 1]).mean()
        loss = answer_loss + cfg.pairwise_weight * pairwise
        optimiser_step(opt, loss, model.parameters(), losses, bar, step, "loss")
    model.eval()
    return losses


def probe_attention_and_gradients(ranker: MLLMRanker, dataset) -> dict[str, object]:
    """Check that attention maps and pixel gradients come back (figures for the manifest)."""
    titles = item_titles(dataset.catalog)
    images = dataset.catalog.image_batch([0, 1]).clone().requires_grad_(True)
    history = [titles[2:5], titles[5:8]]
    texts = dataset.catalog.texts[:2]
    out = ranker.attentions(history, images, texts)
    out.scores.sum().backward()
    grad = images.grad
    patch = ranker.patch_attention(history, images.detach(), texts)
    return {
        "attention_layers": len(out.attentions or ()),
        "attention_shape": list(out.attentions[0].shape) if out.attentions else [],
        "patch_attention_grid": list(patch.shape[1:]),
        "pixel_grad_abs_mean": float(grad.abs().mean()),
        "pixel_grad_nonzero_share": float((grad != 0).float().mean()),
    }


def build(out_dir: Path, dataset, *, fast: bool = False, seed: int = 0, config: VLMTrainConfig | None = None) -> dict:
    """Train ``toyshop-vlm`` on ``dataset``, write it to ``out_dir``; returns quality figures.

    The folder holds the float16 model (``config.json``, ``model.safetensors``), the
    processor (``processor_config.json``) and the tokenizer. Figures are measured on the
    saved folder loaded through :meth:`MLLMRanker.load` (what users load).
    """
    from transformers import LlavaForConditionalGeneration

    from venomkit.zoo.tokenizer import train_zoo_tokenizer

    cfg = config or (VLMTrainConfig.fast() if fast else VLMTrainConfig())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tokenizer = train_zoo_tokenizer(dataset, vocab_size=cfg.vocab_size, seed=seed)
    processor = build_processor(tokenizer, cfg)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(model_config(tokenizer, cfg))
    ranker = MLLMRanker(model, processor, spec=str(out_dir), max_history=cfg.max_history)
    caption_losses = pretrain_captions(ranker, dataset, cfg, seed)
    match_losses, match_length = pretrain_matching(ranker, dataset, cfg, seed)
    losses = train_vlm(ranker, dataset, cfg, seed)
    train_seconds = time.time() - started

    model.half().save_pretrained(out_dir)
    processor.save_pretrained(out_dir)

    loaded = MLLMRanker.load(out_dir, max_history=cfg.max_history)
    eval_kw = {"n_users": cfg.eval_users, "n_negatives": cfg.n_negatives, "ks": (cfg.k,), "seed": seed}
    with torch.no_grad():
        full = evaluate_ranker(loaded, dataset, **eval_kw)
        image_only = evaluate_ranker(loaded, dataset, image_only=True, **eval_kw)
    k = cfg.k
    return {
        "family": "vlm",
        "architecture": "LlavaForConditionalGeneration",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": "float16",
        "train_steps": cfg.steps,
        "final_caption_loss": float(np.mean(caption_losses[-20:])) if caption_losses else None,
        "first_match_mse": float(np.mean(match_losses[:20])) if match_losses else None,
        "final_match_mse": float(np.mean(match_losses[-20:])) if match_losses else None,
        "final_match_titles": match_length or None,
        "final_train_loss": float(np.mean(losses[-20:])),
        "train_seconds": round(train_seconds, 1),
        f"hr@{k}": full[f"hr@{k}"],
        f"ndcg@{k}": full[f"ndcg@{k}"],
        f"hr@{k}_image_only": image_only[f"hr@{k}"],
        f"random_hr@{k}": full[f"random_hr@{k}"],
        f"popularity_hr@{k}": full[f"popularity_hr@{k}"],
        f"hr@{k}_over_random": full[f"hr@{k}"] / full[f"random_hr@{k}"],
        "eval_users": full["users"],
        "eval_protocol": f"1 held-out test positive + {cfg.n_negatives} sampled never-interacted negatives per user",
        **probe_attention_and_gradients(loaded, dataset),
        "build_seconds": round(time.time() - started, 1),
        "config": asdict(cfg),
    }
