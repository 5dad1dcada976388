"""The ring core under AddressSanitizer and UndefinedBehaviorSanitizer, on real traffic.

The agents load an ASan/UBSan build of the ring core (libasan preloaded) and carry ping, UDP
and TCP (tcpMode ring, so the segmentation path runs too); then SIGTERM tears every socket
down, which runs the removal and frame-reclaim paths. Any report fails the test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent import traffic
from agent.sandbox import Sandbox
from tests.conftest import require_root, require_tools

ROOT = Path(__file__).resolve().parents[2]


def _runtime(name: str) -> str:
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                          text=True).stdout.strip()
    if not Path(path).is_file():
        pytest.skip(f"{name} not found (Debian package libgcc-12-dev provides it)")
    return path


@pytest.fixture(scope="module")
def sanitized_core() -> None:
    require_root()
    build = subprocess.run([sys.executable, "agent/xdp/_build.py", "_ringcore_asan"], cwd=ROOT,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]


def test_ring_core_clean_under_sanitizers(sanitized_core: None) -> None:
    require_tools("ip", "nsenter", "ping", "iperf3")
    env = {
        "RINGLANE_SANITIZED_CORE": "1",
        "LD_PRELOAD": f"{_runtime('libasan.so')} {_runtime('libubsan.so')}",
        # Python's own allocations are not ours to judge; memory errors and UB in the core are
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }
    with Sandbox(nodes=2, pods=2, agent_args=["--tcp-mode", "ring"], agent_env=env) as sb:
        sb.start_agents()
        src, dst = sb.nodes[0].pods[0], sb.nodes[1].pods[1]
        assert traffic.ping(src, dst, count=5, interval=0.02).received == 5
        traffic.iperf(src, dst, seconds=1, udp_len=64)
        assert traffic.tcp_transfer(src, dst, size=4 << 20).exact
        assert sb.nodes[0].stats()["core"]["worker"]["values"]["tso_segments"] > 0
        for node in sb.nodes:
            assert sb.stop_agent(node, signal.SIGTERM) == 0
            assert node.log_path is not None
            log = node.log_path.read_text()
            assert "Sanitizer" not in log and "runtime error" not in log, log[-4000:]
