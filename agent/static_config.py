"""`ringlane-agent --static-config FILE`: a cluster described in YAML instead of the API server.

    node: node1                     # which of the nodes below this agent is
    agent: {underlayInterface: eth1, vni: 1}   # any AgentConfig key (optional)
    nodes:
      - {name: node1, ip: 192.168.250.1, podCIDR: 10.244.1.0/24}
      - {name: node2, ip: 192.168.250.2, podCIDR: 10.244.2.0/24}
    endpoints:                      # pods on this node
      - {name: pod-a, ip: 10.244.1.2, interface: veth-a, mac: 0a:58:0a:f4:01:02}  # mac optional
    pods:                           # optional: every node's pods, for policy selectors
      - {namespace: default, name: pod-a, ip: 10.244.1.2, labels: {app: web}}

Policy selectors pick among `pods` (matched to endpoints by IP); without it, policies can still
name peers by CIDR, but select no pod as a subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from agent.datapath.node import Endpoint, RemoteNode
from agent.errors import ConfigError
from agent.policy.model import PodRef


@dataclass(frozen=True)
class StaticCluster:
    node: str
    agent: dict[str, Any]
    nodes: list[RemoteNode]
    endpoints: list[Endpoint]
    pods: list[PodRef]

    @property
    def this_node(self) -> RemoteNode:
        for n in self.nodes:
            if n.name == self.node:
                return n
        raise ConfigError(f"node {self.node!r} is not in the nodes list")

    @property
    def remote_nodes(self) -> list[RemoteNode]:
        return [n for n in self.nodes if n.name != self.node]


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing {key!r}")
    return d[key]


def _parse(kind: type, raw: Any, where: str) -> Any:
    try:
        return kind(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def parse(doc: Any, *, source: str = "static config") -> StaticCluster:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top")
    unknown = set(doc) - {"node", "agent", "nodes", "endpoints", "pods"}
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
    nodes = []
    for i, n in enumerate(doc.get("nodes") or []):
        where = f"{source}: nodes[{i}]"
        if not isinstance(n, dict):
            raise ConfigError(f"{where}: expected a mapping")
        nodes.append(RemoteNode(
            name=str(_req(n, "name", where)),
            ip=_parse(IPv4Address, _req(n, "ip", where), where),
            pod_cidr=_parse(IPv4Network, _req(n, "podCIDR", where), where),
        ))
    if len({n.name for n in nodes}) != len(nodes):
        raise ConfigError(f"{source}: node names must be unique")
    endpoints = []
    for i, e in enumerate(doc.get("endpoints") or []):
        where = f"{source}: endpoints[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where}: expected a mapping")
        endpoints.append(Endpoint(
            name=str(_req(e, "name", where)),
            ip=_parse(IPv4Address, _req(e, "ip", where), where),
            host_ifname=str(_req(e, "interface", where)),
            mac=str(e.get("mac", "")),
        ))
    agent = doc.get("agent") or {}
    if not isinstance(agent, dict):
        raise ConfigError(f"{source}: agent: expected a mapping")
    pods = []
    for i, e in enumerate(doc.get("pods") or []):
        where = f"{source}: pods[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("labels") or {}, dict):
            raise ConfigError(f"{where}: expected a mapping with a labels mapping")
        pods.append(PodRef(
            namespace=str(e.get("namespace", "default")), name=str(_req(e, "name", where)),
            ip=_parse(IPv4Address, _req(e, "ip", where), where),
            labels=frozenset((str(k), str(v)) for k, v in (e.get("labels") or {}).items())))
    cluster = StaticCluster(str(_req(doc, "node", source)), agent, nodes, endpoints, pods)
    this = cluster.this_node
    for ep in endpoints:
        if ep.ip not in this.pod_cidr:
            raise ConfigError(f"{source}: endpoint {ep.name} ({ep.ip}) is outside this node's "
                              f"podCIDR {this.pod_cidr}")
    return cluster


def load(path: Path) -> StaticCluster:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read static config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"static config {path} is not valid YAML: {exc}") from exc
    return parse(doc, source=str(path))
