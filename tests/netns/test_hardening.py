"""Overlay hardening against real kernel objects: attacks from a pod and from a rogue host on the
underlay, with the ring core up, killed (SIGKILL), stopped (SIGTERM), and -- as the control that
shows each attack is real -- on the bare flannel-style kernel path with the programs removed.

One three-node sandbox (the underlay is a bridge) with a rogue host plugged into the bridge:

    n1p1 (10.244.1.2)  the attacking pod          n1p2 (10.244.1.3)  local target, legit sender
    n2p1 (10.244.2.2)  remote target              n2p2 (10.244.2.3)  legit receiver
    rogue (192.168.250.100)  on the underlay bridge, no node

For every attack class: whether the target pod received the frame (a random marker in the
innermost payload, sniffed on its eth0), which rl_xdp_stats counter moved (read from the pins, so
also with no agent running), and for the classes with a lasting effect on the node (the path MTU
towards a node, a neighbour entry) whether it took place. Legitimate traffic runs before (ping,
TCP transfer with SHA-256, iperf3), during (a 10 ms ping) and after (the same, throughput
compared). The frames are built with tests/native/packets.py and sent through AF_PACKET sockets
created inside the namespaces.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from agent import traffic
from agent.netlink.vxlan import vtep_mac
from agent.sandbox import Node, Pod, Sandbox, sh
from agent.xdp.bpfobj import lib
from agent.xdp.maps import PinnedMaps, VtepFlag
from tests.conftest import require_root, require_tools
from tests.native.packets import (
    ETH_P_ARP,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    VXLAN_FLAG_I,
    Csum,
    checksum,
    eth,
    ipv4,
    udp,
    vxlan,
)
from tests.netns.conftest import SandboxFactory
from tests.nsutil import entered

VXLAN_PORT = 4789
VNI = 1
KERNEL_SPORT = 40000  # in the kernel device's source port range: the kernel's decap path
ROGUE_IP = "192.168.250.100"
ROGUE_IP2 = "192.168.250.101"
COPIES = 3  # each attack frame is sent this many times; drop counters must move by as many
WINDOW = 0.4  # seconds a target listens after the last copy

STATES = ["up", "killed", "stopped", "bare"]


# --- raw frames in namespaces ----------------------------------------------------------------


def link_mac(netns: str, dev: str) -> bytes:
    info = json.loads(sh("ip", "-n", netns, "-j", "link", "show", "dev", dev).stdout)
    return bytes.fromhex(str(info[0]["address"]).replace(":", ""))


class Port:
    """An AF_PACKET socket on one interface of one namespace: sends frames, sniffs for markers."""

    def __init__(self, netns: str, dev: str) -> None:
        with entered(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            self.sock.bind((dev, 0))
        self.sock.setblocking(False)
        self.mac = link_mac(netns, dev)

    def send(self, *frames: bytes) -> None:
        for _ in range(COPIES):
            for frame in frames:
                self.sock.send(frame)
            time.sleep(0.01)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(65536)

    def saw(self, marker: bytes, window: float = WINDOW) -> bool:
        deadline = time.monotonic() + window
        found = False
        while time.monotonic() < deadline:
            try:
                found = found or marker in self.sock.recv(65536)
            except BlockingIOError:
                time.sleep(0.01)
        return found

    def close(self) -> None:
        self.sock.close()


def ip(text: str | IPv4Address) -> bytes:
    return IPv4Address(str(text)).packed


def datagram(payload: bytes, *, src: str, dst: str, dport: int, sport: int = KERNEL_SPORT,
             mf: bool = False, ident: int = 0) -> bytes:
    """IPv4/UDP (checksum 0, as VXLAN senders do)."""
    seg = udp(payload, sport=sport, dport=dport, saddr=ip(src), daddr=ip(dst), csum=Csum.ZERO)
    return ipv4(seg, saddr=ip(src), daddr=ip(dst), proto=IPPROTO_UDP, mf=mf, ident=ident)


def to_pod(target: Pod, node: Node, marker: bytes, *, src: str = "10.244.3.9") -> bytes:
    """An Ethernet frame as `node`'s VXLAN device would receive it from the overlay: for
    `target`, carrying `marker`."""
    return eth(bytes.fromhex(vtep_mac(node.ip).replace(":", "")), b"\x02\xaa\x00\x00\x00\x01") + \
        datagram(marker, src=src, dst=str(target.ip), dport=9999)


def vx(inner: bytes, *, vni: int = VNI, flags: int = VXLAN_FLAG_I, reserved2: int = 0) -> bytes:
    return vxlan(inner, vni=vni, flags=flags, reserved2=reserved2)


def icmp_frag_needed(quote: bytes, *, src: str, dst: str, mtu: int = 576) -> bytes:
    msg = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quote
    msg = msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]
    return ipv4(msg, saddr=ip(src), daddr=ip(dst), proto=IPPROTO_ICMP)


def node_vxlan_quote(src: Node, dst: Node) -> bytes:
    """The first bytes of one of `src`'s own VXLAN datagrams to `dst`: what the kernel needs to
    find its VXLAN socket from an ICMP error (IPv4, UDP and VXLAN headers)."""
    return ipv4(b"", saddr=ip(src.ip), daddr=ip(dst.ip), proto=IPPROTO_UDP, df=True,
                tot_len=1500) + struct.pack("!HHHH", KERNEL_SPORT, VXLAN_PORT, 1480, 0) + \
        vx(b"")


# --- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    sb: Sandbox
    rogue_netns: str
    attacker: Port = field(init=False)
    rogue: Port = field(init=False)
    state: str = "new"

    def __post_init__(self) -> None:
        self.attacker = Port(self.n1.pods[0].netns, "eth0")
        self.rogue = Port(self.rogue_netns, "rogue0")
        self.gw_mac = link_mac(self.n1.netns, self.n1.pods[0].host_ifname)
        self.ul_mac = {n.name: link_mac(n.netns, "ul0") for n in self.sb.nodes}

    @property
    def n1(self) -> Node:
        return self.sb.nodes[0]

    @property
    def n2(self) -> Node:
        return self.sb.nodes[1]

    def from_attacker(self, packet: bytes, *, dst_mac: bytes | None = None,
                      src_mac: bytes | None = None, ethertype: int = 0x0800) -> bytes:
        return eth(dst_mac or self.gw_mac, src_mac or self.attacker.mac, ethertype) + packet

    def from_rogue(self, packet: bytes, node: Node | None = None) -> bytes:
        return eth(self.ul_mac[(node or self.n1).name], self.rogue.mac) + packet

    def counters(self) -> dict[str, dict[str, int]]:
        out = {}
        for node in self.sb.nodes:
            with PinnedMaps(node.pin_dir) as maps:
                out[node.name] = maps.xdp_stats()
        return out

    def close(self) -> None:
        self.attacker.close()
        self.rogue.close()


def add_rogue(sb: Sandbox) -> str:
    """A host on the underlay bridge that is no node: 192.168.250.100 (and .101)."""
    assert sb.switch_netns is not None
    netns = f"{sb.prefix}-rogue"
    sh("ip", "netns", "add", netns)
    sb.namespaces.append(netns)
    sh("ip", "link", "add", "rogue0", "netns", netns, "type", "veth", "peer", "name", "prg",
       "netns", sb.switch_netns)
    sh("ip", "-n", sb.switch_netns, "link", "set", "prg", "master", "br0", "up")
    sh("ip", "-n", netns, "link", "set", "rogue0", "up")
    sh("ip", "-n", netns, "addr", "add", f"{ROGUE_IP}/24", "dev", "rogue0")
    sh("ip", "-n", netns, "addr", "add", f"{ROGUE_IP2}/24", "dev", "rogue0")
    return netns


def detach_all_xdp(node: Node) -> None:
    for link in json.loads(node.run("ip", "-j", "link", "show").stdout):
        if link.get("xdp"):
            node.run("ip", "link", "set", "dev", link["ifname"], "xdpgeneric", "off",
                     check=False)
            node.run("ip", "link", "set", "dev", link["ifname"], "xdpdrv", "off", check=False)


def enter_state(scene: Scene, state: str) -> None:
    """Agents running, then killed / stopped / stopped with the programs removed."""
    sb = scene.sb
    for node in sb.nodes:
        if node.agent is None:
            sb.start_agent(node)
    if state == "killed":
        for node in sb.nodes:
            assert sb.stop_agent(node, signal.SIGKILL) == -signal.SIGKILL
    elif state in ("stopped", "bare"):
        for node in sb.nodes:
            assert sb.stop_agent(node, signal.SIGTERM) == 0
    if state == "bare":
        for node in sb.nodes:
            detach_all_xdp(node)
    scene.state = state


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    require_root()
    require_tools("ip", "nsenter", "ping", "iperf3")
    sb = Sandbox(nodes=3, pods=2)
    made: Scene | None = None
    try:
        sb.up()
        sb.start_agents()
        made = Scene(sb, add_rogue(sb))
        yield made
    finally:
        if made is not None:
            made.close()
        sb.close()


@pytest.fixture(scope="module", params=STATES)
def state(request: pytest.FixtureRequest, scene: Scene) -> str:
    name: str = request.param
    enter_state(scene, name)
    return name


# --- the attack classes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """One attack class. `frames(scene, marker)` builds what the sender (the attacking pod or
    the rogue) puts on its link; `target(scene)` is the pod that must not see `marker`;
    `counter` is (node index, rl_xdp_stats name) that must move by COPIES (drop counters) or
    at least COPIES (events); `bare` is whether the plain kernel path lets it through, which
    the control state checks; `effect` tells whether a lasting effect on a node took place."""

    name: str
    sender: str  # "pod" or "rogue"
    frames: Callable[[Scene, bytes], list[bytes]]
    target: Callable[[Scene], Pod | None]
    counter: tuple[int, str]
    bare: bool = True
    delivered: bool = False  # with the protections: received? (only the RFC 7348 class)
    effect: Callable[[Scene], bool] | None = None
    exact: bool = True


def local_target(s: Scene) -> Pod:
    return s.n1.pods[1]


def remote_target(s: Scene) -> Pod:
    return s.n2.pods[0]


def pod_vxlan(dst: str | Callable[[Scene], str], target: Callable[[Scene], Pod],
              node: Callable[[Scene], Node], *, broadcast: bool = False
              ) -> Callable[[Scene, bytes], list[bytes]]:
    """The attacking pod sends VXLAN to dst:4789 carrying a frame for `target` as `node`'s VXLAN
    device would receive it."""
    def build(s: Scene, marker: bytes) -> list[bytes]:
        addr = dst(s) if callable(dst) else dst
        inner = to_pod(target(s), node(s), marker)
        pkt = datagram(vx(inner), src=str(s.n1.pods[0].ip), dst=addr, dport=VXLAN_PORT)
        return [s.from_attacker(pkt, dst_mac=b"\xff" * 6 if broadcast else None)]
    return build


def rogue_vxlan(*, src: str = ROGUE_IP, dst: str | None = None, vni: int = VNI,
                flags: int = VXLAN_FLAG_I, reserved2: int = 0, fragment: bool = False,
                nested: bool = False) -> Callable[[Scene, bytes], list[bytes]]:
    """The rogue host sends VXLAN to node 1 (from `src`, to `dst`, node 1's underlay IP by
    default) carrying a frame for the local target; `nested`: the carried frame is itself
    VXLAN to node 1's VTEP address; `fragment`: sent as two IPv4 fragments."""
    def build(s: Scene, marker: bytes) -> list[bytes]:
        n1 = s.n1
        inner = to_pod(local_target(s), n1, marker)
        if nested:
            inner = eth(bytes.fromhex(vtep_mac(n1.ip).replace(":", "")), b"\x02\xaa\0\0\0\2") + \
                datagram(vx(inner), src="10.244.2.9", dst=str(n1.pod_cidr.network_address),
                         dport=VXLAN_PORT)
        to = dst or str(n1.ip)
        body = vx(inner, vni=vni, flags=flags, reserved2=reserved2)
        if not fragment:
            return [s.from_rogue(datagram(body, src=src, dst=to, dport=VXLAN_PORT))]
        seg = udp(body, sport=KERNEL_SPORT, dport=VXLAN_PORT, saddr=ip(src), daddr=ip(to),
                  csum=Csum.ZERO)
        ident = secrets.randbelow(65535) + 1
        first = ipv4(seg[:16], saddr=ip(src), daddr=ip(to), proto=IPPROTO_UDP, mf=True,
                     ident=ident)
        rest = ipv4(seg[16:], saddr=ip(src), daddr=ip(to), proto=IPPROTO_UDP, frag_offset=2,
                    ident=ident)
        return [s.from_rogue(first), s.from_rogue(rest)]
    return build


def spoofed(*, src_ip: Callable[[Scene], str] | None = None,
            src_mac: bytes | None = None) -> Callable[[Scene, bytes], list[bytes]]:
    """The attacking pod sends UDP to the remote target under another source."""
    def build(s: Scene, marker: bytes) -> list[bytes]:
        src = src_ip(s) if src_ip else str(s.n1.pods[0].ip)
        pkt = datagram(marker, src=src, dst=str(remote_target(s).ip), dport=9999)
        return [s.from_attacker(pkt, src_mac=src_mac)]
    return build


def arp_claim(s: Scene, _marker: bytes) -> list[bytes]:
    """An ARP request from the attacker that claims the local target's IPv4 address."""
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + s.attacker.mac + \
        ip(local_target(s).ip) + b"\0" * 6 + ip(s.n1.pod_cidr.network_address + 1)
    return [s.from_attacker(body, dst_mac=b"\xff" * 6, ethertype=ETH_P_ARP)]


def neighbour_poisoned(s: Scene) -> bool:
    out = s.n1.run("ip", "neigh", "show", str(local_target(s).ip), "dev",
                   s.n1.pods[0].host_ifname).stdout
    return out.strip() != ""


def pmtu_attack(victim: Callable[[Scene], Node], peer: Callable[[Scene], Node],
                to: Callable[[Scene], str]) -> Callable[[Scene, bytes], list[bytes]]:
    """ICMP fragmentation-needed (MTU 576) from the attacking pod to `to`, quoting the victim
    node's own VXLAN datagram to `peer`."""
    def build(s: Scene, _marker: bytes) -> list[bytes]:
        quote = node_vxlan_quote(victim(s), peer(s))
        return [s.from_attacker(icmp_frag_needed(quote, src=str(s.n1.pods[0].ip), dst=to(s)))]
    return build


def pmtu_lowered(node: Callable[[Scene], Node], peer: Callable[[Scene], Node]
                 ) -> Callable[[Scene], bool]:
    def check(s: Scene) -> bool:
        return " mtu " in node(s).run("ip", "route", "get", str(peer(s).ip)).stdout
    return check


def node1(s: Scene) -> Node:
    return s.n1


def node2(s: Scene) -> Node:
    return s.n2


ATTACKS = [
    # a pod sends VXLAN to its own node, on every address the kernel's VXLAN socket takes
    Attack("pod vxlan to its gateway", "pod",
           pod_vxlan(lambda s: str(s.n1.pod_cidr.network_address + 1), local_target, node1),
           local_target, (0, "pod_drop_vxlan_to_node")),
    Attack("pod vxlan to its node's underlay ip", "pod",
           pod_vxlan(lambda s: str(s.n1.ip), local_target, node1),
           local_target, (0, "pod_drop_vxlan_to_node")),
    Attack("pod vxlan to its node's vtep address", "pod",
           pod_vxlan(lambda s: str(s.n1.pod_cidr.network_address), local_target, node1),
           local_target, (0, "pod_drop_vxlan_to_node")),
    Attack("pod vxlan broadcast", "pod",
           pod_vxlan("255.255.255.255", local_target, node1, broadcast=True),
           local_target, (0, "pod_drop_vxlan_to_node")),
    # ... to another node: directly on the underlay, or through the overlay to its gateway
    Attack("pod vxlan to another node's underlay ip", "pod",
           pod_vxlan(lambda s: str(s.n2.ip), remote_target, node2),
           remote_target, (0, "pod_drop_vxlan_to_vtep")),
    Attack("pod vxlan through the overlay to another node", "pod",
           pod_vxlan(lambda s: str(s.n2.pod_cidr.network_address + 1), remote_target, node2),
           remote_target, (1, "wire_drop_nested_vxlan")),
    # a pod sends under another pod's identity
    Attack("pod spoofs another pod's ip", "pod",
           spoofed(src_ip=lambda s: str(local_target(s).ip)),
           remote_target, (0, "pod_drop_spoof_ip")),
    Attack("pod spoofs its mac", "pod", spoofed(src_mac=b"\x02\x66\x66\x66\x66\x66"),
           remote_target, (0, "pod_drop_spoof_mac")),
    Attack("pod arp claims another pod's ip", "pod", arp_claim, lambda s: None,
           (0, "pod_drop_spoof_ip"), effect=neighbour_poisoned),
    # a pod poisons the path MTU of the underlay: its own node's, or another node's
    Attack("pod frag-needed quoting its node's vxlan", "pod",
           pmtu_attack(node1, node2, lambda s: str(s.n1.pod_cidr.network_address + 1)),
           lambda s: None, (0, "pod_drop_icmp_underlay"), effect=pmtu_lowered(node1, node2)),
    Attack("pod frag-needed to another node quoting its vxlan", "pod",
           pmtu_attack(node2, node1, lambda s: str(s.n2.ip)),
           lambda s: None, (0, "pod_drop_icmp_underlay"), effect=pmtu_lowered(node2, node1)),
    # a host on the underlay that is no node
    Attack("rogue vxlan from a non-node", "rogue", rogue_vxlan(), local_target,
           (0, "wire_drop_unknown_vtep")),
    Attack("rogue vxlan from a pod ip", "rogue", rogue_vxlan(src="10.244.2.2"), local_target,
           (0, "wire_drop_unknown_vtep")),
    # ... spoofing a node's address (only encryption stops that; these checks still apply)
    Attack("rogue as node: other vni", "rogue", rogue_vxlan(src="192.168.250.2", vni=7),
           local_target, (0, "wire_drop_bad_vni"), bare=False),
    Attack("rogue as node: i flag clear", "rogue", rogue_vxlan(src="192.168.250.2", flags=0),
           local_target, (0, "wire_drop_bad_vni"), bare=False),
    Attack("rogue as node: to the node's gateway address", "rogue",
           rogue_vxlan(src="192.168.250.2", dst="10.244.1.1"), local_target,
           (0, "wire_drop_not_to_node")),
    Attack("rogue as node: fragmented vxlan", "rogue",
           rogue_vxlan(src="192.168.250.2", fragment=True), local_target,
           (0, "wire_drop_fragment")),
    Attack("rogue as node: vxlan in vxlan", "rogue",
           rogue_vxlan(src="192.168.250.2", nested=True), local_target,
           (0, "wire_drop_nested_vxlan")),
    # RFC 7348: reserved bits are ignored -- delivered on every path Ringlane runs (the bare
    # kernel drops it), the event counted
    Attack("reserved vxlan bits are ignored", "rogue",
           rogue_vxlan(src="192.168.250.2", reserved2=0x5A), local_target,
           (0, "wire_rsvd_cleared"), bare=False, delivered=True, exact=False),
]


# --- legitimate traffic ----------------------------------------------------------------------


@dataclass
class Legit:
    mbps: float
    exact: bool
    ping_ok: bool


def legit(s: Scene) -> Legit:
    src, dst = s.n1.pods[1], s.n2.pods[1]
    ping = traffic.ping(src, dst, count=5, interval=0.02)
    xfer = traffic.tcp_transfer(src, dst, size=4 << 20)
    mbps = traffic.iperf(src, dst, seconds=2).bits_per_second / 1e6
    return Legit(mbps, xfer.exact, ping.received == ping.sent)


def test_attack_suite(scene: Scene, state: str) -> None:
    s = scene
    for node in s.sb.nodes:
        node.run("ip", "route", "flush", "cache")
    s.n1.run("ip", "neigh", "flush", "dev", s.n1.pods[0].host_ifname)
    before = legit(s)
    assert before.ping_ok and before.exact, before
    background = s.n1.pods[1].popen(
        "ping", "-q", "-i", "0.01", "-w", "60", str(s.n2.pods[1].ip),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows: list[tuple[str, bool, str, int, bool | None]] = []
    failures: list[str] = []
    try:
        for attack in ATTACKS:
            marker = secrets.token_bytes(16)
            target = attack.target(s)
            sniffer = Port(target.netns, "eth0") if target else None
            try:
                if sniffer:
                    sniffer.drain()
                counters_before = s.counters()
                sender = s.attacker if attack.sender == "pod" else s.rogue
                sender.send(*attack.frames(s, marker))
                received = sniffer.saw(marker) if sniffer else False
                if not sniffer:
                    time.sleep(WINDOW)
            finally:
                if sniffer:
                    sniffer.close()
            idx, counter = attack.counter
            node = s.sb.nodes[idx]
            moved = s.counters()[node.name][counter] - counters_before[node.name][counter]
            effect = attack.effect(s) if attack.effect else None
            rows.append((attack.name, received, f"{node.name}:{counter}", moved, effect))
            if state == "bare":
                if sniffer and received != attack.bare:
                    failures.append(f"{attack.name}: bare kernel delivered={received}, "
                                    f"expected {attack.bare}")
                if effect is not None and not effect:
                    failures.append(f"{attack.name}: bare kernel showed no effect")
                continue
            if received != attack.delivered:
                failures.append(f"{attack.name}: target received={received}")
            want_ok = moved == COPIES if attack.exact else moved >= COPIES
            if not want_ok:
                failures.append(f"{attack.name}: {node.name} {counter} moved by {moved}")
            if effect:
                failures.append(f"{attack.name}: took effect on the node")
    finally:
        background.send_signal(signal.SIGINT)
        out, _ = background.communicate(timeout=30)
    sent, got = traffic.parse_ping_summary(out)
    after = legit(s)
    print(f"\n[{state}] attack                                         received  "
          "counter                              moved  effect")
    for name, received, counter, moved, effect in rows:
        print(f"[{state}] {name:<52} {received!s:<9} {counter:<36} {moved:<6} "
              f"{'' if effect is None else effect}")
    print(f"[{state}] legit: ping during {got}/{sent}; iperf3 {before.mbps:.0f} -> "
          f"{after.mbps:.0f} Mbit/s; transfers exact {before.exact}/{after.exact}")
    if state == "bare":
        for node in s.sb.nodes:  # undo what the control did to the node
            node.run("ip", "route", "flush", "cache")
        assert not failures, "\n".join(failures)
        return
    assert not failures, "\n".join(failures)
    assert after.ping_ok and after.exact, after
    assert got >= sent * 0.97, f"legit ping during the attacks: {got}/{sent}"
    assert after.mbps >= before.mbps * 0.6, (before.mbps, after.mbps)
    for node in s.sb.nodes:
        assert " mtu " not in node.run("ip", "route", "show", "cache").stdout



def test_path_mtu_no_black_hole(scene: Scene, state: str) -> None:
    """A pod whose MTU is above the overlay's: with DF it hears fragmentation-needed with the
    overlay MTU (1450), without DF its packets are fragmented by the kernel before
    encapsulation and arrive. from_pod counts both as pod_pass_oversize (not in the bare
    control, which has no program)."""
    s = scene
    src, dst = s.n1.pods[0], s.n2.pods[0]
    src.run("ip", "link", "set", "eth0", "mtu", "1500")
    s.n1.run("ip", "link", "set", src.host_ifname, "mtu", "1500")
    try:
        src.run("ip", "route", "flush", "cache")
        before = s.counters()["n1"]["pod_pass_oversize"]
        big = src.run("ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", str(dst.ip),
                      check=False)
        assert "mtu = 1450" in big.stdout + big.stderr, big.stdout + big.stderr
        src.run("ip", "route", "flush", "cache")  # or the pod fragments to what it just learnt
        frag = src.run("ping", "-c", "2", "-i", "0.05", "-W", "1", "-M", "dont", "-s", "1472",
                       str(dst.ip), check=False)
        assert frag.returncode == 0, frag.stdout
        moved = s.counters()["n1"]["pod_pass_oversize"] - before
        assert moved == (0 if state == "bare" else 3)
    finally:
        src.run("ip", "link", "set", "eth0", "mtu", "1450")
        s.n1.run("ip", "link", "set", src.host_ifname, "mtu", "1450")
        src.run("ip", "route", "flush", "cache")


# --- configuration ---------------------------------------------------------------------------


def test_extra_vteps_prune_and_detach_on_stop(make_sandbox: SandboxFactory) -> None:
    """extraVteps: a listed underlay host may send VXLAN (and pods may not send to it), an
    unlisted one may not. A NODE entry no node stands for is pruned by the first reconcile
    pass after a restart. detachOnStop: SIGTERM then leaves the bare kernel fallback."""
    sb = make_sandbox("--extra-vteps", ROGUE_IP, "--detach-on-stop", "true", nodes=3)
    n1, n2, n3 = sb.nodes
    with PinnedMaps(n1.pin_dir) as maps:
        assert {str(k): int(v) for k, v in maps.vteps().items()} == {
            str(n1.ip): lib.RL_VTEP_F_SELF, str(n2.ip): lib.RL_VTEP_F_NODE,
            str(n3.ip): lib.RL_VTEP_F_NODE, ROGUE_IP: lib.RL_VTEP_F_EXTRA}
    scene = Scene(sb, add_rogue(sb))
    try:
        for src, delivered, counter in ((ROGUE_IP, True, "wire_pass_kernel_sent"),
                                        (ROGUE_IP2, False, "wire_drop_unknown_vtep")):
            marker = secrets.token_bytes(16)
            sniffer = Port(local_target(scene).netns, "eth0")
            try:
                before = scene.counters()["n1"][counter]
                scene.rogue.send(*rogue_vxlan(src=src)(scene, marker))
                assert sniffer.saw(marker) == delivered, src
            finally:
                sniffer.close()
            assert scene.counters()["n1"][counter] - before >= COPIES, (src, counter)
        before = scene.counters()["n1"]["pod_drop_vxlan_to_vtep"]
        scene.attacker.send(*pod_vxlan(ROGUE_IP, local_target, node1)(scene, b"x"))
        assert scene.counters()["n1"]["pod_drop_vxlan_to_vtep"] - before == COPIES
    finally:
        scene.close()
    # a node that left while the agent was away: pruned once every node is programmed again
    assert sb.stop_agent(n1) == 0
    stale = IPv4Address("192.168.250.77")
    with PinnedMaps(n1.pin_dir) as maps:
        maps.set_vtep(stale, VtepFlag.NODE)
    sb.start_agent(n1)
    with PinnedMaps(n1.pin_dir) as maps:
        vteps = maps.vteps()
    assert stale not in vteps and vteps[n2.ip] == VtepFlag.NODE
    # detachOnStop: the programs go with the agent
    assert sb.stop_agent(n1) == 0
    assert [link["ifname"] for link in json.loads(n1.run("ip", "-j", "link", "show").stdout)
            if link.get("xdp")] == []
    assert traffic.ping(n1.pods[0], n2.pods[0], count=3, interval=0.02).received == 3
