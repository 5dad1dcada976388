"""Link health: ring cores probe each other through the overlay itself, and their RTT, loss and
jitter follow what the underlay does to the packets.

Three nodes (Sandbox's switch namespace between them), two of them running a node data path with
fast probes. The impairments sit between n1's and n2's switch ports, in a relay of ours
(`Relay`: AF_PACKET, loss and delay per direction) rather than in netem on a node's ul0, for
two reasons: AF_XDP transmits bypass the sending node's qdiscs (copy mode hands frames straight
to the driver) and generic XDP runs before tc ingress, so netem there would touch the kernel's
packets only; and kernels without CONFIG_NET_SCH_NETEM (this CI's) have no netem at all. The
ring cores' probes and `ping` between the nodes' underlay addresses cross the same relay.

Each data path runs in a helper process (this module run as a script inside the node's
namespace) that answers one JSON line per command; killing it is an agent's SIGKILL.
"""

from __future__ import annotations

import json
import queue
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import IO, Any

import pytest

from agent.sandbox import Node, Sandbox, sh
from tests.conftest import require_root, require_tools
from tests.nsutil import entered

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
INTERVAL_MS = 50  # deadline 1 s = 20 probes, a full 64-probe window in 3.2 s
READY_TIMEOUT = 30.0
_PING_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/")
ETH_P_ALL = 0x0003  # uapi linux/if_ether.h (socket.ETH_P_ALL is Python 3.12+)


class Relay:
    """Two switch ports joined by us instead of the bridge: every frame received on one is sent
    out of the other, after `delay[dir]` seconds, unless dropped with probability `loss[dir]`
    (dir "ab" is a -> b). A poor man's netem, but on the path AF_XDP traffic takes too."""

    def __init__(self, netns: str, a: str, b: str) -> None:
        self.loss = {"ab": 0.0, "ba": 0.0}
        self.delay = {"ab": 0.0, "ba": 0.0}
        self._stop = threading.Event()
        self._netns, self._ports = netns, (a, b)
        for port in (a, b):
            sh("ip", "-n", netns, "link", "set", port, "nomaster")
            sh("ip", "-n", netns, "link", "set", port, "promisc", "on")
        with entered(netns):
            self._socks = {p: self._open(p) for p in (a, b)}
        self._threads = []
        for d, src, dst in (("ab", a, b), ("ba", b, a)):
            q: queue.Queue[tuple[float, bytes]] = queue.Queue()
            self._threads += [
                threading.Thread(target=self._receive, args=(d, src, q), daemon=True),
                threading.Thread(target=self._send, args=(dst, q), daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _open(port: str) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((port, ETH_P_ALL))
        s.settimeout(0.1)
        return s

    def _receive(self, d: str, port: str, q: queue.Queue[tuple[float, bytes]]) -> None:
        sock = self._socks[port]
        while not self._stop.is_set():
            try:
                frame, addr = sock.recvfrom(65536)
            except TimeoutError:
                continue
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # what the other direction sent out of this port
            if random.random() >= self.loss[d]:
                q.put((time.monotonic() + self.delay[d], frame))

    def _send(self, port: str, q: queue.Queue[tuple[float, bytes]]) -> None:
        sock = self._socks[port]
        while not self._stop.is_set():
            try:
                due, frame = q.get(timeout=0.1)
            except queue.Empty:
                continue
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sock.send(frame)

    def close(self) -> None:
        """Stop relaying and put both ports back on the switch's bridge."""
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in self._socks.values():
            s.close()
        for port in self._ports:
            sh("ip", "-n", self._netns, "link", "set", port, "promisc", "off")
            sh("ip", "-n", self._netns, "link", "set", port, "master", "br0")


class ProbeNode:
    """A node's data path in a helper process, with its link stats a command away."""

    def __init__(self, sb: Sandbox, node: Node, remotes: list[Node]) -> None:
        self.node = node
        spec = {
            "agent": {**sb.static_config(node)["agent"], "nodeName": node.name},
            "pod_cidr": str(node.pod_cidr),
            "remotes": [{"name": r.name, "ip": str(r.ip), "pod_cidr": str(r.pod_cidr)}
                        for r in remotes],
            "probe_interval_ms": INTERVAL_MS,
        }
        self.log_path = node.run_dir / "probe-node.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{node.netns}", "--", sys.executable, "-m",
             "tests.netns.test_link_probes", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            cwd=REPO)
        self._read(READY_TIMEOUT)

    def _read(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.kill()
            raise AssertionError(f"{self.node.name}'s data path did not answer: "
                                 f"{self.log_path.read_text()[-3000:]}")
        return json.loads(line)

    def call(self, *cmd: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read(10.0)

    def links(self) -> dict[IPv4Address, dict[str, Any]]:
        return {IPv4Address(s["node_ip"]): s for s in self.call("links")}

    def link(self, peer: Node) -> dict[str, Any]:
        return self.links()[peer.ip]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self._log.close()


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> None:
    """Poll cond until it holds; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


def ping_rtt_ms(node: Node, peer: Node) -> tuple[float, float, float]:
    """min/avg/max RTT of 50 pings between the nodes' underlay addresses (kernel path)."""
    out = node.run("ping", "-q", "-c", "50", "-i", "0.02", "-W", "1", str(peer.ip)).stdout
    m = _PING_RTT.search(out)
    assert m is not None, out
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


@pytest.fixture
def three_nodes() -> Iterator[Sandbox]:
    require_root()
    require_tools("ip", "nsenter", "ping")
    sb = Sandbox(nodes=3, pods=1)
    try:
        sb.up()
        yield sb
    finally:
        sb.close()


def test_probes_measure_rtt_loss_and_a_dead_peer(three_nodes: Sandbox) -> None:
    sb = three_nodes
    n1, n2, _ = sb.nodes
    p1 = ProbeNode(sb, n1, [n2])
    try:
        p2 = ProbeNode(sb, n2, [n1])
        try:
            # -- a clean link (the switch's bridge): replies both ways, a plausible RTT ------
            pairs = ((p1, n2), (p2, n1))
            wait_for("replies in both directions",
                     lambda: all(me.link(peer)["received"] > 0 for me, peer in pairs), 5)
            # n1 probed before n2 was up: those probes are lost once their deadline passes
            first = {me: me.link(peer)["sent"] for me, peer in pairs}
            deadline = 1000 // INTERVAL_MS + 1
            wait_for("the early probes decided", lambda: all(
                me.link(peer)["sent"] >= first[me] + deadline for me, peer in pairs), 5)
            base = {me: me.link(peer) for me, peer in pairs}
            wait_for("40 probes more each way", lambda: all(
                me.link(peer)["sent"] >= base[me]["sent"] + 40 for me, peer in pairs), 5)
            for me, peer in pairs:
                st = me.link(peer)
                assert st["lost"] - base[me]["lost"] <= 1, (base[me], st)
                assert st["received"] - base[me]["received"] >= 39, (base[me], st)
                assert 0 < st["rtt_min_us"] <= st["rtt_avg_us"] <= st["rtt_max_us"] < 50_000, st
                assert st["window"] > 0 and st["late"] == 0, st
                assert st["last_reply_age_s"] is not None and st["last_reply_age_s"] < 1, st
            ping_min, ping_avg, _ = ping_rtt_ms(n1, n2)
            st = p1.link(n2)
            print(f"\nclean: ring probe rtt min/avg {st['rtt_min_us']:.0f}/"
                  f"{st['rtt_avg_us']:.0f} us jitter {st['jitter_us']:.0f} us; "
                  f"ping min/avg {ping_min * 1000:.0f}/{ping_avg * 1000:.0f} us")
            # probes are no pod packets: the pod counters did not move, the probe ones did
            core = p1.call("stats")
            assert core["worker"]["values"]["rx_packets"] == 0, core["worker"]
            assert core["worker"]["values"]["tx_packets"] == 0, core["worker"]
            assert core["worker"]["drops"] == {}, core["worker"]
            probe = core["probe"]
            assert probe["probes_sent"] >= st["sent"] and probe["probe_replies"] > 0, probe
            assert probe["probe_requests_answered"] > 0 and probe["probe_bad"] == 0, probe
            assert (probe["probe_peers"], probe["probe_interval_ms"]) == (1, INTERVAL_MS), probe

            assert sb.switch_netns is not None
            relay = Relay(sb.switch_netns, f"p{n1.name}", f"p{n2.name}")  # "ab": n1 -> n2
            try:
                impaired_phases(relay, pairs)
            finally:
                relay.close()

            # -- n2's agent killed: its sockets vanish, nothing answers n1 any more ------------
            p2.kill()
            wait_for("a window of nothing but losses", lambda: p1.link(n2)["loss"] == 1.0, 10)
            st = p1.link(n2)
            assert st["lost_window"] == st["window"] == 64, st
            wait_for("a deadline's worth of probes more",
                     lambda: p1.link(n2)["sent"] >= st["sent"] + 20, 5)
            after = p1.link(n2)
            assert after["received"] == st["received"] and after["loss"] == 1.0, after
            assert after["last_reply_age_s"] > 3, after
        finally:
            p2.kill()
        # -- the route goes, and the peer with it ----------------------------------------------
        p1.call("remove", n2.name)
        assert p1.links() == {}
        assert p1.call("stats")["probe"]["probe_peers"] == 0
    finally:
        p1.kill()


def impaired_phases(relay: Relay, pairs: tuple[tuple[ProbeNode, Node], ...]) -> None:
    """Loss, then delay, on the n1 -> n2 direction; both nodes' probes must see it."""
    (p1, n2), (p2, n1) = pairs
    # -- 50% loss towards n2: a request or its reply crosses it, so about half are lost -------
    relay.loss["ab"] = 0.5
    before = {me: me.link(peer) for me, peer in pairs}
    window, deadline = 64, 1000 // INTERVAL_MS
    wait_for("a window of probes sent under loss", lambda: all(
        me.link(peer)["sent"] >= before[me]["sent"] + window + deadline for me, peer in pairs),
        10)
    for me, peer in pairs:
        st = me.link(peer)
        sent = st["sent"] - before[me]["sent"]
        received = st["received"] - before[me]["received"]
        assert 0 < received < sent, (sent, received)
        assert 0.25 < st["loss"] < 0.75, st  # 64 draws of p = 0.5: 4 standard deviations
    print(f"loss 50% n1 -> n2: n1 sees {p1.link(n2)['loss']:.0%}, "
          f"n2 sees {p2.link(n1)['loss']:.0%} over the last 64 probes")

    # -- +20 ms towards n2: every round trip crosses it once ---------------------------------
    relay.loss["ab"], relay.delay["ab"] = 0.0, 0.020
    wait_for("RTT above 20 ms", lambda: p1.link(n2)["rtt_avg_us"] > 20_000
             and p2.link(n1)["rtt_avg_us"] > 20_000, 10)
    _, ping_avg, _ = ping_rtt_ms(n1, n2)
    st = p1.link(n2)
    assert 20_000 <= st["rtt_last_us"] < 60_000 and st["rtt_max_us"] >= 20_000, st
    print(f"delay 20 ms n1 -> n2: ring probe rtt avg {st['rtt_avg_us'] / 1000:.2f} ms "
          f"jitter {st['jitter_us']:.0f} us; ping avg {ping_avg:.2f} ms")
    relay.delay["ab"] = 0.0


# -- the helper process ------------------------------------------------------------------------


def serve(spec: dict[str, Any]) -> None:
    """Run a node's data path with spec's remotes; commands on stdin, JSON lines on stdout."""
    from agent import config as configmod
    from agent import logs
    from agent.control import to_json
    from agent.datapath.node import NodeDatapath, RemoteNode

    logs.configure("json")
    cfg = configmod.load(spec["agent"], env={},
                         flags={"probe_interval_ms": spec["probe_interval_ms"]})
    dp = NodeDatapath(cfg, pod_cidr=IPv4Network(spec["pod_cidr"]))
    dp.start()
    try:
        for r in spec["remotes"]:
            dp.set_remote(RemoteNode(r["name"], IPv4Address(r["ip"]),
                                     IPv4Network(r["pod_cidr"])))
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "links":
                out: Any = dp.link_stats()
            elif cmd == "stats":
                out = dp.stats()
            elif cmd == "remove":
                out = dp.remove_remote(args[0])
            else:
                out = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(to_json(out)), flush=True)
    finally:
        dp.stop()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
