"""``venomkit.models.resolve``: one resolver from a model spec to a local folder, never a download."""

from __future__ import annotations

import pytest

from venomkit.models.resolve import (
    WeightsNotAvailableError,
    is_hub_id,
    is_location_spec,
    load_pretrained,
    resolve_model,
)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding one snapshot of ``someone/tiny`` (the layout huggingface_hub writes)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    repo = cache / "models--someone--tiny"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return snapshot


def test_zoo_name_local_dir_and_folder_resolve_to_the_folder(tmp_path, monkeypatch):
    model = tmp_path / "toyshop-x"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    assert resolve_model("zoo:toyshop-x") == model
    assert resolve_model(f"local-dir:{model}") == model
    assert resolve_model(str(model)) == model
    assert resolve_model(model) == model


def test_cached_hub_id_resolves_to_its_snapshot_folder(hub_cache):
    assert resolve_model("someone/tiny") == hub_cache
    assert resolve_model("hf-hub:someone/tiny") == hub_cache
    assert resolve_model("hf-hub:someone/tiny", bare_hub_ids=False) == hub_cache


def test_uncached_hub_id_is_one_sentence_naming_the_id(hub_cache):
    with pytest.raises(WeightsNotAvailableError) as info:
        resolve_model("nobody/not-cached", what="language model")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and "\n" not in message
    assert "language model 'nobody/not-cached' is not a local folder and is not in the Hugging Face cache" in message
    assert "never downloads" in message and message.count(". ") == 0


def test_missing_folders_and_zoo_models_are_file_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist: it is neither a zoo name"):
        resolve_model(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(FileNotFoundError, match="venomkit zoo build --only toyshop-clip"):
        resolve_model("zoo:toyshop-clip")


def test_bad_specs_are_value_errors(tmp_path):
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"")
    for spec in ("", "   ", None, 3):
        with pytest.raises(ValueError, match="non-empty"):
            resolve_model(spec)
    with pytest.raises(ValueError, match="is a file"):
        resolve_model(str(weights))
    with pytest.raises(ValueError, match="not a hub id"):
        resolve_model("hf-hub:../etc")


def test_without_bare_hub_ids_an_unprefixed_name_is_not_looked_up(hub_cache):
    with pytest.raises(FileNotFoundError, match="neither a zoo name"):
        resolve_model("someone/tiny", bare_hub_ids=False)


def test_spec_shapes():
    assert is_hub_id("gpt2") and is_hub_id("llava-hf/llava-1.5-7b-hf")
    assert not any(is_hub_id(s) for s in ("./model", "/abs/path", "a/b/c", "~/m", "zoo:x", ""))
    assert is_location_spec("zoo:anything") and is_location_spec("hf-hub:a/b") and is_location_spec("local-dir:/x")
    assert not is_location_spec("ViT-B-32/openai") and not is_location_spec("resnet18")


def test_load_pretrained_reads_the_resolved_folder_and_names_what_it_cannot_read(hub_cache):
    calls = []

    class Loader:
        @classmethod
        def from_pretrained(cls, folder, **kwargs):
            calls.append((folder, kwargs))
            if kwargs.get("fail"):
                raise OSError("no file named model.safetensors\nin that folder")
            return "loaded"

    assert load_pretrained(Loader, "someone/tiny", dtype="float32") == "loaded"
    assert calls == [(str(hub_cache), {"dtype": "float32"})]
    with pytest.raises(FileNotFoundError) as info:
        load_pretrained(Loader, "someone/tiny", what="language model", fail=True)
    message = str(info.value)
    assert "\n" not in message and "'someone/tiny'" in message and "Loader cannot read" in message
