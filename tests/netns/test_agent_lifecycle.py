"""The agent as an operator meets it: bad input, SIGTERM, --cleanup, busy polling."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from agent import traffic
from agent.api import convert
from agent.api.client import Client
from agent.policy.model import CidrPeer, Direction, LabelSelector, Policy, Rule
from agent.sandbox import Node, Sandbox
from tests.netns.conftest import SandboxFactory


def xdp_links(node: Node) -> list[str]:
    out = node.run("ip", "-o", "link", "show").stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if " xdp" in line]


def has_link(node: Node, name: str) -> bool:
    return node.run("ip", "link", "show", name, check=False).returncode == 0


def run_agent(sb: Sandbox, node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sb.agent_cmd(node, *args), capture_output=True, text=True,
                          timeout=60)


def test_missing_underlay_is_a_clear_error_and_changes_nothing(make_sandbox: SandboxFactory,
                                                                tmp_path: Path) -> None:
    sb = make_sandbox()
    node = sb.nodes[0]
    sb.stop_agent(node)
    run_agent(sb, node, "--cleanup")
    p = run_agent(sb, node, "--underlay-interface", "nope0")
    assert p.returncode == 2
    assert "no interface named 'nope0'" in p.stderr
    assert not has_link(node, "rl-vxlan")
    assert not node.pin_dir.exists()
    assert xdp_links(node) == []


def test_sigterm_keeps_fallback_and_cleanup_removes_everything(sandbox: Sandbox) -> None:
    n1, n2 = sandbox.nodes
    assert sorted(xdp_links(n1)) == ["rlv1", "rlv2", "ul0"]
    # n1p2 may not send to n2's pods: a policy the node must keep enforcing without its agent
    isolated = Policy("no-n2", "default", subject=LabelSelector.of({"pod": n1.pods[1].name}),
                      directions=frozenset({Direction.EGRESS}), egress=(Rule(peers=(CidrPeer(
                          IPv4Network("0.0.0.0/0"), frozenset({n2.pod_cidr})),)),))
    with Client.unix(n1.run_dir / "api.sock") as client:
        client.apply([convert.policy_to_proto(isolated)])
    policies = n1.run_dir / "state" / "policies.pb"
    assert policies.exists()
    assert sandbox.stop_agent(n1, signal.SIGTERM) == 0
    # stopped accelerating (no sockets), but the programs stay to keep rejecting what they
    # reject (docs/threat-model.md), and pods still reach each other over the kernel
    assert sorted(xdp_links(n1)) == ["rlv1", "rlv2", "ul0"]
    assert has_link(n1, "rl-vxlan") and n1.pin_dir.exists()
    assert traffic.ping(n1.pods[0], n2.pods[0], count=3, interval=0.02).received == 3
    assert traffic.ping(n1.pods[1], n2.pods[0], count=3, interval=0.02).received == 0
    p = run_agent(sandbox, n1, "--cleanup")
    assert p.returncode == 0, p.stderr
    assert not policies.exists()
    assert xdp_links(n1) == []
    assert not has_link(n1, "rl-vxlan")
    assert not n1.pin_dir.exists()
    assert n1.run("ip", "route", "show", "10.244.2.0/24").stdout == ""
    # GRO on the pod veths is back to what it was before the agent (veth default: off)
    assert "generic-receive-offload: off" in n1.run("ethtool", "-k", "rlv1").stdout


def test_busy_poll_mode_carries_traffic(make_sandbox: SandboxFactory) -> None:
    sb = make_sandbox("--busy-poll", "true")
    n1, n2 = sb.nodes
    assert traffic.ping(n1.pods[0], n2.pods[0], count=20, interval=0.01).received == 20
    core = n1.stats()["core"]
    assert core["worker"]["values"]["encap"] >= 20
    assert core["sleeps"] == 0  # busy polling never sleeps in poll()


def test_ringlanectl_reads_status_and_stats(sandbox: Sandbox, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """ringlanectl over the agent's gRPC API at runDir/api.sock: the JSON an operator (and the
    kind e2e) reads, and exit code 3 when no agent answers at the socket."""
    from agent import ctl

    node, peer = sandbox.nodes
    sock = str(node.run_dir / "api.sock")

    def run_json(*args: str) -> Any:
        capsys.readouterr()
        assert ctl.run(["--socket", sock, "-o", "json", *args]) == ctl.OK
        return json.loads(capsys.readouterr().out)

    assert traffic.ping(node.pods[0], peer.pods[0], count=2, interval=0.02).received == 2
    status = run_json("status")
    assert status["node"] == node.name and status["ready"] is True
    assert {e["ip"] for e in run_json("endpoints")} == {str(p.ip) for p in node.pods}
    (one,) = run_json("endpoints", str(node.pods[0].ip))
    assert one["hostIfname"] == node.pods[0].host_ifname and one["ingressPolicies"] == []
    stats = run_json("stats")
    assert stats["node"] == node.name and stats["core"]["encap"] >= 2
    assert stats["xdp"]["pod_redirect"] >= 2
    counters = {e["ip"]: e["counters"] for e in stats["endpoints"]}
    assert counters[str(node.pods[0].ip)]["tx_packets"] >= 2
    assert [link["peerIp"] for link in run_json("links")] == [str(peer.ip)]
    assert run_json("policy", "list") == []
    capsys.readouterr()
    assert ctl.run(["--socket", sock, "status"]) == ctl.OK  # the table
    assert node.name in capsys.readouterr().out

    # no agent at the socket: 3, with a message that says so
    assert ctl.run(["--socket", str(tmp_path / "missing.sock"), "status"]) == ctl.UNREACHABLE
    assert "no agent socket" in capsys.readouterr().err
    stale = socket.socket(socket.AF_UNIX)  # bound, never listening: a dead agent's socket
    stale.bind(str(tmp_path / "stale.sock"))
    try:
        assert ctl.run(["--socket", str(tmp_path / "stale.sock"), "--timeout", "5",
                        "status"]) == ctl.UNREACHABLE
        assert "cannot reach the agent" in capsys.readouterr().err
    finally:
        stale.close()


def test_metrics_and_probes(sandbox: Sandbox) -> None:
    n1, n2 = sandbox.nodes
    traffic.ping(n1.pods[0], n2.pods[0], count=3, interval=0.02)
    get = "import sys, urllib.request as u; print(u.urlopen('http://127.0.0.1:9965' + " \
          "sys.argv[1]).read().decode())"
    metrics = n1.run(sys.executable, "-c", get, "/metrics").stdout
    assert 'ringlane_ringcore_total{counter="encap"}' in metrics
    assert 'ringlane_xdp_packets_total{outcome="pod_redirect"}' in metrics
    assert "ringlane_reconcile_seconds_count" in metrics
    assert n1.run(sys.executable, "-c", get, "/readyz").stdout.strip() == "ready"
    assert n1.run(sys.executable, "-c", get, "/healthz").stdout.strip() == "ok"
