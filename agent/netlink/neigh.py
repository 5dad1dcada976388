"""Neighbour (ARP) look-ups: the next-hop MAC of a remote node, the MAC of a pod."""

from __future__ import annotations

import contextlib
import socket
import time
from ipaddress import IPv4Address

from agent.errors import RinglaneError
from agent.netlink.links import rtnl

# NUD states that carry a usable lladdr.
_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


class NeighbourUnresolved(RinglaneError):
    """ARP did not answer for an address within the time allowed."""


def lookup_mac(ip: IPv4Address, ifindex: int | None = None) -> str | None:
    with rtnl() as ipr:
        kw: dict[str, object] = {"dst": str(ip), "family": 2}
        if ifindex is not None:
            kw["ifindex"] = ifindex
        for n in ipr.get_neighbours(**kw):
            mac = n.get_attr("NDA_LLADDR")
            if mac and n["state"] & _VALID:
                return str(mac)
    return None


def _poke(ip: IPv4Address) -> None:
    """Make the kernel resolve `ip`: one UDP datagram to the discard port."""
    # unreachable right now: resolution simply fails below
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.sendto(b"", (str(ip), 9))


def resolve_mac(ip: IPv4Address, *, ifindex: int | None = None, timeout: float = 3.0) -> str:
    """The MAC for `ip`, from the neighbour table, asking the kernel to resolve it if missing."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    mac = lookup_mac(ip, ifindex)
    while mac is None:
        if time.monotonic() > deadline:
            raise NeighbourUnresolved(f"no ARP answer from {ip} within {timeout:.0f}s")
        _poke(ip)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
        mac = lookup_mac(ip, ifindex)
    return mac
