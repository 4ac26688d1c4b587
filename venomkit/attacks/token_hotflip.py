"""White-box token substitution: HotFlip (Ebrahimi et al., ACL 2018) on item descriptions.

The victim's token space (``victim.text_tokens``: a feature victim's text encoder, or the
MLLM ranker's candidate-text tokens over its language model's vocabulary) exposes its
token-embedding table ``E`` (V, d), and the victim scores texts given as token embeddings
(:class:`~venomkit.victims.scoring.TokenTexts`), so the first-order change of the promotion loss when position ``p``
switches from token ``w`` to token ``v`` is

    dL(p, w -> v) ~= (E[v] - E[w]) . dL/de_p

(Ebrahimi et al., Eq. 2). Each round scores every (position, token) pair with one backward
pass, evaluates the ``n_candidates`` best flips exactly (re-encoding the decoded strings,
which is what the victim will see), and keeps the best one if it lowers the loss, until the
budget -- ``max_edit_ratio`` of the text's real tokens (``venomkit.eval.text_edits``: no
start, end or padding ids) -- is spent. Constraints: stop-words and the item's category
word(s) can be kept unedited; a flip is only accepted when decoding then
re-tokenising gives back exactly the optimised tokens (so the saved text is the attack).

Optional fluency constraint (``fluency_lm``), TextAttack's language-model constraint
(``LanguageModelConstraint(max_log_prob_diff=...)``, e.g. ``LearningToWriteLanguageModel(max_log_prob_diff=5.0)``
in its faster-alzantot recipe, Jia et al. 2019): a flip is only proposed when a causal LM
(``zoo:toyshop-lm`` or any transformers causal LM) still finds the edited text likely as a
description of the item, ``log P(edited | original) >= log P(original | original) - max_log_prob_drop``
(:meth:`~venomkit.generators.llm_text.LLMRewriter.rewrite_log_prob`, nats, summed over the
text's tokens). It is compared with the original text, not the previous edit, so it bounds the
whole edit: the saved text satisfies it.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch

from venomkit.attacks.base import Attack, AttackConfig, Forward
from venomkit.attacks.pgd import PromotionConfig
from venomkit.attacks.targets import Knowledge
from venomkit.config import check_int, check_number
from venomkit.encoders.base import TextEncoder
from venomkit.eval.text_edits import real_token_mask, real_tokens, silent_token_mask, text_edit_ratio, vocabulary_strings
from venomkit.progress import progress as progress_bar
from venomkit.victims.scoring import TargetScorer, TokenTexts

STOP_WORDS = frozenset(
    "a an the and or but of in on at to for from by with without as is are was were be been it its this that "
    "these those i you he she we they me my your our their his her not no so very just than then there here "
    "into over under about up down out off all any each some such only own same too can will".split()
)


@dataclass
class TextBudgetConfig:
    """Token-edit budget and constraints shared by the token and joint attacks.

    Attributes:
        max_edit_ratio: share of the text's tokens that may be substituted, in (0, 1].
        n_candidates: first-order candidates evaluated exactly per round.
        keep_stopwords: never edit stop-words.
        protect_category: never edit the words in ``Knowledge.protected_words`` (the
            runner passes each item's category).
        word_tokens_only: substitute only whole-word alphabetic tokens.
        allow_prompt_words: also insert the tokens the victim's own prompt reserves (a
            text encoder's ``reserved_token_ids``: the MLLM ranker's answer words ``yes`` /
            ``no`` and its role markers). Off by default: an item text that says "yes" answers
            the ranker's question for it -- prompt injection, another threat model than a
            seller's description edit.
        fluency_lm: a causal LM spec (``zoo:toyshop-lm``, a folder, a cached hub id) that judges
            each flip (module docstring); None (default): no fluency constraint.
        max_log_prob_drop: the most, in nats, the edited text's log-probability under
            ``fluency_lm`` may fall below the original's (TextAttack's ``max_log_prob_diff``).
    """

    max_edit_ratio: float = 0.25
    n_candidates: int = 8
    keep_stopwords: bool = True
    protect_category: bool = True
    word_tokens_only: bool = True
    allow_prompt_words: bool = False
    fluency_lm: str | None = None
    max_log_prob_drop: float = 5.0

    def check_text_budget(self) -> None:
        check_number("max_edit_ratio", self.max_edit_ratio, 0, 1, low_open=True)
        check_int("n_candidates", self.n_candidates)
        for name in ("keep_stopwords", "protect_category", "word_tokens_only", "allow_prompt_words"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.fluency_lm is not None and (not isinstance(self.fluency_lm, str) or not self.fluency_lm.strip()):
            raise ValueError(f"fluency_lm must be a language model spec (zoo:toyshop-lm, a folder, a hub id) or none, got {self.fluency_lm!r}")
        check_number("max_log_prob_drop", self.max_log_prob_drop, 0, hint="nats")

    def within_text_budget(self, text_encoder: TextEncoder, clean: str, adv: str) -> bool:
        """Whether ``adv`` edits at most ``max_edit_ratio`` of ``clean``'s real tokens (``text_edit_ratio``)."""
        return clean == adv or text_edit_ratio(text_encoder, clean, adv) <= self.max_edit_ratio + 1e-9


@dataclass
class HotFlipConfig(AttackConfig, PromotionConfig, TextBudgetConfig):
    """HotFlip on the promotion loss; every field is documented in its mixin."""

    def __post_init__(self) -> None:
        AttackConfig.__post_init__(self)
        self.check_promotion()
        self.check_text_budget()


class _Vocab:
    """Per-encoder token facts: lower-cased token strings, silent (special) tokens, whole-word tokens."""

    _cache: "weakref.WeakKeyDictionary[TextEncoder, _Vocab]" = weakref.WeakKeyDictionary()

    def __init__(self, encoder: TextEncoder):
        self.strings = [s.lower() for s in vocabulary_strings(encoder)]
        self.special = silent_token_mask(encoder)
        self.word = torch.tensor([s.isalpha() and len(s) >= 2 for s in self.strings])

    @classmethod
    def of(cls, encoder: TextEncoder) -> "_Vocab":
        if encoder not in cls._cache:
            cls._cache[encoder] = cls(encoder)
        return cls._cache[encoder]


def _protected_positions(encoder: TextEncoder, ids: torch.Tensor, words: Sequence[str]) -> torch.Tensor:
    """(L,) bool: positions belonging to any of ``words`` (matched as token subsequences)."""
    mask = torch.zeros(ids.shape[0], dtype=torch.bool)
    seq = ids.tolist()
    for word in words:
        for variant in {word, word.lower()}:
            sub = real_tokens(encoder, variant)
            if not sub:
                continue
            for start in range(len(seq) - len(sub) + 1):
                if seq[start : start + len(sub)] == sub:
                    mask[start : start + len(sub)] = True
    return mask


@functools.lru_cache(maxsize=2)
def fluency_judge(spec: str, device: str):
    """The fluency constraint's language model (:class:`~venomkit.generators.llm_text.LLMRewriter`), loaded once per spec and device."""
    from venomkit.generators.llm_text import LLMRewriter

    return LLMRewriter(spec, device=device)


class TextFlipper:
    """The HotFlip machinery on the B targets' token ids (shared by the token and joint attacks)."""

    def __init__(self, encoder: TextEncoder, texts: list[str], cfg: TextBudgetConfig, knowledge: Knowledge, device: torch.device):
        self.encoder, self.cfg, self.device = encoder, cfg, device
        self.vocab = _Vocab.of(encoder)
        self.clean_texts = list(texts)
        self.ids = encoder.tokenize(list(texts)).to(device)  # (B, L)
        real = real_token_mask(encoder, self.ids)  # no start, end or padding ids
        editable = real.clone()
        if cfg.word_tokens_only:
            editable &= self.vocab.word.to(device)[self.ids]
        if cfg.keep_stopwords:
            stop = torch.tensor([[self.vocab.strings[t] in STOP_WORDS for t in row] for row in self.ids.tolist()], device=device)
            editable &= ~stop
        if cfg.protect_category and knowledge.protected_words is not None:
            for b, words in enumerate(knowledge.protected_words):
                editable[b] &= ~_protected_positions(encoder, self.ids[b].cpu(), [str(w) for w in words]).to(device)
        self.editable = editable
        n_real = real.sum(1)
        self.budget = torch.floor(n_real.float() * cfg.max_edit_ratio + 1e-6).long()
        self.edits = torch.zeros_like(self.budget)
        self.edited = torch.zeros_like(editable)
        self.stopped = torch.zeros(len(texts), dtype=torch.bool, device=device)
        self.texts = list(texts)
        candidates = ~self.vocab.special
        if cfg.word_tokens_only:
            candidates &= self.vocab.word
        reserved = getattr(encoder, "reserved_token_ids", ())
        if not cfg.allow_prompt_words and len(reserved):
            candidates[torch.as_tensor(list(reserved), dtype=torch.long)] = False
        self.candidate_ids = torch.nonzero(candidates).view(-1).to(device)
        self.judge = fluency_judge(cfg.fluency_lm, str(device)) if cfg.fluency_lm is not None else None
        self.clean_log_prob = self.judge.rewrite_log_prob(self.clean_texts, self.clean_texts) if self.judge is not None else None

    def fluent(self, row: int, texts: list[str]) -> list[bool]:
        """Whether each edit of ``row``'s text keeps the fluency constraint (always, without ``fluency_lm``)."""
        if self.judge is None or not texts:
            return [True] * len(texts)
        log_prob = self.judge.rewrite_log_prob([self.clean_texts[row]] * len(texts), texts)
        return (log_prob >= self.clean_log_prob[row] - self.cfg.max_log_prob_drop - 1e-9).tolist()

    def active(self) -> torch.Tensor:
        return (self.edits < self.budget) & ~self.stopped & (self.editable & ~self.edited).any(1)

    def embeddings(self) -> torch.Tensor:
        return self.encoder.token_embedding(self.ids)

    def propose(self, grad: torch.Tensor) -> list[list[tuple[int, int, str]]]:
        """Per target, up to n_candidates (position, token, decoded text) flips ranked first-order.

        With ``fluency_lm`` up to 4 x n_candidates flips that survive the round trip are judged
        together and the first n_candidates fluent ones kept."""
        wanted = self.cfg.n_candidates * (4 if self.judge is not None else 1)
        table = self.encoder.token_embedding.weight.detach()
        cand_emb = table[self.candidate_ids]  # (Vc, d)
        out: list[list[tuple[int, int, str]]] = []
        active = self.active().tolist()
        for b in range(self.ids.shape[0]):
            found: list[tuple[int, int, str]] = []
            if active[b]:
                pos = torch.nonzero(self.editable[b] & ~self.edited[b]).view(-1)
                g = grad[b, pos]  # (P, d)
                gain = g @ cand_emb.T - (g * table[self.ids[b, pos]]).sum(1, keepdim=True)  # (P, Vc)
                same = self.candidate_ids.view(1, -1) == self.ids[b, pos].view(-1, 1)
                gain = gain.masked_fill(same, float("inf"))
                flat = gain.flatten()
                order = flat.topk(min(flat.numel(), wanted * 8), largest=False).indices
                for o in order.tolist():
                    if flat[o] >= 0 or not math.isfinite(flat[o].item()):
                        break
                    p = int(pos[o // gain.shape[1]])
                    v = int(self.candidate_ids[o % gain.shape[1]])
                    text = self.flipped_text(b, p, v)
                    if text is not None:
                        found.append((p, v, text))
                    if len(found) >= wanted:
                        break
                found = [f for f, ok in zip(found, self.fluent(b, [f[2] for f in found])) if ok][: self.cfg.n_candidates]
            out.append(found)
        return out

    def flipped_text(self, row: int, position: int, token: int) -> str | None:
        """The text of ``row`` with the token at ``position`` replaced by ``token``, or None when
        decoding and re-tokenising would not give back exactly those tokens (the victim must see
        what was optimised)."""
        new = self.ids[row].clone()
        new[position] = token
        text = self.encoder.decode(new.view(1, -1).cpu())[0]
        return text if torch.equal(self.encoder.tokenize([text])[0].to(self.device), new) else None

    def apply(self, row: int, position: int, token: int, text: str) -> None:
        """Make the flip ``(position, token)`` of ``row``, whose decoded text is ``text``."""
        self.ids[row, position] = token
        self.edited[row, position] = True
        self.edits[row] += 1
        self.texts[row] = text

    def step(self, grad: torch.Tensor, loss_of_texts, current_loss: torch.Tensor) -> torch.Tensor:
        """One HotFlip round: propose, evaluate exactly, keep improvements; returns the new losses (B,)."""
        proposals = self.propose(grad)
        width = max((len(p) for p in proposals), default=0)
        if width == 0:
            self.stopped[:] = True
            return current_loss
        best_loss = current_loss.clone()
        best_choice: list[tuple[int, int, str] | None] = [None] * len(proposals)
        for c in range(width):
            texts_c = [p[c][2] if c < len(p) else self.texts[b] for b, p in enumerate(proposals)]
            with torch.no_grad():
                loss_c = loss_of_texts(texts_c)
            for b, p in enumerate(proposals):
                if c < len(p) and loss_c[b] < best_loss[b] - 1e-7:
                    best_loss[b] = loss_c[b]
                    best_choice[b] = p[c]
        for b, choice in enumerate(best_choice):
            if choice is None:
                # No proposal lowers the loss (or none survives the round trip): this target is done.
                self.stopped[b] = True
                continue
            self.apply(b, *choice)
        return best_loss


class TokenHotFlip(Attack):
    """HotFlip token substitution on the targets' descriptions (white-box, text encoder's vocab)."""

    name: ClassVar[str] = "token_hotflip"
    config_class: ClassVar[type[AttackConfig]] = HotFlipConfig
    perturbs: ClassVar[tuple[str, ...]] = ("text",)

    def text_within_budget(self, victim: TargetScorer, clean: str, adv: str) -> bool:
        return self.config.within_text_budget(victim.text_tokens, clean, adv)

    def perturb(self, model, batch):
        images, texts, item_index, users, knowledge = batch.images, batch.texts, batch.item_index, batch.users, batch.knowledge
        enc = model.text_tokens  # the victim's text encoder, or the MLLM ranker's candidate-text tokens
        if "text" not in model.modalities or enc is None:
            raise ValueError(f"{self.name} edits texts: the victim reads no text")
        cfg: HotFlipConfig = self.config  # type: ignore[assignment]
        objective = cfg.promotion_objective().prepare(model, item_index, users, knowledge)
        fixed = self.fixed_features(model, images, texts)
        flipper = TextFlipper(enc, list(texts), cfg, knowledge, item_index.device)

        def loss_of_texts(batch_texts: list[str]) -> torch.Tensor:
            return objective(Forward(model, item_index, fixed, images=images, texts=batch_texts))

        with torch.no_grad():
            first = loss_of_texts(flipper.texts)
        loss = first.clone()
        # Each round flips at most one token per target: the largest budget bounds the rounds.
        rounds = progress_bar(total=int(flipper.budget.max()), desc=f"{self.name} rounds ({item_index.numel()} targets)", unit="round", leave=False)
        while bool(flipper.active().any()):
            emb = flipper.embeddings().detach().requires_grad_(True)
            tokens = TokenTexts(flipper.ids, emb, list(flipper.texts))
            (grad,) = torch.autograd.grad(objective(Forward(model, item_index, fixed, images=images, texts=tokens)).sum(), emb)
            loss = flipper.step(grad, loss_of_texts, loss)
            rounds.update(1)
        rounds.close()
        out_texts = [t if int(n) > 0 else c for t, c, n in zip(flipper.texts, texts, flipper.edits)]
        return None, out_texts, {"objective_before": first, "objective_after": loss, "edits": flipper.edits.float()}
