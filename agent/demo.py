"""`ringlane demo`: a multi-node cluster in network namespaces, accelerated, measured, removed.

Builds the sandbox (agent.sandbox), starts one real agent per node, sends ping, UDP and TCP
between pods on different nodes, shows the link health the ring cores measure and a policy
applied through the gRPC API taking effect and going away, then stops the agents (SIGTERM
with detachOnStop: the kernel VXLAN fallback stays, our XDP programs go) and sends the same
traffic over the kernel path, and prints both side by side with the ring core's counters.
Everything is removed on exit, Ctrl-C and error.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from agent import traffic
from agent.api import convert
from agent.api.client import Client
from agent.errors import RinglaneError
from agent.policy.model import CidrPeer, Direction, LabelSelector, Policy, Rule
from agent.sandbox import Sandbox


@dataclass
class PathFigures:
    ping_ms: float = 0.0
    ping_loss: str = ""
    udp64_kpps: float = 0.0
    tcp_gbps: float = 0.0
    transfer_ok: str = ""


def _measure(sb: Sandbox, seconds: float) -> PathFigures:
    src, dst = sb.nodes[0].pods[0], sb.nodes[1].pods[0]
    f = PathFigures()
    losses = []
    for na in sb.nodes:
        for nb in sb.nodes:
            if na is nb:
                continue  # cross-node pairs only: those are what the overlay carries
            for a in na.pods:
                for b in nb.pods:
                    r = traffic.ping(a, b, count=5, interval=0.01)
                    losses.append(r.sent - r.received)
    f.ping_loss = f"{sum(losses)} lost of {5 * len(losses)}"
    f.ping_ms = traffic.ping(src, dst, count=50, interval=0.01).rtt_avg_ms
    f.udp64_kpps = traffic.iperf(src, dst, seconds=seconds, udp_len=64).packets_per_second / 1e3
    f.tcp_gbps = traffic.iperf(src, dst, seconds=seconds).bits_per_second / 1e9
    t = traffic.tcp_transfer(src, dst, size=8 << 20)
    f.transfer_ok = "sha256 match" if t.exact else "MISMATCH"
    return f


def _counters(sb: Sandbox) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for node in sb.nodes:
        st = node.stats()
        w = st["core"]["worker"]
        rows.append((node.name, {**w["values"], "drops": w["drops"],
                                 "redirected_by_xdp": st["xdp"].get("pod_redirect", 0)}))
    return rows


def _links_and_policy(sb: Sandbox) -> None:
    """What the API shows of the overlay, and a policy that isolates one pod from another
    node's pods, applied and deleted while pinging through it."""
    n1, n2 = sb.nodes[0], sb.nodes[1]
    src, dst = n1.pods[0], n2.pods[0]
    with Client.unix(n1.run_dir / "api.sock") as api:
        for link in api.links():
            print(f"  link {n1.name} -> {link.peer_node}: RTT avg {link.rtt_avg_us:.0f} us "
                  f"(min {link.rtt_min_us:.0f}), jitter {link.jitter_us:.0f} us, loss "
                  f"{100 * link.loss_ratio:.0f}% over {link.received} probe replies "
                  "through the overlay, during the traffic above")
        policy = Policy("demo-isolate", "default",
                        subject=LabelSelector.of({"pod": src.name}),
                        directions=frozenset({Direction.EGRESS}),
                        egress=(Rule(peers=(CidrPeer(IPv4Network("0.0.0.0/0"),
                                                     frozenset({n2.pod_cidr})),)),))
        api.apply([convert.policy_to_proto(policy)])
        blocked = traffic.ping(src, dst, count=5, interval=0.02, timeout=0.3)
        api.delete([("default", policy.name)])
        back = traffic.ping(src, dst, count=5, interval=0.02)
    print(f"  policy {policy.name} ({src.name} may not send to {n2.pod_cidr}): ping "
          f"{src.name} -> {dst.name} {blocked.received}/{blocked.sent} while applied, "
          f"{back.received}/{back.sent} after delete")


def run(*, nodes: int = 2, pods: int = 2, seconds: float = 3.0) -> int:
    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    print(f"ringlane demo: {nodes} nodes x {pods} pods in network namespaces")
    # --detach-on-stop: after SIGTERM the kernel column runs without our XDP programs at all
    with Sandbox(nodes=nodes, pods=pods, agent_args=["--detach-on-stop", "true"]) as sb:
        sb.start_agents()
        print(f"  agents ready on {', '.join(n.name for n in sb.nodes)}; measuring the ring core")
        ring = _measure(sb, seconds)
        counters = _counters(sb)
        _links_and_policy(sb)
        for node in sb.nodes:
            sb.stop_agent(node)
        print("  agents stopped (SIGTERM keeps the kernel VXLAN fallback, programs detached); "
              "measuring the kernel")
        kernel = _measure(sb, seconds)
        _print_table(ring, kernel, counters)
    print("  sandbox removed")
    return 0 if ring.transfer_ok == kernel.transfer_ok == "sha256 match" else 1


def _print_table(ring: PathFigures, kernel: PathFigures,
                 counters: list[tuple[str, dict[str, Any]]]) -> None:
    rows = [
        ("cross-node ping, all pod pairs", ring.ping_loss, kernel.ping_loss),
        ("ping RTT avg (ms)", f"{ring.ping_ms:.3f}", f"{kernel.ping_ms:.3f}"),
        ("UDP 64 B, iperf3 (kpps received)", f"{ring.udp64_kpps:.0f}", f"{kernel.udp64_kpps:.0f}"),
        ("TCP single stream, iperf3 (Gbit/s)", f"{ring.tcp_gbps:.2f}", f"{kernel.tcp_gbps:.2f}"),
        ("8 MiB TCP transfer", ring.transfer_ok, kernel.transfer_ok),
    ]
    w = max(len(r[0]) for r in rows)
    print()
    print(f"  {'':{w}}  {'ringlane':>16}  {'kernel VXLAN':>16}")
    for name, a, b in rows:
        print(f"  {name:{w}}  {a:>16}  {b:>16}")
    print()
    print("  ring core counters while accelerated:")
    for node, c in counters:
        drops = ", ".join(f"{k}={v}" for k, v in c["drops"].items()) or "none"
        print(f"    {node}: rx {c['rx_packets']} tx {c['tx_packets']} encap {c['encap']} "
              f"decap {c['decap']} tso {c['tso_packets']}->{c['tso_segments']} "
              f"xdp-redirected {c['redirected_by_xdp']} drops: {drops}")
    print()


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="ringlane demo", description=__doc__)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--pods", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0, help="per iperf3 run")
    args = p.parse_args(argv)
    try:
        return run(nodes=args.nodes, pods=args.pods, seconds=args.seconds)
    except KeyboardInterrupt:
        print("interrupted; sandbox removed", file=sys.stderr)
        return 130
    except RinglaneError as exc:
        print(f"ringlane demo: {exc}", file=sys.stderr)
        return 1
