"""/metrics, /healthz and /readyz for Prometheus and the kubelet's probes, on one HTTP port.

Counters are read from the ring core and the XDP maps at scrape time (a custom collector), so
nothing on the data path ever waits for the exporter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.api.backend import LinkHealth
from agent.datapath.node import NodeDatapath


class DatapathCollector(Collector):
    """ringlane_* families from one snapshot of the ring core and the XDP counters."""

    def __init__(self, dp: NodeDatapath) -> None:
        self.dp = dp

    def collect(self) -> Iterable[Any]:
        xdp = CounterMetricFamily("ringlane_xdp_packets", "XDP program outcomes, by reason",
                                  labels=["outcome"])
        for name, value in self.dp.xdp_stats().items():
            xdp.add_metric([name], value)
        yield xdp
        st = self.dp.stats()
        if st is None:
            return
        worker = CounterMetricFamily("ringlane_ringcore", "ring core worker counters",
                                     labels=["counter"])
        for name, value in st.worker.values.items():
            worker.add_metric([name], value)
        yield worker
        drops = CounterMetricFamily("ringlane_ringcore_drops", "ring core drops by reason",
                                    labels=["reason"])
        for name, value in st.worker.drops.items():
            drops.add_metric([name], value)
        yield drops
        kstats = CounterMetricFamily("ringlane_xsk_kernel", "XDP_STATISTICS per socket",
                                     labels=["socket", "stat"])
        for name, value in st.underlay.kernel.items():
            kstats.add_metric(["underlay", name], value)
        for slot, ep in st.endpoints.items():
            for name, value in ep.kernel.items():
                kstats.add_metric([f"endpoint-{slot}", name], value)
        yield kstats
        rings = GaugeMetricFamily("ringlane_xsk_ring_entries",
                                  "entries in an AF_XDP ring at scrape time",
                                  labels=["socket", "ring"])
        for ring, value in st.underlay.rings.items():
            rings.add_metric(["underlay", ring], value)
        for slot, ep in st.endpoints.items():
            for ring, value in ep.rings.items():
                rings.add_metric([f"endpoint-{slot}", ring], value)
        yield rings
        probes = CounterMetricFamily("ringlane_probe", "link probe counters, all peers",
                                     labels=["counter"])
        for name, value in st.probe.items():
            if name not in ("probe_peers", "probe_interval_ms"):  # settings, not counts
                probes.add_metric([name], value)
        yield probes
        frames = GaugeMetricFamily("ringlane_umem_frames", "UMEM frames by holder",
                                   labels=["holder"])
        for holder in ("free", "worker", "sockets"):
            frames.add_metric([holder], getattr(st, f"frames_{holder}"))
        yield frames
        yield GaugeMetricFamily("ringlane_endpoints", "endpoints served", value=st.n_endpoints)


class WatchCollector(Collector):
    """ringlane_watch_* from the Kubernetes watches' counters (restarts, relists, errors)."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Any]:
        fams = {name: CounterMetricFamily(f"ringlane_watch_{name}", help_, labels=["kind"])
                for name, help_ in (("restarts", "watch requests resumed after a break"),
                                    ("relists", "lists after the first (410 Gone, errors)"),
                                    ("errors", "failed list/watch attempts"),
                                    ("events", "watch events received"))}
        for kind, st in self.stats().items():
            for name, fam in fams.items():
                fam.add_metric([kind], getattr(st, name))
        yield from fams.values()


class TelemetryCollector(Collector):
    """ringlane_endpoint_* per local pod and ringlane_link_* per overlay peer."""

    def __init__(self, endpoint_stats: Callable[[], Mapping[IPv4Address, Mapping[str, int]]],
                 link_health: Callable[[], list[LinkHealth]]) -> None:
        self.endpoint_stats = endpoint_stats
        self.link_health = link_health

    def collect(self) -> Iterable[Any]:
        ep = CounterMetricFamily("ringlane_endpoint", "per-pod counters of the XDP programs",
                                 labels=["ip", "counter"])
        for ip, counters in self.endpoint_stats().items():
            for name, value in counters.items():
                ep.add_metric([str(ip), name], value)
        yield ep
        links = self.link_health()
        fams = {
            "rtt": GaugeMetricFamily("ringlane_link_rtt_seconds",
                                     "overlay round trip to a node (smoothed)", labels=["peer"]),
            "jitter": GaugeMetricFamily("ringlane_link_jitter_seconds",
                                        "RFC 3550 interarrival jitter of the probes",
                                        labels=["peer"]),
            "loss": GaugeMetricFamily("ringlane_link_loss_ratio",
                                      "probes unanswered over the recent window", labels=["peer"]),
        }
        sent = CounterMetricFamily("ringlane_link_probes_sent", "probes sent", labels=["peer"])
        received = CounterMetricFamily("ringlane_link_probes_answered", "probe replies received",
                                       labels=["peer"])
        for link in links:
            peer = link.peer_node or str(link.peer_ip)
            fams["rtt"].add_metric([peer], link.rtt_avg_us / 1e6)
            fams["jitter"].add_metric([peer], link.jitter_us / 1e6)
            fams["loss"].add_metric([peer], link.loss_ratio)
            sent.add_metric([peer], link.sent)
            received.add_metric([peer], link.received)
        yield from (*fams.values(), sent, received)


class HealthServer:
    """Serves the three paths on `port` (all interfaces: the kubelet probes the pod IP, which
    is the node's with hostNetwork)."""

    def __init__(self, port: int, dp: NodeDatapath, *, ready: Callable[[], bool],
                 alive: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DatapathCollector(dp))
        self.reconcile_seconds = Histogram(
            "ringlane_reconcile_seconds", "duration of a reconcile pass", registry=self.registry)
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(outer.registry), "text/plain; version=0.0.4")
                elif self.path == "/healthz":
                    ok = alive()
                    self._reply(200 if ok else 500, b"ok\n" if ok else b"unhealthy\n")
                elif self.path == "/readyz":
                    ok = ready()
                    self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # probes every few seconds would drown the agent's own log

        self._server = ThreadingHTTPServer(("0.0.0.0", port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
