"""Build agent/xdp/src/pkt.c under sanitizers and drive it through pkt_harness.c.

The harness is one long-lived process per test session (starting an ASan binary per packet
would cost more than the tests), reading one command line and answering one JSON line.
Every buffer it hands to pkt.c is an exactly-sized heap copy, so an out-of-bounds access
aborts the process; `PktHarness` then raises with the sanitizer report.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PKT_C = REPO / "agent" / "xdp" / "src" / "pkt.c"
INCLUDE_FLAGS = [f"-I{REPO / 'agent' / 'xdp' / 'src'}", f"-I{REPO / 'bpf' / 'include'}"]
# Warnings are errors here as in the cffi build (agent/xdp/_build.py), so a test run catches
# what would break `pip install`.
SANITIZER_CFLAGS = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-Wall", "-Wextra", "-Werror"]


class BuildError(RuntimeError):
    """A C compile failed; the message carries the compiler's output."""


def compile_c(cmd: list[str]) -> None:
    """Run a compiler command line, raising BuildError with its diagnostics on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def build_harness(out_dir: Path) -> Path:
    """Compile pkt.c + pkt_harness.c with gcc under ASan/UBSan; return the executable."""
    exe = out_dir / "pkt_harness"
    compile_c(["gcc", *SANITIZER_CFLAGS, *INCLUDE_FLAGS, str(PKT_C),
               str(HERE / "pkt_harness.c"), "-o", str(exe)])
    return exe


@dataclass(frozen=True)
class Consts:
    """abi.h values, read from the compiled harness (abi.h rule: no Python literal copies)."""

    TRUNCATED: int
    NOT_IPV4: int
    BAD_IHL: int
    BAD_IP_LEN: int
    NOT_VXLAN: int
    BAD_VNI: int
    NO_INNER_ETH: int
    OVERSIZE: int
    BAD_CHAIN: int
    FRAGMENT: int
    MAX_FRAGS: int
    ENCAP_LEN: int


@dataclass(frozen=True)
class InnerInfo:
    """rl_parse_inner()'s result; the fields are only meaningful when ret == 0."""

    ret: int
    l3_off: int = 0
    l4_off: int = 0
    tot_len: int = 0
    proto: int = 0
    ttl: int = 0
    frag: int = 0
    sport: int = 0
    dport: int = 0
    hash: int = 0
    saddr: bytes = b""
    daddr: bytes = b""


@dataclass(frozen=True)
class VxlanInfo:
    """rl_parse_vxlan()'s result; the fields are only meaningful when ret == 0."""

    ret: int
    inner_off: int = 0
    inner_len: int = 0
    vni: int = 0
    outer_saddr: bytes = b""


@dataclass(frozen=True)
class CsumResult:
    """rl_parse_inner() then rl_l4_csum_fill(): both returns and the frame afterwards."""

    parse: int
    ret: int
    frame: bytes


@dataclass(frozen=True)
class TsoResult:
    """rl_tso_init() and every rl_tso_next() segment; end is the last rl_tso_next() return."""

    init: int
    mss: int = 0
    hdr_len: int = 0
    payload_total: int = 0
    segs: tuple[bytes, ...] = ()
    end: int = 0


@dataclass(frozen=True)
class EncapParams:
    """struct rl_encap_params, addresses as raw bytes."""

    outer_src_mac: bytes
    outer_dst_mac: bytes
    inner_src_mac: bytes
    inner_dst_mac: bytes
    outer_saddr: bytes
    outer_daddr: bytes
    vni: int
    dport: int
    sport_min: int
    sport_max: int
    ttl: int


def _hex(data: bytes) -> str:
    """Bytes as the harness expects them: hex, '-' for empty."""
    return data.hex() or "-"


class HarnessCrash(RuntimeError):
    """The harness died (a sanitizer report, an assertion, or a protocol error)."""


class PktHarness:
    """A running pkt_harness process; every method is one command."""

    def __init__(self, exe: Path, stderr_path: Path) -> None:
        self._stderr_path = stderr_path
        self._stderr: IO[str] = stderr_path.open("w")
        self._proc = subprocess.Popen(
            [str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True,
        )
        self.consts = Consts(**self._call("consts"))

    def close(self) -> None:
        """Stop the process and fail loudly if it did not exit cleanly (e.g. a leak report)."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        rc = self._proc.wait(timeout=30)
        self._stderr.close()
        if rc != 0:
            raise HarnessCrash(f"pkt_harness exited {rc}:\n{self._stderr_path.read_text()}")

    def _call(self, *args: str) -> dict[str, Any]:
        """Send one command line and decode the JSON answer."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(" ".join(args) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(timeout=30)
            self._stderr.flush()
            raise HarnessCrash(
                f"pkt_harness died on {args[0]!r} (exit {self._proc.returncode}):\n"
                f"{self._stderr_path.read_text()}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def parse_inner(self, frame: bytes, allow_short: bool = False) -> InnerInfo:
        """rl_parse_inner(); on success also rl_flow_hash() of the result."""
        r = self._call("inner", str(int(allow_short)), _hex(frame))
        if r["ret"] == 0:
            r["saddr"] = bytes.fromhex(r["saddr"])
            r["daddr"] = bytes.fromhex(r["daddr"])
        return InnerInfo(**r)

    def parse_vxlan(self, frame: bytes, vni: int, port: int) -> VxlanInfo:
        """rl_parse_vxlan()."""
        r = self._call("vxlan", str(vni), str(port), _hex(frame))
        if r["ret"] == 0:
            r["outer_saddr"] = bytes.fromhex(r["outer_saddr"])
        return VxlanInfo(**r)

    def csum_fill(self, frame: bytes, allow_short: bool = False) -> CsumResult:
        """rl_parse_inner() then rl_l4_csum_fill() on the same buffer."""
        r = self._call("csum", str(int(allow_short)), _hex(frame))
        return CsumResult(r["parse"], r["ret"], bytes.fromhex(r["frame"]))

    def dec_ttl(self, frame: bytes) -> tuple[int, bytes]:
        """rl_parse_inner() then rl_ipv4_dec_ttl(): (parse return, frame afterwards)."""
        r = self._call("ttl", _hex(frame))
        return r["ret"], bytes.fromhex(r["frame"])

    def set_macs(self, frame: bytes, dst: bytes, src: bytes) -> bytes:
        """rl_set_macs() on a copy of frame."""
        r = self._call("macs", dst.hex(), src.hex(), _hex(frame))
        return bytes.fromhex(r["frame"])

    def encap(self, inner: bytes, p: EncapParams, flow_hash: int) -> bytes:
        """rl_encap() into RL_ENCAP_LEN + len(inner) bytes holding inner at the end."""
        r = self._call(
            "encap", p.outer_src_mac.hex(), p.outer_dst_mac.hex(), p.inner_src_mac.hex(),
            p.inner_dst_mac.hex(), p.outer_saddr.hex(), p.outer_daddr.hex(), str(p.vni),
            str(p.dport), str(p.sport_min), str(p.sport_max), str(p.ttl), str(flow_hash),
            _hex(inner),
        )
        return bytes.fromhex(r["frame"])

    def tso(self, frame: bytes, lens: list[int], mtu: int, room: int) -> TsoResult:
        """Split frame into buffers of lens (summing to len(frame)) and segment it."""
        if sum(lens) != len(frame):
            raise ValueError("buffer lengths must add up to the frame")
        r = self._call("tso", str(mtu), str(room), ",".join(map(str, lens)) or "-", _hex(frame))
        if r["init"] == 0:
            r["segs"] = tuple(bytes.fromhex(s) for s in r["segs"])
        return TsoResult(**r)
