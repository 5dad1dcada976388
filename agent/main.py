"""`ringlane-agent`: the node agent's entry point."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

import structlog
import yaml

from agent import config as configmod
from agent import logs, static_config
from agent.datapath.node import NodeDatapath, cleanup_node
from agent.errors import ConfigError, RinglaneError
from agent.netlink import links
from agent.node_agent import NodeAgent

log = structlog.get_logger("ringlane.agent")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringlane-agent", description=__doc__)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--config", type=Path, help="agent configuration file (YAML)")
    p.add_argument("--static-config", type=Path,
                   help="run without Kubernetes: nodes and endpoints from this YAML file")
    p.add_argument("--kubeconfig", type=Path,
                   help="kubeconfig file (default: in-cluster configuration)")
    p.add_argument("--cleanup", action="store_true",
                   help="remove everything Ringlane put on this node, then exit")
    for name, f in configmod.FIELDS.items():
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                       help=f"({kind}, default {f.default})")
    return p


def _file_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"config {path}: expected a mapping")
    return doc


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"ringlane-agent {version('ringlane')}")
        return 0
    flags = {n: getattr(args, n) for n in configmod.FIELDS}
    cluster = static_config.load(args.static_config) if args.static_config else None
    file_values = {**(cluster.agent if cluster else {}), **_file_values(args.config)}
    if cluster is not None:
        file_values.setdefault("nodeName", cluster.node)
    cfg = configmod.load(file_values, flags=flags)
    logs.configure(cfg.log_format)
    if args.cleanup:
        removed = cleanup_node(cfg)
        log.info("cleanup.done", removed=removed)
        return 0
    if cluster is None:
        return serve_kubernetes(cfg, args.kubeconfig)
    return serve_static(cfg, cluster)


def serve_static(cfg: configmod.AgentConfig, cluster: static_config.StaticCluster) -> int:
    from agent.node_agent import static_inventory

    dp = NodeDatapath(cfg, pod_cidr=cluster.this_node.pod_cidr)
    remotes = {n.name: n for n in cluster.remote_nodes}
    return NodeAgent(cfg, dp, lambda: remotes, lambda: cluster.endpoints,
                     inventory=static_inventory(cluster.pods)).run()


def serve_kubernetes(cfg: configmod.AgentConfig, kubeconfig: Path | None) -> int:
    """Watch the API, wait for the first complete lists and this node's podCIDR (nothing is
    programmed or removed before), then run the agent with the cluster as its source."""
    from agent import kube_source
    from agent.k8s.cluster import ClusterState, kube_client
    from agent.metrics import WatchCollector

    if not cfg.node_name:
        raise ConfigError("nodeName is empty: set it (the DaemonSet passes spec.nodeName as "
                          "RINGLANE_NODE_NAME)")
    cluster = ClusterState(watch_policies=True)  # every pod and namespace, for selectors
    cluster.start(kube_client(kubeconfig), cfg.node_name)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        waited = 0
        while True:
            me = cluster.nodes().get(cfg.node_name) if cluster.synced() else None
            if me is not None and me.pod_cidr is not None:
                break
            if stop.wait(0.5):
                return 0
            if waited % 20 == 0:  # every 10 s, not every poll
                log.info("agent.waiting", synced=cluster.synced(), node=cfg.node_name,
                         seconds=waited // 2)
            waited += 1
        pod_cidr = me.pod_cidr
        dp = NodeDatapath(cfg, pod_cidr=pod_cidr)
        agent = NodeAgent(
            cfg, dp, lambda: kube_source.remote_nodes(cluster, cfg.node_name),
            lambda: kube_source.pod_endpoints(cluster, pod_cidr),
            inventory=lambda eps: kube_source.policy_inventory(
                cluster, eps, links.route_sources(e.ip for e in eps)),
            kube_policies=kube_source.KubePolicies(cluster) if cfg.network_policy else tuple)

        if agent.health is not None:
            agent.health.registry.register(WatchCollector(cluster.stats))

        def follow() -> None:
            while not agent.stop_event.is_set():
                if cluster.wait_changed(1.0):
                    agent.reconciler.trigger()

        threading.Thread(target=follow, name="cluster-follow", daemon=True).start()
        return agent.run()
    finally:
        cluster.stop()


def main() -> None:
    try:
        sys.exit(run(sys.argv[1:]))
    except RinglaneError as exc:
        logs.configure("auto")
        log.error("agent.failed", error=str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
