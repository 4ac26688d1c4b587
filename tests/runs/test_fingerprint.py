"""The run fingerprint: what counts as a result setting, and the code digests."""

from __future__ import annotations

from pathlib import Path

import venomkit
from venomkit.runs.fingerprint import PRESENTATION_ONLY, TRAINING_CODE, code_digest, differences, result_settings

ROOT = Path(venomkit.__file__).resolve().parent


def test_code_digest_lists_name_real_files_and_packages():
    for rel in PRESENTATION_ONLY:
        assert (ROOT / rel).is_file(), rel
    for package in TRAINING_CODE:
        assert (ROOT / package / "__init__.py").is_file(), package
    assert code_digest(TRAINING_CODE) != code_digest() and len(code_digest()) == 64


def test_settings_that_name_things_do_not_count():
    resolved = {"name": "a", "description": "x", "recipe": "/p/a.yaml", "outputs": {"report": True},
                "attacks": [{"name": "pgd", "recipe": "/p/pgd.yaml", "description": "d", "config": {"eps": 0.1}}],
                "defenses": [], "victims": [{"name": "vbpr", "kind": "vbpr"}], "targets": {"n": 5}}
    renamed = {**resolved, "name": "b", "description": "y", "recipe": "/q/b.yaml", "outputs": {"report": False},
               "attacks": [{**resolved["attacks"][0], "recipe": "/q/pgd.yaml", "description": "e"}]}
    assert result_settings(resolved) == result_settings(renamed)
    changed = {**resolved, "targets": {"n": 6}}
    assert differences(result_settings(resolved), result_settings(changed)) == ["targets.n: 5 -> 6"]
