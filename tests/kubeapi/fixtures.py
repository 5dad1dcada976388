"""pytest fixtures for the test API endpoint, and polling: tests wait on conditions, never
on fixed sleeps. A conftest re-exports the fixtures it wants (`__all__`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.sandbox import Sandbox
from tests.kubeapi.server import FakeKubeAPI
from tests.nsutil import entered


@pytest.fixture
def kubeapi() -> Iterator[FakeKubeAPI]:
    """A running endpoint with fast bookmarks (0.2 s); closed, with its streams, at the end."""
    with FakeKubeAPI(bookmark_interval=0.2) as api:
        yield api


@pytest.fixture
def kubeconfig(kubeapi: FakeKubeAPI, tmp_path: Path) -> Path:
    return kubeapi.write_kubeconfig(tmp_path / "kubeconfig")


def wait_until(cond: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Poll `cond` every 10 ms until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(0.01)


@contextmanager
def api_on_switch(sb: Sandbox, kubeconfig: Path) -> Iterator[FakeKubeAPI]:
    """An endpoint listening on the switch of a sandbox of 3 or more nodes (192.168.250.254,
    which every node reaches on its underlay), with the sandbox's agents pointed at it."""
    assert sb.switch_netns is not None, "a sandbox of 3 or more nodes has a switch"
    with entered(f"/run/netns/{sb.switch_netns}"):
        api = FakeKubeAPI(bookmark_interval=0.5, host="192.168.250.254")
    with api:
        sb.kubeconfig = api.write_kubeconfig(kubeconfig)
        yield api
