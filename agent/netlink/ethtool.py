"""GRO on and off through the SIOCETHTOOL ioctl (pyroute2 has no ethtool feature setter).

Why GRO: a native XDP program on a host veth turns TSO off on the pod's side; GRO on the host
veth wins part of it back. We record the previous setting and restore it on detach.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from agent.errors import NativeError

_SIOCETHTOOL = 0x8946
_ETHTOOL_GGRO = 0x0000002B
_ETHTOOL_SGRO = 0x0000002C


def _ethtool_value(ifname: str, cmd: int, value: int = 0) -> int:
    # struct ethtool_value { u32 cmd; u32 data; }, reached through ifreq's data pointer
    buf = bytearray(struct.pack("II", cmd, value))
    cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(cbuf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), _SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise NativeError(f"ethtool GRO on {ifname}", -(exc.errno or 5)) from exc
    return int(struct.unpack("II", bytes(buf))[1])


def get_gro(ifname: str) -> bool:
    return bool(_ethtool_value(ifname, _ETHTOOL_GGRO))


def set_gro(ifname: str, on: bool) -> None:
    _ethtool_value(ifname, _ETHTOOL_SGRO, int(on))
