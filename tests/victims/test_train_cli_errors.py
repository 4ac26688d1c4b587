"""``venomkit train`` on bad data: a ValueError-family error with ONE line naming where, never a TypeError.

The ``venomkit`` command turns these into ``venomkit train: error: <message>`` (exit status 2);
here ``cli_train`` is called directly, so the error itself is checked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from venomkit.data import DataWarning
from venomkit.victims.pipeline import add_train_arguments, cli_train

INTER = ["user_id:token\titem_id:token\ttimestamp:float"] + [f"u{u}\ti{i}\t{10 * u + i}" for u in range(1, 4) for i in range(1, 4)]
ITEMS = ["item_id:token\ttext:token_seq", "i1\ta red shirt", "i2\ta blue mug", "i3\ta green hat"]


def _shop(folder: Path, inter: list[str] = INTER, items: list[str] = ITEMS, corrupt: str | None = None) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "shop.inter").write_text("\n".join(inter) + "\n")
    (folder / "shop.item").write_text("\n".join(items) + "\n")
    for item_id in ("i1", "i2", "i3"):
        path = folder / "images" / f"{item_id}.png"
        if item_id == corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a png")
        else:
            Image.fromarray(np.full((8, 8, 3), 120, dtype=np.uint8)).save(path)
    return folder


def _train(data: str, tmp_path: Path, *flags: str) -> int:
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data", data, "--victim", "lightgcn", "--out", str(tmp_path / "out"),
                              "--epochs", "1", "--device", "cpu", "--no-progress", *flags])  # fmt: skip
    return cli_train(args)


CASES = {
    # name: (build the --data argument, extra flags, words the one-line message must hold)
    "malformed inter row": (
        lambda tmp: str(_shop(tmp / "shop", inter=INTER[:3] + ["u1\ti3"] + INTER[4:])),
        (), ("shop.inter", "line 4", "'timestamp'"),
    ),
    "unknown item id": (
        lambda tmp: str(_shop(tmp / "shop", inter=INTER + ["u2\ti9\t99"])),
        (), ("shop.inter", "line 11", "'item_id'", "'i9'"),
    ),
    "empty text": (
        lambda tmp: str(_shop(tmp / "shop", items=ITEMS[:2] + ["i2\t   "] + ITEMS[3:])),
        (), ("shop.item", "line 3", "'text'", "--empty-texts"),
    ),
    "corrupt image": (
        lambda tmp: str(_shop(tmp / "shop", corrupt="i2")),
        ("--missing-images", "error"), ("shop.item", "line 3", "'image'", "i2.png", "corrupt", "--missing-images"),
    ),
    "unknown toyshop option": (lambda tmp: "toyshop:n_itemz=5", (), ("toyshop:n_itemz=5", "unknown option 'n_itemz'", "valid options: n_users")),
    "wrong-typed toyshop option": (lambda tmp: "toyshop:n_users=many", (), ("toyshop:n_users=many", "n_users must be an integer")),
    "policy flag on toyshop": (lambda tmp: "toyshop", ("--empty-texts", "drop"), ("--empty-texts", "dataset folders")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_data_errors_are_one_line_value_errors(tmp_path, case):
    build, flags, words = CASES[case]
    with pytest.raises(ValueError) as info:
        _train(build(tmp_path), tmp_path, *flags)
    message = str(info.value)
    assert not isinstance(info.value, TypeError) and "\n" not in message
    for word in words:
        assert word in message, (word, message)
    assert "empty_texts='keep'" not in message or "(Python)" in message  # Python names only next to the CLI flag


def test_a_corrupt_image_under_the_default_policy_is_reported_when_the_data_loads(tmp_path, monkeypatch):
    import venomkit.victims.pipeline as pipeline

    loaded = []

    def stop_after_loading(*args, **kwargs):
        loaded.append(True)
        raise RuntimeError("the data loaded")

    monkeypatch.setattr(pipeline, "train_victim", stop_after_loading)
    with pytest.warns(DataWarning, match=r"1 items with a missing or corrupt image \(0 missing, 1 corrupt\).*i2 \(corrupt\)"):
        with pytest.raises(RuntimeError, match="the data loaded"):
            _train(str(_shop(tmp_path / "shop", corrupt="i2")), tmp_path)
    assert loaded
