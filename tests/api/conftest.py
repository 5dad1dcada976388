"""Fixtures: a real gRPC server on a temporary unix socket, backed by MemoryBackend."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agent.api.client import Client
from agent.api.server import ApiServer
from tests.api.memory_backend import MemoryBackend


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (sun_path holds 107 bytes; pytest's tmp_path can be
    long)."""
    path = Path(tempfile.mkdtemp(prefix="rl-api-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[MemoryBackend]:
    b = MemoryBackend(tmp_path / "state")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def server(backend: MemoryBackend, sock_dir: Path) -> Iterator[ApiServer]:
    srv = ApiServer(backend, unix_path=sock_dir / "api.sock")
    srv.start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture
def client(server: ApiServer) -> Iterator[Client]:
    with Client.unix(server.unix_path, timeout=10.0) as c:
        yield c


@pytest.fixture
def channel(server: ApiServer) -> Iterator[grpc.Channel]:
    """A raw channel, for requests the typed client would not send."""
    ch = grpc.insecure_channel(f"unix:{server.unix_path}")
    yield ch
    ch.close()
