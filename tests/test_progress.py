"""``venomkit.progress``: bars on a terminal, log lines elsewhere, silence when quiet."""

from __future__ import annotations

import logging

import pytest

import venomkit.progress as progress_module
from venomkit.progress import ProgressLog, progress, set_quiet


@pytest.fixture(autouse=True)
def not_a_terminal(monkeypatch):
    monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: False)
    monkeypatch.delenv("VENOMKIT_QUIET", raising=False)
    monkeypatch.delenv("VENOMKIT_PROGRESS_SECONDS", raising=False)
    yield
    set_quiet(False)


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "venomkit"]


def test_logs_lines_when_not_a_terminal(caplog, monkeypatch):
    monkeypatch.setenv("VENOMKIT_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="venomkit")
    bar = progress(range(4), desc="train vbpr", unit="epoch")
    assert isinstance(bar, ProgressLog)
    for epoch in bar:
        bar.set_postfix(loss=0.21)
    lines = _lines(caplog)
    assert lines[0].startswith("train vbpr: 1/4 epochs (25%), ") and "epochs/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("train vbpr: 4/4 epochs (100%), ") and "in all" in lines[-1] and lines[-1].endswith("loss=0.21")
    assert all(record.levelno == logging.INFO for record in caplog.records if record.name == "venomkit")


def test_lines_come_at_most_every_interval_plus_the_end_line(caplog):
    caplog.set_level(logging.INFO, logger="venomkit")
    clock = [0.0]
    bar = ProgressLog(total=200, desc="train vbpr", unit="epoch", interval=10, clock=lambda: clock[0])
    for _ in range(200):
        clock[0] += 0.75  # 1.33 epochs/s: a line every 14 epochs
        bar.update(1)
    bar.close()
    bar.close()  # closing twice logs once
    lines = _lines(caplog)
    assert len(lines) == 200 // 14 + 1  # one every 14 epochs (10.5 s), then the end line
    assert lines[0] == "train vbpr: 14/200 epochs (7%), 1.33 epochs/s, ETA 2m20s"  # 186 epochs at 0.75 s
    assert lines[-1] == "train vbpr: 200/200 epochs (100%), 1.33 epochs/s, 2m30s in all"


def test_short_inner_loops_stay_out_of_the_log_unless_they_already_logged(caplog):
    caplog.set_level(logging.INFO, logger="venomkit")
    clock = [0.0]
    with ProgressLog(total=5, desc="pgd steps", unit="step", leave=False, interval=10, clock=lambda: clock[0]) as bar:
        bar.update(5)
    assert _lines(caplog) == []
    with ProgressLog(total=5, desc="pgd steps", unit="step", leave=False, interval=10, clock=lambda: clock[0]) as bar:
        clock[0] += 12
        bar.update(1)
        bar.update(4)
    assert len(_lines(caplog)) == 2


def test_quiet_switch_and_environment_silence_everything(caplog, monkeypatch):
    monkeypatch.setenv("VENOMKIT_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="venomkit")
    set_quiet(True)
    assert list(progress(range(3), desc="quiet")) == [0, 1, 2]
    set_quiet(False)
    monkeypatch.setenv("VENOMKIT_QUIET", "1")
    bar = progress(total=3, desc="quiet too")
    bar.update(3)
    bar.set_postfix(loss=1.0)
    bar.close()
    assert list(progress(range(2), desc="switched off", enabled=False)) == [0, 1]
    assert _lines(caplog) == []
    monkeypatch.setenv("VENOMKIT_QUIET", "0")
    list(progress(range(2), desc="audible"))
    assert _lines(caplog) and _lines(caplog)[-1].startswith("audible: 2/2 it (100%)")


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: True)
    bar = progress(range(2), desc="bar")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()


def test_a_bad_interval_is_a_one_line_value_error(monkeypatch):
    monkeypatch.setenv("VENOMKIT_PROGRESS_SECONDS", "soon")
    with pytest.raises(ValueError, match="VENOMKIT_PROGRESS_SECONDS='soon': expected a number of seconds"):
        progress(range(2))
