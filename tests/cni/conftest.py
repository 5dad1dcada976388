"""CNI tests: fixtures for the agent double and for the plugin as a runtime finds it.

Unix socket paths must fit in 108 bytes, which pytest's tmp_path (named after the test and its
parameters) does not guarantee; `sock_dir` is a short directory under /tmp, removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cni.agent_double import AgentDouble

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = ROOT / ".venv" / "bin" / "ringlane"
DEBIAN_CNI_DIR = Path("/usr/lib/cni")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rlcni-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent(sock_dir: Path) -> Iterator[AgentDouble]:
    """A running agent double answering ok; tests change `mode`/`modes` as they need."""
    with AgentDouble(sock_dir / "agent.sock") as double:
        yield double


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A CNI bin directory whose `ringlane` is the console script, as a node would install it
    (a symlink into the virtualenv)."""
    if not CONSOLE_SCRIPT.exists():
        pytest.skip(f"{CONSOLE_SCRIPT} missing: run scripts/setup.sh")
    d = tmp_path / "bin"
    d.mkdir()
    (d / "ringlane").symlink_to(CONSOLE_SCRIPT)
    return d


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cni/" in str(item.fspath):
            root_tier = "test_chain" in str(item.fspath) or "test_podman" in str(item.fspath)
            item.add_marker(pytest.mark.netns if root_tier else pytest.mark.unit)
