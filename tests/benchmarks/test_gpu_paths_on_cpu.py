"""The benchmarks' GPU paths, run small on the CPU so that they cannot rot between GPU loans.

``mllm_ranker.py --shape 7b-smoke`` is LLaVA-1.5-7B's layout (576 image tokens, vocab 32064,
feature layer -2) with every width divided by 16; ``auv_fusion_generator.py --model sd15`` is
Stable Diffusion 1.5's full-size UNet, VAE and text encoder (random weights), at 64 px.
The timings they print are not checked (timing is the scripts' job); what is checked is what
must hold on any device: the KV-cached scores equal the plain forwards' on that layout, and
the injected delta's gradient is finite through the full-size pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_kv_cache_equals_plain_forwards_on_llava_7b_layout():
    out = _run("mllm_ranker.py", "--shape", "7b-smoke", "--layers", "2", "--vision-layers", "1", "--users", "1",
               "--candidates", "3", "--history", "2", "--repeats", "1", "--batch-size", "2", "--no-per-pair")  # fmt: skip
    assert "576 image tokens" in out and "vocab 32064" in out
    relative = float(re.search(r"cached - plain is ([0-9.e+-]+) of it", out).group(1))
    assert relative < 1e-5, out  # float32 on the CPU: equal up to rounding


@pytest.mark.slow
def test_sd15_shaped_pass_reaches_delta():
    out = _run("auv_fusion_generator.py", "--model", "sd15", "--size", "64", "--batches", "1", "--variants", "step+vae",
               "--repeats", "1", "--threads", "2")  # fmt: skip
    assert "UNet 859.5M, VAE 83.7M, text 123.1M" in out
    row = next(line for line in out.splitlines() if line.startswith("| step+vae | 1 |"))
    assert row.rstrip(" |").endswith("True"), out  # the gradient of delta is finite
