"""The kernel VXLAN fallback, programmed like flannel's vxlan backend.

One VXLAN device per node (no learning), and per remote node: a static neighbour (remote VTEP
address -> remote VTEP MAC), an FDB entry (remote VTEP MAC -> remote underlay IP) and an onlink
route (remote podCIDR via the remote VTEP address). It carries pod traffic whenever the ring core
does not: the XDP programs pass what they cannot redirect, and the kernel routes it here.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyroute2.netlink.exceptions import NetlinkError

from agent.netlink.links import link_by_name, rtnl

_NUD_PERMANENT = 0x80
_RTNH_F_ONLINK = 4


@dataclass(frozen=True)
class VxlanDevice:
    name: str
    vni: int
    port: int
    local_ip: IPv4Address
    underlay_ifname: str
    mac: str
    mtu: int
    address: IPv4Address  # this node's VTEP address: its podCIDR's network address
    sport_min: int  # outer source ports [min, max], disjoint from the ring core's
    sport_max: int


def vtep_mac(node_ip: IPv4Address) -> str:
    """A node's VTEP MAC, derived from its underlay IP so peers need no annotation to know it.

    Locally administered (02:) with the fixed byte 0x52 ('R'), then the four address bytes.
    """
    return "02:52:" + ":".join(f"{b:02x}" for b in node_ip.packed)


def ensure_device(dev: VxlanDevice) -> int:
    """Create the device if absent (or adopt ours), bring it up; return its index."""
    underlay = link_by_name(dev.underlay_ifname)
    with rtnl() as ipr:
        idx = ipr.link_lookup(ifname=dev.name)
        if not idx:
            ipr.link(
                "add", ifname=dev.name, kind="vxlan", vxlan_id=dev.vni, vxlan_port=dev.port,
                vxlan_local=str(dev.local_ip), vxlan_link=underlay.index, vxlan_learning=0,
                address=dev.mac, mtu=dev.mtu,
                vxlan_port_range={"low": dev.sport_min, "high": dev.sport_max + 1},
            )
            idx = ipr.link_lookup(ifname=dev.name)
        index = int(idx[0])
        ipr.link("set", index=index, state="up", mtu=dev.mtu)
        try:
            ipr.addr("add", index=index, address=str(dev.address), prefixlen=32)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        return index


def remove_device(name: str) -> bool:
    """Delete the device (routes, neighbours and FDB entries go with it)."""
    with rtnl() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return False
        ipr.link("del", index=idx[0])
        return True


def add_remote(
    ifindex: int, *, cidr: IPv4Network, node_ip: IPv4Address, remote_vtep_mac: str
) -> None:
    """Program neighbour, FDB and route for one remote node (idempotent)."""
    gw = cidr.network_address
    with rtnl() as ipr:
        ipr.neigh("replace", dst=str(gw), lladdr=remote_vtep_mac, ifindex=ifindex,
                  state=_NUD_PERMANENT)
        try:
            ipr.fdb("append", ifindex=ifindex, lladdr=remote_vtep_mac, dst=str(node_ip),
                    state=_NUD_PERMANENT)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        ipr.route("replace", dst=str(cidr), gateway=str(gw), oif=ifindex, flags=_RTNH_F_ONLINK)


def remove_remote(
    ifindex: int, *, cidr: IPv4Network, node_ip: IPv4Address, remote_vtep_mac: str
) -> None:
    """Undo add_remote; each piece already gone is fine."""
    gone = (errno.ENOENT, errno.ESRCH, errno.ENODEV)
    with rtnl() as ipr:
        for method, kwargs in (
            (ipr.route, {"dst": str(cidr), "gateway": str(cidr.network_address), "oif": ifindex}),
            (ipr.fdb, {"ifindex": ifindex, "lladdr": remote_vtep_mac, "dst": str(node_ip)}),
            (ipr.neigh, {"dst": str(cidr.network_address), "ifindex": ifindex}),
        ):
            try:
                method("del", **kwargs)
            except NetlinkError as exc:
                if exc.code not in gone:
                    raise
