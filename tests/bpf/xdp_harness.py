"""Kernel objects the BPF tests need: a network namespace, a bound AF_XDP socket, a loaded datapath.

BPF_PROG_TEST_RUN checks that the context's ingress_ifindex exists in the caller's network
namespace and that rx_queue_index is one of its receive queues, so the test runs happen inside a
private namespace holding one device with many receive queues (ifb: the kernel used for CI has
no dummy driver, and ifb accepts numrxqueues). The namespace is entered per call with setns(2),
which leaves the mount namespace, and so /sys/fs/bpf, alone.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import secrets
import shutil
import socket
import struct
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

import pytest
from cffi import FFI

from agent.xdp.bpfobj import XdpObject, ensure_bpffs, ffi, lib, object_path, test_run
from agent.xdp.maps import Flow, PinnedMaps
from agent.xdp.policy_maps import PolicyMaps, TrackedFlow
from tests.nsutil import entered

# Every test here creates BPF objects, pins, namespaces or AF_XDP sockets.
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: BPF programs and maps, bpffs, network namespaces"
)

# uapi linux/bpf.h enum xdp_action
XDP_DROP = 1
XDP_PASS = 2
XDP_REDIRECT = 4

# What the tests load the programs with: deliberately not the defaults (flannel's port, a VNI
# other than 1, a ring core source port range inside abi.h's), so a test also proves that the
# load-time constants reach the programs. tcp_mode is AUTO, the production default, unless a
# test asks for another (Datapath.load's tcp_mode).
OVERLAY_MTU = 1450
VXLAN_PORT = 8472
VNI = 42
RING_SPORT_MIN = 50000
RING_SPORT_MAX = 60000

# The node the programs run on, as the test namespace's FIB sees it (conftest's testns): its
# underlay address THIS_NODE on 192.168.0.0/24 (NODE_B is a peer there), a pod gateway address,
# a route to the podCIDRs and a default route. bpf_fib_lookup() then answers for the programs
# as a node's routing table would: THIS_NODE, GATEWAY, the subnet broadcast and 127/8 are
# received locally, pods and the outside world are forwarded.
THIS_NODE = "192.168.0.1"
NODE_B = "192.168.0.2"
GATEWAY = "10.244.1.1"

# uapi linux/if_xdp.h and linux/socket.h
AF_XDP = 44
SOL_XDP = 283
XDP_RX_RING = 2
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_COPY = 1 << 1

_libc_ffi = FFI()
_libc_ffi.cdef(
    """
    struct sockaddr_xdp {
        uint16_t sxdp_family;
        uint16_t sxdp_flags;
        uint32_t sxdp_ifindex;
        uint32_t sxdp_queue_id;
        uint32_t sxdp_shared_umem_fd;
    };
    int bind(int sockfd, const struct sockaddr_xdp *addr, uint32_t addrlen);
    """
)
_libc: Any = _libc_ffi.dlopen(None)


def _ip(*args: str) -> str:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


class Netns:
    """A named network namespace (/run/netns/<name>), deleted by close()."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        _ip("netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def ip(self, *args: str) -> str:
        """Run `ip -n <name> ...` and return its output."""
        return _ip("-n", self.name, *args)

    def ifindex(self, dev: str) -> int:
        info = json.loads(self.ip("-j", "link", "show", "dev", dev))
        return int(info[0]["ifindex"])

    def entered(self) -> AbstractContextManager[None]:
        """Run the body with this thread inside the namespace (network only)."""
        return entered(self.name)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


class XskSocket:
    """An AF_XDP socket bound (copy mode) to one queue: what an XSKMAP slot holds in production.

    Only the setup that bind(2) requires: a UMEM, fill and completion rings, an RX ring. The
    rings are never mmapped; the socket only has to be a valid XSKMAP value.
    Create it inside the namespace of `ifindex` (a socket belongs to the namespace it is
    created in).
    """

    FRAMES = 64
    FRAME_SIZE = 4096

    def __init__(self, ifindex: int, queue: int) -> None:
        self._umem = mmap.mmap(-1, self.FRAMES * self.FRAME_SIZE)
        self.sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
        try:
            addr = int(_libc_ffi.cast("uintptr_t", _libc_ffi.from_buffer(self._umem)))
            reg = struct.pack("=QQIIII", addr, len(self._umem), self.FRAME_SIZE, 0, 0, 0)
            self.sock.setsockopt(SOL_XDP, XDP_UMEM_REG, reg)
            for opt in (XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_RX_RING):
                self.sock.setsockopt(SOL_XDP, opt, struct.pack("=I", self.FRAMES))
            sxdp = _libc_ffi.new(
                "struct sockaddr_xdp *",
                {
                    "sxdp_family": AF_XDP,
                    "sxdp_flags": XDP_COPY,
                    "sxdp_ifindex": ifindex,
                    "sxdp_queue_id": queue,
                },
            )
            if _libc.bind(self.sock.fileno(), sxdp, _libc_ffi.sizeof(sxdp[0])) != 0:
                err = _libc_ffi.errno
                raise OSError(err, f"binding AF_XDP to ifindex {ifindex}/{queue}")
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        self._umem.close()


def make_pin_dir() -> Path:
    """A fresh, uniquely named directory on bpffs."""
    path = Path("/sys/fs/bpf") / f"rl-test-{secrets.token_hex(4)}"
    ensure_bpffs(path)
    return path


def remove_pin_dir(path: Path) -> None:
    """Unpin everything under `path` (unlink is how a pin is removed) and the directory."""
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Datapath:
    """Both programs loaded with their maps pinned in one directory, plus the test context.

    Load-time constants: the module's (OVERLAY_MTU, VXLAN_PORT, VNI, RING_SPORT_*, THIS_NODE),
    tcp_mode, antispoof, underlay_ip and flow_sample_every (1 by default: every policy decision
    is sampled, so tests can read each one back) as given. None leaves that constant at the
    object's default, for the tests that check the defaults themselves.
    """

    pod: XdpObject
    wire: XdpObject
    maps: PinnedMaps
    policy: PolicyMaps
    netns: Netns
    ifindex: int  # the namespace's multi-queue device: ingress device of every test run

    @classmethod
    def load(
        cls,
        pin_dir: Path,
        netns: Netns,
        ifindex: int,
        *,
        tcp_mode: int | None = lib.RL_TCP_AUTO,
        ring_sports: tuple[int, int] | None = (RING_SPORT_MIN, RING_SPORT_MAX),
        antispoof: int | None = 1,
        underlay_ip: str | None = THIS_NODE,
        flow_sample_every: int | None = 1,
    ) -> Datapath:
        pod_consts = {"rl_cfg_overlay_mtu": OVERLAY_MTU, "rl_cfg_vxlan_port": VXLAN_PORT}
        if tcp_mode is not None:
            pod_consts["rl_cfg_tcp_mode"] = tcp_mode
        if antispoof is not None:
            pod_consts["rl_cfg_antispoof"] = antispoof
        wire_consts = {"rl_cfg_vxlan_port": VXLAN_PORT, "rl_cfg_vni": VNI}
        if underlay_ip is not None:
            wire_consts["rl_cfg_underlay_ip"] = int(IPv4Address(underlay_ip))
        if ring_sports is not None:
            wire_consts["rl_cfg_ring_sport_min"], wire_consts["rl_cfg_ring_sport_max"] = ring_sports
        if flow_sample_every is not None:
            pod_consts["rl_cfg_flow_sample_every"] = flow_sample_every
            wire_consts["rl_cfg_flow_sample_every"] = flow_sample_every
        pod = XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts=pod_consts)
        try:
            wire = XdpObject(object_path("from_wire"), pin_dir=pin_dir, consts=wire_consts)
            try:
                maps = PinnedMaps(pin_dir)
                try:
                    policy = PolicyMaps(pin_dir)
                except BaseException:
                    maps.close()
                    raise
            except BaseException:
                wire.close()
                raise
        except BaseException:
            pod.close()
            raise
        maps.check_abi()
        return cls(pod, wire, maps, policy, netns, ifindex)

    def prog_fd(self, prog: str) -> int:
        obj = self.pod if prog == "rl_from_pod" else self.wire
        return obj.prog_fd(prog)

    def put_xsk(self, slot: int, xsk: XskSocket) -> None:
        """Fill XSKMAP `slot` with `xsk` (what the ring core does when it starts serving it)."""
        key = ffi.new("__u32 *", slot)
        val = ffi.new("__u32 *", xsk.fileno())
        rc = lib.bpf_map_update_elem(self.pod.map_fd("rl_xsks"), key, val, 0)
        if rc < 0:
            raise OSError(-rc, f"rl_xsks[{slot}] = xsk: {os.strerror(-rc)}")

    @staticmethod
    def _flow_key(flow: Flow) -> Any:
        """struct rl_flow_key for `flow`, built from wire-order bytes (not through agent.xdp.maps,
        whose conversions the tests check)."""
        key = ffi.new("struct rl_flow_key *")
        raw = flow.saddr.packed + flow.daddr.packed + struct.pack("!HH", flow.sport, flow.dport)
        ffi.memmove(key, raw, len(raw))
        return key

    def put_flow(self, flow: Flow, *, path: int = lib.RL_FLOW_KERNEL, pad: int = 0) -> None:
        """rl_flows[flow] = {path, pad}: a flow some earlier packet moved to the kernel path."""
        val = ffi.new("struct rl_flow_info *", {"path": path, "pad": pad})
        rc = lib.bpf_map_update_elem(self.pod.map_fd("rl_flows"), self._flow_key(flow), val, 0)
        if rc < 0:
            raise OSError(-rc, f"rl_flows[{flow}]: {os.strerror(-rc)}")

    def flow_info(self, flow: Flow) -> tuple[int, int] | None:
        """rl_flows[flow] as (path, pad), or None if absent."""
        val = ffi.new("struct rl_flow_info *")
        rc = lib.bpf_map_lookup_elem(self.pod.map_fd("rl_flows"), self._flow_key(flow), val)
        if rc == -errno.ENOENT:
            return None
        if rc < 0:
            raise OSError(-rc, f"rl_flows[{flow}]: {os.strerror(-rc)}")
        return int(val.path), int(val.pad)

    def put_tracked(self, flow: TrackedFlow) -> None:
        """rl_policy_ct[flow]: a flow some earlier packet's policy check allowed. The key is
        built from wire-order bytes, not through agent.xdp.policy_maps."""
        key = ffi.new("struct rl_ct_key *")
        raw = flow.saddr.packed + flow.daddr.packed + struct.pack(
            "!HHB3x", flow.sport, flow.dport, flow.proto
        )
        ffi.memmove(key, raw, len(raw))
        val = ffi.new("struct rl_ct_value *", {"created_ns": 1})
        rc = lib.bpf_map_update_elem(self.pod.map_fd("rl_policy_ct"), key, val, 0)
        if rc < 0:
            raise OSError(-rc, f"rl_policy_ct[{flow}]: {os.strerror(-rc)}")

    def run(self, prog: str, packet: bytes, *, rx_queue: int = 0) -> tuple[int, bytes]:
        """BPF_PROG_TEST_RUN as if `packet` arrived on the test device's queue `rx_queue`."""
        with self.netns.entered():
            return test_run(
                self.prog_fd(prog), packet, ingress_ifindex=self.ifindex, rx_queue=rx_queue
            )

    def bench(self, prog: str, packet: bytes, *, repeat: int, rx_queue: int = 0) -> tuple[int, int]:
        """Run `packet` `repeat` times in one BPF_PROG_TEST_RUN: (XDP action, mean ns per run).

        The micro-benchmark of a fixture, and the quick way to push a program through many
        packets (every run counts and samples like a real one)."""
        retval, duration = ffi.new("__u32 *"), ffi.new("__u32 *")
        with self.netns.entered():
            rc = lib.rl_bpf__test_run_repeat(
                self.prog_fd(prog), ffi.from_buffer(packet), len(packet), self.ifindex,
                rx_queue, repeat, retval, duration,
            )  # fmt: skip
        if rc < 0:
            raise OSError(-rc, f"BPF_PROG_TEST_RUN x{repeat} of {prog}: {os.strerror(-rc)}")
        return int(retval[0]), int(duration[0])

    def close(self) -> None:
        self.policy.close()
        self.maps.close()
        self.wire.close()
        self.pod.close()


class MakeDatapath(Protocol):
    """The make_datapath fixture: Datapath.load in a fresh pin directory, cleaned up after."""

    def __call__(
        self,
        *,
        tcp_mode: int | None = lib.RL_TCP_AUTO,
        ring_sports: tuple[int, int] | None = (RING_SPORT_MIN, RING_SPORT_MAX),
        antispoof: int | None = 1,
        underlay_ip: str | None = THIS_NODE,
        flow_sample_every: int | None = 1,
    ) -> Datapath: ...
