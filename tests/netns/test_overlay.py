"""Pod-to-pod across two nodes on real veths, VXLAN and AF_XDP sockets: the data is exact, it
went through the ring core and not the kernel route, and the fallback catches what the ring core
does not serve."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

from agent import traffic
from agent.sandbox import Node, Sandbox
from tests.netns.conftest import SandboxFactory


def counters(node: Node) -> dict[str, int]:
    st = node.stats()
    return {**st["core"]["worker"]["values"], **{f"xdp_{k}": v for k, v in st["xdp"].items()},
            "dropped": sum(st["core"]["worker"]["drops"].values())}


def assert_frames_accounted(node: Node) -> None:
    """Every UMEM frame is free, in the worker's hands or lent to a live socket."""
    core = node.stats()["core"]
    assert core["bad_frees"] == 0
    assert core["frames_free"] + core["frames_worker"] + core["frames_sockets"] \
        == core["frames_total"], core


def kernel_vxlan_tx(node: Node) -> int:
    """Packets the kernel VXLAN fallback device transmitted."""
    out = node.run("ip", "-s", "-j", "link", "show", "rl-vxlan").stdout
    link: dict[str, Any] = json.loads(out)[0]
    return int(link["stats64"]["tx"]["packets"])


def test_ping_udp_tcp_cross_node_through_ring_core(make_sandbox: SandboxFactory) -> None:
    """tcpMode ring: every TCP packet, super-frames included, goes through the ring core, which
    segments and checksums them itself; the digest proves the bytes are exact."""
    sandbox = make_sandbox("--tcp-mode", "ring")
    n1, n2 = sandbox.nodes
    src, dst = n1.pods[0], n2.pods[0]
    before1, before2 = counters(n1), counters(n2)
    kernel_before = kernel_vxlan_tx(n1)

    ping = traffic.ping(src, dst, count=10, interval=0.02)
    assert ping.received == 10
    udp = traffic.iperf(src, dst, seconds=1, udp_len=64)
    assert udp.packets_per_second > 0
    xfer = traffic.tcp_transfer(src, dst, size=8 << 20)
    assert xfer.exact, xfer

    after1, after2 = counters(n1), counters(n2)
    # every one of those packets went through both ring cores ...
    assert after1["encap"] - before1["encap"] >= 10 + udp.packets_per_second
    assert after2["decap"] - before2["decap"] >= 10 + udp.packets_per_second
    assert after1["xdp_pod_redirect"] > before1["xdp_pod_redirect"]
    assert after2["xdp_wire_redirect"] > before2["xdp_wire_redirect"]
    # ... the pod's partial checksums were completed in software, its TSO super-frames
    # segmented ...
    assert after1["csum_filled"] > before1["csum_filled"]
    assert after1["tso_segments"] > after1["tso_packets"] > before1["tso_packets"]
    # ... and none took the kernel's VXLAN route
    assert kernel_vxlan_tx(n1) == kernel_before
    assert after1["dropped"] == before1["dropped"]
    assert after2["dropped"] == before2["dropped"]
    for node in sandbox.nodes:
        assert_frames_accounted(node)


def test_every_pod_pair_reaches_each_other(sandbox: Sandbox) -> None:
    for a in sandbox.pods:
        for b in sandbox.pods:
            if a is not b:
                assert traffic.ping(a, b, count=2, interval=0.02).received == 2, (a.name, b.name)


def test_overlay_mtu_and_oversize(sandbox: Sandbox) -> None:
    n1, n2 = sandbox.nodes
    src, dst = n1.pods[0], n2.pods[0]
    # a full overlay-MTU packet with DF crosses (1450 = 1422 + 8 ICMP + 20 IP)
    ok = src.run("ping", "-c", "2", "-i", "0.05", "-W", "1", "-M", "do", "-s", "1422",
                 str(dst.ip), check=False)
    assert ok.returncode == 0, ok.stdout
    # a pod whose MTU is too large: from_pod leaves the non-TCP oversize packet to the
    # kernel, which answers fragmentation-needed with the overlay MTU (no black hole)
    src.run("ip", "link", "set", "eth0", "mtu", "1500")
    n1.run("ip", "link", "set", src.host_ifname, "mtu", "1500")
    before = counters(n1)["xdp_pod_pass_oversize"]
    big = src.run("ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", str(dst.ip),
                  check=False)
    assert "mtu = 1450" in big.stdout + big.stderr
    assert counters(n1)["xdp_pod_pass_oversize"] == before + 1
    # without DF the kernel fragments it, and the fragments arrive
    frag = src.run("ping", "-c", "2", "-i", "0.05", "-W", "1", "-M", "dont", "-s", "1472",
                   str(dst.ip), check=False)
    assert frag.returncode == 0, frag.stdout


def test_ring_core_killed_and_restarted_under_traffic(sandbox: Sandbox) -> None:
    """SIGKILL: the sockets vanish with the process, their XSKMAP entries with them, so the XDP
    programs pass traffic to the kernel VXLAN fallback. Restarted: accelerated again."""
    n1, n2 = sandbox.nodes
    src, dst = n1.pods[0], n2.pods[0]
    count, interval = 600, 0.005
    pinger = src.popen("ping", "-q", "-c", str(count), "-i", str(interval), "-W", "1",
                       str(dst.ip), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    fallback_before = kernel_vxlan_tx(n1)
    assert sandbox.stop_agent(n1, signal.SIGKILL) == -signal.SIGKILL
    time.sleep(0.5)
    fallback_during = kernel_vxlan_tx(n1)
    sandbox.start_agent(n1)
    encap_restarted = counters(n1)["encap"]
    out, _ = pinger.communicate(timeout=60)
    sent, received = traffic.parse_ping_summary(out)
    lost = sent - received
    print(f"\nkill+restart under ping -i {interval}: {sent} sent, {lost} lost")
    assert fallback_during > fallback_before, "kernel fallback carried nothing while down"
    assert counters(n1)["encap"] > encap_restarted, "not accelerated again after restart"
    assert lost <= sent // 20, f"{lost} of {sent} lost across the two switches"


def test_bulk_tcp_flow_moves_to_kernel_whole_and_exact(sandbox: Sandbox) -> None:
    """tcpMode auto (default): a bulk flow leaves the ring core at its first super-frame, in
    both directions (the receiver follows the sender's choice), and the bytes stay exact."""
    n1, n2 = sandbox.nodes
    src, dst = n1.pods[0], n2.pods[0]
    before1, before2 = counters(n1), counters(n2)
    xfer = traffic.tcp_transfer(src, dst, size=16 << 20)
    assert xfer.exact, xfer
    after1, after2 = counters(n1), counters(n2)
    assert after1["xdp_pod_flow_to_kernel"] == before1["xdp_pod_flow_to_kernel"] + 1
    assert after1["xdp_pod_pass_tcp_kernel"] > before1["xdp_pod_pass_tcp_kernel"]
    assert after2["xdp_wire_pass_kernel_sent"] > before2["xdp_wire_pass_kernel_sent"]
    # the receiver's ACKs took the kernel path too
    assert after2["xdp_pod_pass_tcp_kernel"] > before2["xdp_pod_pass_tcp_kernel"]
    # the ring core never segmented: the flow left before it had to
    assert after1["tso_packets"] == before1["tso_packets"]


def test_tx_ring_full_is_a_counted_drop_and_nothing_leaks(make_sandbox: SandboxFactory) -> None:
    """A 64-entry underlay ring cannot hold the segments of the super-frames one batch brings:
    the excess is dropped and counted (TCP retransmits it), and every frame stays accounted."""
    sandbox = make_sandbox("--tcp-mode", "ring", "--ring-size", "64", "--frames", "4096")
    n1, n2 = sandbox.nodes
    xfer = traffic.tcp_transfer(n1.pods[0], n2.pods[0], size=8 << 20)
    assert xfer.exact, xfer
    drops = n1.stats()["core"]["worker"]["drops"]
    assert drops.get("tx_ring_full", 0) > 0, drops
    for node in sandbox.nodes:
        assert_frames_accounted(node)
