"""Links, addresses and routes through pyroute2: the only place the agent speaks rtnetlink.

Every function opens its own short-lived IPRoute in the current network namespace: the agent
runs in the node's namespace and control calls are rare, so a shared socket would buy nothing
but thread-safety worries.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
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
