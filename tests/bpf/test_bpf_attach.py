"""Attaching and detaching the XDP programs on real interfaces (a veth pair in a private netns).

rl_from_pod goes on in SKB (generic) mode as on a pod's host veth, rl_from_wire in NATIVE mode
as on the underlay NIC (veth has a native XDP implementation). The namespace is entered with
setns(2) in this process, which keeps the mount namespace: `ip netns exec` would remount /sys
and hide /sys/fs/bpf. What the kernel reports is read back with `ip -d link`, independently of
libbpf and libxdp.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.xdp.bpfobj import BpfError, XdpMode, XdpObject, detach_by_name, object_path

from .xdp_harness import Netns, needs_root

pytestmark = [pytest.mark.netns, needs_root]

POD = "rl_from_pod"
WIRE = "rl_from_wire"


@dataclass
class VethPair:
    netns: Netns
    pod_side: int  # where rl_from_pod goes (SKB)
    wire_side: int  # where rl_from_wire goes (NATIVE)

    def xdp(self, ifindex: int) -> tuple[str, str] | None:
        """(mode flag as `ip link` prints it, program name) of the device's XDP program."""
        dev = "va" if ifindex == self.pod_side else "vb"
        out = self.netns.ip("-d", "link", "show", "dev", dev)
        mode = re.search(r"> mtu \d+ (xdpgeneric|xdpdrv|xdpoffload|xdp) ", out)
        name = re.search(r"prog/xdp id \d+ name (\S+)", out)
        if mode is None and name is None:
            return None
        assert mode is not None and name is not None, out
        return mode.group(1), name.group(1)


@pytest.fixture
def veth() -> Iterator[VethPair]:
    """va <-> vb, both up, in a fresh namespace that is deleted (with any XDP on it) after."""
    ns = Netns("rl-attach")
    try:
        ns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
        ns.ip("link", "set", "va", "up")
        ns.ip("link", "set", "vb", "up")
        yield VethPair(ns, ns.ifindex("va"), ns.ifindex("vb"))
    finally:
        ns.close()


def _load(name: str, pin_dir: Path) -> XdpObject:
    return XdpObject(object_path(name), pin_dir=pin_dir, consts={})


def _expect(v: VethPair, ifindex: int, mode: str, prog: str, multiprog: bool) -> None:
    # With libxdp's dispatcher, the kernel sees the dispatcher and ours runs inside it.
    assert v.xdp(ifindex) == (mode, "xdp_dispatcher" if multiprog else prog)


def test_attach_and_detach(veth: VethPair, pin_dir: Path) -> None:
    with (
        veth.netns.entered(),
        _load("from_pod", pin_dir) as pod,
        _load("from_wire", pin_dir) as wire,
    ):
        a_pod = pod.attach(POD, veth.pod_side, XdpMode.SKB)
        a_wire = wire.attach(WIRE, veth.wire_side, XdpMode.NATIVE)
        _expect(veth, veth.pod_side, "xdpgeneric", POD, a_pod.multiprog)
        _expect(veth, veth.wire_side, "xdp", WIRE, a_wire.multiprog)

        a_pod.detach()
        a_wire.detach()
        a_pod.detach()  # a second detach is a no-op
        assert veth.xdp(veth.pod_side) is None
        assert veth.xdp(veth.wire_side) is None


def test_attach_never_replaces_another_program(veth: VethPair, pin_dir: Path) -> None:
    with (
        veth.netns.entered(),
        _load("from_pod", pin_dir) as pod,
        _load("from_wire", pin_dir) as wire,
    ):
        a_pod = pod.attach(POD, veth.pod_side, XdpMode.SKB)
        try:
            with pytest.raises(BpfError) as info:
                wire.attach(WIRE, veth.pod_side, XdpMode.SKB)
            if not a_pod.multiprog:
                assert info.value.errno == errno.EEXIST
            _expect(veth, veth.pod_side, "xdpgeneric", POD, a_pod.multiprog)
        finally:
            a_pod.detach()
        assert veth.xdp(veth.pod_side) is None


def test_detach_by_name_after_crash(veth: VethPair, pin_dir: Path) -> None:
    """Attach, then lose every handle (object closed, attachment released) as a crashed agent
    would: only detach_by_name with our name and the right mode removes the program."""
    with veth.netns.entered():
        with _load("from_pod", pin_dir) as pod:
            attachment = pod.attach(POD, veth.pod_side, XdpMode.SKB)
            multiprog = attachment.multiprog
            attachment.release()
        _expect(veth, veth.pod_side, "xdpgeneric", POD, multiprog)

        assert not detach_by_name(veth.pod_side, XdpMode.SKB, WIRE)
        assert not detach_by_name(veth.pod_side, XdpMode.NATIVE, POD)
        assert not detach_by_name(veth.wire_side, XdpMode.SKB, POD)
        _expect(veth, veth.pod_side, "xdpgeneric", POD, multiprog)

        assert detach_by_name(veth.pod_side, XdpMode.SKB, POD)
        assert veth.xdp(veth.pod_side) is None
        assert not detach_by_name(veth.pod_side, XdpMode.SKB, POD)


def test_detach_by_name_leaves_other_programs(veth: VethPair, pin_dir: Path) -> None:
    """A program of another name (here rl_from_wire standing in for someone else's) stays."""
    with veth.netns.entered():
        with _load("from_wire", pin_dir) as wire:
            attachment = wire.attach(WIRE, veth.pod_side, XdpMode.SKB)
            multiprog = attachment.multiprog
            attachment.release()
        assert not detach_by_name(veth.pod_side, XdpMode.SKB, POD)
        _expect(veth, veth.pod_side, "xdpgeneric", WIRE, multiprog)
        assert detach_by_name(veth.pod_side, XdpMode.SKB, WIRE)
        assert veth.xdp(veth.pod_side) is None
