"""User-prefix KV-cache reuse for the MLLM ranker (VenomRec, arXiv 2602.06409: ranking one user's
99 sampled negatives + the target).

Every prompt of one user's candidate list starts with the same prefix
``USER: history: <titles> candidate: `` and differs only in the suffix
``<image> <text> Would the user like it? ASSISTANT:``. A causal decoder's keys and values at
the prefix positions depend on the prefix alone, so they are computed once (a (1, P) forward,
:meth:`PrefixCache.build`) and every batch of B suffixes runs on top of them
(:meth:`PrefixCache.for_batch`: a fresh ``DynamicCache`` whose layers hold the prefix's
(1, heads, P, head_dim) keys/values expanded to B rows). The suffix forward appends its own
keys/values to that per-batch cache; the stored prefix is never modified, so one
:class:`PrefixCache` serves any number of batches.

Exactness: with prompt ids defined as prefix ids + suffix ids (the ranker tokenises both
halves separately in the plain path too), right-padded suffixes, an attention mask of
ones over the prefix followed by the suffix mask, and the suffix's position ids (Llama:
``P + arange``; Qwen2-VL: the suffix slice of the 3-D RoPE indices of the whole sequence), the
answer-position logits equal those of the plain forward up to float rounding (measured in
float32: max |difference| ~1e-6, ``tests/victims/mllm/test_kv_cache.py``).

transformers 5.24 names the KV-cache argument ``cache`` (``past_key_values`` is a deprecated
alias until 5.40); :func:`cache_argument` reads the name from the model's signature.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from venomkit.config import check_int


def cache_argument(core: nn.Module) -> str:
    """The name of the KV-cache argument of ``core.forward``: ``cache`` (transformers >= 5.24) or ``past_key_values``."""
    params = inspect.signature(core.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise TypeError(f"{type(core).__name__}.forward takes neither 'cache' nor 'past_key_values'")


class PrefixCache:
    """Keys and values of one prompt prefix, shared by any number of suffix batches.

    Args:
        layers: per decoder layer, (keys, values) of shape (1, kv_heads, P, head_dim).
        length: P, the prefix length in tokens.
        config: the model config (``DynamicCache(config=...)`` reads the layer types from it).
    """

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], length: int, config) -> None:
        if not layers:
            raise ValueError("PrefixCache needs the keys/values of at least one layer")
        if any(k.shape[0] != 1 or k.shape[-2] != length for k, _ in layers):
            raise ValueError(f"PrefixCache layers must be (1, heads, {length}, head_dim), got {tuple(layers[0][0].shape)}")
        self.layers = layers
        self.length = int(length)
        self.config = config

    @classmethod
    def build(cls, core: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> PrefixCache:
        """Run the (1, P) prefix ``input_ids`` through ``core`` (the model without its LM head) once.

        ``position_ids``: the prefix's slice of the whole sequence's positions (None: ``arange``).
        Differentiable when called with gradients enabled (the ranker calls it under ``no_grad``).
        """
        from transformers import DynamicCache

        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(f"a prefix is one row of token ids, (1, P), got shape {tuple(input_ids.shape)}")
        config = core.config
        cache = DynamicCache(config=config)
        core(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=position_ids,
            use_cache=True,
            **{cache_argument(core): cache},
        )
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        return cls(layers, input_ids.shape[1], config)

    def for_batch(self, batch: int):
        """A new ``DynamicCache`` holding the prefix for ``batch`` rows (the stored prefix is untouched)."""
        from transformers import DynamicCache

        check_int("batch", batch)
        data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.layers]
        return DynamicCache(data, config=self.config)
