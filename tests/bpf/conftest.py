"""Fixtures for the XDP program tests: pin directories, a test namespace, loaded programs.

Everything a test creates in the kernel (pins, namespaces, sockets) is removed by a fixture
finalizer, also when the test fails, so a failed run leaves nothing behind in /sys/fs/bpf or
`ip netns list`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.xdp.bpfobj import lib

from .xdp_harness import (
    GATEWAY,
    RING_SPORT_MAX,
    RING_SPORT_MIN,
    THIS_NODE,
    Datapath,
    MakeDatapath,
    Netns,
    XskSocket,
    make_pin_dir,
    remove_pin_dir,
)

# Receive queues of the test device: more than RL_MAX_UNDERLAY_QUEUES, so a run can use a queue
# beyond the underlay slots.
TEST_DEV = "rltq"
TEST_DEV_QUEUES = 128


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    """A fresh pin directory under /sys/fs/bpf, unpinned and removed after the test."""
    path = make_pin_dir()
    try:
        yield path
    finally:
        remove_pin_dir(path)


@pytest.fixture(scope="session")
def testns() -> Iterator[Netns]:
    """A namespace with one device of TEST_DEV_QUEUES receive queues (ifb), routed like a node
    (xdp_harness.THIS_NODE): what the programs' bpf_fib_lookup() consults."""
    ns = Netns("rl-bpft")
    try:
        ns.ip("link", "add", TEST_DEV, "numrxqueues", str(TEST_DEV_QUEUES), "type", "ifb")
        ns.ip("link", "set", TEST_DEV, "up")
        ns.ip("addr", "add", f"{THIS_NODE}/24", "brd", "+", "dev", TEST_DEV)
        ns.ip("addr", "add", f"{GATEWAY}/32", "dev", TEST_DEV)
        ns.ip("route", "add", "10.244.0.0/16", "dev", TEST_DEV)
        ns.ip("route", "add", "default", "via", "192.168.0.254", "dev", TEST_DEV)
        subprocess.run(["ip", "netns", "exec", ns.name, "sysctl", "-qw",
                        "net.ipv4.conf.all.forwarding=1"], check=True)
        yield ns
    finally:
        ns.close()


@pytest.fixture(scope="session")
def test_ifindex(testns: Netns) -> int:
    return testns.ifindex(TEST_DEV)


@pytest.fixture(scope="session")
def xsk(testns: Netns, test_ifindex: int) -> Iterator[XskSocket]:
    """One bound AF_XDP socket; any number of XSKMAP slots may hold it."""
    with testns.entered():
        sock = XskSocket(test_ifindex, 0)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def datapath(pin_dir: Path, testns: Netns, test_ifindex: int) -> Iterator[Datapath]:
    """from_pod and from_wire loaded against fresh maps in their own pin directory."""
    dp = Datapath.load(pin_dir, testns, test_ifindex)
    try:
        yield dp
    finally:
        dp.close()


@pytest.fixture
def make_datapath(testns: Netns, test_ifindex: int) -> Iterator[MakeDatapath]:
    """Datapath.load with other load-time constants (tcp_mode, ring_sports, ...), each call in a
    pin directory of its own; all of them are closed and unpinned after the test."""
    pin_dirs: list[Path] = []
    loaded: list[Datapath] = []

    def make(
        *,
        tcp_mode: int | None = lib.RL_TCP_AUTO,
        ring_sports: tuple[int, int] | None = (RING_SPORT_MIN, RING_SPORT_MAX),
        antispoof: int | None = 1,
        underlay_ip: str | None = THIS_NODE,
        flow_sample_every: int | None = 1,
    ) -> Datapath:
        path = make_pin_dir()
        pin_dirs.append(path)
        dp = Datapath.load(path, testns, test_ifindex, tcp_mode=tcp_mode,
                           ring_sports=ring_sports, antispoof=antispoof, underlay_ip=underlay_ip,
                           flow_sample_every=flow_sample_every)
        loaded.append(dp)
        return dp

    try:
        yield make
    finally:
        try:
            for dp in loaded:
                dp.close()
        finally:
            for path in pin_dirs:
                remove_pin_dir(path)
