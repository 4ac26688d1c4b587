"""Real processes: `accelerate launch` with 2 CPU processes equals 1 process row for row, and a
run killed with SIGKILL resumes to the tables of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import REPO, SMALL_SHOP

from venomkit.atomic import TMP_PREFIX
from venomkit.data.catalog import load_image_file


def _command(out: Path, *extra: str) -> list[str]:
    return [
        "-m", "venomkit", "run", str(REPO / "attacks" / "pgd.yaml"), "--victim", "vbpr", "--data", SMALL_SHOP,
        "--targets", "8", "--max-interactions", "60", "--batch-size", "2", "steps=3", "victims.vbpr.train.epochs=2", "--out", str(out), "--no-report", *extra,
    ]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process run (it also trains the victim into the session cache)."""
    out = tmp_path_factory.mktemp("one") / "run"
    _run([sys.executable, *_command(out)], cwd=REPO)
    return out


def test_two_cpu_processes_equal_one(reference, tmp_path):
    out = tmp_path / "two"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "assets" / "accelerate" / "cpu-2proc.yaml"),
              "--main_process_port", str(_free_port())]
    done = _run([*launch, *_command(out)], cwd=REPO)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_processes"] == 2, done.stderr[-2000:]
    ranks = {json.loads(p.read_text())["process"] for p in (out / "records").rglob("*.json")}
    assert ranks == {0, 1}, "both processes attacked targets"
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()


def _records(out: Path) -> list[Path]:
    return sorted((out / "records").rglob("*.json")) if (out / "records").is_dir() else []


def test_sigkill_at_any_moment_then_resume_gives_the_same_tables(reference, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for kill_after in (1, 5):  # two interruptions: early, and after a few batches
        proc = subprocess.Popen([sys.executable, *_command(out)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while len(_records(out)) < kill_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # No partial file where a result belongs: every record parses, every PNG decodes.
        for path in _records(out):
            assert "row" in json.loads(path.read_text())
        for path in (out / "images").rglob("*.png") if (out / "images").is_dir() else []:
            if not path.name.startswith(TMP_PREFIX):
                load_image_file(path)
        assert not (out / "results.csv").exists()
    _run([sys.executable, *_command(out)], cwd=REPO)
    assert not list(out.rglob(TMP_PREFIX + "*")), "temporaries of the killed writers were swept"
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()
    assert json.loads((out / "summary.json").read_text())["n_rows"] == 8


def _poisoning_command(out: Path) -> list[str]:
    return [
        "-m", "venomkit", "attack", str(REPO / "attacks" / "venomrec.yaml"), "--data", "toyshop:n_users=40,n_items=60,interactions_per_user=6",
        "--targets", "2", "--out", str(out), "--quiet", "--no-report", "rounds=1", "image_steps=1", "exposure_items=4", "exposure_k=5",
        "run.eval_users=4", "run.n_negatives=12", "run.objective_users=2", "run.ks=1,5", "run.mr=0.05",
        "run.finetune.steps=2", "run.finetune.batch_size=2", "run.finetune.warmup=1",
    ]


def test_poisoning_run_on_two_cpu_processes_equals_one(tmp_path):
    """A VenomRec poisoning run deals its settings over the processes; the tables equal one process's."""
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, *_poisoning_command(one)], cwd=REPO)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "assets" / "accelerate" / "cpu-2proc.yaml"),
              "--main_process_port", str(_free_port())]
    done = _run([*launch, *_poisoning_command(two)], cwd=REPO)
    assert json.loads((two / "summary.json").read_text())["num_processes"] == 2, done.stderr[-2000:]
    ranks = {json.loads(p.read_text())["process"] for p in (two / "records").rglob("_setting.json")}
    assert ranks == {0, 1}, "both processes ran settings"
    assert done.stdout.count("| setting |") == 1, "only the first process prints the table"
    for name in ("results.csv", "texts.csv"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    for png in (one / "images").rglob("*.png"):
        assert (two / png.relative_to(one)).read_bytes() == png.read_bytes()
