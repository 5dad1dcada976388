"""Agent configuration: defaults, a YAML file, then environment, then flags; validated once.

Every value has one name in the file (camelCase, as in Kubernetes manifests), one environment
variable (RINGLANE_ + upper snake case) and one flag (--kebab-case). Validation happens at start,
before anything on the node changes, and names the offending key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from agent.errors import ConfigError


@dataclass(frozen=True)
class AgentConfig:
    """What one node agent needs to run; see docs/operations.md for each field."""

    node_name: str = ""
    underlay_interface: str = ""  # empty: the interface of the default route
    vni: int = 1
    vxlan_port: int = 4789
    vxlan_device: str = "rl-vxlan"
    batch_size: int = 64
    busy_poll: bool = False
    hugepages: bool = True
    frames: int = 16384
    ring_size: int = 2048  # underlay AF_XDP rings (rx, tx, fill, completion)
    pod_xdp_mode: str = "skb"  # skb (generic) keeps the pod's TSO; native is faster per packet
    wire_xdp_mode: str = "auto"  # auto: skb on a veth underlay (keeps its peer's TSO), else native
    tcp_mode: str = "auto"  # auto: bulk TCP flows move to the kernel path; ring; kernel
    cpu: int = -1
    health_port: int = 9965  # /metrics, /healthz, /readyz; 0 disables
    pin_dir: Path = Path("/sys/fs/bpf/ringlane")
    run_dir: Path = Path("/run/ringlane")
    cni_state_dir: Path = Path("/var/lib/ringlane/cni")  # the plugin's stateDir (DEL queue)
    state_dir: Path = Path("/var/lib/ringlane")  # what outlives a reboot: the API's policies
    log_format: str = "auto"  # auto: JSON unless stderr is a terminal
    # Overlay hardening (docs/threat-model.md). Only the nodes' underlay IPs may send VXLAN;
    # extraVteps adds other senders (a VTEP gateway, a node outside the node list). A list in
    # the file, comma-separated in the environment and on the command line.
    extra_vteps: tuple[str, ...] = ()
    pod_anti_spoofing: bool = True  # a pod must send with its own MAC and IPv4 address
    # SIGTERM keeps the XDP programs attached (sockets gone: they pass every legitimate packet
    # to the kernel fallback and keep rejecting the rest); true restores the bare fallback.
    detach_on_stop: bool = False
    # Policy and telemetry (docs/policy.md, docs/api.md).
    network_policy: bool = True  # enforce Kubernetes NetworkPolicies (Kubernetes mode)
    flow_sample_every: int = 64  # sample 1 in N allowed policy decisions (denies: all); 0 off
    probe_interval_ms: int = 1000  # link probes to every node through the overlay; 0 off
    # The gRPC API always listens on runDir/api.sock (root only); apiListen (host:port) adds a
    # TCP listener, which requires mutual TLS: the three PEM files below.
    api_listen: str = ""
    api_tls_cert: str = ""
    api_tls_key: str = ""
    api_tls_ca: str = ""

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    def validate(self) -> AgentConfig:
        if not 1 <= self.vni < 2**24:
            raise ConfigError(f"vni: {self.vni} is not in 1..16777215")
        if not 1 <= self.vxlan_port <= 65535:
            raise ConfigError(f"vxlanPort: {self.vxlan_port} is not a UDP port")
        if not 0 <= self.health_port <= 65535:
            raise ConfigError(f"healthPort: {self.health_port} is not a TCP port (0 disables)")
        if not 1 <= self.batch_size <= 256:
            raise ConfigError(f"batchSize: {self.batch_size} is not in 1..256")
        if self.frames < 4096 or self.frames & (self.frames - 1):
            raise ConfigError(f"frames: {self.frames} must be a power of two >= 4096")
        if not 64 <= self.ring_size <= 16384 or self.ring_size & (self.ring_size - 1):
            raise ConfigError(f"ringSize: {self.ring_size} must be a power of two in 64..16384")
        if self.frames < 2 * self.ring_size:
            raise ConfigError(f"frames: {self.frames} must be at least 2 x ringSize")
        if self.pod_xdp_mode not in ("skb", "native"):
            raise ConfigError(f"podXdpMode: {self.pod_xdp_mode!r} is not 'skb' or 'native'")
        if self.wire_xdp_mode not in ("auto", "skb", "native"):
            raise ConfigError(f"wireXdpMode: {self.wire_xdp_mode!r} is not auto, skb or native")
        if self.tcp_mode not in ("auto", "ring", "kernel"):
            raise ConfigError(f"tcpMode: {self.tcp_mode!r} is not auto, ring or kernel")
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError(f"logFormat: {self.log_format!r} is not auto, json or console")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", self.vxlan_device):
            raise ConfigError(f"vxlanDevice: {self.vxlan_device!r} is not an interface name")
        if self.underlay_interface and not re.fullmatch(r"[^/\s]{1,15}", self.underlay_interface):
            raise ConfigError(f"underlayInterface: {self.underlay_interface!r} is not valid")
        if not all(p.is_absolute() for p in (self.pin_dir, self.run_dir, self.cni_state_dir,
                                             self.state_dir)):
            raise ConfigError("pinDir, runDir, cniStateDir and stateDir must be absolute paths")
        if not 0 <= self.flow_sample_every <= 1 << 20:
            raise ConfigError(f"flowSampleEvery: {self.flow_sample_every} is not in 0..1048576")
        if self.probe_interval_ms and not 10 <= self.probe_interval_ms <= 60000:
            raise ConfigError(f"probeIntervalMs: {self.probe_interval_ms} is not 0 (off) or "
                              "in 10..60000")
        if self.api_listen:
            if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]*):\d{1,5}", self.api_listen):
                raise ConfigError(f"apiListen: {self.api_listen!r} is not host:port")
            missing = [k for k, v in (("apiTlsCert", self.api_tls_cert),
                                      ("apiTlsKey", self.api_tls_key),
                                      ("apiTlsCa", self.api_tls_ca)) if not v]
            if missing:
                raise ConfigError(f"apiListen: TCP requires mutual TLS; set {', '.join(missing)}")
        for vtep in self.extra_vteps:
            try:
                IPv4Address(vtep)
            except ValueError:
                raise ConfigError(f"extraVteps: {vtep!r} is not an IPv4 address") from None
        return self


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _coerce(field: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind == "Path":
            return Path(str(raw))
        if kind == "tuple[str, ...]":
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: {raw!r} is not a valid {kind}") from exc


FIELDS = {f.name: f for f in dataclasses.fields(AgentConfig)}


def load(
    file_values: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> AgentConfig:
    """Merge file < environment < flags over the defaults, then validate."""
    values: dict[str, Any] = {}
    by_camel = {_camel(n): f for n, f in FIELDS.items()}
    for key, raw in (file_values or {}).items():
        f = by_camel.get(key)
        if f is None:
            raise ConfigError(f"unknown configuration key {key!r} (known: {sorted(by_camel)})")
        values[f.name] = _coerce(f, raw, key)
    env = os.environ if env is None else env  # type: ignore[assignment]
    for name, f in FIELDS.items():
        var = "RINGLANE_" + name.upper()
        if env and var in env:
            values[name] = _coerce(f, env[var], var)
    for name, raw in (flags or {}).items():
        if raw is not None:
            values[name] = _coerce(FIELDS[name], raw, "--" + name.replace("_", "-"))
    return AgentConfig(**values).validate()
