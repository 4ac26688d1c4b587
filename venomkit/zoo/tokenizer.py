"""A small byte-level BPE tokenizer trained on a catalog's texts, for the zoo's LM and VLM.

No pretrained tokenizer can be downloaded here, so ``toyshop-lm`` and ``toyshop-vlm`` share a
tokenizer trained with the ``tokenizers`` library (byte-level BPE, as GPT-2 and Llama 3 use)
on the catalog's descriptions and titles plus the prompt templates the models are trained on.
It is written as a transformers tokenizer folder (``tokenizer.json`` +
``tokenizer_config.json``) and read back with ``AutoTokenizer.from_pretrained(folder)``, the
same call that reads a hub tokenizer: in transformers 5.x, tokenizer classes built from file
arguments can silently ignore the files, so folders are the only supported route.

Special tokens: ``<pad>`` (id 0), ``<s>`` (bos, prepended by the post-processor), ``</s>``
(eos) and ``<image>`` (the LLaVA image placeholder, exposed as ``tokenizer.image_token``).
Byte-level BPE needs no ``<unk>``: every string encodes, and decoding round-trips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN)


def train_tokenizer(
    corpus: Iterable[str],
    vocab_size: int = 3000,
    min_frequency: int = 2,
    model_max_length: int = 512,
    out_dir: str | Path | None = None,
):
    """Train a byte-level BPE tokenizer on ``corpus`` and wrap it as a transformers tokenizer.

    Args:
        corpus: training strings (descriptions, titles, rendered prompts); order matters only
            for tie-breaking, so pass it in a fixed order for a deterministic vocabulary.
        vocab_size: target size including the 256 byte symbols and the special tokens
            (must be in [300, 65536]).
        min_frequency: a merge needs at least this many occurrences.
        model_max_length: the longest sequence the models accept (tokens).
        out_dir: when given, the tokenizer folder is written there with ``save_pretrained``.

    Returns:
        a ``PreTrainedTokenizerFast`` (``TokenizersBackend`` in transformers 5.x) with
        bos/eos/pad set, ``<image>`` as an extra special token and bos prepended on encode.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if not 300 <= vocab_size <= 65536:
        raise ValueError(f"vocab_size must be in [300, 65536], got {vocab_size}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    texts = [t for t in corpus if t]
    if not texts:
        raise ValueError("corpus is empty: the tokenizer needs at least one non-empty string")

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # The full byte alphabet keeps every string encodable, even characters unseen here.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    bos_id = backend.token_to_id(BOS_TOKEN)
    # Llama-style: the bos token starts every encoded sequence (add_special_tokens=True).
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=model_max_length,
        padding_side="right",
    )
    if out_dir is not None:
        save_tokenizer(tokenizer, out_dir)
    return tokenizer


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    """Write ``tokenizer`` as a transformers folder and return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return out


def load_tokenizer(folder: str | Path):
    """Read a tokenizer folder with ``AutoTokenizer.from_pretrained`` (the hub-id code path)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a tokenizer folder (no tokenizer_config.json)")
    return AutoTokenizer.from_pretrained(str(folder))


def catalog_corpus(texts: Sequence[str], titles: Sequence[str] = (), prompts: Sequence[str] = ()) -> list[str]:
    """The tokenizer's training corpus: item texts, titles and rendered prompt templates.

    Titles are also joined the way prompts list them (``"; "``) so separators merge well;
    prompts are repeated so template words become single tokens even in a small catalog.
    """
    corpus = list(texts) + list(titles)
    titles = list(titles)
    for start in range(0, len(titles), 5):
        corpus.append("; ".join(titles[start : start + 5]))
    corpus.extend(list(prompts) * 20)
    return corpus


def zoo_corpus(dataset, n_renderings: int = 4, seed: int = 0) -> list[str]:
    """The corpus of the zoo's shared tokenizer (``toyshop-lm`` and ``toyshop-vlm`` use the same).

    The catalog's texts and titles, ``n_renderings`` extra descriptions per item when the
    catalog has toyshop's attributes (so wording the catalog happens not to use still gets
    whole-word tokens), and rendered rewrite and ranking prompts with both answers.
    """
    import numpy as np

    from venomkit.generators.llm_text import build_rewrite_prompt
    from venomkit.victims.mllm.ranker import NO, YES, build_ranking_prompt
    from venomkit.zoo.item_descriptions import describe_item, item_attributes

    texts = list(dataset.catalog.texts)
    titles = [str(t) for t in dataset.catalog.attributes.get("title", [])]
    try:
        items = item_attributes(dataset)
    except ValueError:
        items = []
    rng = np.random.default_rng(seed)
    for _ in range(n_renderings):
        texts.extend(describe_item(a, rng) for a in items)
    short = titles or [t[:40] for t in texts]
    prompts = [build_rewrite_prompt(t) for t in texts[:50]] + [build_rewrite_prompt(texts[0], texts[1:3])]
    for k in range(min(50, len(texts))):
        history = [short[(k + j) % len(short)] for j in range(1, 6)]
        answer = YES if k % 2 == 0 else NO
        prompts.append(build_ranking_prompt(history, texts[k], IMAGE_TOKEN) + answer)
    return catalog_corpus(texts, titles, prompts)


def train_zoo_tokenizer(dataset, vocab_size: int = 2048, model_max_length: int = 512, seed: int = 0):
    """The zoo tokenizer for ``dataset``: :func:`train_tokenizer` on :func:`zoo_corpus`."""
    return train_tokenizer(zoo_corpus(dataset, seed=seed), vocab_size=vocab_size, model_max_length=model_max_length)
