"""What the node agent knows of the cluster: its own pods, every node, and (for policy) every
pod's labels and named ports, every namespace's labels and the NetworkPolicies.

ListWatches feed one store. The store keeps only what the data path needs, parsed once
per change into frozen records, and hands out snapshots (fresh dicts of immutable values): the
reconciler reads a consistent picture without holding a lock while it programs the node.

`changed` is level-triggered: it is set whenever a snapshot would differ, and the reconciler
re-reads everything rather than replaying events, so coalesced or missed wake-ups cost
nothing. `synced()` stays False until every watch has delivered its first complete list: an
empty store before that means "not known yet", and the agent must delete nothing on it.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog
from kubernetes import client, config

from agent.errors import ConfigError
from agent.k8s.watch import BackoffPolicy, KubeError, ListWatch, Obj, WatchStats
from agent.policy.model import NamedPort, PodRef, Protocol

log = structlog.get_logger(__name__)
V = TypeVar("V")


class KubeConfigError(ConfigError, KubeError):
    """No usable Kubernetes client configuration (kubeconfig or in-cluster)."""


@dataclass(frozen=True)
class NodeInfo:
    """A node as the overlay sees it: where to send (InternalIP) what (its IPv4 podCIDR)."""

    name: str
    internal_ip: IPv4Address
    pod_cidr: IPv4Network | None  # None until the node IPAM controller assigns one


@dataclass(frozen=True)
class PodInfo:
    """One of this node's pods. `deleting`: a deletionTimestamp is set (terminating)."""

    uid: str
    namespace: str
    name: str
    pod_ip: IPv4Address | None
    host_network: bool
    phase: str
    deleting: bool


def _ipv4(text: Any) -> IPv4Address | None:
    try:
        addr = ip_address(str(text))
    except ValueError:
        return None
    return addr if isinstance(addr, IPv4Address) else None


def _ipv4_net(text: Any) -> IPv4Network | None:
    try:
        net = ip_network(str(text), strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


def parse_node(obj: Obj) -> NodeInfo | None:
    """The node's record, or None when it has no IPv4 InternalIP yet (nothing to tunnel to).
    Dual-stack nodes list an IPv4 and an IPv6 podCIDR: the first IPv4 one is taken."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name = meta.get("name")
    internal = next((ip for a in status.get("addresses") or []
                     if a.get("type") == "InternalIP" and (ip := _ipv4(a.get("address")))), None)
    if not name or internal is None:
        return None
    cidrs = [*(spec.get("podCIDRs") or []), spec.get("podCIDR")]
    pod_cidr = next((net for c in cidrs if c and (net := _ipv4_net(c))), None)
    return NodeInfo(str(name), internal, pod_cidr)


def parse_pod(obj: Obj) -> PodInfo | None:
    """The pod's record, or None without a uid. The pod IP is the first IPv4 of podIPs
    (dual stack may list IPv6 first), else podIP; None until the CNI has assigned one."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    uid = meta.get("uid")
    if not uid:
        return None
    ips = [p.get("ip") for p in status.get("podIPs") or [] if isinstance(p, dict)]
    pod_ip = next((ip for t in [*ips, status.get("podIP")] if t and (ip := _ipv4(t))), None)
    return PodInfo(uid=str(uid), namespace=str(meta.get("namespace", "")),
                   name=str(meta.get("name", "")), pod_ip=pod_ip,
                   host_network=bool(spec.get("hostNetwork", False)),
                   phase=str(status.get("phase") or "Unknown"),
                   deleting=meta.get("deletionTimestamp") is not None)


def _named_ports(spec: Obj) -> frozenset[NamedPort]:
    out = set()
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for port in (c.get("ports") or []) if isinstance(c, dict) else []:
            if not isinstance(port, dict) or not port.get("name"):
                continue
            try:
                proto = Protocol(str(port.get("protocol") or "TCP").lower())
                out.add(NamedPort(str(port["name"]), proto, int(port["containerPort"])))
            except (KeyError, TypeError, ValueError):
                continue  # the API server validates ports; skip what we cannot read
    return frozenset(out)


def parse_pod_ref(obj: Obj) -> PodRef | None:
    """Any node's pod as a policy peer or subject: None for pods off the pod network (host
    network) or finished. Pods without an IP yet are kept: a local pod's labels are needed
    from its CNI ADD on, before the API shows its address."""
    pod = parse_pod(obj)
    if pod is None or pod.host_network or pod.phase in ("Succeeded", "Failed"):
        return None
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    labels = meta.get("labels") or {}
    return PodRef(pod.namespace, pod.name, pod.pod_ip,
                  frozenset((str(k), str(v)) for k, v in labels.items()), _named_ports(spec))


def _namespace_labels(obj: Obj) -> frozenset[tuple[str, str]]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return frozenset((str(k), str(v)) for k, v in labels.items())


@dataclass(frozen=True)
class _Pod:
    """One watched pod, parsed once for both readers: the node it is bound to, what the data
    path needs of it and what policy needs (None: not on the pod network)."""

    node: str
    info: PodInfo
    ref: PodRef | None


def _parse_any_pod(obj: Obj, *, for_policy: bool) -> _Pod | None:
    """Without `for_policy` no PodRef is kept, so that label changes (which only policy
    reads) move no snapshot and wake nobody."""
    info = parse_pod(obj)
    if info is None:
        return None
    return _Pod(str((obj.get("spec") or {}).get("nodeName") or ""), info,
                parse_pod_ref(obj) if for_policy else None)


def _policy_key(obj: Obj) -> str | None:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta['name']}" if meta.get("name") else None


class _Table(Generic[V]):
    """One watched collection: key -> parsed value, replaced wholesale on every list."""

    def __init__(self, kind: str, key: Callable[[Obj], str | None],
                 parse: Callable[[Obj], V | None]) -> None:
        self.kind = kind
        self.key = key
        self.parse = parse
        self.items: dict[str, V] = {}
        self.synced = False


class ClusterState:
    """Thread-safe store of this node's pods, all nodes and (with `watch_policies`) every pod,
    namespace and NetworkPolicy, kept current by watches on daemon threads between `start()`
    and `stop()`."""

    def __init__(self, *, watch_policies: bool = False, backoff: BackoffPolicy | None = None,
                 watch_timeout: float = 300.0, page_size: int = 500) -> None:
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._watch_policies = watch_policies
        self._backoff = backoff or BackoffPolicy()
        self._watch_timeout = watch_timeout
        self._page_size = page_size
        self._stop = threading.Event()
        self._watches: list[ListWatch] = []
        self._nodes = _Table[NodeInfo]("Node", lambda o: (o.get("metadata") or {}).get("name"),
                                       parse_node)
        # this node's pods only, or (watching policies) every pod: one watch either way
        self._pods = _Table[_Pod]("Pod", lambda o: (o.get("metadata") or {}).get("uid"),
                                  functools.partial(_parse_any_pod, for_policy=watch_policies))
        self._node = ""
        self._policies = _Table[Obj]("NetworkPolicy", _policy_key, copy.deepcopy)
        self._namespaces = _Table[frozenset[tuple[str, str]]](
            "Namespace", lambda o: (o.get("metadata") or {}).get("name"), _namespace_labels)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, api_client: client.ApiClient, node_name: str) -> None:
        """Start watching: all nodes, the pods bound to `node_name`, and what policy needs
        if asked."""
        if self._watches:
            raise KubeError("ClusterState.start() called twice")
        core = client.CoreV1Api(api_client)
        self._node = node_name
        specs: list[tuple[_Table[Any], Any, str | None]] = [
            (self._nodes, core.list_node, None),
            (self._pods, core.list_pod_for_all_namespaces,
             None if self._watch_policies else f"spec.nodeName={node_name}"),
        ]
        if self._watch_policies:
            net = client.NetworkingV1Api(api_client)
            specs += [(self._policies, net.list_network_policy_for_all_namespaces, None),
                      (self._namespaces, core.list_namespace, None)]
        for table, func, selector in specs:
            self._watches.append(ListWatch(
                table.kind, func, field_selector=selector,
                on_sync=functools.partial(self._sync, table),
                on_event=functools.partial(self._event, table),
                page_size=self._page_size, watch_timeout=self._watch_timeout,
                backoff=self._backoff, stop_event=self._stop))
        log.info("cluster.watching", node=node_name, policies=self._watch_policies)
        for w in self._watches:
            w.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every watch and wait for their threads, at most `timeout` seconds in all."""
        self._stop.set()
        for w in self._watches:
            w.stop()
        deadline = time.monotonic() + timeout
        for w in self._watches:
            if not w.join(max(0.0, deadline - time.monotonic())):
                log.warning("cluster.stop_timeout", kind=w.kind)

    # -- snapshots ---------------------------------------------------------------------------

    def synced(self) -> bool:
        """True once every watch has delivered its first complete list; until then, absence
        from a snapshot proves nothing and nothing may be garbage-collected."""
        with self._lock:
            return self._nodes.synced and self._pods.synced and (
                not self._watch_policies or (self._policies.synced and self._namespaces.synced))

    def nodes(self) -> dict[str, NodeInfo]:
        """Every node with an IPv4 InternalIP, by name."""
        with self._lock:
            return dict(self._nodes.items)

    def pods(self) -> dict[str, PodInfo]:
        """This node's pods, by uid (a pod recreated under the same name is a new pod)."""
        with self._lock:
            return {uid: p.info for uid, p in self._pods.items.items() if p.node == self._node}

    def policies(self) -> dict[str, Obj]:
        """NetworkPolicies as the API returned them (deep copies), by "namespace/name"; empty
        unless constructed with watch_policies=True."""
        with self._lock:
            return copy.deepcopy(self._policies.items)

    def all_pods(self) -> list[PodRef]:
        """Every pod of the cluster on the pod network; empty unless watch_policies=True."""
        with self._lock:
            refs = [p.ref for p in self._pods.items.values() if p.ref is not None]
        return sorted(refs, key=lambda r: (r.namespace, r.name))

    def namespaces(self) -> dict[str, dict[str, str]]:
        """Namespace name -> labels; empty unless watch_policies=True."""
        with self._lock:
            return {k: dict(v) for k, v in self._namespaces.items.items()}

    @property
    def generation(self) -> int:
        """Bumped on every change a snapshot would show: skip a reconcile when unchanged."""
        with self._lock:
            return self._generation

    def wait_changed(self, timeout: float | None = None) -> bool:
        """Wait for a change and consume the signal; True if there was one. Clearing before
        the caller reads the snapshots means a change made meanwhile sets it again."""
        fired = self.changed.wait(timeout)
        self.changed.clear()
        return fired

    def stats(self) -> dict[str, WatchStats]:
        """Per watched kind: lists, relists, restarts, events, errors, resume RV."""
        return {w.kind: w.stats() for w in self._watches}

    # -- watch callbacks (each on its watch's thread) -----------------------------------------

    def _sync(self, table: _Table[V], items: list[Obj]) -> None:
        fresh: dict[str, V] = {}
        for obj in items:
            key, value = table.key(obj), table.parse(obj)
            if key is not None and value is not None:
                fresh[key] = value
        with self._lock:
            changed = fresh != table.items or not table.synced
            gone = len(table.items.keys() - fresh.keys())
            table.items, table.synced = fresh, True
            if changed:
                self._notify()
        log.info("cluster.synced", kind=table.kind, items=len(fresh), removed=gone)

    def _event(self, table: _Table[V], type_: str, obj: Obj) -> None:
        key = table.key(obj)
        if key is None:
            return
        value = None if type_ == "DELETED" else table.parse(obj)
        with self._lock:
            before = table.items.get(key)
            if value is None:  # deleted, or no longer usable (e.g. a node lost its IP)
                table.items.pop(key, None)
            else:
                table.items[key] = value
            if before != value:
                self._notify()

    def _notify(self) -> None:
        self._generation += 1
        self.changed.set()


def kube_client(kubeconfig: Path | None = None) -> client.ApiClient:
    """A client for the API server: `kubeconfig` if given; else the pod's service account
    when running in a pod (KUBERNETES_SERVICE_HOST is set); else the default kubeconfig
    ($KUBECONFIG, ~/.kube/config).

    Tuned for long-lived watches: TCP keepalive (a half-open connection behind a NAT or load
    balancer is noticed), and one immediate urllib3 retry instead of three (a stale pooled
    connection is retried at once; anything more is ListWatch's jittered backoff, not a burst
    of reconnects from every node the moment the API server goes down). The kubeconfig is
    never written back (persist_config=False).
    """
    cfg = client.Configuration()
    in_cluster = kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    source = "in-cluster service account" if in_cluster else str(kubeconfig or "kubeconfig")
    try:
        if in_cluster:
            config.load_incluster_config(  # type: ignore[no-untyped-call]  # unannotated
                client_configuration=cfg)
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]  # unannotated
                config_file=str(kubeconfig) if kubeconfig else None,
                client_configuration=cfg, persist_config=False)
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise KubeConfigError(
            f"cannot configure the Kubernetes client from {source}: {exc}; give the agent a "
            "kubeconfig, or run it in a pod with a service account") from exc
    cfg.retries = 1
    cfg.keep_alive = True
    log.info("k8s.client", host=cfg.host, source=source)
    return client.ApiClient(cfg)
