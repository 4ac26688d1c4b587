"""The zoo tokenizer: trained here, saved as a transformers folder, read back by AutoTokenizer."""

from __future__ import annotations

import json

import pytest

from venomkit.zoo.tokenizer import (
    IMAGE_TOKEN,
    catalog_corpus,
    load_tokenizer,
    train_tokenizer,
)

TEXTS = [
    "The red striped cotton t-shirt you wanted, by Northwind. Easy to care for.",
    "Plain blue ceramic mug for the morning coffee. A great gift.",
    "Meet the green wool hat from Lumen, with a classic band.",
]
TITLES = ["Red striped cotton t-shirt", "Plain blue ceramic mug", "Plain green wool hat"]
PROMPTS = [
    "USER: history: Plain blue ceramic mug candidate: <image> a hat Would the user like it? ASSISTANT: yes",
    "USER: history: Plain green wool hat candidate: <image> a mug Would the user like it? ASSISTANT: no",
    "Rewrite: a red hat\nRewrite: a hat in red",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return catalog_corpus(TEXTS * 10, TITLES * 10, PROMPTS)


def test_folder_round_trip_keeps_ids_and_special_tokens(tmp_path, corpus):
    tok = train_tokenizer(corpus, vocab_size=400, out_dir=tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    sample = "USER: <image> Plain blue ceramic mug, héllo 😀\nRewrite: x"
    assert loaded(sample).input_ids == tok(sample).input_ids
    ids = loaded(sample).input_ids
    assert ids[0] == loaded.bos_token_id
    assert loaded.decode(ids, skip_special_tokens=False) == loaded.bos_token + sample
    assert (loaded.pad_token, loaded.bos_token, loaded.eos_token) == ("<pad>", "<s>", "</s>")
    assert loaded.pad_token_id == 0 and len({loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id}) == 3
    assert loaded.image_token == IMAGE_TOKEN
    image_ids = loaded(IMAGE_TOKEN, add_special_tokens=False).input_ids
    assert image_ids == [loaded.convert_tokens_to_ids(IMAGE_TOKEN)]
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<s>"


def test_answers_and_template_words_are_single_tokens(corpus):
    tok = train_tokenizer(corpus, vocab_size=600)
    for word in (" yes", " no", "Rewrite", " history"):
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word


def test_training_is_deterministic(corpus):
    a = train_tokenizer(corpus, vocab_size=400)
    b = train_tokenizer(corpus, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()


def test_bad_arguments_raise(tmp_path, corpus):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(corpus, vocab_size=10)
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer(["", ""])
    with pytest.raises(FileNotFoundError, match="not a tokenizer folder"):
        load_tokenizer(tmp_path)
