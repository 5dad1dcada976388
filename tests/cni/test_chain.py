"""`ringlane` chained after Debian's real plugins, executed the way a runtime executes a
conflist (tests/cni/chain.py): ptp + host-local + ringlane and bridge + host-local + ringlane,
cniVersion 1.0.0, in network namespaces made here, with the agent double behind agentSocket.

The plugins run in a namespace that plays the node's root namespace, so the veths, routes,
bridge and forwarding sysctl they create on "the host" go away with it; host-local keeps its
leases under tmp_path. Root: namespaces and the plugins' netlink work need it.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.cni import queue, spec
from tests.cni.agent_double import AgentDouble
from tests.cni.chain import Attachment, ChainError, Netns, Runtime
from tests.cni.conftest import DEBIAN_CNI_DIR
from tests.conftest import require_root, require_tools


@dataclass
class Node:
    host: Netns  # the node's "root" namespace: the plugins run here
    pod: Netns
    subnet: str


@pytest.fixture
def node() -> Iterator[Node]:
    require_root()
    require_tools("ip")
    for p in ("ptp", "bridge", "host-local"):
        if not (DEBIAN_CNI_DIR / p).exists():
            pytest.skip(f"needs {DEBIAN_CNI_DIR}/{p} (Debian containernetworking-plugins)")
    made: list[Netns] = []
    try:
        made.append(Netns.create("rlcni-h-"))
        made.append(Netns.create("rlcni-p-"))
        yield Node(made[0], made[1], f"10.199.{secrets.randbelow(250) + 1}.0/24")
    finally:
        for ns in made:
            ns.delete()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(ns.name in listed for ns in made), listed


def primary(kind: str, subnet: str, data_dir: Path) -> dict[str, Any]:
    ipam = {"type": "host-local", "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(data_dir)}
    if kind == "ptp":
        return {"type": "ptp", "ipMasq": False, "ipam": ipam}
    return {"type": "bridge", "bridge": "rl-cni0", "isGateway": True, "ipMasq": False,
            "ipam": ipam}


def runtime(kind: str, node: Node, tmp_path: Path, plugin_dir: Path, agent_socket: Path,
            **ours: Any) -> Runtime:
    ringlane = {"type": "ringlane", "agentSocket": str(agent_socket),
                "stateDir": str(tmp_path / "state"), **ours}
    conflist = {"cniVersion": "1.0.0", "name": f"rl-{kind}",
                "plugins": [primary(kind, node.subnet, tmp_path / "ipam"), ringlane]}
    return Runtime(conflist, [str(plugin_dir), str(DEBIAN_CNI_DIR)], host_netns=node.host.path)


def attachment(node: Node) -> Attachment:
    return Attachment(f"ctr-{secrets.token_hex(8)}", node.pod.path, "eth0",
                      {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default",
                       "K8S_POD_NAME": "web-1"})


def pod_ip(result: dict[str, Any], netns: str) -> str:
    """The IPv4 the primary plugin gave the pod's interface (sandbox == netns)."""
    index = next(i for i, itf in enumerate(result["interfaces"]) if itf.get("sandbox") == netns)
    return str(next(ip["address"] for ip in result["ips"]
                    if ip.get("interface") == index).split("/")[0])


def leased(tmp_path: Path, kind: str, ip: str) -> bool:
    return (tmp_path / "ipam" / f"rl-{kind}" / ip).exists()


def assert_cleaned_up(node: Node, tmp_path: Path, kind: str, ip: str) -> None:
    assert node.pod.ip("link", "show", "eth0").returncode != 0, "eth0 left in the pod"
    assert not leased(tmp_path, kind, ip), f"{ip} still leased by host-local"


@pytest.mark.parametrize("kind", ["ptp", "bridge"])
def test_chain_add_check_del(kind: str, node: Node, tmp_path: Path, plugin_dir: Path,
                             agent: AgentDouble) -> None:
    rt = runtime(kind, node, tmp_path, plugin_dir, agent.path, failClosed=True)
    att = attachment(node)
    result = rt.add(att)
    first, last = rt.runs
    assert (first.plugin, last.plugin) == (kind, "ringlane")
    assert result == first.output  # passed through unchanged
    assert result["cniVersion"] == "1.0.0"
    ip = pod_ip(result, node.pod.path)
    assert agent.requests == [{"op": "cni_add", "containerId": att.container_id,
                               "ifName": "eth0", "netns": node.pod.path, "ip": ip,
                               "podNamespace": "default", "podName": "web-1"}]
    assert f"inet {ip}/" in node.pod.ip("-4", "addr", "show", "eth0").stdout
    assert leased(tmp_path, kind, ip)
    host_side = next(i["name"] for i in result["interfaces"] if not i.get("sandbox"))
    assert node.host.ip("link", "show", host_side).returncode == 0  # on the node ...
    assert subprocess.run(["ip", "link", "show", host_side],  # ... not on this machine
                          capture_output=True).returncode != 0

    rt.check(att, result)
    assert agent.ops() == ["cni_add", "cni_check"]

    rt.runs.clear()
    rt.delete(att, result)
    assert [r.plugin for r in rt.runs] == ["ringlane", kind]  # reverse order
    assert rt.runs[0].config["prevResult"] == result
    rt.delete(Attachment(att.container_id, "", "eth0"))  # containerd's second DEL
    assert "prevResult" not in rt.runs[-1].config and rt.runs[-1].env["CNI_NETNS"] == ""
    assert agent.requests[2:] == [{"op": "cni_del", "containerId": att.container_id,
                                   "ifName": "eth0"}] * 2
    assert_cleaned_up(node, tmp_path, kind, ip)
    assert queue.pending(str(tmp_path / "state")) == []


@pytest.mark.parametrize("kind", ["ptp", "bridge"])
def test_chain_agent_down_fail_open(kind: str, node: Node, tmp_path: Path, plugin_dir: Path,
                                    sock_dir: Path) -> None:
    """The pod starts on the kernel path; its DELs wait on disk for the agent."""
    rt = runtime(kind, node, tmp_path, plugin_dir, sock_dir / "down.sock")
    att = attachment(node)
    result = rt.add(att)
    assert result == rt.runs[0].output
    assert "kernel path" in rt.runs[-1].stderr
    ip = pod_ip(result, node.pod.path)
    rt.delete(att, result)
    rt.delete(Attachment(att.container_id, "", "eth0"))
    assert_cleaned_up(node, tmp_path, kind, ip)
    state = str(tmp_path / "state")
    assert [(e["op"], e["containerId"], e["ifName"]) for e in queue.drain(state)] == \
        [("cni_del", att.container_id, "eth0")]
    assert queue.drain(state) == []


def test_chain_agent_down_fail_closed(node: Node, tmp_path: Path, plugin_dir: Path,
                                      sock_dir: Path) -> None:
    """ADD fails with 11 (try again later); the runtime's DEL after the failed ADD (no
    prevResult: nothing was cached) still cleans up what ptp and host-local made."""
    rt = runtime("ptp", node, tmp_path, plugin_dir, sock_dir / "down.sock", failClosed=True)
    att = attachment(node)
    with pytest.raises(ChainError) as failed:
        rt.add(att)
    assert failed.value.run.plugin == "ringlane"
    assert failed.value.error["code"] == spec.TRY_AGAIN_LATER
    assert "agent not reachable" in failed.value.error["msg"]
    ip = pod_ip(rt.runs[0].output, node.pod.path)
    rt.delete(att)
    assert_cleaned_up(node, tmp_path, "ptp", ip)
    assert [e["containerId"] for e in queue.drain(str(tmp_path / "state"))] == \
        [att.container_id]


def test_chain_agent_hangs(node: Node, tmp_path: Path, plugin_dir: Path,
                           agent: AgentDouble) -> None:
    """An agent that never confirms: ADD gives up after timeoutMs (fail-closed: 11)."""
    agent.mode = "hang"
    rt = runtime("ptp", node, tmp_path, plugin_dir, agent.path, failClosed=True, timeoutMs=300)
    att = attachment(node)
    with pytest.raises(ChainError) as failed:
        rt.add(att)
    assert failed.value.error["code"] == spec.TRY_AGAIN_LATER
    assert "did not answer cni_add within 300 ms" in failed.value.error["msg"]
    assert 0.3 <= failed.value.run.seconds < 2.0
    assert agent.ops() == ["cni_add"]
    agent.mode = "ok"
    rt.delete(att)
    assert agent.ops() == ["cni_add", "cni_del"]
