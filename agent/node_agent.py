"""The node agent: one data path, a reconciler thread, the control socket (CNI) and the gRPC
API (policy and telemetry).

Desired state comes from a cluster source (a static file or the Kubernetes API) plus the
endpoints the CNI plugin registers, and the policies of the API and of Kubernetes; the
reconciler converges the data path to it. CNI requests are answered only once their endpoint
is programmed (bounded), which is what lets the plugin tell kubelet that the pod is
accelerated.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any

import structlog

from agent.api import convert
from agent.api.server import ApiServer, TcpListener
from agent.cni import queue as cni_queue
from agent.config import AgentConfig
from agent.control import ControlServer
from agent.datapath.node import Endpoint, NodeDatapath, RemoteNode
from agent.errors import RinglaneError
from agent.flows import FlowHub
from agent.metrics import HealthServer, TelemetryCollector
from agent.netlink import links
from agent.node_api import NodeBackend
from agent.policy.compile import Compiled, PolicyLimitError, compile_closed, compile_policies
from agent.policy.engine import PolicyEngine
from agent.policy.model import Inventory, PodRef, Policy
from agent.reconcile.reconciler import Desired, Reconciler
from agent.reconcile.registry import Key, Registry

log = structlog.get_logger(__name__)

# Below the CNI plugin's default timeoutMs (3 s): the plugin then hears our reason rather than
# a timeout, and a slow pass still ends in a fail-open ADD on the kernel path.
CNI_WAIT_SECONDS = 2.5


def _field(req: dict[str, Any], name: str) -> str:
    value = req.get(name)
    if not isinstance(value, str) or not value:
        raise RinglaneError(f"request field {name!r} missing or not a non-empty string")
    return value


def static_inventory(pods: Sequence[PodRef]) -> Callable[[list[Endpoint]], Inventory]:
    """Policy's view of a cluster without an API: the static config's `pods`."""
    return lambda eps: Inventory(tuple(pods), {}, links.route_sources(e.ip for e in eps))


class NodeAgent:
    """Owns the node's data path; `remotes` and `static_endpoints` say what the cluster wants,
    `inventory` what policy selectors pick from (given the endpoints of the moment) and
    `kube_policies` the NetworkPolicies."""

    def __init__(self, cfg: AgentConfig, dp: NodeDatapath,
                 remotes: Callable[[], dict[str, RemoteNode]],
                 static_endpoints: Callable[[], list[Endpoint]], *,
                 inventory: Callable[[list[Endpoint]], Inventory] | None = None,
                 kube_policies: Callable[[], Sequence[Policy]] = tuple) -> None:
        self.cfg = cfg
        self.dp = dp
        self._remotes = remotes
        self._static = static_endpoints
        self._inventory = inventory or static_inventory(())
        self.registry = Registry(cfg.run_dir / "endpoints.json")
        self.engine = PolicyEngine(cfg.state_dir / "policies.pb",
                                   (convert.dump_policies, convert.load_policies),
                                   snapshot=self._policy_snapshot, kube_policies=kube_policies)
        self.compiled = Compiled()
        # what the last pass compiled against (the API's endpoint view, trial compiles)
        self.inventory = Inventory()
        self._local_seen: list[IPv4Address] = []
        self.reconciler = Reconciler(dp, self.desired)
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.flows = FlowHub(dp.flow_source)
        backend = NodeBackend(self)
        self.api = ApiServer(backend, unix_path=cfg.api_socket, tcp=TcpListener(
            cfg.api_listen, cert=cfg.api_tls_cert, key=cfg.api_tls_key, ca=cfg.api_tls_ca)
            if cfg.api_listen else None)
        self.health = HealthServer(
            cfg.health_port, dp, ready=self.ready.is_set,
            alive=lambda: not self.stop_event.is_set()) if cfg.health_port else None
        if self.health is not None:
            self.health.registry.register(
                TelemetryCollector(dp.endpoint_stats, backend.link_health))
        self.server = ControlServer(cfg.run_dir / "agent.sock", {
            "status": self._status,
            "stats": lambda _req: {"core": dp.stats(), "xdp": dp.xdp_stats()},
            "cni_add": self._cni_add,
            "cni_del": self._cni_del,
            "cni_check": self._cni_check,
            "cni_gc": self._cni_gc,
        })

    def _endpoints(self) -> dict[IPv4Address, Endpoint]:
        eps = {e.ip: e for e in self._static()}
        eps.update({e.ip: e for e in self.registry.endpoints()})
        return eps

    def _policy_snapshot(self) -> tuple[Inventory, list[IPv4Address]]:
        """What the last pass compiled against: the engine's trial compiles use it rather than
        redo the netlink and API reads of a pass on the caller's thread."""
        return self.inventory, self._local_seen

    def desired(self) -> Desired:
        eps = self._endpoints()
        self.engine.refresh()
        policies = self.engine.policies()
        inventory = self._inventory(list(eps.values()))
        error = None
        try:
            self.compiled = compile_policies(policies, inventory, eps)
        except PolicyLimitError as exc:  # fail closed: isolated pods deny all, reported
            error = f"{exc}; enforcing deny-all for every isolated pod until it fits"
            self.compiled = compile_closed(policies, inventory, eps)
        self.inventory, self._local_seen = inventory, list(eps)
        return Desired(remotes=self._remotes(), endpoints=eps, policy=self.compiled.entries,
                       policy_error=error, policy_ids=tuple(p.id for p in policies))

    def status(self) -> dict[str, Any]:
        return {"node": self.cfg.node_name, "ready": self.ready.is_set(),
                "endpoints": {str(k): v for k, v in self.dp.endpoints().items()},
                "remotes": sorted(self.dp.remotes()),
                "policies": len(self.engine.policies()),
                "policyRevision": self.engine.revision,
                "policyEntries": len(self.compiled.entries),
                "policiesEnforced": list(self.reconciler.policy_ids),
                "reconcile": {"passes": self.reconciler.passes,
                              "failed": self.reconciler.last.failed}}

    # -- control socket handlers ----------------------------------------------------------

    def _status(self, _req: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    def _key(self, req: dict[str, Any]) -> Key:
        return (_field(req, "containerId"), _field(req, "ifName"))

    def _cni_add(self, req: dict[str, Any]) -> dict[str, Any]:
        key = self._key(req)
        try:
            ip = IPv4Address(_field(req, "ip"))
        except ValueError as exc:
            raise RinglaneError(f"ip: {exc}") from exc
        if ip not in self.dp.pod_cidr:
            raise RinglaneError(f"ip {ip} is outside this node's podCIDR {self.dp.pod_cidr}")
        host_index, mac = links.container_peer(_field(req, "netns"), key[1])
        host = links.link_by_index(host_index)
        pod = req.get("podName")
        name = f"{req.get('podNamespace')}/{pod}" if pod else key[0][:12]
        self.registry.add(key, Endpoint(name=name, ip=ip, host_ifname=host.name, mac=mac))
        if not self.reconciler.wait_pass(self.reconciler.trigger(), CNI_WAIT_SECONDS):
            raise RinglaneError(f"endpoint {ip}: not programmed within {CNI_WAIT_SECONDS:.0f}s")
        got = self.dp.programmed_endpoints().get(ip)
        if got is None or got.host_ifname != host.name:
            why = self.reconciler.last.failed.get(f"endpoint {ip}", "not programmed")
            raise RinglaneError(f"endpoint {ip} on {host.name}: {why}")
        log.info("cni.added", container=key[0][:12], ip=str(ip), veth=host.name)
        return {"slot": self.dp.endpoints()[ip], "hostIfname": host.name}

    def _cni_del(self, req: dict[str, Any]) -> dict[str, Any]:
        ep = self.registry.remove(self._key(req))
        if ep is not None:
            self.reconciler.wait_pass(self.reconciler.trigger(), CNI_WAIT_SECONDS)
            log.info("cni.deleted", ip=str(ep.ip))
        return {"removed": ep is not None}

    def _cni_check(self, req: dict[str, Any]) -> dict[str, Any]:
        ep = self.registry.get(self._key(req))
        if ep is None:
            raise RinglaneError(f"no endpoint registered for container {self._key(req)[0]}")
        if ep.ip not in self.dp.endpoints():
            raise RinglaneError(f"endpoint {ep.ip} registered but not programmed")
        return {"ip": str(ep.ip)}

    def _cni_gc(self, req: dict[str, Any]) -> dict[str, Any]:
        valid = req.get("valid")
        if not isinstance(valid, list):
            raise RinglaneError("request field 'valid' must be a list")
        keep = {(_field(v, "containerId"), _field(v, "ifName")) for v in valid}
        gone = self.registry.keep_only(keep)
        if gone:
            self.reconciler.wait_pass(self.reconciler.trigger(), CNI_WAIT_SECONDS)
        return {"removed": len(gone)}

    # -- lifetime ---------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self.server.start()
        # DELs the plugin queued while no agent listened (after listening: none can slip by)
        for item in cni_queue.drain(str(self.cfg.cni_state_dir)):
            key = (str(item["containerId"]), str(item["ifName"]))
            if self.registry.remove(key) is not None:
                log.info("cni.queued_delete", container=key[0][:12])
        if self.health is not None:
            self.health.start()
            self.reconciler.observe = self.health.reconcile_seconds.observe
        loop = threading.Thread(target=self.reconciler.run, args=(self.stop_event,),
                                name="reconciler", daemon=True)
        try:
            self.dp.start()
            first = self.reconciler.reconcile_once()
            if first.failed:
                log.warning("agent.partially_programmed", failed=first.failed)
            loop.start()
            self.flows.start()
            self.api.start()
            self.ready.set()
            log.info("agent.ready", node=self.cfg.node_name,
                     endpoints=len(self.dp.endpoints()), remotes=len(self.dp.remotes()))
            self.stop_event.wait()
        finally:
            self.stop_event.set()
            self.reconciler.trigger()  # wake it from its resync wait
            self.server.close()
            self.api.stop()
            self.flows.stop()
            if self.health is not None:
                self.health.close()
            if loop.is_alive():
                loop.join(timeout=30)
            self.dp.stop()
        return 0
