"""netns tier: a real multi-node sandbox (namespaces, veths, XDP, AF_XDP, agents)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from agent.sandbox import Sandbox
from tests.conftest import require_root, require_tools

SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """Sandboxes with agents running (extra agent flags as arguments); every one is removed
    when the test ends, failed or not."""
    require_root()
    require_tools("ip", "nsenter", "ping", "iperf3")
    made: list[Sandbox] = []

    def make(*agent_args: str, nodes: int = 2, pods: int = 2,
             static_endpoints: bool = True) -> Sandbox:
        sb = Sandbox(nodes=nodes, pods=pods, agent_args=list(agent_args),
                     static_endpoints=static_endpoints)
        made.append(sb)
        sb.up()
        sb.start_agents()
        return sb

    try:
        yield make
    finally:
        for sb in made:
            sb.close()


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """Two nodes, two pods each, agents with the default configuration."""
    return make_sandbox()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)
