"""Entering a network namespace from a test, for this thread only: sockets made inside stay
there, processes started inside inherit it, and the rest of the test process stays home."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000  # uapi linux/sched.h
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move this thread into the network namespace behind `fd` (Python 3.11 has no os.setns)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """The body runs in `netns` (a name under /run/netns or a path); None: stay where we are."""
    if netns is None:
        yield
        return
    path = netns if netns.startswith("/") else f"/run/netns/{netns}"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)
