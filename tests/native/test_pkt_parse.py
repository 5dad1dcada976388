"""rl_parse_inner(), rl_parse_vxlan() and rl_flow_hash() on well-formed and hostile frames.

Frames come from pods and from the wire, so every length and header field a sender controls
is varied, and the expected verdict is computed in Python from the rules in pkt.h.
"""

from __future__ import annotations

import struct

import pytest

from .packets import (
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HLEN,
    UDP_HLEN,
    VXLAN_HLEN,
    VXLAN_PORT,
    Csum,
    eth,
    ip4,
    ipv4,
    tcp,
    tcp_frame,
    udp,
    udp_frame,
    vxlan,
    vxlan_frame,
)
from .pkt_harness import Consts, PktHarness

pytestmark = pytest.mark.native

SADDR, DADDR = ip4("10.244.1.2"), ip4("10.244.2.3")
VNI = 0x123456


def ip_options(ihl: int) -> bytes:
    """ihl*4 - 20 bytes of options: NOPs ended by EOL, as valid as options get."""
    n = ihl * 4 - IPV4_HLEN
    return b"\x01" * (n - 1) + b"\x00" if n else b""


def expected_inner(k: int, ihl: int, tot_len: int, allow_short: bool, c: Consts) -> int:
    """What rl_parse_inner() must return for the first k bytes of a valid frame."""
    if k < ETH_HLEN + IPV4_HLEN:
        return -c.TRUNCATED
    if k < ETH_HLEN + ihl * 4:
        return -c.BAD_IHL
    if not allow_short and k < ETH_HLEN + tot_len:
        return -c.BAD_IP_LEN
    return 0


# --- rl_parse_inner ---------------------------------------------------------------------------


@pytest.mark.parametrize("proto", [IPPROTO_UDP, IPPROTO_TCP])
def test_inner_fields(pkt: PktHarness, proto: int) -> None:
    """Every field of rl_pkt_info is filled from the frame."""
    if proto == IPPROTO_UDP:
        frame = udp_frame(b"hello", sport=1234, dport=53, ttl=17)
    else:
        frame = tcp_frame(b"hello", sport=1234, dport=80, ttl=17)
    r = pkt.parse_inner(frame)
    assert r.ret == 0
    assert (r.l3_off, r.l4_off, r.tot_len, r.proto, r.ttl, r.frag) == (
        14, 34, len(frame) - ETH_HLEN, proto, 17, 0)
    assert (r.saddr, r.daddr) == (SADDR, DADDR)
    assert (r.sport, r.dport) == (1234, 53 if proto == IPPROTO_UDP else 80)


def test_inner_ethernet_padding_accepted(pkt: PktHarness) -> None:
    """A frame longer than the IPv4 total length (Ethernet padding) parses; tot_len wins."""
    frame = tcp_frame(b"")
    r = pkt.parse_inner(frame + b"\x00" * 6)
    assert r.ret == 0
    assert r.tot_len == len(frame) - ETH_HLEN


@pytest.mark.parametrize("allow_short", [False, True])
@pytest.mark.parametrize("ihl", [5, 6, 15])
@pytest.mark.parametrize("proto", [IPPROTO_UDP, IPPROTO_TCP])
def test_inner_truncated_at_every_length(
    pkt: PktHarness, allow_short: bool, ihl: int, proto: int
) -> None:
    """Cut a valid frame at every length: the verdict follows pkt.h, ports only when present."""
    c = pkt.consts
    opts = ip_options(ihl)
    if proto == IPPROTO_UDP:
        frame = udp_frame(b"0123456789", sport=1111, dport=2222, options=opts)
    else:
        frame = tcp_frame(b"0123456789", sport=1111, dport=2222, ip_options=opts)
    tot_len = len(frame) - ETH_HLEN
    l4_off = ETH_HLEN + ihl * 4
    for k in range(len(frame) + 1):
        r = pkt.parse_inner(frame[:k], allow_short)
        assert r.ret == expected_inner(k, ihl, tot_len, allow_short, c), k
        if r.ret == 0:
            assert r.l4_off == l4_off
            assert (r.sport, r.dport) == ((1111, 2222) if k >= l4_off + 4 else (0, 0)), k


@pytest.mark.parametrize("ihl", range(5))
def test_inner_ihl_below_five(pkt: PktHarness, ihl: int) -> None:
    """IHL 0..4 cannot hold an IPv4 header."""
    frame = eth() + ipv4(udp(b"x" * 40), ihl=ihl)
    assert pkt.parse_inner(frame).ret == -pkt.consts.BAD_IHL


def test_inner_ihl_beyond_frame(pkt: PktHarness) -> None:
    """IHL 15 (60 bytes) in a frame that ends 40 bytes after the IPv4 header starts."""
    frame = eth() + ipv4(b"x" * 20, ihl=15, proto=IPPROTO_ICMP, tot_len=40)
    assert len(frame) == ETH_HLEN + 40
    assert pkt.parse_inner(frame).ret == -pkt.consts.BAD_IHL
    assert pkt.parse_inner(frame, allow_short=True).ret == -pkt.consts.BAD_IHL


@pytest.mark.parametrize("ihl", range(6, 16))
@pytest.mark.parametrize("proto", [IPPROTO_UDP, IPPROTO_TCP])
def test_inner_ip_options(pkt: PktHarness, ihl: int, proto: int) -> None:
    """IP options move the L4 header; ports come from behind them."""
    if proto == IPPROTO_UDP:
        frame = udp_frame(b"p", sport=7, dport=8, options=ip_options(ihl))
    else:
        frame = tcp_frame(b"p", sport=7, dport=8, ip_options=ip_options(ihl))
    r = pkt.parse_inner(frame)
    assert r.ret == 0
    assert r.l4_off == ETH_HLEN + ihl * 4
    assert (r.sport, r.dport, r.tot_len) == (7, 8, len(frame) - ETH_HLEN)


@pytest.mark.parametrize("ethertype", [ETH_P_ARP, ETH_P_IPV6, 0x8100, 0x0000, 0x0008])
def test_inner_not_ipv4_ethertype(pkt: PktHarness, ethertype: int) -> None:
    """Only 0x0800 is IPv4 (0x0008 catches a byte-swapped comparison, 0x8100 is a VLAN tag)."""
    frame = eth(ethertype=ethertype) + ipv4(udp(b"x"))
    assert pkt.parse_inner(frame).ret == -pkt.consts.NOT_IPV4


@pytest.mark.parametrize("version", [0, 6, 15])
def test_inner_bad_version(pkt: PktHarness, version: int) -> None:
    """An IPv4 ethertype with another IP version is not IPv4."""
    frame = eth() + ipv4(udp(b"x"), version=version)
    assert pkt.parse_inner(frame).ret == -pkt.consts.NOT_IPV4


def test_inner_tot_len_below_header(pkt: PktHarness) -> None:
    """A total length shorter than the header (here 23 < 24 with options) is bad."""
    frame = eth() + ipv4(udp(b"x" * 20), options=b"\x01" * 4, tot_len=23)
    assert pkt.parse_inner(frame).ret == -pkt.consts.BAD_IP_LEN
    assert pkt.parse_inner(frame, allow_short=True).ret == -pkt.consts.BAD_IP_LEN


def test_inner_tot_len_beyond_frame(pkt: PktHarness) -> None:
    """A total length past the frame is bad unless the frame is a chain's first buffer."""
    seg = udp(b"x" * 20)
    frame = eth() + ipv4(seg, tot_len=IPV4_HLEN + len(seg) + 1)
    assert pkt.parse_inner(frame).ret == -pkt.consts.BAD_IP_LEN
    r = pkt.parse_inner(frame, allow_short=True)
    assert r.ret == 0
    assert r.tot_len == IPV4_HLEN + len(seg) + 1


@pytest.mark.parametrize(
    ("mf", "offset"), [(True, 0), (False, 1), (True, 185), (False, 0x1FFF)]
)
@pytest.mark.parametrize("proto", [IPPROTO_UDP, IPPROTO_TCP])
def test_inner_fragments(pkt: PktHarness, mf: bool, offset: int, proto: int) -> None:
    """Fragments parse, are flagged, and carry no ports, even when too short for an L4 header."""
    for payload in (udp(b"12345678"), b"abc"):
        frame = eth() + ipv4(payload, proto=proto, mf=mf, frag_offset=offset)
        r = pkt.parse_inner(frame)
        assert r.ret == 0
        assert (r.frag, r.sport, r.dport) == (1, 0, 0)


def test_inner_df_is_not_a_fragment(pkt: PktHarness) -> None:
    """DF (and the reserved bit) are not fragmentation."""
    frame = eth() + ipv4(udp(b"x", sport=5, dport=6), df=True)
    frame = frame[:20] + bytes([frame[20] | 0x80]) + frame[21:]  # reserved "evil" bit
    r = pkt.parse_inner(frame)
    assert (r.ret, r.frag, r.sport, r.dport) == (0, 0, 5, 6)


@pytest.mark.parametrize(("proto", "l4_min"), [(IPPROTO_UDP, UDP_HLEN), (IPPROTO_TCP, 20)])
def test_inner_l4_header_too_short(pkt: PktHarness, proto: int, l4_min: int) -> None:
    """An unfragmented TCP/UDP packet must hold its L4 header; exactly the header is fine."""
    c = pkt.consts
    for n in range(l4_min + 1):
        frame = eth() + ipv4(bytes(range(1, n + 1)), proto=proto)
        r = pkt.parse_inner(frame)
        assert r.ret == (0 if n == l4_min else -c.TRUNCATED), n
        r = pkt.parse_inner(frame, allow_short=True)
        assert r.ret == 0, n
        assert (r.sport, r.dport) == ((0x0102, 0x0304) if n >= 4 else (0, 0)), n


def test_inner_other_protocol_has_no_ports(pkt: PktHarness) -> None:
    """ICMP (even with no payload at all) parses with zero ports."""
    r = pkt.parse_inner(eth() + ipv4(b"", proto=IPPROTO_ICMP))
    assert (r.ret, r.proto, r.sport, r.dport) == (0, IPPROTO_ICMP, 0, 0)


def test_inner_ports_not_read_past_tot_len(pkt: PktHarness) -> None:
    """With allow_short, ports behind the IPv4 total length are not the packet's ports."""
    frame = eth() + ipv4(b"\x00\x01\x00\x02", proto=IPPROTO_TCP, tot_len=IPV4_HLEN + 2)
    r = pkt.parse_inner(frame, allow_short=True)
    assert (r.ret, r.sport, r.dport) == (0, 0, 0)


# --- rl_flow_hash -----------------------------------------------------------------------------


def test_hash_stable_within_flow(pkt: PktHarness) -> None:
    """Payload, length, TTL, IP id, TCP flags and seq do not move a flow to another hash."""
    hashes = {
        pkt.parse_inner(tcp_frame(b"x" * n, ttl=ttl, ident=n, seq=n * 1000, flags=flags)).hash
        for n, ttl, flags in [(0, 64, 0x02), (1, 63, 0x10), (1400, 1, 0x18), (77, 255, 0x11)]
    }
    assert len(hashes) == 1


def test_hash_separates_flows(pkt: PktHarness) -> None:
    """Each 5-tuple field changes the hash, and 512 flows give 512 distinct hashes."""
    base = pkt.parse_inner(udp_frame(sport=1000, dport=53)).hash
    assert pkt.parse_inner(udp_frame(sport=1001, dport=53)).hash != base
    assert pkt.parse_inner(udp_frame(sport=1000, dport=54)).hash != base
    assert pkt.parse_inner(udp_frame(sport=1000, dport=53, saddr=ip4("10.0.0.9"))).hash != base
    assert pkt.parse_inner(udp_frame(sport=1000, dport=53, daddr=ip4("10.0.0.9"))).hash != base
    assert pkt.parse_inner(tcp_frame(sport=1000, dport=53)).hash != base
    # Swapped ports must not collide (a plain XOR of the ports would).
    assert pkt.parse_inner(udp_frame(sport=53, dport=1000)).hash != base
    many = {pkt.parse_inner(udp_frame(sport=s, dport=80)).hash for s in range(40000, 40512)}
    assert len(many) == 512


def test_hash_low_bits_spread(pkt: PktHarness) -> None:
    """Consecutive ports spread over the source-port range (hash % range is used)."""
    buckets = [0] * 16
    for s in range(30000, 30512):
        buckets[pkt.parse_inner(tcp_frame(sport=s)).hash % 16] += 1
    # 32 expected per bucket; a weak mix (e.g. sport + dport) puts 0 or 512 in some.
    assert min(buckets) >= 12 and max(buckets) <= 56, buckets


def test_hash_fragments_use_addresses_only(pkt: PktHarness) -> None:
    """Every fragment of a datagram hashes alike, whatever its offset or protocol byte."""
    hashes = {
        pkt.parse_inner(eth() + ipv4(b"z" * 16, proto=proto, mf=mf, frag_offset=off)).hash
        for proto, mf, off in [(IPPROTO_UDP, True, 0), (IPPROTO_UDP, False, 100),
                               (IPPROTO_TCP, True, 3), (IPPROTO_ICMP, True, 1)]
    }
    assert len(hashes) == 1


# --- rl_parse_vxlan ---------------------------------------------------------------------------


def inner_frame() -> bytes:
    """A small inner pod frame to wrap in VXLAN."""
    return tcp_frame(b"inner payload", csum=Csum.PARTIAL)


@pytest.mark.parametrize("ihl", [5, 6, 15])
def test_vxlan_valid(pkt: PktHarness, ihl: int) -> None:
    """A valid frame yields the inner offset (behind any outer options), VNI and source."""
    frame = vxlan_frame(inner_frame(), vni=VNI, saddr=ip4("192.168.7.7"),
                        ip_options=ip_options(ihl))
    r = pkt.parse_vxlan(frame, VNI, VXLAN_PORT)
    assert r.ret == 0
    assert r.inner_off == ETH_HLEN + ihl * 4 + UDP_HLEN + VXLAN_HLEN
    assert frame[r.inner_off:] == inner_frame()
    assert r.inner_len == len(inner_frame())
    assert (r.vni, r.outer_saddr) == (VNI, ip4("192.168.7.7"))


def test_vxlan_inner_len_ignores_trailing_bytes(pkt: PktHarness) -> None:
    """Bytes after the UDP datagram (Ethernet padding, garbage) are not the inner frame's: the
    inner length comes from the UDP length, so a lying inner header cannot reach them."""
    frame = vxlan_frame(inner_frame(), vni=VNI) + b"\xee" * 40
    r = pkt.parse_vxlan(frame, VNI, VXLAN_PORT)
    assert r.ret == 0
    assert r.inner_len == len(inner_frame())


def test_vxlan_other_port(pkt: PktHarness) -> None:
    """The configured port is honoured both ways."""
    frame = vxlan_frame(inner_frame(), vni=VNI, dport=8472)
    assert pkt.parse_vxlan(frame, VNI, 8472).ret == 0
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.NOT_VXLAN


def test_vxlan_not_udp(pkt: PktHarness) -> None:
    """TCP to port 4789 is not VXLAN."""
    frame = eth() + ipv4(tcp(vxlan(inner_frame(), vni=VNI), dport=VXLAN_PORT),
                         proto=IPPROTO_TCP)
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.NOT_VXLAN


@pytest.mark.parametrize("vni", [0, VNI - 1, VNI + 1, VNI ^ 0x800000, 0xFFFFFF])
def test_vxlan_wrong_vni(pkt: PktHarness, vni: int) -> None:
    """Any other VNI (including one differing only in its top bit) is not ours."""
    frame = vxlan_frame(inner_frame(), vni=vni)
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.BAD_VNI


@pytest.mark.parametrize("flags", [0x00, 0xF7])
def test_vxlan_i_flag_clear(pkt: PktHarness, flags: int) -> None:
    """Without the I flag the VNI is not valid (RFC 7348), whatever the other bits say."""
    frame = vxlan_frame(inner_frame(), vni=VNI, flags=flags)
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.BAD_VNI


def test_vxlan_reserved_bits_ignored(pkt: PktHarness) -> None:
    """Reserved bits must be ignored on receipt (RFC 7348 section 5)."""
    inner = inner_frame()
    seg = udp(vxlan(inner, vni=VNI, flags=0xFF, reserved1=0xFFFFFF, reserved2=0xFF),
              dport=VXLAN_PORT, csum=Csum.ZERO)
    frame = eth() + ipv4(seg)
    r = pkt.parse_vxlan(frame, VNI, VXLAN_PORT)
    assert (r.ret, r.vni) == (0, VNI)


@pytest.mark.parametrize(("mf", "offset"), [(True, 0), (False, 1), (True, 0x1FFF)])
def test_vxlan_fragment(pkt: PktHarness, mf: bool, offset: int) -> None:
    """Outer fragments are refused: we never fragment VXLAN, so they are not ours."""
    frame = vxlan_frame(inner_frame(), vni=VNI, mf=mf, frag_offset=offset)
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.FRAGMENT


@pytest.mark.parametrize("ethertype", [ETH_P_ARP, ETH_P_IPV6, 0x8100])
def test_vxlan_not_ipv4(pkt: PktHarness, ethertype: int) -> None:
    """A non-IPv4 outer ethertype."""
    frame = vxlan_frame(inner_frame(), vni=VNI)
    frame = frame[:12] + struct.pack("!H", ethertype) + frame[14:]
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.NOT_IPV4


@pytest.mark.parametrize("ihl", range(5))
def test_vxlan_bad_ihl(pkt: PktHarness, ihl: int) -> None:
    """Outer IHL below 5."""
    frame = vxlan_frame(inner_frame(), vni=VNI)
    frame = frame[:14] + bytes([0x40 | ihl]) + frame[15:]
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.BAD_IHL


@pytest.mark.parametrize("inner_len", [0, 1, 13, 14, 33])
def test_vxlan_no_inner_frame(pkt: PktHarness, inner_len: int) -> None:
    """Less than Ethernet + 20 bytes of IPv4 behind the VXLAN header.

    pkt.c's rule: a UDP length below 8 + 8 + 14 is a length error (BAD_IP_LEN); from a whole
    inner Ethernet header on, a missing IPv4 header is NO_INNER_ETH.
    """
    c = pkt.consts
    frame = vxlan_frame(inner_frame()[:inner_len], vni=VNI)
    want = -c.BAD_IP_LEN if inner_len < ETH_HLEN else -c.NO_INNER_ETH
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == want


def test_vxlan_minimal_inner_frame(pkt: PktHarness) -> None:
    """Exactly Ethernet + 20 bytes of IPv4 is enough for rl_parse_vxlan()."""
    frame = vxlan_frame(eth() + ipv4(b"", proto=IPPROTO_ICMP), vni=VNI)
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == 0


@pytest.mark.parametrize("delta", [1, 100])
def test_vxlan_udp_length_beyond_ip(pkt: PktHarness, delta: int) -> None:
    """A UDP length past the IPv4 payload is inconsistent."""
    inner = inner_frame()
    frame = vxlan_frame(inner, vni=VNI, udp_length=UDP_HLEN + VXLAN_HLEN + len(inner) + delta)
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.BAD_IP_LEN


def test_vxlan_udp_length_below_ip_payload(pkt: PktHarness) -> None:
    """A UDP length shorter than the IPv4 payload (trailing bytes) still holds the inner frame."""
    inner = inner_frame()
    frame = vxlan_frame(inner + b"trailer", vni=VNI,
                        udp_length=UDP_HLEN + VXLAN_HLEN + len(inner))
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == 0


def test_vxlan_ip_payload_shorter_than_udp(pkt: PktHarness) -> None:
    """An IPv4 total length that leaves no room for the UDP header."""
    frame = eth() + ipv4(b"\x12\xb5\x12\xb5")
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == -pkt.consts.TRUNCATED


def test_vxlan_ethernet_padding(pkt: PktHarness) -> None:
    """Bytes after the outer IPv4 packet are padding, not an error."""
    frame = vxlan_frame(inner_frame(), vni=VNI) + b"\x00" * 8
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == 0


@pytest.mark.parametrize("ihl", [5, 6])
def test_vxlan_truncated_at_every_length(pkt: PktHarness, ihl: int) -> None:
    """Cut a valid frame at every length: never accepted, verdict per the outer headers."""
    frame = vxlan_frame(inner_frame(), vni=VNI, ip_options=ip_options(ihl))
    tot_len = len(frame) - ETH_HLEN
    for k in range(len(frame)):
        want = expected_inner(k, ihl, tot_len, False, pkt.consts)
        assert pkt.parse_vxlan(frame[:k], VNI, VXLAN_PORT).ret == want, k
    assert pkt.parse_vxlan(frame, VNI, VXLAN_PORT).ret == 0
