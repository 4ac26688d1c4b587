"""The ``venomkit`` command line: every bad input ends in ONE line on stderr and exit status 2;
overrides stand anywhere; progress is logged when output is not a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from venomkit.cli import main

REPO = Path(__file__).resolve().parents[1]
SMALL = "toyshop:n_users=150,n_items=90"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VENOMKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cli-cache"))


def one_line_error(capsys, argv, *fragments):
    """Run the CLI; it must exit 2 with exactly one stderr line holding every fragment."""
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and err[-1] == errors[0], err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


ATTACK = ["attack", str(REPO / "attacks" / "pgd.yaml"), "--victim", "vbpr", "--data", SMALL]


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (ATTACK + ["--targets", "0", "--out", "o"], ["venomkit attack: error:", "--targets must be an integer >= 1, got 0"]),
        (ATTACK + ["--targets", "-3", "--out", "o"], ["--targets must be an integer >= 1, got -3"]),
        (ATTACK + ["--targets", "x", "--out", "o"], ["argument --targets: invalid int value: 'x'", "venomkit attack --help"]),
        (ATTACK + ["--out", "o", "stepz=3"], ["command line: override 'stepz=3'", "valid keys"]),
        (ATTACK + ["--out", "o", "steps"], ["override 'steps' is not of the form key=value"]),
        (["attack", "pgdd", "--victim", "vbpr", "--data", SMALL, "--out", "o"], ["'pgdd' is neither a recipe file nor an attack name", "valid attacks: fgsm"]),
        (["attack", "pgd", "--data", SMALL, "--out", "o"], ["--victim is required for pgd"]),
        (["run", str(REPO / "attacks" / "pgd.yaml"), "--data", SMALL, "--out", "o"], ["give --victim"]),
        (["train", "--data", "toyshop:n_itemz=5", "--victim", "vbpr", "--out", "o"], ["unknown option 'n_itemz'", "n_items"]),
        (ATTACK[:4] + ["--data", "toyshop:n_itemz=5", "--out", "o"], ["unknown option 'n_itemz'"]),
        (["frobnicate"], ["unknown command 'frobnicate'"]),
        (["defend", "judge", "--data", SMALL, "--out", "o", "--set", "uat_mc.lambda=1"], ["unknown key 'lambda'"]),
        (["defend", "uatt", "--data", SMALL], ["unknown sub-command 'uatt'"]),
        (["run", "nope.yaml", "--out", "o"], ["recipe file 'nope.yaml' not found"]),
    ],
)
def test_bad_input_is_one_clean_line(capsys, tmp_path, monkeypatch, argv, fragments):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, argv, *fragments)
    assert not (tmp_path / "o" / "results.csv").exists()


def test_bad_recipe_is_blamed_on_its_file_and_line(capsys, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("name: mine\nvictims: [vbpr]\nattacks: [pgd]\ntargets:\n  n: 3\n  batchsize: 2\n")
    one_line_error(capsys, ["run", str(recipe), "--out", str(tmp_path / "o")], f"{recipe}:6", "'batchsize'", "valid keys")


def test_data_errors_of_train_are_one_line_naming_file_and_line(capsys, tmp_path):
    folder = tmp_path / "shop"
    (folder / "images").mkdir(parents=True)
    (folder / "shop.item").write_text("item_id:token\ttext:token_seq\ni1\ta red mug\ni2\ta blue hat\n")
    (folder / "shop.inter").write_text("user_id:token\titem_id:token\nu1\ti1\nu1\ti9\n")
    from venomkit.data import DataWarning

    with pytest.warns(DataWarning, match="missing image file"):  # the photos are missing too: said, not fatal
        one_line_error(capsys, ["train", "--data", str(folder), "--victim", "vbpr", "--out", str(tmp_path / "o")], "shop.inter", "line 3", "unknown item id 'i9'")
        (folder / "shop.inter").write_text("user_id:token\titem_id:token\nu1\ti1\tx\n")
        one_line_error(capsys, ["train", "--data", str(folder), "--victim", "vbpr", "--out", str(tmp_path / "o")], "shop.inter", "line 2")
    (folder / "shop.inter").write_text("user_id:token\titem_id:token\nu1\ti1\n")
    (folder / "shop.item").write_text("item_id:token\ttext:token_seq\ni1\t\n")
    one_line_error(capsys, ["train", "--data", str(folder), "--victim", "vbpr", "--out", str(tmp_path / "o")], "shop.item", "line 2", "empty text")
    (folder / "shop.item").write_text("item_id:token\ttext:token_seq\ni1\ta red mug\n")
    (folder / "images" / "i1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    one_line_error(capsys, ["train", "--data", str(folder), "--victim", "vbpr", "--missing-images", "error", "--out", str(tmp_path / "o")], "i1.png")


def test_a_folder_holding_another_run_is_refused_in_one_line(capsys, tmp_path):
    out = str(tmp_path / "run")
    base = ["attack", "fgsm", "--victim", "vbpr", "--data", SMALL, "--targets", "1", "--max-interactions", "60",
            "--out", out, "--quiet", "--no-report", "victims.vbpr.train.epochs=1"]
    assert main(base) == 0
    capsys.readouterr()
    one_line_error(capsys, [*base, "eps=4/255"], "holds a different run", "attacks[fgsm].config.eps", "--overwrite")
    assert main([*base, "eps=4/255", "--overwrite"]) == 0


def test_progress_is_logged_when_output_is_not_a_terminal(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VENOMKIT_PROGRESS_SECONDS", "0")
    argv = ["run", "fgsm", "--victim", "vbpr", "--data", SMALL, "--targets", "2", "--max-interactions", "60", "--out", str(tmp_path / "r"),
            "--no-report", "victims.vbpr.train.epochs=2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "targets: 2/2 targets (100%)" in captured.err and "train vbpr:" in captured.err
    assert "HR@10 before→after" in captured.out and "results:" in captured.out
    assert main([*argv, "--quiet"]) == 0  # resumes (all done); quiet: no progress lines
    assert "targets:" not in capsys.readouterr().err
