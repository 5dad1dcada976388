"""A multi-node cluster in network namespaces: what `ringlane demo`, the netns tests and the
benchmarks run on.

    node i (netns <prefix>-n<i>):  underlay ul0 192.168.250.<i>/24, podCIDR 10.244.<i>.0/24,
                                   one ringlane-agent (nsenter --net, so it shares our bpffs)
    pod j on node i (<prefix>-n<i>p<j>): eth0 10.244.<i>.<j+1>/32, MTU = underlay MTU - 50,
                                   default via 10.244.<i>.1, wired like the CNI ptp plugin
    underlay: one veth pair for two nodes, a bridge in <prefix>-sw for more

Everything carries the prefix (unique per sandbox) and is removed by close(), even after a
failure half-way through up(): namespaces, pins, run directories, agent processes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from agent.control import request
from agent.errors import RinglaneError

UNDERLAY_MTU = 1500
OVERLAY_MTU = UNDERLAY_MTU - 50


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its stderr (setup commands must not fail quietly)."""
    p = subprocess.run(args, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RinglaneError(f"{' '.join(args)}: {p.stderr.strip() or p.returncode}")
    return p


@dataclass
class Pod:
    name: str
    netns: str
    ip: IPv4Address
    host_ifname: str

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.netns, *args, **kw)

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *args], text=True, **kw)


@dataclass
class Node:
    name: str
    netns: str
    ip: IPv4Address
    pod_cidr: IPv4Network
    run_dir: Path
    pin_dir: Path
    pods: list[Pod] = field(default_factory=list)
    agent: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "agent.sock"

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.netns, *args, **kw)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = request(self.socket, "stats")
        return result


class Sandbox:
    """`with Sandbox(nodes=2, pods=2) as sb: sb.start_agents(); ...`"""

    def __init__(self, *, nodes: int = 2, pods: int = 2, prefix: str | None = None,
                 agent_args: list[str] | None = None,
                 agent_env: dict[str, str] | None = None,
                 static_endpoints: bool = True,
                 kubeconfig: Path | None = None) -> None:
        if not 2 <= nodes <= 50 or not 1 <= pods <= 50:
            raise RinglaneError("sandbox: 2..50 nodes and 1..50 pods per node")
        self.prefix = prefix or f"rl{secrets.token_hex(3)}"
        self.base_run = Path("/run") / f"ringlane-{self.prefix}"
        self.agent_args = agent_args or []
        self.agent_env = {**os.environ, **(agent_env or {})}
        self.static_endpoints = static_endpoints  # False: pods come through CNI registrations
        self.kubeconfig = kubeconfig  # set: agents watch that API instead of a static file
        self.namespaces: list[str] = []
        self.nodes = [
            Node(
                name=f"n{i}", netns=f"{self.prefix}-n{i}", ip=IPv4Address(f"192.168.250.{i}"),
                pod_cidr=IPv4Network(f"10.244.{i}.0/24"), run_dir=self.base_run / f"n{i}",
                pin_dir=Path("/sys/fs/bpf") / f"{self.prefix}-n{i}",
            )
            for i in range(1, nodes + 1)
        ]
        self.pods_per_node = pods

    # -- topology -----------------------------------------------------------------------

    def _netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def up(self) -> Sandbox:
        try:
            self._up()
        except BaseException:
            self.close()
            raise
        return self

    def _up(self) -> None:
        switch = None
        if len(self.nodes) > 2:
            switch = f"{self.prefix}-sw"
            self._netns(switch)
            sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", switch, "link", "set", "br0", "up")
            sh("ip", "-n", switch, "addr", "add", "192.168.250.254/24", "dev", "br0")
        for node in self.nodes:
            self._netns(node.netns)
            node.run_dir.mkdir(parents=True, exist_ok=True)
            for key in ("ip_forward", "conf.all.rp_filter", "conf.default.rp_filter"):
                val = "1" if key == "ip_forward" else "0"
                node.run("sysctl", "-qw", f"net.ipv4.{key}={val}")
        if switch is None:
            a, b = self.nodes
            sh("ip", "link", "add", "ul0", "netns", a.netns, "type", "veth", "peer", "name",
               "ul0", "netns", b.netns)
        else:
            for node in self.nodes:
                sh("ip", "link", "add", "ul0", "netns", node.netns, "type", "veth", "peer",
                   "name", f"p{node.name}", "netns", switch)
                sh("ip", "-n", switch, "link", "set", f"p{node.name}", "master", "br0", "up")
        for node in self.nodes:
            node.run("ip", "link", "set", "ul0", "mtu", str(UNDERLAY_MTU), "up")
            node.run("ip", "addr", "add", f"{node.ip}/24", "dev", "ul0")
            for j in range(1, self.pods_per_node + 1):
                self._add_pod(node, j)

    def _add_pod(self, node: Node, j: int) -> None:
        gw = node.pod_cidr.network_address + 1
        pod = Pod(name=f"{node.name}p{j}", netns=f"{node.netns}p{j}",
                  ip=node.pod_cidr.network_address + 1 + j, host_ifname=f"rlv{j}")
        self._netns(pod.netns)
        sh("ip", "link", "add", "eth0", "netns", pod.netns, "type", "veth", "peer", "name",
           pod.host_ifname, "netns", node.netns)
        pod.run("ip", "link", "set", "eth0", "mtu", str(OVERLAY_MTU), "up")
        pod.run("ip", "addr", "add", f"{pod.ip}/32", "dev", "eth0")
        pod.run("ip", "route", "add", str(gw), "dev", "eth0", "scope", "link")
        pod.run("ip", "route", "add", "default", "via", str(gw), "dev", "eth0")
        node.run("ip", "link", "set", pod.host_ifname, "mtu", str(OVERLAY_MTU), "up")
        node.run("ip", "addr", "add", f"{gw}/32", "dev", pod.host_ifname)
        node.run("ip", "route", "add", f"{pod.ip}/32", "dev", pod.host_ifname)
        node.pods.append(pod)

    @property
    def pods(self) -> list[Pod]:
        return [p for n in self.nodes for p in n.pods]

    # -- agents -------------------------------------------------------------------------

    def static_config(self, node: Node) -> dict[str, Any]:
        return {
            "node": node.name,
            "agent": {"underlayInterface": "ul0", "pinDir": str(node.pin_dir),
                      "runDir": str(node.run_dir), "cniStateDir": str(node.run_dir / "cni"),
                      "stateDir": str(node.run_dir / "state"),
                      "logFormat": "json"},
            "nodes": [{"name": n.name, "ip": str(n.ip), "podCIDR": str(n.pod_cidr)}
                      for n in self.nodes],
            "endpoints": [{"name": p.name, "ip": str(p.ip), "interface": p.host_ifname}
                          for p in node.pods] if self.static_endpoints else [],
            # policy selectors: pods labelled with their name and node
            "pods": [{"name": p.name, "ip": str(p.ip), "labels": {"pod": p.name, "node": n.name}}
                     for n in self.nodes for p in n.pods],
        }

    def agent_cmd(self, node: Node, *extra: str) -> list[str]:
        static = self.static_config(node)
        if self.kubeconfig is None:
            cfg = node.run_dir / "static.yaml"
            cfg.write_text(yaml.safe_dump(static))
            source = ["--static-config", str(cfg)]
        else:
            cfg = node.run_dir / "agent.yaml"
            cfg.write_text(yaml.safe_dump({**static["agent"], "nodeName": node.name}))
            source = ["--config", str(cfg), "--kubeconfig", str(self.kubeconfig)]
        return ["nsenter", f"--net=/run/netns/{node.netns}", "--", sys.executable, "-m",
                "agent.main", *source, *self.agent_args, *extra]

    @property
    def switch_netns(self) -> str | None:
        """The namespace of the underlay bridge (more than two nodes), where a test can put
        what every node must reach (an API endpoint on 192.168.250.254)."""
        return f"{self.prefix}-sw" if len(self.nodes) > 2 else None

    def start_agent(self, node: Node, *, timeout: float = 30.0) -> None:
        node.log_path = node.run_dir / "agent.log"
        logf = node.log_path.open("ab")
        node.agent = subprocess.Popen(self.agent_cmd(node), stdout=logf, stderr=logf,
                                      env=self.agent_env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.agent.poll() is not None:
                raise RinglaneError(f"agent {node.name} exited with {node.agent.returncode}: "
                                    f"{node.log_path.read_text()[-2000:]}")
            try:
                if request(node.socket, "status", timeout=1.0)["ready"]:
                    return
            except RinglaneError:
                pass
            time.sleep(0.05)
        raise RinglaneError(f"agent {node.name} not ready after {timeout:.0f}s")

    def start_agents(self) -> None:
        for node in self.nodes:
            self.start_agent(node)

    def stop_agent(self, node: Node, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if node.agent is None:
            return 0
        node.agent.send_signal(sig)
        try:
            rc = node.agent.wait(timeout)
        except subprocess.TimeoutExpired:
            node.agent.kill()
            rc = node.agent.wait()
        node.agent = None
        return rc

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything, tolerating only what is already gone."""
        for node in self.nodes:
            self.stop_agent(node)
            if node.run_dir.exists() and f"{node.netns}" in self.namespaces:
                subprocess.run(self.agent_cmd(node, "--cleanup"), capture_output=True)
        for ns in reversed(self.namespaces):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        for node in self.nodes:
            shutil.rmtree(node.pin_dir, ignore_errors=True)
        shutil.rmtree(self.base_run, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.close()
