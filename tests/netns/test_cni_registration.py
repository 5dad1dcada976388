"""Endpoints registered the way the CNI plugin registers them (the agent's cni_* operations):
programmed before the answer, removed on DEL, garbage-collected, re-adopted after a restart."""

from __future__ import annotations

import pytest

from agent import traffic
from agent.control import request
from agent.errors import RinglaneError
from agent.sandbox import Node, Pod
from tests.netns.conftest import SandboxFactory


def add(node: Node, pod: Pod, container: str) -> dict[str, object]:
    result: dict[str, object] = request(node.socket, "cni_add", containerId=container,
                                        ifName="eth0", netns=f"/run/netns/{pod.netns}",
                                        ip=str(pod.ip), podNamespace="default", podName=pod.name)
    return result


def encaps(node: Node) -> int:
    return int(node.stats()["core"]["worker"]["values"]["encap"])


def test_cni_add_programs_before_answering_and_del_removes(make_sandbox: SandboxFactory) -> None:
    sb = make_sandbox(static_endpoints=False)
    n1, n2 = sb.nodes
    for node in sb.nodes:
        for i, pod in enumerate(node.pods):
            assert add(node, pod, f"c-{node.name}-{i}")["hostIfname"] == pod.host_ifname
    src, dst = n1.pods[0], n2.pods[0]
    before = encaps(n1)
    assert traffic.ping(src, dst, count=5, interval=0.02).received == 5
    assert encaps(n1) >= before + 5  # accelerated from the first packet after ADD answered
    assert request(n1.socket, "cni_check", containerId="c-n1-0", ifName="eth0")["ip"] == \
        str(src.ip)
    assert request(n1.socket, "cni_del", containerId="c-n1-0", ifName="eth0")["removed"]
    assert not request(n1.socket, "cni_del", containerId="c-n1-0", ifName="eth0")["removed"]
    before = encaps(n1)
    assert traffic.ping(src, dst, count=5, interval=0.02).received == 5  # kernel path
    assert encaps(n1) == before
    with pytest.raises(RinglaneError, match="no endpoint registered"):
        request(n1.socket, "cni_check", containerId="c-n1-0", ifName="eth0")


def test_cni_gc_and_restart_readoption(make_sandbox: SandboxFactory) -> None:
    sb = make_sandbox(static_endpoints=False)
    n1 = sb.nodes[0]
    add(n1, n1.pods[0], "keep")
    add(n1, n1.pods[1], "stale")
    assert request(n1.socket, "cni_gc", valid=[{"containerId": "keep", "ifName": "eth0"}]) == \
        {"removed": 1}
    assert set(request(n1.socket, "status")["endpoints"]) == {str(n1.pods[0].ip)}
    sb.stop_agent(n1)
    sb.start_agent(n1)  # registrations are on disk: the restarted agent re-adopts them
    assert set(request(n1.socket, "status")["endpoints"]) == {str(n1.pods[0].ip)}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ip": "10.244.9.9"}, "outside this node's podCIDR"),
        ({"ip": "not-an-ip"}, "ip:"),
        ({"netns": "/run/netns/does-not-exist"}, "cannot open network namespace"),
        ({"ifName": "eth9"}, "no interface 'eth9'"),
        ({"containerId": ""}, "containerId"),
    ],
)
def test_cni_add_bad_requests_are_refused_and_leave_nothing(
        make_sandbox: SandboxFactory, fields: dict[str, str], message: str) -> None:
    sb = make_sandbox(static_endpoints=False, pods=1)
    n1 = sb.nodes[0]
    pod = n1.pods[0]
    req = {"containerId": "c1", "ifName": "eth0", "netns": f"/run/netns/{pod.netns}",
           "ip": str(pod.ip), **fields}
    with pytest.raises(RinglaneError, match=message):
        request(n1.socket, "cni_add", 5.0, **req)
    assert request(n1.socket, "status")["endpoints"] == {}
