"""Desired state from the Kubernetes API: remote nodes from Nodes, endpoints from this node's
Pods (adopted by IP: pods that existed before the agent keep running and get accelerated),
and what policy needs: every pod and namespace, and the NetworkPolicies."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import structlog

from agent.datapath.node import Endpoint, RemoteNode
from agent.k8s.cluster import ClusterState
from agent.netlink import links
from agent.policy import netpol
from agent.policy.model import Inventory, Policy

log = structlog.get_logger(__name__)

_FINISHED = ("Succeeded", "Failed")


def remote_nodes(cluster: ClusterState, this_node: str) -> dict[str, RemoteNode]:
    """Every other node with a podCIDR: the overlay's destinations."""
    return {
        n.name: RemoteNode(name=n.name, ip=n.internal_ip, pod_cidr=n.pod_cidr)
        for n in cluster.nodes().values()
        if n.name != this_node and n.pod_cidr is not None
    }


def pod_endpoints(cluster: ClusterState, pod_cidr: IPv4Network) -> list[Endpoint]:
    """This node's running pods on the pod network whose host veth can be found now."""
    out = []
    for pod in cluster.pods().values():
        if (pod.host_network or pod.deleting or pod.phase in _FINISHED or pod.pod_ip is None
                or pod.pod_ip not in pod_cidr):
            continue
        veth = links.host_veth_for(pod.pod_ip)
        if veth is not None:
            out.append(Endpoint(name=f"{pod.namespace}/{pod.name}", ip=pod.pod_ip,
                                host_ifname=veth))
    return out


def policy_inventory(cluster: ClusterState, endpoints: Iterable[Endpoint],
                     node_addresses: frozenset[IPv4Address]) -> Inventory:
    """Every pod and namespace, with this node's endpoints' addresses filled in from the CNI:
    a pod is subject to policy from its ADD on, before the API shows its IP."""
    local = {e.name: e.ip for e in endpoints}
    holder = {ip: name for name, ip in local.items()}
    pods = []
    for p in cluster.all_pods():
        name = f"{p.namespace}/{p.name}"
        ip = local.get(name)
        if ip is not None and p.ip != ip:
            p = dataclasses.replace(p, ip=ip)
        elif p.ip in holder and holder[p.ip] != name:
            # a terminating pod whose address IPAM already gave to a pod here: the address
            # is the new pod's, and so are the labels that select it
            p = dataclasses.replace(p, ip=None)
        pods.append(p)
    return Inventory(tuple(pods), cluster.namespaces(), node_addresses)


class KubePolicies:
    """The NetworkPolicies as Policies, translated again only when the objects changed, with
    their warnings and errors logged when they change (not on every pod event)."""

    def __init__(self, cluster: ClusterState) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self._generation = -1
        self._objects: dict[str, Any] = {}
        self._policies: list[Policy] = []
        self._messages: list[str] = []

    def __call__(self) -> list[Policy]:
        with self._lock:
            gen = self._cluster.generation
            if gen != self._generation:
                self._generation = gen
                objects = self._cluster.policies()
                if objects != self._objects:
                    self._objects = objects
                    self._policies, messages = netpol.translate_all(objects)
                    for m in sorted(set(messages) - set(self._messages)):
                        log.warning("netpol.translation", message=m)
                    self._messages = messages
            return list(self._policies)
