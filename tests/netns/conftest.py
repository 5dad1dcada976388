"""netns tier: a real multi-node sandbox (namespaces, veths, XDP, AF_XDP, agents)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.sandbox import Sandbox
from tests.conftest import require_root, require_tools


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Two nodes, two pods each, agents running; removed even when the test fails."""
    require_root()
    require_tools("ip", "nsenter", "ping", "iperf3")
    sb = Sandbox(nodes=2, pods=2).up()
    try:
        sb.start_agents()
        yield sb
    finally:
        sb.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)
