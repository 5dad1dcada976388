"""Coverage-guided fuzzing of pkt.c (fuzz_pkt.c) for a bounded time under ASan/UBSan.

The example-based tests cover the cases someone thought of; libFuzzer mutates valid VXLAN,
TCP, UDP, fragment and IP-option frames into the ones nobody did, and fuzz_pkt.c's oracles
turn a wrong checksum or lost payload into a crash as well as any out-of-bounds access.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .packets import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_ACK,
    TCP_CWR,
    TCP_FIN,
    TCP_PSH,
    Csum,
    eth,
    ipv4,
    tcp,
    tcp_frame,
    udp,
    udp_frame,
    vxlan_frame,
)
from .pkt_harness import HARNESS_SOURCES, HERE, INCLUDE_FLAGS, REPO, SRC, BuildError, compile_c

pytestmark = pytest.mark.native

FUZZ_C = HERE / "fuzz_pkt.c"
ABI_H = REPO / "bpf" / "include" / "ringlane" / "abi.h"
FUZZ_SECONDS = 20
FUZZ_CFLAGS = ["-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
               "-Wall", "-Wextra", "-Werror"]
MISSING_RUNTIME = ("clang's libFuzzer runtime is missing "
                   "(Debian: apt-get install libclang-rt-14-dev)")


def fuzz_define(name: str, source: Path = FUZZ_C) -> int:
    """An integer #define of fuzz_pkt.c (or another source), so the seeds and the target
    cannot drift apart."""
    m = re.search(rf"^#define\s+{name}\s+(\S+)", source.read_text(), re.M)
    assert m is not None, f"{name} not in {source.name}"
    return int(m.group(1), 0)


def probe_request() -> bytes:
    """A link probe request (probe.h's payload layout) as the inner frame of a seed."""
    def probe_h(name: str) -> int:
        return fuzz_define(name, SRC / "probe.h")

    payload = struct.pack("!IBBHII4s4sQ", probe_h("RL_PROBE_MAGIC"), probe_h("RL_PROBE_VERSION"),
                          probe_h("RL_PROBE_REQUEST"), 0, 7, 9, bytes(4), bytes(4), 5)
    return eth(ethertype=fuzz_define("RL_PROBE_ETHERTYPE", ABI_H)) + payload


def ctrl(mtu: int, layout: int = 0x2A2A2A2A) -> bytes:
    """fuzz_pkt.c's control bytes: chain-layout seed (4 bytes), then the TSO MTU (2 bytes)."""
    return struct.pack("!IH", layout, mtu - 41)


def seeds() -> dict[str, bytes]:
    """A small corpus of valid frames of every kind pkt.c handles, to start from."""
    vni = fuzz_define("FUZZ_VNI")
    assert fuzz_define("RL_FUZZ_CTRL") == len(ctrl(1500))
    big = bytes(range(256)) * 24
    inner = tcp_frame(b"inner", csum=Csum.PARTIAL)
    return {
        "vxlan_tcp": ctrl(1450) + vxlan_frame(inner, vni=vni),
        "vxlan_options": ctrl(1450) + vxlan_frame(udp_frame(b"x" * 40), vni=vni,
                                                  ip_options=b"\x01" * 8),
        "tcp_partial": ctrl(1500) + tcp_frame(b"hello", csum=Csum.PARTIAL,
                                              tcp_options=b"\x01\x01\x08\x0a" + bytes(8)),
        "udp_partial": ctrl(1500) + udp_frame(b"datagram", csum=Csum.PARTIAL),
        "udp_nocsum": ctrl(1500) + udp_frame(b"datagram", csum=Csum.ZERO),
        "fragment_mf": ctrl(1500) + eth() + ipv4(udp(b"f" * 64), mf=True, ident=7),
        "fragment_off": ctrl(1500) + eth() + ipv4(b"g" * 64, proto=IPPROTO_UDP, frag_offset=9),
        "ip_options_ihl15": ctrl(1500) + eth() + ipv4(
            tcp(b"o" * 10, csum=Csum.PARTIAL), proto=IPPROTO_TCP, options=b"\x01" * 40),
        "tso_6k": ctrl(1450, 0x01020304) + tcp_frame(
            big, flags=TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR, csum=Csum.PARTIAL,
            ip_options=b"\x94\x04\x00\x00"),
        "tso_mss1": ctrl(41, 0x0BADF00D) + tcp_frame(big[:300], csum=Csum.PARTIAL),
        "udp_big": ctrl(1500) + udp_frame(big, sport=1, dport=2),
        "ttl_low": ctrl(1500) + eth() + ipv4(udp(b"t"), ttl=2, proto=IPPROTO_UDP),
        "probe_request": ctrl(1500) + vxlan_frame(probe_request(), vni=vni),
    }


def libfuzzer_available(tmp: Path) -> bool:
    """Whether clang links a trivial fuzz target (the runtime is a separate Debian package)."""
    probe = tmp / "probe.c"
    probe.write_text(
        "#include <stddef.h>\n#include <stdint.h>\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n"
    )
    proc = subprocess.run(["clang", "-fsanitize=fuzzer", str(probe), "-o", str(tmp / "probe")],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0


def test_fuzz_pkt(tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """FUZZ_SECONDS of libFuzzer over the seeds: no sanitizer report, no oracle failure."""
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (Debian: apt-get install clang-14)")
    if not libfuzzer_available(tmp_path):
        pytest.skip(MISSING_RUNTIME)
    exe = tmp_path / "fuzz_pkt"
    try:
        compile_c(["clang", *FUZZ_CFLAGS, *INCLUDE_FLAGS, *map(str, HARNESS_SOURCES), str(FUZZ_C),
                   "-o", str(exe)])
    except BuildError as e:
        pytest.fail(str(e))

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in seeds().items():
        (corpus / name).write_bytes(data)

    proc = subprocess.run(
        [str(exe), f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=2048", "-max_len=12000",
         "-timeout=10", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=FUZZ_SECONDS + 60, check=False,
    )
    log = proc.stderr
    crashes = sorted(p.name for p in tmp_path.iterdir()
                     if p.name.startswith(("crash-", "leak-", "timeout-", "oom-")))
    assert proc.returncode == 0 and not crashes, (
        f"fuzzer failed (exit {proc.returncode}), artifacts {crashes} in {tmp_path}:\n"
        + "\n".join(log.splitlines()[-60:])
    )
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert m is not None, log[-2000:]
    execs = int(m.group(1))
    record_property("fuzz_execs", execs)
    print(f"fuzz_pkt: {execs} executions in {FUZZ_SECONDS} s")
    assert execs > 1000  # a target that does nothing per input would still "pass"
