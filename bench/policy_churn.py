"""Policy updates at a sustained rate while traffic flows, with every verdict counted.

    .venv/bin/python -m bench.policy_churn [--seconds 20] [--pps 2000] [--json FILE]   (root)

A two-node sandbox (agent.sandbox, static mode) whose node n1 holds three pods:
  a  ingress allows UDP 5001 from c (other node) and f (same node), in every policy version
  e  ingress allows nothing from d (other node), in every policy version
  f  ingress allows UDP 5002 from d in version A, nothing in version B
While c->a, f->a, d->e and d->f send UDP at a fixed rate, n1's agent gets A, B, A, B, ...
through its gRPC API, each call returning once the data path enforces it; every version also
differs in a filler rule, so every call swaps a new trie. a and e's verdicts are the same in
every version, so any policy drop on a (per-endpoint counter) and any datagram e receives is a
wrong verdict: a packet that saw neither the old nor the new policy, or half of one.

Printed: updates per second (end to end, and the trie swap alone for 10k entries), update
latency p50/p99, and the wrong-verdict count; loss on a's flows not caused by policy is
reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from agent.api import convert
from agent.api.client import Client
from agent.policy.compile import PolicyEntry, PortRange
from agent.policy.model import CidrPeer, Direction, LabelSelector, Policy, PortMatch, Protocol, Rule
from agent.sandbox import Pod, Sandbox
from agent.xdp.policy_maps import PolicyMaps


def sink(port_list: list[int], seconds: float) -> None:
    """In a pod: count datagrams by (source address, port) for `seconds`; print JSON."""
    socks = {}
    for port in port_list:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        socks[s] = port
    print("ready", flush=True)
    counts: Counter[str] = Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select(list(socks), [], [], 0.1)
        for s in ready:
            while True:
                try:
                    _, addr = s.recvfrom(64)
                except BlockingIOError:
                    break
                counts[f"{addr[0]}:{socks[s]}"] += 1
    print(json.dumps(counts), flush=True)


def blast(target: str, port: int, pps: int, seconds: float) -> None:
    """In a pod: send `pps` datagrams a second to target:port for `seconds`; print the count."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent, start = 0, time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * pps)
        while sent < due:
            # a full socket buffer is the sender's own loss, not a verdict
            with contextlib.suppress(OSError):
                s.sendto(struct.pack("!Q", sent), (target, port))
            sent += 1
        time.sleep(0.001)
    print(sent, flush=True)


def _in_pod(pod: Pod, *args: str) -> subprocess.Popen[str]:
    return pod.popen(sys.executable, "-m", "bench.policy_churn", *args,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _policies(version: str, n: int, pods: dict[str, Pod]) -> list[Policy]:
    def sel(name: str) -> LabelSelector:
        return LabelSelector.of({"pod": pods[name].name})

    def from_(name: str, port: int) -> Rule:
        return Rule(peers=(CidrPeer(IPv4Network(pods[name].ip)),),
                    ports=(PortMatch(Protocol.UDP, port),))

    filler = Rule(peers=(CidrPeer(IPv4Network(f"203.0.{n % 256}.0/24")),),
                  ports=(PortMatch(Protocol.TCP, 1 + n // 256),))
    f_rules = (from_("d", 5002), filler) if version == "A" else (filler,)
    return [Policy("a-in", "default", subject=sel("a"),
                   ingress=(from_("c", 5001), from_("f", 5001), filler)),
            Policy("e-in", "default", subject=sel("e"), ingress=(from_("c", 5001), filler)),
            Policy("f-in", "default", subject=sel("f"), ingress=f_rules)]


def swap_rate(pin_dir: Path, entries: int = 10000, rounds: int = 20) -> float:
    """Trie swaps a second for `entries` entries (one endpoint, /32 peers), on the node's maps."""
    ep = IPv4Address("10.244.1.250")  # no such pod: the entries decide nothing
    rows = [PolicyEntry(ep, Direction.INGRESS, IPv4Network("0.0.0.0/0"))] + [
        PolicyEntry(ep, Direction.INGRESS, IPv4Network(IPv4Address(0x0A000000 + i)),
                    (PortRange(17, 53, 53),)) for i in range(entries - 1)]
    with PolicyMaps(pin_dir) as maps:
        saved = maps.installed_entries()
        t0 = time.monotonic()
        for _ in range(rounds):
            maps.swap_policy(rows)
        rate = rounds / (time.monotonic() - t0)
        if saved:
            maps.swap_policy(saved)
        else:
            maps.clear_policy()
    return rate


def run(seconds: float, pps: int) -> dict[str, Any]:
    sb = Sandbox(nodes=2, pods=3)
    try:
        sb.up()
        sb.start_agents()
        n1, n2 = sb.nodes
        pods = {"a": n1.pods[0], "e": n1.pods[1], "f": n1.pods[2],
                "c": n2.pods[0], "d": n2.pods[1]}
        client = Client.unix(n1.run_dir / "api.sock", timeout=10)
        client.apply([convert.policy_to_proto(p) for p in _policies("A", 0, pods)])
        traffic_s = seconds + 2
        sinks = {k: _in_pod(pods[k], "sink", "5001,5002", str(traffic_s + 1)) for k in "aef"}
        for p in sinks.values():
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        before = client.stats()
        flows = [("c", "a", 5001), ("f", "a", 5001), ("d", "e", 5001), ("d", "f", 5002)]
        blasters = [(src, dst, port, _in_pod(pods[src], "blast", str(pods[dst].ip), str(port),
                                             str(pps), str(traffic_s))) for src, dst, port in flows]
        latencies: list[float] = []
        stop = threading.Event()

        def churn() -> None:
            n = 1
            time.sleep(1.0)  # traffic first
            end = time.monotonic() + seconds
            while time.monotonic() < end and not stop.is_set():
                t0 = time.monotonic()
                client.apply([convert.policy_to_proto(p)
                              for p in _policies("AB"[n % 2], n, pods)])
                latencies.append(time.monotonic() - t0)
                n += 1

        t = threading.Thread(target=churn)
        t.start()
        t.join()
        sent = {(s, d, p): int(b.communicate(timeout=60)[0].strip() or 0)
                for s, d, p, b in blasters}
        got: dict[str, Counter[str]] = {}
        for k, p in sinks.items():
            out, _ = p.communicate(timeout=60)
            got[k] = Counter(json.loads(out.strip().splitlines()[-1]))
        after = client.stats()

        def drops(ip: IPv4Address) -> int:
            def one(st: Any) -> int:
                return sum(int(e.counters["drop_policy_ingress"]) for e in st.endpoints
                           if e.ip == str(ip))
            return one(after) - one(before)

        def received(src: str, dst: str, port: int) -> int:
            return got[dst][f"{pods[src].ip}:{port}"]

        a_sent = sent[("c", "a", 5001)] + sent[("f", "a", 5001)]
        a_got = received("c", "a", 5001) + received("f", "a", 5001)
        wrong_a = drops(pods["a"].ip)
        wrong_e = received("d", "e", 5001)
        result = {
            "seconds": seconds, "pps_per_flow": pps,
            "updates": len(latencies),
            "updates_per_s": len(latencies) / seconds,
            "update_latency_ms_p50": 1e3 * statistics.median(latencies),
            "update_latency_ms_p99": 1e3 * sorted(latencies)[int(0.99 * (len(latencies) - 1))],
            "allowed_sent": a_sent, "allowed_received": a_got,
            "allowed_lost_not_by_policy": a_sent - a_got - wrong_a,
            "denied_sent": sent[("d", "e", 5001)], "denied_dropped": drops(pods["e"].ip),
            "wrong_verdicts": wrong_a + wrong_e,
            "flipping_received": received("d", "f", 5002),
            "flipping_sent": sent[("d", "f", 5002)],
            "trie_swaps_per_s_10k_entries": swap_rate(n1.pin_dir),
        }
        client.close()
        return result
    finally:
        sb.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["sink"]:
        sink([int(p) for p in argv[1].split(",")], float(argv[2]))
        return 0
    if argv[:1] == ["blast"]:
        blast(argv[1], int(argv[2]), int(argv[3]), float(argv[4]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.policy_churn", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pps", type=int, default=2000, help="datagrams a second per flow")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    r = run(args.seconds, args.pps)
    print(f"policy updates end to end: {r['updates']} in {r['seconds']:.0f} s = "
          f"{r['updates_per_s']:.1f}/s, latency p50 {r['update_latency_ms_p50']:.1f} ms, "
          f"p99 {r['update_latency_ms_p99']:.1f} ms")
    print(f"trie swap alone (10k entries): {r['trie_swaps_per_s_10k_entries']:.1f}/s")
    print(f"invariant allowed: {r['allowed_received']}/{r['allowed_sent']} received, "
          f"{r['allowed_lost_not_by_policy']} lost not by policy")
    print(f"invariant denied: {r['denied_dropped']}/{r['denied_sent']} dropped by policy")
    print(f"flipping flow: {r['flipping_received']}/{r['flipping_sent']} received")
    print(f"WRONG VERDICTS: {r['wrong_verdicts']}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
