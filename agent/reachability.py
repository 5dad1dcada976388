"""Who can reach whom, with real packets: a port server and a prober that run inside sandbox
pods (`python -m agent.reachability serve|probe`), for the policy truth tables of the tests and
the policy load benchmark.

A probe succeeds on a completed TCP handshake, a UDP echo, or an ICMP echo reply, and fails on
silence (a policy drop) or a refusal. Probes of one batch run concurrently, so a batch costs
one timeout however many of its probes are denied.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.errors import RinglaneError
from agent.sandbox import Pod

ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0


@dataclass(frozen=True)
class Target:
    ip: str
    proto: str  # "tcp" | "udp" | "icmp"
    port: int = 0


def _tcp(t: Target, timeout: float) -> bool:
    try:
        with socket.create_connection((t.ip, t.port), timeout=timeout):
            return True
    except OSError:
        return False


def _udp(t: Target, timeout: float) -> bool:
    nonce = os.urandom(8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(nonce, (t.ip, t.port))
            while True:
                data, _ = s.recvfrom(64)
                if data == nonce:
                    return True
        except OSError:
            return False


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp(t: Target, timeout: float) -> bool:
    ident = int.from_bytes(os.urandom(2), "big")
    body = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, 1) + b"ringlane"
    packet = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.sendto(packet, (t.ip, 0))
        end = timeout
        while end > 0:
            ready, _, _ = select.select([s], [], [], end)
            if not ready:
                return False
            data, addr = s.recvfrom(1500)
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if typ == ICMP_ECHO_REPLY and rid == ident and addr[0] == t.ip:
                return True
            end -= 0.01
        return False


_PROBES = {"tcp": _tcp, "udp": _udp, "icmp": _icmp}


def probe_all(targets: Sequence[Target], timeout: float, attempts: int) -> list[bool]:
    """Each target reached within `attempts` tries of `timeout` seconds?"""
    def one(t: Target) -> bool:
        return any(_PROBES[t.proto](t, timeout) for _ in range(attempts))

    with ThreadPoolExecutor(max_workers=min(64, max(1, len(targets)))) as pool:
        return list(pool.map(one, targets))


def serve(tcp_ports: Sequence[int], udp_ports: Sequence[int]) -> None:
    """Accept and close TCP connections, echo UDP datagrams; print "ready" once listening."""
    socks = []
    for port in tcp_ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        socks.append(s)
    for port in udp_ports:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", port))
        socks.append(u)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            if s.type == socket.SOCK_STREAM:
                conn, _ = s.accept()
                conn.close()
            else:
                data, addr = s.recvfrom(2048)
                s.sendto(data, addr)


# -- driving it from outside the pod ------------------------------------------------------------


class PortServer:
    """`serve` running in a pod until close()."""

    def __init__(self, pod: Pod, tcp: Sequence[int], udp: Sequence[int]) -> None:
        self.proc = pod.popen(sys.executable, "-m", "agent.reachability", "serve",
                              "--tcp", ",".join(map(str, tcp)),
                              "--udp", ",".join(map(str, udp)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RinglaneError(f"port server in {pod.name} did not start: {line!r}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def probe(src: Pod, targets: Sequence[Target], *, timeout: float = 0.4,
          attempts: int = 2) -> list[bool]:
    """Run `targets` from inside `src`; one result per target, in order."""
    payload = json.dumps([[t.ip, t.proto, t.port] for t in targets])
    p = subprocess.run(["ip", "netns", "exec", src.netns, sys.executable, "-m",
                        "agent.reachability", "probe", "--timeout", str(timeout),
                        "--attempts", str(attempts)],
                       input=payload, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RinglaneError(f"probe from {src.name} failed: {p.stderr.strip()[-500:]}")
    results: list[bool] = json.loads(p.stdout)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m agent.reachability", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--tcp", default="")
    s.add_argument("--udp", default="")
    p = sub.add_parser("probe", help="targets as JSON [[ip, proto, port], ...] on stdin")
    p.add_argument("--timeout", type=float, default=0.4)
    p.add_argument("--attempts", type=int, default=2)
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        ints = [[int(x) for x in v.split(",") if x] for v in (args.tcp, args.udp)]
        serve(ints[0], ints[1])
        return
    raw: list[Any] = json.load(sys.stdin)
    targets = [Target(str(ip), str(proto), int(port)) for ip, proto, port in raw]
    json.dump(probe_all(targets, args.timeout, args.attempts), sys.stdout)


if __name__ == "__main__":
    main()
