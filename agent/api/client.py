"""A typed client of the agent's gRPC API (what ringlanectl uses): the generated stubs behind
methods that take and return protobuf messages and raise ApiError instead of grpc.RpcError,
so callers outside agent/api need not import grpc."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agent.api.server import FIELD_TRAILER, REASON_TRAILER
from agent.api.v1 import agent_pb2 as apb
from agent.api.v1 import agent_pb2_grpc, endpoint_pb2_grpc, policy_pb2_grpc, telemetry_pb2_grpc
from agent.api.v1 import endpoint_pb2 as epb
from agent.api.v1 import policy_pb2 as ppb
from agent.api.v1 import telemetry_pb2 as tpb
from agent.errors import ConfigError, RinglaneError

MAX_RESPONSE = 64 * 1024 * 1024  # a List of every policy on a busy node may pass 4 MiB


class ApiError(RinglaneError):
    """The agent answered with a status other than OK. `code` is the gRPC status name
    ("INVALID_ARGUMENT", ...), `field` the offending field's path when the agent named one."""

    def __init__(self, code: str, details: str, field: str = "", reason: str = "") -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        self.field = field
        self.reason = reason  # the agent's error class; "" when gRPC itself failed the call

    @property
    def unreachable(self) -> bool:
        """No agent answered: not running, socket gone, TLS handshake refused (an agent that
        answers UNAVAILABLE itself, e.g. while starting, gives a reason)."""
        return self.code == "UNAVAILABLE" and not self.reason


def _error(exc: grpc.RpcError) -> ApiError:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    trailers = {item.key: str(item.value) for item in exc.trailing_metadata() or ()}
    return ApiError(name, str(exc.details() or ""), trailers.get(FIELD_TRAILER, ""),
                    trailers.get(REASON_TRAILER, ""))


@dataclass(frozen=True)
class TlsFiles:
    """The client's certificate and key, and the CA that signed the agent's certificate."""

    cert: Path
    key: Path
    ca: Path
    server_name: str = ""  # override the name checked against the agent's certificate

    def credentials(self) -> grpc.ChannelCredentials:
        try:
            ca, key, cert = self.ca.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{exc.filename}: {exc.strerror}") from exc
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=cert)


class FlowStream:
    """The batches of a StreamFlows call; `cancel()` ends it from another thread (or a signal
    handler)."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[tpb.FlowBatch]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.CANCELLED:
                return
            raise _error(exc) from None

    def cancel(self) -> None:
        self._call.cancel()


class Client:
    """One channel to an agent. `timeout`: seconds for each unary call."""

    def __init__(self, target: str, tls: TlsFiles | None = None, *,
                 timeout: float = 30.0) -> None:
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RESPONSE)]
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.secure_channel(target, tls.credentials(), options=options)
        self.target = target
        self.timeout = timeout
        self._policy = policy_pb2_grpc.PolicyServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self._endpoint = endpoint_pb2_grpc.EndpointServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self._telemetry = telemetry_pb2_grpc.TelemetryServiceStub(  # type: ignore[no-untyped-call]
            self._channel)
        self._agent = agent_pb2_grpc.AgentServiceStub(  # type: ignore[no-untyped-call]
            self._channel)

    @classmethod
    def unix(cls, path: Path, *, timeout: float = 30.0) -> Client:
        return cls(f"unix:{path.absolute()}", timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    # -- the services ---------------------------------------------------------------------

    def status(self) -> apb.Status:
        resp: apb.Status = self._unary(self._agent.GetStatus, apb.GetStatusRequest())
        return resp

    def endpoints(self) -> list[epb.Endpoint]:
        resp: epb.ListEndpointsResponse = self._unary(self._endpoint.List,
                                                      epb.ListEndpointsRequest())
        return list(resp.endpoints)

    def endpoint(self, request: epb.GetEndpointRequest) -> epb.Endpoint:
        resp: epb.Endpoint = self._unary(self._endpoint.Get, request)
        return resp

    def apply(self, policies: Sequence[ppb.Policy]) -> int:
        resp: ppb.ApplyPoliciesResponse = self._unary(
            self._policy.Apply, ppb.ApplyPoliciesRequest(policies=policies))
        return int(resp.revision)

    def delete(self, names: Sequence[tuple[str, str]]) -> int:
        request = ppb.DeletePoliciesRequest(
            policies=[ppb.PolicyRef(namespace=ns, name=name) for ns, name in names])
        resp: ppb.DeletePoliciesResponse = self._unary(self._policy.Delete, request)
        return int(resp.revision)

    def policies(self, namespace: str = "") -> list[ppb.Policy]:
        resp: ppb.ListPoliciesResponse = self._unary(
            self._policy.List, ppb.ListPoliciesRequest(namespace=namespace))
        return list(resp.policies)

    def watch(self) -> Iterator[ppb.PolicyEvent]:
        try:
            yield from self._policy.Watch(ppb.WatchPoliciesRequest())
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def stats(self) -> tpb.Stats:
        resp: tpb.Stats = self._unary(self._telemetry.GetStats, tpb.GetStatsRequest())
        return resp

    def links(self) -> list[tpb.LinkHealth]:
        resp: tpb.GetLinkHealthResponse = self._unary(self._telemetry.GetLinkHealth,
                                                      tpb.GetLinkHealthRequest())
        return list(resp.links)

    def flows(self, queue_size: int = 0) -> FlowStream:
        return FlowStream(self._telemetry.StreamFlows(
            tpb.StreamFlowsRequest(queue_size=queue_size)))
