"""ClusterState against the test API endpoint: snapshots, sync, outages, 410, shutdown."""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.k8s import ClusterState, NodeInfo, PodInfo
from agent.k8s.cluster import parse_node, parse_pod
from tests.kubeapi.fixtures import wait_until
from tests.kubeapi.server import FakeKubeAPI, node, pod, policy

pytestmark = pytest.mark.unit

MakeState = Callable[..., ClusterState]
NODES, PODS = "/api/v1/nodes", "/api/v1/pods"
POLICIES = "/apis/networking.k8s.io/v1/networkpolicies"


def _names(state: ClusterState) -> set[str]:
    return {p.name for p in state.pods().values()}


def _caught_up(kubeapi: FakeKubeAPI, state: ClusterState, kind: str) -> bool:
    """The watch has seen everything up to the server's current RV (an event or bookmark)."""
    return state.stats()[kind].resource_version == str(kubeapi.resource_version)


def test_initial_sync(kubeapi: FakeKubeAPI, make_state: MakeState) -> None:
    kubeapi.add("nodes", node("n1", "192.168.0.1", "10.244.1.0/24"))
    kubeapi.add("nodes", node("n2", "192.168.0.2", pod_cidrs=["fd00:2::/64", "10.244.2.0/24"]))
    kubeapi.add("nodes", node("n3", None, "10.244.3.0/24"))  # no InternalIP yet
    kubeapi.add("nodes", node("n4", "fd00::4", "10.244.4.0/24"))  # IPv6 only
    kubeapi.add("nodes", node("n5", "192.168.0.5"))  # no podCIDR assigned yet
    kubeapi.add("pods", pod("web", "n1", "10.244.1.2"))
    kubeapi.add("pods", pod("hostnet", "n1", "192.168.0.1", host_network=True))
    kubeapi.add("pods", pod("pending", "n1", phase="Pending"))
    dual = pod("dual", "n1", namespace="kube-system")
    dual["status"]["podIPs"] = [{"ip": "fd00:1::5"}, {"ip": "10.244.1.5"}]
    kubeapi.add("pods", dual)
    kubeapi.add("pods", pod("elsewhere", "n2", "10.244.2.2"))
    state = make_state("n1")
    wait_until(state.synced, what="sync")

    assert state.nodes() == {
        "n1": NodeInfo("n1", IPv4Address("192.168.0.1"), IPv4Network("10.244.1.0/24")),
        "n2": NodeInfo("n2", IPv4Address("192.168.0.2"), IPv4Network("10.244.2.0/24")),
        "n5": NodeInfo("n5", IPv4Address("192.168.0.5"), None),
    }
    pods = {p.name: p for p in state.pods().values()}
    assert set(pods) == {"web", "hostnet", "pending", "dual"}
    web = pods["web"]
    assert web == PodInfo(kubeapi.get("pods", "web")["metadata"]["uid"], "default", "web",
                          IPv4Address("10.244.1.2"), False, "Running", False)
    assert pods["hostnet"].host_network
    assert (pods["pending"].pod_ip, pods["pending"].phase) == (None, "Pending")
    assert (pods["dual"].namespace, pods["dual"].pod_ip) == ("kube-system",
                                                             IPv4Address("10.244.1.5"))
    assert set(state.pods()) == {p.uid for p in pods.values()}  # keyed by uid
    assert state.changed.is_set() and state.generation >= 1


def test_changes_flow_into_snapshots(kubeapi: FakeKubeAPI, make_state: MakeState) -> None:
    kubeapi.add("nodes", node("n1", "192.168.0.1", "10.244.1.0/24"))
    state = make_state("n1")
    wait_until(state.synced, what="sync")
    state.wait_changed(0)
    before = state.pods()

    kubeapi.add("pods", pod("a", "n1"))
    assert state.wait_changed(5)
    wait_until(lambda: _names(state) == {"a"}, what="ADDED")
    assert before == {}  # an earlier snapshot does not change under the caller

    kubeapi.update("pods", pod("a", "n1", "10.244.1.7"))
    wait_until(lambda: [p.pod_ip for p in state.pods().values()] == [IPv4Address("10.244.1.7")],
               what="MODIFIED")
    terminating = kubeapi.get("pods", "a")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kubeapi.update("pods", terminating)
    wait_until(lambda: all(p.deleting for p in state.pods().values()), what="deleting")

    # A change the data path does not care about moves no snapshot and wakes nobody.
    generation = state.generation
    state.wait_changed(0)
    kubeapi.update("pods", {**kubeapi.get("pods", "a"),
                            "metadata": {**terminating["metadata"], "labels": {"x": "y"}}})
    wait_until(lambda: _caught_up(kubeapi, state, "Pod"), what="the label change")
    assert state.generation == generation and not state.changed.is_set()

    kubeapi.delete("pods", "a")
    wait_until(lambda: state.pods() == {}, what="DELETED")

    kubeapi.add("nodes", node("n2", "192.168.0.2"))
    wait_until(lambda: "n2" in state.nodes(), what="node ADDED")
    kubeapi.update("nodes", node("n2", "192.168.0.2", "10.244.2.0/24"))
    wait_until(lambda: state.nodes()["n2"].pod_cidr == IPv4Network("10.244.2.0/24"),
               what="podCIDR assigned")
    kubeapi.update("nodes", node("n2", None, "10.244.2.0/24"))  # lost its InternalIP
    wait_until(lambda: "n2" not in state.nodes(), what="unusable node dropped")
    kubeapi.add("nodes", node("n3", "192.168.0.3"))
    kubeapi.delete("nodes", "n1")
    wait_until(lambda: set(state.nodes()) == {"n3"}, what="node DELETED")
    assert state.stats()["Pod"].relists == 0 and state.stats()["Node"].relists == 0


def test_pods_are_limited_to_this_node(kubeapi: FakeKubeAPI, make_state: MakeState) -> None:
    kubeapi.add("pods", pod("mine", "n1", "10.244.1.2"))
    kubeapi.add("pods", pod("theirs", "n2", "10.244.2.2"))
    state = make_state("n1")
    wait_until(state.synced, what="sync")
    assert _names(state) == {"mine"}

    kubeapi.add("pods", pod("unscheduled", ""))
    kubeapi.add("pods", pod("theirs-too", "n2"))
    kubeapi.update("pods", pod("unscheduled", "n1"))  # bound to us: enters the selection
    wait_until(lambda: _names(state) == {"mine", "unscheduled"}, what="the bound pod")
    wait_until(lambda: _caught_up(kubeapi, state, "Pod"), what="the watch to catch up")
    assert _names(state) == {"mine", "unscheduled"}
    pod_requests = kubeapi.requests(path=PODS)
    assert pod_requests and {r.params.get("fieldSelector") for r in pod_requests} == {
        "spec.nodeName=n1"}


@pytest.mark.parametrize("http", [False, True], ids=["error-event", "http-410"])
def test_gone_relists_and_forgets_what_was_deleted_meanwhile(
        kubeapi: FakeKubeAPI, make_state: MakeState, http: bool) -> None:
    for name in ("a", "b", "c"):
        kubeapi.add("pods", pod(name, "n1"))
    kubeapi.add("nodes", node("n1", "192.168.0.1"))
    kubeapi.add("nodes", node("n2", "192.168.0.2"))
    state = make_state("n1")
    wait_until(lambda: kubeapi.open_watches() == 2, what="the watches")

    kubeapi.pause("503")  # the watches break and cannot come back...
    kubeapi.delete("pods", "b")  # ...while these happen...
    kubeapi.add("pods", pod("d", "n1"))
    kubeapi.delete("nodes", "n2")
    stale = state.stats()["Pod"].resource_version
    kubeapi.expire_history(http=http)  # ...and the server forgets them
    t = time.monotonic()
    kubeapi.resume()

    # Counters move after the consumer has applied a list, so wait for them too.
    wait_until(lambda: _names(state) == {"a", "c", "d"} and set(state.nodes()) == {"n1"}
               and all(s.relists == 1 for s in state.stats().values()), what="convergence")
    gone = [r for r in kubeapi.requests(path=PODS, watch=True, since=t)
            if r.resource_version == stale and r.status != 503]  # 503: just before resume()
    assert gone and gone[0].status == (410 if http else 200)  # 200: ERROR event in the stream
    assert len(kubeapi.requests(path=PODS, watch=False, since=t)) == 1
    assert state.synced()


def test_outage_converges_with_bounded_backoff(kubeapi: FakeKubeAPI,
                                               make_state: MakeState) -> None:
    for name in ("a", "b", "c"):
        kubeapi.add("pods", pod(name, "n1"))
    kubeapi.add("nodes", node("n1", "192.168.0.1"))
    kubeapi.add("nodes", node("n2", "192.168.0.2"))
    state = make_state("n1")  # backoff 0.2 s doubling to 1 s, up to +50 % jitter
    wait_until(lambda: kubeapi.open_watches() == 2, what="the watches")

    t0 = time.monotonic()
    kubeapi.pause("refuse")  # connections closed unanswered, as a restarting API server
    kubeapi.delete("pods", "a")
    kubeapi.add("pods", pod("e", "n1"))
    kubeapi.add("nodes", node("n3", "192.168.0.3"))
    kubeapi.update("nodes", node("n2", "192.168.0.22"))
    wait_until(lambda: all(s.errors >= 4 for s in state.stats().values()), timeout=10,
               what="four failures per watch")
    down_for = time.monotonic() - t0
    attempts = kubeapi.requests(since=t0)
    errors = sum(s.errors for s in state.stats().values())
    # Four failures wait at least 0.2 + 0.4 + 0.8 s; each failed request is at most two
    # connections (the request and urllib3's single retry); a hot loop would be thousands.
    assert down_for >= 1.3
    assert all(s.errors <= 6 for s in state.stats().values())
    assert len(attempts) <= 2 * errors
    assert len(attempts) / down_for < 25
    assert state.synced() and _names(state) == {"a", "b", "c"}  # stale but kept

    t1 = time.monotonic()
    kubeapi.resume()
    wait_until(lambda: _names(state) == {"b", "c", "e"}
               and set(state.nodes()) == {"n1", "n2", "n3"}
               and state.nodes()["n2"].internal_ip == IPv4Address("192.168.0.22"),
               timeout=5, what="convergence")
    assert time.monotonic() - t1 < 1.0 * 1.5 + 1.0  # at most one capped backoff away
    assert all(s.relists == 0 for s in state.stats().values())  # resumed from the RV


def test_not_synced_until_every_watch_has_listed(kubeapi: FakeKubeAPI,
                                                 make_state: MakeState) -> None:
    kubeapi.add("nodes", node("n1", "192.168.0.1"))
    kubeapi.add("pods", pod("a", "n1"))
    kubeapi.add("networkpolicies", policy("deny-all", "prod"))
    kubeapi.pause("503", paths={POLICIES})
    state = make_state("n1", watch_policies=True)
    wait_until(lambda: state.stats()["NetworkPolicy"].errors >= 1, what="a failed policy list")
    wait_until(lambda: state.stats()["Pod"].synced and state.stats()["Node"].synced,
               what="pods and nodes listed")
    assert not state.synced()  # pods and nodes are known, policies are not: collect nothing
    assert _names(state) == {"a"} and state.policies() == {}

    kubeapi.resume()
    wait_until(state.synced, what="sync")
    policies = state.policies()
    assert list(policies) == ["prod/deny-all"]
    assert policies["prod/deny-all"]["spec"]["policyTypes"] == ["Ingress"]  # the raw dict
    policies["prod/deny-all"]["spec"].clear()  # a copy: the store is not touched
    assert state.policies()["prod/deny-all"]["spec"]


def test_stop_returns_promptly(kubeapi: FakeKubeAPI, make_state: MakeState) -> None:
    streaming = make_state("n1", watch_policies=True)
    wait_until(lambda: kubeapi.open_watches() == 4, what="the watches")
    t = time.monotonic()
    streaming.stop()
    assert time.monotonic() - t < 1.0
    wait_until(lambda: kubeapi.open_watches() == 0, what="the streams to close")

    kubeapi.pause("503")
    backing_off = make_state("n1")
    wait_until(lambda: all(s.errors >= 3 for s in backing_off.stats().values()),
               what="a backoff of 0.8 s or more")
    t = time.monotonic()
    backing_off.stop()
    assert time.monotonic() - t < 0.5


def test_parsing_tolerates_partial_objects() -> None:
    assert parse_node({}) is None
    assert parse_node({"metadata": {"name": "x"}, "status": {"addresses": [
        {"type": "ExternalIP", "address": "1.2.3.4"}]}}) is None
    assert parse_node({"metadata": {"name": "x"}, "spec": {"podCIDR": "garbage"},
                       "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
                      ) == NodeInfo("x", IPv4Address("10.0.0.1"), None)
    assert parse_pod({"metadata": {"name": "no-uid"}}) is None
    info = parse_pod({"metadata": {"uid": "u"}})
    assert info == PodInfo("u", "", "", None, False, "Unknown", False)
