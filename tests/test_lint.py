"""The tree is clean under the linter pyproject.toml configures (ruff:
pyflakes, pycodestyle, import order, lines of at most 120 characters), so a
new violation fails the suite and ``.ci/run``."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff():
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.exists() else shutil.which("ruff")


def test_the_tree_is_clean_under_the_configured_linter():
    ruff = _ruff()
    assert ruff, "ruff is missing: pip install -e '.[test]' installs it"
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

