"""rl_encap(): the 50 outer bytes must be exactly what the remote kernel's VXLAN device expects.

The reference is packets.py's builders (RFC 7348 layout), compared byte for byte, so a swapped
MAC, a missing DF bit or an off-by-8 length fails with the offending offset.
"""

from __future__ import annotations

import dataclasses

import pytest

from .packets import (
    ENCAP_LEN,
    ETH_HLEN,
    IPPROTO_UDP,
    VXLAN_PORT,
    Csum,
    Ipv4Header,
    UdpHeader,
    eth,
    ip4,
    ipv4,
    mac,
    tcp_frame,
    udp,
    udp_frame,
    vxlan,
)
from .pkt_harness import EncapParams, PktHarness

pytestmark = pytest.mark.native

PARAMS = EncapParams(
    outer_src_mac=mac("02:aa:00:00:00:01"),
    outer_dst_mac=mac("02:bb:00:00:00:02"),
    inner_src_mac=mac("02:cc:00:00:00:03"),
    inner_dst_mac=mac("02:dd:00:00:00:04"),
    outer_saddr=ip4("192.168.10.1"),
    outer_daddr=ip4("192.168.20.2"),
    vni=0xABCDEF,
    dport=VXLAN_PORT,
    sport_min=32768,
    sport_max=61000,
    ttl=61,
)


def expected_encap(inner: bytes, p: EncapParams, flow_hash: int) -> bytes:
    """The whole encapsulated frame, built independently from packets.py."""
    sport = p.sport_min + flow_hash % (p.sport_max - p.sport_min + 1)
    new_inner = p.inner_dst_mac + p.inner_src_mac + inner[12:]
    seg = udp(vxlan(new_inner, vni=p.vni), sport=sport, dport=p.dport, csum=Csum.ZERO)
    return eth(p.outer_dst_mac, p.outer_src_mac) + ipv4(
        seg, saddr=p.outer_saddr, daddr=p.outer_daddr, proto=IPPROTO_UDP, ttl=p.ttl,
        ident=0, df=True,
    )


@pytest.mark.parametrize("inner_len", [34, 60, 1450, 8950])
@pytest.mark.parametrize("flow_hash", [0, 1, 0xDEADBEEF, 0xFFFFFFFF])
def test_encap_bytes_exact(pkt: PktHarness, inner_len: int, flow_hash: int) -> None:
    """Outer headers byte-exact, inner MACs rewritten, the rest of the inner frame untouched."""
    inner = tcp_frame(b"i" * (inner_len - 54)) if inner_len >= 54 else udp_frame(b"")[:inner_len]
    assert len(inner) == inner_len
    out = pkt.encap(inner, PARAMS, flow_hash)
    assert len(out) == pkt.consts.ENCAP_LEN + inner_len == ENCAP_LEN + inner_len
    want = expected_encap(inner, PARAMS, flow_hash)
    for i in range(len(want)):
        assert out[i] == want[i], f"byte {i}"


def test_encap_header_fields(pkt: PktHarness) -> None:
    """Spot the fields by name, so a failure says which one is wrong."""
    inner = udp_frame(b"z" * 100)
    out = pkt.encap(inner, PARAMS, 12345)
    ip = Ipv4Header.parse(out)
    assert (ip.version, ip.ihl, ip.tos, ip.ident) == (4, 5, 0, 0)
    assert ip.tot_len == 20 + 8 + 8 + len(inner)
    assert ip.flags_frag == 0x4000  # DF, offset 0
    assert (ip.ttl, ip.proto) == (PARAMS.ttl, IPPROTO_UDP)
    assert (ip.saddr, ip.daddr) == (PARAMS.outer_saddr, PARAMS.outer_daddr)
    assert ip.csum_ok()
    u = UdpHeader.parse(out, ETH_HLEN + 20)
    assert (u.dport, u.length, u.csum) == (VXLAN_PORT, 8 + 8 + len(inner), 0)
    assert out[42:50] == bytes([0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])
    assert out[:12] == PARAMS.outer_dst_mac + PARAMS.outer_src_mac
    assert out[50:62] == PARAMS.inner_dst_mac + PARAMS.inner_src_mac


@pytest.mark.parametrize(
    ("smin", "smax"), [(32768, 61000), (49152, 65535), (0, 65535), (4000, 4000), (1, 2)]
)
def test_encap_sport_in_range(pkt: PktHarness, smin: int, smax: int) -> None:
    """Every hash lands in [sport_min, sport_max], as sport_min + hash % range."""
    p = dataclasses.replace(PARAMS, sport_min=smin, sport_max=smax)
    inner = udp_frame(b"")
    for h in [0, 1, 2, smax - smin, smax - smin + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]:
        h &= 0xFFFFFFFF
        sport = UdpHeader.parse(pkt.encap(inner, p, h), ETH_HLEN + 20).sport
        assert smin <= sport <= smax
        assert sport == smin + h % (smax - smin + 1)


def test_encap_reversed_range_uses_min(pkt: PktHarness) -> None:
    """A misconfigured range (max < min) degenerates to sport_min instead of wrapping."""
    p = dataclasses.replace(PARAMS, sport_min=5000, sport_max=4000)
    sport = UdpHeader.parse(pkt.encap(udp_frame(b""), p, 0xFFFF), ETH_HLEN + 20).sport
    assert sport == 5000


def test_encap_sport_stable_per_flow(pkt: PktHarness) -> None:
    """Packets of one flow share an outer source port (ECMP keeps them in order); flows spread."""
    def sport_of(inner: bytes) -> int:
        h = pkt.parse_inner(inner).hash
        return UdpHeader.parse(pkt.encap(inner, PARAMS, h), ETH_HLEN + 20).sport

    one_flow = {sport_of(tcp_frame(b"x" * n, seq=n, ident=n, sport=41000)) for n in range(20)}
    assert len(one_flow) == 1
    many = {sport_of(tcp_frame(b"x", sport=s)) for s in range(41000, 41200)}
    assert len(many) >= 190  # 200 flows into 28233 ports: a handful of collisions at most


def test_encap_roundtrip_parses(pkt: PktHarness) -> None:
    """rl_parse_vxlan() accepts what rl_encap() produced and finds the inner frame at 50."""
    inner = tcp_frame(b"roundtrip")
    out = pkt.encap(inner, PARAMS, 99)
    r = pkt.parse_vxlan(out, PARAMS.vni, PARAMS.dport)
    assert (r.ret, r.inner_off, r.vni, r.outer_saddr) == (0, 50, PARAMS.vni, PARAMS.outer_saddr)
    assert pkt.parse_inner(out[r.inner_off:]).ret == 0


@pytest.mark.parametrize("vni", [0, 1, 0x800000, 0xFFFFFF])
def test_encap_vni_24_bits(pkt: PktHarness, vni: int) -> None:
    """The VNI fills bytes 4..6 of the VXLAN header, byte 7 stays reserved (0)."""
    out = pkt.encap(udp_frame(b""), dataclasses.replace(PARAMS, vni=vni), 0)
    assert out[46:50] == bytes([vni >> 16, (vni >> 8) & 0xFF, vni & 0xFF, 0])


@pytest.mark.parametrize("inner_len", [0, 6, 13])
def test_encap_inner_shorter_than_ethernet(pkt: PktHarness, inner_len: int) -> None:
    """No inner Ethernet header to rewrite: the outer header is still right, nothing overflows."""
    inner = b"\x77" * inner_len
    out = pkt.encap(inner, PARAMS, 0)
    assert out[ENCAP_LEN:] == inner
    assert Ipv4Header.parse(out).tot_len == 36 + inner_len
