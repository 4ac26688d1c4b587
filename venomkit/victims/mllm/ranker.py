"""A multimodal-LLM ranker: would this user like this item? score = logit(yes) - logit(no).

The victim VenomRec (arXiv 2602.06409) attacks: a vision-language model is shown a user's
history as item titles and one candidate item as image + text, and asked whether the user
would like it::

    USER: history: <title 1>; <title 2>; ... candidate: <image> <item text> Would the user like it? ASSISTANT:

The score of the candidate is the answer logit margin ``logit(" yes") - logit(" no")`` at
the last prompt position (the yes/no scoring of TALLRec / LLaRA-style LLM rankers). Ranking a
user's candidate list (99 sampled negatives + the target) sorts these scores.

Families: LLaVA (``LlavaForConditionalGeneration`` + ``LlavaProcessor``, e.g. ``zoo:toyshop-vlm``,
``llava-hf/llava-1.5-7b-hf``) and Qwen2-VL (``Qwen2VLForConditionalGeneration`` +
``Qwen2VLProcessor``, e.g. ``Qwen/Qwen2-VL-2B-Instruct``); what differs between them (image
placeholder, pixel inputs, image-token count, position ids, token grid) is one adapter each in
:mod:`venomkit.victims.mllm.families`. Qwen2-VL's placeholder is
``<|vision_start|><|image_pad|><|vision_end|>``.

Raw-input threat model: images enter as (B, 3, H, W) float in [0, 1], or a list of B
(3, H_i, W_i) photos at their own sizes; the processor's resize / crop / normalisation (and
Qwen2-VL's patchify) is redone in torch (:mod:`venomkit.encoders.vlm_preprocess`) so gradients
reach the native pixels, and the image placeholder is expanded to as many tokens as the
processor would (LLaVA: the patches; Qwen2-VL: ``grid_t * grid_h * grid_w / merge_size ** 2``
per photo). Attention maps come from the eager attention implementation.

Tokenisation: a prompt is cut before its image placeholder into a prefix (``USER: history: ...
candidate: ``, special tokens such as BOS added) and a suffix (the placeholder onwards, no
special tokens), each tokenised on its own; the prompt's ids are prefix ids + suffix ids in
every path. With placeholders that are special tokens (both families) this equals the
processor's tokenisation of the whole prompt (tested for both). Batches are right-padded and
the answer is read at each row's last real token.

Ranking cost (:meth:`MLLMRanker.score_candidates`): the user prefix's keys and values are
computed once per candidate list and every batch of candidate suffixes runs on top of them
(:mod:`venomkit.victims.mllm.kv_cache`), equal to the plain forwards up to float rounding.
:meth:`MLLMRanker.forward` / :meth:`MLLMRanker.score` are the plain, differentiable forwards.

The same loader reads ``zoo:toyshop-vlm``, a local folder, or a cached hub id. ``ranker.model``
may have its Linear layers LoRA-wrapped by ``peft`` (in place, or the attribute replaced by a
``PeftModel``): the ranker reads the wrapped model at every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from venomkit.config import check_int
from venomkit.models.resolve import load_pretrained
from venomkit.victims.mllm.families import ImageInputs, VLMFamily, family_for, num_image_tokens
from venomkit.victims.mllm.kv_cache import PrefixCache, cache_argument

DEFAULT_VLM = "zoo:toyshop-vlm"
YES, NO = " yes", " no"

__all__ = ["DEFAULT_VLM", "MLLMRanker", "NO", "RankerOutput", "YES", "build_ranking_prompt", "num_image_tokens"]


QUESTION = " Would the user like it? ASSISTANT:"
"""What follows the candidate's text in every ranking prompt."""


def normalise_text(text: str) -> str:
    """A candidate text as the prompt holds it: whitespace runs collapsed to one space, stripped."""
    return " ".join(str(text).split())


def build_ranking_prompt(history_titles: Sequence[str], candidate_text: str, image_token: str = "<image>") -> str:
    """The ranking prompt for one (history, candidate) pair; ``image_token`` marks the image."""
    history = "; ".join(normalise_text(t) for t in history_titles) or "none"
    return f"USER: history: {history} candidate: {image_token} {normalise_text(candidate_text)}{QUESTION}"


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


@dataclass
class RankerOutput:
    """What one forward pass of the ranker returns.

    Attributes:
        scores: (B,) ``logit(yes) - logit(no)``.
        logits: (B, V) next-token logits at the answer position.
        attentions: per language-model layer, (B, heads, T, T) attention maps (or None).
        image_mask: (B, T) bool, True at the image placeholder tokens.
        last_index: (B,) position of the last prompt token (where the answer is read).
        image_grids: per row, the (rows, cols) grid of its image tokens (row-major).
        text_mask: (B, T) bool, True at the candidate text's tokens (``MLLMRanker.text_ids``).
        hidden: (B, T, d) the language model's last hidden states (``output_hidden_states``), or None.
    """

    scores: torch.Tensor
    logits: torch.Tensor
    attentions: tuple[torch.Tensor, ...] | None
    image_mask: torch.Tensor
    last_index: torch.Tensor
    image_grids: list[tuple[int, int]] | None = None
    text_mask: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


class MLLMRanker(nn.Module):
    """Yes/no ranker around a LLaVA or Qwen2-VL model and its processor (see module docstring).

    Args:
        model: a ``LlavaForConditionalGeneration`` or ``Qwen2VLForConditionalGeneration`` (its
            ``.model`` returns hidden states, ``get_output_embeddings()`` is the LM head);
            LoRA-wrapped layers or a ``PeftModel`` around it work too.
        processor: its ``LlavaProcessor`` / ``Qwen2VLProcessor``.
        spec: the name it was loaded from, for checkpoints and reports.
        max_history: only the last ``max_history`` titles of a history go in the prompt.
    """

    def __init__(self, model: nn.Module, processor, *, spec: str = "", max_history: int = 8) -> None:
        super().__init__()
        check_int("max_history", max_history, 0)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.spec = spec
        self.max_history = max_history
        self.family: VLMFamily = family_for(model, processor)
        self.preprocess = self.family.preprocess
        self.image_token = self.family.image_token
        self.image_token_id = self.family.image_token_id
        self.image_placeholder = self.family.placeholder
        self.n_image_tokens = self.family.fixed_n_tokens  # None where it follows each photo's size (Qwen2-VL)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token to right-pad batches with")
        self.pad_id = int(pad)  # masked everywhere: its value never reaches a score
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
        """Load ``zoo:NAME``, a folder or a cached hub id with ``from_pretrained`` (any supported family).

        ``attn_implementation="eager"`` is what returns attention maps; use ``"sdpa"`` when
        only scores are needed from a large model.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        what = "vision-language model"
        processor = load_pretrained(AutoProcessor, name, what=what)
        model = load_pretrained(AutoModelForImageTextToText, name, what=what, dtype=dtype, attn_implementation=attn_implementation)
        model = model.to(device).eval()
        return cls(model, processor, spec=str(name), max_history=max_history)

    # ----------------------------------------------------------------------------- the model
    def _base(self) -> nn.Module:
        """The transformers model under a possible ``PeftModel`` wrapper."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if callable(get_base) else self.model

    def _core(self) -> nn.Module:
        """The model without its LM head (``LlavaModel`` / ``Qwen2VLModel``)."""
        return self._base().model

    def _answer_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, hidden) final-norm states at the answer positions -> (B, V) float32 logits."""
        return self._base().get_output_embeddings()(hidden).float()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------- prompts and tokens
    def prompts(self, history_titles: Sequence[Sequence[str]], texts: Sequence[str]) -> list[str]:
        """One ranking prompt per row, histories cut to the last ``max_history`` titles."""
        if len(history_titles) != len(texts):
            raise ValueError(f"{len(history_titles)} histories for {len(texts)} candidate texts")
        cut = self.max_history
        return [
            build_ranking_prompt(list(h)[-cut:] if cut else [], t, self.image_placeholder)
            for h, t in zip(history_titles, texts)
        ]

    def split_prompt(self, prompt: str) -> tuple[str, str]:
        """(prefix, suffix): the prompt cut just before its one image placeholder."""
        if prompt.count(self.image_placeholder) != 1 or prompt.count(self.image_token) != 1:
            raise ValueError(f"a ranking prompt needs exactly one {self.image_placeholder!r}, got: {prompt[:120]!r}")
        k = prompt.index(self.image_placeholder)
        return prompt[:k], prompt[k:]

    def prefix_ids(self, prefix: str) -> list[int]:
        """Token ids of a prompt prefix (with the tokenizer's special tokens, e.g. BOS)."""
        return self.tokenizer(prefix, add_special_tokens=True).input_ids

    def suffix_ids(self, suffix: str, n_image_tokens: int) -> list[int]:
        """Token ids of a prompt suffix, its image token expanded ``n_image_tokens`` times (no special tokens)."""
        return self.tokenizer(self.family.expand(suffix, n_image_tokens), add_special_tokens=False).input_ids

    def suffix_text_span(self, suffix: str, n_image_tokens: int) -> tuple[list[int], int, int]:
        """(suffix ids, start, end): positions [start, end) of the suffix ids are the candidate's text.

        The suffix is ``<placeholder> <text><QUESTION>``; the text's tokens are those whose
        characters fall in the text (a token may carry the one separating space before it, as
        BPE tokens do). A tokenizer that merges the text with the placeholder or the question
        is refused: token edits of the text would then change tokens outside it.
        """
        expanded = self.family.expand(suffix, n_image_tokens)
        if not expanded.endswith(QUESTION):
            raise ValueError(f"a ranking suffix must end with {QUESTION!r}, got {suffix[-60:]!r}")
        head = self.family.expand(self.image_placeholder, n_image_tokens)
        text_start, text_end = len(head) + 1, len(expanded) - len(QUESTION)
        enc = self.tokenizer(expanded, add_special_tokens=False, return_offsets_mapping=True)
        inside = [k for k, (a, b) in enumerate(enc.offset_mapping) if a < text_end and b > text_start]
        if not inside:  # an empty text: an empty span where the question starts
            at = next((k for k, (a, _) in enumerate(enc.offset_mapping) if a >= text_start), len(enc.input_ids))
            return enc.input_ids, at, at
        start, end = inside[0], inside[-1] + 1
        if enc.offset_mapping[start][0] < text_start - 1 or enc.offset_mapping[end - 1][1] > text_end:
            raise ValueError("the tokenizer merges the candidate text with the tokens around it; token edits need it apart")
        return enc.input_ids, start, end

    def text_ids(self, text: str) -> list[int]:
        """The token ids of a candidate ``text`` as a ranking prompt holds it (its token-edit space)."""
        suffix = f"{self.image_placeholder} {normalise_text(text)}{QUESTION}"
        ids, start, end = self.suffix_text_span(suffix, 1)
        return ids[start:end]

    def _pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (ids, attention_mask), (B, max length) long, on the model's device."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            ids[k, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[k, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    def tokenize(
        self, prompts: Sequence[str], image_tokens: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), right-padded: prefix ids + suffix ids per prompt.

        ``image_tokens``: placeholder tokens per prompt (default: the family's fixed count;
        Qwen2-VL needs them, they follow each photo's size).
        """
        if image_tokens is None:
            if self.n_image_tokens is None:
                raise ValueError(f"{type(self.family).__name__}: pass image_tokens (they follow each photo's size)")
            image_tokens = [self.n_image_tokens] * len(prompts)
        ids, mask, _ = self.tokenize_with_text_spans(prompts, image_tokens)
        return ids, mask

    def tokenize_with_text_spans(
        self, prompts: Sequence[str], image_tokens: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """:meth:`tokenize` plus each row's candidate-text positions [start, end) in its ids."""
        if len(image_tokens) != len(prompts):
            raise ValueError(f"{len(image_tokens)} image token counts for {len(prompts)} prompts")
        rows, spans = [], []
        for prompt, n in zip(prompts, image_tokens):
            prefix, suffix = self.split_prompt(prompt)
            head = self.prefix_ids(prefix)
            tail, start, end = self.suffix_text_span(suffix, n)
            rows.append(head + tail)
            spans.append((len(head) + start, len(head) + end))
        ids, mask = self._pad(rows)
        return ids, mask, spans

    def image_inputs(self, images: torch.Tensor | Sequence[torch.Tensor]) -> ImageInputs:
        """(B, 3, H, W) or B x (3, H_i, W_i) in [0, 1] -> the model's image inputs, differentiably."""
        return self.family.image_inputs(images, self.device, self.dtype)

    def pixel_values(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The vision tower's ``pixel_values`` (LLaVA: (B, 3, h, w); Qwen2-VL: patch rows), differentiably."""
        return self.image_inputs(images).model_kwargs["pixel_values"]

    # ----------------------------------------------------------------------------- forwards
    def forward(
        self,
        history_titles: Sequence[Sequence[str]],
        images: torch.Tensor | Sequence[torch.Tensor],
        texts: Sequence[str],
        output_attentions: bool = False,
        text_embeddings: Sequence[torch.Tensor] | None = None,
        output_hidden_states: bool = False,
    ) -> RankerOutput:
        """Plain (uncached) forward of B (history, image, text) rows; see :class:`RankerOutput`.

        ``text_embeddings``: per row, (n_b, d) input embeddings that replace those of the
        row's candidate-text tokens (``n_b = len(self.text_ids(texts[b]))``): the values the
        embedding table gives for those tokens, made differentiable, so a token attack
        (HotFlip) reads the gradient with respect to each text token's embedding.
        ``output_hidden_states``: also return the last hidden states (VenomRec's fused item
        representations pool them over the item's text and image tokens).
        """
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} candidate texts")
        prompts = self.prompts(history_titles, texts)
        inputs = self.image_inputs(images)
        input_ids, attention_mask, spans = self.tokenize_with_text_spans(prompts, inputs.n_tokens)
        core = self._core()
        with self._text_embeddings_replaced(core, spans, text_embeddings):
            out = core(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=self.family.position_ids(core, input_ids, attention_mask, inputs),
                output_attentions=output_attentions,
                use_cache=False,
                **inputs.model_kwargs,
            )
        text_mask = torch.zeros_like(input_ids, dtype=torch.bool)
        for k, (start, end) in enumerate(spans):
            text_mask[k, start:end] = True
        last = attention_mask.sum(1) - 1
        logits = self._answer_logits(out.last_hidden_state[torch.arange(len(last), device=last.device), last])
        return RankerOutput(
            scores=logits[:, self.yes_id] - logits[:, self.no_id],
            logits=logits,
            attentions=out.attentions if output_attentions else None,
            image_mask=input_ids == self.image_token_id,
            last_index=last,
            image_grids=inputs.grids,
            text_mask=text_mask,
            hidden=out.last_hidden_state if output_hidden_states else None,
        )

    @contextlib.contextmanager
    def _text_embeddings_replaced(self, core: nn.Module, spans: Sequence[tuple[int, int]], embeddings: Sequence[torch.Tensor] | None):
        """While active, the LM's input embeddings of each row's text span are ``embeddings[row]``."""
        if embeddings is None:
            yield
            return
        if len(embeddings) != len(spans):
            raise ValueError(f"{len(embeddings)} text embeddings for {len(spans)} rows")
        for (start, end), e in zip(spans, embeddings):
            if e.dim() != 2 or e.shape[0] != end - start:
                raise ValueError(f"a row's text embeddings must be ({end - start}, d) for its {end - start} text tokens, got {tuple(e.shape)}")

        def replace(module, args, output):
            out = output.clone()
            for k, (start, end) in enumerate(spans):
                if end > start:
                    out[k, start:end] = embeddings[k].to(out.dtype)
            return out

        handle = core.get_input_embeddings().register_forward_hook(replace)
        try:
            yield
        finally:
            handle.remove()

    def score(
        self, history_titles: Sequence[Sequence[str]], images: torch.Tensor | Sequence[torch.Tensor], texts: Sequence[str]
    ) -> torch.Tensor:
        """(B,) yes/no logit margins; differentiable with respect to the raw ``images`` in [0, 1]."""
        return self(history_titles, images, texts).scores

    def attentions(
        self, history_titles: Sequence[Sequence[str]], images: torch.Tensor | Sequence[torch.Tensor], texts: Sequence[str]
    ) -> RankerOutput:
        """Forward pass with attention maps (needs a model loaded with eager attention)."""
        return self(history_titles, images, texts, output_attentions=True)

    def patch_attention(
        self, history_titles: Sequence[Sequence[str]], images: torch.Tensor | Sequence[torch.Tensor], texts: Sequence[str]
    ) -> torch.Tensor | list[torch.Tensor]:
        """Attention from the answer position to each image token, on the image's token grid.

        Averaged over layers and heads, in grid order (row-major): LLaVA (B, h / patch,
        w / patch) (a CLS token kept by the ``full`` strategy is dropped); Qwen2-VL the merged
        patch grid (grid_h / merge, grid_w / merge) of each photo. A (B, rows, cols) tensor when
        every row's grid has the same shape, else a list of B (rows_b, cols_b) maps. This is
        the map the attention-guided patch edits of VenomRec read.
        """
        out = self.attentions(history_titles, images, texts)
        if not out.attentions:
            raise RuntimeError("the model returned no attention maps: load it with attn_implementation='eager'")
        rows = torch.arange(len(out.last_index), device=out.last_index.device)
        stacked = torch.stack([a[rows, :, out.last_index, :] for a in out.attentions])  # (L, B, heads, T)
        per_token = stacked.float().mean(dim=(0, 2))  # (B, T)
        maps = []
        for b, (gh, gw) in enumerate(out.image_grids):
            values = per_token[b][out.image_mask[b]]
            maps.append(values[-gh * gw :].view(gh, gw))
        return torch.stack(maps) if len(set(out.image_grids)) == 1 else maps

    # ------------------------------------------------------------------ ranking candidates
    @torch.no_grad()
    def score_candidates(
        self,
        history_titles: Sequence[str],
        images: torch.Tensor | Sequence[torch.Tensor],
        texts: Sequence[str],
        batch_size: int = 64,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """(C,) scores of C candidates for ONE user (e.g. 99 negatives + the target), batched.

        ``use_cache=True`` (default): the user prefix is run once and each batch of
        ``batch_size`` candidate suffixes runs on top of its keys/values
        (:meth:`score_cached`); ``False``: plain forwards of whole prompts (:meth:`score`).
        Both give the same scores up to float rounding. No gradients (``torch.no_grad``).
        """
        check_int("batch_size", batch_size)
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} candidate texts")
        if len(texts) == 0:
            return torch.zeros(0, device=self.device)
        if use_cache:
            return self.score_cached(history_titles, images, texts, batch_size=batch_size)
        scores = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            scores.append(self.score([history_titles] * len(chunk), images[start : start + len(chunk)], chunk))
        return torch.cat(scores)

    def score_cached(
        self,
        history_titles: Sequence[str],
        images: torch.Tensor | Sequence[torch.Tensor],
        texts: Sequence[str],
        batch_size: int = 64,
    ) -> torch.Tensor:
        """(C,) scores of C candidates of ONE user through the user-prefix KV cache.

        The prefix ``USER: history: ... candidate: `` is run once (a (1, P) forward); each batch
        of candidate suffixes ``<image> <text> Would the user like it? ASSISTANT:`` is
        right-padded and run on the prefix's keys/values expanded to the batch, with the
        suffix slice of the whole sequences' position ids; the answer is read at each row's
        last real token. Differentiable when called with gradients enabled (pixels and
        weights; the prefix's keys/values too, through its one forward).
        """
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} candidate texts")
        prompts = self.prompts([history_titles] * len(texts), texts)
        prefix, _ = self.split_prompt(prompts[0])
        suffixes = []
        for prompt in prompts:
            head, suffix = self.split_prompt(prompt)
            if head != prefix:  # cannot happen for one history; guards a changed prompt template
                raise ValueError(f"candidate prompts of one user must share the prefix {prefix[:80]!r}...")
            suffixes.append(suffix)
        core = self._core()
        cache_name = cache_argument(core)
        prefix_ids = torch.tensor([self.prefix_ids(prefix)], dtype=torch.long, device=self.device)  # (1, P)
        length = prefix_ids.shape[1]
        cached: PrefixCache | None = None
        scores = []
        for start in range(0, len(texts), batch_size):
            inputs = self.image_inputs(images[start : start + batch_size])
            batch = len(inputs.n_tokens)
            suffix_ids, suffix_mask = self._pad(
                [self.suffix_ids(s, n) for s, n in zip(suffixes[start : start + batch], inputs.n_tokens)]
            )
            input_ids = torch.cat([prefix_ids.expand(batch, -1), suffix_ids], dim=1)
            attention_mask = torch.cat([torch.ones_like(prefix_ids).expand(batch, -1), suffix_mask], dim=1)
            positions = self.family.position_ids(core, input_ids, attention_mask, inputs)  # whole sequences
            if cached is None:
                cached = PrefixCache.build(core, prefix_ids, None if positions is None else positions[..., :1, :length])
            out = core(
                input_ids=suffix_ids,
                attention_mask=attention_mask,
                position_ids=None if positions is None else positions[..., length:],
                use_cache=True,
                **{cache_name: cached.for_batch(batch)},
                **inputs.model_kwargs,
            )
            last = suffix_mask.sum(1) - 1
            logits = self._answer_logits(out.last_hidden_state[torch.arange(batch, device=last.device), last])
            scores.append(logits[:, self.yes_id] - logits[:, self.no_id])
        return torch.cat(scores)
