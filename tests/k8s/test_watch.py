"""ListWatch against the test API endpoint: paging, resume, bookmarks, timeouts, recovery."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from agent.k8s import BackoffPolicy, ListWatch, kube_client
from agent.k8s.watch import Obj
from tests.kubeapi.fixtures import wait_until
from tests.kubeapi.server import FakeKubeAPI, node, pod

pytestmark = pytest.mark.unit

NODES, PODS = "/api/v1/nodes", "/api/v1/pods"
MakeWatch = Callable[..., ListWatch]


class Recorder:
    """What a consumer saw: every on_sync (names) and every on_event (type, name, RV)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.syncs: list[list[str]] = []
        self.events: list[tuple[str, str, int]] = []

    def sync(self, items: list[Obj]) -> None:
        with self.lock:
            self.syncs.append(sorted(i["metadata"]["name"] for i in items))

    def event(self, type_: str, obj: Obj) -> None:
        meta = obj["metadata"]
        with self.lock:
            self.events.append((type_, meta["name"], int(meta["resourceVersion"])))

    def names(self) -> list[str]:
        with self.lock:
            return [name for _, name, _ in self.events]


def _pods(api_client: client.ApiClient) -> Callable[..., object]:
    return client.CoreV1Api(api_client).list_pod_for_all_namespaces


def test_list_is_paged_and_the_watch_starts_at_the_list_rv(
        kubeapi: FakeKubeAPI, api_client: client.ApiClient, make_watch: MakeWatch) -> None:
    for i in range(5):
        kubeapi.add("nodes", node(f"n{i}", f"192.168.0.{i + 1}"))
    rec = Recorder()
    lw = make_watch("Node", client.CoreV1Api(api_client).list_node, on_sync=rec.sync,
                    on_event=rec.event, page_size=2)
    wait_until(lambda: kubeapi.open_watches("nodes") == 1, what="the watch")
    assert rec.syncs == [[f"n{i}" for i in range(5)]]  # one sync, all pages
    lists = kubeapi.requests(path=NODES, watch=False)
    assert [r.params.get("limit") for r in lists] == ["2", "2", "2"]
    assert ["continue" in r.params for r in lists] == [False, True, True]
    (watch,) = kubeapi.requests(path=NODES, watch=True)
    assert watch.resource_version == str(kubeapi.resource_version)
    assert watch.params["allowWatchBookmarks"] == "true"
    assert lw.stats().lists == 1 and lw.stats().synced


def test_resume_after_dropped_connection_loses_and_repeats_nothing(
        kubeapi: FakeKubeAPI, api_client: client.ApiClient, make_watch: MakeWatch) -> None:
    for name in ("p0", "p1", "p2"):
        kubeapi.add("pods", pod(name, "n1"))
    rec = Recorder()
    lw = make_watch("Pod", _pods(api_client), on_sync=rec.sync, on_event=rec.event)
    wait_until(lambda: kubeapi.open_watches("pods") == 1, what="the watch")
    kubeapi.add("pods", pod("p3", "n1"))
    wait_until(lambda: "p3" in rec.names(), what="p3")
    last_rv = lw.stats().resource_version
    assert last_rv == str(kubeapi.resource_version)

    t = time.monotonic()
    assert kubeapi.drop_connections() == 1
    # Changes while the client is away (its first retry is 0.2-0.3 s later) or just back.
    kubeapi.add("pods", pod("p4", "n1"))
    kubeapi.add("pods", pod("p5", "n1"))
    kubeapi.update("pods", {**kubeapi.get("pods", "p3"), "status": {"phase": "Succeeded"}})
    kubeapi.delete("pods", "p0")
    # The event counter moves after on_event returns: wait for both.
    wait_until(lambda: len(rec.events) == 5 and lw.stats().events == 5,
               what="every change after the drop")

    assert [(t_, n) for t_, n, _ in rec.events] == [
        ("ADDED", "p3"), ("ADDED", "p4"), ("ADDED", "p5"), ("MODIFIED", "p3"), ("DELETED", "p0")]
    rvs = [rv for _, _, rv in rec.events]
    assert rvs == sorted(set(rvs))  # strictly increasing: nothing repeated
    first_after = kubeapi.requests(path=PODS, watch=True, since=t)[0]
    assert first_after.resource_version == last_rv
    assert kubeapi.requests(path=PODS, watch=False, since=t) == []  # no relist
    s = lw.stats()
    assert (s.lists, s.relists, s.events) == (1, 0, 5)
    assert s.restarts >= 1 and s.errors >= 1
    assert len(rec.syncs) == 1


def test_bookmarks_advance_the_resume_rv(tmp_path: Path, make_watch: MakeWatch) -> None:
    """Changes to other nodes' pods never reach this watch, but move the RV on; bookmarks
    carry it to us, so a resume is not sent back to an RV the server has forgotten."""
    with (FakeKubeAPI(history=5, bookmark_interval=0.1) as api,
          contextlib.closing(kube_client(api.write_kubeconfig(tmp_path / "kc"))) as api_client):
        rec = Recorder()
        lw = make_watch("Pod", _pods(api_client), on_sync=rec.sync, on_event=rec.event,
                        field_selector="spec.nodeName=n1")
        wait_until(lambda: api.open_watches("pods") == 1, what="the watch")
        listed_rv = int(lw.stats().resource_version or 0)
        for i in range(20):
            api.add("pods", pod(f"other{i}", "n2"))
        head = api.resource_version
        assert head - listed_rv > 5  # the listed RV has left the server's history
        wait_until(lambda: lw.stats().resource_version == str(head), what="a bookmark")
        assert lw.stats().events == 0 and lw.stats().bookmarks >= 1

        t = time.monotonic()
        api.drop_connections()
        wait_until(lambda: api.requests(path=PODS, watch=True, since=t), what="the resume")
        resume = api.requests(path=PODS, watch=True, since=t)[0]
        assert (resume.resource_version, resume.status) == (str(head), 200)
        api.add("pods", pod("mine", "n1"))
        wait_until(lambda: "mine" in rec.names(), what="the next event")
        assert lw.stats().relists == 0
        lw.stop()
        lw.join(5)


def test_server_timeout_restarts_the_watch_from_the_last_rv(
        kubeapi: FakeKubeAPI, api_client: client.ApiClient, make_watch: MakeWatch) -> None:
    kubeapi.add("nodes", node("n1", "192.168.0.1"))
    rec = Recorder()
    lw = make_watch("Node", client.CoreV1Api(api_client).list_node, on_sync=rec.sync,
                    on_event=rec.event, watch_timeout=1)
    wait_until(lambda: lw.stats().restarts >= 1, what="a restart after timeoutSeconds")
    watches = kubeapi.requests(path=NODES, watch=True)
    assert {w.params["timeoutSeconds"] for w in watches} == {"1"}
    assert {w.resource_version for w in watches} == {lw.stats().resource_version}
    kubeapi.add("nodes", node("n2", "192.168.0.2"))
    wait_until(lambda: "n2" in rec.names(), what="n2")
    s = lw.stats()
    assert (s.errors, s.relists) == (0, 0)


def test_a_failing_consumer_gets_a_fresh_list(
        kubeapi: FakeKubeAPI, api_client: client.ApiClient, make_watch: MakeWatch) -> None:
    rec = Recorder()
    failed: list[str] = []

    def on_event(type_: str, obj: Obj) -> None:
        if not failed:
            failed.append(obj["metadata"]["name"])
            raise RuntimeError("consumer bug")
        rec.event(type_, obj)

    lw = make_watch("Pod", _pods(api_client), on_sync=rec.sync, on_event=on_event)
    wait_until(lambda: kubeapi.open_watches("pods") == 1, what="the watch")
    kubeapi.add("pods", pod("a", "n1"))
    wait_until(lambda: len(rec.syncs) == 2 and lw.stats().relists == 1, what="the relist")
    assert failed == ["a"] and rec.syncs == [[], ["a"]]
    assert lw.stats().relists == 1


def test_backoff_is_bounded_exponential_and_jittered() -> None:
    policy = BackoffPolicy(initial=0.2, maximum=30.0, factor=2.0, jitter=0.5)
    for n in range(1, 200):
        base = min(30.0, 0.2 * 2 ** (n - 1))
        delays = {policy.delay(n) for _ in range(20)}
        assert all(base <= d <= min(30.0, base * 1.5) for d in delays), n
    assert len({policy.delay(1) for _ in range(20)}) > 1  # jittered
    assert max(policy.delay(10_000) for _ in range(20)) <= 30.0
