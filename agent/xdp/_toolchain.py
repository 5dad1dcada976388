"""Compiler discovery for the build: say which Debian package is missing, then compile BPF.

Imported by setup.py (as a plain module, before the package exists) and by _build.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# (what we look for, where, the Debian package that provides it)
_TOOLS = [("clang", "clang"), ("llvm-strip", "llvm")]
_HEADERS = [
    ("bpf/libbpf.h", "libbpf-dev"),
    ("xdp/xsk.h", "libxdp-dev"),
    ("xdp/libxdp.h", "libxdp-dev"),
    ("linux/if_xdp.h", "linux-libc-dev"),
]
_INCLUDE_DIRS = [Path("/usr/include"), Path("/usr/local/include")]

BPF_CFLAGS = ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]


class ToolchainError(RuntimeError):
    """A compiler or header needed to build Ringlane is missing."""


def multiarch_include() -> Path | None:
    """Debian keeps asm/ under a multiarch directory that clang -target bpf does not search."""
    for cand in sorted(Path("/usr/include").glob("*-linux-gnu")):
        if (cand / "asm").is_dir():
            return cand
    return None


def check_toolchain() -> None:
    """Raise ToolchainError naming every missing Debian package at once."""
    missing: set[str] = set()
    for tool, pkg in _TOOLS:
        if shutil.which(tool) is None:
            missing.add(pkg)
    for header, pkg in _HEADERS:
        if not any((d / header).is_file() for d in _INCLUDE_DIRS):
            missing.add(pkg)
    if missing:
        pkgs = " ".join(sorted(missing))
        raise ToolchainError(
            f"Ringlane needs a C toolchain for the ring core and XDP programs. Missing: {pkgs}. "
            f"On Debian: apt-get install {pkgs} (or run ./scripts/setup.sh)."
        )


def build_bpf_objects(src_dir: Path, out_dir: Path) -> list[Path]:
    """Compile every src_dir/*.bpf.c into out_dir/*.o (names without '.bpf')."""
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = [*BPF_CFLAGS, f"-I{src_dir / 'include'}", f"-I{src_dir}"]
    arch = multiarch_include()
    if arch is not None:
        flags.append(f"-I{arch}")
    built = []
    for src in sorted(src_dir.glob("*.bpf.c")):
        obj = out_dir / (src.name.removesuffix(".bpf.c") + ".o")
        subprocess.run(["clang", *flags, "-c", str(src), "-o", str(obj)], check=True)
        built.append(obj)
    return built
