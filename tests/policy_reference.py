"""Policy semantics evaluated directly from the model, for tests to compare the data path
(or the compiler) against: no tries, no unions, no resolution ahead of time, one packet at a
time, exactly as Kubernetes describes NetworkPolicy (plus Ringlane's ICMP and "any")."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from agent.policy.model import (
    CidrPeer,
    Direction,
    Inventory,
    PodPeer,
    PodRef,
    Policy,
    PortMatch,
    Protocol,
)


def _peer_matches(policy: Policy, peer: CidrPeer | PodPeer, ip: IPv4Address,
                  inv: Inventory) -> bool:
    if isinstance(peer, CidrPeer):
        return ip in peer.cidr and not any(ip in x for x in peer.excepts)
    pod = next((p for p in inv.pods if p.ip == ip), None)
    if pod is None:
        return False
    in_ns = (pod.namespace == policy.namespace if peer.namespaces is None
             else peer.namespaces.matches(inv.namespaces.get(pod.namespace, {})))
    return in_ns and peer.pods.matches(pod.label_map)


def _port_matches(pm: PortMatch, proto: Protocol, port: int, receiver: PodRef | None) -> bool:
    if pm.protocol is Protocol.ANY:
        return True
    if pm.protocol is not proto:
        return False
    if proto is Protocol.ICMP or pm.port is None:
        return True
    if isinstance(pm.port, str):
        return receiver is not None and any(
            n.name == pm.port and n.protocol is proto and n.port == port for n in receiver.ports)
    return pm.port <= port <= (pm.end_port or pm.port)


def allows(policies: Sequence[Policy], inv: Inventory, ep: PodRef, direction: Direction,
           peer: IPv4Address, proto: Protocol, port: int) -> bool:
    """Does `ep`'s policy in `direction` let a packet to/from `peer` pass?"""
    chosen = [p for p in policies if direction in p.directions
              and p.namespace == ep.namespace and p.subject.matches(ep.label_map)]
    if not chosen:
        return True
    receiver = ep if direction is Direction.INGRESS else next(
        (p for p in inv.pods if p.ip == peer), None)
    return any(
        (not rule.peers or any(_peer_matches(p, pr, peer, inv) for pr in rule.peers))
        and (not rule.ports or any(_port_matches(pm, proto, port, receiver)
                                   for pm in rule.ports))
        for p in chosen for rule in p.rules(direction))


def reachable(policies: Sequence[Policy], inv: Inventory, src: PodRef, dst: PodRef,
              proto: Protocol, port: int) -> bool:
    """A new connection from `src` to `dst`: the sender's egress and the receiver's ingress."""
    assert src.ip is not None and dst.ip is not None
    return (allows(policies, inv, src, Direction.EGRESS, dst.ip, proto, port)
            and allows(policies, inv, dst, Direction.INGRESS, src.ip, proto, port))
