"""The TCP listener: mutual TLS only (a client must present a certificate of the configured
CA)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from agent.api.client import ApiError, Client, TlsFiles
from agent.api.server import ApiServer, TcpListener
from agent.api.v1 import agent_pb2 as apb
from tests.api.certs import CA, Pair
from tests.api.memory_backend import MemoryBackend

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Pki:
    ca: CA
    server: Pair
    client: Pair
    other_ca: CA
    other_client: Pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA(d, "ringlane-ca"), CA(d, "other-ca")
    return Pki(ca, ca.issue("agent", server=True), ca.issue("admin", server=False), other,
               other.issue("intruder", server=False))


@pytest.fixture
def tls_server(backend: MemoryBackend, sock_dir: Path, pki: Pki) -> Iterator[ApiServer]:
    tcp = TcpListener("127.0.0.1:0", pki.server.cert, pki.server.key, pki.ca.path)
    with ApiServer(backend, unix_path=sock_dir / "api.sock", tcp=tcp) as srv:
        assert srv.tcp_port > 0
        yield srv


def _address(srv: ApiServer) -> str:
    return f"127.0.0.1:{srv.tcp_port}"


def test_client_with_a_cert_of_the_ca_succeeds(tls_server: ApiServer, pki: Pki) -> None:
    files = TlsFiles(pki.client.cert, pki.client.key, pki.ca.path)
    with Client(_address(tls_server), files, timeout=5) as c:
        assert c.status().node == "node-a"
    # the certificate's DNS name works too when named explicitly
    named = TlsFiles(pki.client.cert, pki.client.key, pki.ca.path, server_name="localhost")
    with Client(_address(tls_server), named, timeout=5) as c:
        assert c.status().ready


def test_client_without_a_cert_is_refused(tls_server: ApiServer, pki: Pki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.path.read_bytes())
    with grpc.secure_channel(_address(tls_server), creds) as ch:
        call = ch.unary_unary("/ringlane.v1.AgentService/GetStatus",
                              request_serializer=apb.GetStatusRequest.SerializeToString,
                              response_deserializer=apb.Status.FromString)
        with pytest.raises(grpc.RpcError) as info:
            call(apb.GetStatusRequest(), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_client_with_a_cert_of_another_ca_is_refused(tls_server: ApiServer, pki: Pki) -> None:
    files = TlsFiles(pki.other_client.cert, pki.other_client.key, pki.ca.path)
    with Client(_address(tls_server), files, timeout=5) as c, \
            pytest.raises(ApiError) as info:
        c.status()
    assert info.value.unreachable


def test_plaintext_client_is_refused(tls_server: ApiServer) -> None:
    with Client(_address(tls_server), timeout=5) as c, pytest.raises(ApiError) as info:
        c.status()
    assert info.value.unreachable


def test_unix_socket_still_served_without_tls(tls_server: ApiServer) -> None:
    with Client.unix(tls_server.unix_path, timeout=5) as c:
        assert c.status().ready
