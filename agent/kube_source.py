"""Desired state from the Kubernetes API: remote nodes from Nodes, endpoints from this node's
Pods (adopted by IP: pods that existed before the agent keep running and get accelerated)."""

from __future__ import annotations

from ipaddress import IPv4Network

from agent.datapath.node import Endpoint, RemoteNode
from agent.k8s.cluster import ClusterState
from agent.netlink import links

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
