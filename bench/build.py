"""Compile the benchmark's native helpers (bench/native/) into a scratch directory.

bench_xdp.bpf.c with the same clang flags as Ringlane's own XDP programs, xdpsink.c and
xdpgen.c with gcc against libbpf. Built on every run (about a second), never installed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.errors import RinglaneError
from agent.xdp import _toolchain

NATIVE = Path(__file__).resolve().parent / "native"
CFLAGS = ("-O2", "-g", "-Wall", "-Wextra", "-Werror")


@dataclass(frozen=True)
class Native:
    """The built helpers."""

    bpf_obj: Path  # bench_sink and bench_gen_tx
    xdpsink: Path  # attach bench_sink, report its count
    xdpgen: Path  # live-frames generator


def _compile(*cmd: str) -> None:
    """Run a compiler; on failure raise with its output."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RinglaneError(f"bench build: {' '.join(cmd)}\n{p.stderr.strip()}")


def build(out: Path) -> Native:
    """Compile everything into `out` (which must exist). Raises RinglaneError naming what is
    missing or what failed to compile."""
    missing = [t for t in ("clang", "gcc") if shutil.which(t) is None]
    if missing:
        raise RinglaneError(f"bench build needs {', '.join(missing)} (scripts/setup.sh)")
    bpf_flags = list(_toolchain.BPF_CFLAGS)
    arch = _toolchain.multiarch_include()
    if arch is not None:
        bpf_flags.append(f"-I{arch}")
    native = Native(out / "bench_xdp.o", out / "xdpsink", out / "xdpgen")
    _compile("clang", *bpf_flags, "-c", str(NATIVE / "bench_xdp.bpf.c"), "-o",
             str(native.bpf_obj))
    _compile("gcc", *CFLAGS, "-o", str(native.xdpsink), str(NATIVE / "xdpsink.c"), "-lbpf")
    _compile("gcc", *CFLAGS, "-pthread", "-o", str(native.xdpgen), str(NATIVE / "xdpgen.c"),
             "-lbpf")
    return native
