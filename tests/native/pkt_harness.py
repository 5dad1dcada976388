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
SRC = REPO / "agent" / "xdp" / "src"
PKT_C = SRC / "pkt.c"
# what the harness links besides pkt.c: the probes and the hash map they index peers with
HARNESS_SOURCES = [PKT_C, SRC / "probe.c", SRC / "fwd.c"]
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
    """Compile pkt.c, probe.c, fwd.c + pkt_harness.c with gcc under ASan/UBSan; return the
    executable."""
    exe = out_dir / "pkt_harness"
    compile_c(["gcc", *SANITIZER_CFLAGS, *INCLUDE_FLAGS, *map(str, HARNESS_SOURCES),
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
    PROBE_ETHERTYPE: int
    PROBE_MAGIC: int
    PROBE_VERSION: int
    PROBE_REQUEST: int
    PROBE_REPLY: int
    PROBE_MSG_LEN: int
    PROBE_FRAME_LEN: int
    PROBE_WINDOW: int
    PROBE_IN_TIME: int
    PROBE_LATE: int
    PROBE_DEADLINE_INTERVALS: int
    PROBE_DEADLINE_MIN_MS: int
    PROBE_INTERVAL_MIN_MS: int


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

    def args(self) -> list[str]:
        """The harness's 11 arguments for these parameters (encap_params_arg())."""
        return [self.outer_src_mac.hex(), self.outer_dst_mac.hex(), self.inner_src_mac.hex(),
                self.inner_dst_mac.hex(), self.outer_saddr.hex(), self.outer_daddr.hex(),
                str(self.vni), str(self.dport), str(self.sport_min), str(self.sport_max),
                str(self.ttl)]


@dataclass(frozen=True)
class ProbeMsg:
    """struct rl_probe_msg; addresses as raw bytes."""

    type: int
    seq: int
    nonce: int
    tx_ns: int
    sender: bytes
    target: bytes

    @classmethod
    def from_json(cls, r: dict[str, Any]) -> ProbeMsg:
        return cls(type=r["type"], seq=r["seq"], nonce=r["nonce"], tx_ns=r["tx_ns"],
                   sender=bytes.fromhex(r["sender"]), target=bytes.fromhex(r["target"]))


@dataclass(frozen=True)
class ProbeParse:
    """rl_parse_vxlan(), rl_probe_match() and rl_probe_parse() of one frame."""

    vxlan: int
    match: bool
    ret: int
    msg: ProbeMsg | None


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
        r = self._call("encap", *p.args(), str(flow_hash), _hex(inner))
        return bytes.fromhex(r["frame"])

    # -- link probes (probe.c) -----------------------------------------------------------

    def probe_build(self, p: EncapParams, flow_hash: int, m: ProbeMsg) -> bytes:
        """rl_probe_build() into exactly RL_PROBE_FRAME_LEN bytes."""
        r = self._call("probe_build", *p.args(), str(flow_hash), str(m.type), str(m.seq),
                       str(m.nonce), m.sender.hex(), m.target.hex(), str(m.tx_ns))
        return bytes.fromhex(r["frame"])

    def probe_parse(self, frame: bytes, vni: int, port: int) -> ProbeParse:
        r = self._call("probe_parse", str(vni), str(port), _hex(frame))
        ok = r["vxlan"] == 0 and r["ret"] == 0
        return ProbeParse(r["vxlan"], r["match"], r["ret"], ProbeMsg.from_json(r) if ok else None)

    def probe_answer(self, frame: bytes, *, vni: int, port: int, src_mac: bytes,
                     dst_mac: bytes | None, sport_min: int, sport_max: int) -> tuple[int, bytes]:
        """rl_probe_answer() of a request: (return, the reply's bytes)."""
        r = self._call("probe_answer", str(vni), str(port), src_mac.hex(), _hex(dst_mac or b""),
                       str(sport_min), str(sport_max), _hex(frame))
        return r["ret"], bytes.fromhex(r.get("frame", ""))

    def pt_init(self, *, max_peers: int, interval_ms: int, nonce: int) -> int:
        """A fresh probe table; returns its deadline in requests."""
        r = self._call("pt_init", str(max_peers), str(interval_ms), str(nonce))
        assert r["ret"] == 0, r
        deadline: int = r["deadline"]
        return deadline

    def pt_ref(self, p: EncapParams, first_seq: int) -> tuple[int, int]:
        """rl_probe_peer_ref(): (return, peers in the table)."""
        r = self._call("pt_ref", *p.args(), str(first_seq))
        return r["ret"], r["peers"]

    def pt_unref(self, ip: bytes) -> int:
        """rl_probe_peer_unref(); returns the peers left."""
        peers: int = self._call("pt_unref", ip.hex())["peers"]
        return peers

    def pt_send(self, ip: bytes, now_ns: int) -> ProbeMsg:
        """rl_probe_request() and rl_probe_sent(): the request that went."""
        return ProbeMsg.from_json(self._call("pt_send", ip.hex(), str(now_ns)))

    def pt_reply(self, m: ProbeMsg, now_ns: int) -> int:
        """rl_probe_reply_in() of the reply to request m (its fields echoed)."""
        ret: int = self._call("pt_reply", m.target.hex(), m.sender.hex(), str(m.seq),
                              str(m.nonce), str(m.tx_ns), str(now_ns))["ret"]
        return ret

    def pt_stat(self, ip: bytes) -> dict[str, Any] | None:
        """The peer's struct rl_link_stat as a dict, None if the table has no such peer."""
        r = self._call("pt_stat", ip.hex())
        return r if r.pop("found") else None

    def pt_list(self) -> list[bytes]:
        return [bytes.fromhex(ip) for ip in self._call("pt_list")["ips"]]

    def tso(self, frame: bytes, lens: list[int], mtu: int, room: int) -> TsoResult:
        """Split frame into buffers of lens (summing to len(frame)) and segment it."""
        if sum(lens) != len(frame):
            raise ValueError("buffer lengths must add up to the frame")
        r = self._call("tso", str(mtu), str(room), ",".join(map(str, lens)) or "-", _hex(frame))
        if r["init"] == 0:
            r["segs"] = tuple(bytes.fromhex(s) for s in r["segs"])
        return TsoResult(**r)
