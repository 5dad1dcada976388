"""Python values as the C structs of abi.h hold them: __be32/__be16 fields and MAC arrays.

A __beN field holds the network-order bytes; read as a host integer (what cffi gives and takes)
that is the bytes in host byte order. One home for the conversion, for every cffi module.
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Address

from agent.errors import ConfigError


def be32(ip: IPv4Address) -> int:
    """The value of a __be32 field holding `ip`."""
    return int.from_bytes(ip.packed, sys.byteorder)


def from_be32(value: int) -> IPv4Address:
    return IPv4Address(int(value).to_bytes(4, sys.byteorder))


def from_be16(value: int) -> int:
    """A __be16 field (a port) as the number it means."""
    return int.from_bytes(int(value).to_bytes(2, sys.byteorder), "big")


def mac_bytes(mac: str | bytes) -> bytes:
    """6 bytes from 'aa:bb:cc:dd:ee:ff' or from bytes; ConfigError otherwise."""
    if isinstance(mac, bytes):
        raw = mac
    else:
        try:
            raw = bytes(int(x, 16) for x in mac.split(":"))
        except ValueError as exc:
            raise ConfigError(f"invalid MAC address {mac!r}") from exc
    if len(raw) != 6:
        raise ConfigError(f"invalid MAC address {mac!r}: need 6 bytes")
    return raw
