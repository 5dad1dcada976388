"""Ringlane on a real Kubernetes cluster: kind, 1 control plane + 2 workers, kindnet kept.

    tests/e2e/run-kind.sh          (= RINGLANE_E2E_KIND=1 pytest tests/e2e/test_kind.py -v)

In order (the tests share one cluster and run in file order): build the image and load it
into the nodes, `helm install` the chart and wait; every node chained and ready; pods on both
workers talk UDP and TCP and the agents' ring-core counters (ringlanectl in the agent pods)
show the traffic went through the ring core; a NetworkPolicy that admits only a labelled
client to the server is enforced by Ringlane's programs (the server's endpoint counts the
drops; kindnet may enforce it too, and the counter is what tells them apart), from another
node and from the server's own node, and is listed by the agents with origin kubernetes; an
agent is deleted under traffic and traffic goes on; `helm uninstall` leaves every node as
kind made it, and pods still talk over kindnet.

Skipped, with the reason, when docker (a reachable daemon), kind, helm or kubectl is missing,
or without RINGLANE_E2E_KIND=1 (it creates a cluster: minutes, and a few GB).
RINGLANE_E2E_KEEP=1 keeps the cluster afterwards and reuses it on the next run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "ringlane-e2e"
IMAGE = "ringlane:e2e"
NS = "kube-system"
RELEASE = "ringlane"
TEST_NS = "ringlane-e2e"
AGENTS = "app.kubernetes.io/instance=ringlane,app.kubernetes.io/component=agent"
WORKERS = (f"{CLUSTER}-worker", f"{CLUSTER}-worker2")
KEEP = os.environ.get("RINGLANE_E2E_KEEP") == "1"

# The test pods run the Ringlane image itself (already on the nodes: no registry needed).
ECHO_SERVER = """
import socket, threading
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5000))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
def serve(c):
    with c:
        while True:
            data = c.recv(65536)
            if not data:
                return
            c.sendall(data)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 5001))
t.listen(64)
while True:
    threading.Thread(target=serve, args=(t.accept()[0],), daemon=True).start()
"""
ECHO_CLIENT = """
import json, socket, sys, time
ip, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.5)
ok = 0
for i in range(count):
    msg = str(i).encode()
    u.sendto(msg, (ip, 5000))
    try:
        while u.recv(100) != msg:
            pass
        ok += 1
    except OSError:
        pass
    time.sleep(gap)
tcp = 0
try:
    t = socket.create_connection((ip, 5001), timeout=5)
    t.sendall(b"x" * 200000)
    while tcp < 200000:
        chunk = t.recv(65536)
        if not chunk:
            break
        tcp += len(chunk)
except OSError:
    pass
print(json.dumps({"sent": count, "received": ok, "tcp": tcp}))
"""
# One short exchange each way to the echo server, bounded by timeouts: what a policy allows.
PROBE = """
import json, socket, sys
ip = sys.argv[1]
out = {"tcp": False, "udp": False}
try:
    with socket.create_connection((ip, 5001), timeout=2) as t:
        t.settimeout(2)
        t.sendall(b"ping")
        out["tcp"] = t.recv(4) == b"ping"
except OSError:
    pass
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(0.5)
for _ in range(3):
    try:
        u.sendto(b"ping", (ip, 5000))
        if u.recv(4) == b"ping":
            out["udp"] = True
            break
    except OSError:
        pass
print(json.dumps(out))
"""
POLICY = "server-from-client"
SLEEP = "import time; time.sleep(1e9)"


def _missing_tools() -> list[str]:
    missing = [t for t in ("docker", "kind", "helm", "kubectl") if shutil.which(t) is None]
    if "docker" not in missing:
        p = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True, timeout=30, check=False)
        if p.returncode != 0:
            missing.append("a running docker daemon")
    return missing


def run(*args: str, timeout: float = 300, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                       input=input, check=False)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n"
                    f"{p.stderr[-3000:]}")
    return p


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run("kubectl", f"--kubeconfig={self.kubeconfig}", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run("helm", f"--kubeconfig={self.kubeconfig}", *args, **kw)

    def node(self, node: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A shell command on a kind node (a docker container)."""
        return run("docker", "exec", node, "sh", "-c", command, check=check, timeout=60)

    def agents(self) -> dict[str, str]:
        """node -> the agent pod on it."""
        pods = json.loads(self.kubectl("-n", NS, "get", "pods", "-l", AGENTS, "-o",
                                       "json").stdout)["items"]
        return {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods
                if not p["metadata"].get("deletionTimestamp")}

    def ctl(self, node: str, *args: str) -> Any:
        """`ringlanectl -o json ARGS` in the agent pod of `node` (agent/ctl.py: the proto
        messages' fields by their JSON names, enums by short lower-case names)."""
        out = self.kubectl("-n", NS, "exec", self.agents()[node], "-c", "agent", "--",
                           "ringlanectl", "-o", "json", *args).stdout
        return json.loads(out)

    def counters(self, node: str) -> dict[str, int]:
        """The ring core's counters: `stats` is {"node", "core": {name: value}, "xdp":
        {name: value}, "endpoints": [{"ip", "counters": {name: value}}]}."""
        core: dict[str, int] = self.ctl(node, "stats")["core"]
        return core

    def endpoint_counters(self, node: str, ip: str) -> dict[str, int]:
        """The XDP programs' counters of the pod `ip` on `node` (rl_ep_stats: tx_packets,
        rx_packets, drop_policy_ingress, drop_policy_egress, ...)."""
        for ep in self.ctl(node, "stats")["endpoints"]:
            if ep["ip"] == ip:
                counters: dict[str, int] = ep["counters"]
                return counters
        raise AssertionError(f"{ip} is not an endpoint of {node}")

    def endpoint_ips(self, node: str) -> set[str]:
        return {ep["ip"] for ep in self.ctl(node, "endpoints")}

    def echo(self, ip: str, count: int = 200, gap: float = 0.005) -> dict[str, int]:
        out = self.kubectl("-n", TEST_NS, "exec", "client", "--", "python", "-c", ECHO_CLIENT,
                           ip, str(count), str(gap), timeout=count * (gap + 0.6) + 60).stdout
        result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return result

    def probe(self, pod: str, ip: str) -> dict[str, bool]:
        """{"tcp": ..., "udp": ...}: whether `pod` got an echo from the server at `ip`."""
        out = self.kubectl("-n", TEST_NS, "exec", pod, "--", "python", "-c", PROBE, ip,
                           timeout=60).stdout
        result: dict[str, bool] = json.loads(out.strip().splitlines()[-1])
        return result

    def until(self, what: str, check: Any, timeout: float = 60) -> None:
        """Poll `check()` until true (agents and kindnet apply a change within seconds)."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout:.0f} s")
            time.sleep(1)

    def pod_ip(self, name: str) -> str:
        return self.kubectl("-n", TEST_NS, "get", "pod", name, "-o",
                            "jsonpath={.status.podIP}").stdout.strip()

    def start_pod(self, name: str, node: str, labels: dict[str, str], script: str) -> None:
        """A pod of the Ringlane image (already on the nodes) running `script` on `node`."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": TEST_NS, "labels": labels},
               "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": name, "image": IMAGE,
                                        "imagePullPolicy": "Never",
                                        "command": ["python", "-c", script]}]}}
        self.kubectl("apply", "-f", "-", input=json.dumps(pod))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"kind e2e needs {', '.join(missing)}: run tests/e2e/run-kind.sh where "
                    "docker, kind, helm and kubectl are installed")
    if os.environ.get("RINGLANE_E2E_KIND") != "1":
        pytest.skip("creates a kind cluster: run tests/e2e/run-kind.sh "
                    "(or set RINGLANE_E2E_KIND=1)")
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    existing = run("kind", "get", "clusters").stdout.split()
    if CLUSTER in existing:
        run("kind", "export", "kubeconfig", "--name", CLUSTER, f"--kubeconfig={kubeconfig}")
    else:
        run("kind", "create", "cluster", "--config", str(ROOT / "tests/e2e/kind-config.yaml"),
            "--name", CLUSTER, f"--kubeconfig={kubeconfig}", "--wait", "180s", timeout=600)
    try:
        run("docker", "build", "-t", IMAGE, str(ROOT), timeout=1200)
        run("kind", "load", "docker-image", IMAGE, "--name", CLUSTER, timeout=600)
        c = Cluster(kubeconfig)
        c.helm("uninstall", RELEASE, "-n", NS, "--wait", check=False)  # a kept cluster
        c.helm("install", RELEASE, str(ROOT / "deploy/helm/ringlane"), "-n", NS,
               "--set", "image.repository=ringlane", "--set", "image.tag=e2e",
               "--set", "image.pullPolicy=Never", "--wait", "--timeout", "6m", timeout=600)
        yield c
    finally:
        if not KEEP:
            run("kind", "delete", "cluster", "--name", CLUSTER, check=False, timeout=300)


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """A server pod on the second worker and a client pod on the first: cross-node."""
    cluster.kubectl("create", "namespace", TEST_NS, check=False)
    cluster.start_pod("server", WORKERS[1], {"app": "server"}, ECHO_SERVER)
    cluster.start_pod("client", WORKERS[0], {"app": "client"}, SLEEP)
    cluster.kubectl("-n", TEST_NS, "wait", "--for=condition=Ready", "pod/server",
                    "pod/client", "--timeout=180s", timeout=240)
    try:
        yield cluster.pod_ip("client"), cluster.pod_ip("server")
    finally:
        cluster.kubectl("delete", "namespace", TEST_NS, "--wait=false", check=False)


def test_every_node_is_chained_and_ready(cluster: Cluster) -> None:
    cluster.kubectl("-n", NS, "rollout", "status", f"daemonset/{RELEASE}", "--timeout=300s",
                    timeout=330)
    nodes = cluster.agents()
    assert set(WORKERS) <= set(nodes) and f"{CLUSTER}-control-plane" in nodes
    for node in nodes:
        conf = json.loads(cluster.node(node, "cat /etc/cni/net.d/10-kindnet.conflist").stdout)
        assert conf["plugins"][-1]["type"] == "ringlane", (node, conf)
        assert cluster.node(node, "test -x /opt/cni/bin/ringlane", check=False).returncode == 0
        status = cluster.ctl(node, "status")
        assert status["ready"] is True and status["node"] == node
        # link probes through the overlay: every other node is probed, and answers
        peers = {link["peerNode"] for link in cluster.ctl(node, "links")}
        assert peers == set(nodes) - {node}, (node, peers)
        cluster.until(f"{node}'s probes are answered", lambda node=node: all(
            link["received"] > 0 and link["rttAvgUs"] > 0
            for link in cluster.ctl(node, "links")), timeout=30)


def test_cross_node_traffic_is_accelerated(cluster: Cluster, pods: tuple[str, str]) -> None:
    client_ip, server_ip = pods
    # both pods are endpoints of their node's agent (the CNI ADD, or adoption by IP)
    assert client_ip in cluster.endpoint_ips(WORKERS[0])
    assert server_ip in cluster.endpoint_ips(WORKERS[1])
    before = {n: cluster.counters(n) for n in WORKERS}
    result = cluster.echo(server_ip, count=200)
    after = {n: cluster.counters(n) for n in WORKERS}
    assert result["received"] >= 198 and result["tcp"] == 200000, result
    delta = {n: {k: after[n].get(k, 0) - before[n].get(k, 0) for k in ("encap", "decap")}
             for n in WORKERS}
    # requests leave worker encapsulated by its ring core and arrive decapsulated by
    # worker2's; the replies the other way
    for node in WORKERS:
        assert delta[node]["encap"] >= 150 and delta[node]["decap"] >= 150, delta


def test_network_policy_is_enforced(cluster: Cluster, pods: tuple[str, str]) -> None:
    """Only pods labelled app=client may reach the server: an unlabelled pod on the client's
    node (checked by the server node's rl_from_wire, on the inner packet) and one on the
    server's own node (checked by that pod's rl_from_pod: same-node traffic never crosses
    the underlay) are dropped, and the drops are Ringlane's: the server's endpoint counts
    them. Deleting the policy opens the server again."""
    _client_ip, server_ip = pods
    cluster.start_pod("intruder", WORKERS[0], {"app": "intruder"}, SLEEP)
    cluster.start_pod("neighbour", WORKERS[1], {"app": "intruder"}, SLEEP)
    cluster.kubectl("-n", TEST_NS, "wait", "--for=condition=Ready", "pod/intruder",
                    "pod/neighbour", "--timeout=180s", timeout=240)
    for pod in ("client", "intruder", "neighbour"):  # open before the policy
        cluster.until(f"{pod} reaches the server",
                      lambda pod=pod: cluster.probe(pod, server_ip) == {"tcp": True,
                                                                        "udp": True})
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": POLICY, "namespace": TEST_NS},
              "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                       "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                    "ports": [{"protocol": "TCP", "port": 5001},
                                              {"protocol": "UDP", "port": 5000}]}]}}
    policy_id = f"kubernetes/{TEST_NS}/{POLICY}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(policy))
    try:
        # every agent lists it (policies are cluster-wide); the server's says it selects it
        for node in WORKERS:
            cluster.until(f"{node} lists {POLICY}", lambda node=node: any(
                p["name"] == POLICY and p["namespace"] == TEST_NS and p["origin"] == "kubernetes"
                for p in cluster.ctl(node, "policy", "list")))
        cluster.until("the server's ingress is isolated", lambda: policy_id in cluster.ctl(
            WORKERS[1], "endpoints", server_ip)[0]["ingressPolicies"])
        listed = next(p for p in cluster.ctl(WORKERS[1], "policy", "list", "-n", TEST_NS)
                      if p["name"] == POLICY)
        assert listed["policyTypes"] == ["Ingress"]
        assert listed["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app": "client"}}}]
        before = cluster.endpoint_counters(WORKERS[1], server_ip)
        for pod in ("intruder", "neighbour"):
            cluster.until(f"{pod} is refused", lambda pod=pod: cluster.probe(
                pod, server_ip) == {"tcp": False, "udp": False})
        assert cluster.probe("client", server_ip) == {"tcp": True, "udp": True}
        result = cluster.echo(server_ip, count=50)  # the allowed client, through the ring core
        assert result["received"] >= 49 and result["tcp"] == 200000, result
        after = cluster.endpoint_counters(WORKERS[1], server_ip)
        # each refused probe: a TCP SYN and its retries, three UDP datagrams, from two pods
        drops = after["drop_policy_ingress"] - before["drop_policy_ingress"]
        assert drops >= 8, (before, after)
    finally:
        cluster.kubectl("-n", TEST_NS, "delete", "networkpolicy", POLICY, check=False)
    for node in WORKERS:
        cluster.until(f"{node} forgets {POLICY}", lambda node=node: not any(
            p["name"] == POLICY for p in cluster.ctl(node, "policy", "list", "-n", TEST_NS)))
    for pod in ("intruder", "neighbour"):
        cluster.until(f"{pod} reaches the server again", lambda pod=pod: cluster.probe(
            pod, server_ip) == {"tcp": True, "udp": True})
    assert cluster.echo(server_ip, count=20)["received"] >= 19


def test_agent_restart_under_traffic(cluster: Cluster, pods: tuple[str, str]) -> None:
    """SIGTERM keeps the kernel fallback: traffic goes on through the restart, and the new
    agent accelerates again."""
    _client_ip, server_ip = pods
    result: dict[str, Any] = {}

    def traffic() -> None:
        result.update(cluster.echo(server_ip, count=600, gap=0.03))  # ~20 s

    t = threading.Thread(target=traffic)
    t.start()
    time.sleep(3)
    old = cluster.agents()[WORKERS[0]]
    cluster.kubectl("-n", NS, "delete", "pod", old, "--wait=true", timeout=120)
    cluster.kubectl("-n", NS, "rollout", "status", f"daemonset/{RELEASE}", "--timeout=300s",
                    timeout=330)
    t.join(timeout=300)
    assert result, "the traffic thread did not finish"
    assert result["received"] >= 0.95 * result["sent"], result
    assert cluster.agents()[WORKERS[0]] != old
    conf = json.loads(cluster.node(WORKERS[0], "cat /etc/cni/net.d/10-kindnet.conflist").stdout)
    assert conf["plugins"][-1]["type"] == "ringlane"  # a restart never unchains
    before = cluster.counters(WORKERS[0])
    assert cluster.echo(server_ip, count=50)["received"] >= 49
    assert cluster.counters(WORKERS[0]).get("encap", 0) - before.get("encap", 0) >= 40


def test_uninstall_leaves_every_node_clean(cluster: Cluster, pods: tuple[str, str]) -> None:
    _client_ip, server_ip = pods
    nodes = list(cluster.agents())
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "5m", timeout=400)
    deadline = time.monotonic() + 120
    while cluster.agents() and time.monotonic() < deadline:
        time.sleep(2)
    assert not cluster.agents()
    for node in nodes:
        conf = cluster.node(node, "cat /etc/cni/net.d/*").stdout
        assert "ringlane" not in conf, (node, conf)
        leftovers = cluster.node(node, "ls -d /opt/cni/bin/ringlane* /sys/fs/bpf/ringlane "
                                       "/run/ringlane/state.json /run/ringlane/api.sock "
                                       "2>/dev/null", check=False)
        assert leftovers.stdout.strip() == "", (node, leftovers.stdout)
        assert cluster.node(node, "ip link show rl-vxlan", check=False).returncode != 0
        links = cluster.node(node, "ip -d link show").stdout
        assert "prog/xdp" not in links and "xdpgeneric" not in links, (node, links)
    jobs = cluster.kubectl("-n", NS, "get", "jobs", "-o", "name").stdout
    assert "ringlane-uninstall" not in jobs  # the hook cleaned up after itself
    # pods keep talking over kindnet alone
    assert cluster.echo(server_ip, count=50)["received"] >= 49
