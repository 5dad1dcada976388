"""Fixtures for the XDP program tests: pin directories, a test namespace, loaded programs.

Everything a test creates in the kernel (pins, namespaces, sockets) is removed by a fixture
finalizer, also when the test fails, so a failed run leaves nothing behind in /sys/fs/bpf or
`ip netns list`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.xdp.bpfobj import lib

from .xdp_harness import (
    RING_SPORT_MAX,
    RING_SPORT_MIN,
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
    """A namespace with one device of TEST_DEV_QUEUES receive queues (ifb)."""
    ns = Netns("rl-bpft")
    try:
        ns.ip("link", "add", TEST_DEV, "numrxqueues", str(TEST_DEV_QUEUES), "type", "ifb")
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
    """Datapath.load with other load-time constants (tcp_mode, ring_sports), each call in a
    pin directory of its own; all of them are closed and unpinned after the test."""
    pin_dirs: list[Path] = []
    loaded: list[Datapath] = []

    def make(
        *,
        tcp_mode: int | None = lib.RL_TCP_AUTO,
        ring_sports: tuple[int, int] | None = (RING_SPORT_MIN, RING_SPORT_MAX),
    ) -> Datapath:
        path = make_pin_dir()
        pin_dirs.append(path)
        dp = Datapath.load(path, testns, test_ifindex, tcp_mode=tcp_mode, ring_sports=ring_sports)
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
