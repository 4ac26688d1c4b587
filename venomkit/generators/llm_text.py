"""LLM rewriting of item descriptions: N sampled rewrites per text from any causal LM.

The black-box text attack of issue 4 (TextSimu / RecTextAttack style) asks a language model
for N rewrites of a target item's description, optionally imitating the descriptions of
popular items, and keeps the rewrite that most raises the victim's score. This module is the
generator half: :class:`LLMRewriter` loads a causal LM by name and samples rewrites; the
selection lives in the attack.

Prompt (the format ``zoo:toyshop-lm`` is trained on, and a plain few-shot prompt for any
other LM)::

    Example: <style example 1>
    Example: <style example 2>
    Rewrite: <original description>
    Rewrite:

Sampling is Gumbel-max over temperature-scaled logits with one seeded ``torch.Generator``
per (text, sample) pair, so the rewrites of a text depend only on the text, its style
examples, the sample index and the seed -- never on which other texts share the batch.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from venomkit.config import check_int, check_number
from venomkit.models.freeze import freeze
from venomkit.models.resolve import load_pretrained
from venomkit.progress import progress as progress_bar

DEFAULT_LM = "zoo:toyshop-lm"


def build_rewrite_prompt(text: str, style_examples: Sequence[str] | None = None) -> str:
    """The rewrite prompt: optional ``Example:`` lines, then ``Rewrite: <text>\\nRewrite:``."""
    lines = [f"Example: {_one_line(s)}" for s in (style_examples or [])]
    lines.append(f"Rewrite: {_one_line(text)}")
    lines.append("Rewrite:")
    return "\n".join(lines)


def rewrite_tokens(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) of ``prompt`` followed by `` target`` and eos; labels -100 on the prompt.

    The one tokenisation of a rewrite pair: ``zoo:toyshop-lm`` is trained on it (the loss on the
    target and eos only) and :meth:`LLMRewriter.rewrite_log_prob` scores with it.
    """
    prompt_ids = tokenizer(prompt).input_ids
    target_ids = tokenizer(" " + target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


def _one_line(text: str) -> str:
    # A newline inside a description would end the prompt line early.
    return " ".join(str(text).split())


def _cache_argument(model: torch.nn.Module) -> str:
    """The name under which ``model.forward`` takes its KV cache: ``cache`` in transformers >= 5.24
    (where ``past_key_values`` is deprecated), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _row_seed(seed: int, prompt: str, sample: int) -> int:
    return (zlib.crc32(prompt.encode("utf-8")) * 1_000_003 + seed * 7919 + sample) % (2**63 - 1)


class LLMRewriter:
    """Sample N rewrites of item descriptions from a causal LM loaded by name.

    Args:
        model: ``zoo:NAME`` (default ``zoo:toyshop-lm``), a transformers model folder, or a
            cached hub id (e.g. ``Qwen/Qwen2.5-0.5B-Instruct``), found by
            ``venomkit.models.resolve.resolve_model``; all go through
            ``AutoModelForCausalLM.from_pretrained``. The model is frozen.
        device: torch device for the model.
        dtype: weights dtype (float32 on CPU by default: half precision is slow there).
        max_new_tokens: longest rewrite, in tokens.
        batch_size: prompts decoded together.
        top_k: sample among the ``top_k`` most likely tokens (0 = the full vocabulary).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_LM,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_new_tokens: int = 64,
        batch_size: int = 32,
        top_k: int = 0,
    ) -> None:
        check_int("max_new_tokens", max_new_tokens)
        check_int("batch_size", batch_size)
        check_int("top_k", top_k, 0)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = str(model)
        self.device = torch.device(device)
        dtype = dtype or (torch.float32 if self.device.type == "cpu" else torch.float16)
        self.tokenizer = load_pretrained(AutoTokenizer, model, what="language model")
        self.model = freeze(load_pretrained(AutoModelForCausalLM, model, what="language model", dtype=dtype).to(self.device))
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.top_k = top_k
        self._stop_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> set[int]:
        stop = set()
        for attr in ("eos_token_id",):
            value = getattr(self.tokenizer, attr, None)
            if value is not None:
                stop.add(int(value))
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(config_eos, int):
            stop.add(config_eos)
        elif config_eos:
            stop.update(int(e) for e in config_eos)
        return stop

    def rewrite(
        self,
        texts: Sequence[str],
        n: int = 8,
        style_examples: Sequence[str] | None = None,
        temperature: float = 0.8,
        seed: int = 0,
    ) -> list[list[str]]:
        """``n`` sampled rewrites of each text: a list (per text) of ``n`` strings.

        ``style_examples`` (e.g. popular items' descriptions) are put in the prompt for the
        model to imitate; the same examples are used for every text. Deterministic given
        (text, style examples, n, temperature, seed), whatever the batch composition.
        """
        check_int("n", n)
        check_number("temperature", temperature, 0, low_open=True)
        texts = [str(t) for t in texts]
        prompts = [build_rewrite_prompt(t, style_examples) for t in texts]
        rows = [(p, s) for p in prompts for s in range(n)]
        outputs: list[str] = []
        for start in progress_bar(range(0, len(rows), self.batch_size), desc="rewrite", unit="batch", leave=False):
            outputs.extend(self._sample_batch(rows[start : start + self.batch_size], temperature, seed))
        return [outputs[i * n : (i + 1) * n] for i in range(len(texts))]

    @torch.no_grad()
    def rewrite_log_prob(self, originals: Sequence[str], rewrites: Sequence[str]) -> torch.Tensor:
        """(N,) float64 log-probability, in nats, of each ``rewrites[i]`` (and eos) as a rewrite of ``originals[i]``.

        ``log P(rewrite | build_rewrite_prompt(original))`` summed over the rewrite's tokens: the
        objective ``zoo:toyshop-lm`` is trained on, so it measures how likely the LM finds the text
        as a description of the item the original describes (fluent and on the same item). The
        fluency constraint of the token attacks (``TextBudgetConfig.fluency_lm``) compares it with
        the original's own value. Batch-independent: rows are right-padded, each scored alone.
        """
        if len(originals) != len(rewrites):
            raise ValueError(f"{len(originals)} originals for {len(rewrites)} rewrites")
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self._stop_ids), 0)
        rows = [rewrite_tokens(tok, build_rewrite_prompt(str(o)), _one_line(str(r))) for o, r in zip(originals, rewrites)]
        out = torch.zeros(len(rows), dtype=torch.float64)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (ids, lab) in enumerate(chunk):
                input_ids[r, : len(ids)], labels[r, : len(lab)], mask[r, : len(ids)] = torch.tensor(ids), torch.tensor(lab), 1
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits.double().cpu()
            log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
            target = labels[:, 1:]
            picked = log_probs.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            out[start : start + len(chunk)] = (picked * (target != -100)).sum(1)
        return out

    @torch.no_grad()
    def _sample_batch(self, rows: list[tuple[str, int]], temperature: float, seed: int) -> list[str]:
        tok = self.tokenizer
        encoded = [tok(p).input_ids for p, _ in rows]
        width = max(len(e) for e in encoded)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self._stop_ids), 0)
        # Left padding with explicit position ids: each row sees the positions it would alone.
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, ids in enumerate(encoded):
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            mask[r, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generators = [torch.Generator().manual_seed(_row_seed(seed, p, s)) for p, s in rows]
        vocab = self.model.get_output_embeddings().weight.shape[0]
        done = torch.zeros(len(rows), dtype=torch.bool)
        new_tokens: list[list[int]] = [[] for _ in rows]
        past = None
        cache_argument = _cache_argument(self.model)
        step_ids, step_pos = input_ids, positions
        for _ in range(self.max_new_tokens):
            out = self.model(
                input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True, **{cache_argument: past}
            )
            past = getattr(out, cache_argument)
            logits = out.logits[:, -1, :vocab].float().cpu() / temperature
            if self.top_k:
                kth = torch.topk(logits, min(self.top_k, vocab), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            # Gumbel-max sampling with one generator per row: batch-independent and seeded.
            uniform = torch.stack([torch.rand(vocab, generator=g) for g in generators])
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
            next_ids = (logits + gumbel).argmax(-1)
            for r in range(len(rows)):
                if done[r]:
                    continue
                token = int(next_ids[r])
                if token in self._stop_ids:
                    done[r] = True
                else:
                    new_tokens[r].append(token)
                    if "\n" in tok.decode([token]):
                        done[r] = True
            if bool(done.all()):
                break
            step_ids = next_ids.view(-1, 1).to(self.device)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_pos = step_pos[:, -1:] + 1
        return [tok.decode(ids, skip_special_tokens=True).split("\n")[0].strip() for ids in new_tokens]
