"""k8s tier: the agent's list/watch code against the test API endpoint (tests/kubeapi)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.k8s import BackoffPolicy, ClusterState, ListWatch, kube_client
from tests.kubeapi.fixtures import kubeapi, kubeconfig

__all__ = ["kubeapi", "kubeconfig"]

# Real bounds, shortened so that outages in tests last seconds, not minutes.
FAST = BackoffPolicy(initial=0.2, maximum=1.0)


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """A real client, built the way the agent builds it, pointed at the test endpoint."""
    c = kube_client(kubeconfig)
    yield c
    c.close()  # type: ignore[no-untyped-call]  # unannotated in the client


@pytest.fixture
def make_state(api_client: client.ApiClient) -> Iterator[Callable[..., ClusterState]]:
    """ClusterStates started for a node (keyword arguments to the constructor); every one is
    stopped when the test ends, failed or not."""
    made: list[ClusterState] = []

    def make(node: str = "n1", **kwargs: Any) -> ClusterState:
        kwargs.setdefault("backoff", FAST)
        state = ClusterState(**kwargs)
        made.append(state)
        state.start(api_client, node)
        return state

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def make_watch() -> Iterator[Callable[..., ListWatch]]:
    """ListWatches (ListWatch's arguments), started; every one is stopped at the end."""
    made: list[ListWatch] = []

    def make(*args: Any, **kwargs: Any) -> ListWatch:
        kwargs.setdefault("backoff", FAST)
        lw = ListWatch(*args, **kwargs)
        made.append(lw)
        lw.start()
        return lw

    yield make
    for lw in made:
        lw.stop()
        lw.join(5)
