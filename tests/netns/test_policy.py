"""Policy truth tables with real packets on a 3-node cluster in namespaces, one real agent per
node watching a test API endpoint: NetworkPolicies from the API and policies applied through
each agent's gRPC API, every (source pod, destination pod, protocol, port) checked against a
direct evaluation of the semantics, same node and across nodes, through several policy sets
and while an unrelated policy churns."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from agent.api import convert
from agent.api.client import Client
from agent.api.v1 import policy_pb2 as ppb
from agent.api.v1 import telemetry_pb2 as tpb
from agent.policy import netpol
from agent.policy.model import (
    CidrPeer,
    Direction,
    Inventory,
    LabelSelector,
    NamedPort,
    PodRef,
    Policy,
    PortMatch,
    Protocol,
    Rule,
)
from agent.reachability import PortServer, Target, probe
from agent.sandbox import Pod, Sandbox
from tests.conftest import require_root, require_tools
from tests.kubeapi.fixtures import api_on_switch, wait_until
from tests.kubeapi.server import FakeKubeAPI, namespace, node, pod
from tests.policy_reference import reachable

# pod -> (namespace, labels, named TCP ports)
LAYOUT: dict[str, tuple[str, dict[str, str], dict[str, int]]] = {
    "n1p1": ("prod", {"app": "web"}, {"http": 80}),
    "n1p2": ("dev", {"app": "client"}, {}),
    "n2p1": ("prod", {"app": "db"}, {"sql": 5432}),
    "n2p2": ("prod", {"app": "web"}, {"http": 80}),
    "n3p1": ("dev", {"app": "client"}, {}),
    "n3p2": ("prod", {"app": "db"}, {"sql": 5432}),
}
NAMESPACES = {"prod": {"env": "prod"}, "dev": {"env": "dev"}}
TCP_PORTS, UDP_PORTS = (80, 5432, 8080), (53,)
PROBES = [(Protocol.TCP, p) for p in TCP_PORTS] + [(Protocol.UDP, p) for p in UDP_PORTS] + [
    (Protocol.ICMP, 0)]


def netpol_obj(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


DB_FROM_WEB = netpol_obj("db-from-web", "prod", {
    "podSelector": {"matchLabels": {"app": "db"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                 "ports": [{"protocol": "TCP", "port": 5432}]}]})
WEB_FROM_DEV = netpol_obj("web-from-dev", "prod", {
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}],
                 "ports": [{"port": "http"}]}]})
DB_NO_EGRESS = netpol_obj("db-no-egress", "prod", {
    "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]})

CLIENT = LabelSelector.of({"app": "client"})
# clients may reach pods anywhere but on n2 (any protocol), and ping everyone
DEV_EGRESS = Policy(
    "dev-egress", "dev", subject=CLIENT, directions=frozenset({Direction.EGRESS}),
    egress=(Rule(peers=(CidrPeer(IPv4Network("10.244.0.0/16"),
                                 frozenset({IPv4Network("10.244.2.0/24")})),)),
            Rule(ports=(PortMatch(Protocol.ICMP),))))
DEV_DNS_ONLY = Policy("dev-dns-only", "dev", subject=CLIENT,
                      directions=frozenset({Direction.EGRESS}),
                      egress=(Rule(ports=(PortMatch(Protocol.UDP, 53),)),))
# allows nothing any probe uses, on pods that policy A already isolates: churn without change
NOISE = Policy("noise", "prod", subject=LabelSelector.of({"app": "web"}), ingress=(Rule(
    peers=(CidrPeer(IPv4Network("203.0.113.0/24")),),
    ports=(PortMatch(Protocol.TCP, 1),)),))


@dataclass
class PolicyCluster:
    sb: Sandbox
    api: FakeKubeAPI
    pods: dict[str, tuple[Pod, PodRef]]
    clients: dict[str, Client]
    netpols: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_policies: dict[str, Policy] = field(default_factory=dict)

    @property
    def inventory(self) -> Inventory:
        return Inventory(tuple(ref for _, ref in self.pods.values()),
                         {ns: {"kubernetes.io/metadata.name": ns, **labels}
                          for ns, labels in NAMESPACES.items()})

    def set_policies(self, netpols: list[dict[str, Any]], api: list[Policy]) -> None:
        """Make the cluster's policies exactly these, and wait until every agent enforces them."""
        want = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in netpols}
        for key, obj in self.netpols.items():
            if key not in want:
                self.api.delete("networkpolicies", obj["metadata"]["name"],
                                obj["metadata"]["namespace"])
        for key, obj in want.items():
            if key not in self.netpols:
                self.api.add("networkpolicies", obj)
        self.netpols = want
        gone = [(p.namespace, p.name) for k, p in self.api_policies.items()
                if k not in {q.id for q in api}]
        for client in self.clients.values():  # API policies are each agent's own
            if gone:
                client.delete(gone)
            if api:
                client.apply([convert.policy_to_proto(p) for p in api])
        self.api_policies = {p.id: p for p in api}
        ids = sorted([f"kubernetes/{k}" for k in want] + [p.id for p in api])
        for name, client in self.clients.items():
            wait_until(lambda c=client: self.enforced(c) == ids,  # type: ignore[misc]
                     what=f"{name} to enforce {ids}")

    @staticmethod
    def enforced(client: Client) -> list[str]:
        details = json_format.MessageToDict(client.status().details)
        return sorted(details.get("policiesEnforced", []))

    def model(self) -> list[Policy]:
        translated = [netpol.translate(o).policy for o in self.netpols.values()]
        return [p for p in translated if p is not None] + list(self.api_policies.values())

    def truth_table(self) -> tuple[int, int, list[str]]:
        """(checked, denied, wrong): every ordered pair of pods, every probe, against the
        reference."""
        policies, inv = self.model(), self.inventory
        names = sorted(self.pods)

        denied = [0]

        def from_source(src: str) -> list[str]:
            pod_, ref = self.pods[src]
            cases = [(dst, proto, port) for dst in names if dst != src for proto, port in PROBES]
            got = probe(pod_, [Target(str(self.pods[d][1].ip), proto.value, port)
                               for d, proto, port in cases])
            wrong = []
            for (dst, proto, port), ok in zip(cases, got, strict=True):
                want = reachable(policies, inv, ref, self.pods[dst][1], proto, port)
                denied[0] += not want
                if ok != want:
                    wrong.append(f"{src}->{dst} {proto.value}/{port}: got {ok}, want {want}")
            return wrong

        with ThreadPoolExecutor(len(names)) as pool:
            wrong = [w for ws in pool.map(from_source, names) for w in ws]
        return len(names) * (len(names) - 1) * len(PROBES), denied[0], wrong


@pytest.fixture
def policy_cluster(tmp_path: Path) -> Iterator[PolicyCluster]:
    require_root()
    require_tools("ip", "nsenter")
    sb = Sandbox(nodes=3, pods=2)
    servers: list[PortServer] = []
    clients: dict[str, Client] = {}
    try:
        sb.up()
        with api_on_switch(sb, tmp_path / "kubeconfig") as api:
            for ns, labels in NAMESPACES.items():
                api.add("namespaces", namespace(ns, **labels))
            pods: dict[str, tuple[Pod, PodRef]] = {}
            for n in sb.nodes:
                api.add("nodes", node(n.name, str(n.ip), str(n.pod_cidr)))
                for p in n.pods:
                    ns, labels, ports = LAYOUT[p.name]
                    api.add("pods", pod(p.name, n.name, str(p.ip), namespace=ns, labels=labels,
                                        ports=ports))
                    pods[p.name] = (p, PodRef(ns, p.name, p.ip, frozenset(labels.items()),
                                              frozenset(NamedPort(k, Protocol.TCP, v)
                                                        for k, v in ports.items())))
            for n in sb.nodes:
                sb.start_agent(n)
                clients[n.name] = Client.unix(n.run_dir / "api.sock", timeout=10)
            for p, _ in pods.values():
                servers.append(PortServer(p, TCP_PORTS, UDP_PORTS))
            for name, c in clients.items():
                wait_until(lambda c=c: len(c.endpoints()) == 2,  # type: ignore[misc]
                           timeout=20, what=f"{name} to adopt its pods")
            yield PolicyCluster(sb, api, pods, clients)
    finally:
        for c in clients.values():
            c.close()
        for s in servers:
            s.close()
        sb.close()


def test_truth_tables_through_policy_sets_and_churn(policy_cluster: PolicyCluster) -> None:
    c = policy_cluster
    checked, denied, wrong = c.truth_table()
    assert wrong == [], "without policy"
    assert (checked, denied) == (150, 0)

    # set A: NetworkPolicies (pod and namespace selectors, named port) + an API ipBlock/except
    c.set_policies([DB_FROM_WEB, WEB_FROM_DEV], [DEV_EGRESS])
    stream = c.clients["n2"].flows(queue_size=4096)
    records: list[tpb.FlowRecord] = []
    reader = threading.Thread(target=lambda: records.extend(
        r for batch in stream for r in batch.records), daemon=True)
    reader.start()
    _, denied, wrong = c.truth_table()
    assert wrong == [], "policy set A"
    assert 30 < denied < 120  # both verdicts well represented
    stream.cancel()
    reader.join(timeout=10)

    # the drops were counted per endpoint and reason, and sampled as flows, on the db's node
    db_ip = str(c.pods["n2p1"][1].ip)
    stats = c.clients["n2"].stats()
    db = next(e for e in stats.endpoints if e.ip == db_ip)
    assert db.counters["drop_policy_ingress"] > 0
    assert any(r.dst == db_ip and r.verdict == tpb.VERDICT_DENY
               and r.direction == ppb.DIRECTION_INGRESS for r in records), records[:5]

    # set B: egress isolation (replies must still pass) and a narrower API policy
    c.set_policies([DB_NO_EGRESS], [DEV_DNS_ONLY])
    _, denied, wrong = c.truth_table()
    assert wrong == [], "policy set B"
    assert 30 < denied < 120

    # back to A while an API policy is applied and deleted on every node in a loop: every
    # swap leaves the verdicts of the table unchanged, so any wrong one is a swap's fault
    c.set_policies([DB_FROM_WEB, WEB_FROM_DEV], [DEV_EGRESS])
    stop = threading.Event()
    swaps = [0]

    def churn() -> None:
        while not stop.is_set():
            for client in c.clients.values():
                client.apply([convert.policy_to_proto(NOISE)])
            for client in c.clients.values():
                client.delete([(NOISE.namespace, NOISE.name)])
            swaps[0] += 2

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        for round_ in range(2):
            _, _, wrong = c.truth_table()
            assert wrong == [], f"policy set A under churn, round {round_}"
    finally:
        stop.set()
        t.join(timeout=30)
    assert swaps[0] >= 4  # the churn really ran during the tables

    # link health over gRPC: every agent measured both other nodes through the overlay
    for name, client in c.clients.items():
        links = {link.peer_node: link for link in client.links()}
        assert set(links) == {n.name for n in c.sb.nodes} - {name}
        assert all(link.received > 0 for link in links.values()), links


DEV_DENY_INGRESS = netpol_obj("deny-ingress", "dev", {"podSelector": {}})


def test_service_replies_pass_an_isolated_client(policy_cluster: PolicyCluster,
                                                 tmp_path: Path) -> None:
    """A client in a default-deny-ingress namespace talks to ClusterIPs, which the node's NAT
    (kube-proxy's job, an nft DNAT rule here) rewrites after from_pod saw the flow: the
    backends' answers carry addresses the flow was never recorded under, and must still pass
    as replies (the programs ask the kernel's connection tracker), whether the backend is on
    another node or on the client's own."""
    c = policy_cluster
    n1 = c.sb.nodes[0]
    client, _ = c.pods["n1p2"]
    remote_db, local_web = c.pods["n2p1"][1], c.pods["n1p1"][1]
    rules = tmp_path / "services.nft"
    rules.write_text(f"""
table ip rl_svc {{
  chain pre {{
    type nat hook prerouting priority -100;
    ip daddr 10.96.0.10 udp dport 53 dnat to {remote_db.ip}:53
    ip daddr 10.96.0.11 tcp dport 80 dnat to {local_web.ip}:80
  }}
}}""")
    n1.run("nft", "-f", str(rules))
    c.set_policies([DEV_DENY_INGRESS], [])
    services = [Target("10.96.0.10", "udp", 53), Target("10.96.0.11", "tcp", 80)]
    assert probe(client, services) == [True, True]
    # the isolation holds for connections the client did not open
    for src in ("n2p1", "n1p1"):
        assert probe(c.pods[src][0], [Target(str(c.pods["n1p2"][1].ip), "tcp", 80)]) == [False]
