"""README's two set-up commands are what CI runs, verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- setup -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash block after <!-- setup -->"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_commands_verbatim():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in _readme_commands():
        assert command in ci_lines, f".ci/run does not run README's command: {command}"


def _tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Tour\n.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash block in its Tour"
    lines = []
    for line in block.group(1).splitlines():
        command = re.split(r"\s{2,}#", line)[0].strip()
        if command and not command.startswith("#"):
            lines.append(command)
    return lines


def test_tour_commands_run_as_written(tmp_path):
    """Every command of README's tour, in order, in a fresh folder that sees the repository's
    recipes and assets (as a user's checkout does); each must exit 0."""
    import os
    import subprocess

    for name in ("attacks", "defenses", "assets"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "VENOMKIT_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    commands = _tour_commands()
    assert any(c.startswith("accelerate launch") for c in commands) and any(c.startswith("venomkit defend judge") for c in commands)
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "judge-small" / "report.html").is_file()
    assert (tmp_path / "data" / "toyshop" / "toyshop.inter").is_file()
