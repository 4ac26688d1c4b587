"""Every zoo model shipped in assets/zoo loads through venomkit's public loaders, offline.

Each model is loaded in a fresh Python process with the Hugging Face hub forced offline
(``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``) and runs one forward pass. Models that
are not built are skipped (``venomkit zoo build`` makes them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from venomkit.zoo import ZOO_MODELS, zoo_root
from venomkit.zoo.build import file_sha256

ROOT = zoo_root()

# One snippet per family: load by `zoo:NAME` through the public loader, run a forward, print OK.
SNIPPETS = {
    "clip": """
import torch
from venomkit.encoders import load_encoders
image, text = load_encoders("zoo:{name}")
x = torch.rand(2, 3, 64, 64, requires_grad=True)
f = image(x); f.sum().backward()
t = text(["a photo of a red mug", "a striped wool hat"])
assert f.shape == (2, image.output_dim) and t.shape == (2, text.output_dim) and x.grad.abs().sum() > 0
print("OK")
""",
    "cnn": """
import torch
from venomkit.encoders import load_image_encoder
cnn = load_image_encoder("zoo:{name}")
x = torch.rand(2, 3, 64, 64, requires_grad=True)
f = cnn(x); f.sum().backward()
assert f.shape == (2, cnn.output_dim) and x.grad.abs().sum() > 0 and set(cnn.head_logits(x.detach()))
print("OK")
""",
    "sd": """
import torch
from venomkit.generators.diffusion import DiffusionImg2Img
sd = DiffusionImg2Img.from_pretrained("zoo:{name}")
out = sd(torch.rand(1, 3, 64, 64), ["a photo of a red mug"], strength=0.3, num_steps=4)
assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
print("OK")
""",
    "vlm": """
import torch
from venomkit.victims.mllm.ranker import MLLMRanker
ranker = MLLMRanker.load("zoo:{name}")
out = ranker([["Plain red ceramic mug"]], torch.rand(1, 3, 64, 64), ["A blue striped cotton t-shirt."])
assert out.scores.shape == (1,) and torch.isfinite(out.scores).all()
print("OK")
""",
    "lm": """
from venomkit.generators.llm_text import LLMRewriter
lm = LLMRewriter("zoo:{name}", max_new_tokens=16)
out = lm.rewrite(["Plain red ceramic mug by Lumen."], n=1)
assert len(out) == 1 and len(out[0]) == 1 and isinstance(out[0][0], str)
print("OK")
""",
}


def _family(name: str) -> str | None:
    if name in ZOO_MODELS:
        return ZOO_MODELS[name]
    manifest = ROOT / "manifest.json"
    if manifest.is_file():
        entry = json.loads(manifest.read_text()).get("models", {}).get(name, {})
        if entry.get("family"):
            return entry["family"]
    return name.rsplit("-", 1)[-1] if name.rsplit("-", 1)[-1] in SNIPPETS else None


def _present() -> list[str]:
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.endswith(".partial") and any(p.iterdir()))


@pytest.mark.parametrize("name", sorted(set(ZOO_MODELS) | set(_present())))
def test_zoo_model_loads_offline_in_fresh_process(name):
    if name not in _present():
        pytest.skip(f"{name} is not built (venomkit zoo build --only {name})")
    family = _family(name)
    if family not in SNIPPETS:
        pytest.skip(f"no loader snippet for {name}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VENOMKIT_ZOO=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", SNIPPETS[family].format(name=name)],
        capture_output=True, text=True, env=env, timeout=300, cwd=str(Path(ROOT).parent),
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_manifest_describes_every_present_model():
    present = _present()
    if not present:
        pytest.skip("no zoo model is built")
    manifest_path = ROOT / "manifest.json"
    assert manifest_path.is_file(), "assets/zoo has models but no manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for name in present:
        entry = manifest["models"].get(name)
        assert entry is not None, f"{name} is not in the manifest"
        files = {f["path"]: f for f in entry["files"]}
        on_disk = {str(p.relative_to(ROOT / name)) for p in (ROOT / name).rglob("*") if p.is_file()}
        assert set(files) == on_disk, f"{name}: manifest files differ from the folder"
        for rel, info in files.items():
            path = ROOT / name / rel
            assert path.stat().st_size == info["bytes"], f"{name}/{rel} size differs from the manifest"
            assert file_sha256(path) == info["sha256"], f"{name}/{rel} sha256 differs from the manifest"
        assert entry["build_command"].startswith("venomkit zoo build") and "quality" in entry
