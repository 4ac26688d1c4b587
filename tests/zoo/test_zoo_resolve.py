"""``venomkit.zoo.resolve``: names to folders, and errors that say how to build."""

from __future__ import annotations

from pathlib import Path

import pytest

import venomkit
from venomkit.zoo import available, resolve, zoo_root


def test_default_root_is_repo_assets(monkeypatch):
    monkeypatch.delenv("VENOMKIT_ZOO", raising=False)
    assert zoo_root() == Path(venomkit.__file__).resolve().parent.parent / "assets" / "zoo"


def test_resolve_with_and_without_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    (tmp_path / "toyshop-cnn").mkdir()
    (tmp_path / "toyshop-cnn" / "config.json").write_text("{}")
    (tmp_path / "toyshop-lm.partial").mkdir()
    (tmp_path / "toyshop-lm.partial" / "x").write_text("")
    assert resolve("zoo:toyshop-cnn") == tmp_path / "toyshop-cnn"
    assert resolve("toyshop-cnn") == tmp_path / "toyshop-cnn"
    assert available() == ["toyshop-cnn"]


def test_missing_model_lists_present_and_build_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    (tmp_path / "toyshop-cnn").mkdir()
    (tmp_path / "toyshop-cnn" / "config.json").write_text("{}")
    (tmp_path / "toyshop-clip").mkdir()  # empty folder = not built
    with pytest.raises(FileNotFoundError) as info:
        resolve("zoo:toyshop-clip")
    message = str(info.value)
    assert "present: toyshop-cnn" in message and "venomkit zoo build --only toyshop-clip" in message


def test_missing_derived_model_explains_data_build(tmp_path, monkeypatch):
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"present: none.*--only clip --data PATH"):
        resolve("zoo:ml100k-posters-clip")


@pytest.mark.parametrize("name", ["", "zoo:", "zoo:../etc", "zoo:a/b", None])
def test_invalid_names(name):
    with pytest.raises(ValueError):
        resolve(name)
