"""open_clip encoders: equality with the library, gradients, offline spec handling."""

from __future__ import annotations

import time

import pytest
import torch

from venomkit.encoders.loading import load_encoders, load_image_encoder, load_text_encoder
from venomkit.encoders.openclip import (
    OpenClipImageEncoder,
    OpenClipTextEncoder,
    WeightsNotAvailableError,
    parse_open_clip_spec,
)

TEXTS = [
    "Plain red ceramic mug by Lumen. A handy cup made of glazed ceramic.",
    "a photo of a striped blue cotton t-shirt",
    "x",
]


@pytest.fixture(scope="module")
def encoders(tiny_clip_dir):
    return load_encoders(f"local-dir:{tiny_clip_dir}")


def test_forward_embeddings_equals_encode_text(encoders):
    _, text = encoders
    assert isinstance(text, OpenClipTextEncoder)
    tokens = text.tokenize(TEXTS)
    assert tokens.shape == (3, 77) and tokens.dtype == torch.int64
    with torch.no_grad():
        ours = text.forward_embeddings(text.token_embedding(tokens), tokens)
        library = text.model.encode_text(tokens)
    assert torch.allclose(ours, library, atol=1e-6, rtol=1e-5)
    assert torch.allclose(text(TEXTS), library, atol=1e-6, rtol=1e-5)
    assert ours.shape == (3, text.output_dim)


def test_text_cut_at_longest_sequence_is_unchanged(encoders):
    # the causal mask makes everything after EOT irrelevant: a shorter L gives the same features
    _, text = encoders
    tokens = text.tokenize(TEXTS)
    length = int((tokens != 0).sum(1).max())
    with torch.no_grad():
        full = text.forward_tokens(tokens)
        cut = text.forward_tokens(tokens[:, :length])
    assert torch.allclose(full, cut, atol=1e-5)


def test_gradient_reaches_token_embeddings(encoders):
    _, text = encoders
    tokens = text.tokenize(TEXTS[:2])
    embeddings = text.token_embedding(tokens).detach().requires_grad_(True)
    text.forward_embeddings(embeddings, tokens).sum().backward()
    assert embeddings.grad is not None and embeddings.grad[:, 1].abs().sum() > 0
    assert all(not p.requires_grad for p in text.parameters())


def test_decode_round_trip(encoders):
    _, text = encoders
    decoded = text.decode(text.tokenize(["a red mug made of glass", "striped hat"]))
    assert decoded == ["a red mug made of glass", "striped hat"]
    assert text.decode(text.tokenize(["blue lamp"])[0]) == ["blue lamp"]


def test_image_encoder_equals_encode_image_at_native_size(encoders):
    image, text = encoders
    assert isinstance(image, OpenClipImageEncoder)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = text.model.encode_image(image.preprocess.normalize(x))
        assert torch.allclose(image(x), expected, atol=1e-6)
    assert image.output_dim == 64 == text.output_dim


def test_gradients_reach_pixels_through_clip(encoders, product_images):
    image, _ = encoders
    x = product_images.clone().requires_grad_(True)
    image(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not image.training and all(not p.requires_grad for p in image.parameters())


def test_encoders_share_one_model(encoders):
    image, text = encoders
    assert image.visual is text.model.visual


def test_folder_path_and_local_dir_are_the_same_model(tiny_clip_dir, encoders):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = load_image_encoder(str(tiny_clip_dir))(x)
        b = encoders[0](x)
    assert torch.allclose(a, b)


def test_zoo_spec_resolves_through_env(tiny_clip_dir, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(tiny_clip_dir.parent))
    text = load_text_encoder(f"zoo:{tiny_clip_dir.name}")
    assert text.spec == f"zoo:{tiny_clip_dir.name}" and text(["a mug"]).shape == (1, 64)


def test_uncached_pretrained_tag_fails_fast_with_one_sentence():
    started = time.time()
    with pytest.raises(WeightsNotAvailableError) as info:
        load_image_encoder("ViT-B-32/openai")
    assert time.time() - started < 10
    message = str(info.value)
    assert "'ViT-B-32/openai'" in message and "local-dir:" in message and message.count(". ") == 0


def test_uncached_hub_id_fails_with_the_id():
    with pytest.raises(WeightsNotAvailableError, match="hf-hub:someone/not-cached"):
        load_text_encoder("hf-hub:someone/not-cached")


def test_unknown_tag_lists_known_tags():
    with pytest.raises(ValueError, match="known: openai"):
        parse_open_clip_spec("ViT-B-32/no-such-tag")


def test_local_dir_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        load_image_encoder(f"local-dir:{tmp_path}")


def test_folder_without_weights_is_an_error_not_a_random_model(tmp_path, tiny_clip_dir):
    (tmp_path / "open_clip_config.json").write_text((tiny_clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_image_encoder(str(tmp_path))


def test_weights_file_for_builtin_arch(tiny_clip_dir):
    # 'ARCH/PATH' goes through open_clip's own pretrained=file path
    name, pretrained, _ = parse_open_clip_spec(f"RN50/{tiny_clip_dir / 'open_clip_model.safetensors'}")
    assert name == "RN50" and pretrained.endswith("open_clip_model.safetensors")
