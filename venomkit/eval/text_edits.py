"""How much a text attack changed a text: ONE definition of token edits.

* :func:`levenshtein` -- edit distance between two sequences (insert, delete, substitute, each
  cost 1): an int >= 0.
* :func:`real_tokens` -- the token ids of a text as the victim's own text encoder splits it,
  WITHOUT the tokenizer's start, end and padding ids (CLIP pads every text to 77 ids; the
  padding id of open_clip's BPE is 0, which is also the real token ``!``, so padding is found
  by position: everything from the first end-of-text id on).
* :func:`token_edit_ratio` -- edit distance over the CLEAN length, in [0, inf): the budget unit
  of the token attacks (``max_edit_ratio``) and the ``text_edit_ratio`` of a results table.
* :func:`text_edit_ratio` -- :func:`token_edit_ratio` of two texts' real tokens: 2 substituted
  tokens of a 20-token description give 0.10 whatever the padded length.
* :func:`edit_ratio` -- the stealth table's share of changed tokens: edit distance over the
  LONGER length, in [0, 1], on words by default (any tokenizer or id sequence too).

A token is "real" when it is before the first end-of-text id (the encoder's ``eot_token_id``,
when it has one) and decodes to something (start, end and padding markers decode to nothing).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

import torch

from venomkit.encoders.base import TextEncoder

_VOCABULARY_STRINGS: "weakref.WeakKeyDictionary[Any, list[str]]" = weakref.WeakKeyDictionary()
_DECODE_BATCH = 4096


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance between sequences ``a`` and ``b`` (insert, delete, substitute: cost 1 each)."""
    previous = list(range(len(b) + 1))
    for i, token_a in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, token_b in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token_a != token_b))
        previous = current
    return previous[-1]


def token_edit_ratio(clean_ids: Sequence[int], adv_ids: Sequence[int]) -> float:
    """Edit distance between two token-id sequences over the clean length (0.0 = same; inf for
    an empty clean text that gained tokens)."""
    a, b = list(clean_ids), list(adv_ids)
    if not a:
        return 0.0 if not b else float("inf")
    return levenshtein(a, b) / len(a)


def vocabulary_strings(text_encoder: TextEncoder) -> list[str]:
    """Every token id of the encoder's vocabulary decoded alone and stripped (cached per encoder).

    Index ``i`` is the text of token ``i``; start, end and padding markers decode to ``""``.
    """
    cached = _VOCABULARY_STRINGS.get(text_encoder)
    if cached is None:
        n = int(text_encoder.token_embedding.weight.shape[0])
        ids = torch.arange(n).view(-1, 1)
        cached = []
        for start in range(0, n, _DECODE_BATCH):
            cached.extend(s.strip() for s in text_encoder.decode(ids[start : start + _DECODE_BATCH]))
        _VOCABULARY_STRINGS[text_encoder] = cached
    return cached


def silent_token_mask(text_encoder: TextEncoder) -> torch.Tensor:
    """(V,) bool: the token ids that decode to nothing (start, end and padding markers)."""
    return torch.tensor([s == "" for s in vocabulary_strings(text_encoder)], dtype=torch.bool)


def real_token_mask(text_encoder: TextEncoder, token_ids: torch.Tensor) -> torch.Tensor:
    """(N, L) bool over the encoder's token ids (N, L): True at the text's real tokens.

    A position is real when it comes before the row's first end-of-text id (when the encoder
    has an ``eot_token_id``) and its id decodes to something (see the module docstring).
    """
    if token_ids.dim() != 2:
        raise ValueError(f"token_ids must be (N, L) token ids, got shape {tuple(token_ids.shape)}")
    silent = silent_token_mask(text_encoder).to(token_ids.device)
    mask = ~silent[token_ids]
    end = getattr(text_encoder, "eot_token_id", None)
    if end is not None:
        at_or_after_end = (token_ids == int(end)).int().cumsum(dim=1) > 0
        mask &= ~at_or_after_end
    return mask


def real_tokens(text_encoder: TextEncoder, text: str) -> list[int]:
    """Token ids of ``text`` in the encoder's tokenizer, without start, end and padding ids."""
    ids = text_encoder.tokenize([text])
    return ids[0][real_token_mask(text_encoder, ids)[0]].tolist()


def text_edit_ratio(text_encoder: TextEncoder, clean_text: str, adv_text: str) -> float:
    """Token edits from ``clean_text`` to ``adv_text`` over the clean text's real token count.

    Computed on :func:`real_tokens` of the victim's text encoder: in [0, inf), 0.0 for the same
    tokens; e.g. 2 substitutions in a 20-token text give 0.10.
    """
    return token_edit_ratio(real_tokens(text_encoder, clean_text), real_tokens(text_encoder, adv_text))


def _tokens(text: str | Sequence, tokenizer: Callable[[str], Sequence] | None) -> list:
    if isinstance(text, str):
        return list(tokenizer(text)) if tokenizer is not None else text.split()
    if isinstance(text, torch.Tensor):
        return text.reshape(-1).tolist()
    return list(text)


def edit_ratio(
    tokens_a: str | Sequence, tokens_b: str | Sequence, tokenizer: Callable[[str], Sequence] | None = None
) -> float:
    """Share of changed tokens between two texts, in [0, 1].

    = token-level Levenshtein distance (insert, delete, substitute, each cost 1) divided by
    the longer token count; 0.0 for two empty texts. For a substitution-only attack with equal
    lengths this is at most the share of substituted positions. Strings are split into words
    on whitespace (case and punctuation count), or into tokens by ``tokenizer`` (a callable
    str -> sequence, e.g. ``lambda s: hf_tokenizer.encode(s, add_special_tokens=False)``);
    already tokenised sequences are compared as given.
    """
    a, b = _tokens(tokens_a, tokenizer), _tokens(tokens_b, tokenizer)
    longest = max(len(a), len(b))
    return 0.0 if longest == 0 else levenshtein(a, b) / longest


__all__ = [
    "edit_ratio", "levenshtein", "real_token_mask", "real_tokens", "silent_token_mask", "text_edit_ratio",
    "token_edit_ratio", "vocabulary_strings",
]
