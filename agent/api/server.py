"""The agent's gRPC API (ringlane.v1): policies, endpoints, telemetry and status, served on a
unix socket for the node (ringlanectl) and optionally on TCP with mutual TLS.

Servicers only translate: protobuf in, agent/api/convert.py to the model, one call on the
Backend, protobuf out. Failures are status codes, decided in one place (`status_of`):

    PolicyError                      INVALID_ARGUMENT  (message and trailer "ringlane-field"
                                                       name the field, e.g. policies[0].name)
    fields unknown to this version   INVALID_ARGUMENT  (a newer client: nothing is applied
                                                       half-understood)
    PolicyNotFound, unknown endpoint NOT_FOUND
    PolicyConflict                   FAILED_PRECONDITION  (the name is a NetworkPolicy: the
                                                       request can only succeed once the
                                                       cluster changes, so neither a retry
                                                       nor ALREADY_EXISTS, which means "you
                                                       created it before", fits)
    PolicyLimitError                 RESOURCE_EXHAUSTED (as is a request over 4 MiB, refused
                                                       by gRPC itself, and a stream beyond
                                                       MAX_STREAMS)
    NativeError                      INTERNAL (a kernel or ring core call failed)
    other RinglaneError              UNAVAILABLE (the agent cannot serve it now, e.g. not
                                                       ready; its message says why)
    anything else (a bug)            INTERNAL "internal error", logged with its traceback;
                                     the client never sees a stack trace

The unix socket is private (0600, the agent's user, root on a node) from the moment it can
be connected to: gRPC binds it inside a fresh 0700 directory next to its final path, it is
chmod-ed there, and only then renamed into place (rename is atomic and the listening socket
keeps working). Changing the umask instead would race with every other thread of the agent
that creates files.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
import structlog
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agent.api import convert
from agent.api.backend import Backend
from agent.api.v1 import agent_pb2 as apb
from agent.api.v1 import agent_pb2_grpc, endpoint_pb2_grpc, policy_pb2_grpc, telemetry_pb2_grpc
from agent.api.v1 import endpoint_pb2 as epb
from agent.api.v1 import policy_pb2 as ppb
from agent.api.v1 import telemetry_pb2 as tpb
from agent.errors import ConfigError, NativeError, RinglaneError
from agent.policy.engine import PolicyConflict, PolicyLimitError, PolicyNotFound
from agent.policy.model import PolicyError

log = structlog.get_logger(__name__)

MAX_MESSAGE = 4 * 1024 * 1024   # a request larger than this is refused (RESOURCE_EXHAUSTED)
MAX_STREAMS = 8                  # open Watch + StreamFlows calls; each holds a thread
UNARY_WORKERS = 8                # threads left for unary calls however many streams are open
MAX_CONCURRENT_RPCS = 64         # running + queued; beyond: RESOURCE_EXHAUSTED at once
DEFAULT_FLOW_QUEUE = 1024
MAX_FLOW_QUEUE = 65536
MAX_FLOW_BATCH = 512             # records per FlowBatch message (well below 4 MiB)
STREAM_POLL_S = 0.2              # how soon a stream notices the agent stopping
FIELD_TRAILER = "ringlane-field"    # the offending field's path, with INVALID_ARGUMENT
REASON_TRAILER = "ringlane-reason"  # on every status the agent itself decided: the error's
                                    # class (PolicyConflict, ...); its absence on UNAVAILABLE
                                    # means no agent answered

SERVICES = (
    ppb.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    epb.DESCRIPTOR.services_by_name["EndpointService"].full_name,
    tpb.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
    apb.DESCRIPTOR.services_by_name["AgentService"].full_name,
)


class ApiStatus(Exception):
    """A failure that is already a status (raised by servicers for what the model does not
    cover, e.g. an endpoint lookup that finds nothing)."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str, str]:
    """(code, message for the client, field path or "") for an exception of a servicer."""
    if isinstance(exc, ApiStatus):
        return exc.code, exc.message, exc.field
    if isinstance(exc, PolicyError):
        path = convert.api_path(exc.field)
        return grpc.StatusCode.INVALID_ARGUMENT, f"{path}: {exc.message}", path
    if isinstance(exc, PolicyNotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc), ""
    if isinstance(exc, PolicyConflict):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc), ""
    if isinstance(exc, PolicyLimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), ""
    if isinstance(exc, NativeError):
        return grpc.StatusCode.INTERNAL, str(exc), ""
    if isinstance(exc, RinglaneError):
        return grpc.StatusCode.UNAVAILABLE, str(exc), ""
    return grpc.StatusCode.INTERNAL, "internal error (the agent's log has the details)", ""


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> NoReturn:
    code, message, field = status_of(exc)
    if code is grpc.StatusCode.INTERNAL and not isinstance(exc, RinglaneError):
        log.exception("api.failed", method=method)
    else:
        log.info("api.refused", method=method, code=code.name, error=message)
    trailers = [(REASON_TRAILER, type(exc).__name__)]
    if field:
        trailers.append((FIELD_TRAILER, field))
    context.set_trailing_metadata(tuple(trailers))
    context.abort(code, message)
    raise AssertionError("grpc.ServicerContext.abort returned")


def _check_request(request: Message) -> None:
    unknown = convert.unknown_fields(request)
    if unknown:
        raise ApiStatus(grpc.StatusCode.INVALID_ARGUMENT,
                        "request has fields this agent does not know (a newer client?): "
                        + "; ".join(unknown))


_S = TypeVar("_S")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp")


def unary(fn: Callable[[_S, _Req, grpc.ServicerContext], _Resp],
          ) -> Callable[[_S, _Req, grpc.ServicerContext], _Resp]:
    """A unary servicer method with the API's request check and error mapping."""

    @functools.wraps(fn)
    def call(self: _S, request: _Req, context: grpc.ServicerContext) -> _Resp:
        try:
            _check_request(request)
            return fn(self, request, context)
        except Exception as exc:
            _abort(context, exc, fn.__qualname__)

    return call


def stream(fn: Callable[[_S, _Req, grpc.ServicerContext], Iterator[_Resp]],
           ) -> Callable[[_S, _Req, grpc.ServicerContext], Iterator[_Resp]]:
    """A server-streaming servicer method with the API's request check and error mapping."""

    @functools.wraps(fn)
    def call(self: _S, request: _Req, context: grpc.ServicerContext) -> Iterator[_Resp]:
        try:
            _check_request(request)
            yield from fn(self, request, context)
        except Exception as exc:
            _abort(context, exc, fn.__qualname__)

    return call


class _Streams:
    """The open streaming calls: bounded, and each ended when the server stops (or its client
    goes away) through its own event; no lock is held while a call runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[threading.Event] = set()
        self._stopping = False

    @contextmanager
    def open(self, context: grpc.ServicerContext) -> Iterator[threading.Event]:
        stop = threading.Event()
        with self._lock:
            if self._stopping:
                raise ApiStatus(grpc.StatusCode.UNAVAILABLE, "the agent is stopping")
            if len(self._open) >= MAX_STREAMS:
                raise ApiStatus(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{MAX_STREAMS} streams are open on this agent; close one")
            self._open.add(stop)
        if not context.add_callback(stop.set):  # the client cancelled or went away...
            stop.set()  # ...already: the RPC is over before the stream began
        try:
            yield stop
        finally:
            with self._lock:
                self._open.discard(stop)

    def stop_all(self) -> None:
        with self._lock:
            self._stopping = True
            events = list(self._open)
        for ev in events:
            ev.set()


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, backend: Backend, streams: _Streams) -> None:
        self._backend = backend
        self._streams = streams

    @unary
    def Apply(self, request: ppb.ApplyPoliciesRequest,
              context: grpc.ServicerContext) -> ppb.ApplyPoliciesResponse:
        policies = convert.policies_to_model(request.policies)
        return ppb.ApplyPoliciesResponse(revision=self._backend.apply_policies(policies))

    @unary
    def Delete(self, request: ppb.DeletePoliciesRequest,
               context: grpc.ServicerContext) -> ppb.DeletePoliciesResponse:
        names = [(r.namespace, r.name) for r in request.policies]
        return ppb.DeletePoliciesResponse(revision=self._backend.delete_policies(names))

    @unary
    def List(self, request: ppb.ListPoliciesRequest,
             context: grpc.ServicerContext) -> ppb.ListPoliciesResponse:
        policies = sorted(self._backend.list_policies(), key=lambda p: p.key)
        return ppb.ListPoliciesResponse(policies=[
            convert.policy_to_proto(p) for p in policies
            if not request.namespace or p.namespace == request.namespace])

    @stream
    def Watch(self, request: ppb.WatchPoliciesRequest,
              context: grpc.ServicerContext) -> Iterator[ppb.PolicyEvent]:
        with self._streams.open(context) as stop:
            events = self._backend.watch_policies(stop)
            try:
                for ev in events:
                    yield convert.event_to_proto(ev)
            finally:
                if isinstance(events, Generator):
                    events.close()


class EndpointServicer(endpoint_pb2_grpc.EndpointServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @unary
    def List(self, request: epb.ListEndpointsRequest,
             context: grpc.ServicerContext) -> epb.ListEndpointsResponse:
        views = sorted(self._backend.endpoints(), key=lambda v: v.ip)
        return epb.ListEndpointsResponse(endpoints=[convert.endpoint_to_proto(v) for v in views])

    @unary
    def Get(self, request: epb.GetEndpointRequest,
            context: grpc.ServicerContext) -> epb.Endpoint:
        kind = request.WhichOneof("key")
        views = self._backend.endpoints()
        if kind == "ip":
            try:
                ip = IPv4Address(request.ip)
            except ValueError:
                raise ApiStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                f"ip: {request.ip!r} is not an IPv4 address", "ip") from None
            found = [v for v in views if v.ip == ip]
            what = str(ip)
        elif kind == "pod":
            ns, name = request.pod.namespace, request.pod.name
            found = [v for v in views if v.namespace == ns and convert.pod_name(v) == name]
            what = f"{ns}/{name}"
        else:
            raise ApiStatus(grpc.StatusCode.INVALID_ARGUMENT, "key: set ip or pod", "key")
        if not found:
            raise ApiStatus(grpc.StatusCode.NOT_FOUND, f"no endpoint {what} on this node")
        return convert.endpoint_to_proto(found[0])


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, backend: Backend, streams: _Streams) -> None:
        self._backend = backend
        self._streams = streams

    @unary
    def GetStats(self, request: tpb.GetStatsRequest,
                 context: grpc.ServicerContext) -> tpb.Stats:
        return convert.stats_to_proto(self._backend.stats())

    @unary
    def GetLinkHealth(self, request: tpb.GetLinkHealthRequest,
                      context: grpc.ServicerContext) -> tpb.GetLinkHealthResponse:
        links = sorted(self._backend.link_health(), key=lambda h: h.peer_node)
        return tpb.GetLinkHealthResponse(links=[convert.link_to_proto(h) for h in links])

    @stream
    def StreamFlows(self, request: tpb.StreamFlowsRequest,
                    context: grpc.ServicerContext) -> Iterator[tpb.FlowBatch]:
        size = request.queue_size or DEFAULT_FLOW_QUEUE
        if size > MAX_FLOW_QUEUE:
            raise ApiStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            f"queueSize: {size} is above {MAX_FLOW_QUEUE}", "queueSize")
        with self._streams.open(context) as stop:
            sub = self._backend.subscribe_flows(size)
            try:
                yield tpb.FlowBatch(lost=0)  # the subscription exists from here on
                told = 0
                while not stop.is_set():
                    records = sub.get(STREAM_POLL_S)
                    lost = sub.lost
                    for i in range(0, len(records), MAX_FLOW_BATCH):
                        chunk = records[i:i + MAX_FLOW_BATCH]
                        told = lost
                        yield tpb.FlowBatch(records=[convert.flow_to_proto(r) for r in chunk],
                                            lost=lost)
                    if lost != told:
                        told = lost
                        yield tpb.FlowBatch(lost=lost)
            finally:
                sub.close()


def _version() -> str:
    try:
        return importlib.metadata.version("ringlane")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @unary
    def GetStatus(self, request: apb.GetStatusRequest,
                  context: grpc.ServicerContext) -> apb.Status:
        status = dict(self._backend.status())
        ready = status.pop("ready", False)
        status.pop("node", None)
        msg = apb.Status(node=self._backend.node_name, ready=ready is True, version=_version())
        msg.details.update(convert.jsonable(status))
        return msg


@dataclass(frozen=True)
class TcpListener:
    """A TCP listener of the API; always mutual TLS: the agent proves itself with `cert` and
    `key`, and accepts only clients whose certificate `ca` signed."""

    address: str  # host:port; port 0 picks a free port (ApiServer.tcp_port tells which)
    cert: Path | str  # PEM files; "" (unset) makes start() fail with ConfigError
    key: Path | str
    ca: Path | str

    @classmethod
    def from_config(cls, address: str, cert: Path | str, key: Path | str,
                    ca: Path | str) -> TcpListener | None:
        """None when `address` is empty; ConfigError unless all three files are given (in
        AgentConfig's names)."""
        if not address:
            return None
        missing = [name for name, value in (("apiTlsCert", cert), ("apiTlsKey", key),
                                            ("apiTlsCa", ca)) if not str(value)]
        if missing:
            raise ConfigError(f"apiListen {address}: the TCP API requires mutual TLS; "
                              f"set {', '.join(missing)}")
        return cls(address, cert, key, ca)

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: Path | str, name: str) -> bytes:
            if not str(path) or Path(path) == Path("."):
                raise ConfigError(f"apiListen {self.address}: {name} is not set; the TCP "
                                  "API requires mutual TLS (cert, key and client CA)")
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"{name} {path}: {exc.strerror}") from exc

        cert, key = read(self.cert, "apiTlsCert"), read(self.key, "apiTlsKey")
        ca = read(self.ca, "apiTlsCa")
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                           require_client_auth=True)


class ApiServer:
    """The API on `unix_path` (0600) and, if given, `tcp` (mutual TLS)."""

    def __init__(self, backend: Backend, *, unix_path: Path,
                 tcp: TcpListener | None = None) -> None:
        self.backend = backend
        self.unix_path = unix_path
        self.tcp = tcp
        self.tcp_port = 0
        self._streams = _Streams()
        self._health = health.HealthServicer()
        self._server: grpc.Server | None = None
        self._inode: tuple[int, int] | None = None

    def start(self) -> None:
        creds = self.tcp.credentials() if self.tcp is not None else None  # ConfigError first
        pool = futures.ThreadPoolExecutor(max_workers=MAX_STREAMS + UNARY_WORKERS,
                                          thread_name_prefix="api")
        server = grpc.server(pool, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),  # a second agent must fail to bind, not share the port
        ])
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(  # type: ignore[no-untyped-call]
            PolicyServicer(self.backend, self._streams), server)
        endpoint_pb2_grpc.add_EndpointServiceServicer_to_server(  # type: ignore[no-untyped-call]
            EndpointServicer(self.backend), server)
        telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(  # type: ignore[no-untyped-call]
            TelemetryServicer(self.backend, self._streams), server)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AgentServicer(self.backend), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in SERVICES:
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

        tmpdir = self._bind_private(server)
        try:
            if self.tcp is not None and creds is not None:
                try:
                    self.tcp_port = server.add_secure_port(self.tcp.address, creds)
                except RuntimeError as exc:
                    raise ConfigError(f"apiListen {self.tcp.address}: cannot listen "
                                      f"({exc})") from exc
            server.start()
            self._publish(tmpdir)
        except BaseException:
            server.stop(None)
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        self._server = server
        log.info("api.listening", socket=str(self.unix_path),
                 tcp=f"{self.tcp.address} (port {self.tcp_port}, mTLS)" if self.tcp else "off")

    def _bind_private(self, server: grpc.Server) -> Path:
        """Bind the unix socket inside a new 0700 directory beside its final path (the same
        file system, so that the later rename is atomic); the directory."""
        parent = self.unix_path.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".api-", dir=parent))
        try:
            server.add_insecure_port(f"unix:{tmpdir / self.unix_path.name}")
        except RuntimeError as exc:
            tmpdir.rmdir()
            raise RinglaneError(f"API socket {self.unix_path}: cannot bind ({exc})") from exc
        return tmpdir

    def _publish(self, tmpdir: Path) -> None:
        """chmod the bound socket to 0600, check it, and move it to its path."""
        bound = tmpdir / self.unix_path.name
        os.chmod(bound, 0o600)
        st = os.stat(bound)
        if st.st_mode & 0o777 != 0o600 or st.st_uid != os.geteuid():
            raise RinglaneError(f"API socket {bound}: mode {oct(st.st_mode & 0o777)} uid "
                                f"{st.st_uid}, expected 0600 owned by {os.geteuid()}")
        os.replace(bound, self.unix_path)  # replaces a stale socket of a previous agent
        tmpdir.rmdir()
        self._inode = (st.st_dev, st.st_ino)

    def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving: health NOT_SERVING, streams end (OK), unary calls get `grace`
        seconds, then the socket is removed (unless another agent's replaced it)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._health.enter_graceful_shutdown()
        self._streams.stop_all()
        server.stop(grace).wait()
        try:
            st = os.stat(self.unix_path)
            if (st.st_dev, st.st_ino) == self._inode:
                self.unix_path.unlink()
        except FileNotFoundError:
            pass
        log.info("api.stopped", socket=str(self.unix_path))

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(grace=1.0)
