"""Shared test setup: tiers by privilege, and a skip that names what is missing."""

from __future__ import annotations

import os
import shutil

import pytest


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, XDP and AF_XDP (CI runs as root)")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup.sh installs them)")
