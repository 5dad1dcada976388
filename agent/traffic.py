"""Traffic between sandbox pods: ping, iperf3 (TCP and UDP), and a digest-checked TCP transfer.

Shared by `ringlane demo`, the netns tests and the benchmarks, so that all three measure the
same way. Only addresses inside the sandbox's own namespaces are ever targeted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from agent.errors import RinglaneError
from agent.sandbox import Pod

_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
_PING_RTT = re.compile(r"= [\d.]+/([\d.]+)/([\d.]+)/")


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtt_avg_ms: float
    rtt_max_ms: float


def parse_ping_summary(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line."""
    m = _PING_SUMMARY.search(output)
    if m is None:
        raise RinglaneError(f"no ping summary in: {output[-300:]!r}")
    return int(m.group(1)), int(m.group(2))


def ping(src: Pod, dst: Pod, *, count: int = 5, interval: float = 0.05,
         timeout: float = 1.0) -> PingResult:
    p = src.run("ping", "-q", "-c", str(count), "-i", str(interval), "-W", str(timeout),
                str(dst.ip), check=False)
    sent, received = parse_ping_summary(p.stdout + p.stderr)
    rtt = _PING_RTT.search(p.stdout)
    return PingResult(sent, received,
                      float(rtt.group(1)) if rtt else 0.0, float(rtt.group(2)) if rtt else 0.0)


@dataclass(frozen=True)
class IperfResult:
    bits_per_second: float
    packets_per_second: float
    lost_percent: float
    retransmits: int


def _server(dst: Pod, port: int) -> subprocess.Popen[str]:
    srv = dst.popen("iperf3", "-s", "-1", "-p", str(port), stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    # wait until it listens (by polling, not sleeping a fixed time)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if f":{port} " in dst.run("ss", "-ltnH", check=False).stdout:
            return srv
        time.sleep(0.02)
    srv.kill()
    raise RinglaneError(f"iperf3 server in {dst.name} did not start")


def iperf(src: Pod, dst: Pod, *, seconds: float = 3, udp_len: int = 0, port: int = 5201,
          extra: tuple[str, ...] = ()) -> IperfResult:
    """TCP (udp_len == 0) or UDP with `udp_len`-byte payloads at full speed."""
    srv = _server(dst, port)
    args = ["iperf3", "-c", str(dst.ip), "-p", str(port), "-t", str(seconds), "-J", *extra]
    if udp_len:
        args += ["-u", "-b", "0", "-l", str(udp_len)]
    try:
        p = src.run(*args, check=False)
    finally:
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
    try:
        end = json.loads(p.stdout)["end"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise RinglaneError(f"iperf3 {src.name} -> {dst.name} failed: {p.stdout[-300:]}") from exc
    if udp_len:
        s = end["sum"]
        return IperfResult(float(s["bits_per_second"]),
                           float(s["packets"] - s["lost_packets"]) / float(s["seconds"]),
                           float(s["lost_percent"]), 0)
    r = end["sum_received"]
    return IperfResult(float(r["bits_per_second"]), 0.0, 0.0,
                       int(end["sum_sent"].get("retransmits", 0)))


_TRANSFER_SERVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

_TRANSFER_CLIENT = r"""
import hashlib, os, socket, sys
size = int(sys.argv[3]); h = hashlib.sha256(); sent = 0
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
while sent < size:
    b = os.urandom(min(1 << 16, size - sent)); c.sendall(b); h.update(b); sent += len(b)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print(sent, h.hexdigest(), flush=True)
"""


@dataclass(frozen=True)
class TransferResult:
    sent: int
    received: int
    sent_sha256: str
    received_sha256: str
    seconds: float

    @property
    def exact(self) -> bool:
        return self.sent == self.received and self.sent_sha256 == self.received_sha256


def tcp_transfer(src: Pod, dst: Pod, *, size: int, port: int = 7000) -> TransferResult:
    """Send `size` bytes over one TCP connection and compare SHA-256 on both ends."""
    python = sys.executable
    srv = dst.popen(python, "-c", _TRANSFER_SERVER, str(port), stdout=subprocess.PIPE)
    assert srv.stdout is not None
    if srv.stdout.readline().strip() != "listening":
        srv.kill()
        raise RinglaneError(f"transfer server in {dst.name} did not start")
    t0 = time.monotonic()
    try:
        cli = src.run(python, "-c", _TRANSFER_CLIENT, str(dst.ip), str(port), str(size),
                      check=False)
        out, _ = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
    elapsed = time.monotonic() - t0
    try:
        sent, sent_sha = cli.stdout.split()
        received, received_sha = out.split()
    except ValueError as exc:
        raise RinglaneError(f"transfer {src.name} -> {dst.name} failed: {cli.stderr[-300:]}") \
            from exc
    return TransferResult(int(sent), int(received), sent_sha, received_sha, elapsed)
