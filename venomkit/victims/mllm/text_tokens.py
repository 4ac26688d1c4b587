"""The MLLM ranker's candidate-text tokens as a token space the text attacks edit.

HotFlip (:mod:`venomkit.attacks.token_hotflip`) and VenomRec's token substitutions edit a text
in the token space of the model that reads it. For a feature victim that is its text encoder;
for the MLLM ranker it is the language model's tokenizer and input embedding table, on the
candidate text exactly as a ranking prompt holds it (:meth:`MLLMRanker.text_ids`: the tokens
between the image placeholder and the question, a token carrying the space before it).

:class:`CandidateTextTokens` offers what the token attacks and the edit budget read from a text
encoder (``tokenize``, ``decode``, ``token_embedding``; :mod:`venomkit.eval.text_edits`):

* ``tokenize(texts) -> (N, max_tokens)`` long: each text's ids right-padded with the pad id
  (a special token, so it decodes to nothing and never counts as a real token);
* ``decode(ids) -> N strings``: the real ids decoded, the separating space stripped;
* ``token_embedding``: the language model's input embedding table (vocab, d);
* ``reserved_token_ids``: the tokens of the prompt's own answer and role words, which the text
  attacks do not insert (``TextBudgetConfig.allow_prompt_words``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import nn

from venomkit.config import check_int
from venomkit.victims.mllm.ranker import NO, YES, MLLMRanker
from venomkit.victims.scoring import TokenTexts


class CandidateTextTokens:
    """Token view of an :class:`MLLMRanker`'s candidate texts (module docstring).

    Args:
        ranker: the ranker whose tokenizer and embedding table are used.
        max_tokens: the fixed width of ``tokenize``'s rows; a longer text is a ValueError.
    """

    eot_token_id = None  # padding is found as silent (special) tokens, not by an end-of-text id

    def __init__(self, ranker: MLLMRanker, max_tokens: int = 256) -> None:
        check_int("max_tokens", max_tokens, 1)
        self.ranker = ranker
        self.max_tokens = max_tokens
        self.pad_id = ranker.pad_id

    ANSWER_WORDS = (YES.strip(), NO.strip())
    """The answers the ranker reads (any case): a text holding one answers the question for it."""
    ROLE_WORDS = ("USER", "ASSISTANT")
    """The prompt's role markers, as it spells them (``user`` in lower case is an ordinary word)."""

    @functools.cached_property
    def reserved_token_ids(self) -> frozenset[int]:
        """Ids of every single-token spelling (with or without a leading space) of the answer words
        in any case and of the role words as spelled; plus the ranker's own yes / no ids."""
        spellings = {v for w in self.ANSWER_WORDS for v in (w, w.lower(), w.capitalize(), w.upper())} | set(self.ROLE_WORDS)
        ids = {self.ranker.yes_id, self.ranker.no_id}
        for spelling in spellings:
            for text in (spelling, " " + spelling):
                pieces = self.ranker.tokenizer(text, add_special_tokens=False).input_ids
                if len(pieces) == 1:
                    ids.add(int(pieces[0]))
        return frozenset(ids)

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.ranker._core().get_input_embeddings()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, max_tokens) ids of each text as the ranking prompt holds it, right-padded."""
        out = torch.full((len(texts), self.max_tokens), self.pad_id, dtype=torch.long)
        for k, text in enumerate(texts):
            ids = self.ranker.text_ids(text)
            if len(ids) > self.max_tokens:
                raise ValueError(f"a candidate text has {len(ids)} tokens, more than max_tokens={self.max_tokens}: {text[:60]!r}...")
            out[k, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def real_mask(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) bool: the positions holding a text's tokens (not padding)."""
        return token_ids != self.pad_id

    def row_embeddings(self, tokens: TokenTexts) -> list[torch.Tensor]:
        """Per text, the (n_b, d) embeddings of its tokens, padding dropped: what
        ``MLLMRanker.forward(text_embeddings=...)`` substitutes for the candidate text's tokens."""
        real = self.real_mask(tokens.ids)
        return [tokens.embeddings[k][real[k]] for k in range(len(tokens))]

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        """N strings: each row's non-padding ids decoded (special tokens dropped), stripped."""
        ids = torch.as_tensor(token_ids).reshape(len(token_ids), -1).tolist()
        return [
            self.ranker.tokenizer.decode([t for t in row if t != self.pad_id], skip_special_tokens=True).strip()
            for row in ids
        ]
