"""pytest fixtures for the test API endpoint, and polling: tests wait on conditions, never
on fixed sleeps. A conftest re-exports the fixtures it wants (`__all__`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kubeapi.server import FakeKubeAPI


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
