"""Traffic sources and sinks inside the sandbox's namespaces, and the counters read there.

Every process started here bounds its own lifetime (`timeout`, or the helper's own limit), and
Sandbox.close() kills whatever is left in its namespaces if the benchmark dies first. Traffic only
ever goes to the sandbox's own pods.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from bisect import bisect_left
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType

from agent.errors import RinglaneError
from agent.sandbox import Pod
from bench.build import Native

PROBE_PORT = 9  # bench_xdp.bpf.c's BENCH_PORT: what bench_sink counts
IPERF_PORT = 5201
SOCKPERF_PORT = 11111


def in_netns(netns: str, *args: str) -> list[str]:
    """The command line that runs `args` in network namespace `netns`."""
    return ["ip", "netns", "exec", netns, *args]


def link_counters(netns: str, ifname: str) -> dict[str, int]:
    """rx/tx packets and drops of one interface (the kernel's stats64)."""
    p = subprocess.run(["ip", "-n", netns, "-s", "-j", "link", "show", "dev", ifname],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RinglaneError(f"link counters of {ifname} in {netns}: {p.stderr.strip()}")
    s = json.loads(p.stdout)[0]["stats64"]
    return {"rx_packets": int(s["rx"]["packets"]), "rx_dropped": int(s["rx"]["dropped"]),
            "tx_packets": int(s["tx"]["packets"]), "tx_dropped": int(s["tx"]["dropped"])}


def link_mac(netns: str, ifname: str) -> str:
    """The MAC address of one interface, as "aa:bb:cc:dd:ee:ff"."""
    p = subprocess.run(["ip", "-n", netns, "-j", "link", "show", "dev", ifname],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RinglaneError(f"MAC of {ifname} in {netns}: {p.stderr.strip()}")
    return str(json.loads(p.stdout)[0]["address"])


def set_gro(netns: str, ifname: str, on: bool) -> None:
    """Turn GRO on or off on one interface (ethtool -K)."""
    p = subprocess.run(in_netns(netns, "ethtool", "-K", ifname, "gro", "on" if on else "off"),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RinglaneError(f"ethtool -K {ifname} gro in {netns}: {p.stderr.strip()}")


def gro_enabled(netns: str, ifname: str) -> bool:
    """Whether GRO is on for one interface."""
    p = subprocess.run(in_netns(netns, "ethtool", "-k", ifname), capture_output=True, text=True)
    return "generic-receive-offload: on" in p.stdout


class Sink:
    """bench_sink on one interface for the duration of a `with` block: counts and drops the
    probe frames (IPv4/UDP to PROBE_PORT), passes everything else.

    Samples (monotonic time, total) every 100 ms; rate() reads the rate over any interval
    inside the block, on the clock of time.monotonic()."""

    def __init__(self, native: Native, netns: str, ifname: str, *, mode: str = "native",
                 max_seconds: int = 300) -> None:
        self.cmd = in_netns(netns, str(native.xdpsink), "-o", str(native.bpf_obj), "-i", ifname,
                            "-m", mode, "-I", "100", "-d", str(max_seconds))
        self.where = f"{ifname} in {netns} ({mode})"
        self.samples: list[tuple[float, int]] = []
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Sink:
        self._proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if not first.startswith("attached"):
            _, err = self._proc.communicate(timeout=5)
            raise RinglaneError(f"bench_sink on {self.where}: {err.strip() or first.strip()}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            out, err = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, err = self._proc.communicate()
        self._proc = None
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit():
                self.samples.append((int(parts[0]) / 1e9, int(parts[1])))
        if exc_type is None and "detached" not in out:
            raise RinglaneError(f"bench_sink on {self.where} did not detach cleanly: {err}")

    def count_at(self, t: float) -> float:
        """The count at time t, interpolated between the two samples around it."""
        s = self.samples
        if not s:
            raise RinglaneError(f"bench_sink on {self.where}: no samples")
        i = bisect_left(s, (t, -1))
        if i == 0:
            return float(s[0][1])
        if i == len(s):
            return float(s[-1][1])
        (t0, n0), (t1, n1) = s[i - 1], s[i]
        return n0 + (n1 - n0) * (t - t0) / (t1 - t0) if t1 > t0 else float(n1)

    def rate(self, t0: float, t1: float) -> float:
        """Frames per second dropped between t0 and t1."""
        return (self.count_at(t1) - self.count_at(t0)) / (t1 - t0)


def _hex_bytes(mac: str) -> str:
    return ", ".join("0x" + b for b in mac.split(":"))


def trafgen_config(*, src_mac: str, dst_mac: str, src_ip: IPv4Address,
                   dst_ip: IPv4Address) -> str:
    """The 60-byte (64 on the wire) IPv4/UDP probe frame as a trafgen configuration, the same
    frame as kernel_fwd.sh's: DF, TTL 64, UDP 9 -> 9 without checksum, zero payload."""
    src = ", ".join(str(b) for b in src_ip.packed)
    dst = ", ".join(str(b) for b in dst_ip.packed)
    return (
        "{\n"
        f"  {_hex_bytes(dst_mac)},\n"
        f"  {_hex_bytes(src_mac)},\n"
        "  0x08, 0x00,\n"
        "  0x45, 0x00, const16(46), const16(0), const16(0x4000), 64, 17, csumip(14, 33),\n"
        f"  {src},   {dst},\n"
        f"  const16({PROBE_PORT}), const16({PROBE_PORT}), const16(26), const16(0),\n"
        "  fill(0x00, 18)\n"
        "}\n"
    )


class Job:
    """A command started in a namespace; finish() collects its output."""

    def __init__(self, netns: str, *args: str) -> None:
        self.cmd = in_netns(netns, *args)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """Wait for the command (killed after `timeout` s): (exit status, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


def start_trafgen(pod: Pod, cfg: Path, *, procs: int, cpus: str, seconds: float) -> Job:
    """trafgen out of the pod's eth0 like kernel_fwd.sh (qdisc path, pinned with taskset), but
    without retuning the machine's socket memory (--no-sock-mem) or IRQ affinity (-Q)."""
    return Job(pod.netns, "timeout", "-s", "INT", "-k", "3", f"{seconds:.2f}", "taskset", "-c",
               cpus, "trafgen", "-o", "eth0", "-c", str(cfg), "-P", str(procs), "-q",
               "--no-sock-mem", "-Q", "-C")


def start_xdpgen(native: Native, pod: Pod, *, src_mac: str, dst_mac: str, dst_ip: IPv4Address,
                 seconds: float, cpu: int = 0, ip_tot_len: int = 0) -> Job:
    """Live frames from the pod's eth0 into its host veth, one generator thread on `cpu`."""
    args = [str(native.xdpgen), "-o", str(native.bpf_obj), "-i", "eth0", "-s", src_mac, "-d",
            dst_mac, "-S", str(pod.ip), "-D", str(dst_ip), "-t", "1", "-c", str(cpu), "-T",
            f"{seconds:.2f}"]
    if ip_tot_len:
        args += ["-L", str(ip_tot_len)]
    return Job(pod.netns, *args)


def parse_xdpgen(out: str) -> tuple[int, float]:
    """(frames generated, seconds) from xdpgen's last line."""
    m = re.search(r"sent (\d+) seconds ([\d.]+)", out)
    if m is None:
        raise RinglaneError(f"xdpgen: no summary in {out[-300:]!r}")
    return int(m.group(1)), float(m.group(2))


def wait_listening(pod: Pod, port: int, *, udp: bool = False, timeout: float = 5.0) -> None:
    """Poll until something listens on `port` in the pod (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(in_netns(pod.netns, "ss", "-Hlun" if udp else "-Hltn"),
                             capture_output=True, text=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.02)
    raise RinglaneError(f"nothing listening on port {port} in {pod.name}")


@dataclass(frozen=True)
class TcpResult:
    gbps: float
    retransmits: int


def iperf_tcp(src: Pod, dst: Pod, *, seconds: int, omit: int, client_cpu: int,
              server_cpu: int) -> TcpResult:
    """One iperf3 TCP stream src -> dst, both ends pinned (-A), the first `omit` seconds left
    out; the rate is what the receiver got."""
    server = Job(dst.netns, "timeout", str(seconds + omit + 20), "iperf3", "-s", "-1", "-A",
                 str(server_cpu), "-p", str(IPERF_PORT))
    try:
        wait_listening(dst, IPERF_PORT)
        client = Job(src.netns, "timeout", str(seconds + omit + 15), "iperf3", "-c",
                     str(dst.ip), "-p", str(IPERF_PORT), "-A", str(client_cpu), "-t",
                     str(seconds), "-O", str(omit), "-J")
        _, out, err = client.finish(seconds + omit + 20)
    finally:
        server.finish(10)
    try:
        end = json.loads(out)["end"]
        return TcpResult(float(end["sum_received"]["bits_per_second"]) / 1e9,
                         int(end["sum_sent"].get("retransmits", 0)))
    except (json.JSONDecodeError, KeyError) as exc:
        raise RinglaneError(f"iperf3 {src.name} -> {dst.name}: {(out or err)[-300:]}") from exc


@dataclass(frozen=True)
class LatencyResult:
    p50_us: float
    p99_us: float
    avg_us: float
    observations: int


def sockperf_pingpong(src: Pod, dst: Pod, *, seconds: int, cpu: int, tcp: bool,
                      msg_size: int = 64) -> LatencyResult:
    """sockperf ping-pong, client in src and server in dst, both on `cpu`. sockperf reports
    half the round trip ("one-way" latency); so do we."""
    proto = ["--tcp"] if tcp else []
    server = Job(dst.netns, "timeout", str(seconds + 20), "taskset", "-c", str(cpu), "sockperf",
                 "sr", "-i", str(dst.ip), "-p", str(SOCKPERF_PORT), *proto)
    try:
        wait_listening(dst, SOCKPERF_PORT, udp=not tcp)
        client = Job(src.netns, "timeout", str(seconds + 15), "taskset", "-c", str(cpu),
                     "sockperf", "pp", "-i", str(dst.ip), "-p", str(SOCKPERF_PORT), "-m",
                     str(msg_size), "-t", str(seconds), *proto)
        _, out, err = client.finish(seconds + 20)
    finally:
        server.proc.send_signal(signal.SIGINT)
        server.finish(5)
    return parse_sockperf(out + err)


def parse_sockperf(text: str) -> LatencyResult:
    """p50, p99, mean and the number of observations from sockperf ping-pong's report."""
    def grab(pattern: str) -> float:
        m = re.search(pattern, text)
        if m is None:
            raise RinglaneError(f"sockperf: no {pattern!r} in {text[-400:]!r}")
        return float(m.group(1))

    return LatencyResult(
        p50_us=grab(r"percentile 50\.000 =\s+([\d.]+)"),
        p99_us=grab(r"percentile 99\.000 =\s+([\d.]+)"),
        avg_us=grab(r"avg-latency=([\d.]+)"),
        observations=int(grab(r"Total (\d+) observations")),
    )
