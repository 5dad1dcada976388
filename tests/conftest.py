"""Shared test setup: tiers by privilege, and a skip that names what is missing."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

from agent.xdp.bpfobj import LIBXDP_DIR


@pytest.fixture(scope="session", autouse=True)
def _leave_no_libxdp_dir() -> Iterator[None]:
    """libxdp makes /sys/fs/bpf/xdp on the first attach; the session removes it again (when it
    made it and it is empty), so a test run leaves nothing under /sys/fs/bpf."""
    existed = LIBXDP_DIR.exists()
    yield None
    if not existed:
        with contextlib.suppress(OSError):
            LIBXDP_DIR.rmdir()


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, XDP and AF_XDP (CI runs as root)")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup.sh installs them)")
