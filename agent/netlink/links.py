"""Links, addresses and routes through pyroute2: the only place the agent speaks rtnetlink.

Every function opens its own short-lived IPRoute in the current network namespace: the agent
runs in the node's namespace and control calls are rare, so a shared socket would buy nothing
but thread-safety worries.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.errors import RinglaneError


class LinkNotFound(RinglaneError):
    """No interface with that name or index in this network namespace."""


@dataclass(frozen=True)
class Link:
    """What the data path needs to know about an interface."""

    index: int
    name: str
    mac: str
    mtu: int
    kind: str
    up: bool


@contextmanager
def rtnl() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _to_link(msg: object) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    return Link(
        index=int(msg["index"]),  # type: ignore[index]
        name=str(msg.get_attr("IFLA_IFNAME")),  # type: ignore[attr-defined]
        mac=str(msg.get_attr("IFLA_ADDRESS")),  # type: ignore[attr-defined]
        mtu=int(msg.get_attr("IFLA_MTU")),  # type: ignore[attr-defined]
        kind=str(kind or ""),
        up=bool(int(msg["flags"]) & 1),  # type: ignore[index]
    )


def link_by_name(name: str) -> Link:
    with rtnl() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise LinkNotFound(f"no interface named {name!r} in this network namespace")
        return _to_link(ipr.get_links(idx[0])[0])


def link_by_index(index: int) -> Link:
    with rtnl() as ipr:
        try:
            return _to_link(ipr.get_links(index)[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise LinkNotFound(f"no interface with index {index}") from exc
            raise


def link_exists(name: str) -> bool:
    with rtnl() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def ipv4_addresses(name: str) -> list[IPv4Interface]:
    link = link_by_name(name)
    with rtnl() as ipr:
        return [
            IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in ipr.get_addr(family=2, index=link.index)
        ]


def route_sources(dsts: Iterable[IPv4Address]) -> frozenset[IPv4Address]:
    """The source address this node's own packets to each of `dsts` would carry (the route's
    preferred source): where the node's traffic to its pods, kubelet probes included, comes
    from. Addresses the node merely holds (Service IPs on kube-ipvs0, say) are not in it."""
    out: set[IPv4Address] = set()
    with rtnl() as ipr:
        for dst in dsts:
            try:
                routes = ipr.route("get", dst=str(dst))
            except NetlinkError:
                continue  # no route (the pod is going away): nothing to allow
            out.update(IPv4Address(src) for r in routes
                       if (src := r.get_attr("RTA_PREFSRC")) is not None)
    return frozenset(out)


def default_route_interface() -> str:
    """The interface of the IPv4 default route: the underlay when none is configured."""
    with rtnl() as ipr:
        for r in ipr.get_default_routes(family=2, table=254):
            oif = r.get_attr("RTA_OIF")
            if oif:
                return _to_link(ipr.get_links(oif)[0]).name
    raise LinkNotFound("no IPv4 default route: name the underlay interface in the config")


def route_interface(dst: IPv4Address) -> int:
    """Index of the interface the kernel would use to reach `dst`."""
    with rtnl() as ipr:
        routes = ipr.route("get", dst=str(dst))
        if not routes:
            raise LinkNotFound(f"no route to {dst}")
        return int(routes[0].get_attr("RTA_OIF"))


def container_peer(netns_path: str, ifname: str) -> tuple[int, str]:
    """(host-side ifindex, container-side MAC) of the veth `ifname` inside `netns_path`.

    IFLA_LINK of a veth is its peer's ifindex in the peer's namespace: the host side, where the
    agent runs. Reading it from inside the pod's namespace is the only reliable way to find it
    (names are the primary plugin's choice).
    """
    if not os.path.exists(netns_path):
        # checked first: pyroute2 would otherwise create a namespace of that name
        raise LinkNotFound(f"cannot open network namespace {netns_path}: no such file")
    try:
        ns = IPRoute(netns=netns_path, flags=0)
    except (OSError, NetlinkError) as exc:
        raise LinkNotFound(f"cannot open network namespace {netns_path}: {exc}") from exc
    try:
        idx = ns.link_lookup(ifname=ifname)
        if not idx:
            raise LinkNotFound(f"no interface {ifname!r} in {netns_path}")
        msg = ns.get_links(idx[0])[0]
        peer = msg.get_attr("IFLA_LINK")
        if not peer:
            raise LinkNotFound(f"{ifname} in {netns_path} is not a veth (no peer)")
        return int(peer), str(msg.get_attr("IFLA_ADDRESS"))
    finally:
        ns.close()


def host_veth_for(ip: IPv4Address) -> str | None:
    """The host-side veth a pod with `ip` sits behind, found from the routing table: the route's
    device itself (ptp-style /32 routes) or, behind a bridge, the bridge port its MAC was
    learned on. None if the pod is not reachable through a veth here."""
    with rtnl() as ipr:
        routes = ipr.route("get", dst=str(ip))
        if not routes:
            return None
        oif = int(routes[0].get_attr("RTA_OIF"))
        link = _to_link(ipr.get_links(oif)[0])
        if link.kind == "veth":
            return link.name
        if link.kind != "bridge":
            return None
        macs = [n.get_attr("NDA_LLADDR") for n in ipr.get_neighbours(dst=str(ip), ifindex=oif)]
        for fdb in ipr.fdb("dump", master=oif) if macs else []:
            if fdb.get_attr("NDA_LLADDR") == macs[0]:
                port = _to_link(ipr.get_links(int(fdb["ifindex"]))[0])
                return port.name if port.kind == "veth" else None
    return None
