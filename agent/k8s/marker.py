"""The uninstall marker watch of the CNI container (agent/cni_install.py): here because this
package is the only importer of `kubernetes`."""

from __future__ import annotations

import threading
from typing import Any

import structlog
from kubernetes import client
from kubernetes import watch as kwatch

from agent.k8s.cluster import kube_client

log = structlog.get_logger(__name__)


def _kube_core() -> Any:
    return client.CoreV1Api(kube_client())


def list_pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods matching `selector` in `namespace`, as plain dicts."""
    pods = _kube_core().list_namespaced_pod(namespace, label_selector=selector).items
    return [p.to_dict() for p in pods]


def watch_marker(namespace: str, selector: str, seen: threading.Event,
                 stop: threading.Event) -> None:
    """Set `seen` once a pod matching `selector` exists in `namespace` (list, then watch;
    every failure is retried with a capped backoff)."""
    delay = 1.0
    while not stop.is_set() and not seen.is_set():
        try:
            api = _kube_core()
            pods = api.list_namespaced_pod(namespace, label_selector=selector)
            if pods.items:
                seen.set()
                break
            w: Any = kwatch.Watch()  # type: ignore[no-untyped-call]
            stream = w.stream(api.list_namespaced_pod, namespace, label_selector=selector,
                              resource_version=pods.metadata.resource_version,
                              timeout_seconds=300)
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED") or stop.is_set():
                    w.stop()
                    if event["type"] in ("ADDED", "MODIFIED"):
                        seen.set()
            delay = 1.0
        except Exception as exc:  # the API may be unreachable for a while: keep trying
            log.warning("cni_install.marker_watch_failed", error=str(exc), retry_in=delay)
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
    if seen.is_set():
        log.info("cni_install.uninstall_announced", namespace=namespace, selector=selector)
