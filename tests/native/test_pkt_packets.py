"""Self-tests of packets.py: the reference the C code is judged by must itself be right.

Known-answer vectors come from outside this repository (RFC 1071 and a captured IPv4
header), so a bug shared by the builders and pkt.c cannot make both sides agree.
"""

from __future__ import annotations

import pytest

from .packets import (
    ETH_HLEN,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VXLAN_FLAG_I,
    Csum,
    Ipv4Header,
    TcpHeader,
    UdpHeader,
    checksum,
    ip4,
    ipv4,
    l4_checksum_ok,
    ones_sum,
    pseudo_header,
    tcp,
    udp,
    vxlan,
)

pytestmark = pytest.mark.native


def test_ones_sum_rfc1071_example() -> None:
    """RFC 1071 section 3 sums 00 01 f2 03 f4 f5 f6 f7 to 0xddf2."""
    assert ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_known_ipv4_header() -> None:
    """A real header (192.168.0.1 -> 192.168.0.199, UDP) carries checksum 0xb861."""
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(hdr) == 0xB861
    built = ipv4(b"\x00" * 95, saddr=ip4("192.168.0.1"), daddr=ip4("192.168.0.199"),
                 proto=IPPROTO_UDP, df=True)
    assert built[:20] == hdr[:10] + b"\xb8\x61" + hdr[12:]


def test_checksum_odd_length_pads_with_zero() -> None:
    """An odd tail counts as the high byte of a word (RFC 1071 4.1)."""
    assert ones_sum(b"\xab") == 0xAB00
    assert ones_sum(b"\x12\x34\xab") == 0x1234 + 0xAB00


def test_builders_produce_verifiable_checksums() -> None:
    """FULL checksums verify; PARTIAL holds the pseudo-header sum the kernel leaves there."""
    s, d = ip4("10.0.0.1"), ip4("10.0.0.2")
    seg = tcp(b"x" * 101, saddr=s, daddr=d, options=b"\x01\x01\x08\x0a" + b"\x00" * 8)
    assert l4_checksum_ok(s, d, IPPROTO_TCP, seg)
    assert TcpHeader.parse(seg, 0).hlen == 32
    part = udp(b"y" * 7, saddr=s, daddr=d, csum=Csum.PARTIAL)
    assert UdpHeader.parse(part, 0).csum == ones_sum(pseudo_header(s, d, IPPROTO_UDP, 15))
    assert not l4_checksum_ok(s, d, IPPROTO_UDP, part)


def test_ipv4_options_padding_and_parse() -> None:
    """Options pad to 32 bits, IHL follows, and the parser reads the fields back."""
    pkt = ipv4(b"abc", options=b"\x94\x04\x00", ident=7, ttl=3, mf=True, frag_offset=5)
    hdr = Ipv4Header.parse(b"\x00" * ETH_HLEN + pkt)
    assert (hdr.ihl, hdr.tot_len, hdr.ident, hdr.ttl) == (6, 27, 7, 3)
    assert hdr.flags_frag == 0x2000 | 5
    assert hdr.csum_ok()


def test_vxlan_layout() -> None:
    """I flag in the first byte, VNI in bytes 4..6, reserved bits where RFC 7348 puts them."""
    assert vxlan(b"", vni=0xABCDEF) == bytes([VXLAN_FLAG_I, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])
    assert vxlan(b"", vni=1, flags=0xFF, reserved1=0x123456, reserved2=0x78) == bytes.fromhex(
        "ff12345600000178"
    )
