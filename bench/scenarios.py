"""The measurements, on one two-node sandbox, every peer measured in the same run.

Pods: n1p1 (10.244.1.2) sends, n2p1 (10.244.2.2) on the other node receives; n1p2 (10.244.1.3)
is the same-node peer. The agents are switched between three states, and each measurement takes
its peer from the state it runs in:

    default   agents running, default configuration (tcpMode auto)     -> "ringlane ..."
    tcp-ring  agents running with --tcp-mode ring                       -> "ringlane tcpMode ring"
    off       agents stopped with SIGTERM: the kernel VXLAN fallback    -> "kernel VXLAN", XDP_DROP

Generator runs (sections 1 and 2) are read in a window that leaves out the first `warmup` and the
last `tail` seconds: counters, /proc/stat and per-process CPU time are snapshotted at both ends,
so every rate in a run covers the same interval.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import traffic
from agent.control import request
from agent.errors import RinglaneError
from agent.sandbox import Node, Pod, Sandbox
from bench.build import Native
from bench.host import (
    CpuSnapshot,
    TaskTimes,
    code_fingerprint,
    cpu_split,
    others_cpu,
    process_runtime_seconds,
    process_ticks_seconds,
)
from bench.probes import (
    Sink,
    gro_enabled,
    iperf_tcp,
    link_counters,
    link_mac,
    parse_xdpgen,
    set_gro,
    sockperf_pingpong,
    start_trafgen,
    start_xdpgen,
    trafgen_config,
)
from bench.report import Ratio, Results, Section

ROOT = Path(__file__).resolve().parent.parent

AGENTS_UNSET = "not started"
AGENTS_OFF = "off"
AGENTS_DEFAULT = "default"
AGENTS_TCP_RING = "tcp-ring"
# --detach-on-stop: SIGTERM detaches the programs (the agent's default keeps them attached, to
# go on rejecting what they reject), so that the kernel peers run on the bare fallback. It
# changes nothing while the agent runs.
AGENT_ARGS = {AGENTS_DEFAULT: ["--detach-on-stop", "true"],
              AGENTS_TCP_RING: ["--tcp-mode", "ring", "--detach-on-stop", "true"]}

RING = "ringlane"
KERNEL = "kernel VXLAN"
RING_AUTO = "ringlane tcpMode auto"
RING_RING = "ringlane tcpMode ring"
CORE = "ring core"
DROP_NATIVE = "XDP_DROP native"
DROP_GENERIC = "XDP_DROP generic"
RUNNING = "agents running"
STOPPED = "agents stopped"
TICKS = "utime+stime"
SCHED = "schedstat"

# CPU used by processes outside the sandbox during a step, in percent of one core, above which
# the step's figures are marked as measured on a busy machine
NOISY_PCT = 5.0

CLIENT_CPU = 0  # iperf3 client, every generator's first CPU, sockperf client and server
SERVER_CPU = 1  # iperf3 server
RX_DROP_TOT_LEN = 100  # IPv4 total length of the frames the ring core must reject (real: 46)


@dataclass(frozen=True)
class Plan:
    """Durations and repetitions of a run."""

    reps: int
    gen_seconds: float  # one generator run (sections 1 and 2)
    warmup: float  # left out at the start of a generator run
    tail: float  # left out at its end
    tcp_seconds: int  # iperf3 -t
    tcp_omit: int  # iperf3 -O
    lat_seconds: int  # sockperf -t
    idle_seconds: float  # section 6


FULL = Plan(reps=3, gen_seconds=5.0, warmup=1.0, tail=0.5, tcp_seconds=4, tcp_omit=1,
            lat_seconds=3, idle_seconds=10.0)
QUICK = Plan(reps=1, gen_seconds=2.6, warmup=0.8, tail=0.3, tcp_seconds=2, tcp_omit=1,
             lat_seconds=2, idle_seconds=5.0)


def sections() -> list[Section]:
    """The six sections of the report, empty, in order: titles, units, peers, ratios."""
    return [
        Section("forward", "1. Overlay forwarding: 64 B UDP, trafgen in n1p1 -> n2p1, counted by "
                "XDP_DROP (native) on n2p1 eth0", "kpps", [RING, KERNEL],
                [Ratio("ring/kernel", RING, KERNEL)]),
        Section("rx", "2. Ring core rx path: live frames from n1p1 into its host veth, rate the "
                "ring core received vs XDP_DROP on the same veth", "Mpps",
                [CORE, DROP_NATIVE, DROP_GENERIC],
                [Ratio("core/native", CORE, DROP_NATIVE),
                 Ratio("core/generic", CORE, DROP_GENERIC)], decimals=2),
        Section("tcp", "3. Pod-to-pod TCP, one iperf3 stream n1p1 -> n2p1 (client CPU0, server "
                "CPU1)", "Gbit/s", [RING_AUTO, RING_RING, KERNEL],
                [Ratio("auto/kernel", RING_AUTO, KERNEL), Ratio("ring/kernel", RING_RING, KERNEL)],
                decimals=2),
        Section("latency", "4. Latency: sockperf ping-pong n1p1 -> n2p1, 64 B, client and server "
                "on CPU0, half round trip", "us", [RING, KERNEL],
                [Ratio("ring/kernel", RING, KERNEL)], decimals=1),
        Section("local", "5. Same-node pods, one iperf3 stream n1p1 -> n1p2 (XDP_PASS through our "
                "programs)", "Gbit/s", [RUNNING, STOPPED],
                [Ratio("running/stopped", RUNNING, STOPPED)], decimals=2),
        Section("idle", "6. Agent CPU with no traffic, whole process (ring core worker, control "
                "threads)", "% of one core", [TICKS, SCHED], [], decimals=3),
    ]


@dataclass
class Snap:
    """Everything read at one end of a measurement window."""

    t: float
    cpu: CpuSnapshot
    runtime: dict[str, float]  # seconds on CPU: "agent n1", "agent n2", "generator"
    links: dict[str, dict[str, int]]
    stats: dict[str, dict[str, Any]]  # node name -> the agent's stats reply
    tasks: TaskTimes  # every process on the machine, to see who else used the CPUs
    ours: set[int]


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _netns_pids(netns: str) -> list[int]:
    """The processes in a network namespace."""
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _get(d: dict[str, Any], path: str) -> int:
    """A counter from a nested stats reply, by dotted path; 0 if absent."""
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return 0
        cur = cur[part]
    return int(cur)


class Bench:
    """One sandbox, the measurements on it, and the agents' state."""

    def __init__(self, sb: Sandbox, native: Native, plan: Plan, workdir: Path,
                 results: Results, say: Callable[[str], None]) -> None:
        self.sb, self.native, self.plan, self.results, self.say = sb, native, plan, results, say
        self.n1, self.n2 = sb.nodes[0], sb.nodes[1]
        self.src, self.dst, self.local_dst = self.n1.pods[0], self.n2.pods[0], self.n1.pods[1]
        self.state = AGENTS_UNSET
        self.code = code_fingerprint(ROOT)
        self.code_seen: set[str] = set()
        self.src_mac = link_mac(self.src.netns, "eth0")
        self.gw_mac = link_mac(self.n1.netns, self.src.host_ifname)
        self.trafgen_cfg = workdir / "udp64.trafgen"
        self.trafgen_cfg.write_text(trafgen_config(src_mac=self.src_mac, dst_mac=self.gw_mac,
                                                   src_ip=self.src.ip, dst_ip=self.dst.ip))
        self.src_slot = ""
        # (label, namespace, interface) read at both ends of every generator window
        self.links = [
            ("n1p1 eth0", self.src.netns, "eth0"),
            ("n1 ul0", self.n1.netns, "ul0"),
            ("n1 rl-vxlan", self.n1.netns, "rl-vxlan"),
            ("n2 ul0", self.n2.netns, "ul0"),
            ("n2 rl-vxlan", self.n2.netns, "rl-vxlan"),
            ("n2 host veth", self.n2.netns, self.dst.host_ifname),
        ]

    # -- agents ---------------------------------------------------------------------------

    def agents(self, state: str) -> None:
        """Stop the agents (SIGTERM: the kernel fallback stays), then start them in `state`.
        The kernel peers need the fallback an agent creates, so "off" is only ever reached by
        stopping agents that ran."""
        if state == self.state:
            return
        if self.state == AGENTS_UNSET and state == AGENTS_OFF:
            self.agents(AGENTS_DEFAULT)
        for node in self.sb.nodes:
            t0 = time.monotonic()
            rc = self.sb.stop_agent(node)
            if rc != 0:
                self.results.warnings.append(
                    f"agent {node.name} ended with {rc} on SIGTERM after "
                    f"{time.monotonic() - t0:.1f} s (negative: killed by that signal)")
        self.state = AGENTS_OFF
        self._detach_leftovers()
        if state != AGENTS_OFF:
            self.sb.agent_args = list(AGENT_ARGS[state])
            self.sb.start_agents()
            self._check_code()
            eps = request(self.n1.socket, "status")["endpoints"]
            self.src_slot = str(eps[str(self.src.ip)])
        self.state = state
        for a, b in ((self.src, self.dst), (self.dst, self.src), (self.src, self.local_dst)):
            self._reachable(a, b)

    def _reachable(self, a: Pod, b: Pod, timeout: float = 5.0) -> None:
        """Ping until a reaches b (neighbours resolved, paths up). Taking long is reported;
        never getting there stops the run, with the XDP programs' counters that say why."""
        t0 = time.monotonic()
        while traffic.ping(a, b, count=1, timeout=0.5).received == 0:
            if time.monotonic() - t0 > timeout:
                counters = {n.name: {k: v for k, v in n.stats()["xdp"].items() if v}
                            for n in self.sb.nodes if n.agent is not None}
                raise RinglaneError(f"{a.name} cannot reach {b.name} (agents {self.state}) "
                                    f"after {timeout:.0f} s; XDP counters: {counters}")
        took = time.monotonic() - t0
        if took > 0.5:
            self.results.warnings.append(f"{a.name} reached {b.name} only after {took:.1f} s "
                                         f"(agents {self.state})")

    def _check_code(self) -> None:
        """Every agent start loads the code afresh: say so if it changed since the run began."""
        now = code_fingerprint(ROOT)
        if now != self.code and now not in self.code_seen:
            self.code_seen.add(now)
            self.results.warnings.append(
                f"the agent's code (agent/, bpf/) changed during the run ({self.code} -> {now}, "
                f"noticed at an agent start {time.strftime('%H:%M:%S')}): later figures ran on it")

    def _detach_leftovers(self) -> None:
        """With the agents stopped, no XDP program may stay on the nodes' interfaces, or the
        kernel peers would be measured through it. A stopped agent detaches its own; one that
        had to be killed cannot, so detach what is left (and say so)."""
        left = []
        for node in self.sb.nodes:
            p = subprocess.run(["ip", "-n", node.netns, "-j", "link", "show"],
                               capture_output=True, text=True)
            for link in json.loads(p.stdout or "[]"):
                xdp = link.get("xdp")
                if not xdp:
                    continue
                mode = {1: "xdpdrv", 2: "xdpgeneric", 3: "xdpoffload"}.get(int(xdp["mode"]),
                                                                            "xdp")
                subprocess.run(["ip", "-n", node.netns, "link", "set", "dev", link["ifname"],
                                mode, "off"], capture_output=True)
                left.append(f"{xdp.get('prog', {}).get('name', '?')} on "
                            f"{node.name}/{link['ifname']}")
        if left:
            self.results.warnings.append(
                f"XDP programs still attached after the agents stopped, detached by the bench: "
                f"{', '.join(left)}")

    @property
    def ring(self) -> bool:
        return self.state in AGENT_ARGS

    def _ours(self) -> set[int]:
        """This process and everything in the sandbox's namespaces (agents, tools)."""
        pids = {os.getpid()}
        for ns in self.sb.namespaces:
            pids.update(_netns_pids(ns))
        return pids

    @contextlib.contextmanager
    def watch(self, step: str) -> Iterator[None]:
        """Record how much CPU processes outside the sandbox used during `step`: the machine
        is shared with whatever else runs on it, and the figures are only as good as that."""
        t0, tasks0, ours0 = time.monotonic(), TaskTimes.take(), self._ours()
        self.results.begin_step()
        yield
        t1, tasks1, ours1 = time.monotonic(), TaskTimes.take(), self._ours()
        used = others_cpu(tasks0, tasks1, ours0 | ours1)
        dt = t1 - t0
        self.results.end_step(noisy=100.0 * used["others_s"] / dt > NOISY_PCT)
        self.results.load.append({
            "step": step, "seconds": round(dt, 2),
            "others_pct_of_core": 100.0 * used["others_s"] / dt,
            "kthreads_pct_of_core": 100.0 * used["kthreads_s"] / dt,
            "top_others": [(name, round(100.0 * secs / dt, 1))
                           for name, secs in used["top_others"]],
        })

    # -- windows and accounting -----------------------------------------------------------

    def _snap(self, gen_netns: str) -> Snap:
        """Read everything a window needs, now; `gen_netns` holds the generator."""
        t = time.monotonic()
        cpu = CpuSnapshot.take()
        runtime = {f"agent {n.name}": process_runtime_seconds(n.agent.pid)
                   for n in self.sb.nodes if n.agent is not None}
        runtime["generator"] = sum(process_runtime_seconds(p) for p in _netns_pids(gen_netns))
        links = {}
        for label, ns, ifname in self.links:
            with contextlib.suppress(RinglaneError):
                links[label] = link_counters(ns, ifname)
        stats = {n.name: n.stats() for n in self.sb.nodes if n.agent is not None}
        return Snap(t, cpu, runtime, links, stats, TaskTimes.take(), self._ours())

    def _window(self, start: float, gen_netns: str) -> tuple[Snap, Snap]:
        """Snapshots at both ends of the window of a generator started at `start`."""
        _sleep_until(start + self.plan.warmup)
        a = self._snap(gen_netns)
        _sleep_until(start + self.plan.gen_seconds - self.plan.tail)
        return a, self._snap(gen_netns)

    def _accounting(self, a: Snap, b: Snap, delivered_pps: float | None) -> dict[str, Any]:
        """Where the packets went between a and b (packets per second, in path order), the
        ring cores' drops and socket statistics, and who used the CPUs."""
        dt = b.t - a.t

        def link(label: str, field: str) -> float:
            if label not in a.links or label not in b.links:
                return 0.0
            return (b.links[label][field] - a.links[label][field]) / dt

        def stat(node: Node, path: str) -> float:
            if node.name not in a.stats or node.name not in b.stats:
                return 0.0
            return (_get(b.stats[node.name], path) - _get(a.stats[node.name], path)) / dt

        path: dict[str, float] = {"n1p1 eth0 tx": link("n1p1 eth0", "tx_packets")}
        losses: dict[str, float] = {"n1p1 eth0 tx_dropped": link("n1p1 eth0", "tx_dropped")}
        drops: dict[str, dict[str, float]] = {}
        if self.ring:
            ep = f"core.endpoints.{self.src_slot}.kernel"
            ul = "core.underlay.kernel"
            path |= {
                "n1 from_pod -> xsk": stat(self.n1, "xdp.pod_redirect"),
                "n1 ring rx": stat(self.n1, "core.worker.values.rx_packets"),
                "n1 ring tx": stat(self.n1, "core.worker.values.tx_packets"),
                "n1 ul0 tx": link("n1 ul0", "tx_packets"),
                "n2 from_wire -> xsk": stat(self.n2, "xdp.wire_redirect"),
                "n2 ring rx": stat(self.n2, "core.worker.values.rx_packets"),
                "n2 ring tx": stat(self.n2, "core.worker.values.tx_packets"),
                "n2 host veth tx": link("n2 host veth", "tx_packets"),
            }
            pod_pass = [k for k in b.stats.get(self.n1.name, {}).get("xdp", {})
                        if k.startswith("pod_pass") or k == "pod_fallback"]
            losses |= {
                "n1 from_pod -> kernel": sum(stat(self.n1, f"xdp.{k}") for k in pod_pass),
                "n1 pod xsk rx_dropped": stat(self.n1, f"{ep}.rx_dropped"),
                "n1 pod xsk rx_ring_full": stat(self.n1, f"{ep}.rx_ring_full"),
                "n1 pod xsk fill_ring_empty": stat(self.n1, f"{ep}.rx_fill_ring_empty_descs"),
                "n1 underlay xsk tx_invalid": stat(self.n1, f"{ul}.tx_invalid_descs"),
                "n1 ul0 tx_dropped": link("n1 ul0", "tx_dropped"),
                "n2 ul0 rx_dropped": link("n2 ul0", "rx_dropped"),
                "n2 underlay xsk rx_dropped": stat(self.n2, f"{ul}.rx_dropped"),
                "n2 underlay xsk rx_ring_full": stat(self.n2, f"{ul}.rx_ring_full"),
                "n2 underlay xsk fill_ring_empty": stat(self.n2, f"{ul}.rx_fill_ring_empty_descs"),
                "n2 host veth tx_dropped": link("n2 host veth", "tx_dropped"),
            }
            for node in self.sb.nodes:
                reasons = set(b.stats.get(node.name, {}).get("core", {}).get("worker", {})
                              .get("drops", {}))
                drops[node.name] = {r: stat(node, f"core.worker.drops.{r}") for r in reasons}
        else:
            path |= {
                "n1 rl-vxlan tx": link("n1 rl-vxlan", "tx_packets"),
                "n1 ul0 tx": link("n1 ul0", "tx_packets"),
                "n2 rl-vxlan rx": link("n2 rl-vxlan", "rx_packets"),
                "n2 host veth tx": link("n2 host veth", "tx_packets"),
            }
            losses |= {
                "n1 rl-vxlan tx_dropped": link("n1 rl-vxlan", "tx_dropped"),
                "n1 ul0 tx_dropped": link("n1 ul0", "tx_dropped"),
                "n2 ul0 rx_dropped": link("n2 ul0", "rx_dropped"),
                "n2 rl-vxlan rx_dropped": link("n2 rl-vxlan", "rx_dropped"),
                "n2 host veth tx_dropped": link("n2 host veth", "tx_dropped"),
            }
        if delivered_pps is not None:
            path["delivered"] = delivered_pps
        cpu_pct = {k: 100.0 * (b.runtime.get(k, 0.0) - a.runtime[k]) / dt for k in a.runtime}
        used = others_cpu(a.tasks, b.tasks, a.ours | b.ours)
        cpu_pct["kernel threads"] = 100.0 * used["kthreads_s"] / dt
        cpu_pct["other processes"] = 100.0 * used["others_s"] / dt
        return {"window_s": dt, "path_pps": path, "losses_pps": losses, "ring_drops_pps": drops,
                "cpu_split_pct": cpu_split(a.cpu, b.cpu), "cpu_pct_of_core": cpu_pct}

    # -- 1. overlay forwarding ------------------------------------------------------------

    def forwarding(self, procs: int, cpus: str) -> None:
        """trafgen in n1p1 on `procs` CPUs, 64 B UDP to n2p1, counted at n2p1's eth0."""
        peer = RING if self.ring else KERNEL
        with Sink(self.native, self.dst.netns, "eth0") as sink:
            start = time.monotonic()
            job = start_trafgen(self.src, self.trafgen_cfg, procs=procs, cpus=cpus,
                                seconds=self.plan.gen_seconds)
            a, b = self._window(start, self.src.netns)
            rc, out, err = job.finish(self.plan.gen_seconds + 10)
        if rc not in (0, 124):  # 124: stopped by timeout, the normal end
            raise RinglaneError(f"trafgen in {self.src.name} exited {rc}: {(err or out)[-300:]}")
        delivered = sink.rate(a.t, b.t)
        detail = self._accounting(a, b, delivered)
        label = f"trafgen on {procs} CPU{'s' if procs > 1 else ''} ({cpus})"
        self.results.add("forward", f"p{procs}", label, peer, delivered / 1e3, detail)
        self.say(f"forwarding {label}, {peer}: {delivered / 1e3:.0f} kpps")

    # -- 2. rx path -----------------------------------------------------------------------

    def _xdpgen(self, *, ip_tot_len: int = 0) -> tuple[Snap, Snap, tuple[int, float]]:
        """Run xdpgen from n1p1 to n2p1 for a generator run: the window's snapshots and
        (frames generated, seconds)."""
        start = time.monotonic()
        job = start_xdpgen(self.native, self.src, src_mac=self.src_mac, dst_mac=self.gw_mac,
                           dst_ip=self.dst.ip, seconds=self.plan.gen_seconds, cpu=CLIENT_CPU,
                           ip_tot_len=ip_tot_len)
        a, b = self._window(start, self.src.netns)
        rc, out, err = job.finish(self.plan.gen_seconds + 10)
        if rc != 0:
            raise RinglaneError(f"xdpgen in {self.src.name} exited {rc}: {(err or out)[-300:]}")
        return a, b, parse_xdpgen(out)

    def rx_ring(self, *, forward: bool) -> None:
        """Live frames into n1p1's host veth with the agents running. forward=False: an IPv4
        total length beyond the frame, which from_pod redirects and the ring core rejects after
        parsing (BAD_IP_LEN), so only the rx path is exercised; forward=True: valid frames the
        ring core encapsulates and sends to n2p1 (counted and dropped there)."""
        if forward:
            with Sink(self.native, self.dst.netns, "eth0") as sink:
                a, b, (sent, secs) = self._xdpgen()
            delivered: float | None = sink.rate(a.t, b.t)
        else:
            a, b, (sent, secs) = self._xdpgen(ip_tot_len=RX_DROP_TOT_LEN)
            delivered = None
        detail = self._accounting(a, b, delivered)
        detail["generated_pps"] = sent / secs
        rx = detail["path_pps"]["n1 ring rx"]
        row, label = (("fwd", "rx + encap + tx to the underlay (valid frames)") if forward else
                      ("drop", "rx, then dropped by the ring core (bad IPv4 length)"))
        self.results.add("rx", row, label, CORE, rx / 1e6, detail)
        self.say(f"rx path, ring core {row}: rx {rx / 1e6:.2f} Mpps "
                 f"(tx {detail['path_pps']['n1 ring tx'] / 1e6:.2f})")

    def rx_xdp_drop(self, *, mode: str) -> None:
        """The same live frames, agents stopped, bench_sink on n1p1's host veth in `mode`
        (native or skb). Generic mode needs GRO on the veth for live frames to reach it (veth
        NAPI), as the agent sets it; it is restored afterwards."""
        host = self.src.host_ifname
        gro_before = gro_enabled(self.n1.netns, host)
        if mode == "skb":
            set_gro(self.n1.netns, host, True)
        try:
            with Sink(self.native, self.n1.netns, host, mode=mode) as sink:
                a, b, (sent, secs) = self._xdpgen()
        finally:
            if mode == "skb":
                set_gro(self.n1.netns, host, gro_before)
        rate = sink.rate(a.t, b.t)
        detail = {"window_s": b.t - a.t, "generated_pps": sent / secs,
                  "cpu_split_pct": cpu_split(a.cpu, b.cpu)}
        peer = DROP_NATIVE if mode == "native" else DROP_GENERIC
        for row, label in (("drop", "rx, then dropped by the ring core (bad IPv4 length)"),
                           ("fwd", "rx + encap + tx to the underlay (valid frames)")):
            self.results.add("rx", row, label, peer, rate / 1e6, detail if row == "drop" else None)
        self.say(f"rx path, {peer} on {host}: {rate / 1e6:.2f} Mpps")

    # -- 3 and 5. TCP ---------------------------------------------------------------------

    def _counters(self) -> dict[str, dict[str, Any]]:
        """Every running agent's stats reply, by node name."""
        return {n.name: n.stats() for n in self.sb.nodes if n.agent is not None}

    def tcp(self, *, same_node: bool) -> None:
        """One iperf3 stream from n1p1 to n2p1 (section 3) or to n1p2 (section 5), with the
        ring cores' TCP counters of the run."""
        dst = self.local_dst if same_node else self.dst
        before = self._counters()
        r = iperf_tcp(self.src, dst, seconds=self.plan.tcp_seconds, omit=self.plan.tcp_omit,
                      client_cpu=CLIENT_CPU, server_cpu=SERVER_CPU)
        after = self._counters()
        detail: dict[str, Any] = {"retransmits": r.retransmits}
        n1 = self.n1.name
        if n1 in before and n1 in after:
            for path in ("xdp.pod_redirect", "xdp.pod_pass_tcp_kernel", "xdp.pod_flow_to_kernel",
                         "xdp.pod_pass_not_remote", "core.worker.values.tso_packets",
                         "core.worker.values.tso_segments", "core.worker.values.tx_packets"):
                detail[f"n1 {path}"] = _get(after[n1], path) - _get(before[n1], path)
            detail["ring_drops"] = {
                n: {k: v - before[n]["core"]["worker"]["drops"].get(k, 0)
                    for k, v in after[n]["core"]["worker"]["drops"].items()}
                for n in after if n in before}
        if same_node:
            peer = RUNNING if self.ring else STOPPED
            self.results.add("local", "local", "n1p1 -> n1p2", peer, r.gbps, detail)
        else:
            peer = {AGENTS_DEFAULT: RING_AUTO, AGENTS_TCP_RING: RING_RING}.get(self.state, KERNEL)
            self.results.add("tcp", "cross", "n1p1 -> n2p1", peer, r.gbps, detail)
        self.say(f"TCP {'same node' if same_node else 'cross node'}, {peer}: {r.gbps:.2f} Gbit/s"
                 f" ({r.retransmits} retransmits)")

    # -- 4. latency -----------------------------------------------------------------------

    def latency(self, *, tcp: bool) -> None:
        """sockperf ping-pong n1p1 -> n2p1, UDP or TCP (section 4)."""
        peer = RING if self.ring else KERNEL
        r = sockperf_pingpong(self.src, self.dst, seconds=self.plan.lat_seconds, cpu=CLIENT_CPU,
                              tcp=tcp)
        proto = "TCP" if tcp else "UDP"
        detail = {"avg_us": r.avg_us, "observations": r.observations}
        self.results.add("latency", f"{proto}-p50", f"{proto} p50", peer, r.p50_us, detail)
        self.results.add("latency", f"{proto}-p99", f"{proto} p99", peer, r.p99_us)
        self.say(f"latency {proto}, {peer}: p50 {r.p50_us:.1f} us, p99 {r.p99_us:.1f} us")

    # -- 6. idle CPU ----------------------------------------------------------------------

    def idle_cpu(self) -> None:
        """Both agents' CPU over idle_seconds without traffic: utime+stime from /proc/<pid>/stat
        (threads and waited-for children included; clock-tick resolution) and schedstat (ns).
        The worker's sleep and loop counts come from stats requests made outside the window."""
        nodes = [n for n in self.sb.nodes if n.agent is not None]
        time.sleep(1.0)  # the last run's frames drain, the workers go back to sleep
        s0 = {n.name: (time.monotonic(), n.stats()["core"]) for n in nodes}
        time.sleep(0.2)
        t0 = time.monotonic()
        ticks0 = {n.name: process_ticks_seconds(self._pid(n), children=True) for n in nodes}
        rt0 = {n.name: process_runtime_seconds(self._pid(n)) for n in nodes}
        time.sleep(self.plan.idle_seconds)
        ticks1 = {n.name: process_ticks_seconds(self._pid(n), children=True) for n in nodes}
        rt1 = {n.name: process_runtime_seconds(self._pid(n)) for n in nodes}
        dt = time.monotonic() - t0
        time.sleep(0.2)
        for n in nodes:
            t_a, core_a = s0[n.name]
            core_b = n.stats()["core"]
            span = time.monotonic() - t_a
            detail = {"window_s": dt, "worker_sleeps_per_s": (core_b["sleeps"] - core_a["sleeps"])
                      / span, "worker_loops_per_s": (core_b["loops"] - core_a["loops"]) / span}
            label = f"agent {n.name}"
            self.results.add("idle", n.name, label, TICKS,
                             100.0 * (ticks1[n.name] - ticks0[n.name]) / dt, detail)
            self.results.add("idle", n.name, label, SCHED, 100.0 * (rt1[n.name] - rt0[n.name]) / dt)
            self.say(f"idle {label}: {100.0 * (rt1[n.name] - rt0[n.name]) / dt:.3f} % of a core")

    @staticmethod
    def _pid(node: Node) -> int:
        if node.agent is None:
            raise RinglaneError(f"agent {node.name} is not running")
        return node.agent.pid
