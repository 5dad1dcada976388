"""ruff and mypy --strict as tests, so the README's test command is also the style gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_ruff_clean() -> None:
    p = _run("ruff", "check", "agent", "tests", "bench", "setup.py")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_strict_clean() -> None:
    p = _run("mypy")
    assert p.returncode == 0, p.stdout + p.stderr
