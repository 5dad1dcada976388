"""rl_from_pod and rl_from_wire under BPF_PROG_TEST_RUN: one table row per verdict and reason.

Each row is data: the program, the frame it sees, what the maps hold, the expected XDP action and
the one rl_xdp_stats counter that must move (by exactly one; no other counter may move). Every
enum rl_xdp_stat outcome of both programs appears at least once (checked by
test_every_counter_is_covered).

Limits of BPF_PROG_TEST_RUN: the kernel refuses input shorter than an Ethernet header, so
"truncated Ethernet" cannot be run (parse_ethhdr's check is still there for real frames); and a
redirect is only decided, not performed, so REDIRECT rows prove the verdict and the slot choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.xdp.bpfobj import lib

from ..native.packets import (
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HLEN,
    UDP_HLEN,
    VXLAN_FLAG_I,
    VXLAN_HLEN,
    Csum,
    eth,
    ip4,
    ipv4,
    tcp,
    tcp_frame,
    udp,
    udp_frame,
    vxlan,
)
from .xdp_harness import (
    OVERLAY_MTU,
    VNI,
    VXLAN_PORT,
    XDP_PASS,
    XDP_REDIRECT,
    Datapath,
    XskSocket,
    needs_root,
)

pytestmark = [pytest.mark.bpf, needs_root]

POD = "rl_from_pod"
WIRE = "rl_from_wire"

UNDERLAY = lib.RL_UNDERLAY_SLOT_BASE
MAX_QUEUES = lib.RL_MAX_UNDERLAY_QUEUES

# The scenario: this node's pods are 10.244.1.0/24, node B (192.168.0.2) owns 10.244.2.0/24.
LOCAL_POD = "10.244.1.2"
REMOTE_POD = "10.244.2.3"
EP_SLOT = 5  # XSKMAP slot of the test veth's socket
OUTER_OVERHEAD = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN


@dataclass(frozen=True)
class Maps:
    """What the pinned maps hold when the frame arrives."""

    remote_cidrs: tuple[tuple[str, str], ...] = (("10.244.2.0/24", "192.168.0.2"),)
    endpoint_slot: int | None = EP_SLOT  # rl_endpoints[ingress device]; None: not registered
    local_ips: tuple[str, ...] = (LOCAL_POD,)
    xsk_slots: tuple[int, ...] = ()  # slots that hold a bound AF_XDP socket


SERVED = Maps(xsk_slots=(EP_SLOT, UNDERLAY))  # ring core up: pod socket and queue 0's socket


@dataclass(frozen=True)
class Case:
    name: str
    prog: str
    packet: bytes
    action: int
    counter: str  # rl_xdp_stats name, as PinnedMaps.xdp_stats() spells it
    maps: Maps = field(default_factory=Maps)
    rx_queue: int = 0


# --- frames -------------------------------------------------------------------------------


def pod_udp(size: int = 100, *, options: bytes = b"") -> bytes:
    """Pod -> remote pod UDP frame whose IPv4 total length is `size`."""
    payload = b"u" * (size - IPV4_HLEN - len(options) - UDP_HLEN)
    return udp_frame(payload, saddr=ip4(LOCAL_POD), daddr=ip4(REMOTE_POD), options=options)


def pod_tcp(size: int = 100) -> bytes:
    """Pod -> remote pod TCP frame whose IPv4 total length is `size` (a TSO frame if large)."""
    payload = b"t" * (size - IPV4_HLEN - 20)
    return tcp_frame(payload, saddr=ip4(LOCAL_POD), daddr=ip4(REMOTE_POD))


def pod_ip(
    payload: bytes = b"p" * 40,
    *,
    daddr: str = REMOTE_POD,
    proto: int = IPPROTO_UDP,
    ttl: int = 64,
    version: int = 4,
    ihl: int | None = None,
    tot_len: int | None = None,
) -> bytes:
    """Pod frame with a hand-made IPv4 header (the escape hatches make it malformed)."""
    return eth() + ipv4(
        payload,
        saddr=ip4(LOCAL_POD),
        daddr=ip4(daddr),
        proto=proto,
        ttl=ttl,
        version=version,
        ihl=ihl,
        tot_len=tot_len,
    )


def inner(daddr: str = LOCAL_POD, size: int = 100) -> bytes:
    """Remote pod -> local pod UDP frame, as carried inside VXLAN."""
    payload = b"i" * (size - IPV4_HLEN - UDP_HLEN)
    return udp_frame(payload, saddr=ip4(REMOTE_POD), daddr=ip4(daddr))


def wire(
    inner_frame: bytes | None = None,
    *,
    vni: int = VNI,
    flags: int = VXLAN_FLAG_I,
    reserved1: int = 0,
    reserved2: int = 0,
    dport: int = VXLAN_PORT,
    proto: int = IPPROTO_UDP,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    ihl: int | None = None,
) -> bytes:
    """Node B -> this node VXLAN frame around `inner_frame`."""
    if inner_frame is None:
        inner_frame = inner()
    saddr, daddr = ip4("192.168.0.2"), ip4("192.168.0.1")
    body = vxlan(inner_frame, vni=vni, flags=flags, reserved1=reserved1, reserved2=reserved2)
    seg = udp(body, sport=49152, dport=dport, saddr=saddr, daddr=daddr, csum=Csum.ZERO)
    return eth() + ipv4(
        seg,
        saddr=saddr,
        daddr=daddr,
        proto=proto,
        df=not mf,
        mf=mf,
        frag_offset=frag_offset,
        options=options,
        ihl=ihl,
    )


def inner_ip(*, version: int = 4, ihl: int | None = None, options: bytes = b"") -> bytes:
    """Inner frame with a hand-made IPv4 header."""
    return eth() + ipv4(
        b"x" * 40,
        saddr=ip4(REMOTE_POD),
        daddr=ip4(LOCAL_POD),
        version=version,
        ihl=ihl,
        options=options,
    )


NOP4 = b"\x01\x01\x01\x01"  # four IPv4 NOP options: a valid header with IHL 6
FULL_WIRE = wire()


# --- the table ----------------------------------------------------------------------------

# A table: one row per case reads better than the formatter's vertical layout.
# fmt: off
CASES = [
    # from_pod: to the ring core, or to the kernel VXLAN fallback when no socket serves it
    Case("pod redirect", POD, pod_udp(), XDP_REDIRECT, "pod_redirect", SERVED),
    Case("pod redirect ip options", POD, pod_udp(options=NOP4), XDP_REDIRECT, "pod_redirect",
         SERVED),
    Case("pod redirect udp at mtu", POD, pod_udp(OVERLAY_MTU), XDP_REDIRECT, "pod_redirect",
         SERVED),
    Case("pod redirect tcp above mtu", POD, pod_tcp(OVERLAY_MTU + 1), XDP_REDIRECT,
         "pod_redirect", SERVED),
    Case("pod redirect tso superframe multibuffer", POD, pod_tcp(60000), XDP_REDIRECT,
         "pod_redirect", SERVED),
    Case("pod redirect lpm shorter prefix", POD, pod_ip(daddr="10.245.9.9"), XDP_REDIRECT,
         "pod_redirect",
         Maps(remote_cidrs=(("10.245.0.0/16", "192.168.0.3"),), xsk_slots=(EP_SLOT,))),
    Case("pod redirect ttl 2", POD, pod_ip(ttl=2), XDP_REDIRECT, "pod_redirect", SERVED),
    Case("pod fallback empty slot", POD, pod_udp(), XDP_PASS, "pod_fallback"),
    Case("pod fallback other slot served", POD, pod_udp(), XDP_PASS, "pod_fallback",
         Maps(xsk_slots=(EP_SLOT + 1, UNDERLAY))),
    # from_pod: not overlay traffic, or traffic the kernel must handle
    Case("pod arp", POD, eth(ethertype=ETH_P_ARP) + b"\x00" * 28, XDP_PASS,
         "pod_pass_not_ipv4", SERVED),
    Case("pod ipv6", POD, eth(ethertype=ETH_P_IPV6) + b"\x60" + b"\x00" * 39, XDP_PASS,
         "pod_pass_not_ipv4", SERVED),
    Case("pod not remote internet", POD, pod_ip(daddr="8.8.8.8"), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod not remote same node", POD, pod_ip(daddr="10.244.1.9"), XDP_PASS,
         "pod_pass_not_remote", SERVED),
    Case("pod not remote empty map", POD, pod_udp(), XDP_PASS, "pod_pass_not_remote",
         Maps(remote_cidrs=(), xsk_slots=(EP_SLOT,))),
    Case("pod no endpoint", POD, pod_udp(), XDP_PASS, "pod_pass_no_endpoint",
         Maps(endpoint_slot=None, xsk_slots=(EP_SLOT,))),
    Case("pod ttl 1", POD, pod_ip(ttl=1), XDP_PASS, "pod_pass_ttl", SERVED),
    Case("pod ttl 0", POD, pod_ip(ttl=0), XDP_PASS, "pod_pass_ttl", SERVED),
    Case("pod oversize udp", POD, pod_udp(OVERLAY_MTU + 1), XDP_PASS, "pod_pass_oversize",
         SERVED),
    Case("pod oversize icmp", POD, pod_ip(b"\x08" * (OVERLAY_MTU - 19), proto=IPPROTO_ICMP),
         XDP_PASS, "pod_pass_oversize", SERVED),
    Case("pod oversize udp gso superframe", POD, pod_udp(30000), XDP_PASS,
         "pod_pass_oversize", SERVED),
    # from_pod: malformed, at every header boundary
    Case("pod truncated after eth", POD, eth(), XDP_PASS, "pod_pass_malformed", SERVED),
    Case("pod truncated ip header", POD, pod_udp()[: ETH_HLEN + IPV4_HLEN - 1], XDP_PASS,
         "pod_pass_malformed", SERVED),
    Case("pod truncated ip options", POD,
         pod_udp(options=NOP4 * 2)[: ETH_HLEN + IPV4_HLEN + 4], XDP_PASS,
         "pod_pass_malformed", SERVED),
    Case("pod ihl 4", POD, pod_ip(ihl=4), XDP_PASS, "pod_pass_malformed", SERVED),
    Case("pod ihl 0", POD, pod_ip(ihl=0), XDP_PASS, "pod_pass_malformed", SERVED),
    Case("pod ihl beyond frame", POD, pod_ip(b"", ihl=15), XDP_PASS, "pod_pass_malformed",
         SERVED),
    Case("pod version 6 in ipv4 frame", POD, pod_ip(version=6), XDP_PASS,
         "pod_pass_malformed", SERVED),
    Case("pod tot_len below header", POD, pod_ip(tot_len=IPV4_HLEN - 1), XDP_PASS,
         "pod_pass_malformed", SERVED),

    # from_wire: ours, to the queue's socket or to the kernel VXLAN fallback
    Case("wire redirect", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect", SERVED),
    Case("wire redirect queue 3", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         Maps(xsk_slots=(UNDERLAY + 3,)), rx_queue=3),
    Case("wire redirect last queue", WIRE, FULL_WIRE, XDP_REDIRECT, "wire_redirect",
         Maps(xsk_slots=(UNDERLAY + MAX_QUEUES - 1,)), rx_queue=MAX_QUEUES - 1),
    Case("wire redirect reserved bits set", WIRE,
         wire(flags=0xFF, reserved1=0xFFFFFF, reserved2=0xFF), XDP_REDIRECT, "wire_redirect",
         SERVED),
    Case("wire redirect outer ip options", WIRE, wire(options=NOP4), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire redirect inner ip options", WIRE, wire(inner_ip(options=NOP4)), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire redirect jumbo multibuffer", WIRE, wire(inner(size=9000)), XDP_REDIRECT,
         "wire_redirect", SERVED),
    Case("wire fallback empty slot", WIRE, FULL_WIRE, XDP_PASS, "wire_fallback"),
    Case("wire fallback other queue served", WIRE, FULL_WIRE, XDP_PASS, "wire_fallback",
         Maps(xsk_slots=(UNDERLAY + 3, EP_SLOT))),
    Case("wire fallback queue beyond underlay slots", WIRE, FULL_WIRE, XDP_PASS,
         "wire_fallback", SERVED, rx_queue=MAX_QUEUES),
    # from_wire: not VXLAN for us
    Case("wire arp", WIRE, eth(ethertype=ETH_P_ARP) + b"\x00" * 28, XDP_PASS,
         "wire_pass_not_vxlan", SERVED),
    Case("wire ipv6", WIRE, eth(ethertype=ETH_P_IPV6) + b"\x60" + b"\x00" * 39, XDP_PASS,
         "wire_pass_not_vxlan", SERVED),
    Case("wire outer tcp", WIRE, wire(proto=IPPROTO_TCP), XDP_PASS, "wire_pass_not_vxlan",
         SERVED),
    Case("wire other udp port", WIRE, wire(dport=4789), XDP_PASS, "wire_pass_not_vxlan",
         SERVED),
    Case("wire outer first fragment", WIRE, wire(mf=True), XDP_PASS, "wire_pass_not_vxlan",
         SERVED),
    Case("wire outer later fragment", WIRE, wire(frag_offset=185), XDP_PASS,
         "wire_pass_not_vxlan", SERVED),
    Case("wire other vni", WIRE, wire(vni=VNI + 1), XDP_PASS, "wire_pass_other_vni", SERVED),
    Case("wire vni in reserved byte", WIRE, wire(vni=0, reserved2=VNI), XDP_PASS,
         "wire_pass_other_vni", SERVED),
    Case("wire i flag clear", WIRE, wire(flags=0), XDP_PASS, "wire_pass_other_vni", SERVED),
    Case("wire only other flags", WIRE, wire(flags=0xFF & ~VXLAN_FLAG_I), XDP_PASS,
         "wire_pass_other_vni", SERVED),
    # from_wire: ours, but the destination is not an accelerated local pod
    Case("wire inner dst not local", WIRE, wire(inner("10.244.1.99")), XDP_PASS,
         "wire_pass_not_local", SERVED),
    Case("wire no local ips", WIRE, FULL_WIRE, XDP_PASS, "wire_pass_not_local",
         Maps(local_ips=(), xsk_slots=(UNDERLAY,))),
    Case("wire inner arp", WIRE, wire(eth(ethertype=ETH_P_ARP) + b"\x00" * 28), XDP_PASS,
         "wire_pass_not_local", SERVED),
    # from_wire: malformed, at every header boundary
    Case("wire truncated after eth", WIRE, FULL_WIRE[:ETH_HLEN], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated outer ip", WIRE, FULL_WIRE[: ETH_HLEN + IPV4_HLEN - 1], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire outer ihl 4", WIRE, wire(ihl=4), XDP_PASS, "wire_pass_malformed", SERVED),
    Case("wire truncated outer options", WIRE,
         wire(options=NOP4 * 2)[: ETH_HLEN + IPV4_HLEN + 4], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated udp", WIRE, FULL_WIRE[: ETH_HLEN + IPV4_HLEN + UDP_HLEN - 1],
         XDP_PASS, "wire_pass_malformed", SERVED),
    Case("wire truncated vxlan", WIRE, FULL_WIRE[: OUTER_OVERHEAD - 1], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated inner eth", WIRE, FULL_WIRE[: OUTER_OVERHEAD + ETH_HLEN - 1],
         XDP_PASS, "wire_pass_malformed", SERVED),
    Case("wire truncated inner ip", WIRE,
         FULL_WIRE[: OUTER_OVERHEAD + ETH_HLEN + IPV4_HLEN - 1], XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire inner ihl 4", WIRE, wire(inner_ip(ihl=4)), XDP_PASS, "wire_pass_malformed",
         SERVED),
    Case("wire inner version 6", WIRE, wire(inner_ip(version=6)), XDP_PASS,
         "wire_pass_malformed", SERVED),
    Case("wire truncated inner options", WIRE,
         wire(inner_ip(options=NOP4 * 2)[: ETH_HLEN + IPV4_HLEN + 4]), XDP_PASS,
         "wire_pass_malformed", SERVED),
]
# fmt: on


def _setup(dp: Datapath, maps: Maps, xsk: XskSocket) -> None:
    for cidr, node in maps.remote_cidrs:
        dp.maps.set_remote_cidr(IPv4Network(cidr), IPv4Address(node))
    if maps.endpoint_slot is not None:
        dp.maps.set_endpoint(
            ifindex=dp.ifindex,
            slot=maps.endpoint_slot,
            ip=IPv4Address(LOCAL_POD),
            mac=bytes.fromhex("020000000001"),
        )
    for ip in maps.local_ips:
        dp.maps.set_local_ip(IPv4Address(ip), slot=EP_SLOT, ifindex=dp.ifindex)
    for slot in maps.xsk_slots:
        dp.put_xsk(slot, xsk)


@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "-") for c in CASES])
def test_verdict(case: Case, datapath: Datapath, xsk: XskSocket) -> None:
    _setup(datapath, case.maps, xsk)
    before = datapath.maps.xdp_stats()

    action, out = datapath.run(case.prog, case.packet, rx_queue=case.rx_queue)

    after = datapath.maps.xdp_stats()
    moved = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert (action, moved) == (case.action, {case.counter: 1})
    # Neither program ever rewrites a frame; the ring core does.
    assert out == case.packet


def test_every_counter_is_covered() -> None:
    """Each enum rl_xdp_stat value (but RL_XS_MAX) is some row's expected counter."""
    enum_names = {
        n.removeprefix("RL_XS_").lower()
        for n in dir(lib)
        if n.startswith("RL_XS_") and n != "RL_XS_MAX"
    }
    assert enum_names == {c.counter for c in CASES}


def test_frames_are_what_the_rows_say() -> None:
    """Sanity of the table's builders (so a row cannot pass for the wrong reason)."""
    assert len(pod_udp(OVERLAY_MTU)) == ETH_HLEN + OVERLAY_MTU
    assert len(pod_tcp(60000)) == ETH_HLEN + 60000
    assert len(FULL_WIRE) == OUTER_OVERHEAD + len(inner())
    assert tcp(b"")[12] >> 4 == 5  # pod_tcp assumes a 20-byte TCP header


def test_fallback_then_redirect_when_socket_appears(datapath: Datapath, xsk: XskSocket) -> None:
    """The fallback switch: the same frame goes to the kernel until the ring core fills the
    slot, then to the ring core, with no map change but the XSKMAP."""
    _setup(datapath, Maps(), xsk)
    assert datapath.run(POD, pod_udp())[0] == XDP_PASS
    datapath.put_xsk(EP_SLOT, xsk)
    assert datapath.run(POD, pod_udp())[0] == XDP_REDIRECT
    stats = datapath.maps.xdp_stats()
    assert (stats["pod_fallback"], stats["pod_redirect"]) == (1, 1)
