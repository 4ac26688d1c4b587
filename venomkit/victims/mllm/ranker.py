"""A multimodal-LLM ranker: would this user like this item? score = logit(yes) - logit(no).

The victim VenomRec (arXiv 2602.06409) attacks, in its first version: an LLaVA-family model
(``LlavaForConditionalGeneration`` with a ``LlavaProcessor``) is shown a user's history as
item titles and one candidate item as image + text, and asked whether the user would like it::

    USER: history: <title 1>; <title 2>; ... candidate: <image> <item text> Would the user like it? ASSISTANT:

The score of the candidate is the answer logit margin ``logit(" yes") - logit(" no")`` at
the last prompt position (the yes/no scoring of TALLRec / LLaRA-style LLM rankers). Ranking a
user's candidate list (99 sampled negatives + the target) sorts these scores.

Raw-input threat model: images enter as (B, 3, H, W) float in [0, 1], or a list of B
(3, H_i, W_i) photos at their own sizes; the processor's resize / centre crop / normalisation
is redone in torch (:func:`venomkit.encoders.vlm_preprocess.clip_image_preprocess`) so
gradients reach the native pixels, and the ``<image>`` placeholder is expanded to the vision tower's number of
patch tokens exactly as ``LlavaProcessor`` does. Attention maps come from the eager attention
implementation (``output_attentions=True``).

The same loader reads ``zoo:toyshop-vlm``, a local folder, or a cached hub id such as
``llava-hf/llava-1.5-7b-hf``. This ranker is not a feature-table :class:`Victim` (its scores
are not a dot product); a later version adds users x items scoring, fine-tuning and
user-prefix KV-cache reuse on top of :meth:`MLLMRanker.score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from venomkit.encoders.base import images_to
from venomkit.encoders.preprocess import TorchPreprocess
from venomkit.encoders.vlm_preprocess import clip_image_preprocess
from venomkit.models.resolve import load_pretrained

DEFAULT_VLM = "zoo:toyshop-vlm"
YES, NO = " yes", " no"


def build_ranking_prompt(history_titles: Sequence[str], candidate_text: str, image_token: str = "<image>") -> str:
    """The ranking prompt for one (history, candidate) pair; ``image_token`` marks the image."""
    history = "; ".join(" ".join(str(t).split()) for t in history_titles) or "none"
    text = " ".join(str(candidate_text).split())
    return f"USER: history: {history} candidate: {image_token} {text} Would the user like it? ASSISTANT:"


def _answer_token_id(tokenizer, answer: str) -> int:
    """Id of the first token ``answer`` adds after an ``ASSISTANT:`` prefix (tokenizer-agnostic)."""
    prefix = tokenizer("ASSISTANT:", add_special_tokens=False).input_ids
    full = tokenizer("ASSISTANT:" + answer, add_special_tokens=False).input_ids
    k = 0
    while k < min(len(prefix), len(full)) and prefix[k] == full[k]:
        k += 1
    if k >= len(full):
        raise ValueError(f"the tokenizer adds no token for the answer {answer!r}")
    return int(full[k])


def _processor_preprocess(processor) -> TorchPreprocess:
    """A differentiable copy of the processor's ``CLIPImageProcessor`` (resize shorter side, crop, normalise).

    :func:`venomkit.encoders.vlm_preprocess.clip_image_preprocess`: equal to the processor's
    ``pixel_values`` to one grey level on photos of any size (measured at 336 and 64 px on a
    1166 x 1750 photo, ``tests/encoders/test_vlm_preprocess.py``).
    """
    return clip_image_preprocess(processor)


def num_image_tokens(processor) -> int:
    """How many placeholder tokens ``LlavaProcessor`` puts in place of one ``<image>``."""
    height, width = _processor_preprocess(processor).config.size
    n = (height // processor.patch_size) * (width // processor.patch_size)
    n += int(getattr(processor, "num_additional_image_tokens", 0) or 0)
    if getattr(processor, "vision_feature_select_strategy", None) == "default":
        n -= 1
    return n


@dataclass
class RankerOutput:
    """What one forward pass of the ranker returns.

    Attributes:
        scores: (B,) ``logit(yes) - logit(no)``.
        logits: (B, V) next-token logits at the answer position.
        attentions: per language-model layer, (B, heads, T, T) attention maps (or None).
        image_mask: (B, T) bool, True at the image patch tokens.
        last_index: (B,) position of the last prompt token (where the answer is read).
    """

    scores: torch.Tensor
    logits: torch.Tensor
    attentions: tuple[torch.Tensor, ...] | None
    image_mask: torch.Tensor
    last_index: torch.Tensor


class MLLMRanker(nn.Module):
    """Yes/no ranker around an LLaVA-family model and its processor (see module docstring).

    Args:
        model: a ``LlavaForConditionalGeneration`` (or compatible: ``.model`` returning hidden
            states, ``get_output_embeddings()``, ``pixel_values`` input).
        processor: its ``LlavaProcessor`` (tokenizer + image processor + patch settings).
        spec: the name it was loaded from, for checkpoints and reports.
        max_history: only the last ``max_history`` titles of a history go in the prompt.
    """

    def __init__(self, model: nn.Module, processor, *, spec: str = "", max_history: int = 8) -> None:
        super().__init__()
        if max_history < 0:
            raise ValueError(f"max_history must be >= 0, got {max_history}")
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.spec = spec
        self.max_history = max_history
        self.preprocess = _processor_preprocess(processor)
        self.image_token = processor.image_token
        self.image_token_id = int(processor.image_token_id)
        self.n_image_tokens = num_image_tokens(processor)
        self.yes_id = _answer_token_id(self.tokenizer, YES)
        self.no_id = _answer_token_id(self.tokenizer, NO)
        if self.yes_id == self.no_id:
            raise ValueError("the answers ' yes' and ' no' start with the same token; the ranker needs distinct ones")

    @classmethod
    def load(
        cls,
        name: str | Path = DEFAULT_VLM,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        attn_implementation: str = "eager",
        max_history: int = 8,
    ) -> MLLMRanker:
        """Load ``zoo:NAME``, a folder or a cached hub id with ``from_pretrained``.

        ``attn_implementation="eager"`` is what returns attention maps; use ``"sdpa"`` when
        only scores are needed from a large model.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        what = "vision-language model"
        processor = load_pretrained(AutoProcessor, name, what=what)
        model = load_pretrained(AutoModelForImageTextToText, name, what=what, dtype=dtype, attn_implementation=attn_implementation)
        model = model.to(device).eval()
        return cls(model, processor, spec=str(name), max_history=max_history)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompts(self, history_titles: Sequence[Sequence[str]], texts: Sequence[str]) -> list[str]:
        """One ranking prompt per row, histories cut to the last ``max_history`` titles."""
        if len(history_titles) != len(texts):
            raise ValueError(f"{len(history_titles)} histories for {len(texts)} candidate texts")
        cut = self.max_history
        return [
            build_ranking_prompt(list(h)[-cut:] if cut else [], t, self.image_token) for h, t in zip(history_titles, texts)
        ]

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), right-padded, each ``<image>`` expanded to the patch tokens."""
        expanded = [p.replace(self.image_token, self.image_token * self.n_image_tokens) for p in prompts]
        for p in prompts:
            if p.count(self.image_token) != 1:
                raise ValueError(f"a ranking prompt needs exactly one {self.image_token!r}, got: {p[:120]!r}")
        enc = self.tokenizer(expanded, padding=True, padding_side="right", return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def pixel_values(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W) or B x (3, H_i, W_i) in [0, 1] -> the vision tower's (B, 3, h, w) input, differentiably."""
        if isinstance(images, torch.Tensor) and (images.dim() != 4 or images.shape[1] != 3):
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        dtype = next(self.model.parameters()).dtype
        return self.preprocess.to(self.device)(images_to(images, self.device, torch.float32)).to(dtype)

    def forward(
        self,
        history_titles: Sequence[Sequence[str]],
        images: torch.Tensor,
        texts: Sequence[str],
        output_attentions: bool = False,
    ) -> RankerOutput:
        """Run the model on B (history, image, text) rows; see :class:`RankerOutput`."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} candidate texts")
        input_ids, attention_mask = self.tokenize(self.prompts(history_titles, texts))
        out = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=self.pixel_values(images),
            output_attentions=output_attentions,
            use_cache=False,
        )
        last = attention_mask.sum(1) - 1
        hidden = out.last_hidden_state[torch.arange(len(last), device=last.device), last]
        logits = self.model.get_output_embeddings()(hidden).float()
        return RankerOutput(
            scores=logits[:, self.yes_id] - logits[:, self.no_id],
            logits=logits,
            attentions=out.attentions if output_attentions else None,
            image_mask=input_ids == self.image_token_id,
            last_index=last,
        )

    def score(self, history_titles: Sequence[Sequence[str]], images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(B,) yes/no logit margins; differentiable with respect to ``images`` (B, 3, H, W) [0, 1]."""
        return self(history_titles, images, texts).scores

    def attentions(
        self, history_titles: Sequence[Sequence[str]], images: torch.Tensor, texts: Sequence[str]
    ) -> RankerOutput:
        """Forward pass with attention maps (needs a model loaded with eager attention)."""
        return self(history_titles, images, texts, output_attentions=True)

    def patch_attention(
        self, history_titles: Sequence[Sequence[str]], images: torch.Tensor, texts: Sequence[str]
    ) -> torch.Tensor:
        """(B, gh, gw) attention from the answer position to each image patch.

        Averaged over layers and heads, in patch-grid order (row-major, as the vision tower
        flattens patches); a CLS token kept by the ``full`` strategy is dropped. This is the
        map the attention-guided patch edits of VenomRec read.
        """
        out = self.attentions(history_titles, images, texts)
        if not out.attentions:
            raise RuntimeError("the model returned no attention maps: load it with attn_implementation='eager'")
        rows = torch.arange(len(out.last_index), device=out.last_index.device)
        stacked = torch.stack([a[rows, :, out.last_index, :] for a in out.attentions])  # (L, B, heads, T)
        per_token = stacked.float().mean(dim=(0, 2))  # (B, T)
        height, width = self.preprocess.config.size
        grid = (height // self.processor.patch_size, width // self.processor.patch_size)
        maps = []
        for b in range(per_token.shape[0]):
            values = per_token[b][out.image_mask[b]]
            maps.append(values[-grid[0] * grid[1] :].view(*grid))
        return torch.stack(maps)

    @torch.no_grad()
    def score_candidates(
        self,
        history_titles: Sequence[str],
        images: torch.Tensor,
        texts: Sequence[str],
        batch_size: int = 64,
    ) -> torch.Tensor:
        """(C,) scores of C candidates for ONE user (e.g. 99 negatives + the target), batched."""
        scores = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            scores.append(self.score([history_titles] * len(chunk), images[start : start + len(chunk)], chunk))
        return torch.cat(scores) if scores else torch.zeros(0)
