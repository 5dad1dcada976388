"""Pods made the way kubelet makes them: the real ptp (or bridge) and host-local plugins, then
ours, run by a CNI runtime in each node's namespace against the node's real agent."""

from __future__ import annotations

import secrets
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from agent import traffic
from agent.control import request
from agent.sandbox import Node, Pod, Sandbox
from tests.cni.chain import Attachment, Netns, Runtime
from tests.cni.conftest import CONSOLE_SCRIPT, DEBIAN_CNI_DIR
from tests.conftest import require_tools
from tests.netns.conftest import SandboxFactory


def conflist(kind: str, node: Node, data_dir: Path) -> dict[str, Any]:
    ipam = {"type": "host-local", "dataDir": str(data_dir),
            "ranges": [[{"subnet": str(node.pod_cidr), "rangeStart": str(
                node.pod_cidr.network_address + 100)}]],
            "routes": [{"dst": "0.0.0.0/0"}]}
    primary = ({"type": "ptp", "ipMasq": False, "mtu": 1450, "ipam": ipam} if kind == "ptp" else
               {"type": "bridge", "bridge": "rl-cni0", "isGateway": True, "ipMasq": False,
                "mtu": 1450, "ipam": ipam})
    return {"cniVersion": "1.0.0", "name": f"rl-{kind}",
            "plugins": [primary, {"type": "ringlane", "agentSocket": str(node.socket),
                                  "stateDir": str(node.run_dir / "cni"), "failClosed": True}]}


def make_pod(rt: Runtime, node: Node, made: list[Netns]) -> tuple[Attachment, Pod, Any]:
    ns = Netns.create(f"{node.netns}c")
    made.append(ns)
    att = Attachment(f"ctr-{secrets.token_hex(6)}", ns.path, "eth0",
                     {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default",
                      "K8S_POD_NAME": ns.name})
    result = rt.add(att)
    ip = IPv4Address(result["ips"][0]["address"].split("/")[0])
    return att, Pod(name=ns.name, netns=ns.name, ip=ip, host_ifname=""), result


@pytest.mark.parametrize("kind", ["ptp", "bridge"])
def test_chained_pods_are_accelerated_and_deleted(kind: str, make_sandbox: SandboxFactory,
                                                  tmp_path: Path) -> None:
    require_tools("ip")
    if not (DEBIAN_CNI_DIR / kind).exists() or not CONSOLE_SCRIPT.exists():
        pytest.skip(f"needs {DEBIAN_CNI_DIR}/{kind} and {CONSOLE_SCRIPT}")
    plugins = tmp_path / "bin"
    plugins.mkdir()
    (plugins / "ringlane").symlink_to(CONSOLE_SCRIPT)
    sb: Sandbox = make_sandbox(static_endpoints=False, pods=1)
    made: list[Netns] = []
    try:
        pods = []
        for node in sb.nodes:
            rt = Runtime(conflist(kind, node, tmp_path / node.name),
                         [str(plugins), str(DEBIAN_CNI_DIR)], host_netns=f"/run/netns/{node.netns}")
            att, pod, result = make_pod(rt, node, made)
            pods.append((rt, att, pod, node, result))
        (rt1, att1, pod1, n1, result1), (_, _, pod2, _, _) = pods
        # ADD answered only once programmed: the first ping is already accelerated
        assert set(request(n1.socket, "status")["endpoints"]) == {str(pod1.ip)}
        before = n1.stats()["core"]["worker"]["values"]["encap"]
        assert traffic.ping(pod1, pod2, count=5, interval=0.02).received == 5
        assert n1.stats()["core"]["worker"]["values"]["encap"] >= before + 5
        assert traffic.tcp_transfer(pod1, pod2, size=2 << 20).exact
        rt1.check(att1, result1)
        rt1.delete(att1, result1)
        assert request(n1.socket, "status")["endpoints"] == {}
    finally:
        for ns in made:
            ns.delete()
