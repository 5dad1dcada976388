"""A 3-node cluster in namespaces, one real agent per node watching a test API endpoint that
speaks the real REST + watch protocol: pods adopted by IP, nodes added and removed, pods
deleted, an agent killed under traffic, the API endpoint down for a while."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent import traffic
from agent.control import request
from agent.sandbox import Node, Sandbox
from tests.conftest import require_root, require_tools
from tests.kubeapi.fixtures import api_on_switch, wait_until
from tests.kubeapi.server import FakeKubeAPI, node, pod

wait_for = partial(wait_until, timeout=15.0)


class Cluster:
    """The sandbox plus its API endpoint, with the objects that describe it."""

    def __init__(self, sb: Sandbox, api: FakeKubeAPI) -> None:
        self.sb = sb
        self.api = api

    def add_node(self, n: Node) -> None:
        self.api.add("nodes", node(n.name, str(n.ip), str(n.pod_cidr)))

    def add_pods(self, n: Node) -> None:
        for p in n.pods:
            self.api.add("pods", pod(p.name, n.name, str(p.ip)))

    def endpoints(self, n: Node) -> set[str]:
        eps: dict[str, int] = request(n.socket, "status")["endpoints"]
        return set(eps)

    def adopted(self, n: Node) -> bool:
        return self.endpoints(n) == {str(p.ip) for p in n.pods}

    def encap(self, n: Node) -> int:
        return int(n.stats()["core"]["worker"]["values"]["encap"])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_root()
    require_tools("ip", "nsenter", "ping")
    sb = Sandbox(nodes=3, pods=1)
    try:
        sb.up()
        with api_on_switch(sb, tmp_path / "kubeconfig") as api:
            c = Cluster(sb, api)
            for n in sb.nodes[:2]:  # n3 joins later
                c.add_node(n)
            for n in sb.nodes:
                c.add_pods(n)
            for n in sb.nodes[:2]:  # an agent waits for its own Node object: n3's later
                sb.start_agent(n)
            yield c
    finally:
        sb.close()


def ping_ok(a: Any, b: Any) -> bool:
    return traffic.ping(a, b, count=2, interval=0.02, timeout=0.5).received == 2


def test_pods_adopted_nodes_join_and_leave_pods_deleted(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.sb.nodes
    p1, p2, p3 = (n.pods[0] for n in cluster.sb.nodes)
    # pods that existed before the agents were adopted by IP, without restarting them
    for n in (n1, n2):
        wait_for(partial(cluster.adopted, n), what="adoption")
    before = cluster.encap(n1)
    assert ping_ok(p1, p2)
    assert cluster.encap(n1) >= before + 2  # through the ring core
    # n3 is not in the API yet: n1 has no way to its pods
    assert not ping_ok(p1, p3)
    cluster.add_node(n3)
    cluster.sb.start_agent(n3)
    wait_for(lambda: ping_ok(p1, p3) and ping_ok(p3, p2), what="n3 joined")
    # n2 leaves: its podCIDR is unprogrammed everywhere (route and ring core)
    cluster.api.delete("nodes", n2.name)
    wait_for(lambda: n1.run("ip", "route", "show", str(n2.pod_cidr)).stdout == "",
             what="n2's route removed")
    assert not ping_ok(p1, p2)
    # a pod deleted in the API stops being served on its node
    cluster.api.delete("pods", p3.name, "default")
    wait_for(lambda: cluster.endpoints(n3) == set(), what="pod deletion")


def test_agent_killed_and_restarted_under_traffic(cluster: Cluster) -> None:
    n1, n2, _ = cluster.sb.nodes
    p1, p2 = n1.pods[0], n2.pods[0]
    wait_for(lambda: cluster.endpoints(n1) == {str(p1.ip)}, what="adoption")
    count, interval = 800, 0.005
    pinger = p1.popen("ping", "-q", "-c", str(count), "-i", str(interval), "-W", "1",
                      str(p2.ip), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    cluster.sb.stop_agent(n1, signal.SIGKILL)
    time.sleep(0.5)
    cluster.sb.start_agent(n1)
    wait_for(lambda: cluster.endpoints(n1) == {str(p1.ip)}, what="re-adoption")
    out, _ = pinger.communicate(timeout=60)
    sent, received = traffic.parse_ping_summary(out)
    print(f"\nkill+restart (Kubernetes mode) under ping -i {interval}: "
          f"{sent} sent, {sent - received} lost")
    assert sent - received <= sent // 20
    encap = cluster.encap(n1)
    assert ping_ok(p1, p2) and cluster.encap(n1) > encap  # accelerated again


def test_api_down_keeps_the_data_path_and_resyncs_after(cluster: Cluster) -> None:
    n1, n2, _ = cluster.sb.nodes
    p1, p2 = n1.pods[0], n2.pods[0]
    wait_for(lambda: cluster.endpoints(n1) == {str(p1.ip)}, what="adoption")
    cluster.api.pause("refuse")
    cluster.api.drop_connections()
    time.sleep(2.0)  # watches fail and back off; nothing on the node may change meanwhile
    assert cluster.endpoints(n1) == {str(p1.ip)}
    encap = cluster.encap(n1)
    assert ping_ok(p1, p2) and cluster.encap(n1) > encap
    # while the API is away the pod is deleted; after it is back, the agent converges
    cluster.api.delete("pods", p1.name, "default")
    cluster.api.expire_history()  # the watch cannot resume: a relist must notice the deletion
    cluster.api.resume()
    wait_for(lambda: cluster.endpoints(n1) == set(), what="resync after the outage")
    assert request(n1.socket, "status")["ready"]
    get = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9965/metrics')" \
          ".read().decode())"
    metrics = n1.run(sys.executable, "-c", get).stdout
    relists = [line for line in metrics.splitlines()
               if line.startswith('ringlane_watch_relists_total{kind="Pod"}')]
    assert relists and float(relists[0].split()[-1]) >= 1, relists
