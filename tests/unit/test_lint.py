"""`make test` runs the linters: ruff (check and format) over the repository, mypy over the
runtime cores. Configuration: ruff.toml and mypy.ini at the repository root; versions pinned in
requirements/dev.txt. `make lint` runs the same three commands directly.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# concise output: one line per finding / per file to reformat; mypy reads its files from mypy.ini
COMMANDS = {
    name: [sys.executable, "-m", *args.split()]
    for name, args in {
        "ruff check": "ruff check --no-fix --output-format concise .",
        "ruff format --check": "ruff format --check --output-format concise .",
        "mypy": "mypy",
    }.items()
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_linter_is_clean(name):
    res = subprocess.run(COMMANDS[name], cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = (res.stdout + res.stderr).strip()
    assert "No module named" not in out, (
        f"{name} is not installed in this environment: pip install -r requirements/dev.txt "
        f"-c requirements/constraints.txt\n{out}"
    )
    assert res.returncode == 0, f"`{' '.join(COMMANDS[name][2:])}` found problems:\n{out[-6000:]}"


def test_linter_versions_are_the_pinned_ones():
    pins = {}
    for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("#")[0].strip().split("==")
            pins[name.strip().lower()] = version.strip()
    import mypy.version

    ruff_version = subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert ruff_version == pins["ruff"]
    assert mypy.version.__version__.split("+")[0] == pins["mypy"]
