"""The gRPC API served from a real server on a unix socket (agent/api/server.py)."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from agent.api import server as server_mod
from agent.api.backend import FlowRecord
from agent.api.client import ApiError, Client
from agent.api.server import MAX_STREAMS, SERVICES, ApiServer, TcpListener
from agent.api.v1 import endpoint_pb2 as epb
from agent.api.v1 import policy_pb2 as ppb
from agent.errors import ConfigError, NativeError, RinglaneError
from agent.policy.model import MAX_POLICIES, MAX_RULES_PER_DIRECTION, Origin, Policy
from tests.api.memory_backend import ENDPOINTS, MemoryBackend

pytestmark = pytest.mark.unit


def pol(name: str = "web", namespace: str = "shop", **kw: Any) -> ppb.Policy:
    return ppb.Policy(name=name, namespace=namespace, **kw)


def rich() -> ppb.Policy:
    """Every kind of field, in the order the server lists it back."""
    return ppb.Policy(
        name="web", namespace="shop", labels={"team": "payments"},
        pod_selector=ppb.LabelSelector(
            match_labels={"app": "web"},
            match_expressions=[ppb.Requirement(key="tier", operator=ppb.OPERATOR_IN,
                                               values=["a", "b"])]),
        policy_types=[ppb.DIRECTION_INGRESS, ppb.DIRECTION_EGRESS],
        ingress=[ppb.Rule(
            peers=[ppb.Peer(pods=ppb.PodPeer(
                       pod_selector=ppb.LabelSelector(match_labels={"app": "shop"}),
                       namespace_selector=ppb.LabelSelector())),
                   ppb.Peer(pods=ppb.PodPeer()),
                   ppb.Peer(ip_block=ppb.IPBlock(cidr="10.0.0.0/8",
                                                 excepts=["10.1.0.0/16", "10.2.0.0/16"]))],
            ports=[ppb.PortMatch(protocol=ppb.PROTOCOL_TCP, number=80, end_port=90),
                   ppb.PortMatch(protocol=ppb.PROTOCOL_UDP, name="dns"),
                   ppb.PortMatch(protocol=ppb.PROTOCOL_ICMP),
                   ppb.PortMatch(protocol=ppb.PROTOCOL_ANY)])],
        egress=[ppb.Rule()])


def refused(fn: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn()
    return info.value


# -- policies -----------------------------------------------------------------------------------


def test_apply_list_delete_round_trip(client: Client) -> None:
    assert client.policies() == []
    rev1 = client.apply([rich(), pol("db", policy_types=[ppb.DIRECTION_EGRESS])])
    listed = client.policies()
    assert [(p.namespace, p.name) for p in listed] == [("shop", "db"), ("shop", "web")]
    assert all(p.origin == ppb.ORIGIN_API for p in listed)
    expected = rich()
    expected.origin = ppb.ORIGIN_API
    assert listed[1] == expected
    assert client.policies("other") == []
    rev2 = client.delete([("shop", "db")])
    assert rev2 > rev1
    assert [p.name for p in client.policies()] == ["web"]


def test_apply_replaces_by_name_and_defaults_policy_types(client: Client) -> None:
    client.apply([pol()])
    client.apply([pol(egress=[ppb.Rule()])])
    (listed,) = client.policies()
    # NetworkPolicy's default: ingress, plus egress because egress rules are given
    assert list(listed.policy_types) == [ppb.DIRECTION_INGRESS, ppb.DIRECTION_EGRESS]


def test_policies_of_kubernetes_are_listed_and_cannot_be_deleted(tmp_path: Path,
                                                                 sock_dir: Path) -> None:
    kube = Policy(name="deny-all", namespace="shop", origin=Origin.KUBERNETES)
    backend = MemoryBackend(tmp_path, kube=[kube])
    with contextlib.closing(backend), \
            ApiServer(backend, unix_path=sock_dir / "a.sock") as srv, \
            Client.unix(srv.unix_path) as c:
        (listed,) = c.policies()
        assert listed.origin == ppb.ORIGIN_KUBERNETES
        err = refused(lambda: c.delete([("shop", "deny-all")]))
        assert err.code == "FAILED_PRECONDITION"
        assert "kubectl" in err.details
        bad = pol("x")
        bad.origin = ppb.ORIGIN_KUBERNETES
        err = refused(lambda: c.apply([bad]))
        assert (err.code, err.field) == ("INVALID_ARGUMENT", "policies[0].origin")


def test_watch_sees_initial_state_then_changes(client: Client, server: ApiServer) -> None:
    client.apply([pol("a")])
    events: list[ppb.PolicyEvent] = []
    got = threading.Semaphore(0)

    def watch() -> None:
        for ev in client.watch():
            events.append(ev)
            got.release()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert got.acquire(timeout=5)
    client.apply([pol("b")])
    assert got.acquire(timeout=5)
    client.delete([("shop", "a")])
    assert got.acquire(timeout=5)
    kinds = [(ev.kind, ev.policy.name) for ev in events]
    assert kinds == [(ppb.POLICY_EVENT_KIND_APPLIED, "a"), (ppb.POLICY_EVENT_KIND_APPLIED, "b"),
                     (ppb.POLICY_EVENT_KIND_DELETED, "a")]
    assert events[0].revision < events[1].revision < events[2].revision
    assert events[0].policy.origin == ppb.ORIGIN_API
    server.stop(grace=2.0)  # the stream ends with the server, it does not hang
    t.join(timeout=5)
    assert not t.is_alive()


def _port(**kw: Any) -> ppb.Policy:
    return pol(ingress=[ppb.Rule(ports=[ppb.PortMatch(**kw)])])


def _block(cidr: str, *excepts: str) -> ppb.Policy:
    return pol(ingress=[ppb.Rule(peers=[ppb.Peer(ip_block=ppb.IPBlock(cidr=cidr,
                                                                      excepts=excepts))])])


@pytest.mark.parametrize(("policy", "field", "words"), [
    (_block("10.0.0.300/8"), "policies[0].ingress[0].peers[0].ipBlock.cidr", "not an IPv4"),
    (_block("10.0.0.1/8"), "policies[0].ingress[0].peers[0].ipBlock.cidr", "10.0.0.0/8"),
    (_block("10.0.0.0"), "policies[0].ingress[0].peers[0].ipBlock.cidr", "prefix length"),
    (_block("10.0.0.0/8", "11.0.0.0/16"), "policies[0].ingress[0].peers[0].ipBlock.except[0]",
     "not strictly inside"),
    (_port(number=0), "policies[0].ingress[0].ports[0].port", "not in 1..65535"),
    (_port(number=70000), "policies[0].ingress[0].ports[0].port", "not in 1..65535"),
    (_port(number=90, end_port=80), "policies[0].ingress[0].ports[0].endPort", "below port"),
    (_port(protocol=ppb.PROTOCOL_ICMP, number=8), "policies[0].ingress[0].ports[0]",
     "has no ports"),
    (_port(protocol=7), "policies[0].ingress[0].ports[0].protocol", "not a valid protocol"),
    (_port(name="http", end_port=90), "policies[0].ingress[0].ports[0].endPort", "named port"),
    (pol(ingress=[ppb.Rule(peers=[ppb.Peer()])]), "policies[0].ingress[0].peers[0]",
     "empty peer"),
    (pol(ingress=[ppb.Rule(peers=[ppb.Peer(pods=ppb.PodPeer(
        pod_selector=ppb.LabelSelector(match_labels={"a b": "x"})))])]),
     "policies[0].ingress[0].peers[0].pods.podSelector.matchLabels", "invalid label key"),
    (pol(pod_selector=ppb.LabelSelector(match_expressions=[ppb.Requirement(key="a")])),
     "policies[0].podSelector.matchExpressions[0].operator", "not a valid operator"),
    (pol(name="Web"), "policies[0].name", "DNS subdomain"),
    (pol(namespace=""), "policies[0].namespace", "DNS label"),
    (pol(policy_types=[ppb.DIRECTION_UNSPECIFIED]), "policies[0].policyTypes[0]", "policy type"),
    (pol(policy_types=[ppb.DIRECTION_INGRESS], egress=[ppb.Rule()]), "policies[0].egress",
     "not in policyTypes"),
])
def test_invalid_policy_names_the_field(client: Client, policy: ppb.Policy, field: str,
                                        words: str) -> None:
    err = refused(lambda: client.apply([policy]))
    assert err.code == "INVALID_ARGUMENT"
    assert err.field == field
    assert err.details.startswith(field + ": ")
    assert words in err.details
    assert "Traceback" not in err.details


def test_too_many_rules_is_invalid(client: Client) -> None:
    err = refused(lambda: client.apply([pol(ingress=[ppb.Rule()] *
                                            (MAX_RULES_PER_DIRECTION + 1))]))
    assert (err.code, err.field) == ("INVALID_ARGUMENT", "policies[0].ingress")


def test_too_many_policies_is_resource_exhausted(client: Client) -> None:
    err = refused(lambda: client.apply([pol(f"p{i}") for i in range(MAX_POLICIES + 1)]))
    assert err.code == "RESOURCE_EXHAUSTED"
    assert client.policies() == []


def test_oversized_request_is_resource_exhausted(client: Client) -> None:
    big = pol(labels={"blob": "x" * (server_mod.MAX_MESSAGE + 1)})
    err = refused(lambda: client.apply([big]))
    assert err.code == "RESOURCE_EXHAUSTED"
    assert client.policies() == []


def test_a_bad_policy_applies_nothing(client: Client) -> None:
    err = refused(lambda: client.apply([pol("good"), _port(number=0)]))
    assert err.field.startswith("policies[1]")
    err = refused(lambda: client.apply([pol("twice"), pol("twice")]))
    assert (err.code, err.field) == ("INVALID_ARGUMENT", "policies[1].name")
    assert client.policies() == []


def test_delete_unknown_is_not_found_and_deletes_nothing(client: Client) -> None:
    client.apply([pol("a")])
    err = refused(lambda: client.delete([("shop", "a"), ("shop", "nope")]))
    assert err.code == "NOT_FOUND"
    assert "shop/nope" in err.details
    assert [p.name for p in client.policies()] == ["a"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_unknown_fields_are_refused_with_their_path(channel: grpc.Channel) -> None:
    apply = channel.unary_unary("/ringlane.v1.PolicyService/Apply",
                                request_serializer=lambda b: b,
                                response_deserializer=ppb.ApplyPoliciesResponse.FromString)
    # Policy field 6 (ingress) holds a Rule whose field 2 (ports) holds a PortMatch with an
    # unknown field 15; the Policy itself carries an unknown varint field 99.
    port = ppb.PortMatch(number=80).SerializeToString() + _varint(15 << 3) + _varint(1)
    policy = pol().SerializeToString() + _field(6, _field(2, port)) + _varint(99 << 3) + b"\x01"
    with pytest.raises(grpc.RpcError) as info:
        apply(_field(1, policy), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert "policies[0]: unknown field number 99" in details
    assert "policies[0].ingress[0].ports[0]: unknown field number 15" in details


def test_unknown_fields_on_an_empty_request(channel: grpc.Channel) -> None:
    status = channel.unary_unary("/ringlane.v1.AgentService/GetStatus",
                                 request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        status(_field(3, b"x"), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "(request): unknown field number 3" in (info.value.details() or "")


# -- endpoints, telemetry, status -------------------------------------------------------------


def test_endpoints(client: Client) -> None:
    eps = client.endpoints()
    assert [(e.namespace, e.name, e.ip, e.slot) for e in eps] == [
        ("shop", "web-1", "10.244.1.10", 1), ("", "0123456789ab", "10.244.1.11", 2)]
    assert list(eps[0].ingress_policies) == ["api/shop/web"]
    assert dict(eps[0].counters)["drop_policy"] == 1
    by_ip = client.endpoint(epb.GetEndpointRequest(ip="10.244.1.11"))
    assert by_ip.host_ifname == ENDPOINTS[1].host_ifname
    by_pod = client.endpoint(epb.GetEndpointRequest(pod=epb.PodRef(namespace="shop",
                                                                   name="web-1")))
    assert by_pod.ip == "10.244.1.10"
    assert refused(lambda: client.endpoint(epb.GetEndpointRequest(ip="10.9.9.9"))).code == (
        "NOT_FOUND")
    err = refused(lambda: client.endpoint(epb.GetEndpointRequest(ip="nope")))
    assert (err.code, err.field) == ("INVALID_ARGUMENT", "ip")
    assert refused(lambda: client.endpoint(epb.GetEndpointRequest())).code == "INVALID_ARGUMENT"


def test_stats_links_status(client: Client) -> None:
    st = client.stats()
    assert st.node == "node-a"
    assert dict(st.core)["ring_fill"] == 7
    assert [e.ip for e in st.endpoints] == ["10.244.1.10", "10.244.1.11"]
    links = client.links()
    assert [h.peer_node for h in links] == ["node-b", "node-c"]
    assert links[0].HasField("last_reply_age_s")
    assert not links[1].HasField("last_reply_age_s")
    status = client.status()
    assert (status.node, status.ready) == ("node-a", True)
    assert status.details["reconcile"]["passes"] == 3


@pytest.mark.parametrize(("exc", "code", "text"), [
    (RinglaneError("data path not ready yet"), "UNAVAILABLE", "data path not ready yet"),
    (NativeError("bpf_map_update_elem", -12), "INTERNAL", "bpf_map_update_elem"),
    (KeyError("secret internals"), "INTERNAL", "internal error"),
])
def test_backend_failures_map_to_codes(client: Client, backend: MemoryBackend,
                                       exc: Exception, code: str, text: str) -> None:
    backend.fail = exc
    err = refused(client.stats)
    assert err.code == code
    assert err.reason == type(exc).__name__
    assert not err.unreachable  # the agent answered
    assert text in err.details
    assert "secret" not in err.details and "Traceback" not in err.details


def _record(i: int) -> FlowRecord:
    from agent.policy.model import Direction
    return FlowRecord(node="node-a", ts_ns=i, src=IPv4Address("10.244.1.10"),
                      dst=IPv4Address("10.244.2.20"), sport=40000, dport=80, protocol=6,
                      verdict="deny", direction=Direction.EGRESS, point="from_pod", length=60)


def test_stream_flows_slow_client_loses_records_producer_never_waits(
        client: Client, backend: MemoryBackend) -> None:
    stream = client.flows(queue_size=8)
    batches = iter(stream)
    first = next(batches)  # the subscription exists once the first (empty) batch arrives
    assert (len(first.records), first.lost) == (0, 0)
    start = time.monotonic()
    for i in range(20000):
        backend.publish(_record(i))
    assert time.monotonic() - start < 2.0  # nothing waited for the client
    time.sleep(0.5)  # the client is slow
    seen, lost = 0, 0
    deadline = time.monotonic() + 10
    for batch in batches:
        seen += len(batch.records)
        lost = batch.lost
        if seen + lost >= 20000 or time.monotonic() > deadline:
            break
    stream.cancel()
    assert lost > 0
    assert seen + lost == 20000
    assert seen <= 20000 - lost


def test_stream_flows_record_fields(client: Client, backend: MemoryBackend) -> None:
    stream = client.flows()
    batches = iter(stream)
    next(batches)
    backend.publish(_record(7))
    batch = next(batches)
    stream.cancel()
    (rec,) = batch.records
    assert (rec.ts_ns, rec.src, rec.dport, rec.protocol) == (7, "10.244.1.10", 80, 6)
    assert rec.verdict == 2 and rec.point == 1  # VERDICT_DENY, OBSERVATION_POINT_FROM_POD


def test_stream_flows_queue_size_is_bounded(client: Client) -> None:
    err = refused(lambda: next(iter(client.flows(queue_size=server_mod.MAX_FLOW_QUEUE + 1))))
    assert (err.code, err.field) == ("INVALID_ARGUMENT", "queueSize")


def test_streams_are_bounded_and_unary_calls_still_run(client: Client,
                                                       backend: MemoryBackend) -> None:
    streams = [client.flows() for _ in range(MAX_STREAMS)]
    for s in streams:
        next(iter(s))
    err = refused(lambda: next(iter(client.flows())))
    assert err.code == "RESOURCE_EXHAUSTED"
    assert client.status().ready  # a unary call still has a thread
    for s in streams:
        s.cancel()
    deadline = time.monotonic() + 5
    while backend.subscriptions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.subscriptions == []  # cancelled streams closed their subscriptions


def test_stop_ends_flow_streams(backend: MemoryBackend, sock_dir: Path) -> None:
    srv = ApiServer(backend, unix_path=sock_dir / "api.sock")
    srv.start()
    with Client.unix(srv.unix_path) as c:
        batches = iter(c.flows())
        next(batches)
        start = time.monotonic()
        srv.stop(grace=3.0)
        assert list(batches) == []  # ended, not hanging
        assert time.monotonic() - start < 3.0
    assert backend.subscriptions == []


# -- the socket, health, reflection -------------------------------------------------------------


def test_socket_is_private(server: ApiServer) -> None:
    st = os.stat(server.unix_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert [p.name for p in server.unix_path.parent.iterdir()] == ["api.sock"]  # no temp dir


def test_stale_socket_is_replaced_and_stop_removes_it(backend: MemoryBackend,
                                                      sock_dir: Path) -> None:
    path = sock_dir / "run" / "api.sock"
    path.parent.mkdir()
    path.write_text("stale")
    with ApiServer(backend, unix_path=path), Client.unix(path) as c:
        assert c.status().ready
    assert not path.exists()


def test_health_serving_for_each_service(channel: grpc.Channel) -> None:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    for name in ("", *SERVICES):
        resp = check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, name


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    info = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    (resp,) = list(info(iter([req]), timeout=5))
    names = {s.name for s in resp.list_services_response.service}
    assert set(SERVICES) <= names
    assert "grpc.health.v1.Health" in names
    assert SERVICES == ("ringlane.v1.PolicyService", "ringlane.v1.EndpointService",
                        "ringlane.v1.TelemetryService", "ringlane.v1.AgentService")


def test_tcp_listener_requires_mutual_tls(backend: MemoryBackend, sock_dir: Path) -> None:
    assert TcpListener.from_config("", "", "", "") is None
    with pytest.raises(ConfigError, match="apiTlsKey, apiTlsCa"):
        TcpListener.from_config("127.0.0.1:0", "/etc/cert.pem", "", "")
    missing = TcpListener("127.0.0.1:0", sock_dir / "no.crt", sock_dir / "no.key",
                          sock_dir / "no.ca")
    srv = ApiServer(backend, unix_path=sock_dir / "api.sock", tcp=missing)
    with pytest.raises(ConfigError, match="apiTlsCert"):
        srv.start()
    assert list(sock_dir.iterdir()) == []  # nothing was bound
