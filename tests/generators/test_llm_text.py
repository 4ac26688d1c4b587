"""LLMRewriter: loads a causal LM by folder / zoo name / hub id and samples seeded rewrites."""

from __future__ import annotations

import pytest
import torch

from venomkit.generators.llm_text import LLMRewriter, build_rewrite_prompt
from venomkit.models.resolve import resolve_model

TEXTS = [
    "Plain red cotton t-shirt by Northwind. A classic tee for warm weekends.",
    "Blue striped ceramic mug | Lumen. Glossy ceramic cup for the morning coffee.",
    "Green polka-dot wool hat from Kestrel, with a classic band.",
]


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    """A tiny random Llama + zoo-style tokenizer written with save_pretrained."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from venomkit.zoo.tokenizer import catalog_corpus, train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-lm")
    tok = train_tokenizer(catalog_corpus(TEXTS * 5, prompts=[build_rewrite_prompt(t) for t in TEXTS]), vocab_size=400)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_prompt_format():
    assert build_rewrite_prompt("a red\nhat") == "Rewrite: a red hat\nRewrite:"
    prompt = build_rewrite_prompt("x", ["pop one", "pop two"])
    assert prompt.splitlines() == ["Example: pop one", "Example: pop two", "Rewrite: x", "Rewrite:"]


def test_returns_n_strings_per_text_and_is_seeded(lm_folder):
    rewriter = LLMRewriter(lm_folder, max_new_tokens=12, batch_size=4)
    out = rewriter.rewrite(TEXTS, n=3, temperature=1.0, seed=7)
    assert len(out) == len(TEXTS) and all(len(r) == 3 for r in out)
    assert all(isinstance(s, str) and "\n" not in s for r in out for s in r)
    assert rewriter.rewrite(TEXTS, n=3, temperature=1.0, seed=7) == out
    assert rewriter.rewrite(TEXTS, n=3, temperature=1.0, seed=8) != out
    # A random model at temperature 1 does not repeat itself: the n samples differ.
    assert len(set(out[0])) > 1


def test_rewrites_do_not_depend_on_the_batch(lm_folder):
    batched = LLMRewriter(lm_folder, max_new_tokens=10, batch_size=8).rewrite(TEXTS, n=2, seed=3, style_examples=TEXTS[:1])
    single = LLMRewriter(lm_folder, max_new_tokens=10, batch_size=1)
    alone = [single.rewrite([t], n=2, seed=3, style_examples=TEXTS[:1])[0] for t in TEXTS]
    assert batched == alone


def test_rewrite_log_prob_is_the_sum_of_next_token_log_probs(lm_folder):
    """Against a naive reference: one unpadded forward per target token, its log-softmax summed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from venomkit.generators.llm_text import rewrite_tokens

    originals, rewrites = [TEXTS[0], TEXTS[1], TEXTS[1]], [TEXTS[0], TEXTS[2], "mug"]
    batched = LLMRewriter(lm_folder, batch_size=8).rewrite_log_prob(originals, rewrites)
    alone = LLMRewriter(lm_folder, batch_size=1).rewrite_log_prob(originals, rewrites)
    tok, model = AutoTokenizer.from_pretrained(lm_folder), AutoModelForCausalLM.from_pretrained(lm_folder)
    naive = []
    with torch.no_grad():
        for original, rewrite in zip(originals, rewrites):
            ids, labels = rewrite_tokens(tok, build_rewrite_prompt(original), rewrite)
            total = 0.0
            for j, label in enumerate(labels):
                if label != -100:
                    logits = model(input_ids=torch.tensor([ids[:j]])).logits[0, -1].double()
                    total += float(torch.log_softmax(logits, -1)[label])
            naive.append(total)
    assert batched.dtype == torch.float64 and batched.shape == (3,) and (batched < 0).all()
    assert torch.allclose(batched, torch.tensor(naive, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(batched, alone, atol=1e-6)  # right padding: a row scores as it does alone
    with pytest.raises(ValueError, match="2 originals for 1 rewrites"):
        LLMRewriter(lm_folder).rewrite_log_prob(TEXTS[:2], TEXTS[:1])


def test_bad_arguments_and_names(lm_folder, tmp_path):
    rewriter = LLMRewriter(lm_folder, max_new_tokens=4)
    with pytest.raises(ValueError, match="n must be"):
        rewriter.rewrite(TEXTS, n=0)
    with pytest.raises(ValueError, match="temperature"):
        rewriter.rewrite(TEXTS, temperature=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        LLMRewriter(lm_folder, max_new_tokens=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LLMRewriter(str(tmp_path / "missing" / "model"))
    with pytest.raises(OSError, match="'nobody/not-a-cached-model' is not a local folder and is not in the Hugging Face cache"):
        LLMRewriter("nobody/not-a-cached-model")
    assert resolve_model(str(lm_folder)) == lm_folder


def test_zoo_names_resolve_through_the_zoo(lm_folder, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(lm_folder.parent))
    assert resolve_model(f"zoo:{lm_folder.name}") == lm_folder
    out = LLMRewriter(f"zoo:{lm_folder.name}", max_new_tokens=4).rewrite(TEXTS[:1], n=1)
    assert len(out) == 1 and len(out[0]) == 1


def test_shipped_zoo_lm_keeps_category_and_colour():
    from venomkit.zoo import available

    if "toyshop-lm" not in available():
        pytest.skip("zoo:toyshop-lm is not built (venomkit zoo build --only toyshop-lm)")
    text = "Plain blue ceramic mug by Lumen. A glossy ceramic cup for the morning coffee, in one solid blue tone."
    out = LLMRewriter("zoo:toyshop-lm", max_new_tokens=80).rewrite([text], n=4, temperature=0.7, seed=0)[0]
    assert len(out) == 4
    # The zoo build measures >= 80% on held-out items; a clean plain text should keep both words at least 2 of 4 times.
    assert sum("mug" in s.lower() and "blue" in s.lower() for s in out) >= 2, out
